// SPDX-License-Identifier: MIT
#pragma once
// Gradient tools: finite differences, reverse-mode Jacobians, Hessians, and checks that compare
// them. Use float64 inputs: in float32 central differences carry ~1e-3 relative error and the
// checks are not meaningful (gradcheck says so in its report).
//
//   numerical_jacobian   J[i, j] = (f(x + eps e_j)_i - f(x - eps e_j)_i) / (2 eps)
//   jacobian             row i = the VJP with g = e_i (one backward per output element)
//   gradcheck            |analytic - numeric| <= atol + rtol |numeric| for every element
//   gradgradcheck        the same check applied to x, g -> VJP(x, g) (second derivatives)
//   hessian, hvp         double backward of a scalar function
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "autodiff/tensor.hpp"

namespace tapegrad {

// A differentiable function of several tensors with one tensor output.
using Function = std::function<Tensor(const std::vector<Tensor>&)>;
using UnaryFunction = std::function<Tensor(const Tensor&)>;

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-5;  // PyTorch's defaults
  double rtol = 1e-3;
  // Fast mode (JAX check_grads style): instead of full Jacobians, compare u^T J v computed by
  // reverse mode against the finite difference of <u, f(x + eps v)> along one random direction
  // v (and random u), for each input. Cost: 2 forwards + 1 backward per input.
  bool fast_mode = false;
  std::uint64_t seed = 0;  // for the random projections of fast mode and gradgradcheck's g
  // Non-differentiable points (relu and abs at 0, max with ties, clamp at its bounds): every entry
  // also gets the one-sided differences
  //   left = (f(x) - f(x - eps)) / eps,   right = (f(x + eps) - f(x)) / eps
  // When they differ (by more than atol + rtol max(|left|, |right|)) the point is a kink: the entry
  // passes, reported as a kink, if the analytic value lies in the subgradient interval
  // [min(left, right), max(left, right)] (with that tolerance), and fails otherwise, so a wrong VJP
  // at a kink still fails. Full mode and float64 inputs only (in float32 the one-sided differences
  // are mostly rounding noise). Costs one more evaluation of f.
  bool detect_kinks = true;
};

// A Jacobian entry at a non-differentiable point whose analytic value is a valid subgradient.
struct Kink {
  std::int64_t output = -1;                 // flat index into the (stacked) outputs
  std::vector<std::int64_t> output_index;   // multi-index into that output
  std::int64_t element = -1;                // flat index into the input
  std::vector<std::int64_t> index;          // multi-index into the input
  double left = 0.0;                        // one-sided differences
  double right = 0.0;
  double analytic = 0.0;                    // lies in [min(left, right), max(left, right)]
};

struct InputCheck {
  std::size_t input = 0;        // position in the inputs vector
  std::string name;             // "input 0" (plus the tensor's name if it has one); gradgradcheck's
                                // extra input, the random cotangent, is "grad_output"
  Shape shape;                  // of that input
  bool checked = false;         // false when the input does not require grad
  bool ok = true;
  double max_abs_error = 0.0;   // over all Jacobian entries of this input
  double max_rel_error = 0.0;   // |a - n| / max(|n|, tiny) over entries that exceed atol
                                // (tiny = the smallest normal double, so n = 0 gives a huge ratio)
  // The entry with the largest violation of |a - n| <= atol + rtol |n|, measured as
  // |a - n| / (atol + rtol |n|) (> 1 means it fails); NaN on either side is the worst possible.
  // Reported even when the input passes (it is then the entry closest to failing).
  // Fast mode compares one projection u^T J v per input: the indices below stay -1/empty and
  // analytic/numeric are the two projections.
  std::int64_t worst_output = -1;   // flat index into the output (gradgradcheck: into the
                                    // concatenation of its outputs, see worst_output_tensor)
  std::size_t worst_output_tensor = 0;           // which output (gradgradcheck has several)
  std::vector<std::int64_t> worst_output_index;  // multi-index into that output
  std::int64_t worst_element = -1;  // flat index into this input
  std::vector<std::int64_t> worst_index;  // the same, as a multi-index into this input
  double analytic = 0.0;
  double numeric = 0.0;
  // Entries at kinks (see GradcheckOptions::detect_kinks): not failures, and left out of the
  // error figures and the worst element above.
  std::vector<Kink> kinks;
};

struct GradcheckReport {
  std::string check = "gradcheck";  // or "gradgradcheck"
  GradcheckOptions options;
  DType dtype = kFloat64;            // float32 if any checked input is float32
  std::vector<Shape> outputs;        // shapes of the checked function's outputs (gradcheck: one;
                                     // gradgradcheck: the gradient of each input requiring grad)
  std::vector<InputCheck> inputs;
  std::vector<std::string> warnings;  // e.g. float32 inputs
  bool ok() const;                 // every checked input ok (false for an empty report)
  explicit operator bool() const { return ok(); }
  std::string str() const;         // human-readable, one line per input
  // Fields as above plus "ok". Non-finite numbers (inf, NaN) are written as the strings "inf",
  // "-inf" and "nan", since JSON has no literal for them.
  nlohmann::json to_json() const;
};
std::ostream& operator<<(std::ostream& os, const GradcheckReport& r);

namespace detail {
// The verdict on one Jacobian entry: analytic a against the central difference n, with the
// one-sided differences left and right for kink detection (see GradcheckOptions::detect_kinks).
enum class EntryVerdict { Pass, Kink, Fail };
EntryVerdict judge_entry(double a, double n, double left, double right, double atol, double rtol, bool detect_kinks);
}  // namespace detail

// One [out.numel(), in.numel()] matrix per input (float64). Inputs that do not require grad get
// an undefined Tensor (at least one must require grad). f is evaluated without recording, on
// perturbed copies (the caller's tensors are never written). The divisor is the step actually
// taken, (x + eps) - (x - eps) as stored in x's dtype: 2 eps up to rounding, more accurate for
// large |x| or float32.
//
// The single-tensor overloads (UnaryFunction) differentiate with respect to x whether or not it
// requires grad; the vector overloads differentiate the inputs that require grad and pass the
// others through unchanged (masks, indices, constants).
std::vector<Tensor> numerical_jacobian(const Function& f, const std::vector<Tensor>& inputs, double eps = 1e-6);
// Same layout, by reverse mode: one backward per output element.
std::vector<Tensor> jacobian(const Function& f, const std::vector<Tensor>& inputs);
Tensor jacobian(const UnaryFunction& f, const Tensor& x);

GradcheckReport gradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});
GradcheckReport gradcheck(const UnaryFunction& f, const Tensor& x, const GradcheckOptions& options = {});
// Checks the second derivatives: for a random cotangent g (seeded), the function
// (inputs, g) -> VJP(f)(inputs, g) is gradchecked, its VJP computed by double backward.
GradcheckReport gradgradcheck(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});
GradcheckReport gradgradcheck(const UnaryFunction& f, const Tensor& x, const GradcheckOptions& options = {});

// Reverse-mode passes run on fresh leaves (x.detach()), so the caller's graph and .grad are
// untouched. An output that does not require grad, or an input it does not use, gives zeros.
//
// f must return a single element. hessian is [x.numel(), x.numel()]; hvp(f, x, v) = H v with x's shape.
Tensor hessian(const UnaryFunction& f, const Tensor& x);
Tensor hvp(const UnaryFunction& f, const Tensor& x, const Tensor& v);

}  // namespace tapegrad

template <>
struct fmt::formatter<tapegrad::GradcheckReport> : fmt::formatter<std::string> {
  auto format(const tapegrad::GradcheckReport& r, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(r.str(), ctx);
  }
};
