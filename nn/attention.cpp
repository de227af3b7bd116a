// SPDX-License-Identifier: MIT
#include "nn/attention.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "nn/init.hpp"
#include "ops/elementwise.hpp"
#include "ops/linalg.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"

namespace tapegrad::nn {

// ---------------------------------------------------------------- LayerNorm
LayerNorm::LayerNorm(std::vector<std::int64_t> normalized_shape, double eps, bool elementwise_affine, DType dtype)
    : Module("LayerNorm"), shape_(std::move(normalized_shape)), eps_(eps) {
  check_layer_dtype("LayerNorm", dtype);
  if (shape_.empty() || shape_.size() > 4)
    throw InvalidArgument(fmt::format("LayerNorm: normalized_shape has {} dims; expected 1 to 4", shape_.size()));
  for (auto s : shape_)
    if (s <= 0) throw InvalidArgument(fmt::format("LayerNorm: normalized_shape {} has a size <= 0", Shape(shape_)));
  if (!(eps > 0) || !std::isfinite(eps))
    throw InvalidArgument(fmt::format("LayerNorm: eps = {}; expected a finite eps > 0 (it keeps 1/sqrt(var + eps) finite)", eps));
  if (elementwise_affine) {
    weight = register_parameter("weight", ones(Shape(shape_), dtype));
    bias = register_parameter("bias", zeros(Shape(shape_), dtype));
  }
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, shape_, weight, bias, eps_); }

// ---------------------------------------------------------------- Embedding
Embedding::Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, Generator& gen,
                     std::optional<std::int64_t> padding_idx, DType dtype)
    : Module("Embedding") {
  check_layer_dtype("Embedding", dtype);
  if (num_embeddings <= 0 || embedding_dim <= 0)
    throw InvalidArgument(fmt::format("Embedding: num_embeddings = {}, embedding_dim = {}; expected both > 0",
                                      num_embeddings, embedding_dim));
  if (padding_idx) {
    const std::int64_t p = *padding_idx < 0 ? *padding_idx + num_embeddings : *padding_idx;
    if (p < 0 || p >= num_embeddings)
      throw InvalidArgument(fmt::format("Embedding: padding_idx = {} is out of range for {} embeddings", *padding_idx,
                                        num_embeddings));
    padding_idx_ = p;
  }
  Tensor w = Tensor::empty({num_embeddings, embedding_dim}, dtype, "Embedding");
  init::normal_(w, 0.0, 1.0, gen);  // PyTorch: N(0, 1), padding row zeroed
  if (padding_idx_)
    for (std::int64_t j = 0; j < embedding_dim; ++j) w.set({*padding_idx_, j}, 0.0);
  weight = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& indices) { return embedding(weight, indices, padding_idx_); }

Tensor sinusoidal_positional_encoding(std::int64_t length, std::int64_t dim, DType dtype) {
  if (length <= 0 || dim <= 0)
    throw InvalidArgument(fmt::format("sinusoidal_positional_encoding: length = {}, dim = {}; expected both > 0", length, dim));
  check_allocation("sinusoidal_positional_encoding", Shape{length, dim}, kFloat64);  // built in doubles first
  std::vector<double> pe(static_cast<std::size_t>(length * dim));
  for (std::int64_t t = 0; t < length; ++t)
    for (std::int64_t i = 0; i < dim; ++i) {
      const double freq = std::pow(10000.0, -static_cast<double>(i - i % 2) / static_cast<double>(dim));
      pe[static_cast<std::size_t>(t * dim + i)] =
          i % 2 == 0 ? std::sin(static_cast<double>(t) * freq) : std::cos(static_cast<double>(t) * freq);
    }
  return from_vector(pe, Shape{length, dim}, dtype);
}

LearnedPositionalEncoding::LearnedPositionalEncoding(std::int64_t max_len, std::int64_t dim, Generator& gen, DType dtype)
    : Module("LearnedPositionalEncoding") {
  check_layer_dtype("LearnedPositionalEncoding", dtype);
  if (max_len <= 0 || dim <= 0)
    throw InvalidArgument(fmt::format("LearnedPositionalEncoding: max_len = {}, dim = {}; expected both > 0", max_len, dim));
  Tensor w = Tensor::empty({max_len, dim}, dtype, "LearnedPositionalEncoding");
  init::normal_(w, 0.0, 0.02, gen);
  weight = register_parameter("weight", w);
}

Tensor LearnedPositionalEncoding::forward(const Tensor& x) {
  if (x.dim() < 2 || x.size(-1) != weight.size(1) || x.size(-2) > weight.size(0))
    throw InvalidArgument(fmt::format("LearnedPositionalEncoding: input {} must be [..., T, {}] with T <= max_len = {}",
                                      x.shape(), weight.size(1), weight.size(0)));
  return add(x, narrow(weight, 0, 0, x.size(-2)));
}

// ---------------------------------------------------------------- MultiheadAttention
MultiheadAttention::MultiheadAttention(std::int64_t embed_dim, std::int64_t num_heads, Generator& gen,
                                       const MultiheadAttentionOptions& o)
    : Module("MultiheadAttention"), e_(embed_dim), h_(num_heads), batch_first_(o.batch_first) {
  check_layer_dtype("MultiheadAttention", o.dtype);
  if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0)
    throw InvalidArgument(fmt::format("MultiheadAttention: embed_dim = {} is not divisible by num_heads = {} (each head "
                                      "gets embed_dim / num_heads features)", embed_dim, num_heads));
  if (embed_dim > std::numeric_limits<std::int64_t>::max() / 3)
    throw InvalidArgument(fmt::format("MultiheadAttention: embed_dim = {} is too large (3 * embed_dim overflows int64)", embed_dim));
  Tensor w = Tensor::empty({3 * embed_dim, embed_dim}, o.dtype, "MultiheadAttention");
  init::xavier_uniform_(w, gen);  // PyTorch's _reset_parameters
  in_proj_weight = register_parameter("in_proj_weight", w);
  if (o.bias) in_proj_bias = register_parameter("in_proj_bias", zeros({3 * embed_dim}, o.dtype));
  out_proj = register_module("out_proj", std::make_shared<Linear>(embed_dim, embed_dim, gen, o.bias, o.dtype));
  if (o.bias) init::zeros_(out_proj->bias);
}

Tensor MultiheadAttention::forward(const Tensor& x) { return forward(x, x, x, {.need_weights = false}).output; }

MhaOutput MultiheadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                      const MhaForwardOptions& o) {
  const char* who = "MultiheadAttention";
  for (const auto& [name, t] : {std::pair{"query", &query}, std::pair{"key", &key}, std::pair{"value", &value}}) {
    if (!t->defined() || (t->dim() != 2 && t->dim() != 3) || t->size(-1) != e_)
      throw InvalidArgument(fmt::format("{}: {} has shape {}; expected [{}, E] with E = embed_dim = {}{}", who, name,
                                        t->defined() ? fmt::format("{}", t->shape()) : "undefined",
                                        batch_first_ ? "B, L" : "L, B", e_, " (or unbatched [L, E])"));
    if (t->dtype() != in_proj_weight.dtype())
      throw InvalidArgument(fmt::format("{}: {} is {} but the layer is {}", who, name, dtype_name(t->dtype()),
                                        dtype_name(in_proj_weight.dtype())));
  }
  if (query.dim() != key.dim() || key.dim() != value.dim())
    throw InvalidArgument(fmt::format("{}: query {}, key {} and value {} must all be batched or all unbatched", who,
                                      query.shape(), key.shape(), value.shape()));
  const bool unbatched = query.dim() == 2;
  // To [B, T, E].
  auto to_bte = [&](const Tensor& t) {
    if (unbatched) return unsqueeze(t, 0);
    return batch_first_ ? t : transpose(t, 0, 1);
  };
  const Tensor q_in = to_bte(query), k_in = to_bte(key), v_in = to_bte(value);
  const std::int64_t B = q_in.size(0), L = q_in.size(1), S = k_in.size(1), d = e_ / h_;
  if (k_in.size(0) != B || v_in.size(0) != B || v_in.size(1) != S)
    throw InvalidArgument(fmt::format("{}: query {}, key {} and value {} disagree on the batch size or key and value on "
                                      "the sequence length", who, query.shape(), key.shape(), value.shape()));

  // Projections: rows [0, E) of in_proj for q, [E, 2E) for k, [2E, 3E) for v.
  auto proj = [&](const Tensor& x, std::int64_t part) {
    Tensor w = narrow(in_proj_weight, 0, part * e_, e_);
    Tensor b = in_proj_bias.defined() ? narrow(in_proj_bias, 0, part * e_, e_) : Tensor();
    Tensor y = linear(x, w, b);                                 // [B, T, E]
    return transpose(reshape(y, {B, x.size(1), h_, d}), 1, 2);  // [B, H, T, d]
  };
  const Tensor q = proj(q_in, 0), k = proj(k_in, 1), v = proj(v_in, 2);

  // One additive mask [.., L, S]: 0 where a query may attend, -inf where it may not.
  const DType dt = in_proj_weight.dtype();
  Tensor mask;
  if (o.is_causal && o.attn_mask.defined())
    throw InvalidArgument(fmt::format("{}: pass either attn_mask or is_causal, not both", who));
  if (o.is_causal) {
    std::vector<bool> hide(static_cast<std::size_t>(L * S));
    for (std::int64_t i = 0; i < L; ++i)
      for (std::int64_t j = 0; j < S; ++j) hide[static_cast<std::size_t>(i * S + j)] = j > i;
    mask = masked_fill(zeros({L, S}, dt), from_vector(hide, Shape{L, S}), -INFINITY);
  }
  if (o.attn_mask.defined()) {
    const Tensor& m = o.attn_mask;
    const bool ok2 = m.dim() == 2 && m.size(0) == L && m.size(1) == S;
    const bool ok3 = m.dim() == 3 && m.size(0) == B * h_ && m.size(1) == L && m.size(2) == S;
    if (!ok2 && !ok3)
      throw InvalidArgument(fmt::format("{}: attn_mask has shape {}; expected [L, S] = [{}, {}] or [B*H, L, S] = [{}, {}, "
                                        "{}]", who, m.shape(), L, S, B * h_, L, S));
    Tensor add_mask;
    if (m.dtype() == kBool) add_mask = masked_fill(zeros(m.shape(), dt), m, -INFINITY);  // true = blocked
    else if (m.dtype() == dt) add_mask = m;
    else
      throw InvalidArgument(fmt::format("{}: attn_mask has dtype {}; expected bool (true = blocked) or {}", who,
                                        dtype_name(m.dtype()), dtype_name(dt)));
    mask = ok3 ? reshape(add_mask, {B, h_, L, S}) : add_mask;
  }
  if (o.key_padding_mask.defined()) {
    const Tensor& kp = o.key_padding_mask;
    const Shape want = unbatched ? Shape{S} : Shape{B, S};
    if (kp.shape() != want)
      throw InvalidArgument(fmt::format("{}: key_padding_mask has shape {}; expected {} ([B, S], true = padding)", who,
                                        kp.shape(), want));
    Tensor add_kp;
    if (kp.dtype() == kBool) add_kp = masked_fill(zeros(kp.shape(), dt), kp, -INFINITY);
    else if (kp.dtype() == dt) add_kp = kp;
    else throw InvalidArgument(fmt::format("{}: key_padding_mask has dtype {}; expected bool", who, dtype_name(kp.dtype())));
    add_kp = reshape(add_kp, {B, 1, 1, S});
    mask = mask.defined() ? add(mask, add_kp) : add_kp;
  }
  AttentionResult r = scaled_dot_product_attention_with_weights(q, k, v, {.attn_mask = mask});
  Tensor out = reshape(transpose(r.output, 1, 2), {B, L, e_});  // heads side by side
  out = (*out_proj)(out);
  if (unbatched) out = squeeze(out, 0);
  else if (!batch_first_) out = transpose(out, 0, 1);
  MhaOutput result{out, Tensor()};
  if (o.need_weights) {
    Tensor w = o.average_attn_weights ? mean(r.weights, 1) : r.weights;
    result.weights = unbatched ? squeeze(w, 0) : w;
  }
  return result;
}

// ---------------------------------------------------------------- TransformerBlock
TransformerBlock::TransformerBlock(std::int64_t embed_dim, std::int64_t num_heads, std::int64_t ffn_dim, Generator& gen,
                                   const TransformerBlockOptions& o)
    : Module("TransformerBlock"), options_(o) {
  check_layer_dtype("TransformerBlock", o.dtype);
  if (ffn_dim <= 0) throw InvalidArgument(fmt::format("TransformerBlock: ffn_dim = {}; expected > 0", ffn_dim));
  self_attn = register_module("self_attn", std::make_shared<MultiheadAttention>(
                                               embed_dim, num_heads, gen,
                                               MultiheadAttentionOptions{.bias = true, .batch_first = true, .dtype = o.dtype}));
  linear1 = register_module("linear1", std::make_shared<Linear>(embed_dim, ffn_dim, gen, true, o.dtype));
  linear2 = register_module("linear2", std::make_shared<Linear>(ffn_dim, embed_dim, gen, true, o.dtype));
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(std::vector<std::int64_t>{embed_dim}, o.layer_norm_eps,
                                                               true, o.dtype));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(std::vector<std::int64_t>{embed_dim}, o.layer_norm_eps,
                                                               true, o.dtype));
  act_ = register_module("activation", make_activation(o.activation));
  dropout_ = register_module("dropout", std::make_shared<Dropout>(o.dropout, o.dropout_seed));
  dropout1_ = register_module("dropout1", std::make_shared<Dropout>(o.dropout, o.dropout_seed + 1));
  dropout2_ = register_module("dropout2", std::make_shared<Dropout>(o.dropout, o.dropout_seed + 2));
}

Tensor TransformerBlock::forward(const Tensor& x) { return forward(x, Tensor()); }

Tensor TransformerBlock::forward(const Tensor& x, const Tensor& key_padding_mask) {
  const Tensor h = (*norm1)(x);
  MhaOutput a = self_attn->forward(
      h, h, h, {.key_padding_mask = key_padding_mask, .need_weights = keep_attention_, .is_causal = options_.causal});
  if (keep_attention_) last_attention_ = a.weights.detach();
  Tensor y = add(x, (*dropout1_)(a.output));
  Tensor f = (*linear2)((*dropout_)((*act_)((*linear1)((*norm2)(y)))));
  return add(y, (*dropout2_)(f));
}

}  // namespace tapegrad::nn
