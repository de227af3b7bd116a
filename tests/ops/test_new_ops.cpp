// SPDX-License-Identifier: MIT
// sin, cos, softplus, leaky_relu, gather (and scatter_add, its VJP), linspace: values against
// numbers computed independently (Python's math module in double precision, printed with repr, or
// by hand), gradients at chosen points (kinks with PyTorch's conventions), float64 gradcheck and
// gradgradcheck on several shapes, empty tensors, and bad input.
#include <cmath>
#include <limits>

#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }
Tensor idx(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }

const std::vector<Shape> kShapes = {Shape{}, Shape{1}, Shape{7}, Shape{2, 3}, Shape{3, 1}, Shape{1, 2, 1, 3}};

// Random float64 leaf, scaled, with every element at least 0.1 away from `kink`.
Tensor away_from(const Shape& s, Generator& gen, double kink, double scale = 1.0) {
  Tensor x = randn(s, gen, kFloat64) * scale;
  double* p = x.mutable_data<double>();
  for (std::int64_t i = 0; i < x.numel(); ++i)
    if (std::abs(p[i] - kink) < 0.1) p[i] = p[i] >= kink ? kink + 0.1 : kink - 0.1;
  return x.detach().requires_grad_();
}

void check_unary(const UnaryFunction& f, double kink, double scale, std::uint64_t seed) {
  Generator gen(seed);
  for (const Shape& s : kShapes) {
    INFO("shape " << s.str());
    const Tensor x = away_from(s, gen, kink, scale);
    GradcheckReport r = gradcheck(f, x);
    INFO(r);
    REQUIRE(r.ok());
    GradcheckReport r2 = gradgradcheck(f, x);
    INFO(r2);
    REQUIRE(r2.ok());
  }
}

// Gradient of sum(g * f(x)) at x.
Tensor grad_at(const UnaryFunction& f, const Tensor& x0, const Tensor& g) {
  Tensor x = x0.detach().requires_grad_();
  backward(f(x), g);
  return x.grad();
}

}  // namespace

// ---------------------------------------------------------------- sin, cos

TEST_CASE("sin and cos: values match Python's math module", "[ops][new_ops][elementwise]") {
  // Python: [math.sin(a) for a in x], [math.cos(a) for a in x]
  const Tensor x = f64({-2.5, -0.3, 0.0, 0.7, 3.0});
  REQUIRE_ALLCLOSE(sin(x), f64({-0.5984721441039565, -0.29552020666133955, 0.0, 0.644217687237691, 0.1411200080598672}),
                   1e-15, 1e-16);
  REQUIRE_ALLCLOSE(cos(x), f64({-0.8011436155469337, 0.955336489125606, 1.0, 0.7648421872844885, -0.9899924966004454}),
                   1e-15, 1e-16);
  // Derivatives: d sin = cos, d cos = -sin, at the same points.
  const Tensor g = ones({5}, kFloat64);
  REQUIRE_ALLCLOSE(grad_at([](const Tensor& v) { return sin(v); }, x, g), cos(x), 1e-15, 1e-16);
  REQUIRE_ALLCLOSE(grad_at([](const Tensor& v) { return cos(v); }, x, g), -sin(x), 1e-15, 1e-16);
  REQUIRE(sin(x.to(kFloat32)).dtype() == kFloat32);
}

TEST_CASE("sin and cos: gradcheck and gradgradcheck", "[ops][new_ops][elementwise][gradcheck]") {
  check_unary([](const Tensor& x) { return sin(x); }, 1e9, 2.0, 301);
  check_unary([](const Tensor& x) { return cos(x); }, 1e9, 2.0, 302);
  // sin^2 + cos^2 = 1: its gradient is 0 through both VJPs.
  Tensor x = f64({-1.0, 0.4, 2.0}).requires_grad_();
  backward(sum(sin(x) * sin(x) + cos(x) * cos(x)));
  REQUIRE_ALLCLOSE(x.grad(), zeros({3}, kFloat64), 0, 1e-15);
}

// ---------------------------------------------------------------- softplus

TEST_CASE("softplus: values and gradients match Python, including the linear region", "[ops][new_ops][elementwise]") {
  // Python: log1p(exp(beta x)) / beta, or x where beta x > threshold; gradient 1 / (1 + exp(-beta x))
  // (1 in the linear region).
  const Tensor x = f64({-30.0, -2.0, 0.0, 0.5, 19.9, 20.0, 20.5, 50.0});
  REQUIRE_ALLCLOSE(softplus(x),
                   f64({9.357622968839737e-14, 0.1269280110429725, 0.6931471805599453, 0.9740769841801067,
                        19.900000002277924, 20.000000002061153, 20.5, 50.0}),
                   1e-15, 0);
  REQUIRE_ALLCLOSE(grad_at([](const Tensor& v) { return softplus(v); }, x, ones({8}, kFloat64)),
                   f64({9.357622968839299e-14, 0.11920292202211755, 0.5, 0.6224593312018546, 0.999999997722073,
                        0.9999999979388463, 1.0, 1.0}),
                   1e-14, 0);
  // beta = 2, threshold = 5: beta x = 5 exactly is still the log1p branch (PyTorch: strictly above).
  const Tensor x2 = f64({-1.0, 0.0, 2.0, 2.5, 3.0});
  auto sp2 = [](const Tensor& v) { return softplus(v, 2.0, 5.0); };
  REQUIRE_ALLCLOSE(sp2(x2), f64({0.06346400552148625, 0.34657359027997264, 2.0090749639589047, 2.503357674244559, 3.0}),
                   1e-15, 0);
  REQUIRE_ALLCLOSE(grad_at(sp2, x2, ones({5}, kFloat64)),
                   f64({0.11920292202211755, 0.5, 0.9820137900379085, 0.9933071490757153, 1.0}), 1e-14, 0);
  // Negative beta (a soft minimum), accepted as by PyTorch.
  const Tensor x3 = f64({-2.0, 0.0, 1.0});
  auto sp3 = [](const Tensor& v) { return softplus(v, -1.5); };
  REQUIRE_ALLCLOSE(sp3(x3), f64({-2.032391567715828, -0.46209812037329684, -0.13427551865516826}), 1e-15, 0);
  REQUIRE_ALLCLOSE(grad_at(sp3, x3, ones({3}, kFloat64)), f64({0.9525741268224334, 0.5, 0.18242552380635635}), 1e-14, 0);
  // A large threshold does not overflow (PyTorch's log1p(exp(x)) gives inf for x = 800 here).
  const Tensor big = softplus(f64({800.0, -800.0}), 1.0, 1e4);
  REQUIRE_ALLCLOSE(big, f64({800.0, 0.0}), 1e-15, 0);
  const Tensor big32 = softplus(tensor({100.0f}), 1.0, 1e4);
  REQUIRE(big32.dtype() == kFloat32);
  REQUIRE(big32.item() == 100.0);
}

TEST_CASE("softplus: gradcheck and gradgradcheck away from the threshold", "[ops][new_ops][elementwise][gradcheck]") {
  check_unary([](const Tensor& x) { return softplus(x); }, 20.0, 3.0, 311);
  check_unary([](const Tensor& x) { return softplus(x, 2.0, 1.0); }, 0.5, 1.0, 312);  // kink at beta x = 1
  check_unary([](const Tensor& x) { return softplus(x, -0.5, 2.0); }, -4.0, 3.0, 313);
}

// ---------------------------------------------------------------- leaky_relu

TEST_CASE("leaky_relu: values, and gradient negative_slope at 0 as PyTorch", "[ops][new_ops][elementwise]") {
  const Tensor x = f64({-2.0, -0.5, 0.0, 0.5, 3.0});
  REQUIRE_ALLCLOSE(leaky_relu(x), f64({-0.02, -0.005, 0.0, 0.5, 3.0}), 1e-15, 0);
  REQUIRE_ALLCLOSE(leaky_relu(x, 0.2), f64({-0.4, -0.1, 0.0, 0.5, 3.0}), 1e-15, 0);
  REQUIRE_ALLCLOSE(leaky_relu(x, -0.5), f64({1.0, 0.25, 0.0, 0.5, 3.0}), 1e-15, 0);
  // torch 1.13: F.leaky_relu(x, 0.1) at x = [0, -1, 1] has gradient [0.1, 0.1, 1].
  const Tensor g = f64({1.0, 2.0, 3.0, 4.0, 5.0});
  REQUIRE_ALLCLOSE(grad_at([](const Tensor& v) { return leaky_relu(v, 0.1); }, x, g), f64({0.1, 0.2, 0.3, 4.0, 5.0}), 1e-15,
                   0);
  REQUIRE_ALLCLOSE(grad_at([](const Tensor& v) { return leaky_relu(v); }, f64({0.0}), f64({1.0})), f64({0.01}), 0, 0);
}

TEST_CASE("leaky_relu: gradcheck and gradgradcheck away from 0", "[ops][new_ops][elementwise][gradcheck]") {
  check_unary([](const Tensor& x) { return leaky_relu(x); }, 0.0, 1.0, 321);
  check_unary([](const Tensor& x) { return leaky_relu(x, 0.3); }, 0.0, 1.0, 322);
  check_unary([](const Tensor& x) { return leaky_relu(x, -0.5); }, 0.0, 1.0, 323);
}

// ---------------------------------------------------------------- gather, scatter_add

TEST_CASE("gather: values by hand, index shapes as PyTorch", "[ops][new_ops][gather]") {
  const Tensor x = tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, kFloat64);
  // dim 1: out[i][j] = x[i][index[i][j]]
  REQUIRE_ALLCLOSE(gather(x, 1, idx({0, 0, 2, 1, 0, 1}, {2, 3})), tensor({{1.0, 1.0, 3.0}, {5.0, 4.0, 5.0}}, kFloat64), 0, 0);
  // dim 0: out[i][j] = x[index[i][j]][j]
  REQUIRE_ALLCLOSE(gather(x, 0, idx({1, 0, 1, 0, 0, 0}, {2, 3})), tensor({{4.0, 2.0, 6.0}, {1.0, 2.0, 3.0}}, kFloat64), 0, 0);
  // index smaller than x in every dim; larger along dim; negative dim.
  REQUIRE_ALLCLOSE(gather(x, 0, idx({1}, {1, 1})), full({1, 1}, 4.0, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(gather(x, -1, idx({2, 2, 2, 2, 0}, {1, 5})), tensor({{3.0, 3.0, 3.0, 3.0, 1.0}}, kFloat64), 0, 0);
  // rank 0
  REQUIRE(gather(tensor(5.0, kFloat64), 0, from_vector(std::vector<std::int64_t>{0}, Shape{})).item() == 5.0);
  // rank 3, dim 1: x[a][b][c] = 100 a + 10 b + c
  const Tensor x3 = tensor({{{0.0, 1.0}, {10.0, 11.0}, {20.0, 21.0}}, {{100.0, 101.0}, {110.0, 111.0}, {120.0, 121.0}}}, kFloat64);
  REQUIRE_ALLCLOSE(gather(x3, 1, idx({2, 0, 1, 1}, {2, 1, 2})), tensor({{{20.0, 1.0}}, {{110.0, 111.0}}}, kFloat64), 0, 0);
  // Other dtypes: int64 and float32 values are copied.
  const Tensor xi = from_vector(std::vector<std::int64_t>{7, 8, 9}, Shape{3});
  const Tensor gi = gather(xi, 0, idx({2, 2, 0}, {3}));
  REQUIRE(gi.dtype() == kInt64);
  REQUIRE(gi.to_vector() == std::vector<double>{9, 9, 7});
  REQUIRE(gather(x.to(kFloat32), 1, idx({2}, {1, 1})).item() == 3.0);
}

TEST_CASE("gather: the VJP scatter-adds, duplicates accumulate", "[ops][new_ops][gather]") {
  Tensor x = tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, kFloat64).requires_grad_();
  const Tensor out = gather(x, 1, idx({0, 0, 2, 1, 0, 1}, {2, 3}));
  backward(out, tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, kFloat64));
  // row 0: x0 gets 1 + 2, x2 gets 3;  row 1: x1 gets 4 + 6, x0 gets 5
  REQUIRE_ALLCLOSE(x.grad(), tensor({{3.0, 0.0, 3.0}, {5.0, 10.0, 0.0}}, kFloat64), 0, 0);
  // scatter_add forward is the same computation.
  REQUIRE_ALLCLOSE(scatter_add(ones({2, 3}, kFloat64), 1, idx({0, 0, 2, 1, 0, 1}, {2, 3}),
                               tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, kFloat64)),
                   tensor({{4.0, 1.0, 4.0}, {6.0, 11.0, 1.0}}, kFloat64), 0, 0);
}

TEST_CASE("gather and scatter_add: gradcheck and gradgradcheck", "[ops][new_ops][gather][gradcheck]") {
  struct Case {
    Shape x;
    int dim;
    Shape index;
  };
  const std::vector<Case> cases = {
      {Shape{5}, 0, Shape{7}},           {Shape{3, 4}, 0, Shape{2, 4}},          {Shape{3, 4}, 1, Shape{3, 6}},
      {Shape{2, 3, 4}, -1, Shape{2, 2, 5}}, {Shape{2, 3, 4}, 1, Shape{1, 3, 2}}, {Shape{2, 1, 3, 2}, 2, Shape{2, 1, 4, 1}},
      {Shape{1}, 0, Shape{3}},           {Shape{}, 0, Shape{}}};
  Generator gen(331);
  for (const Case& c : cases) {
    INFO("x " << c.x.str() << " dim " << c.dim << " index " << c.index.str());
    const int d = c.x.rank() == 0 ? 0 : (c.dim < 0 ? c.dim + c.x.rank() : c.dim);
    const std::int64_t size = c.x.rank() == 0 ? 1 : c.x[d];
    const Tensor index = randint(0, size, c.index, gen);
    const Tensor x = randn(c.x, gen, kFloat64).requires_grad_();
    testing::require_gradcheck([&](const std::vector<Tensor>& in) { return gather(in[0], c.dim, index); }, {x}, true);
    const Tensor base = randn(c.x, gen, kFloat64).requires_grad_();
    const Tensor src = randn(c.index, gen, kFloat64).requires_grad_();
    testing::require_gradcheck([&](const std::vector<Tensor>& in) { return scatter_add(in[0], c.dim, index, in[1]); },
                               {base, src}, true);
  }
}

// ---------------------------------------------------------------- linspace

TEST_CASE("linspace: values as torch.linspace", "[ops][new_ops][linspace]") {
  REQUIRE_ALLCLOSE(linspace(0.0, 1.0, 5, kFloat64), f64({0.0, 0.25, 0.5, 0.75, 1.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(-1.0, 2.0, 4, kFloat64), f64({-1.0, 0.0, 1.0, 2.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(1.0, 0.0, 3, kFloat64), f64({1.0, 0.5, 0.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(3.0, 3.0, 3, kFloat64), f64({3.0, 3.0, 3.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(2.0, 5.0, 1, kFloat64), f64({2.0}), 0, 0);  // steps = 1: [start]
  REQUIRE(linspace(0.0, 1.0, 0).shape() == Shape{0});
  // Python: [i / 10 for i in range(11)] up to rounding; both ends exact.
  const Tensor t = linspace(0.0, 1.0, 11, kFloat64);
  for (int i = 0; i <= 10; ++i) REQUIRE(std::abs(t.at({std::int64_t{i}}) - i / 10.0) <= 1e-16);
  REQUIRE(t.at({0}) == 0.0);
  REQUIRE(t.at({10}) == 1.0);
  // Default dtype float32, as PyTorch; not differentiable (a factory).
  const Tensor f = linspace(-2.0, 2.0, 9);
  REQUIRE(f.dtype() == kFloat32);
  REQUIRE(f.to_vector() == std::vector<double>{-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0});
  REQUIRE_FALSE(f.requires_grad());
}

// ---------------------------------------------------------------- empty tensors

TEST_CASE("new ops: empty tensors work forward and backward", "[ops][new_ops][empty]") {
  for (const Shape& s : {Shape{0}, Shape{2, 0}}) {
    INFO("shape " << s.str());
    const std::vector<std::pair<const char*, UnaryFunction>> unary = {
        {"sin", [](const Tensor& v) { return sin(v); }},
        {"cos", [](const Tensor& v) { return cos(v); }},
        {"softplus", [](const Tensor& v) { return softplus(v); }},
        {"leaky_relu", [](const Tensor& v) { return leaky_relu(v); }}};
    for (const auto& [name, f] : unary) {
      INFO(name);
      Tensor x = zeros(s, kFloat64).requires_grad_();
      const Tensor y = f(x);
      REQUIRE(y.shape() == s);
      backward(sum(y));
      REQUIRE(x.grad().shape() == s);
    }
  }
  // gather: empty input with an empty index; a non-empty input with an empty index (any other
  // sizes, as PyTorch: [0, 5] against [2, 3]).
  {
    Tensor x = zeros({2, 0}, kFloat64).requires_grad_();
    const Tensor out = gather(x, 1, idx({}, {2, 0}));
    REQUIRE(out.shape() == Shape{2, 0});
    backward(sum(out));
    REQUIRE(x.grad().shape() == Shape{2, 0});
  }
  {
    Tensor x = ones({2, 3}, kFloat64).requires_grad_();
    const Tensor out = gather(x, 1, idx({}, {0, 5}));
    REQUIRE(out.shape() == Shape{0, 5});
    backward(sum(out));
    REQUIRE_ALLCLOSE(x.grad(), zeros({2, 3}, kFloat64), 0, 0);
    Tensor src = zeros({0, 5}, kFloat64).requires_grad_();
    Tensor base = ones({2, 3}, kFloat64).requires_grad_();
    const Tensor sa = scatter_add(base, 1, idx({}, {0, 5}), src);
    REQUIRE_ALLCLOSE(sa, ones({2, 3}, kFloat64), 0, 0);
    backward(sum(sa));
    REQUIRE(src.grad().shape() == Shape{0, 5});
    REQUIRE_ALLCLOSE(base.grad(), ones({2, 3}, kFloat64), 0, 0);
  }
  REQUIRE(linspace(0.0, 1.0, 0, kFloat64).numel() == 0);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("new ops: bad input throws, naming the op, the argument and the fix", "[ops][new_ops][bad]") {
  const Tensor i64 = from_vector(std::vector<std::int64_t>{1, 2}, Shape{2});
  const Tensor x = zeros({2, 3}, kFloat64);
  REQUIRE_THROWS_AS(sin(i64), InvalidArgument);
  REQUIRE_THROWS_WITH(sin(i64), Contains("sin: x has dtype int64 (shape [2]); expected float32 or float64"));
  REQUIRE_THROWS_WITH(cos(i64), Contains("cos: x has dtype int64"));
  REQUIRE_THROWS_WITH(softplus(i64), Contains("softplus: x has dtype int64"));
  REQUIRE_THROWS_WITH(leaky_relu(i64), Contains("leaky_relu: x has dtype int64"));
  REQUIRE_THROWS_WITH(sin(Tensor()), Contains("sin: x is an undefined Tensor"));

  REQUIRE_THROWS_WITH(softplus(x, 0.0), Contains("softplus: beta = 0; expected a finite, nonzero beta"));
  REQUIRE_THROWS_WITH(softplus(x, kNaN), Contains("softplus: beta = nan"));
  REQUIRE_THROWS_WITH(softplus(x, kInf), Contains("softplus: beta = inf"));
  REQUIRE_THROWS_WITH(softplus(x, 1.0, kNaN), Contains("softplus: threshold = nan; expected a number"));
  REQUIRE_THROWS_WITH(leaky_relu(x, kNaN), Contains("leaky_relu: negative_slope = nan; expected a finite number"));
  REQUIRE_THROWS_WITH(leaky_relu(x, -kInf), Contains("leaky_relu: negative_slope = -inf"));

  // gather
  REQUIRE_THROWS_WITH(gather(x, 1, zeros({2, 3}, kFloat64)),
                      Contains("gather: index has dtype float64 (shape [2, 3]); expected int64 positions"));
  REQUIRE_THROWS_WITH(gather(x, 1, idx({0, 1}, {2})),
                      Contains("gather: index has shape [2] (rank 1) but input has shape [2, 3] (rank 2); expected index "
                               "of the same rank as input"));
  REQUIRE_THROWS_WITH(gather(x, 1, idx({0, 3}, {2, 1})),
                      Contains("gather: index[1, 0] = 3 is out of range for dim 1 of input with shape [2, 3] (expected 0 "
                               "<= index < 3)"));
  REQUIRE_THROWS_WITH(gather(x, 1, idx({-1}, {1, 1})), Contains("gather: index[0, 0] = -1 is out of range"));
  REQUIRE_THROWS_WITH(gather(x, 1, idx({0, 0, 0}, {3, 1})),
                      Contains("gather: index of shape [3, 1] is larger than input of shape [2, 3] at dim 0 (3 > 2); "
                               "expected index.size(d) <= input.size(d) for every d != dim (1)"));
  REQUIRE_THROWS_WITH(gather(x, 2, idx({0}, {1, 1})), Contains("gather: dim 2 is out of range for input of shape [2, 3]"));
  REQUIRE_THROWS_WITH(gather(Tensor(), 0, idx({0}, {1})), Contains("gather: input is an undefined Tensor"));
  REQUIRE_THROWS_WITH(gather(x, 0, Tensor()), Contains("gather: index is an undefined Tensor"));
  // scatter_add
  REQUIRE_THROWS_WITH(scatter_add(x, 1, idx({0, 1}, {2, 1}), zeros({2, 2}, kFloat64)),
                      Contains("scatter_add: src has shape [2, 2] but index has shape [2, 1]; expected src of index's shape"));
  REQUIRE_THROWS_WITH(scatter_add(x, 1, idx({0, 1}, {2, 1}), zeros({2, 1}, kFloat32)),
                      Contains("scatter_add: input is float64 but src is float32"));
  REQUIRE_THROWS_WITH(scatter_add(zeros({2}, kInt64), 0, idx({0}, {1}), zeros({1}, kInt64)),
                      Contains("scatter_add: input has dtype int64"));
  REQUIRE_THROWS_WITH(scatter_add(x, 0, idx({5}, {1, 1}), zeros({1, 1}, kFloat64)),
                      Contains("scatter_add: index[0, 0] = 5 is out of range for dim 0"));

  // linspace
  REQUIRE_THROWS_AS(linspace(0.0, 1.0, -1), InvalidArgument);
  REQUIRE_THROWS_WITH(linspace(0.0, 1.0, -1), Contains("linspace: steps = -1; expected steps >= 0"));
  REQUIRE_THROWS_WITH(linspace(0.0, kInf, 3), Contains("linspace: start=0, end=inf; expected finite values"));
  REQUIRE_THROWS_WITH(linspace(kNaN, 1.0, 3), Contains("linspace: start=nan"));
  REQUIRE_THROWS_WITH(linspace(0.0, 10.0, 4, kInt64),
                      Contains("linspace: dtype int64 is not supported (expected float32 or float64"));
  REQUIRE_THROWS_WITH(linspace(-1e39, 1e39, 3), Contains("linspace: start=-1e+39, end=1e+39 do not fit float32"));
  REQUIRE_THROWS_WITH(linspace(-3e38, 3e38, 3), Contains("do not fit float32"));
  // Errors name the caller's line (the ops open a SiteScope with their SourceLocation).
  REQUIRE_THROWS_WITH(gather(x, 1, idx({9}, {1, 1})), Contains("(called from ") && Contains("test_new_ops.cpp:"));
  REQUIRE_THROWS_WITH(softplus(x, 0.0), Contains("test_new_ops.cpp:"));
  REQUIRE_THROWS_WITH(leaky_relu(i64), Contains("test_new_ops.cpp:"));
  REQUIRE_THROWS_WITH(sin(i64), Contains("test_new_ops.cpp:"));
}

TEST_CASE("new ops: the tape names them and inspect knows their VJPs", "[ops][new_ops][inspect]") {
  Tensor x = f64({0.5, 1.0}).requires_grad_();
  const std::vector<std::pair<std::string, Tensor>> outs = {
      {"sin", sin(x)},
      {"cos", cos(x)},
      {"softplus", softplus(x)},
      {"leaky_relu", leaky_relu(x)},
      {"gather", gather(x, 0, idx({1, 1}, {2}))},
      {"scatter_add", scatter_add(x, 0, idx({1}, {1}), f64({2.0}))}};
  for (const auto& [name, out] : outs) {
    INFO(name);
    const char* producer = producer_name(out);
    REQUIRE(producer != nullptr);
    REQUIRE(std::string(producer) == name);
    REQUIRE_FALSE(vjp_formula(name).empty());
  }
}
