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
//   vjp     dx = G (p A - a) per sample, a = w ((1 - eps) y + eps / C) (y: one-hot or the
//           probabilities), A = sum_c a, G = g / normaliser: the fused (p - onehot) w / N, never a
//           Jacobian. A fused kernel (from the saved exp(x - max)) runs when backward records
//           nothing; the same formula as tensor ops under create_graph (second derivatives work).
//   saved   input (the formula's softmax), target, exp(x - max) [input's shape] and 1 / sum per
//           sample (the kernel's: x's size plus one value per sample, only when input requires
//           grad), weight, and the loss itself when a weight that requires grad divides a mean
//           over index targets
//
// When every target is ignored, reduction = mean gives 0 with zero gradient (PyTorch gives NaN,
// from 0 / 0). nll_loss behaves the same.
//
// Numerics and policies (cross_entropy, nll_loss; where they differ from PyTorch it says so):
//   - mean with nothing to divide by (every target ignored, an empty batch, or non-ignored target
//     weights summing to 0) is 0 with zero gradient (PyTorch: NaN or inf).
//   - A term whose coefficient is 0 contributes 0 even where its log-probability is -inf: ignored
//     samples, zero probabilities in a target, zero class weights, label_smoothing = 1 (PyTorch
//     gives NaN for some of these, e.g. probability targets with 0 on a -inf logit).
//   - -inf logits are masked classes: probability 0 and gradient 0 there. A -inf logit at the
//     target class (or any -inf logit with label_smoothing > 0 or a positive target probability)
//     gives that sample a loss of +inf, as in PyTorch; its gradient is still p - y_eff (finite,
//     the limit, what PyTorch returns too); other samples are unaffected. A sample whose logits are
//     all -inf has p = 0 (an ignored one contributes 0 with gradient 0; PyTorch: NaN).
//   - NaN or +inf logits are errors naming cross_entropy and the sample (nll_loss takes its
//     log-probabilities as given).
//   - weight (and probability targets) may require grad; the divisor of a weighted mean is
//     differentiated too. PyTorch refuses a weight that requires grad for index targets without
//     label smoothing.
//   - Gradients: with create_graph the VJP is recorded as tensor ops (second derivatives work);
//     otherwise a fused kernel computes the logits' gradient from exp(x - max) saved by the
//     forward into a fresh buffer (exclusively owned, so backward hands it to .grad without a
//     copy; e stays intact for a retained graph).
#include <cstdint>

#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

// A value outside these (static_cast<Reduction>(7)) is an InvalidArgument naming the loss.
enum class Reduction {
  None,      // 'none': one loss per sample
  Mean,      // 'mean' (the default)
  Sum,       // 'sum'
  BatchMean  // 'batchmean': kl_div only, sum / N
};

struct CrossEntropyOptions {
  Tensor weight{};                    // [C] per-class weights, or undefined
  std::int64_t ignore_index = -100;   // index targets equal to it contribute nothing
  Reduction reduction = Reduction::Mean;
  double label_smoothing = 0.0;       // in [0, 1]
};
Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options = {},
             SourceLocation site = SourceLocation::current());

// nll_loss(log_probs, target): l_n = -w[t_n] log_probs[n, t_n]; shapes as cross_entropy with index
// targets; mean divides by the summed weights of the non-ignored targets.
//   vjp     dlog_probs[n, t_n] = -G w[t_n] (a kernel; tensor ops under create_graph)
//           dweight[c] = -G sum_{n: t_n = c} log_probs[n, c] (minus G loss per target for a mean)
//   saved   target, weight; log_probs and the loss only when weight requires grad
struct NllLossOptions {
  Tensor weight{};
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
};
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& options = {},
             SourceLocation site = SourceLocation::current());

// kl_div(input, target): input holds log-probabilities; pointwise
//   l = target (log target - input)          (log_target = false; 0 where target = 0)
//   l = exp(target) (target - input)         (log_target = true; 0 where target = -inf)
// input and target have the same shape and dtype; target >= 0 unless log_target. The pointwise
// loss is 0 wherever target = 0 (log_target: -inf), even where input is -inf (PyTorch: NaN there).
// d/dtarget = log(target) + 1 - input, -inf at target = 0 (the one-sided limit; PyTorch: NaN).
// reduction: none, sum, mean (over all elements, PyTorch's default), batchmean (sum / input.size(0),
// the mathematically correct KL divergence per sample; sum for a rank-0 input, as PyTorch). mean or
// batchmean of no elements is 0.
//   vjp     dx = -G t, dt = G (log t + 1 - x)   (log_target: dx = -G e^t, dt = G e^t (t - x + 1));
//           G = g ('none', 'sum'), g / numel ('mean'), g / N ('batchmean')
//   saved   target; input too when target requires grad
struct KlDivOptions {
  Reduction reduction = Reduction::Mean;
  bool log_target = false;
};
Tensor kl_div(const Tensor& input, const Tensor& target, const KlDivOptions& options = {},
             SourceLocation site = SourceLocation::current());

// binary_cross_entropy_with_logits(x, y): multi-label, stable for any finite logit;
//   l = -w [pos_weight * y * log sigmoid(x) + (1 - y) * log sigmoid(-x)]
// weight broadcasts to x's shape; pos_weight broadcasts along the last (class) dim, as in PyTorch.
// Computed as PyTorch does: l = w [(1 - y) x + (1 + (pw - 1) y) softplus(-x)], softplus(-x) =
// log1p(exp(-|x|)) + max(-x, 0); dx = w [(1 + (pw - 1) y) sigmoid(x) - pw y]. target has logits'
// shape and dtype; weight and pos_weight must broadcast to it (all may require grad). Reduction
// BatchMean is an error here (kl_div only), as for cross_entropy and nll_loss.
//   vjp     dx above, dy = G w ((pw - 1) softplus(-x) - x), dw = G l / w, dpw = G w y softplus(-x)
//           (the last two summed to their shapes)
//   saved   logits, target, weight, pos_weight (dx reads them all)
struct BceWithLogitsOptions {
  Tensor weight{};
  Tensor pos_weight{};
  Reduction reduction = Reduction::Mean;
};
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const BceWithLogitsOptions& options = {},
             SourceLocation site = SourceLocation::current());


// ---- regression losses (issue 11) ----
// Pointwise losses of d = input - target, reduced as PyTorch: none (input's shape), mean (over all
// elements, the default), sum. input and target must have the same shape and dtype: PyTorch warns
// about differing sizes and broadcasts, which silently averages the wrong pairs (an [N, 1] input
// with an [N] target gives an [N, N] loss); here it is an error. BatchMean is an error (kl_div
// only). mean of no elements (empty tensors) is 0 with zero gradient (PyTorch: NaN), as kl_div.
// Both input and target may require grad; dtarget = -dinput.
//
// mse_loss:        l = d^2                                    dinput = 2 d G
// l1_loss:         l = |d|                                    dinput = sign(d) G   (0 at d = 0, PyTorch)
// smooth_l1_loss:  l = d^2 / (2 beta)   where |d| < beta      dinput = clamp(d / beta, -1, 1) G
//                  l = |d| - beta / 2   otherwise
//   beta >= 0; beta = 0 is exactly l1_loss (gradient 0 at d = 0, as PyTorch 2.x, which dispatches
//   to l1_loss; PyTorch 1.13's kernel gives -G at d = 0 for beta = 0). beta < 0 or NaN is an error.
// G = g (none), g (sum), g / numel (mean).
// saved: input and target (each VJP forms d again with tensor ops, so create_graph differentiates it)
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean,
                SourceLocation site = SourceLocation::current());
Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean,
               SourceLocation site = SourceLocation::current());
Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::Mean,
                      double beta = 1.0, SourceLocation site = SourceLocation::current());

}  // namespace tapegrad
