// SPDX-License-Identifier: MIT
#pragma once
// Layer normalisation, PyTorch's torch.nn.functional.layer_norm.
//
// layer_norm(x, normalized_shape, weight, bias, eps)   over the trailing dims normalized_shape (D elements)
//   mu = mean(x), rstd = 1/sqrt(var(x) + eps) (biased variance), xhat = (x − mu) rstd;
//   eps must be finite and > 0 (eps = 0 divides by zero on a constant row)
//   y = xhat ⊙ weight + bias
//   vjp  dxhat = g ⊙ weight;  dx = rstd (dxhat − mean(dxhat) − xhat mean(dxhat ⊙ xhat))
//        dweight = Σ g ⊙ xhat;  dbias = Σ g       (sums over the leading dims)
//   saved: x, weight (when given), and mean and rstd per row ([R, 2]) for the fused VJP
#include <cstdint>
#include <vector>

#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

Tensor layer_norm(const Tensor& x, const std::vector<std::int64_t>& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5, SourceLocation site = SourceLocation::current());

}  // namespace tapegrad
