// SPDX-License-Identifier: MIT
#pragma once
// softmax, log_softmax and logsumexp along any dim, with analytic VJPs that never build the K x K
// Jacobian. K = x.size(dim); "row" below means the K entries along dim for fixed other indices.
//
//   softmax      y = exp(x - max) / sum exp(x - max)     saved: y (x is not kept)
//   log_softmax  y = x - max - log sum exp(x - max)      saved: y, and exp(x - max) with 1 / sum per
//                                                        row for the fused backward (x-sized)
//   logsumexp    y = max + log sum exp(x - max)          saved: x and y
// (Each VJP's formula is in the op's record call; to_dot and explain print it from the tape.)
//
// Max-subtraction keeps every finite logit finite (no overflow at 1e30, no 0/0 underflow).
// Masks: -inf entries get probability 0 and gradient 0 (softmax, logsumexp) or gradient g
// (log_softmax, whose derivative there is 1 - p = 1); never NaN.
// Fully masked rows (every entry -inf): PyTorch returns NaN; tapegrad returns softmax 0,
// log_softmax -inf and logsumexp -inf there, all with zero gradient.
// NaN and +inf logits are errors (they have no meaningful probabilities). An empty x gives PyTorch's
// values: an empty softmax/log_softmax, and logsumexp over K = 0 is -inf (the log of an empty sum).
//
// With create_graph the VJPs run as tensor-op formulas (recorded, so second derivatives work);
// otherwise a fused kernel (ops/kernels/softmax.hpp) computes the same numbers in one pass per row.
// float32 rows along the last dim run on the SIMD kernels of ops/kernels/simd.hpp (SSE2, AVX2 or
// AVX-512, chosen at run time; TAPEGRAD_SIMD=generic forces the baseline), everything else on Eigen.
#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

Tensor softmax(const Tensor& x, int dim, SourceLocation site = SourceLocation::current());
Tensor log_softmax(const Tensor& x, int dim, SourceLocation site = SourceLocation::current());
Tensor logsumexp(const Tensor& x, int dim, bool keepdim = false, SourceLocation site = SourceLocation::current());

// Temperature: softmax(x / T). T > 0 (finite) is required; as a tensor it may require grad (a
// learned temperature for calibration), it must have x's dtype and broadcast to x's shape (a rank-0
// T is the usual case, or one per row; temperature_scale, being elementwise, also lets T broadcast
// x to a larger shape). Errors name the op called (softmax, log_softmax, temperature_scale).
//   dL/dT = -(1/T^2) sum x ⊙ dz,  dz = dL/d(x / T), computed as -sum((x / T) ⊙ dz) / T so that a
//   tiny or huge T (1e-30 in float32, 1e-300 in float64) gives the finite value, not 0 · inf.
//   -inf logits (masks) add nothing to dT (x / T is -inf for every T), nor does a fully masked
//   row; never NaN. log_softmax's -inf outputs send no gradient to T (they do not depend on it);
//   x still gets log_softmax's documented gradient g there.
//   saved: temperature_scale x and T; softmax(x, dim, T) as temperature_scale then softmax;
//   log_softmax(x, dim, T) (one node) y, x and T.
Tensor temperature_scale(const Tensor& logits, double temperature, SourceLocation site = SourceLocation::current());
Tensor temperature_scale(const Tensor& logits, const Tensor& temperature, SourceLocation site = SourceLocation::current());
Tensor softmax(const Tensor& x, int dim, double temperature, SourceLocation site = SourceLocation::current());
Tensor softmax(const Tensor& x, int dim, const Tensor& temperature, SourceLocation site = SourceLocation::current());
Tensor log_softmax(const Tensor& x, int dim, double temperature, SourceLocation site = SourceLocation::current());
Tensor log_softmax(const Tensor& x, int dim, const Tensor& temperature, SourceLocation site = SourceLocation::current());

}  // namespace tapegrad
