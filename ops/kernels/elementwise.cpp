// SPDX-License-Identifier: MIT
#include "ops/kernels/elementwise.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>

#include <Eigen/Core>

#include "ops/kernels/common.hpp"
#include "autodiff/eigen.hpp"

namespace tapegrad::kernels {

namespace {

template <class F>
Tensor binary_float(const Tensor& a, const Tensor& b, const Shape& shape, F f) {
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_float(a.dtype(), [&]<class T>() { binary_map<T, T, T>(a, b, out, f); });
  return out;
}

// y = f(x) elementwise, f an Eigen array expression.
template <class F>
Tensor unary_float(const Tensor& x, F f) {
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() { out.mutable_array<T>() = f(x.array<T>()); });
  return out;
}

}  // namespace

// ---- broadcasting ----

Tensor broadcast_to_forward(const Tensor& x, const Shape& shape) {
  Tensor out = Tensor::empty(shape, x.dtype(), "broadcast_to");
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.mutable_data<T>();
    if (x.numel() == 1) {  // a scalar (sum's and mean's gradient): one fill
      std::fill(po, po + out.numel(), px[0]);
      return;
    }
    // Row by row along the last dim: x's row is copied (stride 1) or its one value repeated (stride 0).
    const Idx4 n = padded_sizes(shape);
    const Idx4 sx = broadcast_strides(x.shape());
    for (std::int64_t i0 = 0; i0 < n[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < n[1]; ++i1)
        for (std::int64_t i2 = 0; i2 < n[2]; ++i2) {
          const T* row = px + i0 * sx[0] + i1 * sx[1] + i2 * sx[2];
          if (sx[3] != 0)
            std::copy(row, row + n[3], po);
          else
            std::fill(po, po + n[3], row[0]);
          po += n[3];
        }
  });
  return out;
}

Tensor sum_to_size_forward(const Tensor& x, const Shape& shape) {
  // An empty x sums to zeros (and the column sums below would divide by a zero count).
  const bool whole = x.numel() > 0 && (shape.numel() == 1 || is_trailing(shape, x.shape()));  // every output written
  Tensor out = whole ? Tensor::empty(shape, x.dtype()) : zeros(shape, x.dtype());
  if (x.numel() > 0) dispatch_float(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.mutable_data<T>();
    if (shape.numel() == 1) {
      po[0] = x.array<T>().sum();
    } else if (is_trailing(shape, x.shape())) {  // column sums of x as [rows, shape.numel()]
      using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      const Eigen::Index c = shape.numel();
      const Eigen::Map<const Mat> m(px, x.numel() / c, c);
      Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(po, c) = m.colwise().sum();
    } else {
      for_each_broadcast(x.shape(), x.shape(), shape, [&](std::int64_t i, std::int64_t, std::int64_t io) { po[io] += px[i]; });
    }
  });
  return out;
}

// ---- binary ----

Tensor add_forward(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_float(a, b, shape, [](auto x, auto y) { return x + y; });
}
Tensor sub_forward(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_float(a, b, shape, [](auto x, auto y) { return x - y; });
}
Tensor mul_forward(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_float(a, b, shape, [](auto x, auto y) { return x * y; });
}
Tensor div_forward(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_float(a, b, shape, [](auto x, auto y) { return x / y; });
}
Tensor pow_forward(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_float(a, b, shape, [](auto x, auto y) { return std::pow(x, y); });
}
// x + y is NaN when either is (x != x: NaN).
Tensor maximum_forward(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_float(a, b, shape, [](auto x, auto y) { return (x != x || y != y) ? x + y : (x > y ? x : y); });
}
Tensor minimum_forward(const Tensor& a, const Tensor& b, const Shape& shape) {
  return binary_float(a, b, shape, [](auto x, auto y) { return (x != x || y != y) ? x + y : (x < y ? x : y); });
}

namespace {
// One output row of where. Along the last dim every (contiguous) operand has stride 1, or 0 where
// it broadcasts (a scalar fill value, a mask of one column): the loop has its three strides fixed
// at compile time (plain indexing, everything in registers).
template <class T, bool C1, bool X1, bool Y1>
void where_row_unit(T* out, std::int64_t n, const bool* c, const T* x, const T* y) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = c[C1 ? i : 0] ? x[X1 ? i : 0] : y[Y1 ? i : 0];
}
template <class T>
void where_row(T* out, std::int64_t n, const bool* c, std::int64_t sc, const T* x, std::int64_t sx, const T* y,
               std::int64_t sy) {
  assert(((sc | sx | sy) & ~std::int64_t{1}) == 0);
  switch ((sc << 2) | (sx << 1) | sy) {
    case 0: return where_row_unit<T, false, false, false>(out, n, c, x, y);
    case 1: return where_row_unit<T, false, false, true>(out, n, c, x, y);
    case 2: return where_row_unit<T, false, true, false>(out, n, c, x, y);
    case 3: return where_row_unit<T, false, true, true>(out, n, c, x, y);
    case 4: return where_row_unit<T, true, false, false>(out, n, c, x, y);
    case 5: return where_row_unit<T, true, false, true>(out, n, c, x, y);
    case 6: return where_row_unit<T, true, true, false>(out, n, c, x, y);
    default: return where_row_unit<T, true, true, true>(out, n, c, x, y);
  }
}
}  // namespace

Tensor where_forward(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_float(a.dtype(), [&]<class T>() {
    const bool* pc = cond.data<bool>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.mutable_data<T>();
    const Idx4 n = padded_sizes(shape);
    const Idx4 sc = broadcast_strides(cond.shape());
    const Idx4 sa = broadcast_strides(a.shape());
    const Idx4 sb = broadcast_strides(b.shape());
    // Row by row along the last dim, each input's row start computed once per row.
    for (std::int64_t i0 = 0; i0 < n[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < n[1]; ++i1)
        for (std::int64_t i2 = 0; i2 < n[2]; ++i2) {
          const bool* c = pc + i0 * sc[0] + i1 * sc[1] + i2 * sc[2];
          const T* x = pa + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
          const T* y = pb + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
          where_row(po, n[3], c, sc[3], x, sa[3], y, sb[3]);
          po += n[3];
        }
  });
  return out;
}

// ---- unary ----

Tensor exp_forward(const Tensor& x) {
  Tensor out = unary_float(x, [](const auto& v) { return v.exp(); });
  dispatch_float(out.dtype(), [&]<class T>() { flush_subnormal(out.mutable_array<T>()); });  // exp(-inf) = 0
  return out;
}

Tensor erf_forward(const Tensor& x) {
  return unary_float(x, [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.unaryExpr([](T a) { return std::erf(a); });
  });
}

Tensor relu_forward(const Tensor& x) {
  return unary_float(x, [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.max(T(0));
  });
}

Tensor relu_backward(const Tensor& y, const Tensor& g) {
  // A plain loop the compiler turns into vector compares and blends (Eigen 3.4's select() is
  // evaluated one scalar at a time, with a branch).
  Tensor dx = Tensor::empty(y.shape(), y.dtype());
  dispatch_float(y.dtype(), [&]<class T>() {
    const T* ys = y.data<T>();
    const T* gs = g.data<T>();
    T* out = dx.mutable_data<T>();
    const std::int64_t n = y.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      const T gi = gs[i];  // loaded unconditionally, so the loop has no branch to vectorise around
      out[i] = ys[i] > T(0) ? gi : T(0);
    }
  });
  return dx;
}

Tensor gelu_forward(const Tensor& x) {
  return unary_float(x, [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.unaryExpr([](T a) { return T(0.5) * a * (T(1) + std::erf(a * T(std::numbers::sqrt2 / 2))); });
  });
}

Tensor gelu_backward(const Tensor& x, const Tensor& g) {
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    const T* pg = g.data<T>();
    T* pd = dx.mutable_data<T>();
    // 1/sqrt 2 and 1/sqrt(2 pi)
    const T inv_sqrt2 = T(std::numbers::sqrt2 / 2), inv_sqrt2pi = T(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const T a = px[i];
      pd[i] = pg[i] * (T(0.5) * (T(1) + std::erf(a * inv_sqrt2)) + a * inv_sqrt2pi * std::exp(T(-0.5) * a * a));
    }
  });
  return dx;
}

Tensor softplus_forward(const Tensor& x, double beta, double threshold) {
  return unary_float(x, [beta, threshold](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.unaryExpr([b = static_cast<T>(beta), th = static_cast<T>(threshold)](T a) {
      const T z = a * b;
      if (z > th) return a;
      return ((z > T(0) ? z : T(0)) + std::log1p(std::exp(-std::abs(z)))) / b;
    });
  });
}

Tensor leaky_relu_forward(const Tensor& x, double negative_slope) {
  return unary_float(x, [negative_slope](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return (v > T(0)).select(v, v * static_cast<T>(negative_slope));
  });
}

Tensor clamp_forward(const Tensor& x, double lo, double hi) {
  return unary_float(x, [lo, hi](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.max(static_cast<T>(lo)).min(static_cast<T>(hi));
  });
}

}  // namespace tapegrad::kernels
