// SPDX-License-Identifier: MIT
#pragma once
// Shared test helpers: Catch2 v2 or v3, and small comparisons.
#if TAPEGRAD_CATCH_V3
#include <catch2/catch_all.hpp>
#else
#include <catch2/catch.hpp>
#endif

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tapegrad.hpp"

namespace tapegrad::testing {

// The message of the InvalidArgument fn throws, for matching its parts.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "(no InvalidArgument thrown)";
}

// Element-wise |a - b| <= atol + rtol |b|; on failure says where.
inline std::string allclose_why(const Tensor& a, const Tensor& b, double rtol = 1e-12, double atol = 1e-12) {
  if (a.shape() != b.shape()) return fmt::format("shape {} vs {}", a.shape(), b.shape());
  const auto va = a.to_vector();
  const auto vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) {
    const bool both_nan = std::isnan(va[i]) && std::isnan(vb[i]);
    const bool same_inf = std::isinf(va[i]) && va[i] == vb[i];
    if (both_nan || same_inf) continue;
    if (!(std::abs(va[i] - vb[i]) <= atol + rtol * std::abs(vb[i])))
      return fmt::format("element {}: {} vs {} (diff {:.3g})", i, va[i], vb[i], va[i] - vb[i]);
  }
  return "";
}

// gradcheck (and, if asked, gradgradcheck) in float64 with the default tolerances; on failure
// the report (worst element, analytic vs numeric) is printed.
inline void require_gradcheck(const Function& f, const std::vector<Tensor>& inputs, bool second_order = false) {
  GradcheckReport r = gradcheck(f, inputs);
  INFO(r);
  REQUIRE(r.ok());
  if (second_order) {
    GradcheckReport r2 = gradgradcheck(f, inputs);
    INFO(r2);
    REQUIRE(r2.ok());
  }
}

// A float64 leaf of zeros that requires grad (empty shapes included).
inline Tensor empty_leaf(const Shape& s) { return zeros(s, kFloat64).requires_grad_(); }

// Backward with a grad_out of ones; every input that requires grad gets a grad of its own shape.
inline void backward_ones(const Tensor& out, const std::vector<Tensor>& inputs) {
  backward(out, ones_like(out).detach());
  for (const Tensor& in : inputs) {
    INFO("input shape " << in.shape().str());
    REQUIRE(in.grad().defined());
    REQUIRE(in.grad().shape() == in.shape());
  }
}

}  // namespace tapegrad::testing

// REQUIRE_ALLCLOSE(actual, expected[, rtol, atol])
#define REQUIRE_ALLCLOSE(a, ...)                                            \
  do {                                                                       \
    const std::string why_ = ::tapegrad::testing::allclose_why(a, __VA_ARGS__); \
    INFO(why_);                                                              \
    REQUIRE(why_.empty());                                                   \
  } while (0)
