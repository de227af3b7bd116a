// Uses the public API through the umbrella header; exits 0 when d(x*x + 3x)/dx = 2x + 3 holds.
#include <tapegrad.hpp>

#include <cmath>
#include <cstdio>

int main() {
  using namespace tapegrad;
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor y = sum_to_size(x * x + x * 3.0, Shape{});
  backward(y);
  const double g0 = x.grad().at({0}), g1 = x.grad().at({1});
  std::printf("grad = [%g, %g] (expected [5, 7])\n", g0, g1);
  return (std::abs(g0 - 5.0) < 1e-12 && std::abs(g1 - 7.0) < 1e-12) ? 0 : 1;
}
