// SPDX-License-Identifier: MIT
#include "ops/embedding.hpp"

#include "autodiff/site.hpp"

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autodiff/check.hpp"
#include "ops/elementwise.hpp"
#include "ops/shape.hpp"

namespace tapegrad {

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
