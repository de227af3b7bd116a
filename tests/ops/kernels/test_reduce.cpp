// SPDX-License-Identifier: MIT
// ops/kernels/reduce: the reduction kernels on their own (no tape), against values worked out by
// hand, in float32, float64, int64 and bool, with empty inputs, NaN and ties.
#include "testing.hpp"

#include <limits>

#include "ops/kernels/reduce.hpp"

using namespace tapegrad;

namespace {
Tensor ints(std::vector<std::int64_t> v, const Shape& s) { return from_vector(v, s); }
const double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

TEST_CASE("kernels::reduced_shape removes or keeps dim; rank 0 stays", "[kernels][reduce]") {
  CHECK(kernels::reduced_shape(Shape{2, 3, 4}, 1, false) == Shape{2, 4});
  CHECK(kernels::reduced_shape(Shape{2, 3, 4}, 1, true) == Shape{2, 1, 4});
  CHECK(kernels::reduced_shape(Shape{5}, 0, false) == Shape{});
  CHECK(kernels::reduced_shape(Shape{}, 0, true) == Shape{});
}

TEST_CASE("kernels::sum_forward: all elements and along dims, float and integer", "[kernels][reduce]") {
  for (DType dt : {kFloat32, kFloat64}) {
    // [[1, 2, 3], [4, 5, 6]]: total 21, columns 5 7 9, rows 6 15
    const Tensor x = tensor({{1, 2, 3}, {4, 5, 6}}, dt);
    const Tensor all = kernels::sum_forward(x);
    CHECK(all.dtype() == dt);
    CHECK(all.shape() == Shape{});
    CHECK(all.item() == 21);
    REQUIRE_ALLCLOSE(kernels::sum_forward(x, 0, false), tensor({5, 7, 9}, dt));
    REQUIRE_ALLCLOSE(kernels::sum_forward(x, 1, true), from_vector({6, 15}, Shape{2, 1}, dt));
    CHECK(kernels::sum_forward(Tensor::empty(Shape{0, 3}, dt)).item() == 0);
    REQUIRE_ALLCLOSE(kernels::sum_forward(Tensor::empty(Shape{2, 0}, dt), 1, false), tensor({0, 0}, dt));
    // middle dim of [2, 2, 2] (inner > 1): x[o][j][i] = 4o + 2j + i, sums over j: 4o + 2i + 2
    const Tensor c = from_vector({0, 1, 2, 3, 4, 5, 6, 7}, Shape{2, 2, 2}, dt);
    REQUIRE_ALLCLOSE(kernels::sum_forward(c, 1, false), tensor({{2, 4}, {10, 12}}, dt));
  }
  const Tensor i = ints({3, -1, 7, 2}, Shape{2, 2});
  CHECK(kernels::sum_forward(i).dtype() == kInt64);
  CHECK(kernels::sum_forward(i).item() == 11);
  const Tensor rows = kernels::sum_forward(i, 1, false);
  CHECK(rows.dtype() == kInt64);
  CHECK(rows.to_vector() == std::vector<double>{2, 9});
  const Tensor mask = from_vector(std::vector<bool>{true, false, true, true}, Shape{4});
  CHECK(kernels::sum_forward(mask).dtype() == kInt64);
  CHECK(kernels::sum_forward(mask).item() == 3);
}

TEST_CASE("kernels::mean_forward: all elements and along dims", "[kernels][reduce]") {
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor x = tensor({{1, 2, 3}, {4, 5, 9}}, dt);
    CHECK(kernels::mean_forward(x).item() == Approx(4.0));
    REQUIRE_ALLCLOSE(kernels::mean_forward(x, 0, false), tensor({2.5, 3.5, 6}, dt));
    REQUIRE_ALLCLOSE(kernels::mean_forward(x, 1, true), from_vector({2, 6}, Shape{2, 1}, dt));
  }
}

TEST_CASE("kernels::extreme_forward: values, first-occurrence indices, NaN propagates", "[kernels][reduce]") {
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor x = tensor({{1, 5, 5}, {-2, -7, -7}}, dt);
    CHECK(kernels::extreme_forward(x, true).item() == 5);
    CHECK(kernels::extreme_forward(x, false).item() == -7);
    const kernels::Extremes mx = kernels::extreme_forward(x, 1, false, true);
    REQUIRE_ALLCLOSE(mx.values, tensor({5, -2}, dt));
    CHECK(mx.indices.shape() == Shape{2, 1});  // keepdim shape, for the VJP's mask
    CHECK(mx.indices.to_vector() == std::vector<double>{1, 0});
    const kernels::Extremes mn = kernels::extreme_forward(x, 1, true, false);
    CHECK(mn.values.shape() == Shape{2, 1});
    CHECK(mn.indices.to_vector() == std::vector<double>{0, 1});
    const kernels::Extremes cols = kernels::extreme_forward(x, 0, false, true, /*want_values=*/false);
    CHECK_FALSE(cols.values.defined());
    CHECK(cols.indices.to_vector() == std::vector<double>{0, 0, 0});
    const Tensor n = from_vector({1, kNaN, 3, kNaN}, Shape{4}, dt);
    CHECK(std::isnan(kernels::extreme_forward(n, true).item()));
    CHECK(std::isnan(kernels::extreme_forward(n, false).item()));
    CHECK(kernels::extreme_forward(n, 0, false, true).indices.item() == 1);
  }
  const Tensor i = ints({4, 9, 9, -3}, Shape{2, 2});
  const kernels::Extremes im = kernels::extreme_forward(i, 0, false, true);
  CHECK(im.values.dtype() == kInt64);
  CHECK(im.values.to_vector() == std::vector<double>{9, 9});
  CHECK(im.indices.to_vector() == std::vector<double>{1, 0});
}
