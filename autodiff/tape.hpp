// SPDX-License-Identifier: MIT
#pragma once
// The tape: one per thread, a plain sequence of nodes in creation order. Creation order is a
// topological order, so backward is a reverse loop with no graph search.
//
//   forward   op(inputs) -> out; if grad mode is on and some input requires grad, record
//             Node{op, inputs, vjp}; out remembers the node's position and id
//   backward  grads[loss] = grad_out; for node in reverse: gs = node.vjp(grads[node]);
//             grads[input] += gs[input]  (leaves: input.grad += ...)
//
// Memory: backward without retain_graph releases every node it went through (closures, saved
// tensors); the tape also drops trailing nodes whose outputs nobody can reach any more, so a
// training loop or an evaluation without NoGradGuard does not grow the tape.
#include <cstdint>
#include <functional>
#include <type_traits>
#include <memory>
#include "autodiff/source_location.hpp"
#include <string>
#include <utility>
#include <vector>

#include "autodiff/pool.hpp"
#include "autodiff/site.hpp"
#include "autodiff/small_function.hpp"
#include "autodiff/tensor.hpp"

namespace tapegrad {

// ---- grad mode (thread-local) ----
class GradMode {
 public:
  static bool is_enabled();
  static void set_enabled(bool on);
};

// Restores the previous mode on destruction.
class GradModeGuard {
 public:
  explicit GradModeGuard(bool on) : prev_(GradMode::is_enabled()) { GradMode::set_enabled(on); }
  ~GradModeGuard() { GradMode::set_enabled(prev_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};

// Nothing is recorded while it lives (evaluation, optimiser updates).
class NoGradGuard : public GradModeGuard {
 public:
  NoGradGuard() : GradModeGuard(false) {}
};

// ---- recording ----
// A VJP maps the upstream gradient g (shape of out) to one gradient per input (shape of that
// input; an undefined Tensor means zero). `out` is the op's output when the op asked to save it
// (save_out), else undefined. VJPs are written with tapegrad's own ops, so when backward runs with
// create_graph they are recorded too and can be differentiated again.
// A VJP is written (g, out) -> Grads, capturing what it needs, or (g, out, inputs) -> Grads,
// reading the op's inputs from the node instead of capturing copies of them (cheaper: every
// copied handle is a reference-count update).
// Grads and InputList come from a per-thread pool, and the VJP closure is stored inline when it is
// at most 64 bytes: recording an op then costs no trip to malloc beyond the output's value.
using InputList = std::vector<Tensor, detail::PoolAllocator<Tensor>>;

// One gradient per input. Grads{a, b} moves temporaries in (a std::initializer_list would copy).
class Grads : public std::vector<Tensor, detail::PoolAllocator<Tensor>> {
 public:
  using Base = std::vector<Tensor, detail::PoolAllocator<Tensor>>;
  Grads() = default;
  template <class... T>
    requires(sizeof...(T) > 0 && (std::is_convertible_v<T, Tensor> && ...))
  Grads(T&&... grads) {  // NOLINT: Grads{g} reads as a list
    reserve(sizeof...(T));
    (emplace_back(std::forward<T>(grads)), ...);
  }
  Grads(const std::vector<Tensor>& grads) : Base(grads.begin(), grads.end()) {}  // NOLINT
};

using Vjp = detail::SmallFunction<Grads(const Tensor& g, const Tensor& out, const InputList& inputs), 64>;

struct Node {
  std::uint64_t id = 0;
  const char* op = "";
  InputList inputs;
  std::weak_ptr<TensorImpl> out;  // weak: a node whose output nobody holds can be dropped
  Tensor saved_out;                // shares out's storage and node, only if the op asked
  Vjp vjp;
  Shape out_shape;
  DType out_dtype = DType::Float32;
  bool released = false;
  std::size_t saved_bytes = 0;     // inputs + saved_out when recorded (tape statistics)
  SourceLocation site{};     // where the user called the op, when the op said so (line 0: unknown)
};

// The tape's node storage: fixed-size chunks, so references stay valid while backward with
// create_graph appends nodes, and a training loop reuses the same chunks every step.
class NodeStore {
 public:
  static constexpr std::size_t kChunk = 256;
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  Node& operator[](std::size_t i) { return chunks_[i / kChunk][i % kChunk]; }
  const Node& operator[](std::size_t i) const { return chunks_[i / kChunk][i % kChunk]; }
  Node& back() { return (*this)[size_ - 1]; }
  const Node& back() const { return (*this)[size_ - 1]; }
  Node& emplace_back();  // the next slot, cleared
  void pop_back();
  void clear();

  class const_iterator {
   public:
    const_iterator(const NodeStore* s, std::size_t i) : s_(s), i_(i) {}
    const Node& operator*() const { return (*s_)[i_]; }
    const Node* operator->() const { return &(*s_)[i_]; }
    const_iterator& operator++() {
      ++i_;
      return *this;
    }
    bool operator==(const const_iterator& o) const { return i_ == o.i_; }

   private:
    const NodeStore* s_;
    std::size_t i_;
  };
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size_}; }

 private:
  std::vector<std::unique_ptr<Node[]>> chunks_;
  std::size_t size_ = 0;
};

using TensorRefs = std::initializer_list<std::reference_wrapper<const Tensor>>;

// ---- creation sites ----
// Each node keeps the call site that was current when it was recorded (autodiff/site.hpp: ops
// open a SiteScope with the caller's SourceLocation), so anomaly errors and traces can
// name the user's file and line. line() == 0: unknown.
// "file.cpp:42 (in f)"; "" for an unknown site (line 0).
std::string site_str(const SourceLocation& site);

namespace detail {
// Inspection tools (anomaly mode, check_tape, precision_report; autodiff/inspect.hpp) watch
// recording through observers: each is called after a node is on the tape, newest observer first,
// with the node's position and its output (which it may read, or, for check_tape's replays,
// perturb). Without observers recording pays one thread-local load and branch.
class RecordObserver {
 public:
  RecordObserver();   // installs itself on this thread
  virtual ~RecordObserver();  // uninstalls (observers are scoped: destroy in reverse order)
  RecordObserver(const RecordObserver&) = delete;
  RecordObserver& operator=(const RecordObserver&) = delete;
  virtual void on_record(std::size_t position, const Node& node, Tensor& out) = 0;
  RecordObserver* previous() const { return prev_; }

 private:
  RecordObserver* prev_;
};

// Anomaly mode (DetectAnomalyGuard) on this thread: backward checks every VJP result.
bool anomaly_enabled() noexcept;
void set_anomaly_enabled(bool on) noexcept;

bool should_record(TensorRefs inputs);
bool should_record(const std::vector<Tensor>& inputs);
void record_node(const char* op, InputList inputs, Tensor& out, Vjp vjp, bool save_out);

template <class F>
Vjp make_vjp(F&& f) {
  if constexpr (std::is_invocable_v<F&, const Tensor&, const Tensor&, const InputList&>)
    return Vjp(std::forward<F>(f));
  else
    return Vjp([f = std::forward<F>(f)](const Tensor& g, const Tensor& out, const InputList&) { return f(g, out); });
}
}  // namespace detail

// Records out = op(inputs) with its VJP, if grad mode is on and an input requires grad.
// The lambda is only stored when something is recorded.
template <class F>
void record(const char* op, TensorRefs inputs, Tensor& out, F&& vjp, bool save_out = false) {
  if (!detail::should_record(inputs)) return;
  InputList list;
  list.reserve(inputs.size());
  for (const Tensor& t : inputs) list.push_back(t);
  detail::record_node(op, std::move(list), out, detail::make_vjp(std::forward<F>(vjp)), save_out);
}
template <class F>
void record(const char* op, const std::vector<Tensor>& inputs, Tensor& out, F&& vjp, bool save_out = false) {
  if (!detail::should_record(inputs)) return;
  detail::record_node(op, InputList(inputs.begin(), inputs.end()), out, detail::make_vjp(std::forward<F>(vjp)),
                      save_out);
}

// ---- backward ----
class BackwardTrace;  // autodiff/inspect.hpp

struct BackwardOptions {
  bool retain_graph = false;  // keep the nodes so the graph can be walked again
  bool create_graph = false;  // record the backward computation (implies retain_graph)
  // When set, every node backward runs is appended to *trace, in execution order: op, incoming
  // gradient, produced input gradients (autodiff/inspect.hpp). Off (nullptr): no cost.
  BackwardTrace* trace = nullptr;
};

// backward(loss): loss must have one element; grad_out = 1.
void backward(const Tensor& out, const BackwardOptions& options = {});
// backward(out, grad_out): vector-Jacobian product for a non-scalar out; grad_out has out's shape.
void backward(const Tensor& out, const Tensor& grad_out, const BackwardOptions& options = {});

struct GradOptions {
  bool retain_graph = false;  // PyTorch's default is create_graph; see grad()
  bool create_graph = false;
  bool allow_unused = false;  // an input the outputs do not depend on gets an undefined Tensor
  BackwardTrace* trace = nullptr;  // as in BackwardOptions
};

// torch.autograd.grad: d(sum_i <grad_outputs[i], outputs[i]>)/d inputs, returned rather than
// accumulated into .grad (which stays untouched). grad_outputs may be empty for scalar outputs.
// retain_graph is forced on when create_graph is on.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, const GradOptions& options = {});

// ---- inspection ----
struct TapeStats {
  std::size_t nodes = 0;        // entries on this thread's tape (live or released)
  std::size_t live_nodes = 0;   // entries still holding a VJP
  std::size_t saved_bytes = 0;  // bytes of live nodes' inputs and saved outputs (not buffers a VJP
                                // closure captures privately, such as cross_entropy's); a tensor
                                // saved by two nodes counts twice
  std::size_t peak_live_nodes = 0;   // the largest live_nodes since reset_peak() (or thread start)
  std::size_t peak_saved_bytes = 0;  // the largest saved_bytes since then
  std::string str() const;      // "tape: 12 nodes (12 live, peak 40), saved 3.1 KiB (peak 9.4 KiB)"
};
TapeStats tape_stats();
// Starts a new peak window: the peaks become the current values.
void reset_peak();
std::size_t tape_size();
// Releases every node of this thread's tape (like dropping every graph). Tensors that referred
// to them become as if their graph had been freed.
void clear_tape();
// Read-only walk over this thread's tape, oldest first (graph printing, tests).
const NodeStore& tape_nodes();
// Name of the op that produced t ("mul"), or nullptr for leaves, released graphs and tensors
// recorded on another thread.
const char* producer_name(const Tensor& t);

}  // namespace tapegrad

template <>
struct fmt::formatter<tapegrad::TapeStats> : fmt::formatter<std::string> {
  auto format(const tapegrad::TapeStats& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
