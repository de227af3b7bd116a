// SPDX-License-Identifier: MIT
// layer_norm (ops/norm.cpp), also through nn::LayerNorm: values by hand and against numbers computed
// in double precision with numpy, float64 gradcheck and gradgradcheck with weight and bias, weight
// only, bias only and neither (normalized sizes 1 and 7, a normalized_shape of 2 dims, leading dims of
// size 1), the fused backward against the recorded one, and bad input. PyTorch parity:
// tests/parity/test_parity_nn.cpp.
#include <cmath>
#include <limits>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor rnd(const Shape& s, Generator& gen, double scale = 1.0) {
  return (randn(s, gen, kFloat64) * scale).detach().requires_grad_();
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

using tapegrad::testing::error_of;

}  // namespace

TEST_CASE("layer_norm: values by hand", "[ops][attention][norm]") {
  // layer_norm of [1, 2, 3]: mean 2, var 2/3 -> [-1, 0, 1] * sqrt(3/2) (eps 1e-300: var + eps = var
  // in float64; eps = 0 is an error)
  REQUIRE_ALLCLOSE(layer_norm(tensor({1.0, 2.0, 3.0}, kFloat64), {3}, Tensor(), Tensor(), 1e-300),
                   tensor({-std::sqrt(1.5), 0.0, std::sqrt(1.5)}, kFloat64), 1e-14);
  REQUIRE_ALLCLOSE(layer_norm(tensor({1.0, 2.0, 3.0}, kFloat64), {3}, tensor({2.0, 1.0, 1.0}, kFloat64),
                              tensor({0.0, 5.0, 0.0}, kFloat64), 1e-300),
                   tensor({-2 * std::sqrt(1.5), 5.0, std::sqrt(1.5)}, kFloat64), 1e-14);
}

TEST_CASE("layer_norm: gradcheck and gradgradcheck; fused and recorded backward agree", "[ops][attention][norm]") {
  Generator gen(5);
  for (const auto& [shape, ns] : {std::pair{Shape{4}, std::vector<std::int64_t>{4}},
                                  std::pair{Shape{3, 5}, std::vector<std::int64_t>{5}},
                                  std::pair{Shape{2, 3, 4}, std::vector<std::int64_t>{3, 4}},
                                  std::pair{Shape{2, 1, 2, 3}, std::vector<std::int64_t>{3}}}) {
    INFO("x " << shape.str());
    Tensor x = rnd(shape, gen, 2.0), w = rnd(Shape(ns), gen), b = rnd(Shape(ns), gen);
    testing::require_gradcheck([ns = ns](const std::vector<Tensor>& in) { return layer_norm(in[0], ns, in[1], in[2]); },
                               {x, w, b}, true);
    testing::require_gradcheck([ns = ns](const std::vector<Tensor>& in) { return layer_norm(in[0], ns); }, {x}, true);
    Tensor g = randn(shape, gen, kFloat64);
    auto fast = grad({layer_norm(x, ns, w, b)}, {x, w, b}, {g});
    auto rec = grad({layer_norm(x, ns, w, b)}, {x, w, b}, {g}, {.create_graph = true});
    for (int i = 0; i < 3; ++i) REQUIRE_ALLCLOSE(fast[static_cast<std::size_t>(i)], rec[static_cast<std::size_t>(i)].detach(), 1e-12, 1e-13);
  }
}

TEST_CASE("layer_norm: bad input", "[ops][attention][norm][bad]") {
  Generator gen(7);
  LayerNorm ln({4});
  REQUIRE_THROWS_WITH(ln(randn({2, 3}, gen)), Contains("normalized_shape [4]") && Contains("[2, 3]"));
  REQUIRE_THROWS_WITH(layer_norm(randn({2, 3}, gen), {3}, ones({2})), Contains("weight has shape [2]"));
}

TEST_CASE("layer_norm: eps must be finite and > 0 (eps = 0 divides by zero on constant rows)", "[issue11][ops][attention][bad]") {
  Generator gen(1105);
  const Tensor x = randn({2, 4}, gen);
  for (double eps : {0.0, -0.0, -1e-5, kNaN, kInf, -kInf}) {
    INFO("eps = " << eps);
    REQUIRE_THAT(error_of([&] { layer_norm(x, {4}, Tensor(), Tensor(), eps); }),
                 StartsWith("layer_norm:") && Contains("eps") && Contains("eps > 0"));
    // nn::LayerNorm rejects it when built, not at its first forward
    REQUIRE_THAT(error_of([&] { LayerNorm ln({4}, eps); }), StartsWith("LayerNorm:") && Contains("eps > 0"));
  }
  REQUIRE_NOTHROW(layer_norm(x, {4}, Tensor(), Tensor(), 1e-12));
  // a constant row with the smallest accepted eps: finite
  REQUIRE(all_finite(layer_norm(zeros({2, 4}), {4}, Tensor(), Tensor(), 1e-30)));
}

// ---------------------------------------------------------------- weight only, bias only

// y = xhat ⊙ weight (bias undefined) or y = xhat + bias (weight undefined), eps = 1e-5 (the
// default). Expected values: numpy in float64, printed with repr:
//   mu = x.mean(axes, keepdims=True); var = ((x - mu)**2).mean(axes, keepdims=True)
//   y = (x - mu) / np.sqrt(var + 1e-5) * w   or   ... + b      (axes: the normalized dims)
// Row [0.5, -1, 2, 3.5] by hand: mean 1.25, var 11.25 / 4 = 2.8125, xhat[0] = -0.75 / 1.67705 = -0.44721,
// times 1.5 = -0.67082.
TEST_CASE("layer_norm: weight only and bias only, values against numpy", "[ops][attention][norm]") {
  const Tensor x = tensor({{0.5, -1.0, 2.0, 3.5}, {1.0, 1.0, -2.0, 0.25}}, kFloat64);
  const Tensor w = tensor({1.5, -0.5, 2.0, 0.25}, kFloat64), b = tensor({0.1, -0.2, 0.3, 1.0}, kFloat64);
  REQUIRE_ALLCLOSE(layer_norm(x, {4}, w),
                   tensor({{-0.6708192006835291, 0.6708192006835291, 0.8944256009113721, 0.33540960034176454},
                           {1.143735494603031, -0.381245164867677, -3.3549574508355575, 0.0381245164867677}}, kFloat64),
                   1e-14, 1e-15);
  REQUIRE_ALLCLOSE(layer_norm(x, {4}, Tensor(), b),
                   tensor({{-0.34721280045568603, -1.541638401367058, 0.747212800455686, 2.3416384013670584},
                           {0.862490329735354, 0.5624903297353541, -1.3774787254177787, 1.1524980659470707}}, kFloat64),
                   1e-14, 1e-15);
  // normalized_shape of 2 dims: each [2, 3] block is one row of 6 (the second block is almost constant)
  const Tensor x2 = tensor({{{1.0, 2.0, 4.0}, {-1.0, 0.0, 0.5}}, {{3.0, 3.0, 3.0}, {3.0, 3.0, 2.0}}}, kFloat64);
  const Tensor w2 = tensor({{1.0, 2.0, -1.0}, {0.5, 3.0, 1.0}}, kFloat64);
  const Tensor b2 = tensor({{0.0, 1.0, -1.0}, {2.0, 0.5, -0.5}}, kFloat64);
  REQUIRE_ALLCLOSE(layer_norm(x2, {2, 3}, w2),
                   tensor({{{-0.05234228900858046, 1.1515303581887713, -1.831980115300318},
                            {-0.6542786126072563, -2.0413492713346395, -0.3663960230600635}},
                           {{0.44719749667985065, 0.8943949933597013, -0.44719749667985065},
                            {0.22359874833992532, 1.341592490039552, -2.2359874833992555}}}, kFloat64),
                   1e-14, 1e-15);
  REQUIRE_ALLCLOSE(layer_norm(x2, {2, 3}, Tensor(), b2),
                   tensor({{{-0.05234228900858046, 1.5757651790943856, 0.8319801153003179},
                            {0.6914427747854874, -0.18044975711154654, -0.8663960230600636}},
                           {{0.44719749667985065, 1.4471974966798506, -0.5528025033201494},
                            {2.4471974966798506, 0.9471974966798506, -2.7359874833992555}}}, kFloat64),
                   1e-14, 1e-15);
  // float32 gives the same numbers to float32 precision
  REQUIRE_ALLCLOSE(layer_norm(x.to(kFloat32), {4}, w.to(kFloat32)), layer_norm(x, {4}, w).to(kFloat32), 1e-6, 1e-6);
  REQUIRE_ALLCLOSE(layer_norm(x.to(kFloat32), {4}, Tensor(), b.to(kFloat32)), layer_norm(x, {4}, Tensor(), b).to(kFloat32),
                   1e-6, 1e-6);
}

TEST_CASE("layer_norm: weight only and bias only, gradcheck and gradgradcheck; fused and recorded backward agree",
          "[ops][attention][norm][gradcheck]") {
  Generator gen(21);
  // normalized sizes 1 (xhat = 0: y = bias, dx = 0) and 7, a 2-dim normalized_shape, leading dims of size 1
  for (const auto& [shape, ns] : {std::pair{Shape{1}, std::vector<std::int64_t>{1}},
                                  std::pair{Shape{3, 1}, std::vector<std::int64_t>{1}},
                                  std::pair{Shape{7}, std::vector<std::int64_t>{7}},
                                  std::pair{Shape{2, 7}, std::vector<std::int64_t>{7}},
                                  std::pair{Shape{2, 3, 4}, std::vector<std::int64_t>{3, 4}},
                                  std::pair{Shape{1, 2, 1, 3}, std::vector<std::int64_t>{1, 3}}}) {
    INFO("x " << shape.str());
    const Tensor x = rnd(shape, gen, 2.0), p = rnd(Shape(ns), gen);
    const auto weight_only = [ns = ns](const std::vector<Tensor>& in) { return layer_norm(in[0], ns, in[1]); };
    const auto bias_only = [ns = ns](const std::vector<Tensor>& in) { return layer_norm(in[0], ns, Tensor(), in[1]); };
    testing::require_gradcheck(weight_only, {x, p}, true);
    testing::require_gradcheck(bias_only, {x, p}, true);
    // only the parameter requires grad (x a constant), and only x (the parameter a constant); `dims`
    // is a copy of ns that [&] lambdas can capture (clang < 16 cannot capture a structured binding)
    const Tensor xc = x.detach(), pc = p.detach();
    const std::vector<std::int64_t> dims = ns;
    testing::require_gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(xc, dims, in[0]); }, {p}, true);
    testing::require_gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(xc, dims, Tensor(), in[0]); }, {p}, true);
    testing::require_gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0], dims, pc); }, {x}, true);
    testing::require_gradcheck([&](const std::vector<Tensor>& in) { return layer_norm(in[0], dims, Tensor(), pc); }, {x}, true);
    // the fused backward (recording off) and the recorded formula (create_graph) give the same grads
    const Tensor g = randn(shape, gen, kFloat64);
    for (const bool has_w : {true, false}) {
      INFO((has_w ? "weight only" : "bias only"));
      auto f = [&] { return has_w ? layer_norm(x, dims, p) : layer_norm(x, dims, Tensor(), p); };
      auto fast = grad({f()}, {x, p}, {g});
      auto rec = grad({f()}, {x, p}, {g}, {.create_graph = true});
      REQUIRE_ALLCLOSE(fast[0], rec[0].detach(), 1e-12, 1e-13);
      REQUIRE_ALLCLOSE(fast[1], rec[1].detach(), 1e-12, 1e-13);
    }
  }
  // by hand: with bias only, dbias = Σ g over the leading dims; with weight only, dweight = Σ g ⊙ xhat
  Tensor b = tensor({0.0, 0.0, 0.0}, kFloat64).requires_grad_();
  backward(layer_norm(tensor({{1.0, 2.0, 3.0}, {5.0, 5.0, 8.0}}, kFloat64), {3}, Tensor(), b),
           tensor({{1.0, 2.0, 3.0}, {0.5, 0.25, -1.0}}, kFloat64));
  REQUIRE_ALLCLOSE(b.grad(), tensor({1.5, 2.25, 2.0}, kFloat64), 0, 0);
  // xhat of [1, 2, 3] with eps 1e-300 is [-1, 0, 1] sqrt(3/2): dweight = g ⊙ xhat for one row
  Tensor w = tensor({1.0, 1.0, 1.0}, kFloat64).requires_grad_();
  backward(layer_norm(tensor({1.0, 2.0, 3.0}, kFloat64), {3}, w, Tensor(), 1e-300), tensor({2.0, 5.0, -1.0}, kFloat64));
  REQUIRE_ALLCLOSE(w.grad(), tensor({-2 * std::sqrt(1.5), 0.0, -std::sqrt(1.5)}, kFloat64), 1e-14, 1e-15);
}

TEST_CASE("layer_norm: a weight or bias of the wrong shape or dtype names layer_norm, the argument and the shapes",
          "[ops][attention][norm][bad]") {
  const Tensor x = zeros({2, 3}, kFloat64);
  // weight only, bias only, and one good one bad
  REQUIRE_THAT(error_of([&] { layer_norm(x, {3}, zeros({2}, kFloat64)); }),
               StartsWith("layer_norm: weight has shape [2]; expected normalized_shape [3]"));
  REQUIRE_THAT(error_of([&] { layer_norm(x, {3}, Tensor(), zeros({4}, kFloat64)); }),
               StartsWith("layer_norm: bias has shape [4]; expected normalized_shape [3]"));
  REQUIRE_THAT(error_of([&] { layer_norm(x, {3}, zeros({3}, kFloat64), zeros({1, 3}, kFloat64)); }),
               StartsWith("layer_norm: bias has shape [1, 3]; expected normalized_shape [3]"));
  // same number of elements, other shape: [6] for normalized_shape [2, 3]
  REQUIRE_THAT(error_of([&] { layer_norm(x, {2, 3}, zeros({6}, kFloat64)); }),
               StartsWith("layer_norm: weight has shape [6]; expected normalized_shape [2, 3]"));
  REQUIRE_THAT(error_of([&] { layer_norm(x, {2, 3}, Tensor(), zeros({3, 2}, kFloat64)); }),
               StartsWith("layer_norm: bias has shape [3, 2]; expected normalized_shape [2, 3]"));
  // dtype: the parameter must match x
  REQUIRE_THAT(error_of([&] { layer_norm(x, {3}, zeros({3})); }),
               StartsWith("layer_norm:") && Contains("weight") && Contains("float32") && Contains("float64"));
  REQUIRE_THAT(error_of([&] { layer_norm(x, {3}, Tensor(), zeros({3})); }),
               StartsWith("layer_norm:") && Contains("bias") && Contains("float32") && Contains("float64"));
  // and the caller's line
  REQUIRE_THAT(error_of([&] { layer_norm(x, {3}, Tensor(), zeros({4}, kFloat64)); }), Contains("test_norm.cpp:"));
}
