// SPDX-License-Identifier: MIT
#pragma once
// Runtime element types. Differentiable tensors are float32 or float64; int64 holds class
// indices and positions (index_select, cross_entropy targets); bool holds masks (comparisons,
// where, masked_fill). Ops never convert silently: mixing dtypes is an error, `to(dtype)` converts.
#include <cstdint>
#include <string_view>

namespace tapegrad {

enum class DType : std::uint8_t { Float32, Float64, Int64, Bool };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kBool = DType::Bool;

constexpr std::string_view dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::Bool: return "bool";
  }
  return "?";
}

constexpr std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}

constexpr bool is_floating(DType d) { return d == DType::Float32 || d == DType::Float64; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::Int64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

// Calls f.template operator()<T>() with T = float or double. Kernels are written once as
// templates; this is the single place where the runtime dtype picks the instantiation.
template <class F>
decltype(auto) dispatch_float(DType d, F&& f) {
  if (d == DType::Float64) return f.template operator()<double>();
  return f.template operator()<float>();
}

// Same over all four dtypes (conversions, printing, copying).
template <class F>
decltype(auto) dispatch_all(DType d, F&& f) {
  switch (d) {
    case DType::Float64: return f.template operator()<double>();
    case DType::Int64: return f.template operator()<std::int64_t>();
    case DType::Bool: return f.template operator()<bool>();
    case DType::Float32: break;
  }
  return f.template operator()<float>();
}

}  // namespace tapegrad
