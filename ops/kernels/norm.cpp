// SPDX-License-Identifier: MIT
#include "ops/kernels/norm.hpp"

#include <cmath>

#include <Eigen/Core>

namespace tapegrad::kernels {

Tensor layer_norm_forward(const Tensor& x, std::int64_t D, const Tensor& weight, const Tensor& bias, double eps,
                          Tensor& stats) {
  const std::int64_t R = x.numel() / D;
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  stats = Tensor::empty({R, 2}, x.dtype());
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
  return out;
}

LayerNormGrads layer_norm_backward(const Tensor& g, const Tensor& x, const Tensor& stats, const Tensor& weight,
                                   std::int64_t D, bool want_x, bool want_w, bool want_b) {
  const std::int64_t R = x.numel() / D;
  LayerNormGrads r;
  if (want_x) r.dx = Tensor::empty(x.shape(), x.dtype());
  if (want_w) r.dw = zeros({D}, x.dtype());
  if (want_b) r.db = zeros({D}, x.dtype());
  dispatch_float(x.dtype(), [&]<class T>() {
    using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
    using Row = Eigen::Map<const Arr>;
    using ORow = Eigen::Map<Arr>;
    const T* px = x.data<T>();
    const T* pg = g.data<T>();
    const T* ps = stats.data<T>();
    const T* pw = weight.defined() ? weight.data<T>() : nullptr;
    Arr xhat(D), dxhat(D);
    for (std::int64_t i = 0; i < R; ++i) {
      const T mu = ps[2 * i], rstd = ps[2 * i + 1];
      const Row xr(px + i * D, D), gr(pg + i * D, D);
      xhat = (xr - mu) * rstd;
      if (want_w) ORow(r.dw.mutable_data<T>(), D) += gr * xhat;
      if (want_b) ORow(r.db.mutable_data<T>(), D) += gr;
      if (want_x) {
        dxhat = pw ? Arr(gr * Row(pw, D)) : Arr(gr);
        const T m1 = dxhat.mean(), m2 = (dxhat * xhat).mean();
        ORow(r.dx.mutable_data<T>() + i * D, D) = rstd * (dxhat - m1 - xhat * m2);
      }
    }
  });
  return r;
}

}  // namespace tapegrad::kernels
