// SPDX-License-Identifier: MIT
#pragma once
// Scaled dot-product attention, the op under nn's attention block. PyTorch's names and semantics.
// layer_norm (ops/norm.hpp) and embedding (ops/embedding.hpp), the block's other ops, are
// included here so that code written against this header keeps compiling.
//
// scaled_dot_product_attention(q, k, v, options)        q [..., L, E], k [..., S, E], v [..., S, Ev]
//   scores = q kᵀ · scale (+ mask)                      [..., L, S]   scale = 1/sqrt(E) by default
//   p      = softmax(scores, -1)                        each row sums to 1 over the keys it may see
//   out    = p v                                        [..., L, Ev]
//   Built from matmul, masked_fill/add and softmax, so the VJP (and every higher derivative) is
//   theirs: dv = pᵀ g, dp = g vᵀ, dscores = p ⊙ (dp − ⟨dp, p⟩), dq = dscores k · scale, dk = dscoresᵀ q · scale.
//   saved: no node of its own; its ops save q and k (the scores' matmul), a bool or causal mask
//   (masked_fill; a float mask is added, nothing saved), p (softmax's output, which the second
//   matmul saves too) and v
//   attn_mask: bool, true = may attend (torch.nn.functional.scaled_dot_product_attention), or a
//   float mask added to the scores (-inf blocks); it broadcasts to [..., L, S]. is_causal: query i
//   sees keys j <= i (L x S lower triangle); it cannot be combined with attn_mask (as PyTorch).
//   Leading dims of q, k, v broadcast as in matmul.
//   A query row that may see no key at all (fully masked, or S = 0) gets output 0 and gradient 0
//   (softmax's policy for all -inf rows; PyTorch gives NaN there).
//   Errors name scaled_dot_product_attention (never matmul or softmax): batch dims of q, k, v that
//   do not broadcast, a float attn_mask with NaN or +inf, and scores q kᵀ · scale that are NaN or
//   ±inf before masking (NaN in q or k, or overflow).
#include <optional>

#include "autodiff/tensor.hpp"
#include "ops/embedding.hpp"
#include "ops/norm.hpp"

namespace tapegrad {

struct AttentionOptions {
  Tensor attn_mask{};                // bool (true = attend) or float (added); undefined: none
  bool is_causal = false;
  std::optional<double> scale{};     // default 1 / sqrt(E)
};

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options = {});

struct AttentionResult {
  Tensor output;   // [..., L, Ev]
  Tensor weights;  // [..., L, S], the softmax probabilities (differentiable)
};
// The same, also returning the attention weights.
AttentionResult scaled_dot_product_attention_with_weights(const Tensor& q, const Tensor& k, const Tensor& v,
                                                          const AttentionOptions& options = {});

}  // namespace tapegrad
