// SPDX-License-Identifier: MIT
#pragma once
// Exceptions thrown by tapegrad. Messages are worded as the fix:
//   "add: cannot broadcast a [2, 3] with b [4] (dim -1: 3 vs 4; sizes must match or be 1)"
#include <stdexcept>
#include <string>

namespace tapegrad {

// A caller passed something the op cannot take (shape, dtype, dim, value).
class InvalidArgument : public std::invalid_argument {
 public:
  explicit InvalidArgument(const std::string& what) : std::invalid_argument(what) {}
};

// The call is well formed but the state does not allow it (released graph, wrong thread, ...).
class RuntimeError : public std::runtime_error {
 public:
  explicit RuntimeError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace tapegrad
