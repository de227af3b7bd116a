// SPDX-License-Identifier: MIT
// Elementwise ops: values against numbers computed independently (Python's math module, double
// precision, or by hand), float64 gradchecks on several shapes with broadcasting, second
// derivatives, and bad input.
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
