// SPDX-License-Identifier: MIT
#include "ops/kernels/softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include <Eigen/Core>

#include "autodiff/error.hpp"
#include "ops/kernels/common.hpp"
#include "ops/kernels/simd.hpp"

namespace tapegrad::kernels {

namespace {

// A row along dim as an Eigen map with stride S. Contiguous rows (dim is the last: inner == 1) get a
// compile-time unit stride, which is what lets Eigen vectorise exp, max and sum; with a runtime
// stride every exp is a scalar call to expf (most of the time of these ops). Strided serves rows
// along an inner dim.
template <class T, class S>
using Row = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>, 0, S>;
template <class T, class S>
using MutRow = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>, 0, S>;
using Contiguous = Eigen::InnerStride<1>;
using Strided = Eigen::InnerStride<>;

// Calls f.template operator()<T, S>() for the dtype and the layout of the rows along d.
template <class F>
void dispatch_rows(DType dtype, const Shape& shape, int d, F&& f) {
  const bool contiguous = split_at(shape, d).inner == 1;
  dispatch_float(dtype, [&]<class T>() {
    if (contiguous)
      f.template operator()<T, Contiguous>();
    else
      f.template operator()<T, Strided>();
  });
}

constexpr double kInf = std::numeric_limits<double>::infinity();

[[noreturn]] void throw_bad_logit(const char* op, const Tensor& x, int d, std::int64_t row, double v) {
  throw InvalidArgument(fmt::format("{}: x (shape {}) has {} in row {} along dim {}; expected finite logits, or -inf "
                                    "for masked entries",
                                    op, x.shape(), std::isnan(v) ? "NaN" : "+inf", row, d));
}

enum class Kind { Softmax, LogSoftmax, LogSumExp };

// float32 rows along the last dim run on the SIMD kernels of ops/kernels/simd.hpp (AVX2 / AVX-512 chosen
// at run time); float64 and strided rows on Eigen below. Both compute the same formulas.
template <class T, class S>
constexpr bool kSimd = std::is_same_v<T, float> && std::is_same_v<S, Contiguous>;

// What made row `row` (of K contiguous values) invalid, for the error: NaN first, as a
// NaN-propagating max would report it.
template <class T>
double bad_value(const T* row, std::int64_t K) {
  for (std::int64_t k = 0; k < K; ++k)
    if (std::isnan(row[k])) return static_cast<double>(row[k]);
  return kInf;
}

// Eigen's vectorised exp clamps its argument, so exp(-inf) comes out as 3e-39 (float) or 6e-309
// (double) instead of 0. kernels::flush_subnormal fixes that with a scalar select over the whole
// row (Eigen 3.4 does not vectorise select); here one vectorised min of the exp's argument says
// whether the row has anything below log(smallest normal), and only such rows are flushed.
template <class T>
const T kExpLow = std::log(std::numeric_limits<T>::min());

// Forward for every row of x seen as [outer, K, inner]. Softmax and LogSoftmax write K values
// per row into out; LogSumExp writes one.
//
// `saved` (log_softmax when recorded) receives e = exp(x - max) for every entry, followed by 1 / sum e
// for every row (0 for fully masked rows): the backward's softmax is e * (1 / sum e), so neither
// pass needs another exp, and the forward no normalising pass.
template <class T, class S>
void forward_rows(const char* op, const Tensor& x, int d, Kind kind, Tensor& out, T* saved = nullptr) {
  const DimSplit sp = split_at(x.shape(), d);
  const T* px = x.data<T>();
  T* po = out.mutable_data<T>();
  if constexpr (kSimd<T, S>) {  // inner == 1: row r is x[r * K, (r + 1) * K)
    const simd::Kernels& k = simd::kernels();
    const std::int64_t rows = sp.outer, K = sp.size;
    std::int64_t bad = -1;
    switch (kind) {
      case Kind::Softmax: bad = k.softmax_forward(px, po, rows, K); break;
      case Kind::LogSoftmax:
        bad = k.log_softmax_forward(px, po, saved, saved ? saved + rows * K : nullptr, rows, K);
        break;
      case Kind::LogSumExp: bad = k.logsumexp_forward(px, po, rows, K); break;
    }
    if (bad >= 0) throw_bad_logit(op, x, d, bad, bad_value(px + bad * K, K));
    return;
  }
  T* inv_s = saved ? saved + x.numel() : nullptr;
  const auto K = static_cast<Eigen::Index>(sp.size);
  const auto stride = static_cast<Eigen::Index>(sp.inner);
  for (std::int64_t o = 0; o < sp.outer; ++o)
    for (std::int64_t i = 0; i < sp.inner; ++i) {
      const std::int64_t base = o * sp.size * sp.inner + i;
      Row<T, S> xr(px + base, K, S(stride));
      const T m = xr.template maxCoeff<Eigen::PropagateNaN>();
      if (!(m < std::numeric_limits<T>::infinity())) throw_bad_logit(op, x, d, o * sp.inner + i, static_cast<double>(m));
      const bool masked = m == -std::numeric_limits<T>::infinity();  // every entry -inf
      if (kind == Kind::LogSumExp) {
        po[o * sp.inner + i] = masked ? m : m + std::log((xr - m).exp().sum());
        continue;
      }
      MutRow<T, S> yr(po + base, K, S(stride));
      if (masked) {
        yr.setConstant(kind == Kind::Softmax ? T(0) : m);
        if (saved) {
          MutRow<T, S>(saved + base, K, S(stride)).setZero();
          inv_s[o * sp.inner + i] = T(0);
        }
      } else if (saved) {  // log_softmax, saving exp(x - max) for the fused backward: one exp per entry
        MutRow<T, S> er(saved + base, K, S(stride));
        er = (xr - m).exp();
        if (xr.minCoeff() - m < kExpLow<T>) kernels::flush_subnormal(er);
        const T s = er.sum();
        yr = (xr - m) - std::log(s);
        inv_s[o * sp.inner + i] = T(1) / s;
      } else if (kind == Kind::Softmax) {
        yr = (xr - m).exp();
        if (xr.minCoeff() - m < kExpLow<T>) kernels::flush_subnormal(yr);  // -inf entries: exactly 0
        yr *= T(1) / yr.sum();
      } else {
        // (x - m) - log sum: subtracting m first keeps log sum when |m| dwarfs it (m = 1e30)
        yr = (xr - m) - std::log((xr - m).exp().sum());
      }
    }
}

// Calls f(base, row, K, stride) for every row along d: base is the flat offset of the row's first
// element, row its number in the row-major order of the other dims (the index of a reduced value).
template <class S, class F>
void for_each_row(const Shape& shape, int d, F&& f) {
  const DimSplit sp = split_at(shape, d);
  const auto K = static_cast<Eigen::Index>(sp.size);
  const S st(static_cast<Eigen::Index>(sp.inner));
  for (std::int64_t o = 0; o < sp.outer; ++o)
    for (std::int64_t i = 0; i < sp.inner; ++i) f(o * sp.size * sp.inner + i, o * sp.inner + i, K, st);
}

template <class T, class S>
void softmax_backward_rows(const Tensor& y, const Tensor& g, int d, Tensor& dx) {
  // dx = y * (g - <g, y>)
  if constexpr (kSimd<T, S>) {
    const DimSplit sp = split_at(y.shape(), d);
    simd::kernels().softmax_backward(y.data<T>(), g.data<T>(), dx.mutable_data<T>(), sp.outer, sp.size);
    return;
  }
  for_each_row<S>(y.shape(), d, [&](std::int64_t base, std::int64_t, Eigen::Index K, const S& st) {
    Row<T, S> yr(y.data<T>() + base, K, st), gr(g.data<T>() + base, K, st);
    MutRow<T, S> dr(dx.mutable_data<T>() + base, K, st);
    const T dot = (gr * yr).sum();
    dr = yr * (gr - dot);
  });
}

// dx = g - softmax(x) * sum(g), softmax(x) = e * inv_s from what the forward saved (see
// forward_rows); fully masked rows (inv_s = 0) get 0
template <class T, class S>
void log_softmax_backward_saved_rows(const Tensor& saved, const Tensor& g, int d, Tensor& dx) {
  const T* e = saved.data<T>();
  const T* inv_s = e + dx.numel();
  if constexpr (kSimd<T, S>) {
    const DimSplit sp = split_at(dx.shape(), d);
    simd::kernels().log_softmax_backward(e, inv_s, g.data<T>(), dx.mutable_data<T>(), sp.outer, sp.size);
    return;
  }
  for_each_row<S>(dx.shape(), d, [&](std::int64_t base, std::int64_t row, Eigen::Index K, const S& st) {
    Row<T, S> er(e + base, K, st), gr(g.data<T>() + base, K, st);
    MutRow<T, S> dr(dx.mutable_data<T>() + base, K, st);
    if (inv_s[row] == T(0))
      dr.setZero();
    else
      dr = gr - er * (inv_s[row] * gr.sum());
  });
}

template <class T, class S>
void logsumexp_backward_rows(const Tensor& x, const Tensor& lse, const Tensor& g, int d, Tensor& dx) {
  // dx = g * softmax(x), as exp(x - m) / sum exp(x - m): exp(x - lse) would lose the answer when
  // |lse| dwarfs log K (x = [1e30, 1e30] gives lse = 1e30 exactly). Fully masked rows get 0.
  if constexpr (kSimd<T, S>) {
    const DimSplit sp = split_at(x.shape(), d);
    simd::kernels().logsumexp_backward(x.data<T>(), lse.data<T>(), g.data<T>(), dx.mutable_data<T>(), sp.outer,
                                       sp.size);
    return;
  }
  for_each_row<S>(x.shape(), d, [&](std::int64_t base, std::int64_t row, Eigen::Index K, const S& st) {
    Row<T, S> xr(x.data<T>() + base, K, st);
    MutRow<T, S> dr(dx.mutable_data<T>() + base, K, st);
    if (lse.data<T>()[row] == -std::numeric_limits<T>::infinity()) {
      dr.setZero();
    } else {
      const T m = xr.maxCoeff();
      dr = (xr - m).exp();
      if (xr.minCoeff() - m < kExpLow<T>) kernels::flush_subnormal(dr);
      dr *= g.data<T>()[row] / dr.sum();
    }
  });
}

}  // namespace

Tensor softmax_forward(const char* op, const Tensor& x, int d) {
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() { forward_rows<T, S>(op, x, d, Kind::Softmax, y); });
  return y;
}

Tensor log_softmax_forward(const char* op, const Tensor& x, int d, Tensor* saved) {
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  if (saved) {
    const std::int64_t rows = x.numel() / std::max<std::int64_t>(x.dim() > 0 ? x.size(d) : 1, 1);
    *saved = Tensor::empty(Shape{x.numel() + rows}, x.dtype());
  }
  dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() {
    forward_rows<T, S>(op, x, d, Kind::LogSoftmax, y, saved ? saved->mutable_data<T>() : nullptr);
  });
  return y;
}

Tensor logsumexp_forward(const char* op, const Tensor& x, int d) {
  Shape kept = x.shape();
  if (kept.rank() > 0) kept[d] = 1;
  Tensor y = Tensor::empty(kept, x.dtype());
  dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() { forward_rows<T, S>(op, x, d, Kind::LogSumExp, y); });
  return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& g, int d) {
  Tensor dx = Tensor::empty(y.shape(), y.dtype());
  dispatch_rows(y.dtype(), y.shape(), d, [&]<class T, class S>() { softmax_backward_rows<T, S>(y, g, d, dx); });
  return dx;
}

Tensor log_softmax_backward(const Tensor& saved, const Tensor& g, int d) {
  Tensor dx = Tensor::empty(g.shape(), g.dtype());
  dispatch_rows(g.dtype(), g.shape(), d, [&]<class T, class S>() { log_softmax_backward_saved_rows<T, S>(saved, g, d, dx); });
  return dx;
}

Tensor logsumexp_backward(const Tensor& x, const Tensor& lse, const Tensor& g, int d) {
  // g and lse hold one value per row in the same order whether or not dim was kept.
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() { logsumexp_backward_rows<T, S>(x, lse, g, d, dx); });
  return dx;
}

}  // namespace tapegrad::kernels
