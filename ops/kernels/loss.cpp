// SPDX-License-Identifier: MIT
#include "ops/kernels/loss.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "autodiff/eigen.hpp"
#include "autodiff/error.hpp"
#include "ops/kernels/simd.hpp"

namespace tapegrad::kernels {

namespace {

// Scale of sample s's gradient: g_s ('none'), g ('sum'), g / norm ('mean').
template <class T>
struct SampleScale {
  const T* g;
  T scalar;
  bool per_sample;
  SampleScale(const Tensor& grad_out, const ClassLossConfig& c) : g(grad_out.data<T>()), scalar(0), per_sample(false) {
    if (c.reduction == Reduction::None) {
      per_sample = true;
    } else {
      scalar = g[0];
      if (c.reduction == Reduction::Mean) scalar = static_cast<T>(scalar / c.norm);
    }
  }
  T operator()(std::int64_t s) const { return per_sample ? g[s] : scalar; }
};

// A row of C values with stride `inner`: a plain contiguous map when inner == 1 (vectorised), a
// strided map otherwise. Kernels are written once over both.
template <class T>
using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T, bool Contig>
using ConstRow = std::conditional_t<Contig, Eigen::Map<const Arr<T>>, Eigen::Map<const Arr<T>, 0, Eigen::InnerStride<>>>;
template <class T, bool Contig>
using MutRow = std::conditional_t<Contig, Eigen::Map<Arr<T>>, Eigen::Map<Arr<T>, 0, Eigen::InnerStride<>>>;

template <class T, bool Contig>
ConstRow<T, Contig> const_row(const T* p, std::int64_t n, std::int64_t stride) {
  if constexpr (Contig)
    return ConstRow<T, Contig>(p, static_cast<Eigen::Index>(n));
  else
    return ConstRow<T, Contig>(p, static_cast<Eigen::Index>(n), Eigen::InnerStride<>(static_cast<Eigen::Index>(stride)));
}
template <class T, bool Contig>
MutRow<T, Contig> mut_row(T* p, std::int64_t n, std::int64_t stride) {
  if constexpr (Contig)
    return MutRow<T, Contig>(p, static_cast<Eigen::Index>(n));
  else
    return MutRow<T, Contig>(p, static_cast<Eigen::Index>(n), Eigen::InnerStride<>(static_cast<Eigen::Index>(stride)));
}

template <class F>
decltype(auto) dispatch_layout(DType d, bool contig, F&& f) {
  return dispatch_float(d, [&]<class T>() {
    if (contig) return f.template operator()<T, true>();
    return f.template operator()<T, false>();
  });
}

// er = exp(xr - m) for a row whose max is m; returns the sum (>= 1, or NaN when the row holds a
// NaN: exp(NaN) = NaN, which is how NaN logits are detected without a NaN-propagating max).
// Eigen 3.4's vectorised exp clamps its argument at about -88 (float) / -709 (double) and returns
// ~3e-39 / ~6e-309 below, even for -inf, but a masked (-inf) or hopeless class must get probability
// exactly 0: max(e, tiny) - tiny, tiny the smallest normal number, is exactly 0 there, leaves every
// value above ~1e-31 (float) / ~1e-292 (double) unchanged, and moves the rest by less than tiny,
// far below the precision of a sum >= 1. It is branch-free and vectorised, and keeps NaN.
template <class T, class Row, class MutableRow>
T exp_shifted_into(const Row& xr, T m, MutableRow& er) {
  constexpr T tiny = std::numeric_limits<T>::min();
  er = (xr - m).exp().max(tiny) - tiny;
  return er.sum();
}

[[noreturn]] void throw_bad_logit(const Tensor& x, int cd, std::int64_t s, double v) {
  Shape samples = x.shape();
  samples.erase(cd);
  const std::string at =
      samples.rank() == 0 ? "[]" : fmt::format("[{}]", fmt::join(unravel_index(samples, s), ", "));
  throw InvalidArgument(fmt::format(
      "cross_entropy: input (shape {}) has {} among the logits of sample {} (along the class dim {}); expected "
      "finite logits, or -inf for masked classes",
      x.shape(), std::isnan(v) ? "NaN" : "+inf", at, cd));
}

// ---- cross_entropy: fused forward ----
// Per sample: m = max x, s = sum exp(x - m), logp = (x - m) - log s (never x - lse: that loses
// log s next to a logit of 1e30). With `e` (when the input requires grad) exp(x - m) is kept for
// the backward together with 1 / s, so backward needs no second exp pass: p = e / s.
// A fully masked sample (every logit -inf) has p = 0 and logp = -inf.
template <class T, bool Contig>
double cross_entropy_rows(const Tensor& x, const Tensor& target, const Tensor& weight, const DimSplit& sp,
                          const ClassLossConfig& c, T* per_sample, T* e, T* inv_s) {
  const std::int64_t C = sp.size, D = sp.inner;
  const T* px = x.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const std::int64_t* pt = c.prob ? nullptr : target.data<std::int64_t>();
  const T* py = c.prob ? target.data<T>() : nullptr;
  const T eps = static_cast<T>(c.eps), keep = static_cast<T>(1.0 - c.eps), spread = static_cast<T>(c.eps / C);
  constexpr T inf = std::numeric_limits<T>::infinity();
  const auto wmap = pw ? Eigen::Map<const Arr<T>>(pw, static_cast<Eigen::Index>(C)) : Eigen::Map<const Arr<T>>(nullptr, 0);
  const bool any_weight = pw ? (wmap != T(0)).any() : true;

  double total = 0;
  // The loss of sample s (row at base) from m = max and sum = sum exp(x - m) (0 when masked).
  auto sample = [&](std::int64_t s, std::int64_t base, T m, T sum) {
    const auto xr = const_row<T, Contig>(px + base, C, D);
    const bool masked = m == -inf;
    const T logs = masked ? T(0) : std::log(sum);
    T l = 0;
    if (c.prob) {
      // l = -sum_c a_c logp_c,  a = w ((1 - eps) y + eps / C); terms with a_c = 0 are 0
      const auto yr = const_row<T, Contig>(py + base, C, D);
      auto loss_of = [&](const auto& a) -> T {
        if (masked) return (a != T(0)).any() ? inf : T(0);
        return -(a != T(0)).select(a * ((xr - m) - logs), T(0)).sum();
      };
      l = pw ? loss_of(wmap * (keep * yr + spread)) : loss_of(keep * yr + spread);
    } else if (pt[s] != c.ignore_index) {
      // l = -(1 - eps) w_t logp_t - (eps / C) sum_c w_c logp_c
      const std::int64_t t = pt[s];
      const T wt = pw ? pw[t] : T(1);
      const T lpt = masked ? -inf : (px[base + t * D] - m) - logs;
      if (keep * wt != T(0)) l = -keep * wt * lpt;
      if (eps > T(0)) {
        T smooth;  // -sum_c w_c logp_c
        if (masked)
          smooth = any_weight ? inf : T(0);
        else if (pw)
          smooth = -(wmap != T(0)).select(wmap * ((xr - m) - logs), T(0)).sum();
        else
          smooth = -((xr - m) - logs).sum();
        l += spread * smooth;
      }
    }
    if (per_sample) per_sample[s] = l;
    total += static_cast<double>(l);
  };

  if constexpr (std::is_same_v<T, float> && Contig) {
    // float32 rows along the last dim (inner == 1): max, exp and sum by the SIMD kernels of
    // ops/kernels/simd.hpp, a chunk of samples at a time (m and s in stack buffers).
    constexpr std::int64_t kChunk = 256;
    float mb[kChunk], sb[kChunk];
    const simd::Kernels& k = simd::kernels();
    for (std::int64_t s0 = 0; s0 < sp.outer; s0 += kChunk) {
      const std::int64_t n = std::min(kChunk, sp.outer - s0);
      const std::int64_t bad = k.exp_rows(px + s0 * C, e ? e + s0 * C : nullptr, mb, sb, n, C);
      if (bad >= 0) {
        const T* row = px + (s0 + bad) * C;
        const bool nan = std::any_of(row, row + C, [](T v) { return std::isnan(v); });
        throw_bad_logit(x, c.cd, s0 + bad, nan ? static_cast<double>(NAN) : static_cast<double>(inf));
      }
      for (std::int64_t j = 0; j < n; ++j) {
        if (inv_s) inv_s[s0 + j] = sb[j] > T(0) ? T(1) / sb[j] : T(0);
        sample(s0 + j, (s0 + j) * C, mb[j], sb[j]);
      }
    }
    return total;
  }

  for (std::int64_t o = 0; o < sp.outer; ++o)
    for (std::int64_t i = 0; i < D; ++i) {
      const std::int64_t s = o * D + i, base = o * C * D + i;
      const auto xr = const_row<T, Contig>(px + base, C, D);
      // NaN logits: a plain (vectorised) max may skip them, but then exp(NaN) makes the sum NaN
      const T m = xr.maxCoeff();
      if (!(m < inf)) throw_bad_logit(x, c.cd, s, static_cast<double>(m));
      T sum = 0;
      if (m == -inf) {  // fully masked
        if (xr.isNaN().any()) throw_bad_logit(x, c.cd, s, static_cast<double>(NAN));
        if (e) mut_row<T, Contig>(e + base, C, D).setZero();
        if (inv_s) inv_s[s] = 0;
      } else {
        if (e) {
          auto er = mut_row<T, Contig>(e + base, C, D);
          sum = exp_shifted_into(xr, m, er);
          inv_s[s] = T(1) / sum;
        } else {
          sum = (xr - m).exp().sum();  // flushing would not change the sum
        }
        if (!(sum >= T(1))) throw_bad_logit(x, c.cd, s, static_cast<double>(NAN));
      }
      sample(s, base, m, sum);
    }
  return total;
}

// ---- cross_entropy: fused backward (create_graph off) ----
//   dx_s = G_s (p_s A_s - a_s),  a_s = the target distribution times the weights (see loss.hpp),
//   A_s = sum_c a_s,c,  G_s = g_s | g | g / norm
// Index targets: a_s = (1 - eps) w_t onehot(t) + (eps / C) w, so dx = (G A / s) e - G (eps / C) w,
// then -G (1 - eps) w_t at the target. O(C) per sample, no Jacobian, no second exp.
// e = exp(x - max) is read, dx written.
template <class T, bool Contig>
void cross_entropy_backward_rows(const Tensor& g, const Tensor& target, const Tensor& weight, const Tensor& e,
                                 const Tensor& inv_s, const ClassLossConfig& c, const DimSplit& sp, Tensor& dx) {
  const std::int64_t C = sp.size, D = sp.inner;
  const SampleScale<T> G(g, c);
  T* pd = dx.mutable_data<T>();
  const T* pe = e.data<T>();
  const T* pinv = inv_s.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const std::int64_t* pt = c.prob ? nullptr : target.data<std::int64_t>();
  const T* py = c.prob ? target.data<T>() : nullptr;
  const T keep = static_cast<T>(1.0 - c.eps), spread = static_cast<T>(c.eps / C);
  const auto wmap = pw ? Eigen::Map<const Arr<T>>(pw, static_cast<Eigen::Index>(C)) : Eigen::Map<const Arr<T>>(nullptr, 0);
  const T sum_w = pw ? wmap.sum() : static_cast<T>(C);

  if constexpr (std::is_same_v<T, float> && Contig) {
    if (!c.prob && (c.eps == 0 || !pw)) {
      // float32 rows along the last dim, index targets: the same formula with the row pass
      // dx = e * scale - shift by the SIMD kernels (scale = G A / s, shift = G eps / C; 0 and 0 for
      // ignored samples), then the target entries here, a chunk of samples at a time. When dx is
      // e's own buffer (backward handed e over: Saved::take) the SIMD pass runs in place; when dx
      // is a fresh buffer, long rows are one Eigen pass e -> dx and short ones, where per-row
      // overhead dominates, copy the chunk (in cache) and run the in-place SIMD pass.
      constexpr std::int64_t kLongRow = 64;
      constexpr std::int64_t kChunk = 256;
      float scale[kChunk], shift[kChunk];
      const simd::Kernels& k = simd::kernels();
      for (std::int64_t s0 = 0; s0 < sp.outer; s0 += kChunk) {
        const std::int64_t n = std::min(kChunk, sp.outer - s0);
        for (std::int64_t j = 0; j < n; ++j) {
          const std::int64_t s = s0 + j, t = pt[s];
          if (t == c.ignore_index) {
            scale[j] = shift[j] = 0.0f;
            continue;
          }
          const T Gs = G(s), wt = pw ? pw[t] : T(1);
          scale[j] = Gs * (keep * wt + spread * sum_w) * pinv[s];
          shift[j] = Gs * spread;
        }
        if (C >= kLongRow && pd != pe) {  // out of place, one pass: dx = e * scale - shift
          for (std::int64_t j = 0; j < n; ++j)
            mut_row<T, true>(pd + (s0 + j) * C, C, 1) = const_row<T, true>(pe + (s0 + j) * C, C, 1) * scale[j] - shift[j];
        } else {  // in place, or short rows: the chunk of e is copied (in cache) and the SIMD pass works in place
          if (pd != pe) std::copy(pe + s0 * C, pe + (s0 + n) * C, pd + s0 * C);
          k.scale_shift_rows(pd + s0 * C, scale, c.eps > 0 ? shift : nullptr, n, C);
        }
        for (std::int64_t s = s0; s < s0 + n; ++s)
          if (const std::int64_t t = pt[s]; t != c.ignore_index) pd[s * C + t] -= G(s) * keep * (pw ? pw[t] : T(1));
      }
      return;
    }
  }

  for (std::int64_t o = 0; o < sp.outer; ++o)
    for (std::int64_t i = 0; i < D; ++i) {
      const std::int64_t s = o * D + i, base = o * C * D + i;
      const auto er = const_row<T, Contig>(pe + base, C, D);
      auto dr = mut_row<T, Contig>(pd + base, C, D);
      const T Gs = G(s);
      if (c.prob) {
        const auto yr = const_row<T, Contig>(py + base, C, D);
        auto apply = [&](const auto& a) {
          const T A = a.sum();
          dr = (Gs * A * pinv[s]) * er - Gs * a;
        };
        if (pw)
          apply(wmap * (keep * yr + spread));
        else
          apply(keep * yr + spread);
        continue;
      }
      const std::int64_t t = pt[s];
      if (t == c.ignore_index) {
        dr.setZero();
        continue;
      }
      const T wt = pw ? pw[t] : T(1);
      const T A = keep * wt + spread * sum_w;
      dr = (Gs * A * pinv[s]) * er;
      if (c.eps > 0) {
        if (pw)
          dr -= (Gs * spread) * wmap;
        else
          dr -= Gs * spread;
      }
      dr(static_cast<Eigen::Index>(t)) -= Gs * keep * wt;
    }
}

// ---- nll_loss kernels ----
//   l_s = -w_t logp[s, t] (0 when ignored or w_t = 0);   dlogp[s, t] = -G_s w_t, 0 elsewhere
template <class T>
double nll_rows(const Tensor& lp, const Tensor& target, const Tensor& weight, const DimSplit& sp,
                const ClassLossConfig& c, T* per_sample) {
  const std::int64_t C = sp.size, D = sp.inner;
  const T* px = lp.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const std::int64_t* pt = target.data<std::int64_t>();
  double total = 0;
  for (std::int64_t o = 0; o < sp.outer; ++o)
    for (std::int64_t i = 0; i < D; ++i) {
      const std::int64_t s = o * D + i;
      T l = 0;
      if (pt[s] != c.ignore_index) {
        const T wt = pw ? pw[pt[s]] : T(1);
        if (wt != T(0)) l = -wt * px[(o * C + pt[s]) * D + i];
      }
      if (per_sample) per_sample[s] = l;
      total += static_cast<double>(l);
    }
  return total;
}

template <class T>
void nll_backward_rows(const Tensor& g, const Tensor& target, const Tensor& weight, const ClassLossConfig& c,
                       const DimSplit& sp, Tensor& dx) {
  const std::int64_t C = sp.size, D = sp.inner;
  const SampleScale<T> G(g, c);
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const std::int64_t* pt = target.data<std::int64_t>();
  T* pd = dx.mutable_data<T>();
  for (std::int64_t o = 0; o < sp.outer; ++o)
    for (std::int64_t i = 0; i < D; ++i) {
      const std::int64_t s = o * D + i;
      if (pt[s] == c.ignore_index) continue;
      pd[(o * C + pt[s]) * D + i] = -G(s) * (pw ? pw[pt[s]] : T(1));
    }
}


// 'sum' and 'mean' from the summed per-sample losses.
template <class T>
void write_reduced(Tensor& out, const ClassLossConfig& c, double total) {
  if (c.reduction == Reduction::Sum)
    out.mutable_data<T>()[0] = static_cast<T>(total);
  else if (c.reduction == Reduction::Mean)
    out.mutable_data<T>()[0] = c.norm == 0 ? T(0) : static_cast<T>(total / c.norm);
}

}  // namespace

void cross_entropy_forward(const Tensor& x, const Tensor& target, const Tensor& weight, const ClassLossConfig& c,
                           Tensor& out, Tensor* e, Tensor* inv_s) {
  const DimSplit sp = split_at(x.shape(), c.cd);
  dispatch_layout(x.dtype(), sp.inner == 1, [&]<class T, bool Contig>() {
    T* per_sample = c.reduction == Reduction::None ? out.mutable_data<T>() : nullptr;
    const double total = cross_entropy_rows<T, Contig>(x, target, weight, sp, c, per_sample,
                                                       e ? e->mutable_data<T>() : nullptr,
                                                       e ? inv_s->mutable_data<T>() : nullptr);
    write_reduced<T>(out, c, total);
  });
}

Tensor cross_entropy_backward(const Tensor& g, const Tensor& e, const Tensor& inv_s, const Tensor& target,
                              const Tensor& weight, const ClassLossConfig& c, bool overwrite_e) {
  if (c.reduction == Reduction::Mean && c.norm == 0) return zeros(e.shape(), e.dtype());  // nothing averaged
  const DimSplit sp = split_at(e.shape(), c.cd);
  // Every row pass reads e[k] before writing dx[k] at the same place, so dx may be e itself.
  Tensor dx = overwrite_e ? e : Tensor::empty(e.shape(), e.dtype());
  dispatch_layout(e.dtype(), sp.inner == 1, [&]<class T, bool Contig>() {
    cross_entropy_backward_rows<T, Contig>(g, target, weight, e, inv_s, c, sp, dx);
  });
  return dx;
}

void nll_loss_forward(const Tensor& log_probs, const Tensor& target, const Tensor& weight, const ClassLossConfig& c,
                      Tensor& out) {
  const DimSplit sp = split_at(log_probs.shape(), c.cd);
  dispatch_float(log_probs.dtype(), [&]<class T>() {
    T* per_sample = c.reduction == Reduction::None ? out.mutable_data<T>() : nullptr;
    write_reduced<T>(out, c, nll_rows<T>(log_probs, target, weight, sp, c, per_sample));
  });
}

Tensor nll_loss_backward(const Tensor& g, const Shape& shape, DType dtype, const Tensor& target, const Tensor& weight,
                         const ClassLossConfig& c) {
  Tensor dx = zeros(shape, dtype);
  if (c.reduction == Reduction::Mean && c.norm == 0) return dx;  // nothing averaged
  dispatch_float(dtype, [&]<class T>() { nll_backward_rows<T>(g, target, weight, c, split_at(shape, c.cd), dx); });
  return dx;
}

std::pair<Tensor, Tensor> class_loss_onehot(const Shape& shape, DType dtype, const Tensor& target,
                                            const ClassLossConfig& c) {
  const DimSplit sp = split_at(shape, c.cd);
  Shape kept = shape;
  kept[c.cd] = 1;
  Tensor onehot = zeros(shape, dtype);
  Tensor valid = zeros(kept, dtype);
  dispatch_float(dtype, [&]<class T>() {
    T* po = onehot.mutable_data<T>();
    T* pv = valid.mutable_data<T>();
    const std::int64_t* pt = target.data<std::int64_t>();
    for (std::int64_t o = 0; o < sp.outer; ++o)
      for (std::int64_t i = 0; i < sp.inner; ++i) {
        const std::int64_t s = o * sp.inner + i;
        if (pt[s] == c.ignore_index) continue;
        pv[s] = T(1);
        po[(o * sp.size + pt[s]) * sp.inner + i] = T(1);
      }
  });
  return {onehot, valid};
}

Tensor kl_div_forward(const Tensor& input, const Tensor& target, bool log_target) {
  Tensor l = Tensor::empty(input.shape(), input.dtype());
  dispatch_float(input.dtype(), [&]<class T>() {
    const auto x = input.array<T>();
    const auto t = target.array<T>();
    if (log_target)
      l.mutable_array<T>() = (t == -std::numeric_limits<T>::infinity()).select(T(0), t.exp() * (t - x));
    else
      l.mutable_array<T>() = (t == T(0)).select(T(0), t * (t.log() - x));
  });
  return l;
}

}  // namespace tapegrad::kernels
