// SPDX-License-Identifier: MIT
#include "ops/attention.hpp"

#include <cmath>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autodiff/check.hpp"
#include "autodiff/eigen.hpp"
#include "ops/elementwise.hpp"
#include "ops/linalg.hpp"
#include "ops/softmax.hpp"

namespace tapegrad {

namespace {

// "[1, 2]" for flat index 5 of shape [2, 3]
std::string index_str(const Shape& shape, std::int64_t flat) {
  return fmt::format("[{}]", fmt::join(unravel_index(shape, flat), ", "));
}

void check_scores(const char* op, const Tensor& scores, const Tensor& q, const Tensor& k, double scale) {
  bool finite = true;
  dispatch_float(scores.dtype(), [&]<class T>() { finite = scores.array<T>().isFinite().all(); });
  if (finite) return;  // the usual case: one vectorised pass, no copy
  const auto v = scores.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) continue;
    const std::string at = index_str(scores.shape(), static_cast<std::int64_t>(i));
    if (std::isnan(v[i]))
      throw InvalidArgument(fmt::format("{}: the attention score {} (of q kᵀ · scale, shape {}) is NaN; expected finite "
                                        "q {} and k {} (check them for NaN)", op, at, scores.shape(), q.shape(),
                                        k.shape()));
    throw InvalidArgument(fmt::format("{}: the attention score {} (of q kᵀ · scale, shape {}) is {}: q {} kᵀ with scale = "
                                      "{} overflows {}; expected finite scores (use a smaller scale, or float64, or "
                                      "check q and k for inf)", op, at, scores.shape(), v[i], q.shape(), scale,
                                      dtype_name(q.dtype())));
  }
}

// A float mask is added to the scores: -inf blocks a key, NaN or +inf would make the row invalid.
void check_float_mask(const char* op, const Tensor& m) {
  const auto v = m.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i)
    if (std::isnan(v[i]) || v[i] == INFINITY)
      throw InvalidArgument(fmt::format("{}: attn_mask{} = {}; a float mask must be finite or -inf (to block a key)", op,
                                        m.dim() == 0 ? std::string() : index_str(m.shape(), static_cast<std::int64_t>(i)),
                                        v[i]));
}

}  // namespace

AttentionResult scaled_dot_product_attention_with_weights(const Tensor& q, const Tensor& k, const Tensor& v,
                                                          const AttentionOptions& o) {
  const char* op = "scaled_dot_product_attention";
  check_floating(op, "q", q);
  check_floating(op, "k", k);
  check_floating(op, "v", v);
  check_same_dtype(op, "q", q, "k", k);
  check_same_dtype(op, "q", q, "v", v);
  for (const auto& [name, t] : {std::pair{"q", &q}, std::pair{"k", &k}, std::pair{"v", &v}})
    if (t->dim() < 2)
      throw InvalidArgument(fmt::format("{}: {} has shape {}; expected at least 2 dims [..., T, d]", op, name, t->shape()));
  if (q.size(-1) != k.size(-1))
    throw InvalidArgument(fmt::format("{}: q {} and k {} have different feature sizes ({} vs {}; expected q.size(-1) = "
                                      "k.size(-1))", op, q.shape(), k.shape(), q.size(-1), k.size(-1)));
  if (k.size(-2) != v.size(-2))
    throw InvalidArgument(fmt::format("{}: k {} and v {} have different numbers of keys ({} vs {}; expected "
                                      "k.size(-2) = v.size(-2))", op, k.shape(), v.shape(), k.size(-2), v.size(-2)));
  // Leading (batch) dims broadcast as in matmul: q's with k's for the scores, theirs with v's for
  // the output. Checked here so that the error names this op and all three shapes.
  const auto batch_of = [](const Tensor& t) {
    Shape b = t.shape();
    b.erase(b.rank() - 1);
    b.erase(b.rank() - 1);
    return b;
  };
  Shape qk_batch;
  try {
    qk_batch = broadcast_shapes(op, "q", batch_of(q), "k", batch_of(k));
  } catch (const InvalidArgument&) {
    throw InvalidArgument(fmt::format("{}: the batch dims of q {} and k {} do not broadcast ({} vs {}; sizes must match or "
                                      "be 1)", op, q.shape(), k.shape(), batch_of(q), batch_of(k)));
  }
  try {
    broadcast_shapes(op, "scores", qk_batch, "v", batch_of(v));
  } catch (const InvalidArgument&) {
    throw InvalidArgument(fmt::format("{}: the batch dims of v {} do not broadcast with those of q {} and k {} ({} vs {}; "
                                      "sizes must match or be 1)", op, v.shape(), q.shape(), k.shape(), batch_of(v),
                                      qk_batch));
  }
  if (o.is_causal && o.attn_mask.defined())
    throw InvalidArgument(fmt::format("{}: pass either attn_mask or is_causal, not both (as PyTorch)", op));
  const double scale = o.scale ? *o.scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  if (!std::isfinite(scale)) throw InvalidArgument(fmt::format("{}: scale = {}; expected a finite number", op, scale));
  const std::int64_t L = q.size(-2), S = k.size(-2);

  Tensor scores = mul(matmul_t(q, k, false, true), scale);  // [..., L, S]
  // NaN or ±inf scores before masking come from NaN in q or k, or from q kᵀ · scale overflowing:
  // softmax would reject them (naming itself) or, for -inf, silently take them for a mask.
  check_scores(op, scores, q, k, scale);
  if (o.is_causal) {
    // key j is visible to query i when j <= i
    std::vector<bool> hide(static_cast<std::size_t>(L * S));
    for (std::int64_t i = 0; i < L; ++i)
      for (std::int64_t j = 0; j < S; ++j) hide[static_cast<std::size_t>(i * S + j)] = j > i;
    scores = masked_fill(scores, from_vector(hide, Shape{L, S}), -INFINITY);
  } else if (o.attn_mask.defined()) {
    const Tensor& m = o.attn_mask;
    // The mask must broadcast to the scores without growing them.
    Shape b;
    try {
      b = broadcast_shapes(op, "attn_mask", m.shape(), "scores", scores.shape());
    } catch (const InvalidArgument&) {
      b = Shape{};
    }
    if (b != scores.shape())
      throw InvalidArgument(fmt::format("{}: attn_mask of shape {} does not broadcast to the attention scores of shape "
                                        "{} ([..., L, S] for q {} and k {})", op, m.shape(), scores.shape(), q.shape(),
                                        k.shape()));
    if (m.dtype() == kBool) scores = masked_fill(scores, logical_not(m), -INFINITY);
    else if (is_floating(m.dtype())) {
      check_same_dtype(op, "q", q, "attn_mask", m);
      check_float_mask(op, m);
      scores = add(scores, m);
    } else {
      throw InvalidArgument(fmt::format("{}: attn_mask has dtype {}; expected bool (true = attend) or a float mask "
                                        "added to the scores", op, dtype_name(m.dtype())));
    }
  }
  // No keys (S = 0): every query sees nothing, so its output is 0 with zero gradient, the policy
  // of a fully masked row; softmax would reject the empty class dim. The empty scores still link
  // the output to q and k.
  Tensor p = S == 0 ? scores : softmax(scores, -1);
  return {matmul(p, v), p};
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  return scaled_dot_product_attention_with_weights(q, k, v, o).output;
}

}  // namespace tapegrad
