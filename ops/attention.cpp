// SPDX-License-Identifier: MIT
#include "ops/attention.hpp"

#include "autodiff/site.hpp"

#include <cmath>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/linalg.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
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

// ---------------------------------------------------------------- layer_norm
namespace {

// The recorded form of the VJP (for create_graph): the formula with tensor ops on x2 [R, D].
Grads layer_norm_vjp_ops(const Tensor& g2, const Tensor& x2, const Tensor& w, bool want_x, bool want_w, bool want_b,
                         double eps) {
  Tensor mu = mean(x2, -1, true);
  Tensor xc = sub(x2, mu);
  Tensor rstd = div(scalar_like(x2, 1.0), sqrt(add(mean(mul(xc, xc), -1, true), eps)));
  Tensor xhat = mul(xc, rstd);
  Tensor dx, dw, db;
  if (want_x) {
    Tensor dxhat = w.defined() ? mul(g2, w) : g2;
    dx = mul(rstd, sub(sub(dxhat, mean(dxhat, -1, true)), mul(xhat, mean(mul(dxhat, xhat), -1, true))));
  }
  if (want_w) dw = sum(mul(g2, xhat), 0);
  if (want_b) db = sum(g2, 0);
  return Grads{dx, dw, db};
}

}  // namespace

Tensor layer_norm(const Tensor& x, const std::vector<std::int64_t>& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "layer_norm";
  check_floating(op, "x", x);
  const int nd = static_cast<int>(normalized_shape.size());
  const Shape ns(normalized_shape);
  bool fits = nd >= 1 && nd <= x.dim();
  for (int i = 0; fits && i < nd; ++i) fits = x.size(x.dim() - nd + i) == normalized_shape[static_cast<std::size_t>(i)];
  if (!fits)
    throw InvalidArgument(fmt::format("{}: normalized_shape {} does not match the trailing dims of x {} (expected x's "
                                      "last {} dims to be {})", op, ns, x.shape(), nd, ns));
  for (const auto& [name, t] : {std::pair{"weight", &weight}, std::pair{"bias", &bias}})
    if (t->defined()) {
      check_same_dtype(op, "x", x, name, *t);
      if (t->shape() != ns)
        throw InvalidArgument(fmt::format("{}: {} has shape {}; expected normalized_shape {}", op, name, t->shape(), ns));
    }
  // eps = 0 divides by zero on a constant row (var = 0: rstd = inf, xhat = 0 · inf = NaN); an
  // infinite eps maps every row to 0 (bias).
  if (!(eps > 0) || !std::isfinite(eps))
    throw InvalidArgument(fmt::format("{}: eps = {}; expected a finite eps > 0 (rstd = 1 / sqrt(var + eps) is infinite "
                                      "for a constant row when eps = 0; PyTorch's default is 1e-5)", op, eps));
  const std::int64_t D = ns.numel();
  const std::int64_t R = D == 0 ? 0 : x.numel() / D;
  if (D == 0) throw InvalidArgument(fmt::format("{}: normalized_shape {} has no elements", op, ns));

  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor stats = Tensor::empty({R, 2}, x.dtype());  // mean, rstd per row: saved for the fused VJP
  dispatch_float(x.dtype(), [&]<class T>() {
    using Row = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    using ORow = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    const T* px = x.data<T>();
    T* po = out.mutable_data<T>();
    T* ps = stats.mutable_data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    for (std::int64_t r = 0; r < R; ++r) {
      const Row xr(px + r * D, D);
      const T mu = xr.mean();
      const T var = (xr - mu).square().mean();
      const T rstd = T(1) / std::sqrt(var + static_cast<T>(eps));
      ORow yr(po + r * D, D);
      yr = (xr - mu) * rstd;
      if (pw) yr *= Row(pw, D);
      if (pb) yr += Row(pb, D);
      ps[2 * r] = mu;
      ps[2 * r + 1] = rstd;
    }
  });
  std::vector<Tensor> inputs = {x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  const bool has_w = weight.defined(), has_b = bias.defined();
  auto vjp = [stats, R, D, has_w, has_b, eps](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    const Tensor w = has_w ? in[1] : Tensor();
    const bool want_w = has_w && in[1].requires_grad();
    const bool want_b = has_b && in[has_w ? 2 : 1].requires_grad();
    Grads out;
    if (GradMode::is_enabled()) {  // create_graph: the formula as recorded ops
      Grads r = layer_norm_vjp_ops(reshape(g, {R, D}), reshape(x, {R, D}), w.defined() ? reshape(w, {D}) : w,
                                   x.requires_grad(), want_w, want_b, eps);
      Grads res{r[0].defined() ? reshape(r[0], x.shape().to_vector()) : Tensor()};
      if (has_w) res.push_back(r[1].defined() ? reshape(r[1], w.shape().to_vector()) : Tensor());
      if (has_b) res.push_back(r[2].defined() ? reshape(r[2], in[has_w ? 2 : 1].shape().to_vector()) : Tensor());
      return res;
    }
    Tensor dx = x.requires_grad() ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
    Tensor dw = want_w ? zeros(w.shape(), x.dtype()) : Tensor();
    Tensor db = want_b ? zeros(in[has_w ? 2 : 1].shape(), x.dtype()) : Tensor();
    dispatch_float(x.dtype(), [&]<class T>() {
      using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
      using Row = Eigen::Map<const Arr>;
      using ORow = Eigen::Map<Arr>;
      const T* px = x.data<T>();
      const T* pg = g.data<T>();
      const T* ps = stats.data<T>();
      const T* pw = has_w ? w.data<T>() : nullptr;
      Arr xhat(D), dxhat(D);
      for (std::int64_t r = 0; r < R; ++r) {
        const T mu = ps[2 * r], rstd = ps[2 * r + 1];
        const Row xr(px + r * D, D), gr(pg + r * D, D);
        xhat = (xr - mu) * rstd;
        if (dw.defined()) ORow(dw.mutable_data<T>(), D) += gr * xhat;
        if (db.defined()) ORow(db.mutable_data<T>(), D) += gr;
        if (dx.defined()) {
          dxhat = pw ? Arr(gr * Row(pw, D)) : Arr(gr);
          const T m1 = dxhat.mean(), m2 = (dxhat * xhat).mean();
          ORow(dx.mutable_data<T>() + r * D, D) = rstd * (dxhat - m1 - xhat * m2);
        }
      }
    });
    Grads res{dx};
    if (has_w) res.push_back(dw);
    if (has_b) res.push_back(db);
    return res;
  };
  record("layer_norm", inputs, out, std::move(vjp));
  return out;
}

// ---------------------------------------------------------------- embedding
Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<std::int64_t> padding_idx, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "embedding";
  check_floating(op, "weight", weight);
  check_defined(op, "indices", indices);
  if (weight.dim() != 2)
    throw InvalidArgument(fmt::format("{}: weight has shape {}; expected [num_embeddings, embedding_dim]", op, weight.shape()));
  if (indices.dtype() != kInt64)
    throw InvalidArgument(fmt::format("{}: indices have dtype {}; expected int64 token ids", op, dtype_name(indices.dtype())));
  if (indices.dim() > 3)
    throw InvalidArgument(fmt::format("{}: indices have shape {}; at most 3 dims (the output adds one)", op, indices.shape()));
  const std::int64_t num = weight.size(0);
  const std::int64_t* pi = indices.data<std::int64_t>();
  for (std::int64_t i = 0; i < indices.numel(); ++i)
    if (pi[i] < 0 || pi[i] >= num) {
      const auto idx = unravel_index(indices.shape(), i);
      throw InvalidArgument(fmt::format("{}: indices[{}] = {} is out of range for {} embeddings (expected 0 <= id < {})",
                                        op, fmt::join(idx, ", "), pi[i], num, num));
    }
  std::int64_t pad = -1;
  if (padding_idx) {
    pad = *padding_idx < 0 ? *padding_idx + num : *padding_idx;
    if (pad < 0 || pad >= num)
      throw InvalidArgument(fmt::format("{}: padding_idx = {} is out of range for {} embeddings", op, *padding_idx, num));
  }
  const Tensor flat = reshape(indices, {indices.numel()});
  Tensor rows = index_select(weight, 0, flat);  // [n, dim]; its VJP is index_add into weight
  if (pad >= 0) {
    // No gradient reaches the padding row: its output rows are multiplied by a constant 0/1 mask
    // in the backward pass only (the forward value stays weight[pad], as PyTorch).
    std::vector<bool> keep(static_cast<std::size_t>(flat.numel()));
    for (std::int64_t i = 0; i < flat.numel(); ++i) keep[static_cast<std::size_t>(i)] = pi[i] != pad;
    const Tensor mask = from_vector(keep, Shape{flat.numel(), 1});
    // rows_out = rows.detach() + where(mask, rows - rows.detach(), 0): value rows, gradient masked.
    rows = add(rows.detach(), where(mask, sub(rows, rows.detach()), 0.0));
  }
  std::vector<std::int64_t> out_shape = indices.shape().to_vector();
  out_shape.push_back(weight.size(1));
  return reshape(rows, out_shape);
}

}  // namespace tapegrad
