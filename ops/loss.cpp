// SPDX-License-Identifier: MIT
#include "ops/loss.hpp"

#include "autodiff/detail/node.hpp"
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
#include "ops/kernels/loss.hpp"
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

// ---- the formula VJP of cross_entropy and nll_loss (tensor ops) ----

// coef * v, with 0 wherever coef = 0 even if v is -inf. v is replaced by 0 there before the
// product (not after), so the product's own VJP never meets the infinity either.
Tensor mul_zero_safe(const Tensor& coef, const Tensor& v) { return mul(coef, where(eq(coef, 0.0), 0.0, v)); }

// The i-th saved tensor, undefined past the end (optional entries are left off the saved list).
Tensor saved_at(const Saved& s, std::size_t i) { return i < s.size() ? s[i] : Tensor(); }

// Whether dweight needs the loss itself: the divisor of a weighted mean over index targets,
// Σ w[t], depends on w.
bool dweight_needs_loss(const kernels::ClassLossConfig& c, const Tensor& weight) {
  return weight.defined() && weight.requires_grad() && !c.prob && c.reduction == Reduction::Mean;
}

// What the formula reads. x: the input (cross_entropy always; nll_loss only when dweight is
// needed), out: the loss (only for dweight of a weighted mean over index targets).
struct ClassLossSaved {
  Tensor x, target, weight, out;
};

// With a = w * b the weighted target distribution (b: one-hot plus smoothing, or the smoothed
// probabilities), logp = log_softmax(x) (cross_entropy) or x (nll_loss), l_s = -sum_c a logp:
//   dx = G (softmax(x) A - a)             (nll_loss: -G a)
//   dy = -G (1 - eps) w logp              (probability targets)
//   dw = sum over samples of G (-b logp)  (mean over index targets: - G L onehot too, since the
//                                          divisor sum_s w_{t_s} depends on w)
// G = g ('none', unsqueezed along the class dim), g ('sum'), g / norm ('mean'). Every line is a
// tapegrad op, so under create_graph this is recorded and differentiates again. want_x = false:
// only dy and dw (the fused VJPs compute dx with a kernel).
Grads class_loss_formula(const kernels::ClassLossConfig& c, bool from_logits, const Tensor& g, const Saved& s,
                         const ClassLossSaved& v, bool want_x) {
  const bool need_x = want_x && s.needs_grad(0);
  const bool need_y = c.prob && s.needs_grad(1);
  const bool need_w = s.inputs() > 2 && s.needs_grad(2);
  Grads r;
  r.resize(s.inputs());
  if (!need_x && !need_y && !need_w) return r;
  if (c.reduction == Reduction::Mean && c.norm == 0) {  // nothing averaged: zero gradient (policy)
    for (std::size_t k = 0; k < s.inputs(); ++k)
      if ((k == 0 && need_x) || (k == 1 && need_y) || (k == 2 && need_w)) r[k] = zeros(s.shape(k), s.dtype(k));
    return r;
  }
  const Shape& xs = s.shape(0);
  const std::int64_t C = xs[c.cd];
  Shape wshape = xs;
  for (int d = 0; d < wshape.rank(); ++d) wshape[d] = d == c.cd ? C : 1;
  const Tensor wb = v.weight.defined() ? reshape(v.weight, wshape.to_vector()) : Tensor();  // along the class dim
  const Tensor logp = !need_y && !need_w ? Tensor() : from_logits ? log_softmax(v.x, c.cd) : v.x;  // dy, dw only

  Tensor onehot, b;
  if (c.prob) {
    b = c.eps > 0 ? v.target * (1.0 - c.eps) + c.eps / static_cast<double>(C) : v.target;
  } else {
    auto [oh, valid] = kernels::class_loss_onehot(xs, s.dtype(0), v.target, c);
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

  if (need_x) r[0] = from_logits ? G * (softmax(v.x, c.cd) * sum(a, c.cd, /*keepdim=*/true) - a) : -(G * a);
  if (need_y) {
    const Tensor wl = wb.defined() ? mul_zero_safe(wb, logp) : logp;
    r[1] = c.eps < 1 ? G * wl * -(1.0 - c.eps) : zeros(s.shape(1), s.dtype(1));
  }
  if (need_w) {
    Tensor term = -mul_zero_safe(b, logp);
    if (!c.prob && c.reduction == Reduction::Mean) term = term - v.out * onehot;
    r[2] = reshape(sum_to_size(G * term, wshape), {C});
  }
  return r;
}

Tensor class_loss_output(const ClassLayout& L, Reduction r, DType dtype) {
  return Tensor::empty(r == Reduction::None ? L.samples : Shape{}, dtype);
}

}  // namespace

// ---------------------------------------------------------------- cross_entropy

Tensor cross_entropy(const Tensor& input, const Tensor& target, const CrossEntropyOptions& options, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "cross_entropy";
  const Tensor& weight = options.weight;
  const ClassLayout L = check_class_loss(op, "input", input, target, weight, options.reduction, options.ignore_index,
                                         /*allow_prob=*/true);
  if (!(options.label_smoothing >= 0.0 && options.label_smoothing <= 1.0))
    throw InvalidArgument(fmt::format("{}: label_smoothing = {} is outside [0, 1]; expected 0 <= label_smoothing <= 1",
                                      op, options.label_smoothing));
  const kernels::ClassLossConfig c{.eps = options.label_smoothing, .norm = L.norm, .ignore_index = options.ignore_index,
                                   .reduction = options.reduction, .cd = static_cast<std::int8_t>(L.cd), .prob = L.prob};

  // e = exp(x - max) and 1 / Σe per sample, for the fused backward (p = e / Σe without another exp)
  const bool keep_e = GradMode::is_enabled() && input.requires_grad();
  Tensor e = keep_e ? Tensor::empty(input.shape(), input.dtype()) : Tensor();
  Tensor inv_s = keep_e ? Tensor::empty(L.samples, input.dtype()) : Tensor();
  Tensor out = class_loss_output(L, c.reduction, input.dtype());
  kernels::cross_entropy_forward(input, target, weight, c, out, keep_e ? &e : nullptr, keep_e ? &inv_s : nullptr);

  // saved: x (the formula's softmax), target, e and inv_s (the fused kernel's), weight, and the
  // loss itself when dweight of a weighted mean needs it
  const OpDef def{op, "dx = g (p Σa − a) / N, p = softmax(x), a = w ⊙ ((1 − ε) y + ε/C); dy = −g (1 − ε) w ⊙ log p / N"};
  auto formula = [c](const Tensor& g, const Saved& s) {
    return class_loss_formula(c, true, g, s, {s[0], s[1], saved_at(s, 4), saved_at(s, 5)}, /*want_x=*/true);
  };
  auto fused = [c](const Tensor& g, const Saved& s) {
    const Tensor w = saved_at(s, 4);
    Grads r = class_loss_formula(c, true, g, s, {s[0], s[1], w, saved_at(s, 5)}, /*want_x=*/false);
    if (s.needs_grad(0)) {
      const Tensor e = s.take(2);  // when this backward is e's last reader, dx is written over it
      r[0] = kernels::cross_entropy_backward(g, e.defined() ? e : s[2], s[3], s[1], w, c, e.defined());
    }
    return r;
  };
  if (!weight.defined())
    record(def, {input, target}, out, {input, target, e, inv_s}, formula, fused);
  else
    record(def, std::vector<Tensor>{input, target, weight}, out,
           {input, target, e, inv_s, weight, dweight_needs_loss(c, weight) ? out : Tensor()}, formula, fused);
  return out;
}

// ---------------------------------------------------------------- nll_loss

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& options, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "nll_loss";
  const Tensor& weight = options.weight;
  const ClassLayout L = check_class_loss(op, "log_probs", log_probs, target, weight, options.reduction,
                                         options.ignore_index, /*allow_prob=*/false);
  const kernels::ClassLossConfig c{.norm = L.norm, .ignore_index = options.ignore_index,
                                   .reduction = options.reduction, .cd = static_cast<std::int8_t>(L.cd)};
  Tensor out = class_loss_output(L, c.reduction, log_probs.dtype());
  kernels::nll_loss_forward(log_probs, target, weight, c, out);

  // saved: target and weight; log_probs and the loss only when the weight needs a gradient
  // (dx = -G a reads neither)
  const OpDef def{op, "dx[n, tₙ] = −g w_tₙ / N; dw[c] = −g Σ_{n: tₙ = c} x[n, c] / N"};
  auto formula = [c](const Tensor& g, const Saved& s) {
    return class_loss_formula(c, false, g, s, {saved_at(s, 2), s[0], saved_at(s, 1), saved_at(s, 3)}, /*want_x=*/true);
  };
  auto fused = [c](const Tensor& g, const Saved& s) {
    Grads r = class_loss_formula(c, false, g, s, {saved_at(s, 2), s[0], saved_at(s, 1), saved_at(s, 3)}, /*want_x=*/false);
    if (s.needs_grad(0)) r[0] = kernels::nll_loss_backward(g, s.shape(0), s.dtype(0), s[0], saved_at(s, 1), c);
    return r;
  };
  const bool need_w = weight.defined() && weight.requires_grad();
  const Tensor x = need_w ? log_probs : Tensor();
  const Tensor l = dweight_needs_loss(c, weight) ? out : Tensor();
  if (!weight.defined())
    record(def, {log_probs, target}, out, {target}, formula, fused);
  else
    record(def, {log_probs, target, weight}, out, {target, weight, x, l}, formula, fused);
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
  Tensor out = reduce_values(kernels::kl_div_forward(input, target, log_target), reduction, norm);  // 'none': l

  //   dx = -G t                  dt = G (log t + 1 - x)          (-inf at t = 0: the one-sided limit)
  //   dx = -G exp(t)             dt = G exp(t) (t - x + 1)       (log_target; 0 at t = -inf)
  // saved: target; input too when the target needs a gradient (dx does not read it)
  const OpDef def{op, "dx = −G t, dt = G (log t + 1 − x); log_target: dx = −G eᵗ, dt = G eᵗ (t − x + 1); G = g / N"};
  auto formula = [reduction, norm, log_target](const Tensor& g, const Saved& s) {
    Grads r;
    r.resize(2);
    if (reduction != Reduction::None && norm == 0) return r;  // no elements
    const Tensor& t = s[0];
    const Tensor G = elementwise_scale(g, reduction, norm);
    if (log_target) {
      const Tensor et = exp(t);
      if (s.needs_grad(0)) r[0] = -(G * et);
      if (s.needs_grad(1)) r[1] = G * mul_zero_safe(et, t - s[1] + 1.0);
    } else {
      if (s.needs_grad(0)) r[0] = -(G * t);
      if (s.needs_grad(1)) r[1] = G * (log(t) + 1.0 - s[1]);
    }
    return r;
  };
  if (target.requires_grad())
    record(def, {input, target}, out, {target, input}, formula);
  else
    record(def, {input, target}, out, {target}, formula);
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
  // saved: every input (logits, target, weight, pos_weight): dx reads them all
  const OpDef def{op, "dx = G w ((1 + (p_w − 1) y) σ(x) − p_w y), dy = G w ((p_w − 1) softplus(−x) − x); G = g / N"};
  record(def, inputs, out, inputs, [reduction, norm, iw, ipw](const Tensor& g, const Saved& s) {
    const Tensor& x = s[0];
    const Tensor& y = s[1];
    const auto iw_ = static_cast<std::size_t>(iw), ipw_ = static_cast<std::size_t>(ipw);
    const Tensor w = iw >= 0 ? s[iw_] : Tensor();
    const Tensor pw = ipw >= 0 ? s[ipw_] : Tensor();
    const bool need_w = iw >= 0 && s.needs_grad(iw_), need_pw = ipw >= 0 && s.needs_grad(ipw_);
    Grads r;
    r.resize(s.inputs());
    if (reduction == Reduction::Mean && norm == 0) return r;
    Tensor G = elementwise_scale(g, reduction, norm);
    const Tensor Gw = w.defined() ? G * w : G;
    const Tensor lw = pw.defined() ? (pw - 1.0) * y + 1.0 : Tensor();
    const Tensor sp = s.needs_grad(1) || need_w || need_pw ? softplus_neg(x) : Tensor();
    if (s.needs_grad(0)) {
      const Tensor sig = sigmoid(x);
      r[0] = Gw * (lw.defined() ? lw * sig - pw * y : sig - y);
    }
    if (s.needs_grad(1)) r[1] = Gw * (pw.defined() ? (pw - 1.0) * sp - x : -x);
    if (need_w) {
      const Tensor l = (1.0 - y) * x + (lw.defined() ? lw * sp : sp);
      r[iw_] = sum_to_size(broadcast_to(G * l, s.shape(0)), s.shape(iw_));
    }
    if (need_pw) r[ipw_] = sum_to_size(broadcast_to(Gw * y * sp, s.shape(0)), s.shape(ipw_));
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
// saved: input and target (d = input - target is formed again in the VJP, so that under
// create_graph it is differentiated too)
template <class Value, class Slope>
Tensor pointwise_loss(OpDef def, const Tensor& input, const Tensor& target, Reduction reduction, Value value,
                      Slope slope) {
  const double norm = elementwise_norm(input, reduction);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = reduce_values(value(input.detach() - target.detach()), reduction, norm);
  }
  record(def, {input, target}, out, {input, target}, [reduction, norm, slope](const Tensor& g, const Saved& s) {
    Grads r;
    r.resize(2);
    if (reduction != Reduction::None && norm == 0) return r;  // no elements
    const Tensor gi = elementwise_scale(g, reduction, norm) * slope(s[0] - s[1]);
    if (s.needs_grad(0)) r[0] = gi;
    if (s.needs_grad(1)) r[1] = -gi;
    return r;
  });
  return out;
}

constexpr const char* kL1Formula = "dx = G sign(x − t), dt = −dx; G = g / N";

}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "mse_loss";
  check_pointwise_loss(op, input, target, reduction);
  return pointwise_loss(
      {op, "dx = 2 G (x − t), dt = −dx; G = g / N"}, input, target, reduction, [](const Tensor& d) { return d * d; },
      [](const Tensor& d) { return d * 2.0; });
}

Tensor l1_loss(const Tensor& input, const Tensor& target, Reduction reduction, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "l1_loss";
  check_pointwise_loss(op, input, target, reduction);
  return pointwise_loss(
      {op, kL1Formula}, input, target, reduction, [](const Tensor& d) { return abs(d); },
      [](const Tensor& d) { return sign(d); });
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
        {op, kL1Formula}, input, target, reduction, [](const Tensor& d) { return abs(d); },
        [](const Tensor& d) { return sign(d); });
  // |d| < beta: d^2 / (2 beta), slope d / beta;  otherwise |d| - beta / 2, slope sign(d). At |d| = beta
  // both pieces agree in value and slope (+-1), so clamp(d / beta, -1, 1) is the slope everywhere.
  return pointwise_loss(
      {op, "dx = G clamp((x − t) / β, −1, 1), dt = −dx; G = g / N"}, input, target, reduction,
      [beta](const Tensor& d) {
        const Tensor a = abs(d);
        return where(lt(a, beta), d * d * (0.5 / beta), a - 0.5 * beta);
      },
      [beta](const Tensor& d) { return clamp(d / beta, -1.0, 1.0); });
}

}  // namespace tapegrad
