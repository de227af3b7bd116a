// SPDX-License-Identifier: MIT
#pragma once
// Eigen maps of tensor storage, for code that computes on it with Eigen (op kernels, optimisers):
// Tensor::array<T>() and mutable_array<T>() need this header, which includes <Eigen/Core>.
// autodiff/tensor.hpp only declares them, so that its includers do not all parse Eigen.
#include <cstdint>

#include <Eigen/Core>

#include "autodiff/tensor.hpp"

namespace tapegrad::detail {

template <class T> struct EigenArray {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  static Eigen::Map<const Array> map(const T* data, std::int64_t n) { return {data, static_cast<Eigen::Index>(n)}; }
  static Eigen::Map<Array> map(T* data, std::int64_t n) { return {data, static_cast<Eigen::Index>(n)}; }
};

}  // namespace tapegrad::detail
