// SPDX-License-Identifier: MIT
#include "ops/elementwise.hpp"

#include "autodiff/site.hpp"

#include <cmath>
#include <numbers>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/kernels.hpp"

namespace tapegrad {

namespace {

using Idx4 = std::array<std::int64_t, kMaxRank>;

// Sizes of `s` right-aligned in 4 dims, leading dims 1.
Idx4 padded_sizes(const Shape& s) {
  Idx4 p{1, 1, 1, 1};
  for (int i = 0; i < s.rank(); ++i) p[static_cast<std::size_t>(kMaxRank - s.rank() + i)] = s[i];
  return p;
}

// Strides of `in` seen through the broadcast to `out` (right-aligned, 0 where `in` has size 1).
Idx4 broadcast_strides(const Shape& in, const Shape& out) {
  Idx4 st{0, 0, 0, 0};
  const auto cs = contiguous_strides(in);
  const int off = kMaxRank - in.rank();
  for (int i = 0; i < in.rank(); ++i)
    st[static_cast<std::size_t>(off + i)] = in[i] == 1 ? 0 : cs[static_cast<std::size_t>(i)];
  (void)out;
  return st;
}

// Calls f(i, ia, ib) for every flat output index i with the matching flat input offsets.
template <class F>
void for_each_broadcast(const Shape& out, const Shape& a, const Shape& b, F&& f) {
  const Idx4 n = padded_sizes(out);
  const Idx4 sa = broadcast_strides(a, out);
  const Idx4 sb = broadcast_strides(b, out);
  std::int64_t i = 0;
  for (std::int64_t i0 = 0; i0 < n[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < n[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < n[2]; ++i2) {
        const std::int64_t oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];
        const std::int64_t ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];
        for (std::int64_t i3 = 0; i3 < n[3]; ++i3) f(i++, oa + i3 * sa[3], ob + i3 * sb[3]);
      }
}

// Whether `inner` (leading size-1 dims ignored) is the trailing part of `outer`: then outer is
// [outer.numel() / inner.numel(), inner.numel()] rows that each line up with inner (a bias).
bool is_trailing(const Shape& inner, const Shape& outer) {
  int k = 0;
  while (k < inner.rank() && inner[k] == 1) ++k;
  const int r = inner.rank() - k;
  if (r > outer.rank()) return false;
  for (int d = 0; d < r; ++d)
    if (inner[k + d] != outer[outer.rank() - r + d]) return false;
  return true;
}

// out = f(a, b) elementwise with broadcasting; A, B input element types, O output type.
template <class A, class B, class O, class F>
void binary_loop(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const A* pa = a.data<A>();
  const B* pb = b.data<B>();
  O* po = out.mutable_data<O>();
  const std::int64_t n = out.numel();
  if (a.shape() == out.shape() && b.shape() == out.shape()) {
    for (std::int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
  } else if (a.shape() == out.shape() && b.numel() == 1) {
    const B vb = pb[0];
    for (std::int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
  } else if (b.shape() == out.shape() && a.numel() == 1) {
    const A va = pa[0];
    for (std::int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
  } else if (a.shape() == out.shape() && is_trailing(b.shape(), out.shape())) {  // x + bias
    const std::int64_t c = b.numel();
    for (std::int64_t r = 0; r < n; r += c)
      for (std::int64_t j = 0; j < c; ++j) po[r + j] = f(pa[r + j], pb[j]);
  } else if (b.shape() == out.shape() && is_trailing(a.shape(), out.shape())) {
    const std::int64_t c = a.numel();
    for (std::int64_t r = 0; r < n; r += c)
      for (std::int64_t j = 0; j < c; ++j) po[r + j] = f(pa[j], pb[r + j]);
  } else {
    for_each_broadcast(out.shape(), a.shape(), b.shape(),
                       [&](std::int64_t i, std::int64_t ia, std::int64_t ib) { po[i] = f(pa[ia], pb[ib]); });
  }
}

// A floating binary op: validates, broadcasts, computes f on T = float or double.
template <class F>
Tensor float_binary(const char* op, const Tensor& a, const Tensor& b, F f) {
  check_floating(op, "a", a);
  check_floating(op, "b", b);
  const DType dt = check_same_dtype(op, "a", a, "b", b);
  Tensor out = Tensor::empty(broadcast_shapes(op, "a", a.shape(), "b", b.shape()), dt);
  dispatch_float(dt, [&]<class T>() { binary_loop<T, T, T>(a, b, out, f); });
  return out;
}

// A floating unary op: f maps an Eigen array expression to an array expression.
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
  Tensor out = Tensor::empty(shape, x.dtype(), "broadcast_to");
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.mutable_data<T>();
    for_each_broadcast(shape, x.shape(), x.shape(), [&](std::int64_t i, std::int64_t ix, std::int64_t) { po[i] = px[ix]; });
  });
  const Shape in_shape = x.shape();
  record("broadcast_to", {x}, out, [in_shape](const Tensor& g, const Tensor&) { return Grads{sum_to_size(g, in_shape)}; });
  return out;
}

Tensor sum_to_size(const Tensor& x, const Shape& shape, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("sum_to_size", "x", x);
  if (x.shape() == shape) return x;
  if (broadcast_shapes("sum_to_size", "shape", shape, "x", x.shape()) != x.shape())
    throw InvalidArgument(fmt::format("sum_to_size: x of shape {} cannot be summed to {} ({} must broadcast to x's shape)",
                                      x.shape(), shape, shape));
  // An empty x sums to zeros (and the kernels below would divide by a zero column count).
  const bool trailing = x.numel() > 0 && (shape.numel() == 1 || is_trailing(shape, x.shape()));  // written whole: no zero fill
  Tensor out = trailing ? Tensor::empty(shape, x.dtype()) : zeros(shape, x.dtype());
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
  const Shape in_shape = x.shape();
  record("sum_to_size", {x}, out, [in_shape](const Tensor& g, const Tensor&) { return Grads{broadcast_to(g, in_shape)}; });
  return out;
}

// ---- binary arithmetic ----

Tensor add(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_binary("add", a, b, [](auto x, auto y) { return x + y; });
  record("add", {a, b}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    return Grads{a.requires_grad() ? sum_to_size(g, a.shape()) : Tensor(),
                 b.requires_grad() ? sum_to_size(g, b.shape()) : Tensor()};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_binary("sub", a, b, [](auto x, auto y) { return x - y; });
  record("sub", {a, b}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    return Grads{a.requires_grad() ? sum_to_size(g, a.shape()) : Tensor(),
                 b.requires_grad() ? sum_to_size(neg(g), b.shape()) : Tensor()};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_binary("mul", a, b, [](auto x, auto y) { return x * y; });
  record("mul", {a, b}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    return Grads{a.requires_grad() ? sum_to_size(mul(g, b), a.shape()) : Tensor(),
                 b.requires_grad() ? sum_to_size(mul(g, a), b.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_binary("div", a, b, [](auto x, auto y) { return x / y; });
  record("div", {a, b}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    return Grads{a.requires_grad() ? sum_to_size(div(g, b), a.shape()) : Tensor(),
                 b.requires_grad() ? sum_to_size(neg(div(mul(g, a), mul(b, b))), b.shape()) : Tensor()};
  });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  if (b.defined() && b.requires_grad() && a.defined() && is_floating(a.dtype()))
    check_domain("pow", a, [](double v) { return v < 0; },
                 "base >= 0 when the exponent requires grad: d(a^b)/db = a^b log(a) is undefined for a < 0");
  Tensor out = float_binary("pow", a, b, [](auto x, auto y) { return std::pow(x, y); });
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
  record("pow", {a, b}, out, [](const Tensor& g, const Tensor& y, const InputList& in) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    Tensor da, db;
    if (a.requires_grad()) da = sum_to_size(mul(mul(g, b), pow(a, sub(b, scalar_like(b, 1.0)))), a.shape());
    if (b.requires_grad()) {
      // a^b log a, with the limit 0 where a = 0 and b >= 0 (PyTorch's convention); a >= 0 here.
      const Tensor a_pos = gt(a, 0.0);
      const Tensor log_a = log(where(a_pos, a, 1.0));
      db = sum_to_size(where(a_pos, mul(mul(g, y), log_a), 0.0), b.shape());
    }
    return Grads{da, db};
  }, /*save_out=*/true);
  return out;
}

Tensor pow(const Tensor& a, double p, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("pow", "a", a);
  if (p != std::floor(p)) check_domain("pow", a, [](double v) { return v < 0; }, "a >= 0 for a non-integer exponent");
  Tensor out = float_unary("pow", a, [p](const auto& x) { return x.pow(static_cast<typename std::decay_t<decltype(x)>::Scalar>(p)); });
  record("pow", {a}, out, [a, p](const Tensor& g, const Tensor&) {
    if (p == 0.0) return Grads{zeros_like(a)};
    return Grads{mul(g, mul(pow(a, p - 1.0), p))};
  });
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_binary("maximum", a, b, [](auto x, auto y) { return (x != x || y != y) ? x + y : (x > y ? x : y); });
  record("maximum", {a, b}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    const Tensor half = mul(g, 0.5);
    const Tensor tie = eq(a, b);
    return Grads{a.requires_grad() ? sum_to_size(where(tie, half, where(gt(a, b), g, 0.0)), a.shape()) : Tensor(),
                 b.requires_grad() ? sum_to_size(where(tie, half, where(gt(b, a), g, 0.0)), b.shape()) : Tensor()};
  });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_binary("minimum", a, b, [](auto x, auto y) { return (x != x || y != y) ? x + y : (x < y ? x : y); });
  record("minimum", {a, b}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& a = in[0];
    const Tensor& b = in[1];
    const Tensor half = mul(g, 0.5);
    const Tensor tie = eq(a, b);
    return Grads{a.requires_grad() ? sum_to_size(where(tie, half, where(lt(a, b), g, 0.0)), a.shape()) : Tensor(),
                 b.requires_grad() ? sum_to_size(where(tie, half, where(lt(b, a), g, 0.0)), b.shape()) : Tensor()};
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
  record("neg", {x}, out, [](const Tensor& g, const Tensor&) { return Grads{neg(g)}; });
  return out;
}

Tensor exp(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("exp", x, [](const auto& v) { return v.exp(); });
  dispatch_float(out.dtype(), [&]<class T>() { kernels::flush_subnormal(out.mutable_array<T>()); });  // exp(-inf) = 0
  record("exp", {x}, out, [](const Tensor& g, const Tensor& y) { return Grads{mul(g, y)}; }, /*save_out=*/true);
  return out;
}

Tensor log(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("log", "x", x);
  check_domain("log", x, [](double v) { return v < 0; }, "x >= 0");
  Tensor out = float_unary("log", x, [](const auto& v) { return v.log(); });
  record("log", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    return Grads{div(g, x)}; });
  return out;
}

Tensor log1p(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("log1p", "x", x);
  check_domain("log1p", x, [](double v) { return v < -1; }, "x >= -1");
  Tensor out = float_unary("log1p", x, [](const auto& v) { return v.log1p(); });
  record("log1p", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    return Grads{div(g, add(x, 1.0))}; });
  return out;
}

Tensor sqrt(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("sqrt", "x", x);
  check_domain("sqrt", x, [](double v) { return v < 0; }, "x >= 0");
  Tensor out = float_unary("sqrt", x, [](const auto& v) { return v.sqrt(); });
  record("sqrt", {x}, out, [](const Tensor& g, const Tensor& y) { return Grads{div(g, mul(y, 2.0))}; }, /*save_out=*/true);
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
  record("abs", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    return Grads{mul(g, sign(x))}; });
  return out;
}

Tensor tanh(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("tanh", x, [](const auto& v) { return v.tanh(); });
  record("tanh", {x}, out, [](const Tensor& g, const Tensor& y) { return Grads{mul(g, sub(scalar_like(y, 1.0), mul(y, y)))}; },
         /*save_out=*/true);
  return out;
}

Tensor sigmoid(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  // 1 / (1 + e^-x) overflows harmlessly to 0 for very negative x; Eigen's logistic is stable.
  Tensor out = float_unary("sigmoid", x, [](const auto& v) { return v.logistic(); });
  record("sigmoid", {x}, out, [](const Tensor& g, const Tensor& y) { return Grads{mul(mul(g, y), sub(scalar_like(y, 1.0), y))}; },
         /*save_out=*/true);
  return out;
}

Tensor relu(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("relu", x, [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.max(T(0));
  });
  record("relu", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    if (GradMode::is_enabled()) return Grads{where(gt(x, 0.0), g, 0.0)};  // create_graph: recorded
    // Fused: dx = g [x > 0] in one pass. A plain loop the compiler turns into vector compares
    // and blends (Eigen 3.4's select() is evaluated one scalar at a time, with a branch).
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    dispatch_float(x.dtype(), [&]<class T>() {
      const T* xs = x.data<T>();
      const T* gs = g.data<T>();
      T* out = dx.mutable_data<T>();
      const std::int64_t n = x.numel();
      for (std::int64_t i = 0; i < n; ++i) {
        const T gi = gs[i];  // loaded unconditionally, so the loop has no branch to vectorise around
        out[i] = xs[i] > T(0) ? gi : T(0);
      }
    });
    return Grads{dx}; });
  return out;
}

Tensor erf(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("erf", x, [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.unaryExpr([](T a) { return std::erf(a); });
  });
  record("erf", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    return Grads{mul(g, mul(exp(neg(mul(x, x))), 2.0 / std::sqrt(std::numbers::pi)))}; });
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
  Tensor out = float_unary("gelu", x, [](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.unaryExpr([](T a) { return T(0.5) * a * (T(1) + std::erf(a * T(std::numbers::sqrt2 / 2))); });
  });
  record("gelu", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    if (!GradMode::is_enabled()) {
      // Fused: dx = g (Phi(x) + x phi(x)), one pass.
      Tensor dx = Tensor::empty(x.shape(), x.dtype());
      dispatch_float(x.dtype(), [&]<class T>() {
        const T* px = x.data<T>();
        const T* pg = g.data<T>();
        T* pd = dx.mutable_data<T>();
        const T inv_sqrt2 = T(std::numbers::sqrt2 / 2), inv_sqrt2pi = T(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
        for (std::int64_t i = 0; i < x.numel(); ++i) {
          const T a = px[i];
          pd[i] = pg[i] * (T(0.5) * (T(1) + std::erf(a * inv_sqrt2)) + a * inv_sqrt2pi * std::exp(T(-0.5) * a * a));
        }
      });
      return Grads{dx};
    }
    // Phi(x) = (1 + erf(x / sqrt 2)) / 2,  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    Tensor cdf = mul(add(erf(mul(x, std::numbers::sqrt2 / 2)), 1.0), 0.5);
    Tensor pdf = mul(exp(mul(mul(x, x), -0.5)), 0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
    return Grads{mul(g, add(cdf, mul(x, pdf)))}; });
  return out;
}

Tensor clamp(const Tensor& x, double lo, double hi, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("clamp", "x", x);
  if (std::isnan(lo) || std::isnan(hi) || lo > hi)
    throw InvalidArgument(fmt::format("clamp: min={} and max={}; expected min <= max and neither NaN", lo, hi));
  Tensor out = float_unary("clamp", x, [lo, hi](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.max(static_cast<T>(lo)).min(static_cast<T>(hi));
  });
  record("clamp", {x}, out, [x, lo, hi](const Tensor& g, const Tensor&) {
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
  const DType dt = check_same_dtype("where", "a", a, "b", b);
  const Shape ab = broadcast_shapes("where", "a", a.shape(), "b", b.shape());
  const Shape shape = broadcast_shapes("where", "cond", cond.shape(), "a and b", ab);
  Tensor out = Tensor::empty(shape, dt);
  dispatch_float(dt, [&]<class T>() {
    const bool* pc = cond.data<bool>();
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.mutable_data<T>();
    const Idx4 n = padded_sizes(shape);
    const Idx4 sc = broadcast_strides(cond.shape(), shape);
    const Idx4 sa = broadcast_strides(a.shape(), shape);
    const Idx4 sb = broadcast_strides(b.shape(), shape);
    std::int64_t i = 0;
    for (std::int64_t i0 = 0; i0 < n[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < n[1]; ++i1)
        for (std::int64_t i2 = 0; i2 < n[2]; ++i2)
          for (std::int64_t i3 = 0; i3 < n[3]; ++i3, ++i) {
            const std::int64_t oc = i0 * sc[0] + i1 * sc[1] + i2 * sc[2] + i3 * sc[3];
            const std::int64_t oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2] + i3 * sa[3];
            const std::int64_t ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2] + i3 * sb[3];
            po[i] = pc[oc] ? pa[oa] : pb[ob];
          }
  });
  record("where", {a, b}, out, [cond, a, b](const Tensor& g, const Tensor&) {
    const Tensor zero = scalar_like(g, 0.0);
    return Grads{a.requires_grad() ? sum_to_size(where(cond, g, zero), a.shape()) : Tensor(),
                 b.requires_grad() ? sum_to_size(where(cond, zero, g), b.shape()) : Tensor()};
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
  dispatch_all(dt, [&]<class T>() { binary_loop<T, T, bool>(a, b, out, f); });
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
  record("sin", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) { return Grads{mul(g, cos(in[0]))}; });
  return out;
}

Tensor cos(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  Tensor out = float_unary("cos", x, [](const auto& v) { return v.cos(); });
  record("cos", {x}, out, [](const Tensor& g, const Tensor&, const InputList& in) { return Grads{neg(mul(g, sin(in[0])))}; });
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
  Tensor out = float_unary("softplus", x, [beta, threshold](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return v.unaryExpr([b = static_cast<T>(beta), th = static_cast<T>(threshold)](T a) {
      const T z = a * b;
      if (z > th) return a;
      return ((z > T(0) ? z : T(0)) + std::log1p(std::exp(-std::abs(z)))) / b;
    });
  });
  record("softplus", {x}, out, [beta, threshold](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor z = mul(in[0], beta);
    return Grads{where(gt(z, threshold), g, mul(g, sigmoid(z)))};
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
  Tensor out = float_unary("leaky_relu", x, [negative_slope](const auto& v) {
    using T = typename std::decay_t<decltype(v)>::Scalar;
    return (v > T(0)).select(v, v * static_cast<T>(negative_slope));
  });
  record("leaky_relu", {x}, out, [negative_slope](const Tensor& g, const Tensor&, const InputList& in) {
    return Grads{where(gt(in[0], 0.0), g, mul(g, negative_slope))};
  });
  return out;
}

}  // namespace tapegrad
