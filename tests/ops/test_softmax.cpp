// SPDX-License-Identifier: MIT
// softmax, log_softmax, logsumexp (and their temperature overloads): values against numbers
// computed independently (numpy in double precision, or by hand), numerics at extreme and masked
// logits (the documented -inf policy), properties on random inputs, the Jacobian of softmax and the
// Hessian of logsumexp, gradcheck and gradgradcheck, agreement of the fused backward with the
// recorded tensor-op backward, and bad input.
#include <Eigen/Eigenvalues>

#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kLn2 = std::log(2.0);
const double kLn3 = std::log(3.0);

Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }
Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, kFloat64); }

using RowMajor = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
RowMajor as_matrix(const Tensor& m) {  // m: [r, c] float64
  return Eigen::Map<const RowMajor>(m.data<double>(), m.size(0), m.size(1));
}

int wrap_dim(const Tensor& t, int dim) { return dim < 0 ? dim + std::max(t.dim(), 1) : dim; }

// The rows of t along dim (the K entries for fixed other indices), as doubles, in row order.
std::vector<std::vector<double>> rows_of(const Tensor& t, int dim) {
  const DimSplit sp = split_at(t.shape(), wrap_dim(t, dim));
  const auto v = t.to_vector();
  std::vector<std::vector<double>> rows;
  for (std::int64_t o = 0; o < sp.outer; ++o)
    for (std::int64_t i = 0; i < sp.inner; ++i) {
      std::vector<double> r;
      for (std::int64_t j = 0; j < sp.size; ++j) r.push_back(v[static_cast<std::size_t>((o * sp.size + j) * sp.inner + i)]);
      rows.push_back(std::move(r));
    }
  return rows;
}

// Bool mask of shape s: each entry true with probability p, and the rows along dim listed in
// full_rows (flat row numbers, as rows_of orders them) entirely true.
Tensor make_mask(const Shape& s, int dim, double p, const std::vector<std::int64_t>& full_rows, Generator& gen) {
  const DimSplit sp = split_at(s, dim < 0 ? dim + std::max(s.rank(), 1) : dim);
  std::vector<bool> m(static_cast<std::size_t>(s.numel()));
  for (std::size_t k = 0; k < m.size(); ++k) m[k] = gen.uniform() < p;
  for (std::int64_t r : full_rows) {
    const std::int64_t o = r / sp.inner, i = r % sp.inner;
    for (std::int64_t j = 0; j < sp.size; ++j) m[static_cast<std::size_t>((o * sp.size + j) * sp.inner + i)] = true;
  }
  return from_vector(m, s);
}

bool has_nan(const Tensor& t) {
  for (double v : t.to_vector())
    if (std::isnan(v)) return true;
  return false;
}

// The VJP of f at x for the cotangent g, twice: by the fused kernels (plain backward, recording
// off) and by the recorded tensor-op formulas (grad with create_graph).
std::pair<Tensor, Tensor> both_vjps(const UnaryFunction& f, const Tensor& x, const Tensor& g) {
  Tensor leaf = x.detach().requires_grad_();
  Tensor fused = grad({f(leaf)}, {leaf}, {g}).at(0);
  Tensor recorded = grad({f(leaf)}, {leaf}, {g}, GradOptions{.create_graph = true}).at(0);
  return {fused, recorded};
}

using tapegrad::testing::error_of;

using DimOp = std::function<Tensor(const Tensor&, int)>;
struct NamedOp {
  const char* name;
  DimOp f;
};
const std::vector<NamedOp> kOps = {
    {"softmax", [](const Tensor& x, int d) { return softmax(x, d); }},
    {"log_softmax", [](const Tensor& x, int d) { return log_softmax(x, d); }},
    {"logsumexp", [](const Tensor& x, int d) { return logsumexp(x, d); }},
    {"logsumexp", [](const Tensor& x, int d) { return logsumexp(x, d, /*keepdim=*/true); }},
};


Tensor idx(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

using TempOp = std::function<Tensor(const Tensor&, int, const Tensor&)>;
struct NamedTempOp {
  const char* name;
  TempOp f;
};
const std::vector<NamedTempOp> kTempOps = {
    {"softmax", [](const Tensor& x, int d, const Tensor& t) { return softmax(x, d, t); }},
    {"log_softmax", [](const Tensor& x, int d, const Tensor& t) { return log_softmax(x, d, t); }},
};

// dL/dT for L = sum(g * op(x, dim, T)), T a fresh leaf holding t.
double temperature_grad(const TempOp& f, const Tensor& x, int dim, double t, const Tensor& g) {
  Tensor tl = tensor(t, x.dtype()).requires_grad_();
  backward(sum(mul(f(x, dim, tl), g)));
  return tl.grad().item();
}

using tapegrad::testing::backward_ones;
using tapegrad::testing::empty_leaf;

}  // namespace

// ---------------------------------------------------------------- forward values

TEST_CASE("softmax: forward values match numpy along every kind of dim, float64 and float32", "[ops][softmax]") {
  // numpy, float64: m = x.max(d, keepdims=True); e = np.exp(x - m); softmax = e / e.sum(d, keepdims=True);
  // log_softmax = x - m - np.log(e.sum(d, keepdims=True)); logsumexp = (m + np.log(e.sum(d, keepdims=True))).squeeze(d)
  const Tensor x1 = f64({-0.5, 0.0, 1.5, 3.0});
  const Tensor x2 = tensor({{1.0, 2.0, 3.0}, {-1.0, 0.5, 4.0}}, kFloat64);
  const Tensor x3 = f64({0.5, -1.25, 2.0, 0.0, 3.5, -0.75, 1.0, 1.5, -2.0, 0.25, 0.75, -0.5}, Shape{2, 3, 2});
  std::vector<double> v4;  // (i * 7 % 11) / 4 - 1, shape [2, 2, 3, 2]
  for (int i = 0; i < 24; ++i) v4.push_back((i * 7 % 11) / 4.0 - 1.0);
  const Tensor x4 = f64(v4, Shape{2, 2, 3, 2});

  const Tensor s1 = f64({0.023173236755740605, 0.03820620835015956, 0.17122834638196902, 0.767392208512131});
  const Tensor l1 = f64({-3.7647572543194325, -3.2647572543194325, -1.7647572543194325, -0.26475725431943253});
  const Tensor e1 = tensor(3.2647572543194325, kFloat64);
  const Tensor s2d0 = tensor({{0.8807970779778825, 0.8175744761936437, 0.26894142136999516},
                              {0.11920292202211755, 0.18242552380635632, 0.7310585786300049}}, kFloat64);
  const Tensor l2d0 = tensor({{-0.1269280110429724, -0.20141327798275246, -1.3132616875182228},
                              {-2.1269280110429722, -1.7014132779827524, -0.3132616875182228}}, kFloat64);
  const Tensor e2d0 = f64({1.1269280110429725, 2.2014132779827524, 4.313261687518223});
  const Tensor s2d1 = tensor({{0.09003057317038043, 0.24472847105479767, 0.6652409557748218},
                              {0.00649794331566194, 0.0291217615374784, 0.9643802951468596}}, kFloat64);
  const Tensor l2d1 = tensor({{-2.4076059644443806, -1.4076059644443804, -0.40760596444438035},
                              {-5.036269565124779, -3.5362695651247793, -0.03626956512477912}}, kFloat64);
  const Tensor e2d1 = f64({3.4076059644443806, 4.036269565124779});
  const Tensor s3 = f64({0.03911257327068745, 0.1628912750924906, 0.1752903921400367, 0.5685464148510541,
                         0.7855970345892759, 0.26856231005645526, 0.5468700884198192, 0.703313976021774,
                         0.027227058480497335, 0.201502827829051, 0.4259028530996836, 0.095183196149175},
                        Shape{2, 3, 2});
  const Tensor l3 = f64({-3.241311296657157, -1.8146723247072887, -1.7413112966571571, -0.5646723247072887,
                         -0.24131129665715703, -1.3146723247072887, -0.6035440030857769, -0.3519518638028016,
                         -3.603544003085777, -1.6019518638028016, -0.8535440030857769, -2.3519518638028014},
                        Shape{2, 3, 2});
  const Tensor e3 = f64({3.741311296657157, 0.5646723247072887, 1.6035440030857768, 1.8519518638028016}, Shape{2, 2});
  const Tensor s4 = f64({0.13160164714691436, 0.29381477471148953, 0.278600689196273, 0.6220058829452726,
                         0.5897976636568126, 0.08417934234323782, 0.703313976021774, 0.29381477471148953,
                         0.095183196149175, 0.6220058829452726, 0.201502827829051, 0.08417934234323782,
                         0.29381477471148953, 0.13160164714691436, 0.6220058829452726, 0.278600689196273,
                         0.08417934234323782, 0.5897976636568126, 0.29381477471148953, 0.13160164714691436,
                         0.6220058829452726, 0.278600689196273, 0.08417934234323782, 0.5897976636568126},
                        Shape{2, 2, 3, 2});
  const Tensor l4 = f64({-2.02797574385531, -1.2248057281763145, -1.2779757438553099, -0.47480572817631445,
                         -0.5279757438553098, -2.4748057281763143, -0.3519518638028016, -1.2248057281763145,
                         -2.3519518638028014, -0.47480572817631445, -1.6019518638028016, -2.4748057281763143,
                         -1.2248057281763145, -2.02797574385531, -0.47480572817631445, -1.2779757438553099,
                         -2.4748057281763143, -0.5279757438553098, -1.2248057281763145, -2.02797574385531,
                         -0.47480572817631445, -1.2779757438553099, -2.4748057281763143, -0.5279757438553098},
                        Shape{2, 2, 3, 2});
  const Tensor e4 = f64({1.0279757438553099, 1.9748057281763145, 1.6019518638028016, 1.4748057281763145,
                         1.9748057281763145, 1.7779757438553099, 1.4748057281763145, 1.2779757438553099},
                        Shape{2, 2, 2});

  struct Case {
    Tensor x;
    int dim;
    Tensor softmax, log_softmax, logsumexp;
  };
  const std::vector<Case> cases = {
      {x1, 0, s1, l1, e1},       {x1, -1, s1, l1, e1},      {x2, 0, s2d0, l2d0, e2d0}, {x2, -2, s2d0, l2d0, e2d0},
      {x2, 1, s2d1, l2d1, e2d1}, {x2, -1, s2d1, l2d1, e2d1}, {x3, 1, s3, l3, e3},       {x3, -2, s3, l3, e3},
      {x4, 2, s4, l4, e4},       {x4, -2, s4, l4, e4},
  };
  for (const Case& c : cases) {
    INFO("shape " << c.x.shape().str() << ", dim " << c.dim);
    REQUIRE_ALLCLOSE(softmax(c.x, c.dim), c.softmax, 1e-14, 1e-17);
    REQUIRE_ALLCLOSE(log_softmax(c.x, c.dim), c.log_softmax, 1e-14, 1e-15);
    REQUIRE_ALLCLOSE(logsumexp(c.x, c.dim), c.logsumexp, 1e-14, 1e-15);
    Shape kept = c.x.shape();
    kept[wrap_dim(c.x, c.dim)] = 1;
    REQUIRE_ALLCLOSE(logsumexp(c.x, c.dim, /*keepdim=*/true), f64(c.logsumexp.to_vector(), kept), 1e-14, 1e-15);

    // float32 in, float32 out, the same numbers to float precision
    const Tensor x32 = c.x.to(kFloat32);
    REQUIRE(softmax(x32, c.dim).dtype() == kFloat32);
    REQUIRE(log_softmax(x32, c.dim).dtype() == kFloat32);
    REQUIRE(logsumexp(x32, c.dim).dtype() == kFloat32);
    REQUIRE_ALLCLOSE(softmax(x32, c.dim), c.softmax.to(kFloat32), 1e-6, 1e-9);
    REQUIRE_ALLCLOSE(log_softmax(x32, c.dim), c.log_softmax.to(kFloat32), 1e-6, 1e-6);
    REQUIRE_ALLCLOSE(logsumexp(x32, c.dim), c.logsumexp.to(kFloat32), 1e-6, 1e-6);
  }
}

TEST_CASE("softmax: rank 0 and K = 1 (softmax 1, log_softmax 0, logsumexp x), with gradients", "[ops][softmax]") {
  SECTION("rank 0 (dim 0 or -1)") {
    for (int d : {0, -1}) {
      Tensor x = tensor(-3.5, kFloat64).requires_grad_();
      REQUIRE(softmax(x, d).dim() == 0);
      REQUIRE(softmax(x, d).item() == 1.0);
      REQUIRE(log_softmax(x, d).item() == 0.0);
      REQUIRE(logsumexp(x, d).item() == -3.5);
      REQUIRE(logsumexp(x, d, true).dim() == 0);
      backward(logsumexp(x, d));
      REQUIRE(x.grad().item() == 1.0);
      x.zero_grad();
      backward(softmax(x, d) + log_softmax(x, d));
      REQUIRE(x.grad().item() == 0.0);
    }
  }
  SECTION("K = 1 along dim 1 of [3, 1], float64 and float32, both backward paths") {
    for (DType dt : {kFloat64, kFloat32}) {
      const Tensor x = from_vector({-2.0, 0.0, 1e30}, Shape{3, 1}, kFloat64).to(dt);
      const Tensor g = from_vector({1.0, 2.0, -3.0}, Shape{3, 1}, kFloat64).to(dt);
      REQUIRE_ALLCLOSE(softmax(x, 1), ones({3, 1}, dt), 0, 0);
      REQUIRE_ALLCLOSE(log_softmax(x, 1), zeros({3, 1}, dt), 0, 0);
      REQUIRE_ALLCLOSE(logsumexp(x, 1), from_vector({-2.0, 0.0, 1e30}, Shape{3}, kFloat64).to(dt), 0, 0);
      for (const auto& [name, f, expected] : std::vector<std::tuple<const char*, UnaryFunction, Tensor>>{
               {"softmax", [](const Tensor& t) { return softmax(t, 1); }, zeros({3, 1}, dt)},
               {"log_softmax", [](const Tensor& t) { return log_softmax(t, 1); }, zeros({3, 1}, dt)},
               {"logsumexp keepdim", [](const Tensor& t) { return logsumexp(t, 1, true); }, g}}) {
        INFO(name << " " << dtype_name(dt));
        const auto [fused, recorded] = both_vjps(f, x, g);
        REQUIRE_ALLCLOSE(fused, expected, 0, 0);
        REQUIRE_ALLCLOSE(recorded, expected, 0, 0);
      }
    }
  }
}

// ---------------------------------------------------------------- numerics

TEST_CASE("softmax: extreme logits give the exact limits, never overflow or NaN", "[ops][softmax][numerics]") {
  const auto check = [](DType dt, double big) {
    INFO(dtype_name(dt) << ", logits +-" << big);
    const Tensor x = tensor({{big, -big}, {-big, big}, {big, 0.0}, {0.0, -big}}, kFloat64).to(dt);
    // exp(-80) = 1.8e-35 is a float32 number: atol 1e-30 lets it through (everything else is exact)
    const double atol = 1e-30;
    REQUIRE_ALLCLOSE(softmax(x, 1), tensor({{1, 0}, {0, 1}, {1, 0}, {1, 0}}, kFloat64).to(dt), 0, atol);
    // log_softmax: 0 for the winner, the (exact) difference to it for the loser
    REQUIRE_ALLCLOSE(log_softmax(x, 1), tensor({{0, -2 * big}, {-2 * big, 0}, {0, -big}, {0, -big}}, kFloat64).to(dt), 0, 0);
    REQUIRE_ALLCLOSE(logsumexp(x, 1), f64({big, big, big, 0.0}).to(dt), 0, 0);
    // along dim 0 (column 0 is [big, -big, big, 0]): two equal maxima share the probability
    REQUIRE_ALLCLOSE(narrow(softmax(x, 0), 1, 0, 1), from_vector({0.5, 0.0, 0.5, 0.0}, Shape{4, 1}, kFloat64).to(dt), 0, atol);
    REQUIRE(!has_nan(softmax(x, 0)));
    REQUIRE(!has_nan(log_softmax(x, 0)));
    // gradients: softmax saturated (zero Jacobian), log_softmax g - onehot * sum(g), logsumexp onehot
    const Tensor g = tensor({{1, 2}, {3, 4}, {5, 6}, {7, 8}}, kFloat64).to(dt);
    const std::vector<std::tuple<const char*, UnaryFunction, Tensor, Tensor>> ops = {
        {"softmax", [](const Tensor& t) { return softmax(t, 1); }, g, zeros({4, 2}, dt)},
        {"log_softmax", [](const Tensor& t) { return log_softmax(t, 1); }, g,
         tensor({{-2, 2}, {3, -3}, {-6, 6}, {-8, 8}}, kFloat64).to(dt)},
        {"logsumexp", [](const Tensor& t) { return logsumexp(t, 1); }, f64({1, 2, 3, 4}).to(dt),
         tensor({{1, 0}, {0, 2}, {3, 0}, {4, 0}}, kFloat64).to(dt)}};
    for (const auto& [name, f, gv, expected] : ops) {
      INFO(name);
      const auto [fused, recorded] = both_vjps(f, x, gv);
      REQUIRE_ALLCLOSE(fused, expected, 0, atol);
      REQUIRE_ALLCLOSE(recorded, expected, 0, atol);
    }
  };
  check(kFloat64, 1e4);
  check(kFloat64, 1e30);
  check(kFloat32, 80.0);  // exp(160) overflows float32: only max-subtraction makes this work
  check(kFloat32, 1e4);
  // three-way rows at 1e30: the middle entry is negligible against the winner
  REQUIRE_ALLCLOSE(softmax(f64({1e30, 0.0, -1e30}), 0), f64({1, 0, 0}), 0, 0);
  REQUIRE(logsumexp(f64({-1e30, -1e30 + 1e15, -1e30}), 0).item() == -1e30 + 1e15);
}

TEST_CASE("softmax: rows of equal logits are uniform", "[ops][softmax][numerics]") {
  for (DType dt : {kFloat64, kFloat32}) {
    for (double c : {0.0, -3.75, 42.0}) {
      INFO(dtype_name(dt) << ", c = " << c);
      const Tensor x = full({3, 4}, c, dt);
      REQUIRE_ALLCLOSE(softmax(x, 1), full({3, 4}, 0.25, dt), 0, 0);
      REQUIRE_ALLCLOSE(softmax(x, 0), full({3, 4}, 1.0 / 3.0, dt), dt == kFloat64 ? 1e-15 : 1e-7, 0);
      // a few ulp of the result: log K must not be rounded against c (see the next test case)
      const double eps = dt == kFloat64 ? 0x1p-52 : 0x1p-23;
      const double tol = 4 * eps;
      REQUIRE_ALLCLOSE(log_softmax(x, 1), full({3, 4}, -2 * kLn2, dt), tol, tol);
      REQUIRE_ALLCLOSE(logsumexp(x, 1), full({3}, c + 2 * kLn2, dt), tol, tol);
      // gradient of logsumexp: uniform; of softmax with g = 1: zero (the rows stay normalised)
      const auto [fused, recorded] = both_vjps([](const Tensor& t) { return logsumexp(t, 1); }, x, ones({3}, dt));
      REQUIRE_ALLCLOSE(fused, full({3, 4}, 0.25, dt), tol, tol);
      REQUIRE_ALLCLOSE(recorded, full({3, 4}, 0.25, dt), tol, tol);
      const auto [fs, rs] = both_vjps([](const Tensor& t) { return softmax(t, 1); }, x, ones({3, 4}, dt));
      REQUIRE_ALLCLOSE(fs, zeros({3, 4}, dt), 0, 4 * eps);
      REQUIRE_ALLCLOSE(rs, zeros({3, 4}, dt), 0, 4 * eps);
    }
  }
  // huge equal logits: softmax keeps the uniform distribution exactly
  REQUIRE_ALLCLOSE(softmax(full({2, 3}, 1e30, kFloat64), 1), full({2, 3}, 1.0 / 3.0, kFloat64), 1e-15, 0);
  REQUIRE_ALLCLOSE(softmax(full({2, 5}, -1e4, kFloat32), 1), full({2, 5}, 0.2, kFloat32), 1e-7, 0);
}

// log_softmax must be (x - max) - log(sum exp(x - max)), not x - (max + log sum), and the logsumexp
// VJP exp(x - max) / sum exp(x - max), not exp(x - lse): once |x| >> log K, max + log sum rounds
// log K away (log_softmax([1e30, 1e30]) came out as [0, 0] and d logsumexp as [1, 1]).
TEST_CASE("log_softmax, logsumexp: equal huge logits keep log K in value and gradient", "[ops][softmax][numerics]") {
  SECTION("float64 at 1e30: log_softmax = -log 2, d logsumexp = 1/2") {
    const Tensor x = tensor({{1e30, 1e30}, {-1e30, -1e30}}, kFloat64);
    REQUIRE_ALLCLOSE(log_softmax(x, 1), full({2, 2}, -kLn2, kFloat64), 1e-15, 0);
    const auto [fused, recorded] = both_vjps([](const Tensor& t) { return logsumexp(t, 1); }, x, ones({2}, kFloat64));
    REQUIRE_ALLCLOSE(recorded, full({2, 2}, 0.5, kFloat64), 0, 0);
    REQUIRE_ALLCLOSE(fused, full({2, 2}, 0.5, kFloat64), 0, 0);
    // log_softmax backward: g - softmax * sum(g) with g = [1, 0] is [1/2, -1/2]
    const Tensor g = tensor({{1, 0}, {1, 0}}, kFloat64);
    const auto [fl, rl] = both_vjps([](const Tensor& t) { return log_softmax(t, 1); }, x, g);
    REQUIRE_ALLCLOSE(fl, tensor({{0.5, -0.5}, {0.5, -0.5}}, kFloat64), 1e-15, 0);
    REQUIRE_ALLCLOSE(rl, tensor({{0.5, -0.5}, {0.5, -0.5}}, kFloat64), 1e-15, 0);
  }
  SECTION("float64 at 1e4 and float32 at 1e4 and 80: errors of one ulp of the result, not of the logit") {
    REQUIRE_ALLCLOSE(log_softmax(full({1, 3}, 1e4, kFloat64), 1), full({1, 3}, -kLn3, kFloat64), 1e-15, 0);
    for (double c : {1e4, 80.0}) {
      INFO("float32, c = " << c);
      const Tensor x = full({1, 2}, c, kFloat32);
      REQUIRE_ALLCLOSE(log_softmax(x, 1), full({1, 2}, -kLn2, kFloat32), 1.2e-7, 0);
      const auto [fused, recorded] = both_vjps([](const Tensor& t) { return logsumexp(t, 1); }, x, ones({1}, kFloat32));
      REQUIRE_ALLCLOSE(fused, full({1, 2}, 0.5, kFloat32), 1.2e-7, 0);
    }
  }
}

TEST_CASE("softmax: -inf entries get probability 0; gradient 0 (softmax, logsumexp) or g (log_softmax)", "[ops][softmax][mask]") {
  // row 0: [0, -inf, ln 3] -> p = [1/4, 0, 3/4];  row 1: [-inf, 2, 2] -> p = [0, 1/2, 1/2]
  const Tensor x = tensor({{0.0, -kInf, kLn3}, {-kInf, 2.0, 2.0}}, kFloat64);
  REQUIRE_ALLCLOSE(softmax(x, 1), tensor({{0.25, 0, 0.75}, {0, 0.5, 0.5}}, kFloat64), 1e-15, 0);
  REQUIRE_ALLCLOSE(log_softmax(x, 1), tensor({{-2 * kLn2, -kInf, kLn3 - 2 * kLn2}, {-kInf, -kLn2, -kLn2}}, kFloat64), 1e-15,
                   1e-15);
  REQUIRE_ALLCLOSE(logsumexp(x, 1), f64({2 * kLn2, 2.0 + kLn2}), 1e-15, 0);
  // the same along dim 0 of the transpose, and along the middle dim of a rank-3 tensor
  REQUIRE_ALLCLOSE(softmax(transpose(x, 0, 1), 0), transpose(softmax(x, 1), 0, 1), 0, 0);
  REQUIRE_ALLCLOSE(log_softmax(unsqueeze(transpose(x, 0, 1), 0), 1), unsqueeze(transpose(log_softmax(x, 1), 0, 1), 0), 0, 0);

  // g = [[1, 2, 3], [4, 5, 7]]
  //   softmax     s (g - <g, s>):  <g, s> = 2.5, 6      -> [[-3/8, 0, 3/8], [0, -1/2, 1/2]]
  //   log_softmax g - s sum(g):    sum(g) = 6, 16       -> [[-1/2, 2, -3/2], [4, -3, -1]]  (g at -inf)
  //   logsumexp   g_row s, g_row = [1, 3]               -> [[1/4, 0, 3/4], [0, 3/2, 3/2]]
  const Tensor g = tensor({{1, 2, 3}, {4, 5, 7}}, kFloat64);
  const std::vector<std::tuple<const char*, UnaryFunction, Tensor, Tensor>> ops = {
      {"softmax", [](const Tensor& t) { return softmax(t, 1); }, g,
       tensor({{-0.375, 0, 0.375}, {0, -0.5, 0.5}}, kFloat64)},
      {"log_softmax", [](const Tensor& t) { return log_softmax(t, 1); }, g, tensor({{-0.5, 2, -1.5}, {4, -3, -1}}, kFloat64)},
      {"logsumexp", [](const Tensor& t) { return logsumexp(t, 1); }, f64({1, 3}),
       tensor({{0.25, 0, 0.75}, {0, 1.5, 1.5}}, kFloat64)},
      {"logsumexp keepdim", [](const Tensor& t) { return logsumexp(t, 1, true); }, from_vector({1.0, 3.0}, Shape{2, 1}, kFloat64),
       tensor({{0.25, 0, 0.75}, {0, 1.5, 1.5}}, kFloat64)}};
  for (DType dt : {kFloat64, kFloat32}) {
    for (const auto& [name, f, gv, expected] : ops) {
      INFO(name << " " << dtype_name(dt));
      const auto [fused, recorded] = both_vjps(f, x.to(dt), gv.to(dt));
      const double tol = dt == kFloat64 ? 1e-15 : 1e-6;
      REQUIRE_ALLCLOSE(fused, expected.to(dt), tol, tol);
      REQUIRE_ALLCLOSE(recorded, expected.to(dt), tol, tol);
      REQUIRE(!has_nan(fused));
      REQUIRE(!has_nan(recorded));
    }
  }
}

TEST_CASE("softmax: fully masked rows give softmax 0, log_softmax and logsumexp -inf, zero gradient, never NaN",
          "[ops][softmax][mask]") {
  // PyTorch gives NaN here; tapegrad's documented policy is 0 / -inf with zero gradient.
  const double e = std::exp(0.5);  // row 1 = [0.5, -inf, 1]: p = [1, 0, e^0.5] / (1 + e^0.5)
  const Tensor x = tensor({{-kInf, -kInf, -kInf}, {0.5, -kInf, 1.0}}, kFloat64);
  const Tensor p1 = tensor({{0, 0, 0}, {1 / (1 + e), 0, e / (1 + e)}}, kFloat64);
  REQUIRE_ALLCLOSE(softmax(x, 1), p1, 1e-15, 0);
  REQUIRE_ALLCLOSE(log_softmax(x, 1), tensor({{-kInf, -kInf, -kInf}, {-std::log1p(e), -kInf, 0.5 - std::log1p(e)}}, kFloat64),
                   1e-15, 0);
  REQUIRE_ALLCLOSE(logsumexp(x, 1), f64({-kInf, 1.0 + std::log1p(1 / e)}), 1e-15, 0);
  // a single-element row that is -inf, and a rank-0 -inf
  REQUIRE_ALLCLOSE(softmax(from_vector({-kInf}, Shape{1, 1}, kFloat64), 1), zeros({1, 1}, kFloat64), 0, 0);
  REQUIRE(softmax(tensor(-kInf, kFloat64), 0).item() == 0.0);
  REQUIRE(log_softmax(tensor(-kInf, kFloat64), 0).item() == -kInf);
  REQUIRE(logsumexp(tensor(-kInf, kFloat64), 0).item() == -kInf);

  // gradients: zero on the masked row in both paths; row 1 as the formulas give (g = [4, 5, 6])
  const Tensor g = tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64);
  const double a = 1 / (1 + e), b = e / (1 + e), dot = 4 * a + 6 * b;
  const std::vector<std::tuple<const char*, UnaryFunction, Tensor, Tensor>> ops = {
      {"softmax", [](const Tensor& t) { return softmax(t, 1); }, g,
       tensor({{0, 0, 0}, {a * (4 - dot), 0, b * (6 - dot)}}, kFloat64)},
      {"log_softmax", [](const Tensor& t) { return log_softmax(t, 1); }, g,
       tensor({{0, 0, 0}, {4 - 15 * a, 5, 6 - 15 * b}}, kFloat64)},
      {"logsumexp", [](const Tensor& t) { return logsumexp(t, 1); }, f64({7, 2}), tensor({{0, 0, 0}, {2 * a, 0, 2 * b}}, kFloat64)},
      {"logsumexp keepdim", [](const Tensor& t) { return logsumexp(t, 1, true); },
       from_vector({7.0, 2.0}, Shape{2, 1}, kFloat64), tensor({{0, 0, 0}, {2 * a, 0, 2 * b}}, kFloat64)}};
  for (DType dt : {kFloat64, kFloat32}) {
    for (const auto& [name, f, gv, expected] : ops) {
      INFO(name << " " << dtype_name(dt));
      const auto [fused, recorded] = both_vjps(f, x.to(dt), gv.to(dt));
      const double tol = dt == kFloat64 ? 1e-14 : 1e-6;
      REQUIRE_ALLCLOSE(fused, expected.to(dt), tol, tol);
      REQUIRE_ALLCLOSE(recorded, expected.to(dt), tol, tol);
      REQUIRE(!has_nan(fused));
      REQUIRE(!has_nan(recorded));
    }
  }
  // second derivatives through a fully masked row are zero, not NaN
  const Tensor h = hessian([](const Tensor& t) { return logsumexp(t, 0); }, f64({-kInf, -kInf}));
  REQUIRE_ALLCLOSE(h, zeros({2, 2}, kFloat64), 0, 0);
  const Tensor h2 = hessian([](const Tensor& t) { return sum(softmax(t, 0) * f64({1.0, 2.0})); }, f64({-kInf, -kInf}));
  REQUIRE_ALLCLOSE(h2, zeros({2, 2}, kFloat64), 0, 0);
}

// ---------------------------------------------------------------- properties on random inputs

TEST_CASE("softmax: rows sum to 1, are positive, and agree with exp(log_softmax) and x - logsumexp", "[ops][softmax][properties]") {
  const std::vector<std::pair<Shape, int>> cases = {{Shape{7}, 0},       {Shape{4, 9}, 1},       {Shape{4, 9}, 0},
                                                    {Shape{3, 5, 2}, 1}, {Shape{2, 3, 4, 5}, 2}, {Shape{2, 3, 4, 5}, -1},
                                                    {Shape{2, 3, 4, 5}, 0}};
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    Generator gen(seed);
    for (const auto& [s, d] : cases) {
      for (DType dt : {kFloat64, kFloat32}) {
        INFO("seed " << seed << ", shape " << s.str() << ", dim " << d << ", " << dtype_name(dt));
        const double tol = dt == kFloat64 ? 1e-14 : 1e-6;
        const Tensor x = randn(s, gen, dt) * 4.0;
        const Tensor y = softmax(x, d);
        for (const auto& row : rows_of(y, d)) {
          double total = 0.0;
          bool positive = true;
          for (double v : row) {
            total += v;
            positive = positive && v > 0.0;
          }
          REQUIRE(positive);
          REQUIRE(std::abs(total - 1.0) <= tol);
        }
        REQUIRE_ALLCLOSE(exp(log_softmax(x, d)), y, 10 * tol, 1e-300);
        REQUIRE_ALLCLOSE(log_softmax(x, d), x - logsumexp(x, d, /*keepdim=*/true), 0, 10 * tol);
        // argmax is preserved
        REQUIRE_ALLCLOSE(argmax(y, d), argmax(x, d), 0, 0);
      }
    }
  }
}

TEST_CASE("softmax: adding a constant per row changes nothing (logsumexp shifts by it)", "[ops][softmax][properties]") {
  const std::vector<std::pair<Shape, int>> cases = {{Shape{6}, 0}, {Shape{4, 7}, 1}, {Shape{4, 7}, 0}, {Shape{2, 5, 3}, 1},
                                                    {Shape{2, 3, 4, 2}, 2}};
  for (std::uint64_t seed : {4u, 5u}) {
    Generator gen(seed);
    for (const auto& [s, d] : cases) {
      INFO("seed " << seed << ", shape " << s.str() << ", dim " << d);
      Shape cs = s;
      cs[wrap_dim(zeros(s), d)] = 1;
      {  // float64, arbitrary shifts up to 1e3
        const Tensor x = randn(s, gen, kFloat64) * 3.0;
        const Tensor c = randn(cs, gen, kFloat64) * 1e3;
        // rounding x + c costs up to ulp(1e3) ~ 1e-13 per logit
        REQUIRE_ALLCLOSE(softmax(x + c, d), softmax(x, d), 1e-12, 1e-15);
        REQUIRE_ALLCLOSE(log_softmax(x + c, d), log_softmax(x, d), 1e-12, 1e-12);
        REQUIRE_ALLCLOSE(logsumexp(x + c, d, true), logsumexp(x, d, true) + c, 1e-14, 1e-12);
      }
      {  // float32 and float64 on a grid (multiples of 1/16 plus integers): softmax exactly
        for (DType dt : {kFloat64, kFloat32}) {
          std::vector<double> xv, cv;
          for (std::int64_t k = 0; k < s.numel(); ++k) xv.push_back(std::round(gen.normal() * 48.0) / 16.0);
          for (std::int64_t k = 0; k < cs.numel(); ++k) cv.push_back(std::round(gen.normal() * 40.0));
          const Tensor x = from_vector(xv, s, kFloat64).to(dt), c = from_vector(cv, cs, kFloat64).to(dt);
          // (x + c) - max(x + c) = x - max(x) exactly: softmax is bit-identical
          REQUIRE_ALLCLOSE(softmax(x + c, d), softmax(x, d), 0, 0);
          // log_softmax works on x - max as well (a few ulp of the result); logsumexp rounds a number
          // of the size of c: a few ulp(128)
          REQUIRE_ALLCLOSE(log_softmax(x + c, d), log_softmax(x, d), 0, dt == kFloat64 ? 1e-14 : 4e-6);
          REQUIRE_ALLCLOSE(logsumexp(x + c, d, true), logsumexp(x, d, true) + c, 0, dt == kFloat64 ? 1e-13 : 3e-5);
        }
      }
    }
  }
}

TEST_CASE("softmax: K = 2 is the sigmoid of the difference", "[ops][softmax][properties]") {
  Generator gen(6);
  const Tensor x = randn({9, 2}, gen, kFloat64) * 5.0;
  const Tensor diff = narrow(x, 1, 0, 1) - narrow(x, 1, 1, 1);  // [9, 1]
  const Tensor s = softmax(x, 1);
  REQUIRE_ALLCLOSE(narrow(s, 1, 0, 1), sigmoid(diff), 1e-14, 1e-17);
  REQUIRE_ALLCLOSE(narrow(s, 1, 1, 1), sigmoid(-diff), 1e-14, 1e-17);
  // log p of the winner is -log1p(e^-gap), tiny: absolute accuracy is what log(sum) can give
  REQUIRE_ALLCLOSE(narrow(log_softmax(x, 1), 1, 0, 1), log(sigmoid(diff)), 1e-13, 1e-14);
  // logsumexp(a, b) = max + log1p(exp(-|a - b|))
  REQUIRE_ALLCLOSE(unsqueeze(logsumexp(x, 1), 1), maximum(narrow(x, 1, 0, 1), narrow(x, 1, 1, 1)) + log1p(exp(-abs(diff))),
                   1e-15, 1e-15);
  // along dim 0, and the gradient: d softmax_0 / d x_0 = s (1 - s) = sigmoid'(diff)
  const Tensor xt = transpose(x, 0, 1).detach().requires_grad_();  // [2, 9]
  backward(sum(narrow(softmax(xt, 0), 0, 0, 1)));
  const Tensor sg = sigmoid(transpose(diff, 0, 1));
  REQUIRE_ALLCLOSE(narrow(xt.grad(), 0, 0, 1), sg * (1.0 - sg), 1e-12, 1e-15);
  REQUIRE_ALLCLOSE(narrow(xt.grad(), 0, 1, 1), -(sg * (1.0 - sg)), 1e-12, 1e-15);
}

// ---------------------------------------------------------------- temperature

TEST_CASE("softmax: temperature divides the logits; T -> 0 is one-hot at the argmax, T -> inf is uniform",
          "[ops][softmax][temperature]") {
  Generator gen(11);
  const Tensor x = randn({6, 5}, gen, kFloat64) * 2.0;
  for (double t : {0.3, 1.0, 2.5}) {
    INFO("T = " << t);
    // the same function; the implementation may round differently (e.g. shift by the max first)
    REQUIRE_ALLCLOSE(temperature_scale(x, t), x / t, 0, 0);
    REQUIRE_ALLCLOSE(softmax(x, 1, t), softmax(x / t, 1), 1e-13, 1e-300);
    REQUIRE_ALLCLOSE(log_softmax(x, 1, t), log_softmax(x / t, 1), 1e-13, 1e-14);
    REQUIRE_ALLCLOSE(softmax(x, 1, tensor(t, kFloat64)), softmax(x / t, 1), 1e-13, 1e-300);
    REQUIRE_ALLCLOSE(log_softmax(x, 0, tensor(t, kFloat64)), log_softmax(x / t, 0), 1e-13, 1e-14);
    REQUIRE_ALLCLOSE(softmax(x.to(kFloat32), 1, t), softmax(x.to(kFloat32) / t, 1), 1e-5, 1e-30);
  }
  // one temperature per row, broadcast along the class dim
  const Tensor tr = f64({0.5, 1.0, 2.0, 4.0, 8.0, 16.0}, Shape{6, 1});
  REQUIRE_ALLCLOSE(softmax(x, 1, tr), softmax(x / tr, 1), 1e-13, 1e-300);
  // one temperature per class, broadcast along the rows (softmax(x / T) is then not shift invariant)
  const Tensor tc = f64({0.5, 1.0, 2.0, 4.0, 8.0});
  REQUIRE_ALLCLOSE(softmax(x, 1, tc), softmax(x / tc, 1), 1e-13, 1e-300);
  REQUIRE_ALLCLOSE(log_softmax(x, 1, tc), log_softmax(x / tc, 1), 1e-13, 1e-14);
  // rank 0
  REQUIRE(softmax(tensor(2.0, kFloat64), 0, tensor(0.5, kFloat64)).item() == 1.0);
  REQUIRE(log_softmax(tensor(2.0, kFloat64), -1, 0.5).item() == 0.0);

  const auto xr = rows_of(x, 1);
  const auto am = argmax(x, 1).to_vector();
  SECTION("T -> 0: within (K - 1) exp(-gap / T) of one-hot(argmax), gap = top1 - top2") {
    for (double t : {1e-1, 1e-2, 1e-3, 1e-4}) {
      const auto sr = rows_of(softmax(x, 1, t), 1);
      REQUIRE_ALLCLOSE(argmax(softmax(x, 1, t), 1), argmax(x, 1), 0, 0);
      for (std::size_t r = 0; r < xr.size(); ++r) {
        std::vector<double> sorted = xr[r];
        std::sort(sorted.rbegin(), sorted.rend());
        const double bound = std::exp(-(sorted[0] - sorted[1]) / t);
        INFO("T = " << t << ", row " << r << ", bound " << bound);
        for (std::size_t j = 0; j < sr[r].size(); ++j) {
          const bool top = static_cast<double>(j) == am[r];
          REQUIRE(std::abs(sr[r][j] - (top ? 1.0 : 0.0)) <= (top ? 4.0 : 1.0) * bound + 1e-16);
        }
      }
    }
  }
  SECTION("T -> inf: within (exp(2 max|x| / T) - 1) / K of 1/K") {
    double m = 0.0;
    for (double v : x.to_vector()) m = std::max(m, std::abs(v));
    for (double t : {1e2, 1e4, 1e8}) {
      INFO("T = " << t);
      const double bound = std::expm1(2 * m / t) / 5.0 + 1e-16;
      for (double v : softmax(x, 1, t).to_vector()) REQUIRE(std::abs(v - 0.2) <= bound);
    }
  }
  SECTION("the entropy of every row grows with T") {
    std::vector<double> previous(6, -1.0);
    for (double t : {0.05, 0.2, 1.0, 5.0, 25.0}) {
      const auto sr = rows_of(softmax(x, 1, t), 1);
      for (std::size_t r = 0; r < sr.size(); ++r) {
        double h = 0.0;
        for (double p : sr[r]) h -= p > 0 ? p * std::log(p) : 0.0;
        INFO("T = " << t << ", row " << r);
        REQUIRE(h > previous[r]);
        REQUIRE(h <= std::log(5.0) + 1e-15);
        previous[r] = h;
      }
    }
  }
}

TEST_CASE("softmax: a temperature tensor that requires grad: gradcheck w.r.t. x and T", "[ops][softmax][temperature][gradcheck]") {
  Generator gen(12);
  const Tensor x = (randn({3, 4}, gen, kFloat64) * 2.0).detach().requires_grad_();
  const Tensor t0 = tensor(1.7, kFloat64).requires_grad_();                               // rank 0, the usual case
  const Tensor tr = from_vector({0.5, 1.3, 2.2}, Shape{3, 1}, kFloat64).requires_grad_();  // per row
  const Tensor tc = f64({0.7, 1.1, 1.9, 2.4}).requires_grad_();                           // per class
  for (const Tensor& t : {t0, tr, tc}) {
    INFO("T of shape " << t.shape().str());
    testing::require_gradcheck([](const std::vector<Tensor>& v) { return softmax(v[0], 1, v[1]); }, {x, t}, true);
    testing::require_gradcheck([](const std::vector<Tensor>& v) { return log_softmax(v[0], 1, v[1]); }, {x, t}, true);
    testing::require_gradcheck([](const std::vector<Tensor>& v) { return temperature_scale(v[0], v[1]); }, {x, t}, true);
  }
  // T only (x constant), along dim 0
  const Tensor xc = x.detach();
  testing::require_gradcheck([xc](const std::vector<Tensor>& v) { return softmax(xc, 0, v[0]); }, {t0}, true);
  // by hand: softmax([0, a] / T)_1 = sigmoid(a / T), so d/dT = -a / T^2 s (1 - s)
  const double a = 1.2, tv = 0.8, s = 1.0 / (1.0 + std::exp(-a / tv));
  Tensor t = tensor(tv, kFloat64).requires_grad_();
  backward(narrow(softmax(f64({0.0, a}), 0, t), 0, 1, 1));
  const double expected = -a / (tv * tv) * s * (1 - s);
  REQUIRE(std::abs(t.grad().item() - expected) <= 1e-14 * std::abs(expected));
}

TEST_CASE("softmax: temperatures that are not finite and positive are errors", "[ops][softmax][temperature][bad]") {
  const Tensor x = zeros({2, 4}, kFloat64);
  for (double t : {0.0, -0.0, -1.0, kNaN, kInf, -kInf}) {
    INFO("T = " << t);
    REQUIRE_THAT(error_of([&] { softmax(x, 1, t); }), Contains("temperature") && Contains("T > 0"));
    REQUIRE_THAT(error_of([&] { log_softmax(x, 1, t); }), Contains("temperature"));
    REQUIRE_THAT(error_of([&] { temperature_scale(x, t); }), StartsWith("temperature_scale:"));
    REQUIRE_THAT(error_of([&] { softmax(x, 1, tensor(t, kFloat64)); }), Contains("temperature"));
    REQUIRE_THAT(error_of([&] { log_softmax(x, 1, tensor(t, kFloat64).requires_grad_()); }), Contains("temperature"));
  }
  // one bad element among good ones (per-row T)
  REQUIRE_THAT(error_of([&] { softmax(x, 1, f64({1.0, -0.5}, Shape{2, 1})); }), Contains("temperature") && Contains("-0.5"));
  // dtype, integer T, shape
  REQUIRE_THAT(error_of([&] { softmax(x, 1, tensor(1.0, kFloat32)); }), Contains("temperature") && Contains("float32"));
  REQUIRE_THAT(error_of([&] { softmax(x, 1, from_vector(std::vector<std::int64_t>{2}, Shape{})); }),
               Contains("temperature") && Contains("int64"));
  REQUIRE_THROWS_AS(softmax(x, 1, f64({1.0, 2.0, 3.0})), InvalidArgument);  // [3] does not broadcast to [2, 4]
  REQUIRE_THAT(error_of([&] { temperature_scale(from_vector(std::vector<std::int64_t>{1, 2}, Shape{2}), 1.0); }),
               StartsWith("temperature_scale:") && Contains("int64"));
}

// The temperature overloads subtract the (detached) row max before dividing: softmax((x - max) / T)
// is the same function and cannot overflow, where x / T would turn a whole row into -inf (a
// "masked" row of zeros) or into +inf (an error about logits the caller never passed).
TEST_CASE("softmax: a tiny temperature gives one-hot rows, not zeros or an error", "[ops][softmax][temperature]") {
  REQUIRE_ALLCLOSE(softmax(f64({-1.0, -2.0}), 0, 1e-310), f64({1.0, 0.0}), 0, 0);
  REQUIRE_ALLCLOSE(softmax(tensor({-50.0, -100.0}), 0, 1e-37), tensor({1.0, 0.0}), 0, 0);
  REQUIRE_NOTHROW(softmax(f64({1.0, 2.0}), 0, 1e-310));
  REQUIRE_ALLCLOSE(softmax(f64({1.0, 2.0}), 0, 1e-310), f64({0.0, 1.0}), 0, 0);
}

// ---------------------------------------------------------------- Jacobian and Hessian

TEST_CASE("softmax: the Jacobian is diag(s) - s s^T: symmetric, zero row/column sums, PSD, rank K - 1, eigenvalues <= 1/2",
          "[ops][softmax][jacobian]") {
  Generator gen(21);
  const UnaryFunction f = [](const Tensor& t) { return softmax(t, 0); };
  for (int k : {2, 3, 5, 8}) {
    for (int rep = 0; rep < 3; ++rep) {
      INFO("K = " << k << ", rep " << rep);
      const Tensor x = randn({k}, gen, kFloat64) * 1.5;
      const RowMajor jm = as_matrix(jacobian(f, x));
      const auto s = softmax(x, 0).to_vector();
      RowMajor expected(k, k);
      for (int i = 0; i < k; ++i)
        for (int j = 0; j < k; ++j) expected(i, j) = (i == j ? s[i] : 0.0) - s[i] * s[j];
      REQUIRE((jm - expected).cwiseAbs().maxCoeff() <= 2e-16);
      REQUIRE((jm - jm.transpose()).cwiseAbs().maxCoeff() == 0.0);  // -s_i s_j both ways
      REQUIRE(jm.rowwise().sum().cwiseAbs().maxCoeff() <= 1e-15);
      REQUIRE(jm.colwise().sum().cwiseAbs().maxCoeff() <= 1e-15);
      REQUIRE((jm * Eigen::VectorXd::Ones(k)).cwiseAbs().maxCoeff() <= 1e-15);  // ones in the null space

      const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es{Eigen::MatrixXd(jm)};
      REQUIRE(es.info() == Eigen::Success);
      const Eigen::VectorXd lambda = es.eigenvalues();  // ascending
      INFO("eigenvalues " << lambda.transpose());
      REQUIRE(lambda.minCoeff() >= -1e-12);  // positive semi-definite
      int rank = 0;
      for (int i = 0; i < k; ++i) rank += lambda(i) > 1e-12 ? 1 : 0;
      REQUIRE(rank == k - 1);
      // the null vector is the all-ones direction
      REQUIRE(std::abs(std::abs(es.eigenvectors().col(0).sum()) - std::sqrt(static_cast<double>(k))) <= 1e-12);
      REQUIRE(lambda.maxCoeff() <= 0.5 + 1e-15);
      // trace = sum p (1 - p)
      double trace = 0.0;
      for (double p : s) trace += p * (1 - p);
      REQUIRE(std::abs(jm.trace() - trace) <= 1e-15);
    }
  }
  SECTION("K = 2 with equal logits attains the largest eigenvalue 1/2") {
    const RowMajor jm = as_matrix(jacobian(f, f64({0.7, 0.7})));
    RowMajor expected(2, 2);
    expected << 0.25, -0.25, -0.25, 0.25;
    REQUIRE((jm - expected).cwiseAbs().maxCoeff() == 0.0);
    const Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es{Eigen::MatrixXd(jm)};
    REQUIRE(std::abs(es.eigenvalues()(1) - 0.5) <= 1e-15);
    REQUIRE(std::abs(es.eigenvalues()(0)) <= 1e-16);
  }
  SECTION("rows are independent: the Jacobian of a [2, 3] softmax along dim 1 is block diagonal") {
    const Tensor x = randn({2, 3}, gen, kFloat64);
    const RowMajor jm = as_matrix(jacobian([](const Tensor& t) { return softmax(t, 1); }, x));
    const auto s = softmax(x, 1).to_vector();
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 6; ++j) {
        const double e = i / 3 == j / 3 ? (i == j ? s[i] : 0.0) - s[i] * s[j] : 0.0;
        REQUIRE(std::abs(jm(i, j) - e) <= 2e-16);
      }
  }
  SECTION("log_softmax: J = I - 1 s^T; logsumexp: J = s^T") {
    const Tensor x = randn({4}, gen, kFloat64);
    const auto s = softmax(x, 0).to_vector();
    const RowMajor jl = as_matrix(jacobian([](const Tensor& t) { return log_softmax(t, 0); }, x));
    const RowMajor je = as_matrix(jacobian([](const Tensor& t) { return unsqueeze(logsumexp(t, 0), 0); }, x));
    for (int i = 0; i < 4; ++i) {
      REQUIRE(std::abs(je(0, i) - s[i]) <= 1e-15);
      for (int j = 0; j < 4; ++j) REQUIRE(std::abs(jl(i, j) - ((i == j ? 1.0 : 0.0) - s[j])) <= 1e-15);
    }
  }
}

TEST_CASE("logsumexp: the Hessian (double backward) is the categorical covariance diag(p) - p p^T",
          "[ops][softmax][hessian]") {
  Generator gen(22);
  // p computed here, independently of the library: exp(x - max) / sum
  const auto probs = [](const std::vector<double>& x) {
    double m = -kInf;
    for (double v : x) m = std::max(m, v);
    std::vector<double> p;
    double total = 0.0;
    for (double v : x) total += std::exp(v - m);
    for (double v : x) p.push_back(std::exp(v - m) / total);
    return p;
  };
  const auto covariance = [](const std::vector<double>& p) {
    const auto k = static_cast<Eigen::Index>(p.size());
    RowMajor c(k, k);
    for (Eigen::Index i = 0; i < k; ++i)
      for (Eigen::Index j = 0; j < k; ++j) c(i, j) = (i == j ? p[i] : 0.0) - p[i] * p[j];
    return c;
  };
  for (int k : {1, 2, 4, 7}) {
    INFO("K = " << k);
    const Tensor x = randn({k}, gen, kFloat64) * 2.0;
    const RowMajor h = as_matrix(hessian([](const Tensor& t) { return logsumexp(t, 0); }, x));
    REQUIRE((h - covariance(probs(x.to_vector()))).cwiseAbs().maxCoeff() <= 1e-15);
    // Hessian-vector product agrees
    const Tensor v = randn({k}, gen, kFloat64);
    const Eigen::VectorXd hv = h * Eigen::Map<const Eigen::VectorXd>(v.data<double>(), k);
    const Tensor hvp_t = hvp([](const Tensor& t) { return logsumexp(t, 0); }, x, v);
    REQUIRE_ALLCLOSE(hvp_t, f64(std::vector<double>(hv.data(), hv.data() + k), Shape{k}), 1e-13, 1e-15);
  }
  SECTION("rank 0: logsumexp(x) = x, Hessian 0") {
    REQUIRE(hessian([](const Tensor& t) { return logsumexp(t, 0); }, tensor(2.0, kFloat64)).item() == 0.0);
  }
  SECTION("a batch: sum of row logsumexps has a block-diagonal Hessian") {
    const Tensor x = randn({3, 4}, gen, kFloat64);
    const RowMajor h = as_matrix(hessian([](const Tensor& t) { return sum(logsumexp(t, 1)); }, x));
    const auto rows = rows_of(x, 1);
    RowMajor expected = RowMajor::Zero(12, 12);
    for (int r = 0; r < 3; ++r) expected.block(4 * r, 4 * r, 4, 4) = covariance(probs(rows[static_cast<std::size_t>(r)]));
    REQUIRE((h - expected).cwiseAbs().maxCoeff() <= 1e-15);
    // along dim 0 of the transpose, keepdim: the same matrix with the indices transposed
    const RowMajor h0 = as_matrix(hessian([](const Tensor& t) { return sum(logsumexp(t, 0, true)); }, transpose(x, 0, 1)));
    for (int i = 0; i < 12; ++i)
      for (int j = 0; j < 12; ++j) REQUIRE(std::abs(h0((i % 4) * 3 + i / 4, (j % 4) * 3 + j / 4) - h(i, j)) <= 1e-15);
  }
  SECTION("masked entries: zero rows and columns, covariance of the rest") {
    const Tensor x = f64({0.3, -1.0, 2.0, 0.5});
    const Tensor mask = from_vector(std::vector<bool>{false, true, false, false}, Shape{4});
    const RowMajor h = as_matrix(hessian([mask](const Tensor& t) { return logsumexp(masked_fill(t, mask, -kInf), 0); }, x));
    const RowMajor expected = covariance(probs({0.3, -kInf, 2.0, 0.5}));
    REQUIRE((h - expected).cwiseAbs().maxCoeff() <= 1e-15);
    REQUIRE(h.row(1).cwiseAbs().maxCoeff() == 0.0);
  }
}

// ---------------------------------------------------------------- gradcheck on random inputs

namespace {
struct DimCase {
  Shape shape;
  int dim;
};
// rank 0, size-1 dims (as the class dim and elsewhere), negative dims, ranks 1 to 4
const std::vector<DimCase> kDimCases = {{Shape{}, 0},           {Shape{}, -1},          {Shape{1}, 0},
                                        {Shape{5}, -1},         {Shape{3, 4}, 0},       {Shape{3, 4}, 1},
                                        {Shape{3, 1}, 1},       {Shape{1, 4}, 0},       {Shape{2, 1, 3}, 1},
                                        {Shape{2, 1, 3}, 2},    {Shape{2, 3, 1, 2}, 1}, {Shape{2, 3, 1, 2}, 2},
                                        {Shape{2, 3, 1, 2}, -1}, {Shape{1, 2, 3, 2}, 0}};
}  // namespace

TEST_CASE("softmax, log_softmax, logsumexp: gradcheck and gradgradcheck over shapes, dims and keepdim",
          "[ops][softmax][gradcheck]") {
  Generator gen(31);
  for (const DimCase& c : kDimCases) {
    INFO("shape " << c.shape.str() << ", dim " << c.dim);
    const Tensor x = (randn(c.shape, gen, kFloat64) * 2.0).detach().requires_grad_();
    const int d = c.dim;
    testing::require_gradcheck([d](const std::vector<Tensor>& v) { return softmax(v[0], d); }, {x}, true);
    testing::require_gradcheck([d](const std::vector<Tensor>& v) { return log_softmax(v[0], d); }, {x}, true);
    for (bool keepdim : {false, true}) {
      INFO("keepdim " << keepdim);
      testing::require_gradcheck([d, keepdim](const std::vector<Tensor>& v) { return logsumexp(v[0], d, keepdim); }, {x},
                                 true);
    }
  }
  // fast mode on a larger input (each row of a [8, 50] matrix)
  const Tensor big = (randn({8, 50}, gen, kFloat64) * 3.0).detach().requires_grad_();
  for (const NamedOp& op : kOps) {
    INFO(op.name);
    const DimOp f = op.f;
    const GradcheckReport r =
        gradcheck([f](const std::vector<Tensor>& v) { return f(v[0], 1); }, {big}, GradcheckOptions{.fast_mode = true, .seed = 3});
    INFO(r);
    REQUIRE(r.ok());
  }
}

TEST_CASE("softmax, log_softmax, logsumexp: gradcheck and gradgradcheck through -inf masks and fully masked rows",
          "[ops][softmax][gradcheck][mask]") {
  // Central differences at a -inf entry mean nothing, so the mask is applied inside the checked
  // function: f(x) = op(masked_fill(x, mask, -inf), dim). Outputs that are -inf whatever x is
  // (log_softmax at masked entries, logsumexp of fully masked rows) would difference to
  // -inf - -inf = NaN, so they are set to 0 after the op.
  struct MaskCase {
    Shape shape;
    int dim;
    std::vector<std::int64_t> full_rows;
  };
  const std::vector<MaskCase> cases = {{Shape{6}, 0, {}},         {Shape{4, 5}, 1, {2}},      {Shape{4, 5}, 0, {1}},
                                       {Shape{2, 4, 3}, 1, {0, 5}}, {Shape{2, 3, 4, 2}, 2, {3}}, {Shape{3, 1}, 1, {1}}};
  Generator gen(32);
  for (const MaskCase& c : cases) {
    const Tensor mask = make_mask(c.shape, c.dim, 0.35, c.full_rows, gen);
    const Tensor x = (randn(c.shape, gen, kFloat64) * 2.0).detach().requires_grad_();
    for (const NamedOp& op : kOps) {
      INFO(op.name << ", shape " << c.shape.str() << ", dim " << c.dim << ", mask " << mask);
      const DimOp f = op.f;
      const int d = c.dim;
      const Tensor out_mask = isinf(f(masked_fill(x.detach(), mask, -kInf), d));
      const Function checked = [f, d, mask, out_mask](const std::vector<Tensor>& v) {
        return masked_fill(f(masked_fill(v[0], mask, -kInf), d), out_mask, 0.0);
      };
      testing::require_gradcheck(checked, {x}, true);
    }
  }
}

// ---------------------------------------------------------------- the two backward paths

TEST_CASE("softmax, log_softmax, logsumexp: the fused backward and the recorded tensor-op backward agree",
          "[ops][softmax][backward]") {
  const std::vector<DimCase> cases = {{Shape{}, 0},           {Shape{9}, 0},           {Shape{5, 7}, 1},
                                      {Shape{5, 7}, 0},       {Shape{3, 4, 6}, 1},     {Shape{2, 3, 4, 5}, 3},
                                      {Shape{2, 3, 4, 5}, 1}, {Shape{4, 1}, 1}};
  for (std::uint64_t seed : {41u, 42u}) {
    Generator gen(seed);
    for (const DimCase& c : cases) {
      for (int masking : {0, 1, 2}) {  // none, some -inf entries, some entries and a fully masked row
        Tensor x = randn(c.shape, gen, kFloat64) * 3.0;
        if (masking > 0) {
          const std::vector<std::int64_t> full = masking == 2 ? std::vector<std::int64_t>{0} : std::vector<std::int64_t>{};
          x = masked_fill(x, make_mask(c.shape, c.dim, 0.3, full, gen), -kInf).detach();
        }
        for (const NamedOp& op : kOps) {
          INFO(op.name << ", seed " << seed << ", shape " << c.shape.str() << ", dim " << c.dim << ", masking " << masking);
          const DimOp f = op.f;
          const int d = c.dim;
          const Tensor g = randn(f(x, d).shape(), gen, kFloat64);
          const auto [fused, recorded] = both_vjps([f, d](const Tensor& t) { return f(t, d); }, x, g);
          REQUIRE(!has_nan(fused));
          REQUIRE(!has_nan(recorded));
          REQUIRE_ALLCLOSE(fused, recorded, 1e-12, 1e-12);
        }
      }
    }
  }
}

// ---------------------------------------------------------------- bad input

TEST_CASE("softmax, log_softmax, logsumexp: bad input throws InvalidArgument naming the op", "[ops][softmax][bad]") {
  const Tensor nan_row = tensor({{0.0, 1.0}, {kNaN, 2.0}}, kFloat64);
  const Tensor inf_row = tensor({{0.0, 1.0}, {3.0, kInf}}, kFloat64);
  for (const NamedOp& op : kOps) {
    const std::string prefix = std::string(op.name) + ":";
    INFO(op.name);
    const DimOp& f = op.f;
    // dim out of range
    REQUIRE_THAT(error_of([&] { f(zeros({2, 3}, kFloat64), 2); }), StartsWith(prefix) && Contains("dim 2 is out of range"));
    REQUIRE_THAT(error_of([&] { f(zeros({2, 3}, kFloat64), -3); }), StartsWith(prefix) && Contains("dim -3"));
    REQUIRE_THAT(error_of([&] { f(tensor(1.0, kFloat64), 1); }), StartsWith(prefix) && Contains("out of range"));
    // K = 0 is not an error (issue 11): PyTorch's values, checked in "empty tensors: shape ops, ..." below
    REQUIRE_NOTHROW(f(zeros({2, 0}, kFloat64), 1));
    REQUIRE_NOTHROW(f(zeros({3, 0, 2}), -2));
    // NaN and +inf logits, float64 and float32, with or without requires_grad (checked in forward)
    for (DType dt : {kFloat64, kFloat32}) {
      REQUIRE_THAT(error_of([&] { f(nan_row.to(dt), 1); }), StartsWith(prefix) && Contains("NaN") && Contains("row 1"));
      REQUIRE_THAT(error_of([&] { f(nan_row.to(dt).detach().requires_grad_(), 0); }), StartsWith(prefix) && Contains("NaN"));
      REQUIRE_THAT(error_of([&] { f(inf_row.to(dt), 1); }), StartsWith(prefix) && Contains("+inf"));
      REQUIRE_THAT(error_of([&] { f(inf_row.to(dt), 0); }), StartsWith(prefix) && Contains("+inf"));
    }
    REQUIRE_THAT(error_of([&] { f(tensor(kNaN, kFloat64), 0); }), StartsWith(prefix) && Contains("NaN"));
    // NaN next to -inf is still NaN
    REQUIRE_THAT(error_of([&] { f(f64({-kInf, kNaN}), 0); }), StartsWith(prefix) && Contains("NaN"));
    // integer and bool dtypes, undefined tensors
    REQUIRE_THAT(error_of([&] { f(from_vector(std::vector<std::int64_t>{1, 2}, Shape{2}), 0); }),
                 StartsWith(prefix) && Contains("int64") && Contains("float"));
    REQUIRE_THAT(error_of([&] { f(from_vector(std::vector<bool>{true, false}, Shape{2}), 0); }),
                 StartsWith(prefix) && Contains("bool"));
    REQUIRE_THAT(error_of([&] { f(Tensor(), 0); }), StartsWith(prefix) && Contains("undefined"));
  }
  // not errors: empty non-class dims give empty results of the right shape
  REQUIRE(softmax(zeros({0, 3}, kFloat64), 1).shape() == Shape{0, 3});
  REQUIRE(log_softmax(zeros({2, 0, 3}), 2).shape() == Shape{2, 0, 3});
  REQUIRE(logsumexp(zeros({0, 3}, kFloat64), 1).shape() == Shape{0});
  REQUIRE(logsumexp(zeros({0, 3}, kFloat64), 1, true).shape() == Shape{0, 1});
}

// ---------------------------------------------------------------- learned temperature: dT at masks and extreme T, bad temperatures

// y = op(x / T): dL/dT = -(1/T^2) sum_k x_k dz_k with dz = dL/d(x / T). A -inf logit is x / T = -inf
// for every T, a constant, so it adds nothing to dT (its probability is exactly 0 and it enters no
// other output). Central differences cannot run at -inf, so the mask is applied inside the checked
// function: f(x, T) = op(masked_fill(x, mask, -inf), dim, T); outputs that are -inf whatever x and
// T are (log_softmax at masked entries) are then set to 0.
TEST_CASE("temperature: dT at -inf masks is finite and passes gradcheck and gradgradcheck",
          "[issue11][ops][softmax][temperature][mask]") {
  Generator gen(1101);
  const Tensor x = (randn({4, 5}, gen, kFloat64) * 2.0).detach().requires_grad_();
  std::vector<bool> m(20, false);
  for (int k : {1, 3, 7, 11, 12, 18}) m[static_cast<std::size_t>(k)] = true;
  const Tensor mask = from_vector(m, Shape{4, 5});
  const Tensor t0 = tensor(1.3, kFloat64).requires_grad_();
  const Tensor tr = f64({0.6, 1.1, 2.3, 0.9}, Shape{4, 1}).requires_grad_();
  for (const NamedTempOp& op : kTempOps)
    for (const Tensor& t : {t0, tr}) {
      INFO(op.name << ", T of shape " << t.shape().str());
      const TempOp f = op.f;
      const Tensor out_mask = isinf(f(masked_fill(x.detach(), mask, -kInf), 1, t.detach()));
      const Function checked = [f, mask, out_mask](const std::vector<Tensor>& v) {
        return masked_fill(f(masked_fill(v[0], mask, -kInf), 1, v[1]), out_mask, 0.0);
      };
      testing::require_gradcheck(checked, {x, t}, true);
      // T alone, x a constant holding the -inf entries (no finite differences over them)
      const Tensor xm = masked_fill(x.detach(), mask, -kInf);
      const Function t_only = [f, xm, out_mask](const std::vector<Tensor>& v) {
        return masked_fill(f(xm, 1, v[0]), out_mask, 0.0);
      };
      testing::require_gradcheck(t_only, {t}, true);
    }
}

// dL/dT for L = sum(g * op(x / T)) along the last dim of a [R, K] x, by hand in double: per row,
// p = softmax(x / T) over the finite entries, dz = dL/d(x / T) (softmax: p (g - <g, p>); log_softmax:
// g - p sum(g)), dT = -(1/T) sum over the finite entries of (x / T) dz. Masked entries add nothing:
// their outputs (softmax 0, log_softmax -inf) are the same for every T, so for log_softmax the
// cotangent there is left out of sum(g) as well.
double expected_temperature_grad(bool log, const std::vector<double>& x, const std::vector<double>& g, std::int64_t K,
                                 double t) {
  double dT = 0.0;
  for (std::size_t r0 = 0; r0 < x.size(); r0 += static_cast<std::size_t>(K)) {
    double m = -kInf, s = 0.0, gsum = 0.0, gp = 0.0;
    for (std::int64_t k = 0; k < K; ++k) m = std::max(m, x[r0 + static_cast<std::size_t>(k)] / t);
    std::vector<double> p(static_cast<std::size_t>(K), 0.0);
    for (std::int64_t k = 0; k < K; ++k) {
      const double xk = x[r0 + static_cast<std::size_t>(k)];
      if (std::isfinite(xk)) p[static_cast<std::size_t>(k)] = std::exp(xk / t - m);
      s += p[static_cast<std::size_t>(k)];
    }
    for (std::int64_t k = 0; k < K; ++k) {
      p[static_cast<std::size_t>(k)] /= s;
      if (std::isfinite(x[r0 + static_cast<std::size_t>(k)])) gsum += g[r0 + static_cast<std::size_t>(k)];
      gp += g[r0 + static_cast<std::size_t>(k)] * p[static_cast<std::size_t>(k)];
    }
    for (std::int64_t k = 0; k < K; ++k) {
      const double xk = x[r0 + static_cast<std::size_t>(k)], gk = g[r0 + static_cast<std::size_t>(k)];
      const double pk = p[static_cast<std::size_t>(k)];
      if (!std::isfinite(xk)) continue;
      const double dz = log ? gk - pk * gsum : pk * (gk - gp);
      dT -= (xk / t) * dz / t;
    }
  }
  return dT;
}

TEST_CASE("temperature: dT with -inf logits is finite for every cotangent and matches the formula by hand",
          "[issue11][ops][softmax][temperature][mask]") {
  Generator gen(1102);
  for (DType dt : {kFloat64, kFloat32}) {
    const Tensor x = masked_fill(randn({3, 6}, gen, dt), from_vector(std::vector<bool>{
                                                             false, true, false, false, true, false,  //
                                                             true, false, false, false, false, false,  //
                                                             false, false, true, true, false, false},
                                                                    Shape{3, 6}),
                                 -kInf);
    const Tensor g = randn({3, 6}, gen, dt);
    const Tensor g_finite = where(isinf(x), 0.0, g);  // the usual case: masked outputs carry no cotangent
    for (const NamedTempOp& op : kTempOps) {
      const bool log = std::string(op.name) == "log_softmax";
      for (const Tensor& gg : {g, g_finite}) {
        INFO(op.name << ", " << dtype_name(dt) << ", cotangent " << gg);
        const double got = temperature_grad(op.f, x, 1, 0.7, gg);
        const double expected = expected_temperature_grad(log, x.to_vector(), gg.to_vector(), 6, 0.7);
        REQUIRE(std::isfinite(got));
        REQUIRE(std::abs(got - expected) <= (dt == kFloat64 ? 1e-12 : 1e-5) * (1.0 + std::abs(expected)));
        // the gradient of x is finite too, and both agree with the recorded (create_graph) formulas
        Tensor xl = x.detach().requires_grad_();
        Tensor tl = tensor(0.7, dt).requires_grad_();
        backward(sum(mul(op.f(xl, 1, tl), gg)));
        REQUIRE(all_finite(xl.grad()));
        const auto rec = grad({sum(mul(op.f(xl, 1, tl), gg))}, {xl, tl}, {}, GradOptions{.create_graph = true});
        REQUIRE_ALLCLOSE(rec.at(0), xl.grad(), 1e-5, 1e-6);
        REQUIRE_ALLCLOSE(rec.at(1), tl.grad(), 1e-5, 1e-6);
      }
      // the cotangent at masked entries does not reach T (their outputs do not depend on it)
      REQUIRE(std::abs(temperature_grad(op.f, x, 1, 0.7, g) - temperature_grad(op.f, x, 1, 0.7, g_finite)) <=
                (dt == kFloat64 ? 1e-13 : 1e-5));
    }
    // temperature_scale alone: d(x / T)/dT = -x / T^2, and 0 where x = -inf (x / T is -inf for every T)
    Tensor tl2 = tensor(2.0, dt).requires_grad_();
    backward(sum(where(isinf(x), 0.0, temperature_scale(x, tl2))));
    const Tensor xf = where(isinf(x), 0.0, x);
    REQUIRE(std::abs(tl2.grad().item() - (-sum(xf).item() / 4.0)) <= 1e-5 * (1.0 + std::abs(sum(xf).item())));
  }
}

TEST_CASE("temperature: a fully -inf row has zero gradient for x and T (documented policy)",
          "[issue11][ops][softmax][temperature][mask]") {
  Generator gen(1103);
  const Tensor base = randn({3, 4}, gen, kFloat64);
  const Tensor full = from_vector(std::vector<bool>{false, false, false, false, true, true, true, true,  //
                                                    false, true, false, false},
                                  Shape{3, 4});
  const Tensor x = masked_fill(base, full, -kInf);
  const Tensor g = randn({3, 4}, gen, kFloat64);
  for (const NamedTempOp& op : kTempOps) {
    INFO(op.name);
    // rank-0 T: the masked row adds nothing, so dT equals dT over the other two rows alone
    const double with_row = temperature_grad(op.f, x, 1, 1.4, g);
    const Tensor keep = from_vector(std::vector<std::int64_t>{0, 2}, Shape{2});
    const double without_row = temperature_grad(op.f, index_select(x, 0, keep), 1, 1.4, index_select(g, 0, keep));
    REQUIRE(std::isfinite(with_row));
    REQUIRE(std::abs(with_row - without_row) <= 1e-12 * (1.0 + std::abs(without_row)));
    // per-row T: the masked row's T gets exactly 0, x's gradient is 0 on that row
    Tensor xl = x.detach().requires_grad_();
    Tensor tr = f64({0.5, 0.8, 1.9}, Shape{3, 1}).requires_grad_();
    backward(sum(mul(op.f(xl, 1, tr), g)));
    REQUIRE(all_finite(tr.grad()));
    REQUIRE(tr.grad().to_vector()[1] == 0.0);
    for (int k = 4; k < 8; ++k) REQUIRE(xl.grad().to_vector()[static_cast<std::size_t>(k)] == 0.0);
    REQUIRE(all_finite(xl.grad()));
    // and with create_graph (the recorded formulas)
    Tensor xl2 = x.detach().requires_grad_();
    Tensor tr2 = f64({0.5, 0.8, 1.9}, Shape{3, 1}).requires_grad_();
    const auto gr = grad({sum(mul(op.f(xl2, 1, tr2), g))}, {xl2, tr2}, {}, GradOptions{.create_graph = true});
    REQUIRE(all_finite(gr.at(0)));
    REQUIRE_ALLCLOSE(gr.at(1), tr.grad(), 1e-12, 1e-14);
  }
}

// softmax([0, a] / T)_1 = sigmoid(a / T) = s, so d/dT = -(a / T^2) s (1 - s): finite however small
// T is, as long as a / T is moderate. x / T^2 underflows or overflows long before that.
TEST_CASE("temperature: tiny and huge T give the exact finite dT, never NaN", "[issue11][ops][softmax][temperature]") {
  struct Case {
    DType dt;
    double t;
  };
  for (const Case& c : {Case{kFloat64, 1e-30}, Case{kFloat64, 1e-200}, Case{kFloat64, 1e-300}, Case{kFloat32, 1e-30},
                        Case{kFloat32, 1e-18}, Case{kFloat64, 1e200}, Case{kFloat32, 1e30}}) {
    INFO(dtype_name(c.dt) << ", T = " << c.t);
    const double a = -0.8 * c.t;  // a / T = -0.8
    const double s = 1.0 / (1.0 + std::exp(0.8));
    const double expected = -(a / c.t) / c.t * s * (1 - s);  // = 0.8 / T * s (1 - s)
    Tensor t = tensor(c.t, c.dt).requires_grad_();
    backward(narrow(softmax(tensor({0.0, a}, c.dt), 0, t), 0, 1, 1));
    REQUIRE(std::isfinite(t.grad().item()));
    REQUIRE(std::abs(t.grad().item() - expected) <= (c.dt == kFloat64 ? 1e-12 : 1e-5) * std::abs(expected) + 1e-300);
    // log_softmax: log sigmoid(a / T), d/dT = -(a / T^2) (1 - s)
    Tensor t2 = tensor(c.t, c.dt).requires_grad_();
    backward(narrow(log_softmax(tensor({0.0, a}, c.dt), 0, t2), 0, 1, 1));
    const double expected2 = -(a / c.t) / c.t * (1 - s);
    REQUIRE(std::abs(t2.grad().item() - expected2) <= (c.dt == kFloat64 ? 1e-12 : 1e-5) * std::abs(expected2) + 1e-300);
  }
  // x / T overflows (to -inf) for finite logits: the probability is 0 (the limit) and so is the
  // contribution to dT; the row's other entries are one-hot, so dT = 0 exactly.
  for (DType dt : {kFloat32, kFloat64}) {
    const double t = dt == kFloat32 ? 1e-37 : 1e-305;
    const Tensor x = tensor({{-50.0, -100.0, -75.0}, {3.0, 1.0, -2.0}}, dt);
    for (const NamedTempOp& op : kTempOps) {
      INFO(op.name << ", " << dtype_name(dt) << ", T = " << t);
      Tensor xl = x.detach().requires_grad_();
      Tensor tl = tensor(t, dt).requires_grad_();
      const Tensor y = op.f(xl, 1, tl);
      // only the argmax entries carry a cotangent (log_softmax of the others is -inf or ~ -1e39,
      // whose derivative in T, -x / T^2, is beyond the dtype's range)
      backward(sum(where(eq(x, max(x, 1, /*keepdim=*/true)), y, 0.0)));
      REQUIRE(tl.grad().item() == 0.0);
      REQUIRE(all_finite(xl.grad()));
    }
    Tensor tl = tensor(t, dt).requires_grad_();
    backward(sum(softmax(x, 1, tl) * tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, dt)));
    REQUIRE(tl.grad().item() == 0.0);
  }
}

TEST_CASE("temperature: bad temperatures name softmax or log_softmax, the argument and the shapes",
          "[issue11][ops][softmax][temperature][bad]") {
  const Tensor x = zeros({2, 4}, kFloat64);
  for (const char* name : {"softmax", "log_softmax"}) {
    INFO(name);
    const std::string prefix = std::string(name) + ":";
    const bool sm = std::string(name) == "softmax";
    const auto with_t = [sm](const Tensor& x, int dim, const Tensor& t) { return sm ? softmax(x, dim, t) : log_softmax(x, dim, t); };
    const auto with_d = [sm](const Tensor& x, int dim, double t) { return sm ? softmax(x, dim, t) : log_softmax(x, dim, t); };
    for (double t : {0.0, -0.0, -1.0, kNaN, kInf}) {
      INFO("T = " << t);
      REQUIRE_THAT(error_of([&] { with_d(x, 1, t); }), StartsWith(prefix) && Contains("temperature") && Contains("T > 0"));
      REQUIRE_THAT(error_of([&] { with_t(x, 1, tensor(t, kFloat64)); }),
                   StartsWith(prefix) && Contains("temperature") && Contains("T > 0"));
    }
    // one bad element among good ones
    REQUIRE_THAT(error_of([&] { with_t(x, 1, f64({1.0, -0.5}, Shape{2, 1})); }),
                 StartsWith(prefix) && Contains("temperature[1, 0] = -0.5"));
    // shape: [3] does not broadcast against x [2, 4]
    REQUIRE_THAT(error_of([&] { with_t(x, 1, f64({1.0, 2.0, 3.0})); }),
                 StartsWith(prefix) && Contains("temperature") && Contains("[3]") && Contains("[2, 4]"));
    // dtype
    REQUIRE_THAT(error_of([&] { with_t(x, 1, tensor(1.0, kFloat32)); }),
                 StartsWith(prefix) && Contains("temperature") && Contains("float32") && Contains("float64"));
    REQUIRE_THAT(error_of([&] { with_t(x, 1, from_vector(std::vector<std::int64_t>{2}, Shape{})); }),
                 StartsWith(prefix) && Contains("temperature") && Contains("int64"));
    REQUIRE_THAT(error_of([&] { with_t(x, 1, Tensor()); }), StartsWith(prefix) && Contains("temperature"));
    // x itself
    const Tensor xi = from_vector(std::vector<std::int64_t>{1, 2}, Shape{2});
    REQUIRE_THAT(error_of([&] { with_d(xi, 0, 1.0); }), StartsWith(prefix) && Contains("x") && Contains("int64"));
    REQUIRE_THAT(error_of([&] { with_t(xi, 0, tensor(1.0, kFloat64)); }), StartsWith(prefix) && Contains("int64"));
    REQUIRE_THAT(error_of([&] { with_d(x, 2, 1.0); }), StartsWith(prefix) && Contains("dim 2"));
    REQUIRE_THAT(error_of([&] { with_t(tensor({{1.0, kNaN}}, kFloat64), 1, tensor(2.0, kFloat64)); }),
                 StartsWith(prefix) && Contains("NaN"));
  }
  // temperature_scale names itself, never div
  REQUIRE_THAT(error_of([&] { temperature_scale(x, f64({1.0, 2.0, 3.0})); }),
               StartsWith("temperature_scale:") && Contains("temperature") && Contains("[3]") && Contains("[2, 4]"));
  REQUIRE_THAT(error_of([&] { temperature_scale(x, 0.0); }), StartsWith("temperature_scale:"));
}

// ---------------------------------------------------------------- empty inputs

TEST_CASE("empty tensors: shape ops, softmax family, losses, attention", "[hardening][empty]") {
  const Tensor x = empty_leaf({3, 0});
  backward_ones(reshape(x, {0, 3}), {x});
  const Tensor x2 = empty_leaf({0, 4});
  backward_ones(transpose(x2, 0, 1), {x2});
  const Tensor x3 = empty_leaf({0, 4});
  backward_ones(cat({x3, ones({2, 4}, kFloat64)}, 0), {x3});
  const Tensor x4 = empty_leaf({0, 4});
  backward_ones(slice(x4, 1, 1, 3), {x4});
  const Tensor x5 = empty_leaf({2, 4});
  backward_ones(index_select(x5, 0, from_vector(std::vector<std::int64_t>{}, Shape{0})), {x5});

  for (const Shape& s : {Shape{0, 4}, Shape{3, 0}}) {
    INFO("shape " << s.str());
    const Tensor a = empty_leaf(s), b = empty_leaf(s);
    backward_ones(softmax(a, 1), {a});
    backward_ones(log_softmax(b, 1), {b});
  }
  const Tensor l = empty_leaf({3, 0});
  const Tensor lse = logsumexp(l, 1);  // log of an empty sum: -inf, as PyTorch
  REQUIRE(lse.shape() == Shape{3});
  for (double v : lse.to_vector()) REQUIRE(v == -std::numeric_limits<double>::infinity());
  backward_ones(lse, {l});

  const Tensor logits = empty_leaf({0, 3});
  const Tensor target = from_vector(std::vector<std::int64_t>{}, Shape{0});
  const Tensor ce = cross_entropy(logits, target, {.reduction = Reduction::Sum});
  REQUIRE(ce.item() == 0.0);
  backward_ones(ce, {logits});
  const Tensor z = empty_leaf({0, 3});
  const Tensor bce = binary_cross_entropy_with_logits(z, zeros({0, 3}, kFloat64), {.reduction = Reduction::Sum});
  REQUIRE(bce.item() == 0.0);
  backward_ones(bce, {z});

  const Tensor q = empty_leaf({0, 4}), k = ones({3, 4}, kFloat64).requires_grad_(), v = ones({3, 5}, kFloat64).requires_grad_();
  const Tensor att = scaled_dot_product_attention(q, k, v);
  REQUIRE(att.shape() == Shape{0, 5});
  backward_ones(att, {q, k, v});
  const Tensor ln = empty_leaf({0, 4});
  backward_ones(layer_norm(ln, {4}), {ln});
}

TEST_CASE("empty inputs: softmax family, temperature, cross_entropy, attention and layer_norm with no rows",
          "[issue11][ops][softmax][empty]") {
  for (const Shape& s : {Shape{0, 5}, Shape{2, 0, 3}}) {
    INFO("shape " << s.str());
    const int dim = s.rank() - 1;
    Tensor x = zeros(s, kFloat64).requires_grad_();
    Tensor t = tensor(1.5, kFloat64).requires_grad_();
    backward(sum(softmax(x, dim)) + sum(log_softmax(x, dim)) + sum(logsumexp(x, dim)) + sum(softmax(x, dim, t)) +
             sum(log_softmax(x, dim, t)));
    REQUIRE(x.grad().shape() == s);
    REQUIRE(t.grad().item() == 0.0);
  }
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
    Tensor x = zeros({0, 4}, kFloat64).requires_grad_();
    const Tensor y = cross_entropy(x, idx({}, Shape{0}), {.reduction = r});
    backward(sum(y));
    REQUIRE(x.grad().shape() == Shape{0, 4});
  }
  // attention with no queries, and with no keys (every query sees nothing: output 0, as a fully masked row)
  Generator gen(1106);
  Tensor q = randn({0, 4}, gen, kFloat64).requires_grad_(), k = randn({5, 4}, gen, kFloat64).requires_grad_(),
         v = randn({5, 2}, gen, kFloat64).requires_grad_();
  Tensor out = scaled_dot_product_attention(q, k, v);
  REQUIRE(out.shape() == Shape{0, 2});
  backward(sum(out));
  REQUIRE(all_finite(k.grad()));
  Tensor q2 = randn({3, 4}, gen, kFloat64).requires_grad_(), k2 = randn({0, 4}, gen, kFloat64).requires_grad_(),
         v2 = randn({0, 2}, gen, kFloat64).requires_grad_();
  Tensor out2 = scaled_dot_product_attention(q2, k2, v2);
  REQUIRE_ALLCLOSE(out2, zeros({3, 2}, kFloat64), 0, 0);
  backward(sum(out2));
  REQUIRE_ALLCLOSE(q2.grad(), zeros({3, 4}, kFloat64), 0, 0);
  // layer_norm of no rows
  Tensor xl = zeros({0, 4}, kFloat64).requires_grad_();
  Tensor w = ones({4}, kFloat64).requires_grad_();
  backward(sum(layer_norm(xl, {4}, w)));
  REQUIRE(xl.grad().shape() == Shape{0, 4});
  REQUIRE_ALLCLOSE(w.grad(), zeros({4}, kFloat64), 0, 0);
}
