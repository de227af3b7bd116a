// SPDX-License-Identifier: MIT
// The elementwise kernels (ops/kernels/elementwise), called directly: values by hand or from Python's
// math module in double precision, the broadcasting layouts the binary kernels special-case, and
// for every op with a fused VJP (relu, gelu) the fused backward against the recorded formula.
#include <cmath>
#include <limits>

#include "testing.hpp"

#include "ops/kernels/elementwise.hpp"

using namespace tapegrad;

namespace {
Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }
Tensor f64(std::initializer_list<double> v, const Shape& s) { return from_vector(v, s, kFloat64); }
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

TEST_CASE("elementwise kernels: broadcast_to_forward and sum_to_size_forward", "[kernels][elementwise]") {
  const Tensor row = f64({1, 2, 3}, Shape{1, 3});
  REQUIRE_ALLCLOSE(kernels::broadcast_to_forward(row, Shape{2, 3}), f64({1, 2, 3, 1, 2, 3}, Shape{2, 3}), 0, 0);
  const Tensor col = f64({1, 2}, Shape{2, 1});
  REQUIRE_ALLCLOSE(kernels::broadcast_to_forward(col, Shape{2, 2, 3}),
                   f64({1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2}, Shape{2, 2, 3}), 0, 0);
  // bool and int64 too (masks are broadcast this way)
  const Tensor mask = from_vector(std::vector<bool>{true, false}, Shape{2});
  REQUIRE(kernels::broadcast_to_forward(mask, Shape{2, 2}).to_vector() == std::vector<double>{1, 0, 1, 0});
  // one value (sum's gradient) to any shape, and a [3, 1] column (its row repeated) inside a batch
  REQUIRE_ALLCLOSE(kernels::broadcast_to_forward(f64({2.5}, Shape{}), Shape{2, 3}), f64({2.5, 2.5, 2.5, 2.5, 2.5, 2.5}, Shape{2, 3}), 0, 0);
  REQUIRE_ALLCLOSE(kernels::broadcast_to_forward(f64({1, 2, 3}, Shape{3, 1}), Shape{2, 3, 2}),
                   f64({1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}, Shape{2, 3, 2}), 0, 0);

  const Tensor x = f64({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  REQUIRE_ALLCLOSE(kernels::sum_to_size_forward(x, Shape{}), f64({21}, Shape{}), 0, 0);          // a scalar
  REQUIRE_ALLCLOSE(kernels::sum_to_size_forward(x, Shape{3}), f64({5, 7, 9}), 0, 0);              // trailing (bias)
  REQUIRE_ALLCLOSE(kernels::sum_to_size_forward(x, Shape{1, 3}), f64({5, 7, 9}, Shape{1, 3}), 0, 0);
  REQUIRE_ALLCLOSE(kernels::sum_to_size_forward(x, Shape{2, 1}), f64({6, 15}, Shape{2, 1}), 0, 0);  // general
  // an empty x sums to zeros
  REQUIRE_ALLCLOSE(kernels::sum_to_size_forward(zeros(Shape{0, 3}, kFloat64), Shape{3}), f64({0, 0, 0}), 0, 0);
  REQUIRE_ALLCLOSE(kernels::sum_to_size_forward(zeros(Shape{0, 3}, kFloat64), Shape{}), f64({0}, Shape{}), 0, 0);
}

TEST_CASE("elementwise kernels: binary forwards in every broadcasting layout", "[kernels][elementwise]") {
  const Tensor a = f64({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  const Tensor bias = f64({10, 20, 30});
  const Tensor s = f64({2}, Shape{});
  const Tensor col = f64({1, -1}, Shape{2, 1});
  const Shape s23{2, 3};
  // same shapes, scalar on either side, trailing bias on either side, and the general walk
  REQUIRE_ALLCLOSE(kernels::add_forward(a, a, s23), f64({2, 4, 6, 8, 10, 12}, s23), 0, 0);
  REQUIRE_ALLCLOSE(kernels::sub_forward(a, s, s23), f64({-1, 0, 1, 2, 3, 4}, s23), 0, 0);
  REQUIRE_ALLCLOSE(kernels::sub_forward(s, a, s23), f64({1, 0, -1, -2, -3, -4}, s23), 0, 0);
  REQUIRE_ALLCLOSE(kernels::add_forward(a, bias, s23), f64({11, 22, 33, 14, 25, 36}, s23), 0, 0);
  REQUIRE_ALLCLOSE(kernels::div_forward(bias, a, s23), f64({10, 10, 10, 2.5, 4, 5}, s23), 0, 0);
  REQUIRE_ALLCLOSE(kernels::mul_forward(col, bias, s23), f64({10, 20, 30, -10, -20, -30}, s23), 0, 0);
  REQUIRE_ALLCLOSE(kernels::pow_forward(a, s, s23), f64({1, 4, 9, 16, 25, 36}, s23), 0, 0);
  REQUIRE_ALLCLOSE(kernels::pow_forward(s, col, Shape{2, 1}), f64({2, 0.5}, Shape{2, 1}), 0, 0);
  // float32 goes through the same loops
  REQUIRE_ALLCLOSE(kernels::mul_forward(a.to(kFloat32), bias.to(kFloat32), s23),
                   f64({10, 40, 90, 40, 100, 180}, s23), 0, 0);
  REQUIRE(kernels::mul_forward(a.to(kFloat32), bias.to(kFloat32), s23).dtype() == kFloat32);
}

TEST_CASE("elementwise kernels: maximum/minimum keep NaN, where routes by the mask", "[kernels][elementwise]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const Tensor a = f64({1, 5, nan, 2});
  const Tensor b = f64({3, 4, 0, nan});
  const Tensor mx = kernels::maximum_forward(a, b, Shape{4});
  const Tensor mn = kernels::minimum_forward(a, b, Shape{4});
  REQUIRE(mx.to_vector()[0] == 3);
  REQUIRE(mx.to_vector()[1] == 5);
  REQUIRE(std::isnan(mx.to_vector()[2]));
  REQUIRE(std::isnan(mx.to_vector()[3]));
  REQUIRE(mn.to_vector()[0] == 1);
  REQUIRE(mn.to_vector()[1] == 4);
  REQUIRE(std::isnan(mn.to_vector()[2]));
  REQUIRE(std::isnan(mn.to_vector()[3]));

  const Tensor cond = from_vector(std::vector<bool>{true, false, true}, Shape{3});
  const Tensor x = f64({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  REQUIRE_ALLCLOSE(kernels::where_forward(cond, x, f64({-1}, Shape{}), Shape{2, 3}), f64({1, -1, 3, 4, -1, 6}, Shape{2, 3}), 0, 0);
  const Tensor rows = from_vector(std::vector<bool>{false, true}, Shape{2, 1});
  REQUIRE_ALLCLOSE(kernels::where_forward(rows, f64({7, 8, 9}), x, Shape{2, 3}), f64({1, 2, 3, 7, 8, 9}, Shape{2, 3}), 0, 0);
}

TEST_CASE("elementwise kernels: unary forwards against math-library values", "[kernels][elementwise]") {
  const Tensor x = f64({-3, -1, -0.25, 0, 0.5, 2, 6});
  // Python: [math.erf(v) for v in x]
  REQUIRE_ALLCLOSE(kernels::erf_forward(x), f64({-0.9999779095030014, -0.8427007929497149, -0.2763263901682369, 0.0,
                                                 0.5204998778130465, 0.9953222650189527, 1.0}), 1e-15, 1e-16);
  // Python: 0.5*v*(1+math.erf(v/math.sqrt(2)))
  REQUIRE_ALLCLOSE(kernels::gelu_forward(x), f64({-0.00404969409489031, -0.15865525393145707, -0.10032341857926907, 0.0,
                                                  0.34573123063700656, 1.9544997361036416, 5.999999994080474}), 1e-13, 1e-16);
  // Python: v if 2*v > 1 else math.log1p(math.exp(2*v))/2   (beta 2, threshold 1)
  REQUIRE_ALLCLOSE(kernels::softplus_forward(x, 2.0, 1.0), f64({0.0012378425688652247, 0.06346400552148625, 0.23703849209005334,
                                                                0.34657359027997264, 0.6566308437591114, 2.0, 6.0}), 1e-14, 1e-17);
  // beta -1 (a soft minimum): math.log1p(math.exp(-v))/-1
  REQUIRE_ALLCLOSE(kernels::softplus_forward(x, -1.0, 20.0), f64({-3.048587351573742, -1.3132616875182228, -0.8259394198788436,
                                                                  -0.6931471805599453, -0.4740769841801067, -0.1269280110429725,
                                                                  -0.0024756851377304495}), 1e-14, 1e-17);
  REQUIRE_ALLCLOSE(kernels::relu_forward(x), f64({0, 0, 0, 0, 0.5, 2, 6}), 0, 0);
  REQUIRE_ALLCLOSE(kernels::leaky_relu_forward(x, 0.5), f64({-1.5, -0.5, -0.125, 0, 0.5, 2, 6}), 0, 0);
  REQUIRE_ALLCLOSE(kernels::clamp_forward(x, -1, 1), f64({-1, -1, -0.25, 0, 0.5, 1, 1}), 0, 0);
  REQUIRE_ALLCLOSE(kernels::clamp_forward(x, -kInf, 0), f64({-3, -1, -0.25, 0, 0, 0, 0}), 0, 0);
  // exp(-inf) is exactly 0 (Eigen's vectorised exp alone gives a subnormal), in both dtypes
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor e = kernels::exp_forward(f64({-kInf, -2, 0, 1}).to(dt));
    // Python: math.exp(-2), math.exp(1)
    REQUIRE_ALLCLOSE(e, f64({0, 0.1353352832366127, 1, 2.718281828459045}), dt == kFloat32 ? 1e-6 : 1e-15, 0);
    REQUIRE(e.to_vector()[0] == 0.0);
  }
}

TEST_CASE("elementwise kernels: relu_backward and gelu_backward by hand", "[kernels][elementwise]") {
  for (DType dt : {kFloat32, kFloat64}) {
    // relu_backward reads the output: g where y > 0, 0 at y = 0 (x <= 0) and where y is NaN
    const Tensor y = f64({0, 0, 0.5, kInf, std::numeric_limits<double>::quiet_NaN()}).to(dt);
    const Tensor g = f64({1, 2, 3, 4, 5}).to(dt);
    REQUIRE_ALLCLOSE(kernels::relu_backward(y, g), f64({0, 0, 3, 4, 0}), 0, 0);
    REQUIRE(kernels::relu_backward(y, g).dtype() == dt);
  }
  // Python: 0.5*(1+math.erf(v/math.sqrt(2))) + v*math.exp(-v*v/2)/math.sqrt(2*math.pi), times g = 2
  const Tensor x = f64({-3, -1, -0.25, 0, 0.5, 2, 6});
  const Tensor dgelu = f64({-0.011945647204183918, -0.08331547058768629, 0.30462664511636395, 0.5, 0.8674951246561629,
                            1.085231801078197, 1.0000000354687093});
  REQUIRE_ALLCLOSE(kernels::gelu_backward(x, full(x.shape(), 2.0, kFloat64)), dgelu * 2.0, 1e-14, 1e-16);
  REQUIRE_ALLCLOSE(kernels::gelu_backward(x.to(kFloat32), full(x.shape(), 2.0, kFloat32)), dgelu * 2.0, 1e-6, 1e-7);
}

// The engine runs the fused VJP for backward without create_graph and the tensor-op formula with
// it; both must give the same numbers (float32 and float64, kinks and saturated inputs included).
TEST_CASE("elementwise kernels: fused and formula VJPs agree (relu, gelu)", "[kernels][elementwise]") {
  Generator gen(1313);
  for (DType dt : {kFloat32, kFloat64}) {
    const double tol = dt == kFloat32 ? 1e-6 : 1e-14;
    for (const Shape& s : {Shape{}, Shape{1}, Shape{0}, Shape{7}, Shape{3, 5}}) {
      INFO("dtype " << dtype_name(dt) << " shape " << s.str());
      Tensor x = (randn(s, gen, kFloat64) * 4.0).to(dt).detach().requires_grad_();
      const Tensor g = randn(s, gen, kFloat64).to(dt);
      for (const auto& f : {+[](const Tensor& v) { return relu(v); }, +[](const Tensor& v) { return gelu(v); }}) {
        const auto fused = grad({f(x)}, {x}, {g});
        const auto formula = grad({f(x)}, {x}, {g}, {.create_graph = true});
        REQUIRE(fused[0].dtype() == dt);
        REQUIRE_ALLCLOSE(fused[0], formula[0].detach(), tol, tol);
      }
    }
    // the kink and the extremes: relu at +-0 and +-inf, gelu at 0 and far in both tails
    Tensor k = f64({0.0, -0.0, -kInf, kInf, -40, 40, 1e-30}).to(dt).requires_grad_();
    const Tensor g = f64({1, 2, 3, 4, 5, 6, 7}).to(dt);
    const auto relu_fused = grad({relu(k)}, {k}, {g});
    const auto relu_formula = grad({relu(k)}, {k}, {g}, {.create_graph = true});
    REQUIRE_ALLCLOSE(relu_fused[0], f64({0, 0, 0, 4, 0, 6, 7}), 0, 0);
    REQUIRE_ALLCLOSE(relu_formula[0].detach(), f64({0, 0, 0, 4, 0, 6, 7}), 0, 0);
    Tensor m = f64({0.0, -40, 40, 1e-30, -12}).to(dt).requires_grad_();
    const Tensor gm = f64({1, 2, 3, 4, 5}).to(dt);
    const auto gelu_fused = grad({gelu(m)}, {m}, {gm});
    const auto gelu_formula = grad({gelu(m)}, {m}, {gm}, {.create_graph = true});
    REQUIRE_ALLCLOSE(gelu_fused[0], gelu_formula[0].detach(), tol, tol);
    REQUIRE_ALLCLOSE(gelu_fused[0], f64({0.5, 0, 3, 2, 0}), tol, 1e-13);  // Phi(0) = 1/2, tails 0 and 1
  }
}

TEST_CASE("elementwise kernels: where_forward for every operand contiguous or broadcast along the row",
          "[kernels][elementwise][where]") {
  // Each of cond, a, b is [2, 3, 4] (stride 1 along the row) or [2, 3, 1] (stride 0): all 8 row
  // loops, float64 and float32, against a plain element-by-element reference.
  for (const DType dt : {kFloat64, kFloat32})
    for (int combo = 0; combo < 8; ++combo) {
      const bool cf = combo & 4, af = combo & 2, bf = combo & 1;
      const Shape sc = cf ? Shape{2, 3, 4} : Shape{2, 3, 1};
      const Shape sa = af ? Shape{2, 3, 4} : Shape{2, 3, 1};
      const Shape sb = bf ? Shape{2, 3, 4} : Shape{2, 3, 1};
      std::vector<bool> c(static_cast<std::size_t>(sc.numel()));
      std::vector<double> a(static_cast<std::size_t>(sa.numel())), b(static_cast<std::size_t>(sb.numel()));
      for (std::size_t i = 0; i < c.size(); ++i) c[i] = (i * 7 + 3) % 5 < 2;
      for (std::size_t i = 0; i < a.size(); ++i) a[i] = 1.0 + static_cast<double>(i);
      for (std::size_t i = 0; i < b.size(); ++i) b[i] = -1.0 - static_cast<double>(i);
      const Tensor out = kernels::where_forward(from_vector(c, sc), from_vector(a, sa, dt), from_vector(b, sb, dt),
                                                Shape{2, 3, 4});
      std::vector<double> expect;
      for (std::size_t r = 0; r < 6; ++r)
        for (std::size_t j = 0; j < 4; ++j)
          expect.push_back(c[cf ? r * 4 + j : r] ? a[af ? r * 4 + j : r] : b[bf ? r * 4 + j : r]);
      INFO("combo " << combo << " dtype " << dtype_name(dt));
      REQUIRE(out.shape() == Shape{2, 3, 4});
      REQUIRE(out.to_vector() == expect);
    }
}
