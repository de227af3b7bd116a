// SPDX-License-Identifier: MIT
// ops/kernels/shape: the copying shape kernels on their own (no tape), against values worked out
// by hand: permutations, strided slices, cat with empty parts, index_select / index_add with
// repeats, gather / scatter_add along each dim, in float and int64.
#include "testing.hpp"

#include <array>
#include <vector>

#include "ops/kernels/shape.hpp"

using namespace tapegrad;

namespace {
Tensor ints(std::vector<std::int64_t> v, const Shape& s) { return from_vector(v, s); }
// 0, 1, ..., n-1 laid out in shape s, as dt
Tensor iota(const Shape& s, DType dt) {
  std::vector<double> v(static_cast<std::size_t>(s.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return from_vector(v, s, dt);
}
}  // namespace

TEST_CASE("kernels::permute_forward: out[..k..] = x[..dims[k]..]", "[kernels][shape]") {
  for (DType dt : {kFloat32, kFloat64, kInt64}) {
    const Tensor x = iota(Shape{2, 3}, dt);
    const std::array<int, 2> t{1, 0};
    CHECK(kernels::permute_forward(x, t).to_vector() == std::vector<double>{0, 3, 1, 4, 2, 5});
    // x [2, 3, 4] = 12a + 4b + c; dims (2, 0, 1): out[c][a][b] = 12a + 4b + c
    const Tensor y = iota(Shape{2, 3, 4}, dt);
    const std::array<int, 3> p{2, 0, 1};
    const Tensor out = kernels::permute_forward(y, p);
    REQUIRE(out.shape() == Shape{4, 2, 3});
    std::vector<double> expected;
    for (int c = 0; c < 4; ++c)
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 3; ++b) expected.push_back(12 * a + 4 * b + c);
    CHECK(out.to_vector() == expected);
  }
  const std::array<int, 2> t{1, 0};
  CHECK(kernels::permute_forward(Tensor::empty(Shape{0, 3}, kFloat32), t).shape() == Shape{3, 0});
}

TEST_CASE("kernels::slice_forward, slice_positions: strided rows along a dim", "[kernels][shape]") {
  const Tensor x = iota(Shape{2, 5}, kFloat64);  // rows 0..4 and 5..9
  CHECK(kernels::slice_forward(x, 1, 1, 2, 2).to_vector() == std::vector<double>{1, 3, 6, 8});
  CHECK(kernels::slice_forward(x, 0, 1, 1, 1).to_vector() == std::vector<double>{5, 6, 7, 8, 9});
  CHECK(kernels::slice_forward(x, 1, 0, 0, 1).shape() == Shape{2, 0});
  const Tensor pos = kernels::slice_positions(1, 3, 2);
  CHECK(pos.dtype() == kInt64);
  CHECK(pos.to_vector() == std::vector<double>{1, 3, 5});
  CHECK(kernels::slice_positions(0, 0, 1).shape() == Shape{0});
}

TEST_CASE("kernels::cat_forward: blocks along each dim, empty parts skipped", "[kernels][shape]") {
  for (DType dt : {kFloat32, kInt64}) {
    const Tensor a = from_vector({1, 2, 3, 4}, Shape{2, 2}, dt);
    const Tensor b = from_vector({5, 6}, Shape{2, 1}, dt);
    const Tensor e = Tensor::empty(Shape{2, 0}, dt);
    const std::vector<Tensor> parts{a, e, b};
    CHECK(kernels::cat_forward(parts, 1).to_vector() == std::vector<double>{1, 2, 5, 3, 4, 6});
    const std::vector<Tensor> rows{a, from_vector({7, 8}, Shape{1, 2}, dt)};
    const Tensor r = kernels::cat_forward(rows, 0);
    CHECK(r.shape() == Shape{3, 2});
    CHECK(r.to_vector() == std::vector<double>{1, 2, 3, 4, 7, 8});
  }
}

TEST_CASE("kernels::index_select_forward, index_add_forward: rows by index, repeats accumulate", "[kernels][shape]") {
  const Tensor index = ints({2, 0, 2}, Shape{3});
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor x = iota(Shape{2, 3}, dt);  // [[0, 1, 2], [3, 4, 5]]
    CHECK(kernels::index_select_forward(x, 1, index).to_vector() == std::vector<double>{2, 0, 2, 5, 3, 5});
    CHECK(kernels::index_select_forward(x, 0, ints({1, 1}, Shape{2})).to_vector() ==
          std::vector<double>{3, 4, 5, 3, 4, 5});
    // out = x; out[:, 2] += s[:, 0] + s[:, 2]; out[:, 0] += s[:, 1]
    const Tensor s = from_vector({10, 20, 30, 40, 50, 60}, Shape{2, 3}, dt);
    const Tensor out = kernels::index_add_forward(x, 1, index, s);
    CHECK(out.to_vector() == std::vector<double>{20, 1, 42, 53, 4, 105});
    CHECK(x.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});  // x itself untouched
    CHECK(kernels::index_add_forward(x, 1, ints({}, Shape{0}), Tensor::empty(Shape{2, 0}, dt)).to_vector() ==
          x.to_vector());
  }
  CHECK(kernels::index_select_forward(iota(Shape{3}, kInt64), 0, index).to_vector() == std::vector<double>{2, 0, 2});
}

TEST_CASE("kernels::gather_forward, scatter_add_forward: index along dim, own coordinates elsewhere",
          "[kernels][shape]") {
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor x = iota(Shape{2, 3}, dt);  // [[0, 1, 2], [3, 4, 5]]
    // dim 1, index [[2, 2], [0, 1]]: out[i][j] = x[i][index[i][j]] (index narrower than x)
    const Tensor i1 = ints({2, 2, 0, 1}, Shape{2, 2});
    CHECK(kernels::gather_forward(x, 1, i1).to_vector() == std::vector<double>{2, 2, 3, 4});
    // dim 0, index [[1, 0, 1]]: out[0][j] = x[index[0][j]][j]
    const Tensor i0 = ints({1, 0, 1}, Shape{1, 3});
    CHECK(kernels::gather_forward(x, 0, i0).to_vector() == std::vector<double>{3, 1, 5});
    // scatter_add dim 1: out[i][index[i][j]] += src[i][j]; the repeated 2 in row 0 accumulates
    const Tensor src = from_vector({1, 10, 100, 1000}, Shape{2, 2}, dt);
    CHECK(kernels::scatter_add_forward(x, 1, i1, src).to_vector() == std::vector<double>{0, 1, 13, 103, 1004, 5});
    CHECK(kernels::scatter_add_forward(x, 0, i0, from_vector({1, 2, 3}, Shape{1, 3}, dt)).to_vector() ==
          std::vector<double>{0, 3, 2, 4, 4, 8});
    CHECK(x.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
  }
  CHECK(kernels::gather_forward(iota(Shape{4}, kInt64), 0, ints({3, 3, 1}, Shape{3})).to_vector() ==
        std::vector<double>{3, 3, 1});
  CHECK(kernels::gather_forward(iota(Shape{2, 2}, kFloat32), 0, ints({}, Shape{0, 2})).shape() == Shape{0, 2});
}
