// SPDX-License-Identifier: MIT
#pragma once
// Shape ops, PyTorch names and semantics. reshape/view/flatten/squeeze/unsqueeze share storage
// with their input (tensors are always contiguous, so every reshape is a view); the others copy.
// saved: nothing for the views, transpose, permute, slice, narrow and cat (their VJPs need only
// the inputs' shapes, which every node keeps, and plain values: dims, start/step, the inverse
// permutation); index_select, index_add, gather and scatter_add save only their index tensor.
#include <cstdint>
#include <vector>

#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

// One size may be -1 (inferred). The new shape must have the same number of elements.
Tensor reshape(const Tensor& x, const std::vector<std::int64_t>& shape, SourceLocation site = SourceLocation::current());   // dx = reshape(g, x.shape); saved: nothing
Tensor view(const Tensor& x, const std::vector<std::int64_t>& shape, SourceLocation site = SourceLocation::current());      // same as reshape
Tensor flatten(const Tensor& x, int start_dim = 0, int end_dim = -1, SourceLocation site = SourceLocation::current());
Tensor unsqueeze(const Tensor& x, int dim, SourceLocation site = SourceLocation::current());                               // dim in [-rank-1, rank]
Tensor squeeze(const Tensor& x, SourceLocation site = SourceLocation::current());                                          // drops every size-1 dim
Tensor squeeze(const Tensor& x, int dim, SourceLocation site = SourceLocation::current());                                 // no-op if size(dim) != 1
Tensor transpose(const Tensor& x, int dim0, int dim1, SourceLocation site = SourceLocation::current());                    // dx = transpose(g, dim0, dim1); saved: nothing
Tensor permute(const Tensor& x, const std::vector<int>& dims, SourceLocation site = SourceLocation::current());           // dx = permute(g, inverse); saved: nothing
// Elements start, start + step, ... < end along dim (end clamped to the size, as Python slicing).
// dx = g added into zeros at those positions; saved: nothing (for narrow too).
Tensor slice(const Tensor& x, int dim, std::int64_t start, std::int64_t end, std::int64_t step = 1, SourceLocation site = SourceLocation::current());
Tensor narrow(const Tensor& x, int dim, std::int64_t start, std::int64_t length, SourceLocation site = SourceLocation::current());
// cat: dtensors[i] = the slice of g that tensors[i] filled; saved: nothing (the sizes are the
// inputs' shapes). stack = cat of unsqueezed tensors.
Tensor cat(const std::vector<Tensor>& tensors, int dim = 0, SourceLocation site = SourceLocation::current());
Tensor stack(const std::vector<Tensor>& tensors, int dim = 0, SourceLocation site = SourceLocation::current());
// index: 1-D int64; out has size index.numel() along dim.  dx = index_add of g into zeros.
// saved: index (not x)
Tensor index_select(const Tensor& x, int dim, const Tensor& index, SourceLocation site = SourceLocation::current());
// torch.index_add: out = x, then out[.., index[j], ..] += source[.., j, ..] along dim (repeated
// indices accumulate). source has x's shape except size index.numel() along dim. Floating only.
//   dx = g      dsource = index_select(g, dim, index)      saved: index (not x, not source)
// index_select's and slice's VJPs are index_add into zeros, so their second derivatives work.
Tensor index_add(const Tensor& x, int dim, const Tensor& index, const Tensor& source, SourceLocation site = SourceLocation::current());


// ---- gather / scatter_add (issue 11) ----
// torch.gather: out has index's shape; along dim it reads input at index's value, elsewhere at the
// same position:  out[i][j][k] = input[index[i][j][k]][j][k]  (dim = 0). index: int64 of input's
// rank with index.size(d) <= input.size(d) for d != dim (unless index is empty, as PyTorch) and
// 0 <= index < input.size(dim) (no negative wrap-around, as PyTorch). Any input dtype; the VJP
//   dinput = scatter_add(zeros(input.shape), dim, index, g)     (repeated indices accumulate)
// is itself recorded, so second derivatives work.   saved: index (not input)
Tensor gather(const Tensor& input, int dim, const Tensor& index, SourceLocation site = SourceLocation::current());
// torch.scatter_add: out = input, then out[index[i][j][k]][j][k] += src[i][j][k] (dim = 0); floating.
// index as for gather; src must have index's shape (PyTorch also accepts a larger src and uses only
// its leading part; tapegrad asks for it to be sliced).   dinput = g    dsrc = gather(g, dim, index)
// saved: index (not input, not src)
Tensor scatter_add(const Tensor& input, int dim, const Tensor& index, const Tensor& src,
                   SourceLocation site = SourceLocation::current());

}  // namespace tapegrad
