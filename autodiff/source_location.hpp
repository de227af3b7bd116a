// SPDX-License-Identifier: MIT
#pragma once
// The caller's file and line, as a default argument: `SourceLocation site = SourceLocation::current()`.
// std::source_location would do, but clang 14 with libstdc++ 12 does not provide it (libstdc++'s
// version needs __builtin_source_location, which clang gained in 15). __builtin_FILE/__builtin_LINE
// in a default argument are evaluated where the outermost call is written, in GCC and clang alike.
#include <cstdint>

namespace tapegrad {

class SourceLocation {
 public:
  constexpr SourceLocation() noexcept = default;
  static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                          std::uint_least32_t line = __builtin_LINE(),
                                          const char* function = __builtin_FUNCTION()) noexcept {
    SourceLocation s;
    s.file_ = file;
    s.line_ = line;
    s.function_ = function;
    return s;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr std::uint_least32_t line() const noexcept { return line_; }
  constexpr const char* function_name() const noexcept { return function_; }

 private:
  const char* file_ = "";
  std::uint_least32_t line_ = 0;
  const char* function_ = "";
};

}  // namespace tapegrad
