// SPDX-License-Identifier: MIT
#pragma once
// Reductions, PyTorch names and semantics. `dim` may be negative; keepdim keeps it with size 1.
// A rank-0 x takes dim 0 or -1 and stays rank 0. sum of an empty tensor is 0; sum of int64/bool
// gives int64 (counting a mask), without gradient. mean, max, min, argmax, argmin of no elements
// (an empty x, or a reduced dim of size 0) throw InvalidArgument (PyTorch: NaN for mean, an
// error for the others). NaN propagates through max/min; argmax/argmin then point at the first NaN.
#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

// sum, mean: saved nothing (the VJPs need only x's shape, which every node keeps).
Tensor sum(const Tensor& x, SourceLocation site = SourceLocation::current());                                    // all elements -> rank 0; dx = g (broadcast)
Tensor sum(const Tensor& x, int dim, bool keepdim = false, SourceLocation site = SourceLocation::current());     // dx = g broadcast along dim
Tensor mean(const Tensor& x, SourceLocation site = SourceLocation::current());                                   // dx = g / numel
Tensor mean(const Tensor& x, int dim, bool keepdim = false, SourceLocation site = SourceLocation::current());    // dx = g / size(dim)
// max/min over all elements: the gradient is shared evenly by all elements equal to the result
// (PyTorch's evenly_distribute_backward).   saved: x and the output y (the mask is x = y)
Tensor max(const Tensor& x, SourceLocation site = SourceLocation::current());
Tensor min(const Tensor& x, SourceLocation site = SourceLocation::current());
// max/min along dim: values; the gradient goes to the position argmax/argmin returns (the first
// occurrence of the extreme value), as torch.max(x, dim) sends it to its returned index.
//   saved: those indices (int64, x's shape with size 1 at dim); not x
Tensor max(const Tensor& x, int dim, bool keepdim = false, SourceLocation site = SourceLocation::current());
Tensor min(const Tensor& x, int dim, bool keepdim = false, SourceLocation site = SourceLocation::current());
Tensor argmax(const Tensor& x, int dim, bool keepdim = false, SourceLocation site = SourceLocation::current());  // int64, first occurrence
Tensor argmin(const Tensor& x, int dim, bool keepdim = false, SourceLocation site = SourceLocation::current());  // int64, first occurrence

}  // namespace tapegrad
