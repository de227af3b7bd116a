// SPDX-License-Identifier: MIT
#pragma once
// The batched GEMM behind matmul/matmul_t (ops/linalg.cpp): plain functions on values that never
// record. The caller has validated the operands (floating, same dtype, rank >= 2, inner sizes equal,
// batch dims that broadcast). Internal: not installed, not included by public headers.
#include "autodiff/tensor.hpp"

namespace tapegrad::kernels {

// All dims but the last two (empty for matrices and vectors).
Shape batch_of(const Shape& s);

// C = op(A) op(B) for row-major A [a_rows, a_cols], B [b_rows, b_cols] (op(X) = Xᵀ when its flag
// is set); C is [op(A) rows, op(B) cols], inner size > 0. One Eigen (or BLAS) product.
template <class T>
void gemm(const T* pa, const T* pb, T* pc, std::int64_t a_rows, std::int64_t a_cols, std::int64_t b_rows,
          std::int64_t b_cols, bool ta, bool tb);
extern template void gemm<float>(const float*, const float*, float*, std::int64_t, std::int64_t, std::int64_t,
                                 std::int64_t, bool, bool);
extern template void gemm<double>(const double*, const double*, double*, std::int64_t, std::int64_t, std::int64_t,
                                  std::int64_t, bool, bool);

// C[b] = op_a(A[b_a]) op_b(B[b_b]) for every index b of `batch` (the broadcast of A's and B's batch
// dims; size-1 and missing dims repeat): shape batch + [n, m]. One GEMM per batch, or a single GEMM
// with A's batch folded into its rows when B has no batch and A is not transposed (the
// [batch, n, k] @ [k, m] of a linear layer). An inner size of 0 gives zeros.
// `op` names the caller in an allocation error.
Tensor matmul_forward(const Tensor& a, const Tensor& b, bool ta, bool tb, const Shape& batch, const char* op = "matmul");

}  // namespace tapegrad::kernels
