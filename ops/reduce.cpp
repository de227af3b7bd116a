// SPDX-License-Identifier: MIT
#include "ops/reduce.hpp"

#include "autodiff/site.hpp"

#include <cmath>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/shape.hpp"

namespace tapegrad {

namespace {


// The shape after reducing dim: removed, or kept with size 1. Rank 0 stays rank 0.
Shape reduced_shape(const Shape& s, int dim, bool keepdim) {
  Shape r = s;
  if (s.rank() == 0) return r;
  if (keepdim)
    r[dim] = 1;
  else
    r.erase(dim);
  return r;
}

// g of the reduced shape, back to x's rank with size 1 at dim (ready to broadcast against x).
Tensor unreduce(const Tensor& g, const Shape& x_shape, int dim, bool keepdim) {
  if (keepdim || x_shape.rank() == 0) return g;
  return unsqueeze(g, dim);
}

// out[o, i] = sum_j x[o, j, i] in the accumulator type A.
template <class In, class A>
void sum_dim_kernel(const In* px, A* po, const DimSplit& sp) {
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

// Values and first-occurrence indices of the max/min along dim; sp.size > 0.
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

const char* extreme_name(bool is_max) { return is_max ? "max" : "min"; }

void check_reduced_not_empty(const char* op, const Tensor& x, int dim, const char* why) {
  if (x.dim() > 0 && x.shape()[dim] == 0)
    throw InvalidArgument(fmt::format("{}: dim {} of x with shape {} has size 0; {}", op, dim, x.shape(), why));
}

// max/min over all elements.
//   forward   y = max_i x_i (NaN if any x_i is NaN)
//   vjp       dx = g [x = y] / #{i : x_i = y}   (ties share g evenly; if y is NaN, the NaNs do)
//   saved     x and y
template <bool Max>
Tensor extreme_all(const Tensor& x) {
  const char* op = extreme_name(Max);
  check_defined(op, "x", x);
  check_not_empty(op, "x", x);
  Tensor out = Tensor::empty(Shape{}, x.dtype());
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T best = px[0];
    for (std::int64_t i = 1; i < x.numel(); ++i)
      if (better<Max>(px[i], best)) best = px[i];
    out.mutable_data<T>()[0] = best;
  });
  record(op, {x}, out, [x](const Tensor& g, const Tensor& y) {
    const Tensor mask = std::isnan(y.item()) ? isnan(x) : eq(x, y.detach());
    const double count = sum(mask).item();
    return Grads{where(mask, div(g, count), 0.0)};
  }, /*save_out=*/true);
  return out;
}

// max/min along dim (values).
//   forward   y[o, i] = max_j x[o, j, i];  k[o, i] = the first j reaching it (argmax)
//   vjp       dx = where(j == k, g, 0): all of g[o, i] goes to x[o, k, i]
//   saved     k (int64, keepdim shape)
template <bool Max>
Tensor extreme_dim(const Tensor& x, int dim, bool keepdim) {
  const char* op = extreme_name(Max);
  const int d = check_dim(op, "x", x, dim);
  check_reduced_not_empty(op, x, d, "the extreme of no elements is undefined (expected a non-empty dim)");
  const DimSplit sp = split_at(x.shape(), d);
  const Shape keep_shape = reduced_shape(x.shape(), d, true);
  // Both have the reduced elements in the same order; the indices keep dim for the VJP's mask.
  Tensor out = Tensor::empty(reduced_shape(x.shape(), d, keepdim), x.dtype());
  Tensor indices = Tensor::empty(keep_shape, kInt64);
  extreme_along<Max>(x, sp, &out, indices);
  record(op, {x}, out, [indices, d, keepdim, xs = x.shape()](const Tensor& g, const Tensor&) {
    if (xs.rank() == 0) return Grads{g};
    // positions 0..size-1 laid along dim, compared with k: a one-hot mask of x's shape
    std::vector<std::int64_t> ps(static_cast<std::size_t>(xs.rank()), 1);
    ps[static_cast<std::size_t>(d)] = xs[d];
    const Tensor positions = reshape(arange(static_cast<double>(xs[d]), kInt64), ps);
    const Tensor mask = eq(positions, indices);
    return Grads{where(mask, unreduce(g, xs, d, keepdim), 0.0)};
  });
  return out;
}

template <bool Max>
Tensor arg_extreme(const Tensor& x, int dim, bool keepdim) {
  const char* op = Max ? "argmax" : "argmin";
  const int d = check_dim(op, "x", x, dim);
  check_reduced_not_empty(op, x, d, "there is no index of the extreme of no elements (expected a non-empty dim)");
  Tensor indices = Tensor::empty(reduced_shape(x.shape(), d, keepdim), kInt64);
  extreme_along<Max>(x, split_at(x.shape(), d), nullptr, indices);
  return indices;
}

}  // namespace

// sum over all elements.   forward y = sum_i x_i (0 for an empty x)   vjp dx = broadcast_to(g, x.shape)
// int64 and bool inputs give an int64 sum (counting masks), without gradient.
Tensor sum(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("sum", "x", x);
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
  record("sum", {x}, out, [xs = x.shape()](const Tensor& g, const Tensor&) { return Grads{broadcast_to(g, xs)}; });
  return out;
}

// sum along dim.   forward y[o, i] = sum_j x[o, j, i]   vjp dx = broadcast_to(g with dim restored, x.shape)
Tensor sum(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_dim("sum", "x", x, dim);
  const DimSplit sp = split_at(x.shape(), d);
  const Shape os = reduced_shape(x.shape(), d, keepdim);
  if (!is_floating(x.dtype())) {
    Tensor out = Tensor::empty(os, kInt64);
    dispatch_all(x.dtype(), [&]<class T>() { sum_dim_kernel<T, std::int64_t>(x.data<T>(), out.mutable_data<std::int64_t>(), sp); });
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
      sum_dim_kernel<T, T>(x.data<T>(), out.mutable_data<T>(), sp);
    }
  });
  record("sum", {x}, out, [xs = x.shape(), d, keepdim](const Tensor& g, const Tensor&) {
    return Grads{broadcast_to(unreduce(g, xs, d, keepdim), xs)};
  });
  return out;
}

// mean over all elements.   forward y = sum_i x_i / n   vjp dx = broadcast_to(g / n, x.shape)
// An empty x throws (PyTorch returns NaN).
Tensor mean(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("mean", "x", x);
  if (x.numel() == 0)
    throw InvalidArgument(fmt::format("mean: x is empty (shape {}); the mean of no elements is undefined (PyTorch "
                                      "returns NaN, tapegrad throws; expected at least one element)",
                                      x.shape()));
  const auto n = static_cast<double>(x.numel());
  Tensor out = Tensor::empty(Shape{}, x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() { out.mutable_data<T>()[0] = x.array<T>().sum() / static_cast<T>(n); });
  record("mean", {x}, out, [xs = x.shape(), n](const Tensor& g, const Tensor&) { return Grads{broadcast_to(div(g, n), xs)}; });
  return out;
}

// mean along dim.   forward y = sum_j x[o, j, i] / size(dim)   vjp dx = broadcast_to(g / size(dim), x.shape)
// A reduced dim of size 0 throws (PyTorch returns NaN there).
Tensor mean(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("mean", "x", x);
  const int d = check_dim("mean", "x", x, dim);
  check_reduced_not_empty("mean", x, d,
                          "the mean of no elements is undefined (PyTorch returns NaN, tapegrad throws; expected a "
                          "non-empty dim)");
  const DimSplit sp = split_at(x.shape(), d);
  const auto n = static_cast<double>(sp.size);
  Tensor out = Tensor::empty(reduced_shape(x.shape(), d, keepdim), x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() {
    sum_dim_kernel<T, T>(x.data<T>(), out.mutable_data<T>(), sp);
    out.mutable_array<T>() /= static_cast<T>(n);
  });
  record("mean", {x}, out, [xs = x.shape(), d, keepdim, n](const Tensor& g, const Tensor&) {
    return Grads{broadcast_to(div(unreduce(g, xs, d, keepdim), n), xs)};
  });
  return out;
}

Tensor max(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  return extreme_all<true>(x);
}
Tensor min(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  return extreme_all<false>(x);
}
Tensor max(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  return extreme_dim<true>(x, dim, keepdim);
}
Tensor min(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  return extreme_dim<false>(x, dim, keepdim);
}
Tensor argmax(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  return arg_extreme<true>(x, dim, keepdim);
}
Tensor argmin(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  return arg_extreme<false>(x, dim, keepdim);
}

}  // namespace tapegrad
