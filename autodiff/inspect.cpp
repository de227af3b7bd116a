// SPDX-License-Identifier: MIT
#include "autodiff/inspect.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <ostream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "autodiff/check.hpp"
#include "autodiff/detail/node.hpp"

namespace tapegrad {

namespace {

nlohmann::json number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

std::string fmt_index(const std::vector<std::int64_t>& idx) { return fmt::format("[{}]", fmt::join(idx, ", ")); }


// Where a node input comes from, in words.
std::string describe_source(const Tensor& t) {
  if (!t.defined()) return "undefined";
  if (!t.requires_grad()) return t.name().empty() ? "constant" : fmt::format("constant '{}'", t.name());
  if (t.is_leaf()) return t.name().empty() ? "leaf" : fmt::format("leaf '{}'", t.name());
  const char* op = producer_name(t);
  return fmt::format("node #{} ({})", t.impl().node_index, op ? op : "freed");
}

// First non-finite element of a floating tensor, or -1.
std::int64_t first_non_finite(const Tensor& t, bool allow_inf) {
  if (!t.defined() || !is_floating(t.dtype())) return -1;
  std::int64_t found = -1;
  dispatch_float(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    const std::int64_t n = t.numel();
    for (std::int64_t i = 0; i < n; ++i) {
      const bool bad = allow_inf ? std::isnan(p[i]) : !std::isfinite(p[i]);
      if (bad) {
        found = i;
        return;
      }
    }
  });
  return found;
}

std::int64_t count_non_finite(const Tensor& t) {
  std::int64_t c = 0;
  for (double v : t.to_vector()) c += std::isfinite(v) ? 0 : 1;
  return c;
}

std::string node_label(std::size_t position, const Node& node) {
  std::string s = fmt::format("'{}' (node #{}", node.op, position);
  const std::string site = site_str(node.site);
  if (!site.empty()) s += fmt::format(", called at {}", site);
  return s + ")";
}

// An input edge in words: the tensor when it is still alive, else what the edge remembers.
std::string describe_source(const InputEdge& e) {
  if (const Tensor t = e.tensor(); t.defined()) return describe_source(t);
  if (!e.requires_grad) return "constant";
  return fmt::format("node #{} ({})", e.node_index, e.op ? e.op : "freed");
}

// The inputs with their values (`values`: the tensors as the op received them, when an observer
// kept them; else whatever is still alive).
std::string inputs_str(const Node& node, const std::vector<Tensor>* values = nullptr) {
  std::string s;
  for (std::size_t k = 0; k < node.inputs.size(); ++k) {
    const Tensor t = values && k < values->size() ? (*values)[k] : node.inputs[k].tensor();
    s += fmt::format("{}input {} ({}) = {}", k ? "; " : "", k, t.defined() ? describe_source(t) : describe_source(node.inputs[k]),
                     t.defined() ? TensorSummary::of(t, 6).str() : fmt::format("{} {} (value not kept)", node.inputs[k].shape,
                                                                                dtype_name(node.inputs[k].dtype)));
  }
  return s;
}

}  // namespace

// ---- TensorSummary ----

TensorSummary TensorSummary::of(const Tensor& t, std::size_t max_values) {
  TensorSummary s;
  if (!t.defined()) return s;
  s.defined = true;
  s.shape = t.shape();
  s.dtype = t.dtype();
  s.numel = t.numel();
  if (!is_floating(t.dtype()) && t.dtype() != kInt64 && t.dtype() != kBool) return s;
  const std::vector<double> v = t.to_vector();
  s.values.assign(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::min(v.size(), max_values)));
  for (double x : v) {
    if (std::isnan(x) || std::isnan(s.abs_max)) {
      s.abs_max = std::numeric_limits<double>::quiet_NaN();
    } else {
      s.abs_max = std::max(s.abs_max, std::abs(x));
    }
  }
  return s;
}

std::string TensorSummary::values_str() const {
  if (!defined) return "undefined";
  std::string s = "[";
  for (std::size_t i = 0; i < values.size(); ++i) s += fmt::format("{}{:.4g}", i ? ", " : "", values[i]);
  if (static_cast<std::int64_t>(values.size()) < numel) s += fmt::format("{}... ({} values)", values.empty() ? "" : ", ", numel);
  return s + "]";
}

std::string TensorSummary::str() const {
  if (!defined) return "undefined";
  return fmt::format("{} {} {}", shape, dtype_name(dtype), values_str());
}

nlohmann::json TensorSummary::to_json() const {
  nlohmann::json j;
  j["defined"] = defined;
  if (!defined) return j;
  j["shape"] = shape.to_vector();
  j["dtype"] = std::string(dtype_name(dtype));
  j["numel"] = numel;
  j["values"] = nlohmann::json::array();
  for (double v : values) j["values"].push_back(number(v));
  j["abs_max"] = number(abs_max);
  return j;
}

// ---- backward trace ----

namespace {

void trace_step(BackwardTrace& trace, std::size_t position, const Node& node, const Tensor& g, const Grads& gs) {
  TraceStep step;
  step.position = position;
  step.op = node.op;
  step.site = site_str(node.site);
  step.grad_out = TensorSummary::of(g, trace.max_values);
  for (std::size_t k = 0; k < node.inputs.size(); ++k) {
    TraceInput in;
    in.input = k;
    in.source = describe_source(node.inputs[k]);
    if (k < gs.size() && gs[k].defined() && node.inputs[k].requires_grad) in.grad = TensorSummary::of(gs[k], trace.max_values);
    step.inputs.push_back(std::move(in));
  }
  trace.steps.push_back(std::move(step));
}

void check_vjp_finite(std::size_t position, const Node& node, const Tensor& g, const Grads& gs,
                      const std::vector<Tensor>* inputs) {
  for (std::size_t k = 0; k < gs.size(); ++k) {
    if (!gs[k].defined() || !node.inputs[k].requires_grad) continue;
    const std::int64_t bad = first_non_finite(gs[k], /*allow_inf=*/false);
    if (bad < 0) continue;
    const double v = gs[k].to_vector()[static_cast<std::size_t>(bad)];
    const bool g_finite = first_non_finite(g, false) < 0;
    throw RuntimeError(fmt::format(
        "anomaly: the vjp of {} returned {} in the gradient for input {} ({}, shape {}) at {} ({} of {} values are not "
        "finite); {}. Check the VJP's formula for 0/0, inf - inf, log(0) or 1/0 at these values: {}; incoming g = {}",
        node_label(position, node), v, k, describe_source(node.inputs[k]), gs[k].shape(),
        fmt_index(unravel_index(gs[k].shape(), bad)), count_non_finite(gs[k]), gs[k].numel(),
        g_finite ? "the incoming gradient g was finite, so this VJP produced it"
                 : "the incoming gradient g was already not finite (run the forward under DetectAnomalyGuard too)",
        inputs_str(node, inputs), TensorSummary::of(g).str()));
  }
}

}  // namespace

void BackwardTrace::on_vjp(std::size_t position, const Node& node, const Tensor& g, const Grads& gs) {
  trace_step(*this, position, node, g, gs);
}

std::string BackwardTrace::str() const {
  std::string s = fmt::format("backward trace: {} step{} in execution order (reverse creation order)", steps.size(),
                              steps.size() == 1 ? "" : "s");
  for (const TraceStep& st : steps) {
    s += fmt::format("\n  #{} {}{}", st.position, st.op, st.site.empty() ? "" : fmt::format("   [{}]", st.site));
    s += fmt::format("\n      g     = {}", st.grad_out.str());
    for (const TraceInput& in : st.inputs) {
      s += fmt::format("\n      d in{} = {}   -> {}", in.input, in.grad.defined ? in.grad.str() : "(none)", in.source);
    }
  }
  return s;
}

nlohmann::json BackwardTrace::to_json() const {
  nlohmann::json j = nlohmann::json::array();
  for (const TraceStep& st : steps) {
    nlohmann::json e;
    e["position"] = st.position;
    e["op"] = st.op;
    e["site"] = st.site;
    e["grad_out"] = st.grad_out.to_json();
    e["inputs"] = nlohmann::json::array();
    for (const TraceInput& in : st.inputs)
      e["inputs"].push_back({{"input", in.input}, {"source", in.source}, {"grad", in.grad.to_json()}});
    j.push_back(std::move(e));
  }
  return nlohmann::json{{"steps", std::move(j)}};
}

std::ostream& operator<<(std::ostream& os, const BackwardTrace& t) { return os << t.str(); }

// ---- VJP formulas ----

std::string_view vjp_formula(const Tensor& out) {
  if (!out.defined() || out.is_leaf()) return {};
  const NodeStore& tape = tape_nodes();
  const auto idx = static_cast<std::size_t>(out.impl().node_index);
  if (producer_name(out) == nullptr || idx >= tape.size()) return {};
  return tape[idx].formula;
}

// ---- graph export ----

namespace {

std::string dot_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

std::string to_dot(const Tensor& root, const DotOptions& o) {
  if (!root.defined()) throw InvalidArgument("to_dot: root is an undefined Tensor (expected the output of a computation)");
  const NodeStore& tape = tape_nodes();
  const bool show_grads = o.grads || o.trace != nullptr;
  std::map<std::size_t, const TraceStep*> g_at;  // the last traced step of each position
  if (o.trace)
    for (const TraceStep& st : o.trace->steps) g_at[st.position] = &st;

  std::string out = fmt::format(
      "digraph tapegrad {{\n  rankdir={};\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontsize=9];\n",
      o.rankdir.empty() ? "BT" : o.rankdir);

  std::map<const detail::TensorHead*, std::string> tensor_ids;  // leaves, constants, freed graphs
  std::map<std::size_t, bool> emitted;                  // op nodes by position
  std::vector<std::size_t> todo;

  // The DOT id of the box or ellipse standing for tensor t (emitting it on first sight).
  auto id_of = [&](const Tensor& t, bool is_root) -> std::string {
    if (t.requires_grad() && !t.is_leaf() && producer_name(t) != nullptr) {
      const auto pos = static_cast<std::size_t>(t.impl().node_index);
      if (!emitted.count(pos)) {
        emitted[pos] = is_root;
        todo.push_back(pos);
      }
      return fmt::format("n{}", pos);
    }
    const detail::TensorHead* key = t.impl_ptr().get();
    if (auto it = tensor_ids.find(key); it != tensor_ids.end()) return it->second;
    const std::string id = fmt::format("t{}", tensor_ids.size());
    tensor_ids[key] = id;
    std::string label;
    std::string style;
    if (!t.requires_grad()) {
      if (!o.constants) return id;  // drawn nowhere; the edge is skipped by the caller
      label = t.name().empty() ? "constant" : t.name();
      style = "shape=ellipse, style=dashed, color=gray40, fontcolor=gray30";
    } else if (t.is_leaf()) {
      label = t.name().empty() ? "leaf" : t.name();
      style = "shape=ellipse, style=filled, fillcolor=\"#dbeafe\"";
    } else {
      label = "(graph freed or on another thread)";
      style = "shape=box, style=dashed";
    }
    label += fmt::format("\n{} {}", t.shape(), dtype_name(t.dtype()));
    if (o.values) label += "\nvalue " + TensorSummary::of(t, o.max_values).values_str();
    if (show_grads && t.is_leaf() && t.grad().defined()) label += "\ngrad " + TensorSummary::of(t.grad(), o.max_values).values_str();
    out += fmt::format("  {} [label=\"{}\", {}{}];\n", id, dot_escape(label), style, is_root ? ", peripheries=2" : "");
    return id;
  };

  // An input edge: its node when live, else the tensor when someone still holds it, else what the
  // edge remembers (a constant nobody holds any more: its shape and dtype).
  std::size_t anonymous = 0;
  auto edge_id = [&](const InputEdge& e) -> std::string {
    const auto pos = static_cast<std::size_t>(e.node_index);
    if (e.requires_grad && !e.is_leaf() && pos < tape.size() && tape[pos].id == e.node_id && !tape[pos].released) {
      if (!emitted.count(pos)) {
        emitted[pos] = false;
        todo.push_back(pos);
      }
      return fmt::format("n{}", pos);
    }
    if (const Tensor t = e.tensor(); t.defined()) return id_of(t, false);
    const std::string id = fmt::format("u{}", anonymous++);
    const bool constant = !e.requires_grad;
    out += fmt::format("  {} [label=\"{}\", {}];\n", id,
                       dot_escape(fmt::format("{}\n{} {}", constant ? "constant" : "(graph freed or on another thread)",
                                              e.shape, dtype_name(e.dtype))),
                       constant ? "shape=ellipse, style=dashed, color=gray40, fontcolor=gray30" : "shape=box, style=dashed");
    return id;
  };

  const std::string root_id = id_of(root, true);
  (void)root_id;
  while (!todo.empty()) {
    const std::size_t pos = todo.back();
    todo.pop_back();
    const Node& n = tape[pos];
    std::string label = fmt::format("#{} {}\n{} {}", pos, n.op, n.out_shape, dtype_name(n.out_dtype));
    if (o.formulas) {
      const std::string_view f = n.formula;
      label += fmt::format("\n{}", f.empty() ? "custom VJP" : f);
    }
    if (o.values) {
      if (auto sp = n.out.lock())
        label += "\nvalue " + TensorSummary::of(Tensor(sp), o.max_values).values_str();
    }
    if (show_grads) {
      if (auto it = g_at.find(pos); it != g_at.end()) label += "\ng " + it->second->grad_out.values_str();
    }
    if (n.released) label += "\n(freed by backward)";
    out += fmt::format("  n{} [label=\"{}\", shape=box, style=\"rounded,filled\", fillcolor=\"#fef3c7\"{}];\n", pos,
                       dot_escape(label), emitted[pos] ? ", peripheries=2" : "");
    const std::size_t n_in = n.inputs.size();
    for (std::size_t k = 0; k < n_in; ++k) {
      const InputEdge& e = n.inputs[k];
      if (!e.requires_grad && !o.constants) continue;
      const std::string src = edge_id(e);
      out += fmt::format("  {} -> n{}{};\n", src, pos, n_in > 1 ? fmt::format(" [label=\"{}\"]", k) : "");
    }
  }
  out += "}\n";
  return out;
}

// ---- anomaly mode ----

namespace {
thread_local const void* innermost_anomaly = nullptr;  // the innermost guard's observer decides
}  // namespace

// Anomaly mode watches the engine as an observer of recording (the forward check, and keeping each
// node's inputs so a backward error can show their values: nodes keep only what their VJP needs)
// and of backward (every VJP's result).
struct DetectAnomalyGuard::Observer : detail::RecordObserver, detail::BackwardObserver {
  AnomalyOptions options;
  const void* prev_innermost;
  struct Kept {
    std::uint64_t id = 0;
    std::vector<Tensor> inputs;
  };
  std::unordered_map<std::size_t, Kept> kept;  // by tape position, while the guard lives
  detail::ScopedBackwardObserver backward_scope{*this};
  explicit Observer(AnomalyOptions o) : options(o), prev_innermost(innermost_anomaly) { innermost_anomaly = this; }
  ~Observer() override { innermost_anomaly = prev_innermost; }
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;
  void on_record(std::size_t position, const Node& node, std::span<const Tensor> inputs, Tensor& out) override {
    if (innermost_anomaly != this) return;
    kept[position] = Kept{node.id, std::vector<Tensor>(inputs.begin(), inputs.end())};
    if (!options.check_forward) return;
    const std::int64_t bad = first_non_finite(out, options.allow_forward_inf);
    if (bad < 0) return;
    const double v = out.to_vector()[static_cast<std::size_t>(bad)];
    throw RuntimeError(fmt::format(
        "anomaly: the forward of {} produced {} at {} of its output (shape {}; {} of {} values are not finite). Its "
        "inputs: {}. Fix the inputs at that position (e.g. clamp_min(x, 1e-12) before log, or add eps to a divisor), "
        "or pass AnomalyOptions{{.allow_forward_inf = true}} if infinities are intended (masks)",
        node_label(position, node), v, fmt_index(unravel_index(out.shape(), bad)), out.shape(), count_non_finite(out),
        out.numel(), inputs_str(node, &kept[position].inputs)));
  }
  void on_vjp(std::size_t position, const Node& node, const Tensor& g, const Grads& gs) override {
    if (innermost_anomaly != this) return;
    const auto it = kept.find(position);
    check_vjp_finite(position, node, g, gs, it != kept.end() && it->second.id == node.id ? &it->second.inputs : nullptr);
  }
};

DetectAnomalyGuard::DetectAnomalyGuard(AnomalyOptions options) : observer_(std::make_unique<Observer>(options)) {}

DetectAnomalyGuard::~DetectAnomalyGuard() { observer_.reset(); }

bool is_anomaly_enabled() noexcept { return innermost_anomaly != nullptr; }

// ---- check_tape ----

namespace {

// Collects every node recorded while it lives (by creation order).
struct Recorder : detail::RecordObserver {
  std::vector<Tensor> outs;
  std::vector<std::size_t> positions;
  std::vector<const char*> ops;
  void on_record(std::size_t position, const Node& node, std::span<const Tensor>, Tensor& out) override {
    outs.push_back(out);
    positions.push_back(position);
    ops.push_back(node.op);
  }
};

struct StopReplay {};

// A replay of f: checks it records the same ops, perturbs the output of node `perturb` (if >= 0)
// at `element` by `delta`, and stops once node `target` has recorded, keeping its output.
struct Replay : detail::RecordObserver {
  const std::vector<const char*>& ops;
  std::size_t target = 0;
  std::int64_t perturb = -1;
  std::int64_t element = 0;
  double delta = 0.0;
  std::size_t slot = 0;                    // the input of `target` being checked
  const detail::TensorHead* expect_leaf = nullptr; // in-place perturbation: that input must be this tensor
  std::size_t count = 0;
  double moved_from = 0.0, moved_to = 0.0;  // the perturbed value before and after (as stored)
  std::vector<double> result;
  bool leaf_mismatch = false;

  explicit Replay(const std::vector<const char*>& o) : ops(o) {}
  void on_record(std::size_t, const Node& node, std::span<const Tensor> inputs, Tensor& out) override {
    const std::size_t i = count++;
    if (i >= ops.size() || std::strcmp(ops[i], node.op) != 0)
      throw RuntimeError(fmt::format(
          "check_tape: f recorded '{}' as its op {} when run again, but '{}' the first time; f must record the same ops "
          "in the same order on every call (no randomness, no data-dependent branches near the checked values)",
          node.op, i, i < ops.size() ? ops[i] : "nothing"));
    if (static_cast<std::int64_t>(i) == perturb) {
      // A private copy of the values, so only the consumers of this handle see the change (views
      // of its input share storage).
      TensorImpl& o = out.impl();
      Tensor copy = out.contiguous_copy_detached();
      o.storage = copy.storage_ref();
      o.data = copy.impl().data;
      dispatch_float(out.dtype(), [&]<class T>() {
        T* p = static_cast<T*>(o.data);
        moved_from = static_cast<double>(p[element]);
        p[element] = static_cast<T>(moved_from + delta);
        moved_to = static_cast<double>(p[element]);
      });
    }
    if (i == target) {
      if (expect_leaf && (slot >= inputs.size() || inputs[slot].impl_ptr().get() != expect_leaf)) leaf_mismatch = true;
      result = out.to_vector();
      throw StopReplay{};
    }
  }
};

// Runs f with the perturbation set up in `rp`; returns node `target`'s output values.
std::vector<double> replay(const Function& f, const std::vector<Tensor>& inputs, Replay& rp) {
  GradModeGuard grad_on(true);
  rp.count = 0;
  rp.result.clear();
  try {
    (void)f(inputs);
  } catch (const StopReplay&) {
    return rp.result;
  }
  throw RuntimeError(fmt::format("check_tape: f recorded {} ops when run again, {} the first time; f must record the same "
                                 "ops on every call", rp.count, rp.ops.size()));
}

}  // namespace

TapeCheckReport check_tape(const Function& f, const std::vector<Tensor>& inputs, const GradcheckOptions& options) {
  if (!f) throw InvalidArgument("check_tape: f is empty (expected a callable)");
  if (!(options.eps > 0.0) || !std::isfinite(options.eps))
    throw InvalidArgument(fmt::format("check_tape: eps = {} (expected a positive finite step)", options.eps));
  TapeCheckReport report;
  report.options = options;

  // The reference run: every node f records, kept alive by the recorder's handles.
  Tensor y;
  std::vector<Tensor> outs;
  std::vector<std::size_t> positions;
  std::vector<const char*> ops;
  {
    Recorder rec;
    GradModeGuard grad_on(true);
    y = f(inputs);
    outs = std::move(rec.outs);
    positions = std::move(rec.positions);
    ops = std::move(rec.ops);
  }
  std::unordered_map<std::size_t, std::size_t> index_of;  // tape position -> creation index within f
  for (std::size_t i = 0; i < positions.size(); ++i) index_of[positions[i]] = i;
  if (outs.empty()) report.warnings.push_back("f recorded no ops (do its inputs require grad?)");

  const NodeStore& tape = tape_nodes();
  for (std::size_t k = 0; k < outs.size(); ++k) {
    const Node& node = tape[positions[k]];
    NodeCheck nc;
    nc.index = k;
    nc.op = ops[k];
    nc.site = site_str(node.site);
    nc.out_shape = outs[k].shape();
    std::vector<Tensor> node_inputs;  // alive: f's inputs, or outputs the recorder holds
    for (const InputEdge& e : node.inputs) node_inputs.push_back(e.tensor());
    const Tensor& out = outs[k];
    if (!is_floating(out.dtype())) {
      report.nodes.push_back(std::move(nc));
      continue;
    }
    const std::vector<double> base = out.to_vector();
    double worst_ratio = -1.0;
    std::vector<const detail::TensorHead*> seen;
    for (std::size_t slot = 0; slot < node_inputs.size(); ++slot) {
      Tensor t = node_inputs[slot];
      if (!t.defined() || !t.requires_grad() || !is_floating(t.dtype())) continue;
      if (std::find(seen.begin(), seen.end(), t.impl_ptr().get()) != seen.end()) continue;  // mul(x, x): once
      seen.push_back(t.impl_ptr().get());
      ++nc.checked_inputs;
      if (t.dtype() == kFloat32 && report.warnings.empty())
        report.warnings.push_back("float32 values: central differences are not accurate enough; use float64");

      // Analytic: row i = d out[i] / d t through the recorded graph.
      const std::int64_t rows = out.numel(), cols = t.numel();
      std::vector<double> A(static_cast<std::size_t>(rows * cols), 0.0);
      for (std::int64_t i = 0; i < rows; ++i) {
        Tensor e = zeros(out.shape(), out.dtype());
        dispatch_float(e.dtype(), [&]<class T>() { e.mutable_data<T>()[i] = T(1); });
        const Tensor gt = grad({out}, {t}, {e}, GradOptions{.retain_graph = true, .allow_unused = true}).at(0);
        if (!gt.defined()) continue;
        const auto row = gt.to_vector();
        std::copy(row.begin(), row.end(), A.begin() + static_cast<std::ptrdiff_t>(i * cols));
      }

      // Numeric: perturb t where f makes it (its producing node) or in place (a leaf, or a tensor
      // made before f ran).
      Replay rp(ops);
      rp.target = k;
      rp.slot = slot;
      std::int64_t producer = -1;
      if (!t.is_leaf()) {
        if (auto it = index_of.find(static_cast<std::size_t>(t.impl().node_index)); it != index_of.end())
          producer = static_cast<std::int64_t>(it->second);
      }
      rp.perturb = producer;
      rp.expect_leaf = producer < 0 ? t.impl_ptr().get() : nullptr;
      std::vector<double> N(A.size()), L(A.size()), R(A.size());
      for (std::int64_t j = 0; j < cols; ++j) {
        std::vector<double> plus, minus;
        double x = 0.0, xp = 0.0, xm = 0.0;
        for (const double sign : {1.0, -1.0}) {
          rp.element = j;
          rp.delta = sign * options.eps;
          std::vector<double> vals;
          if (producer >= 0) {
            vals = replay(f, inputs, rp);
            x = rp.moved_from;
            (sign > 0 ? xp : xm) = rp.moved_to;
          } else {
            dispatch_float(t.dtype(), [&]<class T>() {
              T* p = t.mutable_data<T>();
              const T old = p[j];
              x = static_cast<double>(old);
              p[j] = static_cast<T>(x + rp.delta);
              (sign > 0 ? xp : xm) = static_cast<double>(p[j]);
              try {
                vals = replay(f, inputs, rp);
              } catch (...) {
                p[j] = old;
                throw;
              }
              p[j] = old;
            });
            if (rp.leaf_mismatch)
              throw InvalidArgument(fmt::format(
                  "check_tape: input {} of node {} ('{}') is a leaf of shape {} that f creates anew on every call, so it "
                  "cannot be perturbed; create it outside f and pass it in `inputs` (or capture it)",
                  slot, k, ops[k], t.shape()));
          }
          (sign > 0 ? plus : minus) = std::move(vals);
        }
        const double nan = std::numeric_limits<double>::quiet_NaN();
        for (std::int64_t i = 0; i < rows; ++i) {
          const auto at = static_cast<std::size_t>(i * cols + j);
          const auto si = static_cast<std::size_t>(i);
          N[at] = xp != xm ? (plus[si] - minus[si]) / (xp - xm) : nan;
          L[at] = x != xm ? (base[si] - minus[si]) / (x - xm) : nan;
          R[at] = xp != x ? (plus[si] - base[si]) / (xp - x) : nan;
        }
      }

      for (std::int64_t i = 0; i < rows; ++i)
        for (std::int64_t j = 0; j < cols; ++j) {
          const auto at = static_cast<std::size_t>(i * cols + j);
          const double a = A[at], n = N[at];
          const auto verdict = detail::judge_entry(a, n, L[at], R[at], options.atol, options.rtol, options.detect_kinks);
          if (verdict == detail::EntryVerdict::Kink) {
            ++nc.kinks;
            continue;
          }
          const double err = std::abs(a - n);
          const double tol = options.atol + options.rtol * std::abs(n);
          double ratio = std::isnan(err) ? std::numeric_limits<double>::infinity() : (tol > 0 ? err / tol : (err > 0 ? 1e300 : 0.0));
          if (verdict == detail::EntryVerdict::Fail) nc.ok = false;
          nc.max_abs_error = std::isnan(err) || std::isnan(nc.max_abs_error) ? std::numeric_limits<double>::quiet_NaN()
                                                                             : std::max(nc.max_abs_error, err);
          if (ratio > worst_ratio) {
            worst_ratio = ratio;
            nc.worst_input = slot;
            nc.worst_input_source = producer >= 0 ? fmt::format("node {} ({})", producer, ops[static_cast<std::size_t>(producer)])
                                                  : describe_source(t);
            nc.worst_output_index = unravel_index(out.shape(), i);
            nc.worst_input_index = unravel_index(t.shape(), j);
            nc.analytic = a;
            nc.numeric = n;
          }
        }
    }
    report.nodes.push_back(std::move(nc));
  }
  return report;
}

bool TapeCheckReport::ok() const { return first_failure() == nullptr; }

const NodeCheck* TapeCheckReport::first_failure() const {
  for (const NodeCheck& n : nodes)
    if (!n.ok) return &n;
  return nullptr;
}

std::string TapeCheckReport::str() const {
  std::size_t failed = 0;
  for (const NodeCheck& n : nodes) failed += n.ok ? 0 : 1;
  std::string s = fmt::format("check_tape: {} ({} nodes, eps={:g}, atol={:g}, rtol={:g})",
                              failed == 0 ? "ok" : fmt::format("FAILED at {} of {} nodes", failed, nodes.size()),
                              nodes.size(), options.eps, options.atol, options.rtol);
  if (const NodeCheck* f = first_failure())
    s += fmt::format(
        "\n  first wrong VJP: node {} '{}'{} (output {}): d out{} / d in{}{} (input {} is {}): analytic {:.10g} vs numeric "
        "{:.10g}; fix this op's VJP (failures after it may only inherit it)",
        f->index, f->op, f->site.empty() ? "" : fmt::format(" at {}", f->site), f->out_shape, fmt_index(f->worst_output_index),
        f->worst_input, fmt_index(f->worst_input_index), f->worst_input, f->worst_input_source, f->analytic, f->numeric);
  for (const NodeCheck& n : nodes) {
    s += fmt::format("\n  {:>3} {:<14} {:<12} {}", n.index, n.op, n.out_shape.str(), n.ok ? "ok" : "FAILED");
    if (n.checked_inputs > 0)
      s += fmt::format("  (max abs error {:.3g}; worst: input {} {}, analytic {:.6g} vs numeric {:.6g})", n.max_abs_error,
                       n.worst_input, fmt_index(n.worst_input_index), n.analytic, n.numeric);
    if (n.kinks > 0) s += fmt::format("  {} kink{}", n.kinks, n.kinks == 1 ? "" : "s");
    if (!n.site.empty()) s += fmt::format("  [{}]", n.site);
  }
  for (const std::string& w : warnings) s += fmt::format("\n  warning: {}", w);
  return s;
}

nlohmann::json TapeCheckReport::to_json() const {
  nlohmann::json j;
  j["ok"] = ok();
  j["options"] = {{"eps", number(options.eps)}, {"atol", number(options.atol)}, {"rtol", number(options.rtol)}};
  const NodeCheck* f = first_failure();
  j["first_failure"] = f ? nlohmann::json(f->index) : nlohmann::json(nullptr);
  j["nodes"] = nlohmann::json::array();
  for (const NodeCheck& n : nodes)
    j["nodes"].push_back({{"index", n.index},
                          {"op", n.op},
                          {"site", n.site},
                          {"out_shape", n.out_shape.to_vector()},
                          {"ok", n.ok},
                          {"checked_inputs", n.checked_inputs},
                          {"kinks", n.kinks},
                          {"worst_input", n.worst_input},
                          {"worst_input_source", n.worst_input_source},
                          {"worst_output_index", n.worst_output_index},
                          {"worst_input_index", n.worst_input_index},
                          {"analytic", number(n.analytic)},
                          {"numeric", number(n.numeric)},
                          {"max_abs_error", number(n.max_abs_error)}});
  j["warnings"] = warnings;
  return j;
}

std::ostream& operator<<(std::ostream& os, const TapeCheckReport& r) { return os << r.str(); }

// ---- precision report ----

namespace {

// ||a - b||_inf / ||b||_inf (0 when both are empty or equal).
double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::abs(a[i] - b[i]);
    if (std::isnan(d) && !(std::isnan(a[i]) && std::isnan(b[i]))) return std::numeric_limits<double>::quiet_NaN();
    if (a[i] == b[i]) continue;
    num = std::max(num, d);
    den = std::max(den, std::abs(b[i]));
  }
  for (double v : b) den = std::max(den, std::isfinite(v) ? std::abs(v) : 0.0);
  if (num == 0.0) return 0.0;
  return num / std::max(den, std::numeric_limits<double>::min());
}

struct PrecisionRun {
  std::vector<Tensor> leaves;
  Tensor y;
  std::vector<Tensor> outs;
  std::vector<const char*> ops;
  std::vector<std::vector<std::int64_t>> sources;  // per node input: node index, -1 - leaf index, or INT64_MIN
  std::vector<std::string> sites;
  std::vector<Tensor> node_grads, leaf_grads;
};

PrecisionRun precision_run(const Function& f, const std::vector<Tensor>& inputs, DType dtype) {
  PrecisionRun run;
  for (const Tensor& in : inputs) {
    Tensor l = in.detach().to(dtype).contiguous_copy_detached();
    if (in.requires_grad()) l.requires_grad_(true);
    l.set_name(in.name());
    run.leaves.push_back(l);
  }
  std::unordered_map<std::size_t, std::size_t> index_of;
  {
    Recorder rec;
    GradModeGuard grad_on(true);
    run.y = f(run.leaves);
    run.outs = std::move(rec.outs);
    run.ops = rec.ops;
    for (std::size_t i = 0; i < rec.positions.size(); ++i) index_of[rec.positions[i]] = i;
    const NodeStore& tape = tape_nodes();
    for (std::size_t i = 0; i < rec.positions.size(); ++i) {
      const Node& n = tape[rec.positions[i]];
      run.sites.push_back(site_str(n.site));
      std::vector<std::int64_t> src;
      for (const InputEdge& e : n.inputs) {
        std::int64_t s = std::numeric_limits<std::int64_t>::min();
        if (e.requires_grad && !e.is_leaf()) {
          if (auto it = index_of.find(static_cast<std::size_t>(e.node_index)); it != index_of.end())
            s = static_cast<std::int64_t>(it->second);
        } else if (const Tensor in = e.tensor(); in.defined()) {
          for (std::size_t q = 0; q < run.leaves.size(); ++q)
            if (run.leaves[q].same(in)) s = -1 - static_cast<std::int64_t>(q);
        }
        src.push_back(s);
      }
      run.sources.push_back(std::move(src));
    }
  }
  if (!run.y.defined() || !is_floating(run.y.dtype()))
    throw InvalidArgument("precision_report: f must return a float32/float64 tensor of the input dtype");
  if (run.y.dtype() != dtype)
    throw InvalidArgument(fmt::format("precision_report: f returned {} for {} inputs; f must compute in its inputs' dtype "
                                      "(write x * 2.0, not x * tensor(2.0, kFloat64))", dtype_name(run.y.dtype()), dtype_name(dtype)));
  std::vector<Tensor> targets = run.outs;
  for (const Tensor& l : run.leaves)
    if (l.requires_grad()) targets.push_back(l);
  if (run.y.requires_grad() && !targets.empty()) {
    const Tensor seed = ones_like(run.y);
    const std::vector<Tensor> gs = grad({run.y}, targets, {seed}, GradOptions{.allow_unused = true});
    run.node_grads.assign(gs.begin(), gs.begin() + static_cast<std::ptrdiff_t>(run.outs.size()));
    std::size_t q = run.outs.size();
    for (const Tensor& l : run.leaves) run.leaf_grads.push_back(l.requires_grad() ? gs[q++] : Tensor());
  } else {
    run.node_grads.assign(run.outs.size(), Tensor());
    run.leaf_grads.assign(run.leaves.size(), Tensor());
  }
  return run;
}

double grad_rel(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return std::numeric_limits<double>::quiet_NaN();
  return rel_error(a.to_vector(), b.to_vector());
}

}  // namespace

bool NodePrecision::loses_precision() const {
  constexpr double kFloat32Eps = 5.96e-8;  // 2^-24: float32's unit roundoff
  return value_rel_error > 1e-6 && value_rel_error > 100.0 * std::max(input_rel_error, kFloat32Eps);
}

PrecisionReport precision_report(const Function& f, const std::vector<Tensor>& inputs) {
  if (!f) throw InvalidArgument("precision_report: f is empty (expected a callable)");
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (!inputs[k].defined() || inputs[k].dtype() != kFloat64)
      throw InvalidArgument(fmt::format("precision_report: input {} is {}; pass float64 inputs (the float32 run uses rounded "
                                        "copies of them)", k, inputs[k].defined() ? dtype_name(inputs[k].dtype()) : "undefined"));
  const PrecisionRun r64 = precision_run(f, inputs, kFloat64);
  const PrecisionRun r32 = precision_run(f, inputs, kFloat32);
  if (r64.ops.size() != r32.ops.size())
    throw RuntimeError(fmt::format("precision_report: f recorded {} ops in float64 but {} in float32; it must record the same "
                                   "ops whatever the dtype", r64.ops.size(), r32.ops.size()));
  PrecisionReport rep;
  std::vector<double> leaf_err;
  for (std::size_t q = 0; q < inputs.size(); ++q) {
    rep.input_names.push_back(inputs[q].name().empty() ? fmt::format("input {}", q) : inputs[q].name());
    leaf_err.push_back(rel_error(r32.leaves[q].to_vector(), r64.leaves[q].to_vector()));
    rep.input_grad_rel_error.push_back(grad_rel(r32.leaf_grads[q], r64.leaf_grads[q]));
  }
  for (std::size_t i = 0; i < r64.ops.size(); ++i) {
    if (std::strcmp(r64.ops[i], r32.ops[i]) != 0)
      throw RuntimeError(fmt::format("precision_report: op {} is '{}' in float64 but '{}' in float32; f must record the same "
                                     "ops whatever the dtype", i, r64.ops[i], r32.ops[i]));
    NodePrecision np;
    np.index = i;
    np.op = r64.ops[i];
    np.site = r64.sites[i];
    np.shape = r64.outs[i].shape();
    np.value_rel_error = rel_error(r32.outs[i].to_vector(), r64.outs[i].to_vector());
    for (std::int64_t s : r64.sources[i]) {
      double e = 0.0;
      if (s >= 0) e = rep.nodes[static_cast<std::size_t>(s)].value_rel_error;
      else if (s != std::numeric_limits<std::int64_t>::min()) e = leaf_err[static_cast<std::size_t>(-1 - s)];
      if (std::isnan(e) || e > np.input_rel_error) np.input_rel_error = e;
    }
    np.grad_rel_error = grad_rel(r32.node_grads[i], r64.node_grads[i]);
    rep.nodes.push_back(std::move(np));
  }
  rep.output_rel_error = rel_error(r32.y.to_vector(), r64.y.to_vector());
  return rep;
}

std::string PrecisionReport::str() const {
  std::string s = fmt::format("precision report: float32 vs float64, relative error (max-norm); output {:.2e}", output_rel_error);
  s += fmt::format("\n  {:>3}  {:<14} {:<14} {:>10} {:>10} {:>10}", "#", "op", "shape", "in err", "value err", "grad err");
  for (const NodePrecision& n : nodes) {
    s += fmt::format("\n  {:>3}  {:<14} {:<14} {:>10.2e} {:>10.2e} {:>10.2e}", n.index, n.op, n.shape.str(), n.input_rel_error,
                     n.value_rel_error, n.grad_rel_error);
    if (n.loses_precision()) s += fmt::format("  <- loses precision ({:.0f}x)", n.value_rel_error / std::max(n.input_rel_error, 5.96e-8));
    if (!n.site.empty()) s += fmt::format("  [{}]", n.site);
  }
  for (std::size_t q = 0; q < input_names.size(); ++q)
    if (!std::isnan(input_grad_rel_error[q]))
      s += fmt::format("\n  grad of {}: {:.2e}", input_names[q], input_grad_rel_error[q]);
  return s;
}

nlohmann::json PrecisionReport::to_json() const {
  nlohmann::json j;
  j["output_rel_error"] = number(output_rel_error);
  j["nodes"] = nlohmann::json::array();
  for (const NodePrecision& n : nodes)
    j["nodes"].push_back({{"index", n.index},
                          {"op", n.op},
                          {"site", n.site},
                          {"shape", n.shape.to_vector()},
                          {"input_rel_error", number(n.input_rel_error)},
                          {"value_rel_error", number(n.value_rel_error)},
                          {"grad_rel_error", number(n.grad_rel_error)},
                          {"loses_precision", n.loses_precision()}});
  j["inputs"] = nlohmann::json::array();
  for (std::size_t q = 0; q < input_names.size(); ++q)
    j["inputs"].push_back({{"name", input_names[q]}, {"grad_rel_error", number(input_grad_rel_error[q])}});
  return j;
}

std::ostream& operator<<(std::ostream& os, const PrecisionReport& r) { return os << r.str(); }

}  // namespace tapegrad
