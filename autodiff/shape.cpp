// SPDX-License-Identifier: MIT
#include "autodiff/shape.hpp"

#include "autodiff/error.hpp"
#include "autodiff/site.hpp"

#include <fmt/ranges.h>

namespace tapegrad {

namespace {
template <class Sizes>
[[noreturn]] void bad_sizes(const Sizes& sizes, const SourceLocation& site, const char* why) {
  // The user's line, when the list was written outside tapegrad (a default SourceLocation has none).
  const std::optional<SiteScope> scope = site.line() ? std::optional<SiteScope>(std::in_place, site) : std::nullopt;
  throw InvalidArgument(fmt::format("Shape {{{}}}: {}", fmt::join(sizes, ", "), why));
}
template <class Sizes>
void check_sizes(const Sizes& sizes, const SourceLocation& site) {
  if (sizes.size() > static_cast<std::size_t>(kMaxRank))
    bad_sizes(sizes, site,
              fmt::format("{} dims, but tapegrad tensors have rank 0 to {} (reshape to fewer dims)", sizes.size(), kMaxRank)
                  .c_str());
  for (auto s : sizes)
    if (s < 0) bad_sizes(sizes, site, fmt::format("size {} is negative (expected sizes >= 0)", s).c_str());
}
[[noreturn]] void too_many_dims(std::size_t n) {
  throw InvalidArgument(fmt::format(
      "Shape: {} dims requested, but tapegrad tensors have rank 0 to {} (reshape to fewer dims)", n,
      kMaxRank));
}
void check_size(std::int64_t s) {
  if (s < 0) throw InvalidArgument(fmt::format("Shape: size {} is negative (expected sizes >= 0)", s));
}
}  // namespace

Shape::Shape(std::initializer_list<std::int64_t> sizes, SourceLocation site) {
  check_sizes(sizes, site);
  for (auto s : sizes) d_[static_cast<std::size_t>(rank_++)] = s;
}

Shape::Shape(const std::vector<std::int64_t>& sizes) {
  check_sizes(sizes, SourceLocation());
  for (auto s : sizes) d_[static_cast<std::size_t>(rank_++)] = s;
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (int i = 0; i < rank_; ++i)
    if (__builtin_mul_overflow(n, d_[static_cast<std::size_t>(i)], &n)) [[unlikely]]
      throw InvalidArgument(fmt::format("tensor: shape {} has more elements than an int64 can count (overflow); "
                                        "expected a product of sizes below 2^63", str()));
  return n;
}

void Shape::push_back(std::int64_t s) {
  if (rank_ >= kMaxRank) too_many_dims(static_cast<std::size_t>(rank_) + 1);
  check_size(s);
  d_[static_cast<std::size_t>(rank_++)] = s;
}

void Shape::insert(int pos, std::int64_t s) {
  if (rank_ >= kMaxRank) too_many_dims(static_cast<std::size_t>(rank_) + 1);
  check_size(s);
  for (int i = rank_; i > pos; --i) d_[static_cast<std::size_t>(i)] = d_[static_cast<std::size_t>(i - 1)];
  d_[static_cast<std::size_t>(pos)] = s;
  ++rank_;
}

void Shape::erase(int pos) {
  for (int i = pos; i + 1 < rank_; ++i) d_[static_cast<std::size_t>(i)] = d_[static_cast<std::size_t>(i + 1)];
  --rank_;
  d_[static_cast<std::size_t>(rank_)] = 0;
}

std::string Shape::str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ", ")); }

DimSplit split_at(const Shape& s, int dim) {
  DimSplit r;
  if (s.rank() == 0) return r;
  for (int i = 0; i < dim; ++i) r.outer *= s[i];
  r.size = s[dim];
  for (int i = dim + 1; i < s.rank(); ++i) r.inner *= s[i];
  return r;
}

std::array<std::int64_t, kMaxRank> contiguous_strides(const Shape& s) {
  std::array<std::int64_t, kMaxRank> st{};
  std::int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[static_cast<std::size_t>(i)] = acc;
    acc *= s[i];
  }
  return st;
}

std::vector<std::int64_t> unravel_index(const Shape& s, std::int64_t flat) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(s.rank()), 0);
  for (int d = s.rank() - 1; d >= 0; --d) {
    const std::int64_t n = s[d];
    idx[static_cast<std::size_t>(d)] = n > 0 ? flat % n : 0;
    flat = n > 0 ? flat / n : 0;
  }
  return idx;
}

}  // namespace tapegrad
