// SPDX-License-Identifier: MIT
#include "ops/norm.hpp"

#include "autodiff/site.hpp"

#include <cmath>

#include <fmt/format.h>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
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

  Tensor out = Tensor::empty(x.shape(), x.dtype());
  Tensor stats = Tensor::empty({R, 2}, x.dtype());  // mean, rstd per row: saved for the fused VJP
  dispatch_float(x.dtype(), [&]<class T>() {
    using Row = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    using ORow = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    const T* px = x.data<T>();
    T* po = out.mutable_data<T>();
    T* ps = stats.mutable_data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    const T* pb = bias.defined() ? bias.data<T>() : nullptr;
    for (std::int64_t r = 0; r < R; ++r) {
      const Row xr(px + r * D, D);
      const T mu = xr.mean();
      const T var = (xr - mu).square().mean();
      const T rstd = T(1) / std::sqrt(var + static_cast<T>(eps));
      ORow yr(po + r * D, D);
      yr = (xr - mu) * rstd;
      if (pw) yr *= Row(pw, D);
      if (pb) yr += Row(pb, D);
      ps[2 * r] = mu;
      ps[2 * r + 1] = rstd;
    }
  });
  std::vector<Tensor> inputs = {x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  const bool has_w = weight.defined(), has_b = bias.defined();
  auto vjp = [stats, R, D, has_w, has_b, eps](const Tensor& g, const Tensor&, const InputList& in) {
    const Tensor& x = in[0];
    const Tensor w = has_w ? in[1] : Tensor();
    const bool want_w = has_w && in[1].requires_grad();
    const bool want_b = has_b && in[has_w ? 2 : 1].requires_grad();
    Grads out;
    if (GradMode::is_enabled()) {  // create_graph: the formula as recorded ops
      Grads r = layer_norm_vjp_ops(reshape(g, {R, D}), reshape(x, {R, D}), w.defined() ? reshape(w, {D}) : w,
                                   x.requires_grad(), want_w, want_b, eps);
      Grads res{r[0].defined() ? reshape(r[0], x.shape().to_vector()) : Tensor()};
      if (has_w) res.push_back(r[1].defined() ? reshape(r[1], w.shape().to_vector()) : Tensor());
      if (has_b) res.push_back(r[2].defined() ? reshape(r[2], in[has_w ? 2 : 1].shape().to_vector()) : Tensor());
      return res;
    }
    Tensor dx = x.requires_grad() ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
    Tensor dw = want_w ? zeros(w.shape(), x.dtype()) : Tensor();
    Tensor db = want_b ? zeros(in[has_w ? 2 : 1].shape(), x.dtype()) : Tensor();
    dispatch_float(x.dtype(), [&]<class T>() {
      using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
      using Row = Eigen::Map<const Arr>;
      using ORow = Eigen::Map<Arr>;
      const T* px = x.data<T>();
      const T* pg = g.data<T>();
      const T* ps = stats.data<T>();
      const T* pw = has_w ? w.data<T>() : nullptr;
      Arr xhat(D), dxhat(D);
      for (std::int64_t r = 0; r < R; ++r) {
        const T mu = ps[2 * r], rstd = ps[2 * r + 1];
        const Row xr(px + r * D, D), gr(pg + r * D, D);
        xhat = (xr - mu) * rstd;
        if (dw.defined()) ORow(dw.mutable_data<T>(), D) += gr * xhat;
        if (db.defined()) ORow(db.mutable_data<T>(), D) += gr;
        if (dx.defined()) {
          dxhat = pw ? Arr(gr * Row(pw, D)) : Arr(gr);
          const T m1 = dxhat.mean(), m2 = (dxhat * xhat).mean();
          ORow(dx.mutable_data<T>() + r * D, D) = rstd * (dxhat - m1 - xhat * m2);
        }
      }
    });
    Grads res{dx};
    if (has_w) res.push_back(dw);
    if (has_b) res.push_back(db);
    return res;
  };
  record("layer_norm", inputs, out, std::move(vjp));
  return out;
}

}  // namespace tapegrad
