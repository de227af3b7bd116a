// SPDX-License-Identifier: MIT
#pragma once
// Losses with PyTorch's names, argument order and semantics (torch.nn.functional).
//
// cross_entropy(input, target, options)
//   input   [N, C], [N, C, d1, ...] (class dim 1) or [C] (one sample); float32/float64 logits
//   target  class indices: int64 of shape [N] / [N, d1, ...] / []  (0 <= t < C, or ignore_index)
//           or class probabilities: input's shape and dtype (not renormalised; ignore_index does
//           not apply to them)
//   loss    p = softmax(input, 1), logp = log_softmax(input, 1), eps = label_smoothing
//           index targets:  l_n = -(1 - eps) w[t_n] logp[n, t_n] - (eps / C) sum_c w[c] logp[n, c]
//                           (0 for ignored n); mean = sum_n l_n / sum_{n not ignored} w[t_n]
//           prob targets:   l_n = -sum_c w[c] ((1 - eps) y[n, c] + eps / C) logp[n, c];
//                           mean = sum_n l_n / (number of samples, N * d1 * ...)
//   vjp     the fused form (p - y_eff) * w / normaliser per sample, never a Jacobian
//
// When every target is ignored, reduction = mean gives 0 with zero gradient (PyTorch gives NaN,
// from 0 / 0). nll_loss behaves the same.
#include <cstdint>

#include "autodiff/tensor.hpp"

namespace tapegrad {

enum class Reduction {
  None,      // 'none': one loss per sample
  Mean,      // 'mean' (the default)
  Sum,       // 'sum'
  BatchMean  // 'batchmean': kl_div only, sum / N
};

struct CrossEntropyOptions {
  Tensor weight;                      // [C] per-class weights, or undefined
  std::int64_t ignore_index = -100;   // index targets equal to it contribute nothing
  Reduction reduction = Reduction::Mean;
  double label_smoothing = 0.0;       // in [0, 1]
};
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options = {});

// nll_loss(log_probs, target): l_n = -w[t_n] log_probs[n, t_n]; shapes as cross_entropy with index
// targets; mean divides by the summed weights of the non-ignored targets.
struct NllLossOptions {
  Tensor weight;
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
};
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& options = {});

// kl_div(input, target): input holds log-probabilities; pointwise
//   l = target (log target - input)          (log_target = false; 0 where target = 0)
//   l = exp(target) (target - input)         (log_target = true)
// reduction: none, sum, mean (over all elements, PyTorch's default), batchmean (sum / input.size(0),
// the mathematically correct KL divergence per sample).
struct KlDivOptions {
  Reduction reduction = Reduction::Mean;
  bool log_target = false;
};
Tensor kl_div(const Tensor& input, const Tensor& target, const KlDivOptions& options = {});

// binary_cross_entropy_with_logits(x, y): multi-label, stable for any finite logit;
//   l = -w [pos_weight * y * log sigmoid(x) + (1 - y) * log sigmoid(-x)]
// weight broadcasts to x's shape; pos_weight broadcasts along the last (class) dim, as in PyTorch.
struct BceWithLogitsOptions {
  Tensor weight;
  Tensor pos_weight;
  Reduction reduction = Reduction::Mean;
};
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BceWithLogitsOptions& options = {});

}  // namespace tapegrad
