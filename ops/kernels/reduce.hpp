// SPDX-License-Identifier: MIT
#pragma once
// Reduction kernels behind ops/reduce.cpp: plain functions on values that never record. The caller
// has validated the arguments (dim in range and non-negative, no empty reduction where it matters).
// Internal: not installed, not included by public headers.
#include "autodiff/tensor.hpp"

namespace tapegrad::kernels {

// The shape after reducing dim: removed, or kept with size 1. Rank 0 stays rank 0.
Shape reduced_shape(const Shape& s, int dim, bool keepdim);

// y = sum_i x_i, rank 0. Floating x keeps its dtype (0 for an empty x); int64/bool give int64.
Tensor sum_forward(const Tensor& x);
// y[o, i] = sum_j x[o, j, i] along dim; dtypes as above.
Tensor sum_forward(const Tensor& x, int dim, bool keepdim);
// y = sum_i x_i / n (floating, n > 0).
Tensor mean_forward(const Tensor& x);
// y[o, i] = sum_j x[o, j, i] / size(dim) (floating, size(dim) > 0).
Tensor mean_forward(const Tensor& x, int dim, bool keepdim);

// The max (is_max) or min of all elements, rank 0 (numel > 0). NaN propagates: any NaN gives NaN.
Tensor extreme_forward(const Tensor& x, bool is_max);
// Along dim (size(dim) > 0): the extreme values (shape reduced_shape(x, dim, keepdim); undefined
// unless want_values) and k, the first index reaching them (int64, keepdim shape). NaN beats every
// number, so k points at the first NaN.
struct Extremes {
  Tensor values;
  Tensor indices;
};
Extremes extreme_forward(const Tensor& x, int dim, bool keepdim, bool is_max, bool want_values = true);

}  // namespace tapegrad::kernels
