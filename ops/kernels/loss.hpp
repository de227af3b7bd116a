// SPDX-License-Identifier: MIT
#pragma once
// Kernels of the losses (ops/loss.cpp): plain functions on values, never recording. Internal (not
// installed; public headers do not include it).
//
// Class losses (cross_entropy, nll_loss) see their input [N, C, d1, ...] ([C]: one sample) as
// [outer, C, inner] around the class dim cd (1, or 0 for rank 1). A sample s = (o, i) is a row of
// C values strided by inner, numbered o * inner + i: the row-major order of index targets and of
// the 'none' output. a_s below is the weighted target distribution of sample s:
//   index targets   a_s = w ⊙ ((1 − ε) onehot(t_s) + ε / C)     (0 for ignored samples)
//   prob targets    a_s = w ⊙ ((1 − ε) y_s + ε / C)
// and G_s = g_s ('none'), g ('sum'), g / norm ('mean') scales sample s's gradient.
#include <cstdint>
#include <utility>

#include "autodiff/tensor.hpp"
#include "ops/loss.hpp"

namespace tapegrad::kernels {

// What a class-loss kernel needs besides its tensors. 32 bytes, so a VJP closure capturing it
// stays inside a tape node.
struct ClassLossConfig {
  double eps = 0.0;            // label_smoothing
  double norm = 1.0;           // mean's divisor (summed target weights, or the number of samples)
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
  std::int8_t cd = 1;          // class dim: 1, or 0 for a single sample [C]
  bool prob = false;           // class-probability targets
};
static_assert(sizeof(ClassLossConfig) <= 32);

// cross_entropy's value into out ('none': the per-sample losses, shape x without the class dim;
// otherwise rank 0, the sum or the mean, 0 when norm = 0). Per sample: m = max x, s = Σ exp(x − m),
// logp = (x − m) − log s, l = −Σ_c a_c logp_c with 0 for terms whose a_c = 0. When e and inv_s are
// given (x's shape; one value per sample) they receive exp(x − m) and 1 / s (0 for a fully masked
// sample), so the backward needs no second exp pass. NaN or +inf logits throw InvalidArgument
// naming cross_entropy and the sample.
void cross_entropy_forward(const Tensor& x, const Tensor& target, const Tensor& weight, const ClassLossConfig& c,
                           Tensor& out, Tensor* e = nullptr, Tensor* inv_s = nullptr);

// The fused VJP for the logits: dx_s = G_s (p_s A_s − a_s), p_s = e_s inv_s[s], A_s = Σ_c a_s,c.
// O(C) per sample, no Jacobian; e and inv_s as cross_entropy_forward wrote them. e is left unchanged,
// or with overwrite_e, becomes dx (returned: no new buffer, for a backward that is e's last reader).
// 'mean' with norm = 0 gives zeros.
Tensor cross_entropy_backward(const Tensor& g, const Tensor& e, const Tensor& inv_s, const Tensor& target,
                              const Tensor& weight, const ClassLossConfig& c, bool overwrite_e = false);

// nll_loss's value into out (as cross_entropy_forward): l_s = −w_t lp[s, t] (0 when ignored or w_t = 0).
void nll_loss_forward(const Tensor& log_probs, const Tensor& target, const Tensor& weight, const ClassLossConfig& c,
                      Tensor& out);

// The fused VJP for the log-probabilities (shape, dtype): dlp[s, t_s] = −G_s w_t, 0 elsewhere.
Tensor nll_loss_backward(const Tensor& g, const Shape& shape, DType dtype, const Tensor& target, const Tensor& weight,
                         const ClassLossConfig& c);

// The constants of the class-loss formula for index targets, for an input of this shape and dtype:
// onehot (input's shape: 1 at [n, t_n, d...] of non-ignored samples) and valid (input's shape with
// size 1 along the class dim: 1 for non-ignored samples).
std::pair<Tensor, Tensor> class_loss_onehot(const Shape& shape, DType dtype, const Tensor& target,
                                            const ClassLossConfig& c);

// kl_div's pointwise loss: l = t (log t − x), 0 where t = 0; log_target: l = eᵗ (t − x), 0 where t = −inf.
Tensor kl_div_forward(const Tensor& input, const Tensor& target, bool log_target);

}  // namespace tapegrad::kernels
