// SPDX-License-Identifier: MIT
#pragma once
// Small helpers shared by op kernels (not part of the user-facing API).
#include <limits>

#include <Eigen/Core>

namespace tapegrad::kernels {

// Eigen's vectorised exp clamps its argument, so exp(-inf) comes out as about 3e-39 (float) or
// 6e-309 (double) instead of 0. Masked entries must be exactly 0, so after an exp every value below
// the smallest normal number is flushed to 0 (those are subnormal results anyway).
template <class Derived>
void flush_subnormal(Eigen::ArrayBase<Derived>& a) {
  using T = typename Derived::Scalar;
  a = (a < std::numeric_limits<T>::min()).select(T(0), a);
}
template <class Derived>
void flush_subnormal(Eigen::ArrayBase<Derived>&& a) {
  flush_subnormal(a);
}

}  // namespace tapegrad::kernels
