// SPDX-License-Identifier: MIT
#pragma once
// The numeric kernels of softmax, log_softmax and logsumexp (ops/softmax.cpp records them): plain
// functions on values, nothing recorded, each testable alone (tests/ops/kernels/test_softmax.cpp).
// Rows are the K = x.size(d) entries along dim d for fixed other indices; d is a valid dim and x a
// non-empty float32 or float64 tensor. float32 rows along the last dim run on the SIMD kernels of
// ops/kernels/simd.hpp, everything else on Eigen; both compute the same formulas.
// Internal: not installed, not included by public headers.
#include "autodiff/tensor.hpp"

namespace tapegrad::kernels {

// Forward passes. NaN or +inf in a row throws InvalidArgument naming `op` (the op the user called),
// the row and the dim. A row that is entirely -inf gives softmax 0, log_softmax -inf, logsumexp -inf.
Tensor softmax_forward(const char* op, const Tensor& x, int d);
// `saved`, when not null, receives what log_softmax_backward needs: exp(x - max) for every entry
// followed by 1 / sum per row (0 for fully masked rows), as one buffer of x.numel() + rows values.
Tensor log_softmax_forward(const char* op, const Tensor& x, int d, Tensor* saved = nullptr);
// One value per row, x's shape with dim d of size 1.
Tensor logsumexp_forward(const char* op, const Tensor& x, int d);

// Backward passes (VJPs), one pass per row from what the forward gave:
//   softmax      dx = y ⊙ (g − Σ g ⊙ y)
//   log_softmax  dx = g − softmax(x) Σ g, softmax(x) = e · (1 / Σ e) read from `saved`; 0 on fully masked rows
//   logsumexp    dx = g ⊙ softmax(x), from x and lse (one value per row, in row order); 0 on fully masked rows
Tensor softmax_backward(const Tensor& y, const Tensor& g, int d);
Tensor log_softmax_backward(const Tensor& saved, const Tensor& g, int d);
Tensor logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& g, int d);

}  // namespace tapegrad::kernels
