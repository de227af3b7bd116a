// SPDX-License-Identifier: MIT
#pragma once
// Elementwise kernels: plain functions on values (no validation, no recording). The ops in
// ops/elementwise.cpp validate, call these, and record; tests/ops/kernels/test_elementwise.cpp
// tests them directly. Internal: public headers must not include this file.
//
// Binary kernels broadcast NumPy-style: `shape` is the broadcast shape the op already validated,
// a and b have one floating dtype, and the result has that dtype.
#include <array>
#include <cstdint>

#include "autodiff/tensor.hpp"

namespace tapegrad::kernels {

// ---- broadcasting machinery (also used by the comparisons in ops/elementwise.cpp) ----
using Idx4 = std::array<std::int64_t, kMaxRank>;

// Sizes of `s` right-aligned in 4 dims, leading dims 1.
inline Idx4 padded_sizes(const Shape& s) {
  Idx4 p{1, 1, 1, 1};
  for (int i = 0; i < s.rank(); ++i) p[static_cast<std::size_t>(kMaxRank - s.rank() + i)] = s[i];
  return p;
}

// Strides of `in` seen through a broadcast (right-aligned, 0 where `in` has size 1).
inline Idx4 broadcast_strides(const Shape& in) {
  Idx4 st{0, 0, 0, 0};
  const auto cs = contiguous_strides(in);
  const int off = kMaxRank - in.rank();
  for (int i = 0; i < in.rank(); ++i)
    st[static_cast<std::size_t>(off + i)] = in[i] == 1 ? 0 : cs[static_cast<std::size_t>(i)];
  return st;
}

// Calls f(i, ia, ib) for every flat output index i with the matching flat input offsets.
template <class F>
void for_each_broadcast(const Shape& out, const Shape& a, const Shape& b, F&& f) {
  const Idx4 n = padded_sizes(out);
  const Idx4 sa = broadcast_strides(a);
  const Idx4 sb = broadcast_strides(b);
  std::int64_t i = 0;
  for (std::int64_t i0 = 0; i0 < n[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < n[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < n[2]; ++i2) {
        const std::int64_t oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        const std::int64_t ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        for (std::int64_t i3 = 0; i3 < n[3]; ++i3) f(i++, oa + i3 * sa[3], ob + i3 * sb[3]);
      }
}

// Whether `inner` (leading size-1 dims ignored) is the trailing part of `outer`: then outer is
// [outer.numel() / inner.numel(), inner.numel()] rows that each line up with inner (a bias).
inline bool is_trailing(const Shape& inner, const Shape& outer) {
  int k = 0;
  while (k < inner.rank() && inner[k] == 1) ++k;
  const int r = inner.rank() - k;
  if (r > outer.rank()) return false;
  for (int d = 0; d < r; ++d)
    if (inner[k + d] != outer[outer.rank() - r + d]) return false;
  return true;
}

// out = f(a, b) elementwise with broadcasting; A, B input element types, O output type. The common
// layouts (same shapes, a scalar, a trailing bias) get their own loops, which the compiler vectorises.
template <class A, class B, class O, class F>
void binary_map(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const A* pa = a.data<A>();
  const B* pb = b.data<B>();
  O* po = out.mutable_data<O>();
  const std::int64_t n = out.numel();
  if (a.shape() == out.shape() && b.shape() == out.shape()) {
    for (std::int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
  } else if (a.shape() == out.shape() && b.numel() == 1) {
    const B vb = pb[0];
    for (std::int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
  } else if (b.shape() == out.shape() && a.numel() == 1) {
    const A va = pa[0];
    for (std::int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
  } else if (a.shape() == out.shape() && is_trailing(b.shape(), out.shape())) {  // x + bias
    const std::int64_t c = b.numel();
    for (std::int64_t r = 0; r < n; r += c)
      for (std::int64_t j = 0; j < c; ++j) po[r + j] = f(pa[r + j], pb[j]);
  } else if (b.shape() == out.shape() && is_trailing(a.shape(), out.shape())) {
    const std::int64_t c = a.numel();
    for (std::int64_t r = 0; r < n; r += c)
      for (std::int64_t j = 0; j < c; ++j) po[r + j] = f(pa[j], pb[r + j]);
  } else {
    for_each_broadcast(out.shape(), a.shape(), b.shape(),
                       [&](std::int64_t i, std::int64_t ia, std::int64_t ib) { po[i] = f(pa[ia], pb[ib]); });
  }
}

// ---- broadcasting ----
// x (any dtype) repeated to `shape` (x's shape broadcasts to it).
Tensor broadcast_to_forward(const Tensor& x, const Shape& shape);
// x (floating) summed over the dims where `shape` (which broadcasts to x's shape) has size 1 or is
// missing; an empty x gives zeros.
Tensor sum_to_size_forward(const Tensor& x, const Shape& shape);

// ---- binary (float32/float64, broadcast to `shape`) ----
Tensor add_forward(const Tensor& a, const Tensor& b, const Shape& shape);
Tensor sub_forward(const Tensor& a, const Tensor& b, const Shape& shape);
Tensor mul_forward(const Tensor& a, const Tensor& b, const Shape& shape);
Tensor div_forward(const Tensor& a, const Tensor& b, const Shape& shape);
Tensor pow_forward(const Tensor& a, const Tensor& b, const Shape& shape);
// NaN in either input gives NaN (std::max would drop it); otherwise the larger / smaller.
Tensor maximum_forward(const Tensor& a, const Tensor& b, const Shape& shape);
Tensor minimum_forward(const Tensor& a, const Tensor& b, const Shape& shape);
// cond (bool) ? a : b, all three broadcast to `shape`.
Tensor where_forward(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& shape);

// ---- unary (float32/float64, same shape) ----
// e^x, with results below the smallest normal number flushed to 0 so that exp(-inf) is exactly 0.
Tensor exp_forward(const Tensor& x);
Tensor erf_forward(const Tensor& x);
// y = max(x, 0) (NaN stays NaN).
Tensor relu_forward(const Tensor& x);
// dx = g [y > 0], y the output of relu (y > 0 exactly where x > 0; the gradient at 0 is 0).
Tensor relu_backward(const Tensor& y, const Tensor& g);
// y = x Phi(x) = x/2 (1 + erf(x / sqrt 2)).
Tensor gelu_forward(const Tensor& x);
// dx = g (Phi(x) + x phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi).
Tensor gelu_backward(const Tensor& x, const Tensor& g);
// y = x where beta x > threshold, else (max(beta x, 0) + log1p(exp(-|beta x|))) / beta.
Tensor softplus_forward(const Tensor& x, double beta, double threshold);
// y = x for x > 0, negative_slope x otherwise.
Tensor leaky_relu_forward(const Tensor& x, double negative_slope);
// y = min(max(x, lo), hi).
Tensor clamp_forward(const Tensor& x, double lo, double hi);

}  // namespace tapegrad::kernels
