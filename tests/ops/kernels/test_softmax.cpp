// SPDX-License-Identifier: MIT
// The softmax kernels (ops/kernels/softmax.hpp) alone, without the tape: values worked out by hand
// (exp(log 2) = 2, exp(log 3) = 3: rows whose exponentials are small integers) or, for the float32
// SIMD rows, from std::exp in double precision in this file.
#include <cmath>
#include <limits>

#include "ops/kernels/softmax.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;
using tapegrad::testing::allclose_why;
using tapegrad::testing::error_of;

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
const double kLn2 = std::log(2.0), kLn3 = std::log(3.0);
Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, kFloat64); }
}  // namespace

TEST_CASE("kernels: softmax_forward and softmax_backward on rows with integer exponentials", "[kernels][softmax]") {
  // exp([0, log 2, log 3]) = [1, 2, 3]: softmax [1/6, 2/6, 3/6]; a masked entry is 0, a fully
  // masked row 0 everywhere.
  const Tensor x = f64({0, kLn2, kLn3, -kInf, 0, kLn3, -kInf, -kInf, -kInf}, Shape{3, 3});
  const Tensor y = kernels::softmax_forward("softmax", x, 1);
  INFO(allclose_why(y, f64({1 / 6.0, 2 / 6.0, 3 / 6.0, 0, 0.25, 0.75, 0, 0, 0}, Shape{3, 3})));
  REQUIRE(allclose_why(y, f64({1 / 6.0, 2 / 6.0, 3 / 6.0, 0, 0.25, 0.75, 0, 0, 0}, Shape{3, 3})).empty());
  // Along dim 0 (strided rows): column 0 is [0, -inf, -inf] -> [1, 0, 0].
  const Tensor y0 = kernels::softmax_forward("softmax", x, 0);
  REQUIRE(y0.to_vector()[0] == 1.0);
  REQUIRE(y0.to_vector()[3] == 0.0);
  // dx = y (g - <g, y>): y = [0, 1/4, 3/4], g = [0, 1, 0]: <g, y> = 1/4, dx = [0, 3/16, -3/16].
  const Tensor g = f64({0, 0, 0, 0, 1, 0, 5, 5, 5}, Shape{3, 3});
  const Tensor dx = kernels::softmax_backward(y, g, 1);
  REQUIRE(allclose_why(dx, f64({0, 0, 0, 0, 3 / 16.0, -3 / 16.0, 0, 0, 0}, Shape{3, 3})).empty());
}

TEST_CASE("kernels: log_softmax_forward saves exp(x - max) and 1 / sum; log_softmax_backward reads them",
          "[kernels][softmax]") {
  // x = [0, log 3]: max log 3, e = [1/3, 1], sum 4/3, 1/sum = 3/4, y = [log 1/4, log 3/4].
  const Tensor x = f64({0, kLn3}, Shape{1, 2});
  Tensor saved;
  const Tensor y = kernels::log_softmax_forward("log_softmax", x, 1, &saved);
  REQUIRE(allclose_why(y, f64({std::log(0.25), std::log(0.75)}, Shape{1, 2})).empty());
  REQUIRE(allclose_why(saved, f64({1 / 3.0, 1, 0.75}, Shape{3})).empty());
  // dx = g - softmax * sum g: g = [1, 1] -> [1 - 0.5, 1 - 1.5] = [0.5, -0.5]
  const Tensor dx = kernels::log_softmax_backward(saved, f64({1, 1}, Shape{1, 2}), 1);
  REQUIRE(allclose_why(dx, f64({0.5, -0.5}, Shape{1, 2})).empty());
  // Without a buffer the same values come out.
  REQUIRE(allclose_why(kernels::log_softmax_forward("log_softmax", x, 1), y, 0, 0).empty());
}

TEST_CASE("kernels: logsumexp_forward keeps the dim; logsumexp_backward is g times softmax", "[kernels][softmax]") {
  const Tensor x = f64({0, kLn3, -kInf, -kInf}, Shape{2, 2});
  const Tensor lse = kernels::logsumexp_forward("logsumexp", x, 1);
  REQUIRE(lse.shape() == Shape{2, 1});
  REQUIRE(std::abs(lse.to_vector()[0] - std::log(4.0)) < 1e-15);
  REQUIRE(lse.to_vector()[1] == -kInf);  // fully masked: log 0
  // g = [2, 7]: row 0 -> 2 [1/4, 3/4]; the fully masked row gets 0.
  const Tensor dx = kernels::logsumexp_backward(x, lse, f64({2, 7}, Shape{2, 1}), 1);
  REQUIRE(allclose_why(dx, f64({0.5, 1.5, 0, 0}, Shape{2, 2})).empty());
}

TEST_CASE("kernels: float32 rows (the SIMD path) agree with double-precision softmax", "[kernels][softmax]") {
  // 3 rows of K = 37 (not a multiple of any vector width), values in [-20, 20] and one -inf.
  std::vector<double> v(3 * 37);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = 20.0 * std::sin(0.7 * static_cast<double>(i) + 0.3);
  v[40] = -kInf;
  const Tensor x = from_vector(v, Shape{3, 37}, kFloat32);
  const auto y = kernels::softmax_forward("softmax", x, 1).to_vector();
  for (int r = 0; r < 3; ++r) {
    double m = -kInf, s = 0;
    for (int k = 0; k < 37; ++k) m = std::max(m, static_cast<double>(static_cast<float>(v[r * 37 + k])));
    for (int k = 0; k < 37; ++k) s += std::exp(static_cast<double>(static_cast<float>(v[r * 37 + k])) - m);
    for (int k = 0; k < 37; ++k) {
      const double want = std::exp(static_cast<double>(static_cast<float>(v[r * 37 + k])) - m) / s;
      INFO("row " << r << " k " << k);
      // x - max is rounded to float32 (|x - max| <= 40: an error up to 40 * 2^-24 in the exponent,
      // 2.4e-6 relative after exp), then exp within 2 ulp: 1e-5 relative covers both.
      REQUIRE(std::abs(y[r * 37 + k] - want) <= 1e-5 * want + 1e-30);
    }
  }
  REQUIRE(y[40] == 0.0);
}

TEST_CASE("kernels: NaN and +inf logits are reported with the op the user called", "[kernels][softmax][bad]") {
  const Tensor x = f64({0, std::nan(""), 1, 2}, Shape{2, 2});
  const std::string e = error_of([&] { (void)kernels::softmax_forward("my_op", x, 1); });
  REQUIRE_THAT(e, Contains("my_op") && Contains("NaN") && Contains("row 0"));
  const Tensor p = f64({0, 1, kInf, 2}, Shape{2, 2});
  REQUIRE_THAT(error_of([&] { (void)kernels::logsumexp_forward("lse", p, 1); }), Contains("lse") && Contains("+inf") && Contains("row 1"));
}
