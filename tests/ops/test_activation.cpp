// SPDX-License-Identifier: MIT
// erf and gelu (ops/elementwise): values against Python's math.erf in double precision,
// float64 gradcheck and gradgradcheck on several shapes, fused vs recorded backward, bad input.
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {
Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }
const std::vector<Shape> kShapes = {Shape{}, Shape{1}, Shape{7}, Shape{2, 3}, Shape{3, 1, 5}, Shape{1, 2, 2, 3}};
}  // namespace

TEST_CASE("gelu: values match math.erf and the tanh formula", "[ops][activation]") {
  const Tensor x = f64({-3, -1, -0.5, 0, 0.5, 1, 2.5});
  // Python: [math.erf(v) for v in x]
  REQUIRE_ALLCLOSE(erf(x), f64({-0.9999779095030014, -0.8427007929497149, -0.5204998778130465, 0.0, 0.5204998778130465,
                                0.8427007929497149, 0.999593047982555}), 1e-14, 1e-15);
  // Python: 0.5*v*(1+math.erf(v/math.sqrt(2)))
  REQUIRE_ALLCLOSE(gelu(x), f64({-0.00404969409489031, -0.15865525393145707, -0.15426876936299344, 0.0,
                                 0.34573123063700656, 0.8413447460685429, 2.4844758366855597}), 1e-13, 1e-15);
  // Python: 0.5*v*(1+math.tanh(math.sqrt(2/math.pi)*(v+0.044715*v**3)))
  REQUIRE_ALLCLOSE(gelu(x, "tanh"), f64({-0.0036373920817729943, -0.15880800939172324, -0.15428599017485606, 0.0,
                                         0.34571400982514394, 0.8411919906082768, 2.484915733910001}), 1e-13, 1e-15);
  REQUIRE_ALLCLOSE(gelu(x.to(kFloat32)), gelu(x).to(kFloat32), 1e-6, 1e-7);
}

TEST_CASE("gelu: derivative at chosen points is Phi(x) + x phi(x)", "[ops][activation]") {
  Tensor x = f64({-1.0, 0.0, 2.0}).requires_grad_();
  backward(sum(gelu(x)));
  // Python: 0.5*(1+math.erf(v/math.sqrt(2))) + v*math.exp(-v*v/2)/math.sqrt(2*math.pi)
  REQUIRE_ALLCLOSE(x.grad(), f64({-0.08331547058768629, 0.5, 1.085231801078197}), 1e-13, 1e-15);
}

TEST_CASE("gelu and erf: gradcheck and gradgradcheck in float64", "[ops][activation]") {
  Generator gen(31);
  for (const Shape& s : kShapes) {
    Tensor x = (randn(s, gen, kFloat64) * 2.0).detach().requires_grad_();
    INFO("shape " << s.str());
    testing::require_gradcheck([](const std::vector<Tensor>& in) { return erf(in[0]); }, {x}, true);
    testing::require_gradcheck([](const std::vector<Tensor>& in) { return gelu(in[0]); }, {x}, true);
    testing::require_gradcheck([](const std::vector<Tensor>& in) { return gelu(in[0], "tanh"); }, {x}, true);
  }
}

TEST_CASE("gelu: fused backward equals the recorded one", "[ops][activation]") {
  Generator gen(5);
  Tensor x = (randn({4, 9}, gen, kFloat64) * 3.0).detach().requires_grad_();
  Tensor g = randn({4, 9}, gen, kFloat64);
  auto grads_fast = grad({gelu(x)}, {x}, {g});
  auto grads_rec = grad({gelu(x)}, {x}, {g}, {.create_graph = true});
  REQUIRE_ALLCLOSE(grads_fast[0], grads_rec[0].detach(), 1e-14, 1e-15);
}

TEST_CASE("gelu and erf: bad input", "[ops][activation]") {
  REQUIRE_THROWS_WITH(gelu(f64({1.0}), "fast"), Contains("gelu") && Contains("'fast'") && Contains("'tanh'"));
  REQUIRE_THROWS_WITH(gelu(from_vector(std::vector<std::int64_t>{1, 2}, Shape{2})), Contains("gelu"));
  REQUIRE_THROWS_WITH(erf(from_vector(std::vector<std::int64_t>{1, 2}, Shape{2})), Contains("erf"));
}
