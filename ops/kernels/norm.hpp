// SPDX-License-Identifier: MIT
#pragma once
// The numeric kernels of layer_norm (ops/norm.cpp records them): plain functions on values,
// nothing recorded (tests/ops/kernels/test_norm.cpp). x is seen as R rows of D values.
// Internal: not installed, not included by public headers.
#include "autodiff/tensor.hpp"

namespace tapegrad::kernels {

// y = (x − mean) · rstd ⊙ w + b per row, rstd = 1 / sqrt(var + eps) (biased var); w, b optional
// (undefined), of D values. `stats` receives [R, 2]: mean and rstd per row.
Tensor layer_norm_forward(const Tensor& x, std::int64_t D, const Tensor& weight, const Tensor& bias, double eps,
                          Tensor& stats);

struct LayerNormGrads {
  Tensor dx, dw, db;  // undefined when not asked for
};
// With x̂ = (x − mean) · rstd and g' = g ⊙ w (or g): dx = rstd (g' − mean(g') − x̂ mean(g' ⊙ x̂)),
// dw = Σ_rows g ⊙ x̂, db = Σ_rows g; dw and db have D values (reshape them to the parameter's shape).
LayerNormGrads layer_norm_backward(const Tensor& g, const Tensor& x, const Tensor& stats, const Tensor& weight,
                                   std::int64_t D, bool want_x, bool want_w, bool want_b);

}  // namespace tapegrad::kernels
