// SPDX-License-Identifier: MIT
#pragma once
// Embedding lookup, PyTorch's torch.nn.functional.embedding.
//
// embedding(weight, indices, padding_idx)              weight [num, dim], indices int64 [...] -> [..., dim]
//   out[i] = weight[indices[i]];  dweight[r] = Σ_{i: indices[i] = r} g[i], except the padding row (no gradient)
//   saved: no node of its own; built from index_select (saves the flattened indices), reshape (nothing)
//   and, with padding_idx, where (saves the 0/1 row mask)
#include <cstdint>
#include <optional>

#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

Tensor embedding(const Tensor& weight, const Tensor& indices, std::optional<std::int64_t> padding_idx = std::nullopt, SourceLocation site = SourceLocation::current());

}  // namespace tapegrad
