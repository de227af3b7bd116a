// SPDX-License-Identifier: MIT
// ops/kernels/linalg: the GEMM and the batched product on their own (no tape), against products
// worked out by hand, for every transpose combination, broadcast and folded batches, and k = 0.
#include "testing.hpp"

#include <vector>

#include "ops/kernels/linalg.hpp"

using namespace tapegrad;

TEST_CASE("kernels::batch_of: all dims but the last two", "[kernels][matmul]") {
  CHECK(kernels::batch_of(Shape{2, 3, 4, 5}) == Shape{2, 3});
  CHECK(kernels::batch_of(Shape{4, 5}) == Shape{});
  CHECK(kernels::batch_of(Shape{5}) == Shape{});
}

TEST_CASE("kernels::gemm: op(A) op(B) for every transpose combination", "[kernels][matmul]") {
  // A = [[1, 2, 3], [4, 5, 6]], B = [[1, 0], [2, 1], [0, 3]]: A B = [[5, 11], [14, 23]]
  const std::vector<double> a{1, 2, 3, 4, 5, 6};
  const std::vector<double> b{1, 0, 2, 1, 0, 3};
  // Aᵀ is [[1, 4], [2, 5], [3, 6]] and Bᵀ is [[1, 2, 0], [0, 1, 3]], stored row-major.
  const std::vector<double> at{1, 4, 2, 5, 3, 6};
  const std::vector<double> bt{1, 2, 0, 0, 1, 3};
  const std::vector<double> expected{5, 11, 14, 23};
  std::vector<double> c(4);
  kernels::gemm<double>(a.data(), b.data(), c.data(), 2, 3, 3, 2, false, false);
  CHECK(c == expected);
  kernels::gemm<double>(a.data(), bt.data(), c.data(), 2, 3, 2, 3, false, true);
  CHECK(c == expected);
  kernels::gemm<double>(at.data(), b.data(), c.data(), 3, 2, 3, 2, true, false);
  CHECK(c == expected);
  kernels::gemm<double>(at.data(), bt.data(), c.data(), 3, 2, 2, 3, true, true);
  CHECK(c == expected);
  const std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end());
  std::vector<float> cf(4);
  kernels::gemm<float>(af.data(), bf.data(), cf.data(), 2, 3, 3, 2, false, false);
  CHECK(cf == std::vector<float>{5, 11, 14, 23});
}

TEST_CASE("kernels::matmul_forward: broadcast batches, folded rows, empty inner dim", "[kernels][matmul]") {
  for (DType dt : {kFloat32, kFloat64}) {
    // A [2, 1, 2]: batches [[1, 2]] and [[3, 4]]; B [2, 2] = [[1, 1], [0, 2]] has no batch (folded)
    const Tensor a = from_vector({1, 2, 3, 4}, Shape{2, 1, 2}, dt);
    const Tensor b = tensor({{1, 1}, {0, 2}}, dt);
    REQUIRE_ALLCLOSE(kernels::matmul_forward(a, b, false, false, Shape{2}), from_vector({1, 5, 3, 11}, Shape{2, 1, 2}, dt));
    // transposed A cannot fold: A[i]ᵀ is [2, 1], times [1, 2] rows of B2 [1, 2] = [[1, -1]]
    const Tensor b2 = tensor({{1, -1}}, dt);
    REQUIRE_ALLCLOSE(kernels::matmul_forward(a, b2, true, false, Shape{2}),
                     from_vector({1, -1, 2, -2, 3, -3, 4, -4}, Shape{2, 2, 2}, dt));
    // batch broadcast: A [2, 1, 1, 2] against B [3, 2, 1]: out [2, 3, 1, 1], out[i][j] = A[i] . B[j]
    const Tensor a4 = from_vector({1, 2, 3, 4}, Shape{2, 1, 1, 2}, dt);
    const Tensor b3 = from_vector({1, 0, 0, 1, 1, 1}, Shape{3, 2, 1}, dt);
    REQUIRE_ALLCLOSE(kernels::matmul_forward(a4, b3, false, false, Shape{2, 3}),
                     from_vector({1, 2, 3, 3, 4, 7}, Shape{2, 3, 1, 1}, dt));
    // k = 0: zeros of [n, m]
    const Tensor z = kernels::matmul_forward(Tensor::empty(Shape{2, 0}, dt), Tensor::empty(Shape{0, 3}, dt), false,
                                             false, Shape{});
    REQUIRE_ALLCLOSE(z, zeros(Shape{2, 3}, dt));
  }
}
