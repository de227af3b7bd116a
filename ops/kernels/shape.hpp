// SPDX-License-Identifier: MIT
#pragma once
// Copying shape kernels behind ops/shape.cpp (transpose/permute, slice, cat, index_select,
// index_add, gather, scatter_add): plain functions on values that never record. The caller has
// validated everything (dims non-negative and in range, indices int64 and in range, shapes that
// fit). Internal: not installed, not included by public headers.
#include <cstdint>
#include <span>

#include "autodiff/tensor.hpp"

namespace tapegrad::kernels {

// out.shape[k] = x.shape[dims[k]]: x with its dims permuted (a copy), dims a permutation of
// 0..rank-1. Any dtype.
Tensor permute_forward(const Tensor& x, std::span<const int> dims);

// out[.., j, ..] = x[.., start + j step, ..] along dim for j < len (all in range). Any dtype.
Tensor slice_forward(const Tensor& x, int dim, std::int64_t start, std::int64_t len, std::int64_t step);
// The positions slice reads, start + j step for j < len, as an int64 [len] (its VJP's index).
Tensor slice_positions(std::int64_t start, std::int64_t len, std::int64_t step);

// tensors joined along dim (same dtype and rank, equal sizes except along dim). Any dtype.
Tensor cat_forward(std::span<const Tensor> tensors, int dim);

// out[.., j, ..] = x[.., index[j], ..] along dim (index: 1-D int64, 0 <= index < size(dim)). Any dtype.
Tensor index_select_forward(const Tensor& x, int dim, const Tensor& index);
// out = x, then out[.., index[j], ..] += source[.., j, ..] (repeats accumulate). Floating.
Tensor index_add_forward(const Tensor& x, int dim, const Tensor& index, const Tensor& source);

// out = input at index's values along dim: out[i][j][k] = input[index[i][j][k]][j][k] (dim 0);
// index: int64 of input's rank, in range, index.size(d) <= input.size(d) off dim. Any dtype.
Tensor gather_forward(const Tensor& input, int dim, const Tensor& index);
// out = input, then out[index[i][j][k]][j][k] += src[i][j][k] (dim 0); src has index's shape. Floating.
Tensor scatter_add_forward(const Tensor& input, int dim, const Tensor& index, const Tensor& src);

}  // namespace tapegrad::kernels
