// SPDX-License-Identifier: MIT
#pragma once
// Exceptions thrown by tapegrad. Messages are worded as the fix:
//   "add: cannot broadcast a [2, 3] with b [4] (dim -1: 3 vs 4; sizes must match or be 1)"
// and, when the op was called from user code, end with the call site (autodiff/site.hpp):
//   "... (called from train.cpp:42)"
#include <stdexcept>
#include <string>

namespace tapegrad {

namespace detail {
std::string site_suffix();
}

// A caller passed something the op cannot take (shape, dtype, dim, value).
class InvalidArgument : public std::invalid_argument {
 public:
  explicit InvalidArgument(const std::string& what) : std::invalid_argument(what + detail::site_suffix()) {}
};

// The call is well formed but the state does not allow it (released graph, wrong thread, ...).
class RuntimeError : public std::runtime_error {
 public:
  explicit RuntimeError(const std::string& what) : std::runtime_error(what + detail::site_suffix()) {}
};

}  // namespace tapegrad
