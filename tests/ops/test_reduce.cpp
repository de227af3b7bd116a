// SPDX-License-Identifier: MIT
// Reductions: values against numpy (pasted from /usr/bin/python3 + numpy), PyTorch's tie rules for
// max/min gradients, float64 gradchecks over shapes, dims (negative too) and keepdim, second
// derivatives, and bad input.
#include "autodiff/detail/node.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

Tensor leaf(const Shape& s, Generator& gen) { return randn(s, gen, kFloat64).requires_grad_(); }

Tensor values(std::vector<double> v, const Shape& s) { return from_vector(v, s, kFloat64); }

Tensor int_values(std::vector<std::int64_t> v, const Shape& s) { return from_vector(v, s); }

// [2, 3, 4] with ties along dim 2 (rows [3, 3, -1, 0.5], [0, -0.5, 6, 6], [-7, 2, 2, 1])
Tensor sample() {
  return tensor({{{1.5, -2, 0.25, 4}, {3, 3, -1, 0.5}, {-7, 2, 2, 1}}, {{0, -0.5, 6, 6}, {2.5, -3, 1, -1}, {4, 0.75, -2, 5}}},
                kFloat64);
}


// Shapes for the gradchecks: rank 0, size-1 dims, rank 4.
const std::vector<Shape> kShapes = {Shape{}, Shape{1}, Shape{5}, Shape{2, 3}, Shape{3, 1}, Shape{2, 1, 3}, Shape{1, 2, 2, 3}};

// Every valid dim of a shape, in both spellings (rank 0 takes 0 and -1).
std::vector<int> dims_of(const Shape& s) {
  std::vector<int> d;
  const int r = std::max(s.rank(), 1);
  for (int i = 0; i < r; ++i) {
    d.push_back(i);
    d.push_back(i - r);
  }
  return d;
}

// Checks x -> reduce(x, dim, keepdim) for every shape, dim and keepdim.
void check_dim_reduction(Tensor (*reduce)(const Tensor&, int, bool), bool second_order, std::uint64_t seed) {
  Generator gen(seed);
  for (const Shape& s : kShapes) {
    const Tensor x = leaf(s, gen);
    for (int d : dims_of(s))
      for (bool keepdim : {false, true}) {
        INFO("shape " << s.str() << " dim " << d << " keepdim " << keepdim);
        tapegrad::testing::require_gradcheck([reduce, d, keepdim](const std::vector<Tensor>& in) { return reduce(in[0], d, keepdim); }, {x},
                      second_order && d < 0);
      }
  }
}


using tapegrad::testing::backward_ones;
using tapegrad::testing::empty_leaf;

}  // namespace

// ---------------------------------------------------------------- sum / mean

TEST_CASE("sum, mean: values match numpy, over all elements and along dims", "[ops][reduce][sum]") {
  const Tensor x = sample();
  REQUIRE(sum(x).dim() == 0);
  REQUIRE(sum(x).item() == 26.0);
  REQUIRE(mean(x).item() == Approx(1.0833333333333333).epsilon(1e-15));
  REQUIRE_ALLCLOSE(sum(x, 0), values({1.5, -2.5, 6.25, 10, 5.5, 0, 0, -0.5, -3, 2.75, 0, 6}, {3, 4}));
  REQUIRE_ALLCLOSE(sum(x, 1), values({-2.5, 3, 1.25, 5.5, 6.5, -2.75, 5, 10}, {2, 4}));
  REQUIRE_ALLCLOSE(sum(x, -1), values({3.75, 5.5, -2, 11.5, -0.5, 7.75}, {2, 3}));
  REQUIRE_ALLCLOSE(sum(x, -2, true), values({-2.5, 3, 1.25, 5.5, 6.5, -2.75, 5, 10}, {2, 1, 4}));
  REQUIRE_ALLCLOSE(mean(x, 0), values({0.75, -1.25, 3.125, 5, 2.75, 0, 0, -0.25, -1.5, 1.375, 0, 3}, {3, 4}));
  REQUIRE_ALLCLOSE(mean(x, 1),
                   values({-0.83333333333333337, 1, 0.41666666666666669, 1.8333333333333333, 2.1666666666666665,
                           -0.91666666666666663, 1.6666666666666667, 3.3333333333333335},
                          {2, 4}),
                   1e-15, 1e-15);
  REQUIRE_ALLCLOSE(mean(x, 2, true), values({0.9375, 1.375, -0.5, 2.875, -0.125, 1.9375}, {2, 3, 1}));

  // float32
  REQUIRE(sum(x.to(kFloat32)).dtype() == kFloat32);
  REQUIRE(sum(x.to(kFloat32)).item() == 26.0);
  REQUIRE_ALLCLOSE(mean(x.to(kFloat32), -1), values({0.9375, 1.375, -0.5, 2.875, -0.125, 1.9375}, {2, 3}).to(kFloat32));

  // rank 0: dim 0 / -1 reduce the single element
  const Tensor s = tensor(2.5, kFloat64);
  REQUIRE(sum(s, 0).dim() == 0);
  REQUIRE(sum(s, -1, true).item() == 2.5);
  REQUIRE(mean(s, 0).item() == 2.5);

  // empty: sum is 0 (PyTorch)
  REQUIRE(sum(zeros({0}, kFloat64)).item() == 0.0);
  REQUIRE_ALLCLOSE(sum(zeros({2, 0}, kFloat64), 1), zeros({2}, kFloat64));
  REQUIRE(sum(zeros({0, 3}, kFloat64), 1).shape() == Shape{0});
  REQUIRE(mean(zeros({0, 3}, kFloat64), 1).shape() == Shape{0});  // nothing to average: no error

  // integer and bool inputs sum to int64 (counting)
  const Tensor counts = sum(gt(x, 1.0));
  REQUIRE(counts.dtype() == kInt64);
  REQUIRE(counts.item() == 11.0);
  REQUIRE(sum(int_values({1, 2, 3, 4}, {2, 2}), 0).to_vector() == std::vector<double>{4, 6});
}

TEST_CASE("sum, mean: gradcheck over shapes, dims and keepdim", "[ops][reduce][sum][gradcheck]") {
  Generator gen(31);
  for (const Shape& s : kShapes) {
    INFO("shape " << s.str());
    const Tensor x = leaf(s, gen);
    tapegrad::testing::require_gradcheck([](const std::vector<Tensor>& in) { return sum(in[0]); }, {x}, true);
    tapegrad::testing::require_gradcheck([](const std::vector<Tensor>& in) { return mean(in[0]); }, {x}, true);
  }
  check_dim_reduction([](const Tensor& x, int d, bool k) { return sum(x, d, k); }, true, 32);
  check_dim_reduction([](const Tensor& x, int d, bool k) { return mean(x, d, k); }, true, 33);
  // gradient values: d mean / dx = 1 / n everywhere
  Tensor x = leaf({2, 3}, gen);
  backward(mean(x));
  REQUIRE_ALLCLOSE(x.grad(), full({2, 3}, 1.0 / 6.0, kFloat64));
  Tensor y = leaf({2, 4}, gen);
  backward(sum(mean(y, 1)));
  REQUIRE_ALLCLOSE(y.grad(), full({2, 4}, 0.25, kFloat64));
  // an empty input: sum's gradient is empty
  Tensor e = zeros({0, 2}, kFloat64).requires_grad_();
  backward(sum(e));
  REQUIRE(e.grad().shape() == Shape{0, 2});
}

// ---------------------------------------------------------------- max / min / argmax / argmin

TEST_CASE("max, min, argmax, argmin: values match numpy, first index on ties", "[ops][reduce][max]") {
  const Tensor x = sample();
  REQUIRE(max(x).item() == 6.0);
  REQUIRE(min(x).item() == -7.0);
  REQUIRE(max(x).dim() == 0);
  REQUIRE_ALLCLOSE(max(x, 0), values({1.5, -0.5, 6, 6, 3, 3, 1, 0.5, 4, 2, 2, 5}, {3, 4}));
  REQUIRE_ALLCLOSE(min(x, 0), values({0, -2, 0.25, 4, 2.5, -3, -1, -1, -7, 0.75, -2, 1}, {3, 4}));
  REQUIRE_ALLCLOSE(max(x, 1), values({3, 3, 2, 4, 4, 0.75, 6, 6}, {2, 4}));
  REQUIRE_ALLCLOSE(min(x, -2), values({-7, -2, -1, 0.5, 0, -3, -2, -1}, {2, 4}));
  REQUIRE_ALLCLOSE(max(x, -1, true), values({4, 3, 2, 6, 2.5, 5}, {2, 3, 1}));
  REQUIRE_ALLCLOSE(min(x, 2), values({-2, -1, -7, -0.5, -3, -2}, {2, 3}));

  REQUIRE(argmax(x, 0).to_vector() == std::vector<double>{0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 1});
  REQUIRE(argmin(x, 0).to_vector() == std::vector<double>{1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0});
  REQUIRE(argmax(x, 1).to_vector() == std::vector<double>{1, 1, 2, 0, 2, 2, 0, 0});
  REQUIRE(argmin(x, -2).to_vector() == std::vector<double>{2, 0, 1, 1, 0, 1, 2, 1});
  const Tensor am = argmax(x, -1, true);
  REQUIRE(am.dtype() == kInt64);
  REQUIRE(am.shape() == Shape{2, 3, 1});
  REQUIRE(am.to_vector() == std::vector<double>{3, 0, 1, 2, 0, 3});  // ties [3, 3, ..] -> 0, [.., 6, 6] -> 2, [.., 2, 2, ..] -> 1
  REQUIRE(argmin(x, 2).to_vector() == std::vector<double>{1, 2, 0, 1, 1, 2});

  // rank 0
  REQUIRE(max(tensor(3.0, kFloat64), 0).item() == 3.0);
  REQUIRE(argmax(tensor(3.0, kFloat64), -1).item() == 0.0);
  REQUIRE(argmin(tensor(3.0, kFloat64), 0, true).dim() == 0);
  // float32 and int64
  REQUIRE(max(x.to(kFloat32)).item() == 6.0);
  REQUIRE(max(int_values({3, 9, 2}, {3})).item() == 9.0);
  REQUIRE(argmin(int_values({3, 1, 1}, {3}), 0).item() == 1.0);
  // NaN propagates (PyTorch): the value is NaN and its index is the first NaN
  const Tensor n = tensor({1, NAN, 5, NAN}, kFloat64);
  REQUIRE(std::isnan(max(n).item()));
  REQUIRE(std::isnan(min(n).item()));
  REQUIRE(argmax(n, 0).item() == 1.0);
  REQUIRE(argmin(n, 0).item() == 1.0);
}

TEST_CASE("max, min over all elements: ties share the gradient evenly", "[ops][reduce][max][ties]") {
  Tensor x = tensor({{1, 5}, {5, 2}}, kFloat64).requires_grad_();
  backward(mul(max(x), 3.0));
  REQUIRE(x.grad().to_vector() == std::vector<double>{0, 1.5, 1.5, 0});

  Tensor y = tensor({{-1, 3}, {-1, -1}}, kFloat64).requires_grad_();
  backward(min(y));
  REQUIRE_ALLCLOSE(y.grad(), tensor({{1.0 / 3, 0}, {1.0 / 3, 1.0 / 3}}, kFloat64));

  Tensor one = tensor({4, 4, 4, 4}, kFloat64).requires_grad_();
  backward(max(one));
  REQUIRE(one.grad().to_vector() == std::vector<double>{0.25, 0.25, 0.25, 0.25});

  // no tie: all of g to the single extreme
  Tensor z = tensor({0.5, -2, 7}, kFloat64).requires_grad_();
  backward(min(z));
  REQUIRE(z.grad().to_vector() == std::vector<double>{0, 1, 0});
}

TEST_CASE("max, min along dim: the gradient goes to the first extreme index", "[ops][reduce][max][ties]") {
  Tensor x = sample().requires_grad_();
  backward(sum(max(x, -1)));
  // argmax along the last dim is [3, 0, 1, 2, 0, 3]
  REQUIRE_ALLCLOSE(x.grad(), tensor({{{0, 0, 0, 1}, {1, 0, 0, 0}, {0, 1, 0, 0}}, {{0, 0, 1, 0}, {1, 0, 0, 0}, {0, 0, 0, 1}}},
                                    kFloat64));

  Tensor y = tensor({{2, 0, 2}, {-1, -1, 3}}, kFloat64).requires_grad_();
  backward(min(y, 1, true), values({10, 20}, {2, 1}));
  REQUIRE(y.grad().to_vector() == std::vector<double>{0, 10, 0, 20, 0, 0});

  Tensor w = tensor({{2, 0, 2}, {-1, -1, 3}}, kFloat64).requires_grad_();
  backward(max(w, 0), tensor({1, 2, 3}, kFloat64));  // column ties [2, -1], [0, -1], [2, 3]
  REQUIRE(w.grad().to_vector() == std::vector<double>{1, 2, 0, 0, 0, 3});
}

TEST_CASE("max, min: gradcheck over shapes, dims and keepdim; gradgradcheck", "[ops][reduce][max][gradcheck]") {
  Generator gen(34);
  for (const Shape& s : kShapes) {
    INFO("shape " << s.str());
    const Tensor x = leaf(s, gen);  // random normals: no ties
    tapegrad::testing::require_gradcheck([](const std::vector<Tensor>& in) { return max(in[0]); }, {x}, true);
    tapegrad::testing::require_gradcheck([](const std::vector<Tensor>& in) { return min(in[0]); }, {x}, true);
  }
  check_dim_reduction([](const Tensor& x, int d, bool k) { return max(x, d, k); }, true, 35);
  check_dim_reduction([](const Tensor& x, int d, bool k) { return min(x, d, k); }, true, 36);
  // max inside a smooth function: second derivatives through the selection
  const Function f = [](const std::vector<Tensor>& in) { return mul(max(in[0], 1), max(in[0], 1)); };
  tapegrad::testing::require_gradcheck(f, {leaf({3, 4}, gen)}, true);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("reductions: bad inputs throw InvalidArgument naming the op", "[ops][reduce][bad]") {
  const Tensor x = zeros({2, 3}, kFloat64);
  const Tensor empty = zeros({0, 3}, kFloat64);
  REQUIRE_THROWS_AS(sum(x, 2), InvalidArgument);
  REQUIRE_THROWS_WITH(sum(x, 2), Contains("sum: dim 2 is out of range"));
  REQUIRE_THROWS_WITH(sum(x, -3), Contains("sum") && Contains("dim -3"));
  REQUIRE_THROWS_WITH(sum(Tensor()), Contains("sum") && Contains("undefined"));
  REQUIRE_THROWS_WITH(mean(x, 5), Contains("mean: dim 5"));
  REQUIRE_THROWS_WITH(max(x, -3), Contains("max: dim -3"));
  REQUIRE_THROWS_WITH(min(x, 2, true), Contains("min: dim 2"));
  REQUIRE_THROWS_WITH(argmax(x, 2), Contains("argmax: dim 2"));
  REQUIRE_THROWS_WITH(argmin(tensor(1.0), 1), Contains("argmin: dim 1"));

  // empty inputs
  REQUIRE_THROWS_AS(mean(empty), InvalidArgument);
  REQUIRE_THROWS_WITH(mean(empty), Contains("mean: x is empty (shape [0, 3])") && Contains("NaN"));
  REQUIRE_THROWS_WITH(mean(empty, 0), Contains("mean: dim 0") && Contains("size 0") && Contains("NaN"));
  REQUIRE_THROWS_AS(max(empty), InvalidArgument);
  REQUIRE_THROWS_WITH(max(empty), Contains("max: x is empty"));
  REQUIRE_THROWS_WITH(min(zeros({0}, kFloat64)), Contains("min: x is empty"));
  REQUIRE_THROWS_WITH(max(empty, 0), Contains("max: dim 0") && Contains("size 0"));
  REQUIRE_THROWS_WITH(min(empty, -2, true), Contains("min: dim 0") && Contains("size 0"));
  REQUIRE_THROWS_WITH(argmax(empty, 0), Contains("argmax: dim 0") && Contains("size 0"));
  REQUIRE_THROWS_WITH(argmin(empty, 0), Contains("argmin") && Contains("size 0"));
  REQUIRE(max(empty, 1).shape() == Shape{0});  // nothing reduced over an empty slice: no error

  // dtypes
  REQUIRE_THROWS_WITH(mean(int_values({1, 2}, {2})), Contains("mean") && Contains("int64"));
  REQUIRE_THROWS_WITH(mean(int_values({1, 2}, {2}), 0), Contains("mean") && Contains("int64"));
}

TEST_CASE("reductions: nodes save only what their VJPs read", "[ops][reduce][saved]") {
  Generator gen(9);
  const Tensor x = randn({3, 4}, gen, kFloat64).requires_grad_();
  auto last = []() -> const Node& { return tape_nodes()[tape_nodes().size() - 1]; };
  // sum and mean: nothing (x's shape is in the node's input metadata)
  const Tensor s0 = sum(x);
  CHECK(last().saved.empty());
  const Tensor s1 = sum(x, 1);
  CHECK(last().saved.empty());
  const Tensor m0 = mean(x);
  CHECK(last().saved.empty());
  const Tensor m1 = mean(x, 0, true);
  CHECK(last().saved.empty());
  CHECK(last().saved_bytes == 0);
  const Tensor m = max(x);
  CHECK(last().saved.size() == 2);  // x and the output (the mask is x = y)
  CHECK(last().saved_bytes == (12 + 1) * sizeof(double));
  const Tensor md = min(x, 1);
  REQUIRE(last().saved.size() == 1);  // the argmin indices only, keepdim shape
  CHECK(last().saved[0].dtype() == kInt64);
  CHECK(last().saved[0].shape() == Shape{3, 1});
  CHECK(last().saved_bytes == 3 * sizeof(std::int64_t));
}

// ---------------------------------------------------------------- empty tensors

TEST_CASE("empty tensors: reductions and matmul", "[hardening][empty]") {
  const Tensor x = empty_leaf({3, 0});
  const Tensor s = sum(x);
  REQUIRE(s.item() == 0.0);
  backward_ones(s, {x});
  const Tensor r = sum(x, 1);
  REQUIRE(r.shape() == Shape{3});
  REQUIRE(r.to_vector() == std::vector<double>{0, 0, 0});

  const Tensor a = empty_leaf({2, 0}), b = empty_leaf({0, 3});
  const Tensor c = matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 3});
  REQUIRE(c.to_vector() == std::vector<double>(6, 0.0));
  backward_ones(c, {a, b});
  const Tensor u = empty_leaf({0, 3}), w = ones({3, 2}, kFloat64).requires_grad_();
  const Tensor uw = matmul(u, w);
  REQUIRE(uw.shape() == Shape{0, 2});
  backward_ones(uw, {u, w});
  REQUIRE(sum(w.grad()).item() == 0.0);

  REQUIRE_THROWS_WITH(max(x, 1), Contains("max") && Contains("size 0"));
  REQUIRE_THROWS_WITH(argmax(x, 1), Contains("argmax") && Contains("size 0"));
}
