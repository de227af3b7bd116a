// SPDX-License-Identifier: MIT
// Shape ops (also gather and scatter_add): values against hand-worked numbers and numpy (pasted from
// /usr/bin/python3 + numpy),
// views sharing storage, float64 gradchecks over shapes and (negative) dims, second derivatives,
// and bad input.
#include "autodiff/detail/node.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

Tensor leaf(const Shape& s, Generator& gen) { return randn(s, gen, kFloat64).requires_grad_(); }

Tensor values(std::vector<double> v, const Shape& s) { return from_vector(v, s, kFloat64); }

Tensor positions(std::vector<std::int64_t> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return from_vector(v, Shape{n});
}

// 0, 1, ..., 23 as [2, 3, 4] (float64)
Tensor iota234() {
  std::vector<double> v(24);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return values(v, {2, 3, 4});
}


// x -> op(x) * w with a fixed random w, so every output element has a different weight in the
// checked function (a plain sum would hide a permuted gradient).
Function weighted(std::function<Tensor(const Tensor&)> op, std::uint64_t seed) {
  return [op, seed](const std::vector<Tensor>& in) {
    Tensor y = op(in[0]);
    Generator gen(seed);
    return mul(y, randn(y.shape(), gen, kFloat64));
  };
}


Tensor idx(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }

}  // namespace

// ---------------------------------------------------------------- reshape / view / flatten

TEST_CASE("reshape, view: new shape over the same row-major values, one -1 inferred", "[ops][shape][reshape]") {
  const Tensor x = iota234();
  const Tensor r = reshape(x, {4, -1});
  REQUIRE(r.shape() == Shape{4, 6});
  REQUIRE(r.at({1, 0}) == 6.0);
  REQUIRE(r.at({3, 5}) == 23.0);
  REQUIRE(view(x, {-1}).shape() == Shape{24});
  REQUIRE(view(x, {2, 12}).at({1, 1}) == 13.0);
  REQUIRE(reshape(x, {1, 2, 1, 12}).shape() == Shape{1, 2, 1, 12});
  REQUIRE(reshape(tensor({5.0}, kFloat64), {}).dim() == 0);
  REQUIRE(reshape(tensor(5.0, kFloat64), {1, 1}).shape() == Shape{1, 1});
  REQUIRE(reshape(zeros({0, 3}), {3, 0}).shape() == Shape{3, 0});
  REQUIRE(reshape(zeros({0, 3}), {-1, 1, 3}).shape() == Shape{0, 1, 3});
  // int64 tensors reshape too (no gradient)
  REQUIRE(reshape(positions({1, 2, 3, 4}), {2, 2}).at({1, 0}) == 3.0);
}

TEST_CASE("reshape, view, flatten, squeeze, unsqueeze: views share storage with their source", "[ops][shape][view]") {
  Tensor x = iota234();
  Tensor r = reshape(x, {6, 4});
  r.set({5, 3}, -1.0);  // last element
  REQUIRE(x.at({1, 2, 3}) == -1.0);
  x.set({0, 0, 1}, 100.0);
  REQUIRE(r.at({0, 1}) == 100.0);

  Tensor v = view(x, {24});
  v.set({2}, 7.5);
  REQUIRE(x.at({0, 0, 2}) == 7.5);
  Tensor f = flatten(x, 1);
  f.set({1, 0}, 3.25);
  REQUIRE(x.at({1, 0, 0}) == 3.25);
  Tensor u = unsqueeze(x, 1);
  u.set({0, 0, 2, 2}, -4.0);
  REQUIRE(x.at({0, 2, 2}) == -4.0);
  Tensor s = squeeze(u);
  s.set({1, 1, 1}, 9.0);
  REQUIRE(x.at({1, 1, 1}) == 9.0);
  Tensor s1 = squeeze(u, 1);
  s1.set({0, 1, 0}, 8.0);
  REQUIRE(x.at({0, 1, 0}) == 8.0);

  // small (inline) values too
  Tensor small = tensor({1, 2}, kFloat64);
  Tensor sv = reshape(small, {2, 1});
  sv.set({1, 0}, 5.0);
  REQUIRE(small.at({1}) == 5.0);

  // a view keeps the storage alive after the source handle is gone
  Tensor keep;
  {
    Tensor tmp = iota234();
    keep = reshape(tmp, {24});
  }
  REQUIRE(keep.at({23}) == 23.0);
}

TEST_CASE("reshape, view: gradcheck and gradgradcheck", "[ops][shape][reshape][gradcheck]") {
  Generator gen(21);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& x) { return reshape(x, {3, -1}); }, 1), {leaf({2, 3, 2}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& x) { return reshape(x, {1, 2, 1, 3}); }, 2), {leaf({6}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& x) { return reshape(x, {}); }, 3), {leaf({1, 1}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& x) { return view(x, {-1}); }, 4), {leaf({}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& x) { return view(x, {2, 2}); }, 5), {leaf({4}, gen)}, true);
}

TEST_CASE("flatten: merges start_dim..end_dim", "[ops][shape][flatten]") {
  const Tensor x = iota234();
  REQUIRE(flatten(x).shape() == Shape{24});
  REQUIRE(flatten(x, 1).shape() == Shape{2, 12});
  REQUIRE(flatten(x, 0, 1).shape() == Shape{6, 4});
  REQUIRE(flatten(x, -2, -1).shape() == Shape{2, 12});
  REQUIRE(flatten(x, 1, 1).shape() == Shape{2, 3, 4});
  REQUIRE(flatten(x, 0, 1).at({4, 1}) == 17.0);
  REQUIRE(flatten(tensor(3.0, kFloat64)).shape() == Shape{1});  // rank 0 -> [1], as PyTorch
  Generator gen(22);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return flatten(t, -3, -2); }, 6), {leaf({2, 1, 3, 2}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return flatten(t); }, 7), {leaf({}, gen)});
}

TEST_CASE("unsqueeze, squeeze: insert and drop size-1 dims, negative dims", "[ops][shape][squeeze]") {
  const Tensor x = zeros({2, 1, 3}, kFloat64);
  REQUIRE(unsqueeze(x, 0).shape() == Shape{1, 2, 1, 3});
  REQUIRE(unsqueeze(x, 3).shape() == Shape{2, 1, 3, 1});
  REQUIRE(unsqueeze(x, -1).shape() == Shape{2, 1, 3, 1});
  REQUIRE(unsqueeze(x, -4).shape() == Shape{1, 2, 1, 3});
  REQUIRE(unsqueeze(tensor(1.0, kFloat64), 0).shape() == Shape{1});
  REQUIRE(squeeze(x).shape() == Shape{2, 3});
  REQUIRE(squeeze(x, 1).shape() == Shape{2, 3});
  REQUIRE(squeeze(x, -2).shape() == Shape{2, 3});
  REQUIRE(squeeze(x, 0).shape() == Shape{2, 1, 3});  // size 2: unchanged
  REQUIRE(squeeze(ones({1, 1}, kFloat64)).dim() == 0);
  REQUIRE(squeeze(tensor(1.0, kFloat64), 0).dim() == 0);
  REQUIRE(squeeze(tensor({1, 2, 3}, kFloat64), -1).to_vector() == std::vector<double>{1, 2, 3});

  Generator gen(23);
  for (int d : {0, 1, 2, 3, -1, -4})
    tapegrad::testing::require_gradcheck(weighted([d](const Tensor& t) { return unsqueeze(t, d); }, 8), {leaf({2, 1, 3}, gen)}, d == -1);
  for (int d : {0, 1, -1, -2})
    tapegrad::testing::require_gradcheck(weighted([d](const Tensor& t) { return squeeze(t, d); }, 9), {leaf({3, 1}, gen)}, d == -1);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return squeeze(t); }, 10), {leaf({1, 2, 1, 2}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return unsqueeze(t, 0); }, 11), {leaf({}, gen)});
}

// ---------------------------------------------------------------- transpose / permute

TEST_CASE("transpose, permute: values match numpy", "[ops][shape][transpose]") {
  const Tensor x = iota234();
  const Tensor t = transpose(x, 0, 2);  // numpy x.transpose(2, 1, 0)
  REQUIRE(t.shape() == Shape{4, 3, 2});
  REQUIRE_ALLCLOSE(t, values({0, 12, 4, 16, 8, 20, 1, 13, 5, 17, 9, 21, 2, 14, 6, 18, 10, 22, 3, 15, 7, 19, 11, 23}, {4, 3, 2}));
  REQUIRE_ALLCLOSE(transpose(x, -1, 0), t);
  REQUIRE_ALLCLOSE(transpose(x, 1, 1), x);
  const Tensor p = permute(x, {2, 0, 1});  // numpy x.transpose(2, 0, 1)
  REQUIRE(p.shape() == Shape{4, 2, 3});
  REQUIRE_ALLCLOSE(p, values({0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7, 11, 15, 19, 23}, {4, 2, 3}));
  REQUIRE_ALLCLOSE(permute(x, {-1, 0, -2}), p);
  REQUIRE_ALLCLOSE(transpose(tensor({{1, 2, 3}}, kFloat64), 0, 1), values({1, 2, 3}, {3, 1}));
  REQUIRE(transpose(tensor(2.0, kFloat64), 0, -1).item() == 2.0);
  REQUIRE(permute(tensor(2.0, kFloat64), {}).item() == 2.0);
  // a copy, not a view
  Tensor y = transpose(x, 0, 1);
  y.set({0, 0, 0}, -5.0);
  REQUIRE(x.at({0, 0, 0}) == 0.0);
  // int64
  REQUIRE(transpose(reshape(positions({1, 2, 3, 4, 5, 6}), {2, 3}), 0, 1).to_vector() ==
          std::vector<double>{1, 4, 2, 5, 3, 6});
}

TEST_CASE("transpose, permute: gradcheck and gradgradcheck", "[ops][shape][transpose][gradcheck]") {
  Generator gen(24);
  const std::vector<std::pair<int, int>> pairs = {{0, 1}, {0, 2}, {-1, -2}, {1, -1}, {2, 2}};
  for (auto [d0, d1] : pairs) {
    INFO("dims " << d0 << ", " << d1);
    tapegrad::testing::require_gradcheck(weighted([d0 = d0, d1 = d1](const Tensor& t) { return transpose(t, d0, d1); }, 12), {leaf({2, 3, 2}, gen)},
                  true);
  }
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return transpose(t, 0, 3); }, 13), {leaf({2, 1, 3, 2}, gen)});
  const std::vector<std::vector<int>> perms = {{2, 0, 1}, {1, 2, 0}, {-1, -3, -2}, {0, 1, 2}};
  for (const auto& perm : perms)
    tapegrad::testing::require_gradcheck(weighted([perm](const Tensor& t) { return permute(t, perm); }, 14), {leaf({2, 3, 2}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return permute(t, {3, 1, 0, 2}); }, 15), {leaf({2, 1, 2, 3}, gen)});
}

// ---------------------------------------------------------------- slice / narrow

TEST_CASE("slice: Python slicing along a dim (negative bounds, clamped end, step)", "[ops][shape][slice]") {
  const Tensor a = values({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {10});
  REQUIRE(slice(a, 0, 2, 8, 3).to_vector() == std::vector<double>{2, 5});       // a[2:8:3]
  REQUIRE(slice(a, 0, -3, 10).to_vector() == std::vector<double>{7, 8, 9});     // a[-3:]
  REQUIRE(slice(a, 0, 0, -7).to_vector() == std::vector<double>{0, 1, 2});      // a[:-7]
  REQUIRE(slice(a, 0, 8, 100).to_vector() == std::vector<double>{8, 9});        // end clamped
  REQUIRE(slice(a, 0, -100, 2).to_vector() == std::vector<double>{0, 1});       // start clamped
  REQUIRE(slice(a, 0, 6, 3).numel() == 0);                                      // empty range
  REQUIRE(slice(a, 0, 12, 20).numel() == 0);
  REQUIRE(slice(a, 0, 1, 10, 4).to_vector() == std::vector<double>{1, 5, 9});
  REQUIRE(slice(a, -1, 0, INT64_MAX, INT64_MAX).to_vector() == std::vector<double>{0});
  // numpy x[:, 1:3, ::2]
  const Tensor s = slice(slice(iota234(), 1, 1, 3), -1, 0, 4, 2);
  REQUIRE_ALLCLOSE(s, values({4, 6, 8, 10, 16, 18, 20, 22}, {2, 2, 2}));
  // a copy
  Tensor c = slice(a, 0, 0, 2);
  c.set({0}, 42.0);
  REQUIRE(a.at({0}) == 0.0);
}

TEST_CASE("narrow: start and length must fit", "[ops][shape][narrow]") {
  const Tensor x = iota234();
  REQUIRE_ALLCLOSE(narrow(x, 1, 1, 2), slice(x, 1, 1, 3));
  REQUIRE_ALLCLOSE(narrow(x, -1, -2, 2), values({2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23}, {2, 3, 2}));
  REQUIRE(narrow(x, 0, 2, 0).shape() == Shape{0, 3, 4});
}

TEST_CASE("slice, narrow: gradcheck over dims, steps and empty results", "[ops][shape][slice][gradcheck]") {
  Generator gen(25);
  struct Case {
    int dim;
    std::int64_t start, end, step;
  };
  const std::vector<Case> cases = {{0, 0, 2, 1}, {1, 1, 3, 1}, {-1, 0, 5, 2}, {-1, -3, 100, 2}, {1, -2, -1, 1}, {2, 0, 4, 3}};
  for (const Case& c : cases) {
    INFO("dim " << c.dim << " start " << c.start << " end " << c.end << " step " << c.step);
    tapegrad::testing::require_gradcheck(weighted([c](const Tensor& t) { return slice(t, c.dim, c.start, c.end, c.step); }, 16),
                  {leaf({2, 3, 4}, gen)}, c.dim == -1);
  }
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return slice(t, 0, 1, 2); }, 17), {leaf({3}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return narrow(t, -2, 1, 2); }, 18), {leaf({1, 2, 3, 2}, gen)}, true);
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return narrow(t, 0, -1, 1); }, 19), {leaf({3, 2}, gen)});
  // the gradient of a sliced sum is an exact indicator
  Tensor x = zeros({6}, kFloat64).requires_grad_();
  backward(sum(slice(x, 0, 1, 6, 2)));
  REQUIRE(x.grad().to_vector() == std::vector<double>{0, 1, 0, 1, 0, 1});
}

// ---------------------------------------------------------------- cat / stack

TEST_CASE("cat, stack: values along each dim", "[ops][shape][cat]") {
  const Tensor a = tensor({{1, 2}, {3, 4}}, kFloat64);
  const Tensor b = tensor({{5, 6}}, kFloat64);
  REQUIRE_ALLCLOSE(cat({a, b}), tensor({{1, 2}, {3, 4}, {5, 6}}, kFloat64));
  REQUIRE_ALLCLOSE(cat({a, transpose(b, 0, 1), a}, -1), tensor({{1, 2, 5, 1, 2}, {3, 4, 6, 3, 4}}, kFloat64));
  REQUIRE_ALLCLOSE(cat({a}), a);
  REQUIRE_ALLCLOSE(cat({a, zeros({0, 2}, kFloat64), b}, 0), tensor({{1, 2}, {3, 4}, {5, 6}}, kFloat64));
  REQUIRE(cat({positions({1}), positions({2, 3})}).to_vector() == std::vector<double>{1, 2, 3});

  REQUIRE_ALLCLOSE(stack({a, a * 2.0}), tensor({{{1, 2}, {3, 4}}, {{2, 4}, {6, 8}}}, kFloat64));
  REQUIRE_ALLCLOSE(stack({a, a * 2.0}, 1), tensor({{{1, 2}, {2, 4}}, {{3, 4}, {6, 8}}}, kFloat64));
  REQUIRE_ALLCLOSE(stack({a, a * 2.0}, -1), tensor({{{1, 2}, {2, 4}}, {{3, 6}, {4, 8}}}, kFloat64));
  REQUIRE_ALLCLOSE(stack({tensor(1.0, kFloat64), tensor(2.0, kFloat64)}), tensor({1, 2}, kFloat64));
}

TEST_CASE("cat, stack: gradcheck and gradgradcheck", "[ops][shape][cat][gradcheck]") {
  Generator gen(26);
  const Function cat3 = [](const std::vector<Tensor>& in) { return cat({in[0], in[1], in[2]}, 1); };
  tapegrad::testing::require_gradcheck(cat3, {leaf({2, 1, 3}, gen), leaf({2, 2, 3}, gen), leaf({2, 3, 3}, gen)}, true);
  const Function cat_last = [](const std::vector<Tensor>& in) { return cat({in[0], in[1], in[0]}, -1); };  // reused input
  tapegrad::testing::require_gradcheck(cat_last, {leaf({2, 2}, gen), leaf({2, 1}, gen)}, true);
  // one input without requires_grad
  tapegrad::testing::require_gradcheck([](const std::vector<Tensor>& in) { return cat({in[0], ones({2}, kFloat64)}); }, {leaf({3}, gen)});
  for (int d : {0, 1, 2, -1, -3}) {
    INFO("stack dim " << d);
    const Function st = [d](const std::vector<Tensor>& in) { return stack({in[0], in[1]}, d); };
    tapegrad::testing::require_gradcheck(st, {leaf({2, 3}, gen), leaf({2, 3}, gen)}, d == -1);
  }
  tapegrad::testing::require_gradcheck([](const std::vector<Tensor>& in) { return stack({in[0], in[1], in[0]}); }, {leaf({}, gen), leaf({}, gen)});
}

// ---------------------------------------------------------------- index_select / index_add

TEST_CASE("index_select, index_add: values, repeats, negative dims", "[ops][shape][index_select]") {
  const Tensor x = tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64);
  REQUIRE_ALLCLOSE(index_select(x, 1, positions({2, 0, 2})), tensor({{3, 1, 3}, {6, 4, 6}}, kFloat64));
  REQUIRE_ALLCLOSE(index_select(x, -2, positions({1})), tensor({{4, 5, 6}}, kFloat64));
  REQUIRE(index_select(x, 0, positions({})).shape() == Shape{0, 3});
  REQUIRE(index_select(positions({7, 8, 9}), 0, positions({2, 2})).to_vector() == std::vector<double>{9, 9});

  // index_add accumulates repeated positions
  const Tensor src = tensor({{10, 20}, {30, 40}}, kFloat64);
  REQUIRE_ALLCLOSE(index_add(x, 1, positions({0, 0}), src), tensor({{31, 2, 3}, {74, 5, 6}}, kFloat64));
  REQUIRE_ALLCLOSE(index_add(x, -1, positions({2, 1}), src), tensor({{1, 22, 13}, {4, 45, 36}}, kFloat64));

  // exact gradient with repeats: d sum(x[[0, 0, 2]]) / dx = [2, 0, 1]
  Tensor v = tensor({1, 2, 3}, kFloat64).requires_grad_();
  backward(sum(index_select(v, 0, positions({0, 0, 2}))));
  REQUIRE(v.grad().to_vector() == std::vector<double>{2, 0, 1});
}

TEST_CASE("index_select, index_add: gradcheck and gradgradcheck", "[ops][shape][index_select][gradcheck]") {
  Generator gen(27);
  for (int d : {0, 1, 2, -1, -2}) {
    INFO("dim " << d);
    const Tensor idx = positions({1, 0, 1});
    tapegrad::testing::require_gradcheck(weighted([d, idx](const Tensor& t) { return index_select(t, d, idx); }, 20), {leaf({2, 2, 3}, gen)},
                  d == -1);
  }
  tapegrad::testing::require_gradcheck(weighted([](const Tensor& t) { return index_select(t, 0, positions({0, 0})); }, 21), {leaf({1}, gen)}, true);
  const Function ia = [](const std::vector<Tensor>& in) { return index_add(in[0], 1, positions({2, 0, 2}), in[1]); };
  tapegrad::testing::require_gradcheck(ia, {leaf({2, 3}, gen), leaf({2, 3}, gen)}, true);
  const Function ia_src = [](const std::vector<Tensor>& in) {
    return index_add(zeros({3, 2}, kFloat64), -2, positions({1, 1}), in[0]);
  };
  tapegrad::testing::require_gradcheck(ia_src, {leaf({2, 2}, gen)}, true);
}

// ---------------------------------------------------------------- bad input

TEST_CASE("shape ops: bad inputs throw InvalidArgument naming the op", "[ops][shape][bad]") {
  const Tensor x = zeros({2, 3}, kFloat64);
  // reshape / view
  REQUIRE_THROWS_AS(reshape(x, {4, 2}), InvalidArgument);
  REQUIRE_THROWS_WITH(reshape(x, {4, 2}), Contains("reshape") && Contains("[2, 3] (6 elements)") && Contains("[4, 2]"));
  REQUIRE_THROWS_WITH(view(x, {4, -1}), Contains("view") && Contains("not a multiple of 4"));
  REQUIRE_THROWS_WITH(reshape(x, {-1, -1}), Contains("reshape") && Contains("only one size can be inferred"));
  REQUIRE_THROWS_WITH(reshape(x, {-2, -3}), Contains("reshape") && Contains("size -2"));
  REQUIRE_THROWS_WITH(reshape(zeros({0, 3}), {0, -1}), Contains("reshape") && Contains("cannot infer"));
  REQUIRE_THROWS_WITH(reshape(x, {1, 1, 1, 2, 3}), Contains("reshape") && Contains("rank 0 to 4"));
  REQUIRE_THROWS_WITH(reshape(Tensor(), {1}), Contains("reshape") && Contains("undefined"));
  REQUIRE_THROWS_WITH(reshape(x, {INT64_MAX, INT64_MAX, 2}), Contains("reshape"));
  // flatten / squeeze / unsqueeze
  REQUIRE_THROWS_WITH(flatten(x, 1, 0), Contains("flatten") && Contains("start_dim 1 comes after end_dim 0"));
  REQUIRE_THROWS_WITH(flatten(x, 2), Contains("flatten") && Contains("dim 2 is out of range"));
  REQUIRE_THROWS_AS(unsqueeze(x, 3), InvalidArgument);
  REQUIRE_THROWS_WITH(unsqueeze(x, -4), Contains("unsqueeze") && Contains("dim -4"));
  REQUIRE_THROWS_WITH(unsqueeze(zeros({1, 1, 1, 1}), 0), Contains("unsqueeze") && Contains("at most 4"));
  REQUIRE_THROWS_WITH(squeeze(x, 2), Contains("squeeze") && Contains("dim 2"));
  REQUIRE_THROWS_WITH(squeeze(Tensor()), Contains("squeeze"));
  // transpose / permute
  REQUIRE_THROWS_WITH(transpose(x, 0, 2), Contains("transpose") && Contains("dim 2 is out of range"));
  REQUIRE_THROWS_WITH(transpose(x, -3, 0), Contains("transpose"));
  REQUIRE_THROWS_WITH(permute(x, {0}), Contains("permute") && Contains("1 entries"));
  REQUIRE_THROWS_WITH(permute(x, {1, -1}), Contains("permute") && Contains("twice"));
  REQUIRE_THROWS_WITH(permute(x, {0, 2}), Contains("permute") && Contains("out of range"));
  // slice / narrow
  REQUIRE_THROWS_AS(slice(x, 1, 0, 2, 0), InvalidArgument);
  REQUIRE_THROWS_WITH(slice(x, 1, 0, 2, 0), Contains("slice") && Contains("step 0"));
  REQUIRE_THROWS_WITH(slice(x, 1, 2, 0, -1), Contains("slice") && Contains("step > 0"));
  REQUIRE_THROWS_WITH(slice(x, 2, 0, 1), Contains("slice") && Contains("dim 2"));
  REQUIRE_THROWS_WITH(slice(tensor(1.0), 0, 0, 1), Contains("slice") && Contains("0-dimensional"));
  REQUIRE_THROWS_WITH(narrow(x, 1, 2, 2), Contains("narrow") && Contains("length 2"));
  REQUIRE_THROWS_WITH(narrow(x, 1, 4, 0), Contains("narrow") && Contains("start 4"));
  REQUIRE_THROWS_WITH(narrow(x, 1, -4, 1), Contains("narrow") && Contains("start -4"));
  REQUIRE_THROWS_WITH(narrow(x, 0, 0, -1), Contains("narrow") && Contains("length -1"));
  // cat / stack
  REQUIRE_THROWS_WITH(cat({}), Contains("cat") && Contains("empty"));
  REQUIRE_THROWS_WITH(cat({x, zeros({2, 3}, kFloat32)}), Contains("cat") && Contains("tensors[1]") && Contains("float32"));
  REQUIRE_THROWS_WITH(cat({x, zeros({3, 3}, kFloat64)}, 1),
                      Contains("cat") && Contains("tensors[1] has shape [3, 3]") && Contains("except in dim 1"));
  REQUIRE_THROWS_WITH(cat({x, zeros({6}, kFloat64)}), Contains("cat") && Contains("same rank"));
  REQUIRE_THROWS_WITH(cat({tensor(1.0), tensor(2.0)}), Contains("cat") && Contains("0-dimensional"));
  REQUIRE_THROWS_WITH(cat({x, x}, 2), Contains("cat") && Contains("dim 2"));
  REQUIRE_THROWS_WITH(cat({x, Tensor()}), Contains("cat") && Contains("tensors[1]") && Contains("undefined"));
  REQUIRE_THROWS_WITH(stack({}), Contains("stack") && Contains("empty"));
  REQUIRE_THROWS_WITH(stack({x, zeros({3, 2}, kFloat64)}), Contains("stack") && Contains("equal shapes"));
  REQUIRE_THROWS_WITH(stack({x, x}, 3), Contains("stack") && Contains("dim 3"));
  REQUIRE_THROWS_WITH(stack({zeros({1, 1, 1, 1})}), Contains("stack") && Contains("at most 4"));
  // index_select / index_add
  REQUIRE_THROWS_AS(index_select(x, 1, positions({0, 3})), InvalidArgument);
  REQUIRE_THROWS_WITH(index_select(x, 1, positions({0, 3})), Contains("index_select: index[1] = 3 is out of range for dim 1"));
  REQUIRE_THROWS_WITH(index_select(x, 0, positions({-1})), Contains("index_select: index[0] = -1"));
  REQUIRE_THROWS_WITH(index_select(x, 0, tensor({0.0})), Contains("index_select") && Contains("int64"));
  REQUIRE_THROWS_WITH(index_select(x, 0, reshape(positions({0, 1}), {1, 2})), Contains("index_select") && Contains("1-D"));
  REQUIRE_THROWS_WITH(index_select(x, 2, positions({0})), Contains("index_select") && Contains("dim 2"));
  REQUIRE_THROWS_WITH(index_select(tensor(1.0), 0, positions({0})), Contains("index_select") && Contains("0-dimensional"));
  REQUIRE_THROWS_WITH(index_add(x, 0, positions({0}), zeros({2, 3}, kFloat64)),
                      Contains("index_add") && Contains("source has shape [2, 3]; expected [1, 3]"));
  REQUIRE_THROWS_WITH(index_add(x, 0, positions({5}), zeros({1, 3}, kFloat64)), Contains("index_add: index[0] = 5"));
  REQUIRE_THROWS_WITH(index_add(x, 0, positions({0}), zeros({1, 3}, kFloat32)), Contains("index_add") && Contains("float32"));
}

TEST_CASE("shape ops: nodes save nothing but the index tensors", "[ops][shape][saved]") {
  Generator gen(9);
  const Tensor x = randn({2, 3, 4}, gen, kFloat64).requires_grad_();
  auto last = []() -> const Node& { return tape_nodes()[tape_nodes().size() - 1]; };
  // views, transpose, permute, slice, narrow, cat: nothing (shapes are input metadata)
  const std::vector<Tensor> saves_nothing{reshape(x, {6, 4}), view(x, {-1}), flatten(x, 1), unsqueeze(x, 0),
                                          squeeze(x), squeeze(x, 0), transpose(x, 0, 2), permute(x, {2, 0, 1}),
                                          slice(x, 2, 0, 4, 2), narrow(x, 1, 1, 2), cat({x, x}, 1)};
  REQUIRE(tape_nodes().size() >= saves_nothing.size());
  for (std::size_t i = tape_nodes().size() - saves_nothing.size(); i < tape_nodes().size(); ++i) {
    INFO(tape_nodes()[i].op);
    CHECK(tape_nodes()[i].saved.empty());
  }
  const Tensor index = from_vector(std::vector<std::int64_t>{2, 0, 2}, Shape{3});
  const Tensor sel = index_select(x, 2, index);
  REQUIRE(last().saved.size() == 1);
  CHECK(last().saved[0].same(index));
  const Tensor added = index_add(x, 2, index, sel);
  REQUIRE(last().saved.size() == 1);
  CHECK(last().saved[0].same(index));
  const Tensor gi = from_vector(std::vector<std::int64_t>{1, 0, 0, 1}, Shape{1, 2, 2});
  const Tensor ga = gather(x, 0, gi);
  REQUIRE(last().saved.size() == 1);
  CHECK(last().saved[0].same(gi));
  const Tensor sa = scatter_add(x, 2, gi, ga);
  REQUIRE(last().saved.size() == 1);
  CHECK(last().saved[0].same(gi));
  CHECK(last().saved_bytes == 4 * sizeof(std::int64_t));
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
