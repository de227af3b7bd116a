// SPDX-License-Identifier: MIT
// Writing your own op and checking its derivatives.
//
// 1. softplus(x) = log(1 + e^x) as a custom op: a forward and a VJP (dx = g * sigmoid(x)).
// 2. gradcheck compares the VJP with central differences; gradgradcheck does the same for the
//    VJP's own derivative (it is written with tapegrad ops, so it can be differentiated again).
// 3. A two-input op, scaled_diff(a, b) = (a - b) * b, with a VJP that has a mistake in it:
//    gradcheck fails and says which input and which element is wrong.
//
// Usage: custom_op_gradcheck [--short]   (--short does the same; the example is already quick)
// Exit code 0 when the correct ops pass and the wrong one is caught.
#include <cstring>
#include <iostream>

#include <nlohmann/json.hpp>  // GradcheckReport::to_json returns a json

#include "tapegrad.hpp"

using namespace tapegrad;

// softplus(x) = log(1 + e^x)          vjp: dx = g * sigmoid(x)        saved: x (the input)
// (tapegrad::softplus is built in; my_softplus writes the same function by hand.)
Tensor my_softplus(const Tensor& x) {
  return custom_op(
      "softplus", x,
      /*forward=*/[](const Tensor& v) { return log1p(exp(v)); },
      /*vjp=*/[](const Tensor& v, const Tensor& g) { return g * sigmoid(v); });
}

// scaled_diff(a, b) = (a - b) * b      vjp: da = g * b,  db = g * (a - 2b)
Tensor scaled_diff(const Tensor& a, const Tensor& b) {
  return custom_op(
      "scaled_diff", {a, b},
      [](const std::vector<Tensor>& in) { return (in[0] - in[1]) * in[1]; },
      [](const std::vector<Tensor>& in, const Tensor& /*out*/, const Tensor& g) {
        const Tensor& a = in[0];
        const Tensor& b = in[1];
        return Grads{g * b, g * (a - b * 2.0)};
      });
}

// The same op with a typical slip in db: the product rule applied to only one factor.
Tensor scaled_diff_wrong(const Tensor& a, const Tensor& b) {
  return custom_op(
      "scaled_diff_wrong", {a, b},
      [](const std::vector<Tensor>& in) { return (in[0] - in[1]) * in[1]; },
      [](const std::vector<Tensor>& in, const Tensor&, const Tensor& g) {
        const Tensor& a = in[0];
        const Tensor& b = in[1];
        return Grads{g * b, g * (a - b)};  // wrong: should be a - 2b
      });
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--short") != 0) {
      std::cerr << "usage: custom_op_gradcheck [--short]\n";
      return 2;
    }

  bool as_expected = true;
  Generator gen(0);

  // Checks belong in float64: central differences in float32 are too coarse to mean anything.
  const Tensor x = randn({3, 4}, gen, kFloat64) * 3.0;
  std::cout << "== softplus ==\n";
  const GradcheckReport first = gradcheck(my_softplus, x);
  std::cout << first << "\n";
  const GradcheckReport second = gradgradcheck(my_softplus, x);
  std::cout << second << "\n\n";
  as_expected = as_expected && first.ok() && second.ok();

  // Inputs to check are marked with requires_grad_(), as in PyTorch.
  Tensor a = randn({2, 3}, gen, kFloat64).requires_grad_();
  Tensor b = randn({2, 3}, gen, kFloat64).requires_grad_();
  const Function good = [](const std::vector<Tensor>& in) { return scaled_diff(in[0], in[1]); };
  const Function bad = [](const std::vector<Tensor>& in) { return scaled_diff_wrong(in[0], in[1]); };

  std::cout << "== scaled_diff (correct VJP) ==\n";
  const GradcheckReport good_report = gradcheck(good, {a, b});
  std::cout << good_report << "\n" << gradgradcheck(good, {a, b}) << "\n\n";
  as_expected = as_expected && good_report.ok();

  std::cout << "== scaled_diff_wrong (db is wrong) ==\n";
  const GradcheckReport bad_report = gradcheck(bad, {a, b});
  std::cout << bad_report << "\n";
  // Expected: input 0 passes, input 1 fails. The worst element is reported by multi-index with
  // the analytic and numeric derivative side by side.
  const bool caught = !bad_report.ok() && bad_report.inputs[0].ok && !bad_report.inputs[1].ok;
  if (caught) {
    const InputCheck& ic = bad_report.inputs[1];
    std::cout << fmt::format("caught: d out[{}] / d b[{}] is {:.6f} by the VJP but {:.6f} by finite differences\n",
                             fmt::join(ic.worst_output_index, ", "), fmt::join(ic.worst_index, ", "), ic.analytic,
                             ic.numeric);
  }
  as_expected = as_expected && caught;

  // Fast mode: one random projection per input instead of full Jacobians; catches it too.
  GradcheckOptions fast;
  fast.fast_mode = true;
  const GradcheckReport fast_report = gradcheck(bad, {a, b}, fast);
  std::cout << "\n" << fast_report << "\n";
  as_expected = as_expected && !fast_report.ok();

  // Reports also serialise to JSON (e.g. for CI artefacts).
  std::cout << "\n" << bad_report.to_json().dump(2) << "\n";

  std::cout << (as_expected ? "\nall checks behaved as expected\n" : "\nUNEXPECTED: see the reports above\n");
  return as_expected ? 0 : 1;
}
