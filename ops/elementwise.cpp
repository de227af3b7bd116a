// SPDX-License-Identifier: MIT
#include "ops/elementwise.hpp"

#include "autodiff/detail/node.hpp"
#include "autodiff/eigen.hpp"
#include "autodiff/site.hpp"

#include <cmath>
#include <numbers>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/kernels/elementwise.hpp"

namespace tapegrad {

namespace {

// Validates a floating binary op (both floating, one dtype, shapes that broadcast) and returns the
// broadcast shape.
Shape check_binary(const char* op, const Tensor& a, const Tensor& b) {
  check_floating(op, "a", a);
  check_floating(op, "b", b);
  check_same_dtype(op, "a", a, "b", b);
  return broadcast_shapes(op, "a", a.shape(), "b", b.shape());
}

// A floating unary op whose value is one Eigen array expression f(x).
template <class F>
Tensor float_unary(const char* op, const Tensor& x, F f) {
  check_floating(op, "x", x);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() { out.mutable_array<T>() = f(x.array<T>()); });
  return out;
}

// Throws when x has an element outside an op's domain (the result would be a NaN).
template <class Bad>
void check_domain(const char* op, const Tensor& x, Bad bad, const char* expected) {
  dispatch_float(x.dtype(), [&]<class T>() {
    const T* p = x.data<T>();
    for (std::int64_t i = 0; i < x.numel(); ++i)
      if (bad(static_cast<double>(p[i]))) {
        const auto st = contiguous_strides(x.shape());
        std::vector<std::int64_t> pos;
        std::int64_t rem = i;
        for (int d = 0; d < x.dim(); ++d) {
          pos.push_back(rem / st[static_cast<std::size_t>(d)]);
          rem %= st[static_cast<std::size_t>(d)];
        }
        throw InvalidArgument(fmt::format("{}: x[{}] = {} is outside the domain (expected {}); the result would be NaN",
                                          op, fmt::join(pos, ", "), static_cast<double>(p[i]), expected));
      }
  });
}

// The saved slot of a tensor a VJP reads only when `needed` (an undefined Tensor otherwise, which
// costs nothing): e.g. mul keeps b only if a needs a gradient.
const Tensor& keep_if(bool needed, const Tensor& t) {
  static const Tensor none;
  return needed ? t : none;
}

}  // namespace

// ---- broadcasting ----

Tensor broadcast_to(const Tensor& x, const Shape& shape, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("broadcast_to", "x", x);
  const Shape target = broadcast_shapes("broadcast_to", "x", x.shape(), "shape", shape);
  if (target != shape)
    throw InvalidArgument(fmt::format("broadcast_to: x of shape {} cannot be expanded to {} (expected sizes that match or are 1 in x, aligned from the right)",
                                      x.shape(), shape));
  if (x.shape() == shape) return x;
  Tensor out = kernels::broadcast_to_forward(x, shape);
  record(OpDef{"broadcast_to", "dx = sum_to_size(g, x.shape)"}, {x}, out, {},
         [](const Tensor& g, const Saved& s) { return Grads{sum_to_size(g, s.shape(0))}; });
  return out;
}

Tensor sum_to_size(const Tensor& x, const Shape& shape, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("sum_to_size", "x", x);
  if (x.shape() == shape) return x;
  if (broadcast_shapes("sum_to_size", "shape", shape, "x", x.shape()) != x.shape())
    throw InvalidArgument(fmt::format("sum_to_size: x of shape {} cannot be summed to {} ({} must broadcast to x's shape)",
                                      x.shape(), shape, shape));
  Tensor out = kernels::sum_to_size_forward(x, shape);
  record(OpDef{"sum_to_size", "dx = broadcast_to(g, x.shape)"}, {x}, out, {},
         [](const Tensor& g, const Saved& s) { return Grads{broadcast_to(g, s.shape(0))}; });
  return out;
}

// ---- binary arithmetic ----
// Every VJP sums its gradient back to the input's shape (undoing the broadcast) and computes only
// the gradients of inputs that need one.

Tensor add(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = kernels::add_forward(a, b, check_binary("add", a, b));
  record(OpDef{"add", "da = g, db = g (each summed to its shape)"}, {a, b}, out, {},
         [](const Tensor& g, const Saved& s) {
           return Grads{s.needs_grad(0) ? sum_to_size(g, s.shape(0)) : Tensor(),
                        s.needs_grad(1) ? sum_to_size(g, s.shape(1)) : Tensor()};
         });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = kernels::sub_forward(a, b, check_binary("sub", a, b));
  record(OpDef{"sub", "da = g, db = −g (summed to shape)"}, {a, b}, out, {},
         [](const Tensor& g, const Saved& s) {
           return Grads{s.needs_grad(0) ? sum_to_size(g, s.shape(0)) : Tensor(),
                        s.needs_grad(1) ? sum_to_size(-g, s.shape(1)) : Tensor()};
         });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = kernels::mul_forward(a, b, check_binary("mul", a, b));
  // s[0] = a (kept when b needs a gradient), s[1] = b (kept when a needs one).
  record(OpDef{"mul", "da = g ⊙ b, db = g ⊙ a (summed to shape)"}, {a, b}, out,
         {keep_if(b.requires_grad(), a), keep_if(a.requires_grad(), b)}, [](const Tensor& g, const Saved& s) {
           return Grads{s.needs_grad(0) ? sum_to_size(g * s[1], s.shape(0)) : Tensor(),
                        s.needs_grad(1) ? sum_to_size(g * s[0], s.shape(1)) : Tensor()};
         });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = kernels::div_forward(a, b, check_binary("div", a, b));
  // s[0] = a (kept when b needs a gradient), s[1] = b.
  record(OpDef{"div", "da = g / b, db = −g ⊙ a / b² (summed to shape)"}, {a, b}, out,
         {keep_if(b.requires_grad(), a), b}, [](const Tensor& g, const Saved& s) {
           const Tensor& a = s[0];
           const Tensor& b = s[1];
           return Grads{s.needs_grad(0) ? sum_to_size(g / b, s.shape(0)) : Tensor(),
                        s.needs_grad(1) ? sum_to_size(-(g * a / (b * b)), s.shape(1)) : Tensor()};
         });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  if (b.defined() && b.requires_grad() && a.defined() && is_floating(a.dtype()))
    check_domain("pow", a, [](double v) { return v < 0; },
                 "base >= 0 when the exponent requires grad: d(a^b)/db = a^b log(a) is undefined for a < 0");
  Tensor out = kernels::pow_forward(a, b, check_binary("pow", a, b));
  dispatch_float(out.dtype(), [&]<class T>() {
    const T* po = out.data<T>();
    for (std::int64_t i = 0; i < out.numel(); ++i)
      if (std::isnan(po[i])) {
        bool input_nan = false;
        dispatch_float(a.dtype(), [&]<class U>() {
          input_nan = a.array<U>().isNaN().any() || b.array<U>().isNaN().any();
        });
        if (!input_nan)
          throw InvalidArgument(fmt::format("pow: a negative base with a non-integer exponent gives NaN (output element {}); expected a >= 0 or integer exponents", i));
        break;
      }
  });
  // s[0] = a, s[1] = b (kept when a needs a gradient), s[2] = y (kept when b needs one).
  record(OpDef{"pow", "da = g ⊙ b a^(b−1), db = g ⊙ y log a (0 where a = 0) (summed to shape)"}, {a, b}, out,
         {a, keep_if(a.requires_grad(), b), keep_if(b.requires_grad(), out)}, [](const Tensor& g, const Saved& s) {
           const Tensor& a = s[0];
           Tensor da, db;
           if (s.needs_grad(0)) {
             const Tensor& b = s[1];
             da = sum_to_size(g * b * pow(a, b - scalar_like(b, 1.0)), s.shape(0));
           }
           if (s.needs_grad(1)) {
             // a^b log a, with the limit 0 where a = 0 and b >= 0 (PyTorch's convention); a >= 0 here.
             const Tensor a_pos = gt(a, 0.0);
             const Tensor log_a = log(where(a_pos, a, 1.0));
             db = sum_to_size(where(a_pos, g * s[2] * log_a, 0.0), s.shape(1));
           }
           return Grads{da, db};
         });
  return out;
}

Tensor pow(const Tensor& a, double p, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("pow", "a", a);
  if (p != std::floor(p)) check_domain("pow", a, [](double v) { return v < 0; }, "a >= 0 for a non-integer exponent");
  Tensor out = float_unary("pow", a, [p](const auto& x) { return x.pow(static_cast<typename std::decay_t<decltype(x)>::Scalar>(p)); });
  // a^0 = 1 has gradient 0 and needs nothing saved.
  record(OpDef{"pow", "da = g ⊙ p a^(p−1)"}, {a}, out, {keep_if(p != 0.0, a)}, [p](const Tensor& g, const Saved& s) {
    if (p == 0.0) return Grads{zeros(s.shape(0), s.dtype(0))};
    return Grads{g * (pow(s[0], p - 1.0) * p)};
  });
  return out;
}

// maximum and minimum: the comparisons pick where g goes; ties split it (PyTorch).
Tensor maximum(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = kernels::maximum_forward(a, b, check_binary("maximum", a, b));
  record(OpDef{"maximum", "da = g ⊙ ([a > b] + ½[a = b]), db = g ⊙ ([b > a] + ½[a = b]) (summed to shape)"}, {a, b},
         out, {a, b}, [](const Tensor& g, const Saved& s) {
           const Tensor& a = s[0];
           const Tensor& b = s[1];
           const Tensor half = g * 0.5;
           const Tensor tie = eq(a, b);
           return Grads{s.needs_grad(0) ? sum_to_size(where(tie, half, where(gt(a, b), g, 0.0)), s.shape(0)) : Tensor(),
                        s.needs_grad(1) ? sum_to_size(where(tie, half, where(gt(b, a), g, 0.0)), s.shape(1)) : Tensor()};
         });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = kernels::minimum_forward(a, b, check_binary("minimum", a, b));
  record(OpDef{"minimum", "da = g ⊙ ([a < b] + ½[a = b]), db = g ⊙ ([b < a] + ½[a = b]) (summed to shape)"}, {a, b},
         out, {a, b}, [](const Tensor& g, const Saved& s) {
           const Tensor& a = s[0];
           const Tensor& b = s[1];
           const Tensor half = g * 0.5;
           const Tensor tie = eq(a, b);
           return Grads{s.needs_grad(0) ? sum_to_size(where(tie, half, where(lt(a, b), g, 0.0)), s.shape(0)) : Tensor(),
                        s.needs_grad(1) ? sum_to_size(where(tie, half, where(lt(b, a), g, 0.0)), s.shape(1)) : Tensor()};
         });
  return out;
}

Tensor add(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("add", "a", a); return add(a, scalar_like(a, b));
}
Tensor sub(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("sub", "a", a); return sub(a, scalar_like(a, b));
}
Tensor mul(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("mul", "a", a); return mul(a, scalar_like(a, b));
}
Tensor div(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("div", "a", a); return div(a, scalar_like(a, b));
}

// ---- unary ----

Tensor neg(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("neg", x, [](const auto& v) { return -v; });
  record(OpDef{"neg", "dx = −g"}, {x}, out, {}, [](const Tensor& g, const Saved&) { return Grads{-g}; });
  return out;
}

Tensor exp(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("exp", "x", x);
  Tensor out = kernels::exp_forward(x);
  record(OpDef{"exp", "dx = g ⊙ y"}, {x}, out, {out}, [](const Tensor& g, const Saved& s) { return Grads{g * s[0]}; });
  return out;
}

Tensor log(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("log", "x", x);
  check_domain("log", x, [](double v) { return v < 0; }, "x >= 0");
  Tensor out = float_unary("log", x, [](const auto& v) { return v.log(); });
  record(OpDef{"log", "dx = g / x"}, {x}, out, {x}, [](const Tensor& g, const Saved& s) { return Grads{g / s[0]}; });
  return out;
}

Tensor log1p(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("log1p", "x", x);
  check_domain("log1p", x, [](double v) { return v < -1; }, "x >= -1");
  Tensor out = float_unary("log1p", x, [](const auto& v) { return v.log1p(); });
  record(OpDef{"log1p", "dx = g / (1 + x)"}, {x}, out, {x},
         [](const Tensor& g, const Saved& s) { return Grads{g / (s[0] + 1.0)}; });
  return out;
}

Tensor sqrt(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("sqrt", "x", x);
  check_domain("sqrt", x, [](double v) { return v < 0; }, "x >= 0");
  Tensor out = float_unary("sqrt", x, [](const auto& v) { return v.sqrt(); });
  record(OpDef{"sqrt", "dx = g / (2y)"}, {x}, out, {out}, [](const Tensor& g, const Saved& s) { return Grads{g / (s[0] * 2.0)}; });
  return out;
}

Tensor sign(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  // sign(0) = 0; the gradient is 0 everywhere it exists, so nothing is recorded.
  return float_unary("sign", x, [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return (v > T(0)).template cast<T>() - (v < T(0)).template cast<T>();
  });
}

Tensor abs(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("abs", x, [](const auto& v) { return v.abs(); });
  record(OpDef{"abs", "dx = g ⊙ sign(x)"}, {x}, out, {x}, [](const Tensor& g, const Saved& s) { return Grads{g * sign(s[0])}; });
  return out;
}

Tensor tanh(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("tanh", x, [](const auto& v) { return v.tanh(); });
  record(OpDef{"tanh", "dx = g ⊙ (1 − y²)"}, {x}, out, {out}, [](const Tensor& g, const Saved& s) {
    const Tensor& y = s[0];
    return Grads{g * (scalar_like(y, 1.0) - y * y)};
  });
  return out;
}

Tensor sigmoid(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  // 1 / (1 + e^-x) overflows harmlessly to 0 for very negative x; Eigen's logistic is stable.
  Tensor out = float_unary("sigmoid", x, [](const auto& v) { return v.logistic(); });
  record(OpDef{"sigmoid", "dx = g ⊙ y ⊙ (1 − y)"}, {x}, out, {out}, [](const Tensor& g, const Saved& s) {
    const Tensor& y = s[0];
    return Grads{g * y * (scalar_like(y, 1.0) - y)};
  });
  return out;
}

// relu keeps its output, not x: y > 0 exactly where x > 0, and y is usually kept anyway by the op
// that reads it (a Linear's matmul), so x can be freed.
Tensor relu(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("relu", "x", x);
  Tensor out = kernels::relu_forward(x);
  record(OpDef{"relu", "dx = g ⊙ [y > 0]  (= g ⊙ [x > 0])"}, {x}, out, {out},
         [](const Tensor& g, const Saved& s) { return Grads{where(gt(s[0], 0.0), g, 0.0)}; },
         [](const Tensor& g, const Saved& s) { return Grads{kernels::relu_backward(s[0], g)}; });
  return out;
}

Tensor erf(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("erf", "x", x);
  Tensor out = kernels::erf_forward(x);
  record(OpDef{"erf", "dx = g ⊙ (2/√π) e^(−x²)"}, {x}, out, {x}, [](const Tensor& g, const Saved& s) {
    const Tensor& x = s[0];
    return Grads{g * (exp(-(x * x)) * (2.0 / std::sqrt(std::numbers::pi)))};
  });
  return out;
}

Tensor gelu(const Tensor& x, const std::string& approximate, SourceLocation site) {
  const SiteScope site_scope(site);
  if (approximate != "none" && approximate != "tanh")
    throw InvalidArgument(fmt::format("gelu: approximate = '{}'; expected 'none' or 'tanh'", approximate));
  check_floating("gelu", "x", x);
  if (approximate == "tanh") {
    // u = sqrt(2/pi) (x + 0.044715 x^3); composed from recorded ops, so every derivative follows.
    const double c = std::sqrt(2.0 / std::numbers::pi);
    Tensor u = mul(add(x, mul(mul(mul(x, x), x), 0.044715)), c);
    return mul(mul(x, 0.5), add(tanh(u), 1.0));
  }
  Tensor out = kernels::gelu_forward(x);
  record(OpDef{"gelu", "dx = g ⊙ (Φ(x) + x φ(x))"}, {x}, out, {x},
         [](const Tensor& g, const Saved& s) {
           // Phi(x) = (1 + erf(x / sqrt 2)) / 2,  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
           const Tensor& x = s[0];
           Tensor cdf = (erf(x * (std::numbers::sqrt2 / 2)) + 1.0) * 0.5;
           Tensor pdf = exp(x * x * -0.5) * (0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
           return Grads{g * (cdf + x * pdf)};
         },
         [](const Tensor& g, const Saved& s) { return Grads{kernels::gelu_backward(s[0], g)}; });
  return out;
}

Tensor clamp(const Tensor& x, double lo, double hi, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("clamp", "x", x);
  if (std::isnan(lo) || std::isnan(hi) || lo > hi)
    throw InvalidArgument(fmt::format("clamp: min={} and max={}; expected min <= max and neither NaN", lo, hi));
  Tensor out = kernels::clamp_forward(x, lo, hi);
  record(OpDef{"clamp", "dx = g ⊙ [lo ≤ x ≤ hi]"}, {x}, out, {x}, [lo, hi](const Tensor& g, const Saved& s) {
    const Tensor& x = s[0];
    return Grads{where(logical_and(ge(x, lo), le(x, hi)), g, 0.0)};
  });
  return out;
}

Tensor clamp_min(const Tensor& x, double lo, SourceLocation site) {
  const SiteScope site_scope(site);
  return clamp(x, lo, INFINITY);
}
Tensor clamp_max(const Tensor& x, double hi, SourceLocation site) {
  const SiteScope site_scope(site);
  return clamp(x, -INFINITY, hi);
}

// ---- selection ----

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("where", "cond", cond);
  if (cond.dtype() != kBool)
    throw InvalidArgument(fmt::format("where: cond has dtype {}; expected a bool mask (from a comparison such as gt(x, 0.0))",
                                      dtype_name(cond.dtype())));
  check_floating("where", "a", a);
  check_floating("where", "b", b);
  check_same_dtype("where", "a", a, "b", b);
  const Shape ab = broadcast_shapes("where", "a", a.shape(), "b", b.shape());
  const Shape shape = broadcast_shapes("where", "cond", cond.shape(), "a and b", ab);
  Tensor out = kernels::where_forward(cond, a, b, shape);
  // Only the mask is kept: the gradients route g, they do not read a or b.
  record(OpDef{"where", "da = g ⊙ c, db = g ⊙ ¬c (summed to shape)"}, {a, b}, out, {cond},
         [](const Tensor& g, const Saved& s) {
           const Tensor& cond = s[0];
           const Tensor zero = scalar_like(g, 0.0);
           return Grads{s.needs_grad(0) ? sum_to_size(where(cond, g, zero), s.shape(0)) : Tensor(),
                        s.needs_grad(1) ? sum_to_size(where(cond, zero, g), s.shape(1)) : Tensor()};
         });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("where", "a", a);
  return where(cond, a, scalar_like(a, b));
}

Tensor where(const Tensor& cond, double a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("where", "b", b);
  return where(cond, scalar_like(b, a), b);
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("masked_fill", "x", x);
  check_defined("masked_fill", "mask", mask);
  if (mask.dtype() != kBool)
    throw InvalidArgument(fmt::format("masked_fill: mask has dtype {}; expected a bool mask", dtype_name(mask.dtype())));
  if (broadcast_shapes("masked_fill", "mask", mask.shape(), "x", x.shape()) != x.shape())
    throw InvalidArgument(fmt::format("masked_fill: mask of shape {} does not broadcast to x of shape {} (the output keeps x's shape)",
                                      mask.shape(), x.shape()));
  return where(mask, scalar_like(x, value), x);
}

// ---- comparisons ----

namespace {
template <class F>
Tensor compare(const char* op, const Tensor& a, const Tensor& b, F f) {
  check_defined(op, "a", a);
  check_defined(op, "b", b);
  const DType dt = check_same_dtype(op, "a", a, "b", b);
  Tensor out = Tensor::empty(broadcast_shapes(op, "a", a.shape(), "b", b.shape()), kBool);
  dispatch_all(dt, [&]<class T>() { kernels::binary_map<T, T, bool>(a, b, out, f); });
  return out;
}
Tensor scalar_for(const char* op, const Tensor& a, double b) {
  check_defined(op, "a", a);
  return scalar_like(a, b);
}
}  // namespace

Tensor eq(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  return compare("eq", a, b, [](auto x, auto y) { return x == y; });
}
Tensor ne(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  return compare("ne", a, b, [](auto x, auto y) { return x != y; });
}
Tensor lt(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  return compare("lt", a, b, [](auto x, auto y) { return x < y; });
}
Tensor le(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  return compare("le", a, b, [](auto x, auto y) { return x <= y; });
}
Tensor gt(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  return compare("gt", a, b, [](auto x, auto y) { return x > y; });
}
Tensor ge(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  return compare("ge", a, b, [](auto x, auto y) { return x >= y; });
}
Tensor eq(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  return eq(a, scalar_for("eq", a, b));
}
Tensor ne(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  return ne(a, scalar_for("ne", a, b));
}
Tensor lt(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  return lt(a, scalar_for("lt", a, b));
}
Tensor le(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  return le(a, scalar_for("le", a, b));
}
Tensor gt(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  return gt(a, scalar_for("gt", a, b));
}
Tensor ge(const Tensor& a, double b, SourceLocation site) {
  const SiteScope site_scope(site);
  return ge(a, scalar_for("ge", a, b));
}

namespace {
void check_bool(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  if (t.dtype() != kBool)
    throw InvalidArgument(fmt::format("{}: {} has dtype {}; expected a bool mask", op, name, dtype_name(t.dtype())));
}
}  // namespace

Tensor logical_and(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_bool("logical_and", "a", a);
  check_bool("logical_and", "b", b);
  return compare("logical_and", a, b, [](bool x, bool y) { return x && y; });
}
Tensor logical_or(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_bool("logical_or", "a", a);
  check_bool("logical_or", "b", b);
  return compare("logical_or", a, b, [](bool x, bool y) { return x || y; });
}
Tensor logical_not(const Tensor& a, SourceLocation site) {
  const SiteScope site_scope(site);
  check_bool("logical_not", "a", a);
  Tensor out = Tensor::empty(a.shape(), kBool);
  const bool* pa = a.data<bool>();
  bool* po = out.mutable_data<bool>();
  for (std::int64_t i = 0; i < a.numel(); ++i) po[i] = !pa[i];
  return out;
}

Tensor isnan(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("isnan", "x", x);
  Tensor out = Tensor::empty(x.shape(), kBool);
  dispatch_float(x.dtype(), [&]<class T>() {
    for (std::int64_t i = 0; i < x.numel(); ++i) out.mutable_data<bool>()[i] = std::isnan(x.data<T>()[i]);
  });
  return out;
}

Tensor isinf(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("isinf", "x", x);
  Tensor out = Tensor::empty(x.shape(), kBool);
  dispatch_float(x.dtype(), [&]<class T>() {
    for (std::int64_t i = 0; i < x.numel(); ++i) out.mutable_data<bool>()[i] = std::isinf(x.data<T>()[i]);
  });
  return out;
}

// ---- operators ----
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator+(double a, const Tensor& b) { return add(b, a); }
Tensor operator-(double a, const Tensor& b) { check_floating("sub", "b", b); return sub(scalar_like(b, a), b); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(double a, const Tensor& b) { check_floating("div", "b", b); return div(scalar_like(b, a), b); }


// ---- more unary ops (issue 11) ----

Tensor sin(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("sin", x, [](const auto& v) { return v.sin(); });
  record(OpDef{"sin", "dx = g ⊙ cos(x)"}, {x}, out, {x}, [](const Tensor& g, const Saved& s) { return Grads{g * cos(s[0])}; });
  return out;
}

Tensor cos(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("cos", x, [](const auto& v) { return v.cos(); });
  record(OpDef{"cos", "dx = −g ⊙ sin(x)"}, {x}, out, {x}, [](const Tensor& g, const Saved& s) { return Grads{-(g * sin(s[0]))}; });
  return out;
}

// softplus: z = beta x;  y = x where z > threshold, else (max(z, 0) + log1p(exp(-|z|))) / beta
// (= log(1 + e^z) / beta without overflow).      dx = g sigmoid(z), g where z > threshold.
// The VJP is tensor ops (sigmoid's own VJP gives the second derivative beta s (1 - s)); the mask
// carries no gradient, as PyTorch's.
Tensor softplus(const Tensor& x, double beta, double threshold, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("softplus", "x", x);
  if (std::isnan(beta) || std::isinf(beta) || beta == 0.0)
    throw InvalidArgument(fmt::format("softplus: beta = {}; expected a finite, nonzero beta (softplus divides by it; "
                                      "the default is 1)", beta));
  if (std::isnan(threshold))
    throw InvalidArgument(fmt::format("softplus: threshold = {}; expected a number (beta x above it is returned as x; "
                                      "the default is 20)", threshold));
  Tensor out = kernels::softplus_forward(x, beta, threshold);
  record(OpDef{"softplus", "dx = g ⊙ σ(βx)  (g where βx > threshold)"}, {x}, out, {x},
         [beta, threshold](const Tensor& g, const Saved& s) {
           const Tensor z = s[0] * beta;
           return Grads{where(gt(z, threshold), g, g * sigmoid(z))};
         });
  return out;
}

// leaky_relu: y = x [x > 0] + s x [x <= 0];   dx = g [x > 0] + s g [x <= 0] (s at x = 0, as PyTorch).
Tensor leaky_relu(const Tensor& x, double negative_slope, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("leaky_relu", "x", x);
  if (!std::isfinite(negative_slope))
    throw InvalidArgument(fmt::format("leaky_relu: negative_slope = {}; expected a finite number (the default is 0.01)",
                                      negative_slope));
  Tensor out = kernels::leaky_relu_forward(x, negative_slope);
  record(OpDef{"leaky_relu", "dx = g ⊙ [x > 0] + s g ⊙ [x ≤ 0]"}, {x}, out, {x},
         [negative_slope](const Tensor& g, const Saved& s) { return Grads{where(gt(s[0], 0.0), g, g * negative_slope)}; });
  return out;
}

}  // namespace tapegrad
