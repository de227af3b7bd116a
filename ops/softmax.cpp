// SPDX-License-Identifier: MIT
#include "ops/softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/kernels.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"

namespace tapegrad {

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

// Validates and returns the normalised dim; K = 0 and NaN/+inf logits are errors.
int check_softmax_input(const char* op, const Tensor& x, int dim) {
  check_floating(op, "x", x);
  const int d = check_dim(op, "x", x, dim);
  if (x.dim() > 0 && x.size(d) == 0)
    throw InvalidArgument(fmt::format("{}: x of shape {} has size 0 along dim {}; expected at least one class", op,
                                      x.shape(), dim));
  return d;
}

[[noreturn]] void throw_bad_logit(const char* op, const Tensor& x, int d, std::int64_t row, double v) {
  throw InvalidArgument(fmt::format("{}: x (shape {}) has {} in row {} along dim {}; expected finite logits, or -inf "
                                    "for masked entries",
                                    op, x.shape(), std::isnan(v) ? "NaN" : "+inf", row, d));
}

enum class Kind { Softmax, LogSoftmax, LogSumExp };

// Eigen's vectorised exp clamps its argument, so exp(-inf) comes out as 3e-39 (float) or 6e-309
// (double) instead of 0. kernels::flush_subnormal fixes that with a scalar select over the whole
// row (Eigen 3.4 does not vectorise select); here one vectorised min of the exp's argument says
// whether the row has anything below log(smallest normal), and only such rows are flushed.
template <class T>
const T kExpLow = std::log(std::numeric_limits<T>::min());

// Forward for every row of x seen as [outer, K, inner]. Softmax and LogSoftmax write K values
// per row into out; LogSumExp writes one.
template <class T, class S>
void forward_rows(const char* op, const Tensor& x, int d, Kind kind, Tensor& out, T* prob = nullptr) {
  const DimSplit sp = split_at(x.shape(), d);
  const T* px = x.data<T>();
  T* po = out.mutable_data<T>();
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
        if (prob) MutRow<T, S>(prob + base, K, S(stride)).setZero();
      } else if (prob) {  // log_softmax, saving softmax for the fused backward: one exp per entry
        MutRow<T, S> pr(prob + base, K, S(stride));
        pr = (xr - m).exp();
        if (xr.minCoeff() - m < kExpLow<T>) kernels::flush_subnormal(pr);
        const T s = pr.sum();
        yr = (xr - m) - std::log(s);
        pr *= T(1) / s;
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
  for_each_row<S>(y.shape(), d, [&](std::int64_t base, std::int64_t, Eigen::Index K, const S& st) {
    Row<T, S> yr(y.data<T>() + base, K, st), gr(g.data<T>() + base, K, st);
    MutRow<T, S> dr(dx.mutable_data<T>() + base, K, st);
    const T dot = (gr * yr).sum();
    dr = yr * (gr - dot);
  });
}

// dx = g - p * sum(g) with p = softmax(x) saved by the forward; fully masked rows (p = 0) get 0
template <class T, class S>
void log_softmax_backward_saved_rows(const Tensor& p, const Tensor& g, int d, Tensor& dx) {
  for_each_row<S>(p.shape(), d, [&](std::int64_t base, std::int64_t, Eigen::Index K, const S& st) {
    Row<T, S> pr(p.data<T>() + base, K, st), gr(g.data<T>() + base, K, st);
    MutRow<T, S> dr(dx.mutable_data<T>() + base, K, st);
    if (pr.maxCoeff() == T(0))
      dr.setZero();
    else
      dr = gr - pr * gr.sum();
  });
}

template <class T, class S>
void logsumexp_backward_rows(const Tensor& x, const Tensor& lse, const Tensor& g, int d, Tensor& dx) {
  // dx = g * softmax(x), as exp(x - m) / sum exp(x - m): exp(x - lse) would lose the answer when
  // |lse| dwarfs log K (x = [1e30, 1e30] gives lse = 1e30 exactly). Fully masked rows get 0.
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

// Bool mask, x's shape with dim kept as 1: true where the whole row is -inf.
Tensor fully_masked_rows(const Tensor& y, int d) { return isinf(max(y, d, /*keepdim=*/true)); }

}  // namespace

Tensor softmax(const Tensor& x, int dim) {
  const int d = check_softmax_input("softmax", x, dim);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() { forward_rows<T, S>("softmax", x, d, Kind::Softmax, y); });
  record("softmax", {x}, y, [d](const Tensor& g, const Tensor& y) {
    if (GradMode::is_enabled())  // create_graph: the formula, recorded
      return Grads{mul(y, sub(g, sum(mul(g, y), d, /*keepdim=*/true)))};
    Tensor dx = Tensor::empty(y.shape(), y.dtype());
    dispatch_rows(y.dtype(), y.shape(), d, [&]<class T, class S>() { softmax_backward_rows<T, S>(y, g, d, dx); });
    return Grads{dx};
  }, /*save_out=*/true);
  return y;
}

Tensor log_softmax(const Tensor& x, int dim) {
  const int d = check_softmax_input("log_softmax", x, dim);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  // When recorded, softmax(x) is saved too: the fused backward then needs no exp (memory: one more
  // tensor of x's size on the tape until backward).
  Tensor p = GradMode::is_enabled() && x.requires_grad() ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
  dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() {
    forward_rows<T, S>("log_softmax", x, d, Kind::LogSoftmax, y, p.defined() ? p.mutable_data<T>() : nullptr);
  });
  record("log_softmax", {x}, y, [d, p](const Tensor& g, const Tensor& y) {
    if (GradMode::is_enabled()) {
      // exp(y) = softmax(x) (0 at -inf entries); fully masked rows get zero gradient
      Tensor dx = sub(g, mul(exp(y), sum(g, d, /*keepdim=*/true)));
      return Grads{where(fully_masked_rows(y.detach(), d), 0.0, dx)};
    }
    Tensor dx = Tensor::empty(y.shape(), y.dtype());
    dispatch_rows(y.dtype(), y.shape(), d, [&]<class T, class S>() { log_softmax_backward_saved_rows<T, S>(p, g, d, dx); });
    return Grads{dx};
  }, /*save_out=*/true);
  return y;
}

Tensor logsumexp(const Tensor& x, int dim, bool keepdim) {
  const int d = check_softmax_input("logsumexp", x, dim);
  Shape kept = x.shape();
  if (kept.rank() > 0) kept[d] = 1;
  Tensor y = Tensor::empty(kept, x.dtype());
  dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() { forward_rows<T, S>("logsumexp", x, d, Kind::LogSumExp, y); });
  if (!keepdim && y.dim() > 0) {
    Shape s = kept;
    s.erase(d);
    y = y.alias(s);
  }
  record("logsumexp", {x}, y, [d, keepdim](const Tensor& g, const Tensor& lse, const InputList& in) {
    const Tensor& x = in[0];
    if (GradMode::is_enabled()) {
      const Tensor gk = keepdim || x.dim() == 0 ? g : unsqueeze(g, d);  // broadcast along dim
      return Grads{mul(gk, softmax(x, d))};
    }
    // g and lse hold one value per row in the same order whether or not dim was kept.
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    dispatch_rows(x.dtype(), x.shape(), d, [&]<class T, class S>() { logsumexp_backward_rows<T, S>(x, lse, g, d, dx); });
    return Grads{dx};
  }, /*save_out=*/true);
  return y;
}

// ---- temperature ----

Tensor temperature_scale(const Tensor& logits, double temperature) {
  check_floating("temperature_scale", "logits", logits);
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw InvalidArgument(fmt::format("temperature_scale: temperature = {}; expected a finite T > 0 (softmax(x / T))",
                                      temperature));
  return div(logits, temperature);
}

Tensor temperature_scale(const Tensor& logits, const Tensor& temperature) {
  check_floating("temperature_scale", "logits", logits);
  check_floating("temperature_scale", "temperature", temperature);
  check_same_dtype("temperature_scale", "logits", logits, "temperature", temperature);
  const auto t = temperature.to_vector();
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!(t[i] > 0) || !std::isfinite(t[i]))
      throw InvalidArgument(fmt::format("temperature_scale: temperature element {} = {}; expected finite T > 0", i, t[i]));
  return div(logits, temperature);
}

namespace {
// softmax(x / T) computed as softmax((x - max) / T), the max along dim detached: the same function
// when T is the same along dim, and the shifted logits are <= 0 with a 0 in every row, so dividing
// by a tiny T cannot overflow to +inf or turn a whole row into -inf (which softmax takes for a
// fully masked row). Fully masked rows stay -inf (their max is replaced by 0); NaN and +inf reach
// softmax unchanged. x is returned as it is when the shift does not apply (T varies along dim or
// adds dims) or when x is invalid, so the errors are the ones softmax and temperature_scale give.
Tensor shift_by_row_max(const Tensor& x, int dim, const Tensor* temperature = nullptr) {
  if (!x.defined() || !is_floating(x.dtype())) return x;
  const int r = std::max(x.dim(), 1);
  if (dim < -r || dim >= r) return x;
  const int d = dim < 0 ? dim + r : dim;
  if (x.dim() > 0 && x.size(d) == 0) return x;
  if (temperature != nullptr && temperature->defined()) {
    if (temperature->dim() > x.dim()) return x;
    const int td = temperature->dim() - (x.dim() - d);  // x's dim d aligned to T's trailing dims
    if (x.dim() > 0 && td >= 0 && temperature->size(td) != 1) return x;
  }
  const Tensor m = max(x.detach(), d, /*keepdim=*/true);
  return sub(x, where(isinf(m), 0.0, m));
}
}  // namespace

Tensor softmax(const Tensor& x, int dim, double temperature) {
  return softmax(temperature_scale(shift_by_row_max(x, dim), temperature), dim);
}
Tensor softmax(const Tensor& x, int dim, const Tensor& temperature) {
  return softmax(temperature_scale(shift_by_row_max(x, dim, &temperature), temperature), dim);
}
Tensor log_softmax(const Tensor& x, int dim, double temperature) {
  return log_softmax(temperature_scale(shift_by_row_max(x, dim), temperature), dim);
}
Tensor log_softmax(const Tensor& x, int dim, const Tensor& temperature) {
  return log_softmax(temperature_scale(shift_by_row_max(x, dim, &temperature), temperature), dim);
}

}  // namespace tapegrad
