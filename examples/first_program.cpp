// SPDX-License-Identifier: MIT
#include <tapegrad.hpp>
using namespace tapegrad;

int main() {
  Tensor x = tensor({{1.0, 2.0}, {3.0, 4.0}}, kFloat64).requires_grad_();
  Tensor w = tensor({0.5, -1.0}, kFloat64).requires_grad_();
  Tensor loss = mean(tanh(x * w));          // w broadcasts over the rows of x
  backward(loss);                            // fills x.grad() and w.grad()
  fmt::print("{}\n{}\n", loss, w.grad());

  // Check the analytic gradient against central differences (use float64).
  auto report = gradcheck([](const std::vector<Tensor>& in) { return mean(tanh(in[0] * in[1])); }, {x, w});
  fmt::print("{}\n", report);               // per input: ok/FAILED, max errors, worst element
  return report.ok() ? 0 : 1;
}
