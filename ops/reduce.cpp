// SPDX-License-Identifier: MIT
#include "ops/reduce.hpp"

#include "autodiff/detail/node.hpp"
#include "autodiff/site.hpp"

#include <cmath>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/kernels/reduce.hpp"
#include "ops/shape.hpp"

namespace tapegrad {

namespace {

using kernels::reduced_shape;

// g of the reduced shape, back to x's rank with size 1 at dim (ready to broadcast against x).
Tensor unreduce(const Tensor& g, const Shape& x_shape, int dim, bool keepdim) {
  if (keepdim || x_shape.rank() == 0) return g;
  return unsqueeze(g, dim);
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
  Tensor out = kernels::extreme_forward(x, Max);
  record(OpDef{op, "dx = g ⊙ [x = y] / #{i : xᵢ = y}  (ties share g evenly; if y is NaN, the NaNs do)"},
         {x}, out, {x, out}, [](const Tensor& g, const Saved& s) {
           const Tensor& x = s[0];
           const Tensor& y = s[1];
           const Tensor mask = std::isnan(y.item()) ? isnan(x) : eq(x, y.detach());
           const double count = sum(mask).item();
           return Grads{where(mask, g / count, 0.0)};
         });
  return out;
}

// max/min along dim (values).
//   forward   y[o, i] = max_j x[o, j, i];  k[o, i] = the first j reaching it (argmax)
//   vjp       dx = where(j == k, g, 0): all of g[o, i] goes to x[o, k, i]
//   saved     k (int64, keepdim shape); x is not kept
template <bool Max>
Tensor extreme_dim(const Tensor& x, int dim, bool keepdim) {
  const char* op = extreme_name(Max);
  const int d = check_dim(op, "x", x, dim);
  check_reduced_not_empty(op, x, d, "the extreme of no elements is undefined (expected a non-empty dim)");
  kernels::Extremes r = kernels::extreme_forward(x, d, keepdim, Max);
  record(OpDef{op, "dx = g at k = argmax (argmin) along dim, 0 elsewhere: where(j = k, g, 0)"}, {x}, r.values,
         {r.indices}, [d, keepdim](const Tensor& g, const Saved& s) {
           const Shape& xs = s.shape(0);
           if (xs.rank() == 0) return Grads{g};
           // positions 0..size-1 laid along dim, compared with k: a one-hot mask of x's shape
           Shape ps;
           for (int i = 0; i < xs.rank(); ++i) ps.push_back(i == d ? xs[d] : 1);
           const Tensor positions = arange(static_cast<double>(xs[d]), kInt64).alias(ps);
           const Tensor mask = eq(positions, s[0]);
           return Grads{where(mask, unreduce(g, xs, d, keepdim), 0.0)};
         });
  return r.values;
}

template <bool Max>
Tensor arg_extreme(const Tensor& x, int dim, bool keepdim) {
  const char* op = Max ? "argmax" : "argmin";
  const int d = check_dim(op, "x", x, dim);
  check_reduced_not_empty(op, x, d, "there is no index of the extreme of no elements (expected a non-empty dim)");
  return kernels::extreme_forward(x, d, keepdim, Max, /*want_values=*/false).indices.alias(reduced_shape(x.shape(), d, keepdim));
}

}  // namespace

// sum over all elements.   forward y = sum_i x_i (0 for an empty x)   vjp dx = broadcast_to(g, x.shape)
// int64 and bool inputs give an int64 sum (counting masks), without gradient.   saved: nothing
Tensor sum(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("sum", "x", x);
  Tensor out = kernels::sum_forward(x);
  if (!is_floating(x.dtype())) return out;
  record(OpDef{"sum", "dx = broadcast(g)"}, {x}, out, {},
         [](const Tensor& g, const Saved& s) { return Grads{broadcast_to(g, s.shape(0))}; });
  return out;
}

// sum along dim.   forward y[o, i] = sum_j x[o, j, i]   vjp dx = broadcast_to(g with dim restored, x.shape)
// saved: nothing
Tensor sum(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_dim("sum", "x", x, dim);
  Tensor out = kernels::sum_forward(x, d, keepdim);
  if (!is_floating(x.dtype())) return out;
  record(OpDef{"sum", "dx = broadcast(g) along dim"}, {x}, out, {}, [d, keepdim](const Tensor& g, const Saved& s) {
    return Grads{broadcast_to(unreduce(g, s.shape(0), d, keepdim), s.shape(0))};
  });
  return out;
}

// mean over all elements.   forward y = sum_i x_i / n   vjp dx = broadcast_to(g / n, x.shape)
// An empty x throws (PyTorch returns NaN).   saved: nothing
Tensor mean(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("mean", "x", x);
  if (x.numel() == 0)
    throw InvalidArgument(fmt::format("mean: x is empty (shape {}); the mean of no elements is undefined (PyTorch "
                                      "returns NaN, tapegrad throws; expected at least one element)",
                                      x.shape()));
  Tensor out = kernels::mean_forward(x);
  record(OpDef{"mean", "dx = broadcast(g) / n"}, {x}, out, {}, [](const Tensor& g, const Saved& s) {
    return Grads{broadcast_to(g / static_cast<double>(s.shape(0).numel()), s.shape(0))};
  });
  return out;
}

// mean along dim.   forward y = sum_j x[o, j, i] / size(dim)   vjp dx = broadcast_to(g / size(dim), x.shape)
// A reduced dim of size 0 throws (PyTorch returns NaN there).   saved: nothing
Tensor mean(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("mean", "x", x);
  const int d = check_dim("mean", "x", x, dim);
  check_reduced_not_empty("mean", x, d,
                          "the mean of no elements is undefined (PyTorch returns NaN, tapegrad throws; expected a "
                          "non-empty dim)");
  Tensor out = kernels::mean_forward(x, d, keepdim);
  record(OpDef{"mean", "dx = broadcast(g) / n along dim (n = x.size(dim))"}, {x}, out, {},
         [d, keepdim](const Tensor& g, const Saved& s) {
           const Shape& xs = s.shape(0);
           const auto n = static_cast<double>(xs.rank() == 0 ? 1 : xs[d]);
           return Grads{broadcast_to(unreduce(g, xs, d, keepdim) / n, xs)};
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
