// SPDX-License-Identifier: MIT
#include "ops/norm.hpp"

#include "autodiff/detail/node.hpp"
#include "autodiff/site.hpp"

#include <cmath>

#include <fmt/format.h>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/kernels/norm.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"

namespace tapegrad {

namespace {

// The recorded form of the VJP (for create_graph): the formula with tensor ops on x2 [R, D].
Grads layer_norm_vjp_ops(const Tensor& g2, const Tensor& x2, const Tensor& w, bool want_x, bool want_w, bool want_b,
                         double eps) {
  Tensor mu = mean(x2, -1, true);
  Tensor xc = sub(x2, mu);
  Tensor rstd = div(scalar_like(x2, 1.0), sqrt(add(mean(mul(xc, xc), -1, true), eps)));
  Tensor xhat = mul(xc, rstd);
  Tensor dx, dw, db;
  if (want_x) {
    Tensor dxhat = w.defined() ? mul(g2, w) : g2;
    dx = mul(rstd, sub(sub(dxhat, mean(dxhat, -1, true)), mul(xhat, mean(mul(dxhat, xhat), -1, true))));
  }
  if (want_w) dw = sum(mul(g2, xhat), 0);
  if (want_b) db = sum(g2, 0);
  return Grads{dx, dw, db};
}

}  // namespace

Tensor layer_norm(const Tensor& x, const std::vector<std::int64_t>& normalized_shape, const Tensor& weight,
                  const Tensor& bias, double eps, SourceLocation site) {
  const SiteScope site_scope(site);
  const char* op = "layer_norm";
  check_floating(op, "x", x);
  const int nd = static_cast<int>(normalized_shape.size());
  const Shape ns(normalized_shape);
  bool fits = nd >= 1 && nd <= x.dim();
  for (int i = 0; fits && i < nd; ++i) fits = x.size(x.dim() - nd + i) == normalized_shape[static_cast<std::size_t>(i)];
  if (!fits)
    throw InvalidArgument(fmt::format("{}: normalized_shape {} does not match the trailing dims of x {} (expected x's "
                                      "last {} dims to be {})", op, ns, x.shape(), nd, ns));
  for (const auto& [name, t] : {std::pair{"weight", &weight}, std::pair{"bias", &bias}})
    if (t->defined()) {
      check_same_dtype(op, "x", x, name, *t);
      if (t->shape() != ns)
        throw InvalidArgument(fmt::format("{}: {} has shape {}; expected normalized_shape {}", op, name, t->shape(), ns));
    }
  // eps = 0 divides by zero on a constant row (var = 0: rstd = inf, xhat = 0 · inf = NaN); an
  // infinite eps maps every row to 0 (bias).
  if (!(eps > 0) || !std::isfinite(eps))
    throw InvalidArgument(fmt::format("{}: eps = {}; expected a finite eps > 0 (rstd = 1 / sqrt(var + eps) is infinite "
                                      "for a constant row when eps = 0; PyTorch's default is 1e-5)", op, eps));
  const std::int64_t D = ns.numel();
  const std::int64_t R = D == 0 ? 0 : x.numel() / D;
  if (D == 0) throw InvalidArgument(fmt::format("{}: normalized_shape {} has no elements", op, ns));

  Tensor stats;  // mean and rstd per row, for the fused VJP
  Tensor out = kernels::layer_norm_forward(x, D, weight, bias, eps, stats);

  // inputs x[, weight][, bias]; saved x, stats[, weight]
  const bool has_w = weight.defined(), has_b = bias.defined();
  std::vector<Tensor> inputs = {x}, saved = {x, stats};
  if (has_w) inputs.push_back(weight), saved.push_back(weight);
  if (has_b) inputs.push_back(bias);
  const std::size_t k_b = has_w ? 2 : 1;  // bias's input position
  // One gradient per input, each reshaped to its input's shape.
  auto grads = [has_w, has_b, k_b](const Saved& s, Tensor dx, Tensor dw, Tensor db) {
    Grads res{dx.defined() ? reshape(dx, s.shape(0).to_vector()) : Tensor()};
    if (has_w) res.push_back(dw.defined() ? reshape(dw, s.shape(1).to_vector()) : Tensor());
    if (has_b) res.push_back(db.defined() ? reshape(db, s.shape(k_b).to_vector()) : Tensor());
    return res;
  };
  record({op, "g' = g ⊙ γ; dx = (g' − mean(g') − x̂ ⊙ mean(g' ⊙ x̂)) / σ, dγ = Σ g ⊙ x̂, dβ = Σ g"}, inputs, out, saved,
         [R, D, has_w, k_b, eps, grads](const Tensor& g, const Saved& s) {
           const Tensor w = has_w ? reshape(s[2], {D}) : Tensor();
           Grads r = layer_norm_vjp_ops(reshape(g, {R, D}), reshape(s[0], {R, D}), w, s.needs_grad(0),
                                        has_w && s.needs_grad(1), s.inputs() > k_b && s.needs_grad(k_b), eps);
           return grads(s, r[0], r[1], r[2]);
         },
         [D, has_w, k_b, grads](const Tensor& g, const Saved& s) {
           const kernels::LayerNormGrads r =
               kernels::layer_norm_backward(g, s[0], s[1], has_w ? s[2] : Tensor(), D, s.needs_grad(0),
                                            has_w && s.needs_grad(1), s.inputs() > k_b && s.needs_grad(k_b));
           return grads(s, r.dx, r.dw, r.db);
         });
  return out;
}

}  // namespace tapegrad
