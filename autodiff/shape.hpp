// SPDX-License-Identifier: MIT
#pragma once
// Shape: up to 4 sizes held inline (no allocation per tensor). Rank 0 is a scalar.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autodiff/source_location.hpp"

namespace tapegrad {

inline constexpr int kMaxRank = 4;

class Shape {
 public:
  Shape() = default;
  // A braced list: Shape{2, 3}, or {2, 3} where a Shape is expected. More than 4 sizes or a negative
  // size throws InvalidArgument naming the sizes and the caller's line (the op they were meant for
  // is not called yet).
  Shape(std::initializer_list<std::int64_t> sizes, SourceLocation site = SourceLocation::current());
  explicit Shape(const std::vector<std::int64_t>& sizes);

  int rank() const { return rank_; }
  int size() const { return rank_; }  // number of dims, so range-for and std algorithms read well
  bool empty() const { return rank_ == 0; }
  std::int64_t operator[](int i) const { return d_[static_cast<std::size_t>(i)]; }
  std::int64_t& operator[](int i) { return d_[static_cast<std::size_t>(i)]; }
  const std::int64_t* begin() const { return d_.data(); }
  const std::int64_t* end() const { return d_.data() + rank_; }
  std::int64_t numel() const;                     // throws InvalidArgument when it overflows int64
  std::optional<std::int64_t> checked_numel() const {  // nullopt on overflow (inline: no optional on the stack)
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i)
      if (__builtin_mul_overflow(n, d_[static_cast<std::size_t>(i)], &n)) return std::nullopt;
    return n;
  }

  void push_back(std::int64_t s);                // throws past rank 4
  void insert(int pos, std::int64_t s);          // throws past rank 4
  void erase(int pos);
  std::vector<std::int64_t> to_vector() const { return {begin(), end()}; }
  std::string str() const;                        // "[2, 3]"

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a[i] != b[i]) return false;
    return true;
  }

 private:
  std::array<std::int64_t, kMaxRank> d_{};
  int rank_ = 0;
};

// A shape seen as [outer, size, inner] around dim: the layout every op along one dim uses
// (element (o, j, i) is at (o * size + j) * inner + i). A rank-0 shape is [1, 1, 1].
struct DimSplit {
  std::int64_t outer = 1, size = 1, inner = 1;
};
DimSplit split_at(const Shape& s, int dim);

// Row-major strides in elements.
std::array<std::int64_t, kMaxRank> contiguous_strides(const Shape& s);
// The multi-index of a flat row-major position (numpy.unravel_index): [1, 2] for 5 in [2, 3].
std::vector<std::int64_t> unravel_index(const Shape& s, std::int64_t flat);

}  // namespace tapegrad

template <>
struct fmt::formatter<tapegrad::Shape> : fmt::formatter<std::string> {
  auto format(const tapegrad::Shape& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
