// SPDX-License-Identifier: MIT
#pragma once
// A tensor's whole state (not installed): the head Tensor's inline accessors read
// (autodiff/tensor.hpp: data, shape, dtype, requires_grad, node_id) and the rest, which only the
// library's own code touches.
#include <cstdint>
#include <memory>
#include <string>

#include "autodiff/tensor.hpp"

namespace tapegrad {

struct TensorImpl : detail::TensorHead {
  // User-provided, so that a new impl is not zero-filled first (value-initialisation would clear
  // all ~180 bytes on every op); every member but the inline value bytes has an initialiser.
  TensorImpl() noexcept {}  // NOLINT(modernize-use-equals-default): `= default` brings back the zero-fill
  static constexpr std::size_t kInlineBytes = 32;
  std::shared_ptr<void> storage;  // owns the bytes when they live outside this impl; shared by views
  alignas(16) unsigned char inline_data[kInlineBytes];  // values of up to 32 bytes live here (data points here)
  std::int64_t node_index = -1;   // position on the producing thread's tape, -1 for leaves
  const char* op = nullptr;       // that node's op name: errors name it after the node is gone
  bool retains_grad = false;      // a non-leaf whose grad backward fills (retain_grad())
  std::shared_ptr<detail::TensorHead> grad;  // a TensorImpl; Tensor(grad) is the gradient
  std::string name;               // optional label (parameter names), shown in graphs and errors
};

inline TensorImpl& Tensor::impl() const {
  // Every TensorHead is the head of a TensorImpl (tensors are only made in autodiff/tensor.cpp).
  return static_cast<TensorImpl&>(const_cast<detail::TensorHead&>(head()));
}

namespace detail {
// The TensorImpl a head belongs to (the shared_ptr<TensorHead> a node or a grad keeps).
inline TensorImpl& impl_of(TensorHead& h) { return static_cast<TensorImpl&>(h); }
inline const TensorImpl& impl_of(const TensorHead& h) { return static_cast<const TensorImpl&>(h); }
}  // namespace detail

}  // namespace tapegrad
