// SPDX-License-Identifier: MIT
#include "ops/kernels/reduce.hpp"
#include "autodiff/eigen.hpp"

#include <cmath>
#include <type_traits>

namespace tapegrad::kernels {

namespace {

// out[o, i] = sum_j x[o, j, i] in the accumulator type A.
template <class In, class A>
void sum_dim_rows(const In* px, A* po, const DimSplit& sp) {
  for (std::int64_t o = 0; o < sp.outer; ++o) {
    A* row = po + o * sp.inner;
    for (std::int64_t i = 0; i < sp.inner; ++i) row[i] = A(0);
    for (std::int64_t j = 0; j < sp.size; ++j) {
      const In* xr = px + (o * sp.size + j) * sp.inner;
      for (std::int64_t i = 0; i < sp.inner; ++i) row[i] += static_cast<A>(xr[i]);
    }
  }
}

// Whether v should replace best as the running max (Max) or min: strictly better, or NaN over a
// number (NaN propagates, as in PyTorch). Keeping the first of equal values gives first-occurrence
// indices.
template <bool Max, class T>
bool better(T v, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(best)) return false;
    if (std::isnan(v)) return true;
  }
  if constexpr (Max)
    return v > best;
  else
    return v < best;
}

template <bool Max>
void extreme_all(const Tensor& x, Tensor& out) {
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T best = px[0];
    for (std::int64_t i = 1; i < x.numel(); ++i)
      if (better<Max>(px[i], best)) best = px[i];
    out.mutable_data<T>()[0] = best;
  });
}

template <bool Max>
void extreme_along(const Tensor& x, const DimSplit& sp, Tensor* values, Tensor& indices) {
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* pv = values ? values->mutable_data<T>() : nullptr;
    std::int64_t* pi = indices.mutable_data<std::int64_t>();
    for (std::int64_t o = 0; o < sp.outer; ++o)
      for (std::int64_t i = 0; i < sp.inner; ++i) {
        const T* p = px + o * sp.size * sp.inner + i;
        T best = p[0];
        std::int64_t at = 0;
        for (std::int64_t j = 1; j < sp.size; ++j)
          if (better<Max>(p[j * sp.inner], best)) {
            best = p[j * sp.inner];
            at = j;
          }
        if (pv) pv[o * sp.inner + i] = best;
        pi[o * sp.inner + i] = at;
      }
  });
}

}  // namespace

Shape reduced_shape(const Shape& s, int dim, bool keepdim) {
  Shape r = s;
  if (s.rank() == 0) return r;
  if (keepdim)
    r[dim] = 1;
  else
    r.erase(dim);
  return r;
}

Tensor sum_forward(const Tensor& x) {
  if (!is_floating(x.dtype())) {
    Tensor out = Tensor::empty(Shape{}, kInt64);
    dispatch_all(x.dtype(), [&]<class T>() {
      const T* px = x.data<T>();
      std::int64_t s = 0;
      for (std::int64_t i = 0; i < x.numel(); ++i) s += static_cast<std::int64_t>(px[i]);
      out.mutable_data<std::int64_t>()[0] = s;
    });
    return out;
  }
  Tensor out = Tensor::empty(Shape{}, x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() { out.mutable_data<T>()[0] = x.numel() > 0 ? x.array<T>().sum() : T(0); });
  return out;
}

Tensor sum_forward(const Tensor& x, int dim, bool keepdim) {
  const DimSplit sp = split_at(x.shape(), dim);
  const Shape os = reduced_shape(x.shape(), dim, keepdim);
  if (!is_floating(x.dtype())) {
    Tensor out = Tensor::empty(os, kInt64);
    dispatch_all(x.dtype(), [&]<class T>() { sum_dim_rows<T, std::int64_t>(x.data<T>(), out.mutable_data<std::int64_t>(), sp); });
    return out;
  }
  Tensor out = Tensor::empty(os, x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() {
    if (sp.inner == 1) {
      // contiguous rows: Eigen's vectorised sums
      const T* px = x.data<T>();
      T* po = out.mutable_data<T>();
      for (std::int64_t o = 0; o < sp.outer; ++o)
        po[o] = sp.size > 0 ? Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(px + o * sp.size, sp.size).sum() : T(0);
    } else {
      sum_dim_rows<T, T>(x.data<T>(), out.mutable_data<T>(), sp);
    }
  });
  return out;
}

Tensor mean_forward(const Tensor& x) {
  Tensor out = Tensor::empty(Shape{}, x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() { out.mutable_data<T>()[0] = x.array<T>().sum() / static_cast<T>(static_cast<double>(x.numel())); });
  return out;
}

Tensor mean_forward(const Tensor& x, int dim, bool keepdim) {
  const DimSplit sp = split_at(x.shape(), dim);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), dim, keepdim), x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() {
    sum_dim_rows<T, T>(x.data<T>(), out.mutable_data<T>(), sp);
    out.mutable_array<T>() /= static_cast<T>(static_cast<double>(sp.size));
  });
  return out;
}

Tensor extreme_forward(const Tensor& x, bool is_max) {
  Tensor out = Tensor::empty(Shape{}, x.dtype());
  if (is_max)
    extreme_all<true>(x, out);
  else
    extreme_all<false>(x, out);
  return out;
}

Extremes extreme_forward(const Tensor& x, int dim, bool keepdim, bool is_max, bool want_values) {
  const DimSplit sp = split_at(x.shape(), dim);
  // Both have the reduced elements in the same order; the indices keep dim for the VJP's mask.
  Extremes r;
  if (want_values) r.values = Tensor::empty(reduced_shape(x.shape(), dim, keepdim), x.dtype());
  r.indices = Tensor::empty(reduced_shape(x.shape(), dim, true), kInt64);
  Tensor* values = want_values ? &r.values : nullptr;
  if (is_max)
    extreme_along<true>(x, sp, values, r.indices);
  else
    extreme_along<false>(x, sp, values, r.indices);
  return r;
}

}  // namespace tapegrad::kernels
