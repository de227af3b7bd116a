// SPDX-License-Identifier: MIT
#pragma once
// Attention layers, with PyTorch's parameter names and layouts so weights move between the two.
//
//   LayerNorm(normalized_shape, eps, elementwise_affine)   weight (ones), bias (zeros)
//   Embedding(num_embeddings, dim, gen, padding_idx)       weight [num, dim] ~ N(0, 1); the padding row is 0
//   sinusoidal_positional_encoding(T, d)                   PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(...)
//   LearnedPositionalEncoding(max_len, d, gen)             weight [max_len, d] ~ N(0, 0.02^2); x + weight[:T]
//
//   MultiheadAttention(E, H, gen, options)                 torch.nn.MultiheadAttention
//     in_proj_weight [3E, E] (xavier_uniform), in_proj_bias [3E] (0), out_proj.weight [E, E], out_proj.bias [E] (0)
//     q, k, v = x W_qᵀ + b_q, ...; split into H heads of E/H; per head softmax(q kᵀ / sqrt(E/H) + mask) v;
//     heads concatenated, then out_proj.
//     Inputs [L, B, E] (batch_first = false, PyTorch's default) or [B, L, E] (batch_first = true), or
//     unbatched [L, E]. Masks follow nn.MultiheadAttention: key_padding_mask [B, S] bool, true = this
//     key is padding (ignored); attn_mask bool [L, S] or [B*H, L, S], true = NOT allowed to attend,
//     or a float mask added to the scores. (Note: the opposite of scaled_dot_product_attention's
//     bool mask, where true = attend; both as PyTorch.) A query that may see no key gets output 0.
//     need_weights: the attention weights, averaged over heads ([B, L, S]) or per head ([B, H, L, S]).
//
//   TransformerBlock(E, H, ffn, gen, options)              pre-norm, as torch.nn.TransformerEncoderLayer(
//     x = x + dropout(self_attn(norm1(x)))                   d_model=E, nhead=H, dim_feedforward=ffn,
//     x = x + dropout(linear2(dropout(act(linear1(norm2(x))))))  activation="gelu", norm_first=True,
//     Names: self_attn.*, linear1.*, linear2.*, norm1.*, norm2.*  batch_first=True): same names.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nn/layers.hpp"
#include "nn/module.hpp"
#include "ops/attention.hpp"

namespace tapegrad::nn {

class LayerNorm : public Module {
 public:
  explicit LayerNorm(std::vector<std::int64_t> normalized_shape, double eps = 1e-5, bool elementwise_affine = true,
                     DType dtype = kFloat32);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;

 private:
  std::vector<std::int64_t> shape_;
  double eps_;
};

class Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t embedding_dim, Generator& gen,
            std::optional<std::int64_t> padding_idx = std::nullopt, DType dtype = kFloat32);
  Tensor forward(const Tensor& indices) override;  // int64 ids [...] -> [..., dim]
  Tensor weight;

 private:
  std::optional<std::int64_t> padding_idx_;
};

Tensor sinusoidal_positional_encoding(std::int64_t length, std::int64_t dim, DType dtype = kFloat32);

class LearnedPositionalEncoding : public Module {
 public:
  LearnedPositionalEncoding(std::int64_t max_len, std::int64_t dim, Generator& gen, DType dtype = kFloat32);
  Tensor forward(const Tensor& x) override;  // x [..., T, dim] -> x + weight[:T]
  Tensor weight;
};

struct MultiheadAttentionOptions {
  bool bias = true;
  bool batch_first = false;  // PyTorch's default: [L, B, E]
  DType dtype = kFloat32;
};

struct MhaForwardOptions {
  Tensor key_padding_mask{};          // [B, S] bool, true = ignore that key
  Tensor attn_mask{};                 // [L, S] or [B*H, L, S]: bool true = may NOT attend, or float added
  bool need_weights = true;
  bool average_attn_weights = true;
  bool is_causal = false;             // query i sees keys j <= i (cannot be combined with attn_mask)
};

struct MhaOutput {
  Tensor output;   // same layout as the query
  Tensor weights;  // [B, L, S] averaged or [B, H, L, S]; undefined unless need_weights
};

class MultiheadAttention : public Module {
 public:
  MultiheadAttention(std::int64_t embed_dim, std::int64_t num_heads, Generator& gen,
                     const MultiheadAttentionOptions& options = {});
  MhaOutput forward(const Tensor& query, const Tensor& key, const Tensor& value, const MhaForwardOptions& options = {});
  Tensor forward(const Tensor& x) override;  // self-attention, no mask, output only
  std::int64_t embed_dim() const { return e_; }
  std::int64_t num_heads() const { return h_; }
  Tensor in_proj_weight, in_proj_bias;
  std::shared_ptr<Linear> out_proj;

 private:
  std::int64_t e_, h_;
  bool batch_first_;
};

struct TransformerBlockOptions {
  double dropout = 0.0;
  bool causal = false;
  std::string activation = "gelu";
  double layer_norm_eps = 1e-5;
  DType dtype = kFloat32;
  std::uint64_t dropout_seed = 0;
};

class TransformerBlock : public Module {
 public:
  TransformerBlock(std::int64_t embed_dim, std::int64_t num_heads, std::int64_t ffn_dim, Generator& gen,
                   const TransformerBlockOptions& options = {});
  Tensor forward(const Tensor& x) override;  // x [B, T, E] (or [T, E])
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask);
  // The last forward's attention weights (averaged over heads), kept when keep_attention(true).
  void keep_attention(bool on) { keep_attention_ = on; }
  const Tensor& last_attention() const { return last_attention_; }
  std::shared_ptr<MultiheadAttention> self_attn;
  std::shared_ptr<Linear> linear1, linear2;
  std::shared_ptr<LayerNorm> norm1, norm2;

 private:
  TransformerBlockOptions options_;
  std::shared_ptr<Module> act_;
  std::shared_ptr<Dropout> dropout_, dropout1_, dropout2_;
  bool keep_attention_ = false;
  Tensor last_attention_;
};

}  // namespace tapegrad::nn
