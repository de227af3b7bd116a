// SPDX-License-Identifier: MIT
#include "ops/loss.hpp"

#include "autodiff/site.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "ops/simd.hpp"
#include "ops/softmax.hpp"

namespace tapegrad {

// Layout: input [N, C, d1, ...] is seen as [outer = N, C, inner = d1 * ...] around the class dim cd
// (1, or 0 for a single sample [C]). A "sample" s = (n, i) is one row of C logits, strided by
// inner; samples are numbered n * inner + i, which is also the row-major order of the target and
// of the 'none' output (input's shape without the class dim).
//
// Conventions beyond PyTorch (documented in loss.hpp):
//   - a term whose coefficient is 0 contributes 0 even when its log-probability is -inf
//     (0 * log 0 = 0, as in KL divergence): ignored samples, zero target probabilities, zero
//     class weights, label_smoothing = 1. PyTorch gives NaN in some of these cases.
//   - mean with nothing to average (every target ignored, no samples, or summed weights 0)
//     gives 0 with zero gradient (PyTorch: NaN or inf).

namespace {

// A Reduction made by casting an integer (static_cast<Reduction>(7)) is none of the enumerators:
// every switch and comparison on it would fall through to garbage, so it is rejected first.
void check_reduction(const char* op, Reduction r, bool allow_batchmean) {
  switch (r) {
    case Reduction::None:
    case Reduction::Mean:
    case Reduction::Sum:
    case Reduction::BatchMean: return;
  }
  throw InvalidArgument(fmt::format("{}: reduction = {} is not a Reduction value; expected Reduction::None, Mean{}", op,
                                    static_cast<int>(r), allow_batchmean ? ", Sum or BatchMean" : " or Sum"));
}

// Every loss but kl_div: also rejects invalid values (check_reduction).
void check_not_batchmean(const char* op, Reduction r) {
  check_reduction(op, r, /*allow_batchmean=*/false);
  if (r == Reduction::BatchMean)
    throw InvalidArgument(fmt::format(
        "{}: reduction = batchmean is only defined for kl_div; expected Reduction::None, Mean or Sum", op));
}

// "[1, 2]" for flat index 5 of shape [2, 3]; "" for rank 0 (so "target{} = 3" reads "target = 3").
std::string index_str(const Shape& shape, std::int64_t flat) {
  if (shape.rank() == 0) return "";
  return fmt::format("[{}]", fmt::join(unravel_index(shape, flat), ", "));
}

// ---- validation shared by cross_entropy and nll_loss ----

struct ClassLayout {
  int cd = 1;           // class dim
  DimSplit sp;          // [outer, C, inner] around cd
  Shape samples;        // input's shape without the class dim (index targets, 'none' output)
  bool prob = false;    // class-probability targets
  double norm = 0;      // mean's divisor: the number of non-ignored index targets (weights: see
                        // weighted_norm), or the number of samples for probability targets
};

// mean's divisor for weighted index targets: the summed weights of the non-ignored targets.
double weighted_norm(const Tensor& target, const Tensor& weight, std::int64_t ignore_index) {
  const std::int64_t* pt = target.data<std::int64_t>();
  const std::vector<double> w = weight.to_vector();
  double n = 0;
  for (std::int64_t s = 0, S = target.numel(); s < S; ++s)
    if (pt[s] != ignore_index) n += w[static_cast<std::size_t>(pt[s])];
  return n;
}

ClassLayout check_class_loss(const char* op, const char* input_name, const Tensor& input, const Tensor& target,
                             const Tensor& weight, Reduction reduction, std::int64_t ignore_index, bool allow_prob) {
  check_floating(op, input_name, input);
  check_defined(op, "target", target);
  check_not_batchmean(op, reduction);
  if (input.dim() == 0)
    throw InvalidArgument(fmt::format(
        "{}: {} has rank 0 (shape []); expected [C], [N, C] or [N, C, d1, ...] with the classes along dim 1 (dim 0 "
        "for a single sample [C])",
        op, input_name));
  ClassLayout L;
  L.cd = input.dim() == 1 ? 0 : 1;
  L.sp = split_at(input.shape(), L.cd);
  L.samples = input.shape();
  L.samples.erase(L.cd);
  const std::int64_t C = L.sp.size;
  if (C == 0)
    throw InvalidArgument(fmt::format("{}: {} of shape {} has no classes (size 0 along the class dim {}); expected C >= 1",
                                      op, input_name, input.shape(), L.cd));

  if (target.dim() == input.dim()) {  // class probabilities (PyTorch: same shape as input)
    if (!allow_prob)
      throw InvalidArgument(fmt::format(
          "{}: target of shape {} has {}'s rank; expected class indices (int64) of shape {} ({} without the class "
          "dim {}); class probabilities are accepted by cross_entropy",
          op, target.shape(), input_name, L.samples, input_name, L.cd));
    if (target.shape() != input.shape())
      throw InvalidArgument(fmt::format(
          "{}: target of shape {} has {}'s rank but not its shape {}; expected class probabilities of shape {} or "
          "class indices (int64) of shape {}",
          op, target.shape(), input_name, input.shape(), input.shape(), L.samples));
    if (!is_floating(target.dtype()))
      throw InvalidArgument(fmt::format(
          "{}: target of shape {} ({}'s shape) has dtype {}; class probabilities must be {} like {} (class indices "
          "have shape {})",
          op, target.shape(), input_name, dtype_name(target.dtype()), dtype_name(input.dtype()), input_name,
          L.samples));
    check_same_dtype(op, input_name, input, "target", target);
    L.prob = true;
    L.norm = static_cast<double>(L.samples.numel());
  } else {
    if (target.dim() != input.dim() - 1 || target.shape() != L.samples)
      throw InvalidArgument(fmt::format(
          "{}: target of shape {} does not match {} of shape {}; expected class indices (int64) of shape {} ({} "
          "without the class dim {}){}",
          op, target.shape(), input_name, input.shape(), L.samples, input_name, L.cd,
          allow_prob ? fmt::format(" or class probabilities of shape {}", input.shape()) : std::string()));
    if (target.dtype() != kInt64)
      throw InvalidArgument(fmt::format(
          "{}: target of shape {} has dtype {}; class indices must be int64 (use target.to(kInt64)){}", op,
          target.shape(), dtype_name(target.dtype()),
          allow_prob ? fmt::format(", or pass class probabilities of {}'s shape {}", input_name, input.shape())
                     : std::string()));
    const std::int64_t* t = target.data<std::int64_t>();
    const std::int64_t S = target.numel();
    std::int64_t n_valid = 0;
    for (std::int64_t s = 0; s < S; ++s) {
      if (t[s] == ignore_index) continue;
      if (t[s] < 0 || t[s] >= C)
        throw InvalidArgument(fmt::format(
            "{}: target{} = {} is out of range for {} classes (expected 0 <= target < {}, or ignore_index = {})", op,
            index_str(target.shape(), s), t[s], C, C, ignore_index));
      ++n_valid;
    }
    L.norm = static_cast<double>(n_valid);
  }

  if (weight.defined()) {
    if (!is_floating(weight.dtype()))
      throw InvalidArgument(fmt::format("{}: weight has dtype {} (shape {}); expected {} like {}", op,
                                        dtype_name(weight.dtype()), weight.shape(), dtype_name(input.dtype()),
                                        input_name));
    check_same_dtype(op, input_name, input, "weight", weight);
    if (weight.dim() != 1 || weight.size(0) != C)
      throw InvalidArgument(fmt::format(
          "{}: weight of shape {} does not match the {} classes of {} (shape {}); expected a 1-D tensor of shape [{}]",
          op, weight.shape(), C, input_name, input.shape(), C));
    if (!L.prob) L.norm = weighted_norm(target, weight, ignore_index);
  }
  return L;
}

// The layout of an already validated input (for the backward's recomputation).
ClassLayout layout_of(const Tensor& input, int cd, bool prob) {
  ClassLayout L;
  L.cd = cd;
  L.sp = split_at(input.shape(), cd);
  L.samples = input.shape();
  L.samples.erase(cd);
  L.prob = prob;
  return L;
}

// ---- what the VJPs of cross_entropy and nll_loss need besides their inputs ----

// 32 bytes: with the two tensors cross_entropy saves, its VJP closure stays within the 64 bytes a
// tape node stores inline.
struct ClassLossConfig {
  double eps = 0.0;            // label_smoothing
  double norm = 1.0;           // mean's divisor (summed target weights, or the number of samples)
  std::int64_t ignore_index = -100;
  Reduction reduction = Reduction::Mean;
  std::int8_t cd = 1;          // class dim: 1, or 0 for a single sample [C]
  bool prob = false;           // class-probability targets
  bool from_logits = true;     // cross_entropy (false: nll_loss, whose input holds log-probabilities)
};
static_assert(sizeof(ClassLossConfig) <= 32);

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

[[noreturn]] void throw_bad_logit(const Tensor& x, const ClassLayout& L, std::int64_t s, double v) {
  throw InvalidArgument(fmt::format(
      "cross_entropy: input (shape {}) has {} among the logits of sample {} (along the class dim {}); expected "
      "finite logits, or -inf for masked classes",
      x.shape(), std::isnan(v) ? "NaN" : "+inf", L.samples.rank() == 0 ? "[]" : index_str(L.samples, s), L.cd));
}

// ---- cross_entropy: fused forward ----
// Per sample: m = max x, s = sum exp(x - m), logp = (x - m) - log s (never x - lse: that loses
// log s next to a logit of 1e30). With `e` (when the input requires grad) exp(x - m) is kept for
// the backward together with 1 / s, so backward needs no second exp pass: p = e / s.
// A fully masked sample (every logit -inf) has p = 0 and logp = -inf.
template <class T, bool Contig>
double cross_entropy_rows(const Tensor& x, const Tensor& target, const Tensor& weight, const ClassLayout& L,
                          const ClassLossConfig& c, T* per_sample, T* e, T* inv_s) {
  const std::int64_t C = L.sp.size, D = L.sp.inner;
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
    // ops/simd.hpp, a chunk of samples at a time (m and s in stack buffers).
    constexpr std::int64_t kChunk = 256;
    float mb[kChunk], sb[kChunk];
    const simd::Kernels& k = simd::kernels();
    for (std::int64_t s0 = 0; s0 < L.sp.outer; s0 += kChunk) {
      const std::int64_t n = std::min(kChunk, L.sp.outer - s0);
      const std::int64_t bad = k.exp_rows(px + s0 * C, e ? e + s0 * C : nullptr, mb, sb, n, C);
      if (bad >= 0) {
        const T* row = px + (s0 + bad) * C;
        const bool nan = std::any_of(row, row + C, [](T v) { return std::isnan(v); });
        throw_bad_logit(x, L, s0 + bad, nan ? static_cast<double>(NAN) : static_cast<double>(inf));
      }
      for (std::int64_t j = 0; j < n; ++j) {
        if (inv_s) inv_s[s0 + j] = sb[j] > T(0) ? T(1) / sb[j] : T(0);
        sample(s0 + j, (s0 + j) * C, mb[j], sb[j]);
      }
    }
    return total;
  }

  for (std::int64_t o = 0; o < L.sp.outer; ++o)
    for (std::int64_t i = 0; i < D; ++i) {
      const std::int64_t s = o * D + i, base = o * C * D + i;
      const auto xr = const_row<T, Contig>(px + base, C, D);
      // NaN logits: a plain (vectorised) max may skip them, but then exp(NaN) makes the sum NaN
      const T m = xr.maxCoeff();
      if (!(m < inf)) throw_bad_logit(x, L, s, static_cast<double>(m));
      T sum = 0;
      if (m == -inf) {  // fully masked
        if (xr.isNaN().any()) throw_bad_logit(x, L, s, static_cast<double>(NAN));
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
        if (!(sum >= T(1))) throw_bad_logit(x, L, s, static_cast<double>(NAN));
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
// In place: `buf` holds e = exp(x - max) on entry and dx on return (every element is read before
// it is written, at the same position).
template <class T, bool Contig>
void cross_entropy_backward_rows(const Tensor& g, const Tensor& target, const Tensor& weight, Tensor& buf,
                                 const Tensor& inv_s, const ClassLossConfig& c, const DimSplit& sp) {
  const std::int64_t C = sp.size, D = sp.inner;
  const SampleScale<T> G(g, c);
  T* pd = buf.mutable_data<T>();
  const T* pe = pd;
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
      // ignored samples), then the target entries here, a chunk of samples at a time.
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
        k.scale_shift_rows(pd + s0 * C, scale, c.eps > 0 ? shift : nullptr, n, C);
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
double nll_rows(const Tensor& lp, const Tensor& target, const Tensor& weight, const ClassLayout& L,
                const ClassLossConfig& c, T* per_sample) {
  const std::int64_t C = L.sp.size, D = L.sp.inner;
  const T* px = lp.data<T>();
  const T* pw = weight.defined() ? weight.data<T>() : nullptr;
  const std::int64_t* pt = target.data<std::int64_t>();
  double total = 0;
  for (std::int64_t o = 0; o < L.sp.outer; ++o)
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

// ---- the VJP as tensor ops (create_graph, and gradients for targets and weights) ----

// coef * v, with 0 wherever coef = 0 even if v is -inf. v is replaced by 0 there before the
// product (not after), so the product's own VJP never meets the infinity either.
Tensor mul_zero_safe(const Tensor& coef, const Tensor& v) { return mul(coef, where(eq(coef, 0.0), 0.0, v)); }

// Constants for index targets: onehot (input's shape, 1 at [n, t_n, d...] for non-ignored samples)
// and valid (input's shape with size 1 along the class dim, 1 for non-ignored samples).
std::pair<Tensor, Tensor> index_constants(const Tensor& x, const Tensor& target, const ClassLossConfig& c) {
  const DimSplit sp = split_at(x.shape(), c.cd);
  Shape kept = x.shape();
  kept[c.cd] = 1;
  Tensor onehot = zeros(x.shape(), x.dtype());
  Tensor valid = zeros(kept, x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() {
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

// With a = w * b the weighted target distribution (b: one-hot plus smoothing, or the smoothed
// probabilities), logp = log_softmax(x) (cross_entropy) or x (nll_loss), l_s = -sum_c a logp:
//   dx = G (softmax(x) A - a)             (nll_loss: -G a)
//   dy = -G (1 - eps) w logp              (probability targets)
//   dw = sum over samples of G (-b logp)  (mean over index targets: - G L onehot too, since the
//                                          divisor sum_s w_{t_s} depends on w)
// G = g ('none', unsqueezed along the class dim), g ('sum'), g / norm ('mean'). Every line is a
// tapegrad op, so under create_graph this is recorded and differentiates again.
Grads class_loss_vjp_ops(const ClassLossConfig& c, const Tensor& g, const Tensor& out, const InputList& in,
                         bool want_x) {
  const Tensor& x = in[0];
  const Tensor& target = in[1];
  const Tensor weight = in.size() > 2 ? in[2] : Tensor();
  const bool need_x = want_x && x.requires_grad();
  const bool need_y = c.prob && target.requires_grad();
  const bool need_w = weight.defined() && weight.requires_grad();
  Grads r;
  r.resize(in.size());
  if (!need_x && !need_y && !need_w) return r;
  if (c.reduction == Reduction::Mean && c.norm == 0) {  // nothing averaged: zero gradient (policy)
    if (need_x) r[0] = zeros_like(x);
    if (need_y) r[1] = zeros_like(target);
    if (need_w) r[2] = zeros_like(weight);
    return r;
  }
  const std::int64_t C = x.size(c.cd);
  std::vector<std::int64_t> wshape(static_cast<std::size_t>(x.dim()), 1);
  wshape[static_cast<std::size_t>(c.cd)] = C;
  const Tensor wb = weight.defined() ? reshape(weight, wshape) : Tensor();  // broadcasts along the class dim
  const Tensor logp = !need_y && !need_w ? Tensor() : c.from_logits ? log_softmax(x, c.cd) : x;  // dy, dw only

  Tensor onehot, b;
  if (c.prob) {
    b = c.eps > 0 ? target * (1.0 - c.eps) + c.eps / static_cast<double>(C) : target;
  } else {
    auto [oh, valid] = index_constants(x, target, c);
    onehot = oh;
    b = c.eps > 0 ? oh * (1.0 - c.eps) + valid * (c.eps / static_cast<double>(C)) : oh;
  }
  const Tensor a = wb.defined() ? b * wb : b;

  Tensor G;
  switch (c.reduction) {
    case Reduction::None: G = unsqueeze(g, c.cd); break;
    case Reduction::Sum: G = g; break;
    default:  // Mean: the divisor depends on w for weighted index targets
      G = (!c.prob && wb.defined()) ? g / sum(onehot * wb) : g / c.norm;
  }

  if (need_x) r[0] = c.from_logits ? G * (softmax(x, c.cd) * sum(a, c.cd, /*keepdim=*/true) - a) : -(G * a);
  if (need_y) {
    const Tensor wl = wb.defined() ? mul_zero_safe(wb, logp) : logp;
    r[1] = c.eps < 1 ? G * wl * -(1.0 - c.eps) : zeros_like(target);
  }
  if (need_w) {
    Tensor term = -mul_zero_safe(b, logp);
    if (!c.prob && c.reduction == Reduction::Mean) term = term - out * onehot;
    std::vector<std::int64_t> kept = wshape;
    r[2] = reshape(sum_to_size(G * term, Shape(kept)), {C});
  }
  return r;
}

Tensor make_class_loss_output(const ClassLayout& L, const ClassLossConfig& c, DType dtype) {
  return Tensor::empty(c.reduction == Reduction::None ? L.samples : Shape{}, dtype);
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

// ---------------------------------------------------------------- cross_entropy

namespace {
// Records a class loss: inputs (x, target[, weight]), so the VJP finds the weight at in[2].
template <class F>
void record_class_loss(const char* op, const Tensor& x, const Tensor& target, const Tensor& weight, Tensor& out, F&& vjp) {
  if (weight.defined())
    record(op, {x, target, weight}, out, std::forward<F>(vjp), /*save_out=*/true);
  else
    record(op, {x, target}, out, std::forward<F>(vjp), /*save_out=*/true);
}
}  // namespace

Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "cross_entropy";
  const ClassLayout L = check_class_loss(op, "input", input, target, options.weight, options.reduction,
                                         options.ignore_index, /*allow_prob=*/true);
  if (!(options.label_smoothing >= 0.0 && options.label_smoothing <= 1.0))
    throw InvalidArgument(fmt::format("{}: label_smoothing = {} is outside [0, 1]; expected 0 <= label_smoothing <= 1",
                                      op, options.label_smoothing));
  ClassLossConfig c;
  c.eps = options.label_smoothing;
  c.ignore_index = options.ignore_index;
  c.cd = static_cast<std::int8_t>(L.cd);
  c.reduction = options.reduction;
  c.prob = L.prob;
  c.from_logits = true;
  c.norm = L.norm;

  const bool keep_e = GradMode::is_enabled() && input.requires_grad();  // saved for the fused backward
  Tensor e = keep_e ? Tensor::empty(input.shape(), input.dtype()) : Tensor();
  Tensor inv_s = keep_e ? Tensor::empty(L.samples, input.dtype()) : Tensor();
  Tensor out = make_class_loss_output(L, c, input.dtype());
  dispatch_layout(input.dtype(), L.sp.inner == 1, [&]<class T, bool Contig>() {
    T* per_sample = c.reduction == Reduction::None ? out.mutable_data<T>() : nullptr;
    const double total = cross_entropy_rows<T, Contig>(input, target, options.weight, L, c, per_sample,
                                                       keep_e ? e.mutable_data<T>() : nullptr,
                                                       keep_e ? inv_s.mutable_data<T>() : nullptr);
    write_reduced<T>(out, c, total);
  });

  // The saved e = exp(x - max) becomes dx in place, so a training step allocates one [N, C] buffer
  // for both. A second backward through a retained graph finds it consumed and recomputes it.
  auto vjp = [c, e, inv_s](const Tensor& g, const Tensor& out, const InputList& in) mutable {
    if (GradMode::is_enabled()) return class_loss_vjp_ops(c, g, out, in, /*want_x=*/true);  // create_graph
    // Fused kernel for the logits; targets and weights (rarely differentiated) by the tensor ops.
    Grads r = class_loss_vjp_ops(c, g, out, in, /*want_x=*/false);
    const Tensor& x = in[0];
    if (!x.requires_grad()) return r;
    if (c.reduction == Reduction::Mean && c.norm == 0) {
      r[0] = zeros_like(x);
      return r;
    }
    const Tensor& target = in[1];
    const Tensor weight = in.size() > 2 ? in[2] : Tensor();
    const ClassLayout L = layout_of(x, c.cd, c.prob);
    Tensor dx = std::move(e);
    dispatch_layout(x.dtype(), L.sp.inner == 1, [&]<class T, bool Contig>() {
      if (!dx.defined()) {
        dx = Tensor::empty(x.shape(), x.dtype());
        cross_entropy_rows<T, Contig>(x, target, weight, L, c, nullptr, dx.mutable_data<T>(), inv_s.mutable_data<T>());
      }
      cross_entropy_backward_rows<T, Contig>(g, target, weight, dx, inv_s, c, L.sp);
    });
    r[0] = std::move(dx);
    return r;
  };
  record_class_loss(op, input, target, options.weight, out, std::move(vjp));
  return out;
}

// ---------------------------------------------------------------- nll_loss

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& options, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "nll_loss";
  const ClassLayout L = check_class_loss(op, "log_probs", log_probs, target, options.weight, options.reduction,
                                         options.ignore_index, /*allow_prob=*/false);
  ClassLossConfig c;
  c.ignore_index = options.ignore_index;
  c.cd = static_cast<std::int8_t>(L.cd);
  c.reduction = options.reduction;
  c.from_logits = false;
  c.norm = L.norm;

  Tensor out = make_class_loss_output(L, c, log_probs.dtype());
  dispatch_float(log_probs.dtype(), [&]<class T>() {
    T* per_sample = c.reduction == Reduction::None ? out.mutable_data<T>() : nullptr;
    write_reduced<T>(out, c, nll_rows<T>(log_probs, target, options.weight, L, c, per_sample));
  });

  auto vjp = [c](const Tensor& g, const Tensor& out, const InputList& in) {
    if (GradMode::is_enabled()) return class_loss_vjp_ops(c, g, out, in, /*want_x=*/true);  // create_graph
    Grads r = class_loss_vjp_ops(c, g, out, in, /*want_x=*/false);
    const Tensor& x = in[0];
    if (x.requires_grad()) {
      Tensor dx = zeros_like(x);
      if (!(c.reduction == Reduction::Mean && c.norm == 0)) {
        const Tensor weight = in.size() > 2 ? in[2] : Tensor();
        dispatch_float(x.dtype(), [&]<class T>() {
          nll_backward_rows<T>(g, in[1], weight, c, split_at(x.shape(), c.cd), dx);
        });
      }
      r[0] = std::move(dx);
    }
    return r;
  };
  record_class_loss(op, log_probs, target, options.weight, out, std::move(vjp));
  return out;
}

// ---------------------------------------------------------------- kl_div

namespace {

// The divisor of a reduction over all elements of x: numel ('mean'), size(0) ('batchmean'; 1 for
// rank 0, as PyTorch), 1 otherwise.
double elementwise_norm(const Tensor& x, Reduction r) {
  if (r == Reduction::Mean) return static_cast<double>(x.numel());
  if (r == Reduction::BatchMean) return x.dim() == 0 ? 1.0 : static_cast<double>(x.size(0));
  return 1.0;
}

// Reduces an elementwise loss (values only, no graph).
Tensor reduce_values(const Tensor& l, Reduction r, double norm) {
  if (r == Reduction::None) return l;
  NoGradGuard no_grad;
  Tensor total = sum(l);
  if (r == Reduction::Sum) return total;
  return norm == 0 ? zeros_like(total) : total / norm;
}

// The upstream gradient as a factor on each element: g itself ('none', 'sum': a rank-0 g
// broadcasts), g / norm ('mean', 'batchmean').
Tensor elementwise_scale(const Tensor& g, Reduction r, double norm) {
  if (r == Reduction::Mean || r == Reduction::BatchMean) return g / norm;
  return g;
}

}  // namespace

Tensor kl_div(const Tensor& input, const Tensor& target, const KlDivOptions& options, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "kl_div";
  check_reduction(op, options.reduction, /*allow_batchmean=*/true);
  check_floating(op, "input", input);
  check_floating(op, "target", target);
  check_same_dtype(op, "input", input, "target", target);
  if (input.shape() != target.shape())
    throw InvalidArgument(fmt::format("{}: target of shape {} does not match input of shape {}; expected the same shape",
                                      op, target.shape(), input.shape()));
  const bool log_target = options.log_target;
  if (!log_target) {
    const auto t = target.to_vector();
    for (std::size_t k = 0; k < t.size(); ++k)
      if (!(t[k] >= 0))
        throw InvalidArgument(fmt::format(
            "{}: target{} = {} is not a probability; expected target >= 0 (or log_target = true for log-probabilities)",
            op, index_str(target.shape(), static_cast<std::int64_t>(k)), t[k]));
  }
  const Reduction reduction = options.reduction;
  const double norm = elementwise_norm(input, reduction);

  // l = t (log t - x), 0 where t = 0;   log_target: l = exp(t) (t - x), 0 where t = -inf
  Tensor l = Tensor::empty(input.shape(), input.dtype());
  dispatch_float(input.dtype(), [&]<class T>() {
    const auto x = input.array<T>();
    const auto t = target.array<T>();
    if (log_target)
      l.mutable_array<T>() = (t == -std::numeric_limits<T>::infinity()).select(T(0), t.exp() * (t - x));
    else
      l.mutable_array<T>() = (t == T(0)).select(T(0), t * (t.log() - x));
  });
  Tensor out = reduce_values(l, reduction, norm);  // 'none': l itself

  //   dx = -G t                  dt = G (log t + 1 - x)          (-inf at t = 0: the one-sided limit)
  //   dx = -G exp(t)             dt = G exp(t) (t - x + 1)       (log_target; 0 at t = -inf)
  record(op, {input, target}, out, [reduction, norm, log_target](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    const Tensor& t = in[1];
    Grads r;
    r.resize(2);
    if (reduction != Reduction::None && norm == 0) return r;  // no elements
    const Tensor G = elementwise_scale(g, reduction, norm);
    if (log_target) {
      const Tensor et = exp(t);
      if (x.requires_grad()) r[0] = -(G * et);
      if (t.requires_grad()) r[1] = G * mul_zero_safe(et, t - x + 1.0);
    } else {
      if (x.requires_grad()) r[0] = -(G * t);
      if (t.requires_grad()) r[1] = G * (log(t) + 1.0 - x);
    }
    return r;
  });
  return out;
}

// ---------------------------------------------------------------- binary_cross_entropy_with_logits

namespace {

// softplus(-x) = log(1 + exp(-x)) as tensor ops, smooth at 0 and without overflow:
//   x > 0: log1p(exp(-x))      x <= 0: log1p(exp(x)) - x
// Each branch sees only its own x (where before the branch, not only after), so no branch ever
// evaluates exp of a large positive number and its VJP never meets an infinity.
Tensor softplus_neg(const Tensor& x) {
  const Tensor pos = gt(x, 0.0);
  const Tensor xp = where(pos, x, 0.0);
  const Tensor xn = where(pos, 0.0, x);
  return where(pos, log1p(exp(-xp)), log1p(exp(xn)) - xn);
}

void check_broadcasts_to(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  check_floating(op, name, t);
  check_same_dtype(op, "logits", x, name, t);
  const Shape b = broadcast_shapes(op, name, t.shape(), "logits", x.shape());
  if (b != x.shape())
    throw InvalidArgument(fmt::format("{}: {} of shape {} does not broadcast to logits of shape {} (it would give {})",
                                      op, name, t.shape(), x.shape(), b));
}

}  // namespace

Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target, const BceWithLogitsOptions& options, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "binary_cross_entropy_with_logits";
  check_floating(op, "logits", logits);
  check_floating(op, "target", target);
  check_same_dtype(op, "logits", logits, "target", target);
  check_not_batchmean(op, options.reduction);
  if (target.shape() != logits.shape())
    throw InvalidArgument(fmt::format("{}: target of shape {} does not match logits of shape {}; expected the same shape",
                                      op, target.shape(), logits.shape()));
  const Tensor& w = options.weight;
  const Tensor& pw = options.pos_weight;
  if (w.defined()) check_broadcasts_to(op, "weight", w, logits);
  if (pw.defined()) check_broadcasts_to(op, "pos_weight", pw, logits);
  const Reduction reduction = options.reduction;
  const double norm = elementwise_norm(logits, reduction);

  // PyTorch's stable form: l = (1 - y) x + (1 + (pw - 1) y) softplus(-x), times w.
  Tensor out;
  {
    NoGradGuard no_grad;
    const Tensor x = logits.detach(), y = target.detach();
    const Tensor lw = pw.defined() ? (pw.detach() - 1.0) * y + 1.0 : Tensor();
    const Tensor sp = softplus_neg(x);
    Tensor l = (1.0 - y) * x + (lw.defined() ? lw * sp : sp);
    if (w.defined()) l = l * w.detach();
    out = reduce_values(l, reduction, norm);  // a fresh tensor without a graph ('none': l itself)
  }

  std::vector<Tensor> inputs{logits, target};
  const int iw = w.defined() ? static_cast<int>(inputs.size()) : -1;
  if (w.defined()) inputs.push_back(w);
  const int ipw = pw.defined() ? static_cast<int>(inputs.size()) : -1;
  if (pw.defined()) inputs.push_back(pw);

  //   dx = G w ((1 + (pw - 1) y) sigmoid(x) - pw y)             (= G w (sigmoid(x) - y) without pw;
  //                                                             PyTorch's form, exact for x << 0)
  //   dy = G w ((pw - 1) softplus(-x) - x)
  //   dw = G l / w (the unweighted loss)     dpw = G w y softplus(-x)      (summed to their shapes)
  record(op, inputs, out, [reduction, norm, iw, ipw](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    const Tensor& y = in[1];
    const Tensor w = iw >= 0 ? in[static_cast<std::size_t>(iw)] : Tensor();
    const Tensor pw = ipw >= 0 ? in[static_cast<std::size_t>(ipw)] : Tensor();
    Grads r;
    r.resize(in.size());
    if (reduction == Reduction::Mean && norm == 0) return r;
    Tensor G = elementwise_scale(g, reduction, norm);
    const Tensor Gw = w.defined() ? G * w : G;
    const Tensor lw = pw.defined() ? (pw - 1.0) * y + 1.0 : Tensor();
    const bool need_sp = y.requires_grad() || (w.defined() && w.requires_grad()) || (pw.defined() && pw.requires_grad());
    const Tensor sp = need_sp ? softplus_neg(x) : Tensor();
    if (x.requires_grad()) {
      const Tensor s = sigmoid(x);
      r[0] = Gw * (lw.defined() ? lw * s - pw * y : s - y);
    }
    if (y.requires_grad()) r[1] = Gw * (pw.defined() ? (pw - 1.0) * sp - x : -x);
    if (w.defined() && w.requires_grad()) {
      const Tensor l = (1.0 - y) * x + (lw.defined() ? lw * sp : sp);
      r[static_cast<std::size_t>(iw)] = sum_to_size(broadcast_to(G * l, x.shape()), w.shape());
    }
    if (pw.defined() && pw.requires_grad())
      r[static_cast<std::size_t>(ipw)] = sum_to_size(broadcast_to(Gw * y * sp, x.shape()), pw.shape());
    return r;
  });
  return out;
}


// ---------------------------------------------------------------- mse_loss, l1_loss, smooth_l1_loss

namespace {

void check_pointwise_loss(const char* op, const Tensor& input, const Tensor& target, Reduction reduction) {
  check_floating(op, "input", input);
  check_floating(op, "target", target);
  check_same_dtype(op, "input", input, "target", target);
  check_not_batchmean(op, reduction);
  if (input.shape() != target.shape())
    throw InvalidArgument(fmt::format(
        "{}: target of shape {} does not match input of shape {}; expected the same shape (tapegrad does not "
        "broadcast a loss's target: PyTorch warns and broadcasts, which pairs the wrong elements; reshape or "
        "broadcast_to explicitly if that is meant)",
        op, target.shape(), input.shape()));
}

// A pointwise loss of d = input - target: `value` maps d (no graph) to the elementwise loss, `slope`
// maps d (tensor ops, recorded under create_graph) to dl/dd.
//   dinput = G slope(d)      dtarget = -G slope(d)      G = elementwise_scale(g)
template <class Value, class Slope>
Tensor pointwise_loss(const char* op, const Tensor& input, const Tensor& target, Reduction reduction, Value value,
                      Slope slope) {
  const double norm = elementwise_norm(input, reduction);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = reduce_values(value(input.detach() - target.detach()), reduction, norm);
  }
  record(op, {input, target}, out, [reduction, norm, slope](const Tensor& g, const Tensor&, const InputList& in) {
    Grads r;
    r.resize(2);
    if (reduction != Reduction::None && norm == 0) return r;  // no elements
    const Tensor gi = elementwise_scale(g, reduction, norm) * slope(in[0] - in[1]);
    if (in[0].requires_grad()) r[0] = gi;
    if (in[1].requires_grad()) r[1] = -gi;
    return r;
  });
  return out;
}

}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "mse_loss";
  check_pointwise_loss(op, input, target, reduction);
  return pointwise_loss(
      op, input, target, reduction, [](const Tensor& d) { return d * d; }, [](const Tensor& d) { return d * 2.0; });
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "l1_loss";
  check_pointwise_loss(op, input, target, reduction);
  return pointwise_loss(
      op, input, target, reduction, [](const Tensor& d) { return abs(d); }, [](const Tensor& d) { return sign(d); });
}

Tensor smooth_l1_loss(const Tensor& input, const Tensor& target, Reduction reduction, double beta, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "smooth_l1_loss";
  check_pointwise_loss(op, input, target, reduction);
  if (!(beta >= 0) || std::isinf(beta))
    throw InvalidArgument(fmt::format(
        "{}: beta = {}; expected a finite beta >= 0 (the width of the quadratic zone; 0 gives l1_loss, the default is 1)",
        op, beta));
  if (beta == 0.0)  // l1_loss, including its gradient 0 at d = 0
    return pointwise_loss(
        op, input, target, reduction, [](const Tensor& d) { return abs(d); }, [](const Tensor& d) { return sign(d); });
  // |d| < beta: d^2 / (2 beta), slope d / beta;  otherwise |d| - beta / 2, slope sign(d). At |d| = beta
  // both pieces agree in value and slope (+-1), so clamp(d / beta, -1, 1) is the slope everywhere.
  return pointwise_loss(
      op, input, target, reduction,
      [beta](const Tensor& d) {
        const Tensor a = abs(d);
        return where(lt(a, beta), d * d * (0.5 / beta), a - 0.5 * beta);
      },
      [beta](const Tensor& d) { return clamp(d / beta, -1.0, 1.0); });
}

}  // namespace tapegrad
