// SPDX-License-Identifier: MIT
#include "ops/softmax.hpp"

#include "autodiff/detail/node.hpp"
#include "autodiff/site.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

#include <fmt/ranges.h>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/kernels/softmax.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"

namespace tapegrad {

namespace {

// Validates and returns the normalised dim (NaN/+inf logits are reported by the kernels).
int check_softmax_input(const char* op, const Tensor& x, int dim) {
  check_floating(op, "x", x);
  return check_dim(op, "x", x, dim);
}

// An empty x (no rows, or K = 0): PyTorch's values, an empty softmax/log_softmax and, for
// logsumexp over K = 0, log(0) = -inf per row. The gradient of x has no elements: zeros of x's shape.
Tensor empty_rows(const char* op, const Tensor& x, const Shape& out_shape, double fill) {
  Tensor y = full(out_shape, fill, x.dtype());
  record({op, "dx = 0 (x has no elements)"}, {x}, y, {},
         [](const Tensor&, const Saved& s) { return Grads{zeros(s.shape(0), s.dtype(0))}; });
  return y;
}

// Bool mask, x's shape with dim kept as 1: true where the whole row is -inf.
Tensor fully_masked_rows(const Tensor& y, int d) { return isinf(max(y, d, /*keepdim=*/true)); }

}  // namespace

// softmax along dim: y = exp(x − max) / Σ exp(x − max). The VJP is O(K) per row, no Jacobian.
Tensor softmax(const Tensor& x, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("softmax", x, dim);
  if (x.numel() == 0) return empty_rows("softmax", x, x.shape(), 0.0);
  Tensor y = kernels::softmax_forward("softmax", x, d);
  record({"softmax", "dx = y ⊙ (g − Σ g ⊙ y)"}, {x}, y, /*saved=*/{y},
         [d](const Tensor& g, const Saved& s) { const Tensor& y = s[0]; return Grads{y * (g - sum(g * y, d, true))}; },
         [d](const Tensor& g, const Saved& s) { return Grads{kernels::softmax_backward(s[0], g, d)}; });
  return y;
}

// log_softmax along dim: y = x − max − log Σ exp(x − max); exp(y) = softmax(x). The fused backward
// reads the forward's exp(x − max) and 1 / Σ per row (no exp in backward).
Tensor log_softmax(const Tensor& x, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("log_softmax", x, dim);
  if (x.numel() == 0) return empty_rows("log_softmax", x, x.shape(), 0.0);
  Tensor e;  // filled only when the op will be recorded
  Tensor y = kernels::log_softmax_forward("log_softmax", x, d, detail::should_record({x}) ? &e : nullptr);
  record({"log_softmax", "dx = g − softmax(x) Σ g"}, {x}, y, /*saved=*/{y, e},
         [d](const Tensor& g, const Saved& s) {
           const Tensor& y = s[0];
           return Grads{where(fully_masked_rows(y.detach(), d), 0.0, g - exp(y) * sum(g, d, true))};
         },
         [d](const Tensor& g, const Saved& s) { return Grads{kernels::log_softmax_backward(s[1], g, d)}; });
  return y;
}

// logsumexp along dim: y = max + log Σ exp(x − max).
Tensor logsumexp(const Tensor& x, int dim, bool keepdim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_softmax_input("logsumexp", x, dim);
  if (x.numel() == 0) {
    Shape out = x.shape();
    if (out.rank() > 0) out.erase(d);
    if (keepdim && x.dim() > 0) out.insert(d, 1);
    return empty_rows("logsumexp", x, out, -std::numeric_limits<double>::infinity());
  }
  Tensor y = kernels::logsumexp_forward("logsumexp", x, d);
  if (!keepdim && y.dim() > 0) {
    Shape squeezed_shape = y.shape();
    squeezed_shape.erase(d);
    y = y.alias(squeezed_shape);
  }
  const bool squeezed = !keepdim && x.dim() > 0;
  record({"logsumexp", "dx = g ⊙ softmax(x)"}, {x}, y, /*saved=*/{x, y},
         [d, squeezed](const Tensor& g, const Saved& s) { return Grads{(squeezed ? unsqueeze(g, d) : g) * softmax(s[0], d)}; },
         [d](const Tensor& g, const Saved& s) { return Grads{kernels::logsumexp_backward(s[0], s[1], g, d)}; });
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
  record({"temperature_scale", "dx = g / T, dT = −Σ (x / T) ⊙ g / T (0 where x = ±inf or g = 0)"}, {x, temperature}, out,
         /*saved=*/{x, temperature}, [](const Tensor& g, const Saved& s) {
           const Tensor& x = s[0];
           const Tensor& t = s[1];
           return Grads{s.needs_grad(0) ? sum_to_size(g / t, x.shape()) : Tensor(),
                        s.needs_grad(1) ? temperature_grad(x, t, g) : Tensor()};
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
  record({"log_softmax", "dz = g − p Σ g (p = exp(y)), dx = dz / T, dT = −Σ (x / T) ⊙ dz₀ / T (dz₀: g without y = −inf)"},
         {x, temperature}, y, /*saved=*/{y, x, temperature}, [d](const Tensor& g, const Saved& s) {
           const Tensor& y = s[0];
           const Tensor& x = s[1];
           const Tensor& t = s[2];
           const Tensor p = exp(y);
           Grads r{Tensor(), Tensor()};
           if (s.needs_grad(0)) {
             const Tensor dz = where(fully_masked_rows(y.detach(), d), 0.0, g - p * sum(g, d, true));
             r[0] = sum_to_size(dz / t, x.shape());
           }
           if (s.needs_grad(1)) {
             const Tensor g0 = where(isinf(y.detach()), 0.0, g);
             r[1] = temperature_grad(x, t, g0 - p * sum(g0, d, true));
           }
           return r;
         });
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
