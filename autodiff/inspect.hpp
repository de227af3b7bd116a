// SPDX-License-Identifier: MIT
#pragma once
// Looking inside the tape: tools for learning backpropagation and for debugging a VJP inside a
// larger network. None of them costs anything on the normal path (recording and backward check one
// thread-local pointer or flag).
//
//   to_dot(loss)            the recorded graph as Graphviz DOT: op, output shape and dtype, the VJP
//                           in short maths, optionally values and gradients; leaves by name
//   BackwardTrace           backward(loss, {.trace = &trace}) records, node by node in the order
//                           backward runs, the incoming gradient g and the input gradients produced
//   check_tape(f, inputs)   every node's VJP checked against central differences on that node's
//                           own inputs; names the first node whose VJP is wrong
//   precision_report        the same function in float32 and float64: per node, the relative error
//                           of the float32 value and gradient (where precision is lost)
//   DetectAnomalyGuard      NaN/Inf in a forward value or a VJP result throws, naming the op and
//                           the node's creation site
// Tape statistics (tape_stats, reset_peak) live in autodiff/tape.hpp.
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "autodiff/gradcheck.hpp"
#include "autodiff/tape.hpp"

namespace tapegrad {

// ---- abbreviated tensors ----
// Shape, dtype and the first few values of a tensor (a trace or a graph should stay readable for
// large tensors): "[2, 3] float64 [0.1, -0.2, 0.3, ... (6)]".
struct TensorSummary {
  bool defined = false;
  Shape shape;
  DType dtype = kFloat64;
  std::int64_t numel = 0;
  std::vector<double> values;  // the first min(numel, max_values), row-major
  double abs_max = 0.0;        // over all elements (NaN if any is NaN)

  static TensorSummary of(const Tensor& t, std::size_t max_values = 6);
  std::string values_str() const;  // "[0.1, -0.2, ...]" ("undefined" when not defined)
  std::string str() const;         // shape, dtype, values
  nlohmann::json to_json() const;
};

// ---- backward trace ----
struct TraceInput {
  std::size_t input = 0;   // position among the node's inputs
  std::string source;      // "leaf 'fc1.weight'", "leaf", "node #3 (mul)", "constant"
  TensorSummary grad;      // undefined: the VJP gave no gradient (zero) or the input needs none
};

struct TraceStep {
  std::size_t position = 0;  // on the tape (creation order)
  std::string op;
  std::string site;          // creation site ("model.cpp:42 (in forward)"), "" when unknown
  TensorSummary grad_out;    // g arriving at the node's output
  std::vector<TraceInput> inputs;
};

// Filled by backward(out, {.trace = &trace}) (or grad(..., {.trace = &trace})): one step per node
// that backward ran a VJP for, in execution order (reverse creation order). Steps accumulate over
// several backward calls until clear().
class BackwardTrace : public detail::BackwardObserver {
 public:
  std::size_t max_values = 6;  // values kept per tensor
  std::vector<TraceStep> steps;

  void clear() { steps.clear(); }
  std::string str() const;  // one block per step: "#3 softmax  g [2, 3] ... -> dx [2, 3] ..."
  nlohmann::json to_json() const;
  void on_vjp(std::size_t position, const Node& node, const Tensor& g, const Grads& gs) override;
};
std::ostream& operator<<(std::ostream& os, const BackwardTrace& t);

// ---- graph export ----
struct DotOptions {
  bool formulas = true;         // the VJP of each op in short maths
  bool values = false;          // abbreviated values of outputs and leaves
  bool grads = false;           // leaves' .grad(), and each node's incoming g when `trace` is given
  const BackwardTrace* trace = nullptr;  // a trace of a backward through this graph (grads = true)
  bool constants = true;        // show inputs that do not require grad (masks, targets, constants)
  std::size_t max_values = 4;   // per tensor, when values or grads are shown
  std::string rankdir = "BT";   // Graphviz layout direction: "BT" puts the loss on top
};

// The graph that produced `root`, as Graphviz DOT text (render with `dot -Tsvg graph.dot`):
// one box per recorded op (position, op, output shape and dtype, VJP formula), one ellipse per
// leaf (its name(), shape, dtype), edges input -> op labelled with the input's position when the
// op has several. `root` is drawn with a double border. Walks the live tape of this thread: call it
// before a backward without retain_graph frees the graph (freed nodes are drawn as "freed").
std::string to_dot(const Tensor& root, const DotOptions& options = {});

// The VJP formula of the op that produced `out`, in short maths ("dx = y ⊙ (g − Σ g ⊙ y)"), as the
// op passed it to record (each op's only copy); "" for leaves and freed graphs.
std::string_view vjp_formula(const Tensor& out);

// ---- anomaly mode ----
// torch.autograd.detect_anomaly. While alive (on this thread):
//   forward   every recorded op's output is checked for NaN and ±inf
//   backward  every VJP result is checked for NaN and ±inf
// The first non-finite value throws RuntimeError naming the op, its position on the tape, its
// creation site when known (autodiff/site.hpp), the element, and the op's inputs.
// Costs a pass over every value: for debugging, not training.
struct AnomalyOptions {
  bool check_forward = true;
  bool allow_forward_inf = false;  // -inf masks (masked_fill(x, mask, -inf)) are legitimate values
};
// torch.is_anomaly_enabled: whether a DetectAnomalyGuard is alive on this thread.
bool is_anomaly_enabled() noexcept;

class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(AnomalyOptions options = {});
  ~DetectAnomalyGuard();
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  struct Observer;
  std::unique_ptr<Observer> observer_;
};

// ---- per-node VJP verification ----
// One recorded node's check: its VJP against central differences of that node's output with
// respect to each of its inputs (the gradcheck test |a - n| <= atol + rtol |n| per entry).
struct NodeCheck {
  std::size_t index = 0;       // creation order within f (0 = first op f recorded)
  std::string op;
  std::string site;            // creation site when known
  Shape out_shape;
  bool ok = true;
  std::size_t checked_inputs = 0;
  std::size_t kinks = 0;       // entries at a non-differentiable point, analytic value inside
                               // the one-sided interval (not failures)
  // The worst entry (largest |a - n| / (atol + rtol |n|)) over this node's inputs:
  std::size_t worst_input = 0;                  // which input of the node
  std::string worst_input_source;               // "leaf 'w'", "node 2 (mul)"
  std::vector<std::int64_t> worst_output_index; // into the node's output
  std::vector<std::int64_t> worst_input_index;  // into that input
  double analytic = 0.0;
  double numeric = 0.0;
  double max_abs_error = 0.0;
};

struct TapeCheckReport {
  GradcheckOptions options;
  std::vector<NodeCheck> nodes;  // in creation order
  std::vector<std::string> warnings;
  bool ok() const;
  const NodeCheck* first_failure() const;  // nullptr when ok
  std::string str() const;
  nlohmann::json to_json() const;
};
std::ostream& operator<<(std::ostream& os, const TapeCheckReport& r);

// Records f(inputs) and checks the VJP of every node it recorded on that node's own inputs, in
// creation order. Numeric side: f is run again with one element of one node input moved by ±eps
// (leaves in place, restored afterwards; intermediate values at the moment the op producing them
// records), stopping as soon as the node under test has recorded. Analytic side: reverse mode from
// the node's output to that input, through the recorded graph. If an input also reaches the node
// along another path (sub(x, max(x))), both sides measure the total derivative, and a node whose
// own VJP is right still passes provided the nodes before it are right, which are checked first:
// the first failing node is the one to fix.
//
// Requirements: f records the same ops in the same order every time (no randomness), and every
// leaf its nodes use is one of `inputs` or a tensor f captures (a leaf created inside f cannot be
// perturbed: check_tape says so). Cost: 2 partial runs of f per input element of every node, plus
// one backward per output element: for small test networks. Use float64.
TapeCheckReport check_tape(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

// ---- precision report ----
struct NodePrecision {
  std::size_t index = 0;     // creation order within f
  std::string op;
  std::string site;
  Shape shape;
  double value_rel_error = 0.0;  // ||v32 - v64||_inf / ||v64||_inf
  double input_rel_error = 0.0;  // the largest value_rel_error among its inputs (leaves: the
                                 // float32 rounding of the input)
  double grad_rel_error = 0.0;   // the same for d(out)/d(this node's output); NaN when unused
  bool loses_precision() const;  // value error > 100x what came in (and > 1e-6)
};

struct PrecisionReport {
  std::vector<NodePrecision> nodes;  // in creation order
  std::vector<std::string> input_names;
  std::vector<double> input_grad_rel_error;  // per input requiring grad (NaN otherwise)
  double output_rel_error = 0.0;
  std::string str() const;  // a table, marking the nodes that lose precision
  nlohmann::json to_json() const;
};
std::ostream& operator<<(std::ostream& os, const PrecisionReport& r);

// Runs f on float64 and on float32 copies of `inputs` (which must be float64; those requiring grad
// become leaves of their run), matches the nodes the two runs record by creation order, and
// backpropagates from f's output (a scalar, or with a gradient of ones). f must not hard-code a
// dtype (write x * 2.0, not x * tensor(2.0, kFloat64)).
PrecisionReport precision_report(const Function& f, const std::vector<Tensor>& inputs);



}  // namespace tapegrad

template <>
struct fmt::formatter<tapegrad::BackwardTrace> : fmt::formatter<std::string> {
  auto format(const tapegrad::BackwardTrace& t, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(t.str(), ctx);
  }
};
template <>
struct fmt::formatter<tapegrad::TapeCheckReport> : fmt::formatter<std::string> {
  auto format(const tapegrad::TapeCheckReport& r, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(r.str(), ctx);
  }
};
template <>
struct fmt::formatter<tapegrad::PrecisionReport> : fmt::formatter<std::string> {
  auto format(const tapegrad::PrecisionReport& r, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(r.str(), ctx);
  }
};
