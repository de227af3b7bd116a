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
