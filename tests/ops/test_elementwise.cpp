// SPDX-License-Identifier: MIT
// Elementwise ops (also sin, cos, softplus, leaky_relu, erf, gelu): values against numbers computed
// independently (Python's math module, double precision, or by hand), gradients at chosen points
// (kinks with PyTorch's conventions), float64 gradchecks on several shapes with broadcasting, second
// derivatives, fused vs recorded backward, empty tensors, and bad input.
#include <cmath>
#include <functional>
#include <limits>

#include "autodiff/detail/node.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

const std::vector<Shape> kUnaryShapes = {Shape{}, Shape{1}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3}, Shape{1, 2, 2, 3}};
// Pairs that broadcast: equal, trailing, size-1 on both sides, rank 0, rank 4.
const std::vector<std::pair<Shape, Shape>> kBinaryShapes = {
    {Shape{2, 3}, Shape{2, 3}}, {Shape{2, 3}, Shape{3}},       {Shape{2, 1}, Shape{1, 3}},
    {Shape{}, Shape{2, 2}},     {Shape{4, 1, 3}, Shape{2, 1}}, {Shape{1}, Shape{3, 1, 2, 1}},
    {Shape{3}, Shape{}}};

// Random float64 leaf with |x| >= 0.1: finite differences stay away from kinks at 0.
Tensor away_from_zero(const Shape& s, Generator& gen) {
  Tensor x = randn(s, gen, kFloat64);
  double* p = x.mutable_data<double>();
  for (std::int64_t i = 0; i < x.numel(); ++i) p[i] += p[i] >= 0 ? 0.1 : -0.1;
  return x.requires_grad_();
}
// Random float64 leaf in [0.5, 2.5): inside the domain of log, sqrt, pow.
Tensor positive(const Shape& s, Generator& gen) { return (rand(s, gen, kFloat64) * 2.0 + 0.5).detach().requires_grad_(); }

void check_unary(const UnaryFunction& f, bool positive_only, bool second_order, std::uint64_t seed) {
  Generator gen(seed);
  for (const Shape& s : kUnaryShapes) {
    Tensor x = positive_only ? positive(s, gen) : away_from_zero(s, gen);
    GradcheckReport r = gradcheck(f, x);
    INFO("shape " << s.str() << "\n" << r);
    REQUIRE(r.ok());
    if (second_order) {
      GradcheckReport r2 = gradgradcheck(f, x);
      INFO(r2);
      REQUIRE(r2.ok());
    }
  }
}

void check_binary(const Function& f, bool b_positive, std::uint64_t seed) {
  Generator gen(seed);
  for (const auto& [sa, sb] : kBinaryShapes) {
    Tensor a = away_from_zero(sa, gen);
    Tensor b = b_positive ? positive(sb, gen) : away_from_zero(sb, gen);
    GradcheckReport r = gradcheck(f, {a, b});
    INFO("shapes " << sa.str() << " " << sb.str() << "\n" << r);
    REQUIRE(r.ok());
    GradcheckReport r2 = gradgradcheck(f, {a, b});
    INFO(r2);
    REQUIRE(r2.ok());
  }
}

Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }


constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

Tensor idx(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }

// sin, cos, softplus, leaky_relu: shapes of their gradchecks.
const std::vector<Shape> kKinkShapes = {Shape{}, Shape{1}, Shape{7}, Shape{2, 3}, Shape{3, 1}, Shape{1, 2, 1, 3}};
// erf, gelu: shapes of their gradchecks.
const std::vector<Shape> kActivationShapes = {Shape{}, Shape{1}, Shape{7}, Shape{2, 3}, Shape{3, 1, 5}, Shape{1, 2, 2, 3}};

// Random float64 leaf, scaled, with every element at least 0.1 away from `kink`.
Tensor away_from(const Shape& s, Generator& gen, double kink, double scale = 1.0) {
  Tensor x = randn(s, gen, kFloat64) * scale;
  double* p = x.mutable_data<double>();
  for (std::int64_t i = 0; i < x.numel(); ++i)
    if (std::abs(p[i] - kink) < 0.1) p[i] = p[i] >= kink ? kink + 0.1 : kink - 0.1;
  return x.detach().requires_grad_();
}

// gradcheck and gradgradcheck of f on kKinkShapes, inputs kept 0.1 away from f's kink.
void check_unary_away_from(const UnaryFunction& f, double kink, double scale, std::uint64_t seed) {
  Generator gen(seed);
  for (const Shape& s : kKinkShapes) {
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

using tapegrad::testing::backward_ones;
using tapegrad::testing::empty_leaf;

}  // namespace

// ---------------------------------------------------------------- forward values

TEST_CASE("elementwise: unary values match math-library values", "[ops][elementwise]") {
  const Tensor x = f64({-1.5, -0.25, 0.0, 0.5, 2.0});
  // Python: [math.exp(v) for v in x], etc.
  REQUIRE_ALLCLOSE(exp(x), f64({0.22313016014842982, 0.7788007830714049, 1.0, 1.6487212707001282, 7.38905609893065}), 1e-14);
  REQUIRE_ALLCLOSE(tanh(x), f64({-0.9051482536448664, -0.24491866240370913, 0.0, 0.46211715726000974, 0.9640275800758169}), 1e-14);
  REQUIRE_ALLCLOSE(sigmoid(x), f64({0.18242552380635635, 0.43782349911420193, 0.5, 0.6224593312018546, 0.8807970779778823}), 1e-14);
  REQUIRE_ALLCLOSE(log1p(f64({-0.25, 0.0, 0.5, 2.0})), f64({-0.2876820724517809, 0.0, 0.4054651081081644, 1.0986122886681096}), 1e-14);
  REQUIRE_ALLCLOSE(neg(x), f64({1.5, 0.25, 0.0, -0.5, -2.0}), 0, 0);
  REQUIRE_ALLCLOSE(abs(x), f64({1.5, 0.25, 0.0, 0.5, 2.0}), 0, 0);
  REQUIRE_ALLCLOSE(sign(x), f64({-1, -1, 0, 1, 1}), 0, 0);
  REQUIRE_ALLCLOSE(relu(x), f64({0, 0, 0, 0.5, 2.0}), 0, 0);
  REQUIRE_ALLCLOSE(clamp(x, -0.3, 1.0), f64({-0.3, -0.25, 0.0, 0.5, 1.0}), 0, 0);
  REQUIRE_ALLCLOSE(clamp_min(x, 0.1), f64({0.1, 0.1, 0.1, 0.5, 2.0}), 0, 0);
  REQUIRE_ALLCLOSE(clamp_max(x, 0.1), f64({-1.5, -0.25, 0.0, 0.1, 0.1}), 0, 0);

  const Tensor p = f64({0.25, 1.0, 2.5, 9.0});
  REQUIRE_ALLCLOSE(log(p), f64({-1.3862943611198906, 0.0, 0.9162907318741551, 2.1972245773362196}), 1e-14);
  REQUIRE_ALLCLOSE(sqrt(p), f64({0.5, 1.0, 1.5811388300841898, 3.0}), 1e-15);
  REQUIRE_ALLCLOSE(pow(p, 1.5), f64({0.125, 1.0, 3.952847075210474, 27.0}), 1e-14);
  REQUIRE_ALLCLOSE(pow(f64({-2.0, 3.0}), 3.0), f64({-8.0, 27.0}), 1e-15);
  REQUIRE_ALLCLOSE(pow(f64({-2.0, 4.0}), -1.0), f64({-0.5, 0.25}), 1e-15);
  // log(0) = -inf is a value, not an error
  REQUIRE(std::isinf(log(f64({0.0})).item()));

  // float32 gives the same numbers to float precision
  REQUIRE_ALLCLOSE(exp(tensor({-1.5, 2.0})), f64({0.22313016014842982, 7.38905609893065}).to(kFloat32), 1e-6);
  REQUIRE(exp(tensor({1.0})).dtype() == kFloat32);
}

TEST_CASE("elementwise: sigmoid and tanh saturate without NaN or overflow", "[ops][elementwise]") {
  const Tensor big = f64({-1000.0, 1000.0});
  REQUIRE_ALLCLOSE(sigmoid(big), f64({0.0, 1.0}), 0, 0);
  REQUIRE_ALLCLOSE(tanh(big), f64({-1.0, 1.0}), 0, 0);
  Tensor x = f64({-1000.0, 1000.0}).requires_grad_();
  backward(sum_to_size(sigmoid(x) + tanh(x), Shape{}));
  REQUIRE_ALLCLOSE(x.grad(), f64({0.0, 0.0}), 0, 0);
}

TEST_CASE("elementwise: binary values with broadcasting", "[ops][elementwise]") {
  const Tensor a = tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64);  // [2, 3]
  const Tensor b = f64({10, 20, 30});                         // [3]
  REQUIRE_ALLCLOSE(add(a, b), tensor({{11, 22, 33}, {14, 25, 36}}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(sub(a, b), tensor({{-9, -18, -27}, {-6, -15, -24}}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(mul(a, b), tensor({{10, 40, 90}, {40, 100, 180}}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(div(b, a), tensor({{10, 10, 10}, {2.5, 4, 5}}, kFloat64), 0, 0);
  const Tensor col = from_vector({1.0, 2.0}, Shape{2, 1}, kFloat64);  // [2, 1]; tensor({{1}, {2}}) is ambiguous in C++
  const Tensor row = tensor({{10, 20, 30}}, kFloat64);   // [1, 3]
  REQUIRE_ALLCLOSE(col * row, tensor({{10, 20, 30}, {20, 40, 60}}, kFloat64), 0, 0);
  REQUIRE((col + row).shape() == Shape{2, 3});
  REQUIRE_ALLCLOSE(tensor(2.0, kFloat64) * a, a + a, 0, 0);
  // pow with a tensor exponent, broadcast over rows: [[1.5^2, 2^-0.5], [0.5^2, 3^-0.5]]
  REQUIRE_ALLCLOSE(pow(tensor({{1.5, 2}, {0.5, 3}}, kFloat64), f64({2, -0.5})),
                   tensor({{2.25, 0.7071067811865476}, {0.25, 0.5773502691896257}}, kFloat64), 1e-15);
  REQUIRE_ALLCLOSE(maximum(f64({1, 5, 3}), f64({2, 4, 3})), f64({2, 5, 3}), 0, 0);
  REQUIRE_ALLCLOSE(minimum(f64({1, 5, 3}), f64({2, 4, 3})), f64({1, 4, 3}), 0, 0);
  // scalar overloads and operators
  const Tensor x = f64({1, 2, 4});
  REQUIRE_ALLCLOSE(x + 1.0, f64({2, 3, 5}), 0, 0);
  REQUIRE_ALLCLOSE(1.0 + x, f64({2, 3, 5}), 0, 0);
  REQUIRE_ALLCLOSE(x - 1.0, f64({0, 1, 3}), 0, 0);
  REQUIRE_ALLCLOSE(1.0 - x, f64({0, -1, -3}), 0, 0);
  REQUIRE_ALLCLOSE(x * 3.0, f64({3, 6, 12}), 0, 0);
  REQUIRE_ALLCLOSE(3.0 * x, f64({3, 6, 12}), 0, 0);
  REQUIRE_ALLCLOSE(x / 4.0, f64({0.25, 0.5, 1}), 0, 0);
  REQUIRE_ALLCLOSE(4.0 / x, f64({4, 2, 1}), 0, 0);
  REQUIRE_ALLCLOSE(-x, f64({-1, -2, -4}), 0, 0);
  REQUIRE((x * 2.0).dtype() == kFloat64);  // scalars take the tensor's dtype
}

TEST_CASE("elementwise: comparisons, where and masked_fill", "[ops][elementwise]") {
  const Tensor a = f64({1, 2, 3});
  const Tensor b = f64({3, 2, 1});
  auto bools = [](const Tensor& t) {
    std::vector<bool> v;
    for (std::int64_t i = 0; i < t.numel(); ++i) v.push_back(t.data<bool>()[i]);
    return v;
  };
  REQUIRE(eq(a, b).dtype() == kBool);
  REQUIRE(bools(eq(a, b)) == std::vector<bool>{false, true, false});
  REQUIRE(bools(ne(a, b)) == std::vector<bool>{true, false, true});
  REQUIRE(bools(lt(a, b)) == std::vector<bool>{true, false, false});
  REQUIRE(bools(le(a, b)) == std::vector<bool>{true, true, false});
  REQUIRE(bools(gt(a, b)) == std::vector<bool>{false, false, true});
  REQUIRE(bools(ge(a, b)) == std::vector<bool>{false, true, true});
  REQUIRE(bools(gt(a, 1.5)) == std::vector<bool>{false, true, true});
  REQUIRE(bools(logical_and(gt(a, 1.5), lt(a, 2.5))) == std::vector<bool>{false, true, false});
  REQUIRE(bools(logical_or(lt(a, 1.5), gt(a, 2.5))) == std::vector<bool>{true, false, true});
  REQUIRE(bools(logical_not(gt(a, 1.5))) == std::vector<bool>{true, false, false});
  REQUIRE(bools(isnan(f64({0.0, NAN}))) == std::vector<bool>{false, true});
  REQUIRE(bools(isinf(f64({-INFINITY, 1.0}))) == std::vector<bool>{true, false});
  // comparisons on int64 work too (class indices)
  const Tensor idx = from_vector(std::vector<std::int64_t>{0, 2}, Shape{2});
  REQUIRE(bools(eq(idx, from_vector(std::vector<std::int64_t>{2}, Shape{1}))) == std::vector<bool>{false, true});

  const Tensor cond = gt(from_vector({1.0, -1.0}, Shape{2, 1}, kFloat64), 0.0);  // [2, 1] broadcasts over columns
  REQUIRE_ALLCLOSE(where(cond, a, b), tensor({{1, 2, 3}, {3, 2, 1}}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(where(gt(a, 1.5), a, 0.0), f64({0, 2, 3}), 0, 0);
  REQUIRE_ALLCLOSE(where(gt(a, 1.5), -1.0, a), f64({1, -1, -1}), 0, 0);
  REQUIRE_ALLCLOSE(masked_fill(tensor({{1, 2}, {3, 4}}, kFloat64), gt(f64({0, 1}), 0.5), -INFINITY),
                   tensor({{1, -INFINITY}, {3, -INFINITY}}, kFloat64), 0, 0);
}

// ---------------------------------------------------------------- gradients at chosen points

TEST_CASE("elementwise: gradients at chosen points match hand derivatives", "[ops][elementwise]") {
  SECTION("relu, abs and clamp: subgradients at the kinks as in PyTorch") {
    Tensor x = f64({-1.0, 0.0, 2.0}).requires_grad_();
    backward(sum_to_size(relu(x), Shape{}));
    REQUIRE_ALLCLOSE(x.grad(), f64({0, 0, 1}), 0, 0);  // relu'(0) = 0
    x.zero_grad();
    backward(sum_to_size(abs(x), Shape{}));
    REQUIRE_ALLCLOSE(x.grad(), f64({-1, 0, 1}), 0, 0);  // sign(0) = 0
    x.zero_grad();
    backward(sum_to_size(clamp(x, 0.0, 2.0), Shape{}));
    REQUIRE_ALLCLOSE(x.grad(), f64({0, 1, 1}), 0, 0);  // bounds inclusive
  }
  SECTION("maximum/minimum: ties split the gradient in half") {
    Tensor a = f64({1, 2, 5}).requires_grad_();
    Tensor b = f64({1, 3, 4}).requires_grad_();
    backward(sum_to_size(maximum(a, b), Shape{}));
    REQUIRE_ALLCLOSE(a.grad(), f64({0.5, 0, 1}), 0, 0);
    REQUIRE_ALLCLOSE(b.grad(), f64({0.5, 1, 0}), 0, 0);
    a.zero_grad();
    b.zero_grad();
    backward(sum_to_size(minimum(a, b), Shape{}));
    REQUIRE_ALLCLOSE(a.grad(), f64({0.5, 1, 0}), 0, 0);
    REQUIRE_ALLCLOSE(b.grad(), f64({0.5, 0, 1}), 0, 0);
  }
  SECTION("pow: d/da and d/db, with the 0^b convention") {
    Tensor a = f64({2.0, 0.0}).requires_grad_();
    Tensor b = f64({3.0, 2.0}).requires_grad_();
    backward(sum_to_size(pow(a, b), Shape{}));
    // d/da = b a^(b-1): 3*4 = 12, 2*0 = 0;  d/db = a^b ln a: 8 ln 2, and 0 at a = 0
    REQUIRE_ALLCLOSE(a.grad(), f64({12.0, 0.0}), 1e-15);
    REQUIRE_ALLCLOSE(b.grad(), f64({8.0 * 0.6931471805599453, 0.0}), 1e-15);
    Tensor c = f64({3.0}).requires_grad_();
    backward(sum_to_size(pow(c, 0.0), Shape{}));
    REQUIRE(c.grad().item() == 0.0);
  }
  SECTION("broadcasting sums the gradient back to each input's shape") {
    Tensor a = tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64).requires_grad_();
    Tensor b = f64({10, 20, 30}).requires_grad_();
    backward(sum_to_size(a * b, Shape{}));
    REQUIRE_ALLCLOSE(a.grad(), tensor({{10, 20, 30}, {10, 20, 30}}, kFloat64), 0, 0);
    REQUIRE_ALLCLOSE(b.grad(), f64({5, 7, 9}), 0, 0);
  }
  SECTION("where and masked_fill route the gradient by the mask") {
    Tensor a = f64({1, 2, 3}).requires_grad_();
    Tensor b = tensor(7.0, kFloat64).requires_grad_();
    backward(sum_to_size(where(gt(a, 1.5), a, b), Shape{}));
    REQUIRE_ALLCLOSE(a.grad(), f64({0, 1, 1}), 0, 0);
    REQUIRE(b.grad().item() == 1.0);  // rank 0, broadcast to one position
    a.zero_grad();
    backward(sum_to_size(masked_fill(a * 2.0, eq(a, 2.0), 0.0), Shape{}));
    REQUIRE_ALLCLOSE(a.grad(), f64({2, 0, 2}), 0, 0);
  }
  SECTION("-inf masks give zero gradient, not NaN") {
    Tensor x = f64({0.5, 1.0}).requires_grad_();
    Tensor m = masked_fill(x, gt(x, 0.75), -INFINITY);
    backward(sum_to_size(exp(m), Shape{}));
    REQUIRE_ALLCLOSE(x.grad(), f64({std::exp(0.5), 0.0}), 1e-15);
  }
}

// ---------------------------------------------------------------- gradcheck on random inputs

TEST_CASE("elementwise: gradcheck and gradgradcheck of unary ops", "[ops][elementwise][gradcheck]") {
  check_unary([](const Tensor& x) { return neg(x); }, false, true, 1);
  check_unary([](const Tensor& x) { return exp(x); }, false, true, 2);
  check_unary([](const Tensor& x) { return tanh(x); }, false, true, 3);
  check_unary([](const Tensor& x) { return sigmoid(x); }, false, true, 4);
  check_unary([](const Tensor& x) { return log(x); }, true, true, 5);
  check_unary([](const Tensor& x) { return log1p(x); }, true, true, 6);
  check_unary([](const Tensor& x) { return sqrt(x); }, true, true, 7);
  check_unary([](const Tensor& x) { return abs(x); }, false, true, 8);
  check_unary([](const Tensor& x) { return relu(x); }, false, true, 9);
  check_unary([](const Tensor& x) { return clamp(x, -0.5, 0.7); }, false, true, 10);
  check_unary([](const Tensor& x) { return pow(x, 3.0); }, false, true, 11);
  check_unary([](const Tensor& x) { return pow(x, -1.5); }, true, true, 12);
  check_unary([](const Tensor& x) { return pow(x, 0.0); }, false, false, 13);
  check_unary([](const Tensor& x) { return 2.0 - x / 3.0 + x * 1.5; }, false, true, 14);
  check_unary([](const Tensor& x) { return 1.0 / x; }, false, true, 15);
  check_unary([](const Tensor& x) { return masked_fill(x, gt(x, 0.0), 2.0); }, false, true, 16);
  check_unary([](const Tensor& x) { return x.clone(); }, false, true, 17);
}

TEST_CASE("elementwise: gradcheck and gradgradcheck of binary ops with broadcasting", "[ops][elementwise][gradcheck]") {
  check_binary([](const std::vector<Tensor>& t) { return add(t[0], t[1]); }, false, 21);
  check_binary([](const std::vector<Tensor>& t) { return sub(t[0], t[1]); }, false, 22);
  check_binary([](const std::vector<Tensor>& t) { return mul(t[0], t[1]); }, false, 23);
  check_binary([](const std::vector<Tensor>& t) { return div(t[0], t[1]); }, false, 24);
  check_binary([](const std::vector<Tensor>& t) { return pow(t[1], t[0]); }, true, 25);  // positive base
  check_binary([](const std::vector<Tensor>& t) { return maximum(t[0], t[1]); }, false, 26);
  check_binary([](const std::vector<Tensor>& t) { return minimum(t[0], t[1]); }, false, 27);
  check_binary([](const std::vector<Tensor>& t) { return where(gt(t[0], 0.0), t[0] * 2.0, t[1]); }, false, 28);
}

TEST_CASE("elementwise: gradcheck of broadcast_to and sum_to_size", "[ops][elementwise][gradcheck]") {
  Generator gen(30);
  const std::vector<std::pair<Shape, Shape>> cases = {
      {Shape{3}, Shape{2, 3}}, {Shape{2, 1}, Shape{2, 4}}, {Shape{}, Shape{3, 2}}, {Shape{1, 3, 1}, Shape{2, 2, 3, 2}}};
  for (const auto& [small, big] : cases) {
    Tensor x = randn(small, gen, kFloat64).requires_grad_();
    auto up = [big = big](const Tensor& t) { return broadcast_to(t, big); };
    REQUIRE(gradcheck(up, x).ok());
    REQUIRE(gradgradcheck(up, x).ok());
    Tensor y = randn(big, gen, kFloat64).requires_grad_();
    auto down = [small = small](const Tensor& t) { return sum_to_size(t, small); };
    REQUIRE(gradcheck(down, y).ok());
    REQUIRE(gradgradcheck(down, y).ok());
  }
  // values: sum over the broadcast dims
  REQUIRE_ALLCLOSE(sum_to_size(tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64), Shape{3}), f64({5, 7, 9}), 0, 0);
  REQUIRE_ALLCLOSE(sum_to_size(tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64), Shape{2, 1}), from_vector({6.0, 15.0}, Shape{2, 1}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(broadcast_to(f64({1, 2}), Shape{2, 2}), tensor({{1, 2}, {1, 2}}, kFloat64), 0, 0);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("elementwise: bad input throws, naming the op, the arguments and the fix", "[ops][elementwise][bad]") {
  const Tensor a = zeros({2, 3}, kFloat64);
  REQUIRE_THROWS_AS(add(a, zeros({4}, kFloat64)), InvalidArgument);
  REQUIRE_THROWS_WITH(add(a, zeros({4}, kFloat64)), Contains("add: cannot broadcast a of shape [2, 3] with b of shape [4]"));
  REQUIRE_THROWS_WITH(mul(zeros({2, 3}), zeros({3, 2})), Contains("mul") && Contains("[3, 2]"));
  REQUIRE_THROWS_WITH(add(a, zeros({2, 3}, kFloat32)), Contains("add: a is float64 but b is float32"));
  const Tensor idx = from_vector(std::vector<std::int64_t>{1, 2}, Shape{2});
  REQUIRE_THROWS_WITH(exp(idx), Contains("exp: x has dtype int64"));
  REQUIRE_THROWS_WITH(add(Tensor(), a), Contains("undefined"));
  REQUIRE_THROWS_WITH(log(f64({1.0, -2.0})), Contains("log: x[1] = -2 is outside the domain"));
  REQUIRE_THROWS_WITH(sqrt(f64({-1.0})), Contains("sqrt") && Contains("x >= 0"));
  REQUIRE_THROWS_WITH(log1p(f64({-3.0})), Contains("log1p"));
  REQUIRE_THROWS_WITH(pow(f64({-2.0}), 0.5), Contains("pow") && Contains("non-integer"));
  REQUIRE_THROWS_WITH(pow(f64({-2.0}), f64({0.5})), Contains("pow") && Contains("NaN"));
  Tensor base = f64({-2.0});
  Tensor e = f64({2.0}).requires_grad_();
  REQUIRE_THROWS_WITH(pow(base, e), Contains("exponent requires grad"));
  REQUIRE_THROWS_WITH(clamp(a, 1.0, 0.0), Contains("clamp: min=1 and max=0"));
  REQUIRE_THROWS_WITH(where(a, a, a), Contains("where: cond has dtype float64"));
  REQUIRE_THROWS_WITH(where(gt(zeros({4}, kFloat64), 0.0), a, a), Contains("cannot broadcast"));
  REQUIRE_THROWS_WITH(masked_fill(zeros({3}, kFloat64), gt(zeros({2, 3}, kFloat64), 0.0), 1.0),
                      Contains("masked_fill: mask of shape [2, 3] does not broadcast to x of shape [3]"));
  REQUIRE_THROWS_WITH(masked_fill(a, a, 1.0), Contains("bool"));
  REQUIRE_THROWS_WITH(lt(a, zeros({3}, kFloat32)), Contains("lt"));
  REQUIRE_THROWS_WITH(logical_and(a, a), Contains("logical_and: a has dtype float64"));
  REQUIRE_THROWS_WITH(broadcast_to(zeros({3}), Shape{3, 2}), Contains("broadcast_to"));
  REQUIRE_THROWS_WITH(sum_to_size(zeros({2, 3}), Shape{4}), Contains("sum_to_size"));
}

// Each node keeps only what its VJP reads (issue 13): counted by tape_stats().saved_bytes, from
// the dtype sizes by hand (float64 = 8 bytes, bool = 1), for inputs of 3 elements.
TEST_CASE("elementwise: each node saves only what its VJP reads", "[ops][elementwise][memory]") {
  clear_tape();
  Tensor x = tensor({0.5, 1.5, 2.5}, kFloat64).requires_grad_();
  Tensor w = tensor({1.0, 2.0, 3.0}, kFloat64).requires_grad_();
  const Tensor c = tensor({2.0, 3.0, 4.0}, kFloat64);  // a constant: needs no gradient
  const Tensor mask = gt(c, 2.5);
  struct Case {
    const char* op;
    std::function<Tensor()> f;
    std::size_t bytes;
  };
  const std::vector<Case> cases = {
      {"add", [&] { return x + c; }, 0},
      {"sub", [&] { return c - x; }, 0},
      {"neg", [&] { return -x; }, 0},
      {"broadcast_to", [&] { return broadcast_to(x, Shape{2, 3}); }, 0},
      {"sum_to_size", [&] { return sum_to_size(x, Shape{}); }, 0},
      {"clone", [&] { return x.clone(); }, 0},
      {"to", [&] { return x.to(kFloat32); }, 0},
      {"mul", [&] { return x * c; }, 24},             // c only: x's gradient reads it, c has none
      {"mul", [&] { return x * w; }, 48},             // both
      {"div", [&] { return x / c; }, 24},             // c
      {"div", [&] { return c / x; }, 48},             // c and x (db = -g a / b^2)
      {"pow", [&] { return pow(x, c); }, 48},         // a, b
      {"pow", [&] { return pow(c, x); }, 48},         // a, y
      {"pow", [&] { return pow(x, w); }, 72},         // a, b, y
      {"pow", [&] { return pow(x, 3.0); }, 24},       // a
      {"pow", [&] { return pow(x, 0.0); }, 0},        // nothing: the gradient is 0
      {"maximum", [&] { return maximum(x, c); }, 48},
      {"minimum", [&] { return minimum(x, c); }, 48},
      {"where", [&] { return where(mask, x, c); }, 3},  // the bool mask only
      {"exp", [&] { return exp(x); }, 24},            // y
      {"sqrt", [&] { return sqrt(x); }, 24},          // y
      {"tanh", [&] { return tanh(x); }, 24},          // y
      {"sigmoid", [&] { return sigmoid(x); }, 24},    // y
      {"relu", [&] { return relu(x); }, 24},          // y (not x)
      {"log", [&] { return log(x); }, 24},            // x
      {"log1p", [&] { return log1p(x); }, 24},
      {"abs", [&] { return abs(x); }, 24},
      {"erf", [&] { return erf(x); }, 24},
      {"gelu", [&] { return gelu(x); }, 24},
      {"clamp", [&] { return clamp(x, 0.0, 1.0); }, 24},
      {"sin", [&] { return sin(x); }, 24},
      {"cos", [&] { return cos(x); }, 24},
      {"softplus", [&] { return softplus(x); }, 24},
      {"leaky_relu", [&] { return leaky_relu(x); }, 24},
  };
  for (const Case& k : cases) {
    INFO(k.op);
    clear_tape();
    const Tensor y = k.f();
    REQUIRE(tape_size() == 1);
    const Node& n = tape_nodes()[0];
    REQUIRE(std::string(n.op) == k.op);
    REQUIRE(std::string(n.formula).size() > 0);  // the VJP's maths travels with the node
    REQUIRE(tape_stats().saved_bytes == k.bytes);
  }
  clear_tape();
}

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
  check_unary_away_from([](const Tensor& x) { return sin(x); }, 1e9, 2.0, 301);
  check_unary_away_from([](const Tensor& x) { return cos(x); }, 1e9, 2.0, 302);
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
  check_unary_away_from([](const Tensor& x) { return softplus(x); }, 20.0, 3.0, 311);
  check_unary_away_from([](const Tensor& x) { return softplus(x, 2.0, 1.0); }, 0.5, 1.0, 312);  // kink at beta x = 1
  check_unary_away_from([](const Tensor& x) { return softplus(x, -0.5, 2.0); }, -4.0, 3.0, 313);
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
  check_unary_away_from([](const Tensor& x) { return leaky_relu(x); }, 0.0, 1.0, 321);
  check_unary_away_from([](const Tensor& x) { return leaky_relu(x, 0.3); }, 0.0, 1.0, 322);
  check_unary_away_from([](const Tensor& x) { return leaky_relu(x, -0.5); }, 0.0, 1.0, 323);
}

// ---------------------------------------------------------------- erf, gelu

TEST_CASE("gelu: values match math.erf and the tanh formula", "[ops][activation]") {
  const Tensor x = f64({-3, -1, -0.5, 0, 0.5, 1, 2.5});
  // Python: [math.erf(v) for v in x]
  REQUIRE_ALLCLOSE(erf(x), f64({-0.9999779095030014, -0.8427007929497149, -0.5204998778130465, 0.0, 0.5204998778130465,
                                0.8427007929497149, 0.999593047982555}), 1e-14, 1e-15);
  // Python: 0.5*v*(1+math.erf(v/math.sqrt(2)))
  REQUIRE_ALLCLOSE(gelu(x), f64({-0.00404969409489031, -0.15865525393145707, -0.15426876936299344, 0.0,
                                 0.34573123063700656, 0.8413447460685429, 2.4844758366855597}), 1e-13, 1e-15);
  // Python: 0.5*v*(1+math.tanh(math.sqrt(2/math.pi)*(v+0.044715*v**3)))
  REQUIRE_ALLCLOSE(gelu(x, "tanh"), f64({-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0.0,
                                         0.34571400982514394, 0.8411919906082768, 2.484915733910001}), 1e-13, 1e-15);
  REQUIRE_ALLCLOSE(gelu(x.to(kFloat32)), gelu(x).to(kFloat32), 1e-6, 1e-7);
}

TEST_CASE("gelu: derivative at chosen points is Phi(x) + x phi(x)", "[ops][activation]") {
  Tensor x = f64({-1.0, 0.0, 2.0}).requires_grad_();
  backward(sum(gelu(x)));
  // Python: 0.5*(1+math.erf(v/math.sqrt(2))) + v*math.exp(-v*v/2)/math.sqrt(2*math.pi)
  REQUIRE_ALLCLOSE(x.grad(), f64({-0.08331547058768629, 0.5, 1.085231801078197}), 1e-13, 1e-15);
}

TEST_CASE("gelu and erf: gradcheck and gradgradcheck in float64", "[ops][activation]") {
  Generator gen(31);
  for (const Shape& s : kActivationShapes) {
    Tensor x = (randn(s, gen, kFloat64) * 2.0).detach().requires_grad_();
    INFO("shape " << s.str());
    testing::require_gradcheck([](const std::vector<Tensor>& in) { return erf(in[0]); }, {x}, true);
    testing::require_gradcheck([](const std::vector<Tensor>& in) { return gelu(in[0]); }, {x}, true);
    testing::require_gradcheck([](const std::vector<Tensor>& in) { return gelu(in[0], "tanh"); }, {x}, true);
  }
}

TEST_CASE("gelu: fused backward equals the recorded one", "[ops][activation]") {
  Generator gen(5);
  Tensor x = (randn({4, 9}, gen, kFloat64) * 3.0).detach().requires_grad_();
  Tensor g = randn({4, 9}, gen, kFloat64);
  auto grads_fast = grad({gelu(x)}, {x}, {g});
  auto grads_rec = grad({gelu(x)}, {x}, {g}, {.create_graph = true});
  REQUIRE_ALLCLOSE(grads_fast[0], grads_rec[0].detach(), 1e-14, 1e-15);
}

TEST_CASE("gelu and erf: bad input", "[ops][activation]") {
  REQUIRE_THROWS_WITH(gelu(f64({1.0}), "fast"), Contains("gelu") && Contains("'fast'") && Contains("'tanh'"));
  REQUIRE_THROWS_WITH(gelu(from_vector(std::vector<std::int64_t>{1, 2}, Shape{2})), Contains("gelu"));
  REQUIRE_THROWS_WITH(erf(from_vector(std::vector<std::int64_t>{1, 2}, Shape{2})), Contains("erf"));
}

// ---------------------------------------------------------------- empty tensors

TEST_CASE("empty tensors: broadcasting binary ops against empties, forward and backward", "[hardening][empty]") {
  // The repro of issue 11: sum_to_size divided by the zero element count (SIGFPE).
  const Tensor a = empty_leaf({0});
  backward(sum(add(a, zeros({3, 0}, kFloat64))));
  REQUIRE(a.grad().shape() == Shape{0});

  struct Pair { Shape a, b, out; };
  const std::vector<Pair> pairs = {{{0}, {3, 0}, {3, 0}}, {{0, 4}, {4}, {0, 4}}, {{3, 1}, {0}, {3, 0}},
                                   {{1}, {0}, {0}},       {{0}, {}, {0}},         {{2, 0}, {2, 1}, {2, 0}}};
  for (const Pair& p : pairs) {
    INFO(p.a.str() << " with " << p.b.str());
    for (auto op : {&add, &sub, &mul, &div, &maximum, &minimum}) {
      const Tensor x = empty_leaf(p.a), y = ones(p.b, kFloat64).requires_grad_();
      const Tensor out = op(x, y, SourceLocation::current());
      REQUIRE(out.shape() == p.out);
      backward_ones(out, {x, y});
      if (y.numel() > 0) REQUIRE(sum(y.grad()).item() == 0.0);  // summed over no elements
    }
    const Tensor x = empty_leaf(p.a);
    backward_ones(broadcast_to(x, p.out), {x});
  }
}

TEST_CASE("empty tensors: every unary op and the remaining ops, forward and VJP (first and second order)",
          "[hardening][empty]") {
  using Unary = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<const char*, Unary>> unary = {
      {"neg", [](const Tensor& x) { return neg(x); }},
      {"exp", [](const Tensor& x) { return exp(x); }},
      {"log", [](const Tensor& x) { return log(x); }},
      {"log1p", [](const Tensor& x) { return log1p(x); }},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }},
      {"abs", [](const Tensor& x) { return abs(x); }},
      {"sin", [](const Tensor& x) { return sin(x); }},
      {"cos", [](const Tensor& x) { return cos(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"softplus", [](const Tensor& x) { return softplus(x); }},
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, "tanh"); }},
      {"erf", [](const Tensor& x) { return erf(x); }},
      {"clamp", [](const Tensor& x) { return clamp(x, -1.0, 1.0); }},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }},
      {"pow tensor", [](const Tensor& x) { return pow(x, ones_like(x).detach()); }},
      {"where", [](const Tensor& x) { return where(gt(x, 0.0), x, 2.0); }},
      {"masked_fill", [](const Tensor& x) { return masked_fill(x, gt(x, 0.0), 1.0); }},
      {"to float32", [](const Tensor& x) { return x.to(kFloat32); }},
      {"clone", [](const Tensor& x) { return x.clone(); }},
      {"sum dim 0", [](const Tensor& x) { return sum(x, 0); }},
      {"mean dim 1", [](const Tensor& x) { return mean(x, 1); }},  // [0, 3] -> [0]: nothing divided by 3
      {"permute", [](const Tensor& x) { return permute(x, {1, 0}); }},
      {"unsqueeze", [](const Tensor& x) { return unsqueeze(x, 1); }},
      {"flatten", [](const Tensor& x) { return flatten(x); }},
      {"narrow", [](const Tensor& x) { return narrow(x, 1, 1, 2); }},
      {"stack", [](const Tensor& x) { return stack({x, x}, 0); }},
      {"gather", [](const Tensor& x) { return gather(x, 1, zeros(x.shape(), kInt64)); }},
      {"scatter_add", [](const Tensor& x) { return scatter_add(x, 1, zeros(x.shape(), kInt64), x); }},
      {"index_add", [](const Tensor& x) { return index_add(x, 0, zeros({0}, kInt64), x); }},
      {"linear", [](const Tensor& x) { return linear(x, ones({2, 3}, kFloat64), ones({2}, kFloat64)); }},
      {"softmax T", [](const Tensor& x) { return softmax(x, 1, 2.0); }},
      {"mse_loss sum", [](const Tensor& x) { return mse_loss(x, zeros_like(x), Reduction::Sum); }},
      {"l1_loss none", [](const Tensor& x) { return l1_loss(x, zeros_like(x), Reduction::None); }},
      {"smooth_l1_loss sum", [](const Tensor& x) { return smooth_l1_loss(x, zeros_like(x), Reduction::Sum); }},
  };
  for (const auto& [name, f] : unary) {
    INFO("op " << name);
    const Tensor x = empty_leaf({0, 3});
    const Tensor y = f(x);
    for (double v : y.to_vector()) REQUIRE(v == 0.0);  // empty, or sums of nothing (sum over dim 0: [0, 0, 0])
    backward_ones(y, {x});
    // second order: the VJP of the VJP on empties too
    const Tensor x2 = empty_leaf({0, 3});
    const std::vector<Tensor> g = grad({f(x2)}, {x2}, {ones_like(f(x2)).detach()}, {.create_graph = true, .allow_unused = true});
    if (g[0].defined() && g[0].requires_grad()) {
      backward(sum(g[0]));
      SUCCEED();
    }
  }
  REQUIRE(sign(empty_leaf({0, 3})).shape() == Shape{0, 3});  // no gradient (not recorded)
  // Index ops with empty indices into non-empty inputs.
  const Tensor w = ones({4, 3}, kFloat64).requires_grad_();
  backward_ones(embedding(w, zeros({0}, kInt64)), {w});
  REQUIRE(sum(w.grad()).item() == 0.0);
  const Tensor lp = empty_leaf({0, 3});
  REQUIRE(nll_loss(lp, zeros({0}, kInt64), {.reduction = Reduction::Sum}).item() == 0.0);
  backward_ones(nll_loss(lp, zeros({0}, kInt64), {.reduction = Reduction::Sum}), {lp});
  const Tensor kl = empty_leaf({0, 3});
  backward_ones(kl_div(kl, zeros({0, 3}, kFloat64), {.reduction = Reduction::Sum}), {kl});
  // mean of nothing: PyTorch gives NaN; tapegrad says so instead.
  REQUIRE_THROWS_WITH(mean(empty_leaf({0, 3})), Contains("mean"));
}

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

// ---------------------------------------------------------------- sin, cos, softplus, leaky_relu, gather, scatter_add, linspace: bad input and inspect

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
  REQUIRE_THROWS_WITH(gather(x, 1, idx({9}, {1, 1})), Contains("(called from ") && Contains("test_elementwise.cpp:"));
  REQUIRE_THROWS_WITH(softplus(x, 0.0), Contains("test_elementwise.cpp:"));
  REQUIRE_THROWS_WITH(leaky_relu(i64), Contains("test_elementwise.cpp:"));
  REQUIRE_THROWS_WITH(sin(i64), Contains("test_elementwise.cpp:"));
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
    REQUIRE_FALSE(vjp_formula(out).empty());
  }
}
