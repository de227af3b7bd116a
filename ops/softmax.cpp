// SPDX-License-Identifier: MIT
#include "ops/softmax.hpp"

#include "autodiff/site.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include <fmt/ranges.h>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/kernels.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "ops/simd.hpp"

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

// Validates and returns the normalised dim; NaN/+inf logits are errors.
int check_softmax_input(const char* op, const Tensor& x, int dim) {
  check_floating(op, "x", x);
  return check_dim(op, "x", x, dim);
}

// An empty x (no rows, or K = 0): PyTorch's values, an empty softmax/log_softmax and, for
// logsumexp over K = 0, log(0) = -inf per row. The gradient of x has no elements: zeros of x's shape.
Tensor empty_rows(const char* op, const Tensor& x, const Shape& out_shape, double fill) {
  Tensor y = full(out_shape, fill, x.dtype());
  record(op, {x}, y, [xs = x.shape(), dt = x.dtype()](const Tensor&, const Tensor&) { return Grads{zeros(xs, dt)}; });
  return y;
}

[[noreturn]] void throw_bad_logit(const char* op, const Tensor& x, int d, std::int64_t row, double v) {
  throw InvalidArgument(fmt::format("{}: x (shape {}) has {} in row {} along dim {}; expected finite logits, or -inf "
                                    "for masked entries",
                                    op, x.shape(), std::isnan(v) ? "NaN" : "+inf", row, d));
}

enum class Kind { Softmax, LogSoftmax, LogSumExp };

// float32 rows along the last dim run on the SIMD kernels of ops/simd.hpp (AVX2 / AVX-512 chosen
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

// Bool mask, x's shape with dim kept as 1: true where the whole row is -inf.
Tensor fully_masked_rows(const Tensor& y, int d) { return isinf(max(y, d, /*keepdim=*/true)); }

}  // namespace

Tensor softmax(const Tensor& x, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("softmax", x, dim);
  if (x.numel() == 0) return empty_rows("softmax", x, x.shape(), 0.0);
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

Tensor log_softmax(const Tensor& x, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("log_softmax", x, dim);
  if (x.numel() == 0) return empty_rows("log_softmax", x, x.shape(), 0.0);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  // When recorded, exp(x - max) and 1 / sum per row are saved too (one buffer, see forward_rows):
  // the fused backward then needs no exp (memory: one more tensor of x's size on the tape until
  // backward).
  const std::int64_t rows = x.numel() / std::max<std::int64_t>(x.dim() > 0 ? x.size(d) : 1, 1);
  Tensor p = GradMode::is_enabled() && x.requires_grad() ? Tensor::empty(Shape{x.numel() + rows}, x.dtype()) : Tensor();
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

Tensor logsumexp(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("logsumexp", x, dim);
  Shape kept = x.shape();
  if (kept.rank() > 0) kept[d] = 1;
  if (x.numel() == 0) {
    Shape out = kept;
    if (!keepdim && out.rank() > 0) out.erase(d);
    return empty_rows("logsumexp", x, out, -std::numeric_limits<double>::infinity());
  }
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

namespace {

// Every check of a temperature names the op the user called (softmax, log_softmax or
// temperature_scale) and the logits' argument name there ("x", or "logits").
void check_temperature(const char* op, double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw InvalidArgument(fmt::format("{}: temperature = {}; expected a finite T > 0 (softmax(x / T))", op, temperature));
}

// `grows`: whether T may broadcast x to a larger shape (temperature_scale, an elementwise op);
// softmax and log_softmax take T that broadcasts to x's shape, so that dim means the same thing
// for x and for x / T.
void check_temperature(const char* op, const char* x_name, const Tensor& x, const Tensor& temperature, bool grows) {
  check_floating(op, "temperature", temperature);
  check_same_dtype(op, x_name, x, "temperature", temperature);
  const Shape b = broadcast_shapes(op, x_name, x.shape(), "temperature", temperature.shape());
  if (!grows && b != x.shape())
    throw InvalidArgument(fmt::format("{}: temperature of shape {} would broadcast {} of shape {} to {}; expected a "
                                      "temperature that broadcasts to {}'s shape (e.g. rank 0, or one per row)",
                                      op, temperature.shape(), x_name, x.shape(), b, x_name));
  const auto t = temperature.to_vector();
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!(t[i] > 0) || !std::isfinite(t[i]))
      throw InvalidArgument(fmt::format("{}: temperature{} = {}; expected a finite T > 0 (softmax(x / T)) everywhere",
                                        op,
                                        temperature.dim() == 0
                                            ? std::string()
                                            : fmt::format("[{}]", fmt::join(unravel_index(temperature.shape(),
                                                                                          static_cast<std::int64_t>(i)),
                                                                            ", ")),
                                        t[i]));
}

// The gradient of T through z = x / T for the cotangent g = dL/dz (g has the shape of x / T):
//   dT = -sum(x ⊙ g) / T^2 = -sum(z ⊙ g) / T            (summed to T's shape)
// For softmax(x / T) this is dL/dT = -(1/T^2) sum over the row of x ⊙ dz. dT is computed as -(z ⊙ g) / T, never x / T^2: T^2 underflows to 0 (T = 1e-30 in float32,
// 1e-200 in float64) and x / T^2 then overflows, where z ⊙ g / T is what the answer is made of.
// Two kinds of entries contribute exactly 0 to dT (0 · anything = 0, the 0 log 0 convention):
//   - x = ±inf (a mask): z = x / T = ±inf for every T > 0, a constant, whose derivative in T is 0.
//     (div's rule -g x / T^2 gives -inf · g there: NaN where g = 0, which is what softmax sends
//     back at a masked entry, and ±inf where g ≠ 0, e.g. log_softmax at a masked entry.)
//   - g = 0: nothing flows back, even where z overflowed to -inf for a finite x at a tiny T
//     (softmax's probability there is 0, so its g is 0; the true contribution (x/T^2) e^(x/T) -> 0).
// A finite x whose z overflowed and that still gets g ≠ 0 gives ±inf: the true value, -g x / T^2,
// is beyond the dtype's range there. (log_softmax(x, dim, T) does not send such g to T, see
// log_softmax_by_temperature.)
// The skipped entries of x are zeroed before anything is computed from them (not after), so that
// with create_graph the VJPs of the division and the product never meet 0 · inf either.
Tensor temperature_grad(const Tensor& x, const Tensor& t, const Tensor& g) {
  Tensor skip = logical_or(eq(g.detach(), 0.0), isinf(x.detach()));
  if (skip.shape() != g.shape()) skip = broadcast_to(skip, g.shape());
  const Tensor z = div(where(skip, 0.0, x), t);
  return sum_to_size(neg(div(mul(z, g), t)), t.shape());
}

// z = x / T, recorded as one op (inputs already checked): dx = g / T (summed to x's shape), dT as above.
Tensor scale_by_temperature(const Tensor& x, const Tensor& temperature) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = div(x.detach(), temperature.detach());
  }
  record("temperature_scale", {x, temperature}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    const Tensor& t = in[1];
    Grads r;
    r.resize(2);
    if (x.requires_grad()) r[0] = sum_to_size(div(g, t), x.shape());
    if (t.requires_grad()) r[1] = temperature_grad(x, t, g);
    return r;
  });
  return out;
}

// softmax(x / T) computed as softmax((x - max) / T), the max along dim detached: the same function
// when T is the same along dim, and the shifted logits are <= 0 with a 0 in every row, so dividing
// by a tiny T cannot overflow to +inf or turn a whole row into -inf (which softmax takes for a
// fully masked row). Fully masked rows stay -inf (their max is replaced by 0); NaN and +inf reach
// softmax unchanged (and are reported by it). Since sum_k dz_k = 0 for both softmax and
// log_softmax (dz = dL/d(x / T)), the shift changes neither dx nor dT = -(1/T^2) sum_k x_k dz_k.
// x is returned as it is when T varies along dim (x / T is then not shift invariant).
// x, dim and T are valid (checked by the caller); d is the normalised dim.
Tensor shift_by_row_max(const Tensor& x, int d, const Tensor* temperature = nullptr) {
  if (temperature != nullptr) {
    const int td = temperature->dim() - (x.dim() - d);  // x's dim d aligned to T's trailing dims
    if (x.dim() > 0 && td >= 0 && temperature->size(td) != 1) return x;
  }
  const Tensor m = max(x.detach(), d, /*keepdim=*/true);
  return sub(x, where(isinf(m), 0.0, m));
}

// y = log_softmax(x / T) along d (inputs checked), one recorded op:
//   dz = g - p sum(g)          p = exp(y) = softmax(x / T); 0 on fully masked rows (policy)
//   dx = dz / T                (log_softmax's gradient, divided by T; g at -inf entries, as documented)
//   dT = temperature_grad(x, T, dz0), dz0 = g0 - p sum(g0), g0 = g with 0 where y = -inf
// Outputs that are -inf (masked entries, fully masked rows, x / T overflowing at a tiny T) are -inf
// for every T, so a cotangent there must not reach T. It reaches x as log_softmax's documented
// gradient g (the limit x_j -> -inf), but for T that limit diverges (d(x_j / T)/dT = -x_j / T^2),
// and passing it on through sum(g) would also make dT depend on how the logits were shifted
// (sum_k dz_k = 0 no longer holds over the finite entries). softmax needs none of this: its
// gradient ignores g where p = 0.
// Written with tensor ops, p read from the output: with create_graph every mixed second
// derivative (d dx / dT, d dT / dx) is recorded.
Tensor log_softmax_by_temperature(const Tensor& x, const Tensor& temperature, int d) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = log_softmax(div(x.detach(), temperature.detach()), d);
  }
  record("log_softmax", {x, temperature}, y, [d](const Tensor& g, const Tensor& y, const InputList& in) {
    const Tensor& x = in[0];
    const Tensor& t = in[1];
    const Tensor p = exp(y);
    Grads r;
    r.resize(2);
    if (x.requires_grad()) {
      const Tensor dz = where(fully_masked_rows(y.detach(), d), 0.0, sub(g, mul(p, sum(g, d, /*keepdim=*/true))));
      r[0] = sum_to_size(div(dz, t), x.shape());
    }
    if (t.requires_grad()) {
      const Tensor g0 = where(isinf(y.detach()), 0.0, g);
      r[1] = temperature_grad(x, t, sub(g0, mul(p, sum(g0, d, /*keepdim=*/true))));
    }
    return r;
  }, /*save_out=*/true);
  return y;
}

}  // namespace

Tensor temperature_scale(const Tensor& logits, double temperature, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("temperature_scale", "logits", logits);
  check_temperature("temperature_scale", temperature);
  return div(logits, temperature);
}

Tensor temperature_scale(const Tensor& logits, const Tensor& temperature, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("temperature_scale", "logits", logits);
  check_temperature("temperature_scale", "logits", logits, temperature, /*grows=*/true);
  return scale_by_temperature(logits, temperature);
}

Tensor softmax(const Tensor& x, int dim, double temperature, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("softmax", x, dim);
  check_temperature("softmax", temperature);
  return softmax(div(shift_by_row_max(x, d), temperature), d);
}
Tensor softmax(const Tensor& x, int dim, const Tensor& temperature, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("softmax", x, dim);
  check_temperature("softmax", "x", x, temperature, /*grows=*/false);
  return softmax(scale_by_temperature(shift_by_row_max(x, d, &temperature), temperature), d);
}
Tensor log_softmax(const Tensor& x, int dim, double temperature, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("log_softmax", x, dim);
  check_temperature("log_softmax", temperature);
  return log_softmax(div(shift_by_row_max(x, d), temperature), d);
}
Tensor log_softmax(const Tensor& x, int dim, const Tensor& temperature, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("log_softmax", x, dim);
  check_temperature("log_softmax", "x", x, temperature, /*grows=*/false);
  return log_softmax_by_temperature(shift_by_row_max(x, d, &temperature), temperature, d);
}

}  // namespace tapegrad
