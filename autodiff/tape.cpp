// SPDX-License-Identifier: MIT
#include "autodiff/tape.hpp"
#include "autodiff/detail/node.hpp"
#include "autodiff/eigen.hpp"

#include <atomic>
#include <cassert>
#include <iterator>
#include <optional>
#include <span>


namespace tapegrad {

namespace {

thread_local bool grad_enabled = true;
thread_local detail::RecordObserver* observers = nullptr;  // newest first
thread_local detail::ScopedBackwardObserver* backward_observers = nullptr;  // newest first

std::atomic<std::uint64_t> next_tape_id{1};
// Set once retain_grad() is called on a tensor recorded by another thread: that thread's node cannot
// be marked from here, so every backward then checks each node's output (as it would without marks).
std::atomic<bool> foreign_retain{false};
constexpr int kIdShift = 40;

struct Tape {
  std::uint64_t id = next_tape_id.fetch_add(1);
  std::uint64_t counter = 0;
  NodeStore nodes;
  std::size_t live = 0;
  std::size_t live_bytes = 0;  // sum of live nodes' saved_bytes
  std::size_t peak_live = 0;
  std::size_t peak_bytes = 0;
  int in_backward = 0;  // no sweeping while a backward loop indexes the nodes

  std::uint64_t new_id() { return (id << kIdShift) | ++counter; }
  bool owns(std::uint64_t node_id) const { return (node_id >> kIdShift) == id; }

  void release(Node& n) {
    if (n.released) return;
    // Destroying the closure and inputs may free tensors; that never touches the tape.
    n.vjp = nullptr;
    n.fused = nullptr;
    n.inputs.clear();
    n.saved.clear();
    n.out.reset();  // now, while the node is being visited, not in a later sweep
    n.released = true;
    --live;
    live_bytes -= n.saved_bytes;
  }

  // Drop trailing nodes that are released or whose output nobody holds any more. Releasing one
  // drops its inputs, which may make the node before it unreachable in turn.
  void sweep() {
    if (in_backward > 0) return;
    while (!nodes.empty()) {
      Node& b = nodes.back();
      if (!b.released && !b.out.expired()) break;
      release(b);
      nodes.pop_back();
    }
    if (nodes.empty()) live = live_bytes = 0;
  }
};

Tape& this_tape() {
  static thread_local Tape tape;
  return tape;
}

struct BackwardScope {
  Tape& t;
  explicit BackwardScope(Tape& tape) : t(tape) { ++t.in_backward; }
  ~BackwardScope() { --t.in_backward; }
};

// Where a tensor or an input edge sits in the graph.
struct GraphRef {
  std::uint64_t node_id;
  std::int64_t node_index;
  const char* op;
};
GraphRef ref_of(const TensorImpl& t) { return {t.node_id, t.node_index, t.op}; }
GraphRef ref_of(const InputEdge& e) { return {e.node_id, e.node_index, e.op}; }

[[noreturn, gnu::cold]] void throw_released(const char* who, const Tape& tape, GraphRef r) {
  const auto idx = static_cast<std::size_t>(r.node_index);
  // The node may already be swept off the tape; the tensor remembers its op's name.
  std::string op = r.op ? r.op : "?";
  if (idx < tape.nodes.size() && tape.nodes[idx].id == r.node_id) op = tape.nodes[idx].op;
  throw RuntimeError(fmt::format(
      "{}: the graph through '{}' (node #{}) was already freed by an earlier backward; pass "
      "BackwardOptions{{.retain_graph = true}} to the first backward to walk a graph twice",
      who, op, r.node_index));
}

[[noreturn, gnu::cold]] void throw_foreign(const char* who) {
  throw RuntimeError(fmt::format(
      "{}: this tensor was recorded on another thread's tape; each thread differentiates its "
      "own graphs (compute it on this thread, or detach() it to use it as a constant)",
      who));
}

// Position of the node that produced `t` on this thread's tape; throws when it is gone.
inline std::size_t node_position(const char* who, const Tape& tape, GraphRef r) {
  if (!tape.owns(r.node_id)) [[unlikely]]
    throw_foreign(who);
  const auto idx = static_cast<std::size_t>(r.node_index);
  if (idx >= tape.nodes.size() || tape.nodes[idx].id != r.node_id || tape.nodes[idx].released) [[unlikely]]
    throw_released(who, tape, r);
  return idx;
}

Tensor detached_copy(const Tensor& g) { return g.contiguous_copy_detached(); }

void check_grad_shape(const Node& n, std::size_t k, const Tensor& g) {
  const InputEdge& in = n.inputs[k];
  if (g.shape() != in.shape || g.dtype() != in.dtype)
    throw RuntimeError(fmt::format(
        "backward: the vjp of '{}' returned a gradient of shape {} ({}) for input {} of shape {} "
        "({}); a VJP must return one gradient per input with that input's shape and dtype",
        n.op, g.shape(), dtype_name(g.dtype()), k, in.shape, dtype_name(in.dtype)));
}

// a + b for two gradients of one shape and dtype: the engine's only arithmetic, recorded (as "add")
// when backward runs with create_graph, so the engine needs nothing from ops/.
Tensor add_grads(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty(a.shape(), a.dtype());
  dispatch_float(a.dtype(), [&]<class T>() { out.mutable_array<T>() = a.array<T>() + b.array<T>(); });
  record({"add", "da = g, db = g"}, {a, b}, out, {}, [](const Tensor& g, const Saved&) { return Grads{g, g}; });
  return out;
}

void accumulate(Tensor& slot, Tensor g) {
  if (!slot.defined())
    slot = std::move(g);
  else
    slot = add_grads(slot, g);  // recorded when create_graph is on (grad mode is on then)
}

// True when nothing but `g` can see its values: then a leaf may keep it as .grad and later add
// into it in place. (A VJP may hand back a view of a tensor the caller owns, e.g. grad_out.)
bool exclusively_owned(const Tensor& g) {
  const TensorImpl& t = g.impl();
  return g.impl_ptr().use_count() == 1 && !t.requires_grad && (!t.storage || t.storage.use_count() == 1);
}

}  // namespace

Tensor Saved::take(std::size_t i) const {
  Tensor& slot = n_->saved[i];
  if (!last_use_ || !slot.defined() || !exclusively_owned(slot)) return Tensor();
  return std::move(slot);
}

namespace {

void accumulate_leaf(TensorImpl& leaf, Tensor g, bool create_graph) {
  if (!leaf.grad) {
    // Taking an exclusively owned gradient avoids a copy (and, for large ones, the page faults
    // of a fresh allocation every step).
    leaf.grad = create_graph || exclusively_owned(g) ? g.impl_ptr() : detached_copy(g).impl_ptr();
  } else if (create_graph || leaf.grad->requires_grad) {
    leaf.grad = add_grads(Tensor(leaf.grad), g).impl_ptr();
  } else {
    Tensor acc(leaf.grad);
    dispatch_float(acc.dtype(), [&]<class T>() { acc.mutable_array<T>() += g.array<T>(); });
  }
}

// Scratch for one backward walk comes from the per-thread pool (autodiff/detail/pool.hpp), so a warm
// training step makes no trip to malloc here either.
template <class T>
using PooledVector = std::vector<T, detail::PoolAllocator<T>>;

struct Request {
  const char* who;
  std::span<const Tensor> outputs;
  PooledVector<Tensor> grad_outputs;
  const std::vector<Tensor>* capture;  // nullptr: accumulate into leaves' .grad
  bool retain_graph;
  bool create_graph;
  bool allow_unused;
  detail::BackwardObserver* trace;
};

std::vector<Tensor> run_backward(Request r) {
  Tape& tape = this_tape();
  if (!r.grad_outputs.empty() && r.grad_outputs.size() != r.outputs.size())
    throw InvalidArgument(fmt::format("{}: {} outputs but {} grad_outputs (expected one per output)",
                                      r.who, r.outputs.size(), r.grad_outputs.size()));
  r.grad_outputs.resize(r.outputs.size());

  // Validate outputs and seeds before anything changes.
  for (std::size_t k = 0; k < r.outputs.size(); ++k) {
    const Tensor& out = r.outputs[k];
    if (!out.defined()) throw InvalidArgument(fmt::format("{}: output {} is undefined", r.who, k));
    if (!out.requires_grad())
      throw RuntimeError(fmt::format(
          "{}: output {} (shape {}) does not require grad and has no graph: it was computed "
          "under NoGradGuard or only from tensors without requires_grad",
          r.who, k, out.shape()));
    Tensor& go = r.grad_outputs[k];
    if (!go.defined()) {
      if (out.numel() != 1)
        throw InvalidArgument(fmt::format(
            "{}: output {} has shape {} ({} elements); an implicit gradient of 1 needs a single "
            "element: pass grad_out with shape {} (backward(out, grad_out))",
            r.who, k, out.shape(), out.numel(), out.shape()));
      go = ones_like(out).detach();
    } else if (go.shape() != out.shape() || go.dtype() != out.dtype()) {
      throw InvalidArgument(fmt::format(
          "{}: grad_out has shape {} ({}) but the output has shape {} ({}); they must match",
          r.who, go.shape(), dtype_name(go.dtype()), out.shape(), dtype_name(out.dtype())));
    }
  }

  PooledVector<Tensor> captured;
  if (r.capture) {
    captured.resize(r.capture->size());
    for (std::size_t k = 0; k < r.capture->size(); ++k) {
      const Tensor& in = (*r.capture)[k];
      if (!in.defined() || !in.requires_grad())
        throw InvalidArgument(fmt::format(
            "{}: input {} does not require grad; only tensors with requires_grad can be "
            "differentiated against", r.who, k));
    }
  }
  auto capture_leaf = [&](const TensorImpl& leaf) -> Tensor* {
    for (std::size_t k = 0; k < captured.size(); ++k)
      if ((*r.capture)[k].impl_ptr().get() == &leaf) return &captured[k];
    return nullptr;
  };

  // Where the walk starts: the newest output node. Leaf outputs are handled directly.
  std::int64_t top = -1;
  for (const Tensor& out : r.outputs)
    if (!out.is_leaf())
      top = std::max<std::int64_t>(top, static_cast<std::int64_t>(node_position(r.who, tape, ref_of(out.impl()))));

  // Pre-pass: mark the nodes the gradient reaches and fail now, before any .grad changes, if one
  // of them was released.
  const auto n_nodes = static_cast<std::size_t>(top + 1);
  PooledVector<std::uint8_t> needed(n_nodes, 0);
  for (const Tensor& out : r.outputs)
    if (!out.is_leaf()) needed[node_position(r.who, tape, ref_of(out.impl()))] = 1;
  for (std::int64_t i = top; i >= 0; --i) {
    const auto idx = static_cast<std::size_t>(i);
    if (!needed[idx]) continue;
    for (const InputEdge& in : tape.nodes[idx].inputs)
      if (in.requires_grad && !in.is_leaf()) needed[node_position(r.who, tape, ref_of(in))] = 1;
  }

  PooledVector<std::uint8_t> keep(n_nodes, 0);  // slots to read after the loop (captured non-leaves)
  if (r.capture)
    for (const Tensor& in : *r.capture)
      if (!in.is_leaf()) {
        const auto idx = node_position(r.who, tape, ref_of(in.impl()));
        if (idx < n_nodes) keep[idx] = 1;
      }

  const bool create = r.create_graph;
  const bool retain = r.retain_graph || create;
  detail::BackwardObserver* const trace = r.trace;
  const bool observed = trace != nullptr || backward_observers != nullptr;
  GradModeGuard mode(create);
  std::optional<BackwardScope> scope(std::in_place, tape);

  PooledVector<Tensor> slots(n_nodes);
  for (std::size_t k = 0; k < r.outputs.size(); ++k) {
    const Tensor& out = r.outputs[k];
    const Tensor& go = r.grad_outputs[k];
    if (!out.is_leaf()) {
      accumulate(slots[static_cast<std::size_t>(out.impl().node_index)], go);
    } else if (r.capture) {
      if (Tensor* c = capture_leaf(out.impl())) accumulate(*c, go);
    } else {
      accumulate_leaf(out.impl(), go, create);
    }
  }

  for (std::int64_t i = top; i >= 0; --i) {
    const auto idx = static_cast<std::size_t>(i);
    if (!needed[idx]) continue;
    Node& node = tape.nodes[idx];
    Tensor g = keep[idx] ? slots[idx] : std::move(slots[idx]);
    if (g.defined()) {
      if (!r.capture)
        if (node.retains_grad || foreign_retain.load(std::memory_order_relaxed))  // retain_grad(): a copy, g flows on
          if (const auto o = node.out.lock(); o && detail::impl_of(*o).retains_grad)
            accumulate_leaf(detail::impl_of(*o), create ? g : detached_copy(g), create);
      // The engine picks the VJP: the formula when this backward is recorded, else the fused
      // kernel when the op has one.
      const Vjp& vjp = !create && node.fused ? node.fused : node.vjp;
      Grads gs = vjp(g, Saved(node, !retain));
      if (gs.size() != node.inputs.size())
        throw RuntimeError(fmt::format(
            "backward: the vjp of '{}' returned {} gradients for {} inputs (expected one per "
            "input; an undefined Tensor stands for zero)",
            node.op, gs.size(), node.inputs.size()));
      if (observed) [[unlikely]] {
        if (trace) trace->on_vjp(idx, node, g, gs);
        for (detail::ScopedBackwardObserver* o = backward_observers; o; o = o->previous)
          o->observer.on_vjp(idx, node, g, gs);
      }
      for (std::size_t k = 0; k < gs.size(); ++k) {
        const InputEdge& in = node.inputs[k];
        if (!gs[k].defined() || !in.requires_grad) continue;
        check_grad_shape(node, k, gs[k]);
        if (!in.is_leaf()) {
          accumulate(slots[static_cast<std::size_t>(in.node_index)], std::move(gs[k]));
        } else if (r.capture) {
          if (Tensor* c = capture_leaf(detail::impl_of(*in.leaf))) accumulate(*c, gs[k]);
        } else {
          accumulate_leaf(detail::impl_of(*in.leaf), std::move(gs[k]), create);
        }
      }
    }
    if (!retain) tape.release(tape.nodes[idx]);
  }

  if (r.capture) {
    for (std::size_t k = 0; k < captured.size(); ++k) {
      const Tensor& in = (*r.capture)[k];
      if (!in.is_leaf()) {
        const auto idx = static_cast<std::size_t>(in.impl().node_index);
        if (idx < n_nodes) captured[k] = slots[idx];
      }
      if (!captured[k].defined() && !r.allow_unused)
        throw InvalidArgument(fmt::format(
            "{}: input {} (shape {}) was not used to compute the outputs; pass "
            "GradOptions{{.allow_unused = true}} to get an undefined gradient for it",
            r.who, k, in.shape()));
      if (captured[k].defined() && !create) captured[k] = captured[k].detach();
    }
  }
  slots.clear();
  scope.reset();
  tape.sweep();
  return std::vector<Tensor>(std::make_move_iterator(captured.begin()), std::make_move_iterator(captured.end()));
}

}  // namespace

Node& NodeStore::emplace_back() {
  if (size_ == chunks_.size() * kChunk) chunks_.push_back(std::make_unique<Node[]>(kChunk));
  return (*this)[size_++];
}

void NodeStore::pop_back() {
  // Slots are reused: clear what holds memory (a released node has nothing else left).
  Node& n = (*this)[--size_];
  n.vjp = nullptr;
  n.fused = nullptr;
  n.inputs.clear();
  n.saved.clear();
  n.out.reset();
}

void NodeStore::clear() {
  while (size_ > 0) pop_back();
}

bool GradMode::is_enabled() { return grad_enabled; }
void GradMode::set_enabled(bool on) { grad_enabled = on; }

namespace detail {

bool should_record(TensorRefs inputs) {
  if (!grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

bool should_record(const std::vector<Tensor>& inputs) {
  if (!grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

void record_node(OpDef def, TensorList inputs, Tensor& out, TensorList saved, Vjp&& vjp,
                 Vjp&& fused, std::size_t closure_bytes) {
  Tape& tape = this_tape();
  const char* op = def.op;
  TensorImpl& o = out.impl();
  if (o.requires_grad || o.node_id != 0)
    throw RuntimeError(fmt::format(
        "{}: internal error: an op's output must be a fresh tensor (it already has a graph)", op));
  // Inputs from another thread's tape cannot be linked into this one. (An input whose node was
  // already released is fine here, as in PyTorch: backward through it reports the problem.)
  for (std::size_t k = 0; k < inputs.size(); ++k)
    if (const Tensor& in = inputs[k]; in.requires_grad() && !in.is_leaf() && !tape.owns(in.impl().node_id))
      throw RuntimeError(fmt::format(
          "{}: an input was recorded on another thread's tape; each thread differentiates its own "
          "graphs (compute it on this thread, or detach() it to use it as a constant)", op));
  tape.sweep();

  Node& n = tape.nodes.emplace_back();  // a cleared slot, filled in place
  n.id = tape.new_id();
  n.op = op;
  n.formula = def.formula ? def.formula : "";
  std::size_t leaf_bytes = 0;
  n.inputs.reserve(inputs.size());
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const TensorImpl& t = inputs[k].impl();
    InputEdge& e = n.inputs.emplace_back(t);
    // A reference by kind (InputEdge::tensor() finds each): a leaf that requires grad is held (its
    // .grad is filled); a non-leaf is its producing node's `out`; a constant gets a weak reference
    // for inspection. Non-leaves take no reference-count update here.
    if (!t.requires_grad) {
      e.ref = inputs[k].impl_ptr();
    } else if (t.node_id == 0) {
      e.leaf = inputs[k].impl_ptr();
      leaf_bytes += static_cast<std::size_t>(t.shape.numel()) * dtype_size(t.dtype);
    }
  }
  n.out = out.impl_ptr();
  n.vjp = std::move(vjp);
  n.fused = std::move(fused);
  n.out_shape = o.shape;
  n.out_dtype = o.dtype;
  n.released = false;
  n.retains_grad = false;
  const std::optional<SourceLocation> site = current_site();
  n.site = site ? *site : SourceLocation{};
  o.requires_grad = true;
  o.node_index = static_cast<std::int64_t>(tape.nodes.size() - 1);
  o.node_id = n.id;
  o.op = op;
  std::size_t saved_bytes = 0;
  n.saved.reserve(saved.size());
  for (std::size_t k = 0; k < saved.size(); ++k) {
    const Tensor& t = saved[k];
    if (t.defined()) saved_bytes += static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype());
    if (!t.defined() || t.impl_ptr() != out.impl_ptr()) {
      n.saved.push_back(t);
      continue;
    }
    // The output: the VJP sees a tensor with the same value and graph position. Large values share
    // out's storage; inline ones are copied, so the node does not keep out's handle alive (a node
    // whose output nobody holds can then be dropped).
    Tensor alias = o.storage ? out.alias(o.shape) : out.contiguous_copy_detached();
    TensorImpl& s = alias.impl();
    s.requires_grad = true;
    s.node_index = o.node_index;
    s.node_id = o.node_id;
    s.op = op;
    n.saved.push_back(std::move(alias));
  }
  // Statistics: what this node keeps alive, and the peaks.
  n.saved_bytes = saved_bytes;
  n.leaf_bytes = leaf_bytes;
  n.closure_bytes = closure_bytes;
  tape.live_bytes += saved_bytes;
  ++tape.live;
  if (tape.live > tape.peak_live) tape.peak_live = tape.live;
  if (tape.live_bytes > tape.peak_bytes) tape.peak_bytes = tape.live_bytes;
  if (observers) [[unlikely]] {
    const std::size_t pos = tape.nodes.size() - 1;
    std::vector<Tensor> in;  // observers see the inputs as handles (rare: inspection tools)
    for (std::size_t k = 0; k < inputs.size(); ++k) in.push_back(inputs[k]);
    for (RecordObserver* obs = observers; obs; obs = obs->previous()) obs->on_record(pos, tape.nodes[pos], in, out);
  }
}

}  // namespace detail

Tensor InputEdge::tensor() const {
  if (leaf) return Tensor(leaf);
  if (!requires_grad) return Tensor(ref.lock());
  if (node_id == 0) return Tensor();
  // A non-leaf: its producing node's output, while that node is on this thread's tape.
  const Tape& tape = this_tape();
  const auto idx = static_cast<std::size_t>(node_index);
  if (!tape.owns(node_id) || idx >= tape.nodes.size() || tape.nodes[idx].id != node_id) return Tensor();
  return Tensor(tape.nodes[idx].out.lock());
}

namespace detail {

void mark_retains_grad(const TensorImpl& out) {
  Tape& tape = this_tape();
  const auto idx = static_cast<std::size_t>(out.node_index);
  if (!tape.owns(out.node_id)) {
    foreign_retain.store(true, std::memory_order_relaxed);
    return;
  }
  // A node already swept off the tape has nothing left to mark (backward through it throws).
  if (idx < tape.nodes.size() && tape.nodes[idx].id == out.node_id) tape.nodes[idx].retains_grad = true;
}

RecordObserver::RecordObserver() : prev_(observers) { observers = this; }
RecordObserver::~RecordObserver() {
  assert(observers == this && "RecordObservers must be destroyed in reverse order of creation");
  observers = prev_;
}

ScopedBackwardObserver::ScopedBackwardObserver(BackwardObserver& o) : observer(o), previous(backward_observers) {
  backward_observers = this;
}
ScopedBackwardObserver::~ScopedBackwardObserver() {
  assert(backward_observers == this && "ScopedBackwardObservers must be destroyed in reverse order of creation");
  backward_observers = previous;
}

}  // namespace detail

void backward(const Tensor& out, const BackwardOptions& options) {
  run_backward({"backward", {&out, 1}, {}, nullptr, options.retain_graph, options.create_graph, true, options.trace});
}

void backward(const Tensor& out, const Tensor& grad_out, const BackwardOptions& options) {
  if (!grad_out.defined()) throw InvalidArgument("backward: grad_out is undefined");
  run_backward(
      {"backward", {&out, 1}, PooledVector<Tensor>{grad_out}, nullptr, options.retain_graph, options.create_graph, true, options.trace});
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, const GradOptions& options) {
  return run_backward({"grad", outputs, PooledVector<Tensor>(grad_outputs.begin(), grad_outputs.end()), &inputs, options.retain_graph,
                       options.create_graph, options.allow_unused, options.trace});
}

std::string site_str(const SourceLocation& site) {
  if (site.line() == 0) return "";
  std::string_view file = site.file_name();
  if (const auto slash = file.find_last_of('/'); slash != std::string_view::npos) file.remove_prefix(slash + 1);
  std::string s = fmt::format("{}:{}", file, site.line());
  if (site.function_name() != nullptr && site.function_name()[0] != '\0') s += fmt::format(" (in {})", site.function_name());
  return s;
}

namespace {
std::string bytes_str(std::size_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(b) / 1024.0);
  return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1024.0 * 1024.0));
}
}  // namespace

std::string TapeStats::str() const {
  return fmt::format("tape: {} nodes ({} live, peak {}), saved tensors {} (peak {}), leaves {}, nodes {}", nodes,
                     live_nodes, peak_live_nodes, bytes_str(saved_bytes), bytes_str(peak_saved_bytes), bytes_str(leaf_bytes),
                     bytes_str(node_bytes));
}

void reset_peak() {
  Tape& tape = this_tape();
  tape.peak_live = tape.live;
  tape.peak_bytes = tape.live_bytes;
}

TapeStats tape_stats() {
  const Tape& tape = this_tape();
  TapeStats s;
  s.nodes = tape.nodes.size();
  for (const Node& n : tape.nodes) {
    if (n.released) continue;
    ++s.live_nodes;
    s.saved_bytes += n.saved_bytes;
    s.leaf_bytes += n.leaf_bytes;
    s.node_bytes += sizeof(Node) + n.inputs.heap_capacity() * sizeof(InputEdge) + n.saved.heap_capacity() * sizeof(Tensor) +
                    n.closure_bytes;
  }
  s.peak_live_nodes = std::max(tape.peak_live, s.live_nodes);
  s.peak_saved_bytes = std::max(tape.peak_bytes, s.saved_bytes);
  return s;
}

std::size_t tape_size() { return this_tape().nodes.size(); }

void clear_tape() {
  Tape& tape = this_tape();
  if (tape.in_backward > 0) throw RuntimeError("clear_tape: cannot clear the tape during backward");
  for (std::size_t i = 0; i < tape.nodes.size(); ++i) tape.release(tape.nodes[i]);
  tape.nodes.clear();
  tape.live = tape.live_bytes = 0;
}

const NodeStore& tape_nodes() { return this_tape().nodes; }

const char* producer_name(const Tensor& t) {
  if (!t.defined() || t.is_leaf()) return nullptr;
  const Tape& tape = this_tape();
  const TensorImpl& impl = t.impl();
  const auto idx = static_cast<std::size_t>(impl.node_index);
  if (!tape.owns(impl.node_id) || idx >= tape.nodes.size()) return nullptr;
  const Node& n = tape.nodes[idx];
  return n.id == impl.node_id && !n.released ? n.op : nullptr;
}

}  // namespace tapegrad
