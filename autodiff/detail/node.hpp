// SPDX-License-Identifier: MIT
#pragma once
// The tape's internals (not installed): nodes, what a VJP reads (Saved), the node store, observers,
// and `record`, which every op in ops/ calls. Users write their own ops with custom_op
// (autodiff/custom_op.hpp); autodiff/tape.hpp has what a program needs (grad mode, backward,
// grad, tape_stats).
#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/detail/inline_vector.hpp"
#include "autodiff/detail/small_function.hpp"
#include "autodiff/detail/tensor_impl.hpp"
#include "autodiff/source_location.hpp"
#include "autodiff/tape.hpp"

namespace tapegrad {

// ---- recording ----
// An op records one node: which inputs it read (their shape, dtype and place in the graph, not their
// values), the tensors its VJP needs (`saved`: often the output, sometimes an input, sometimes a
// buffer the forward computed for a fused backward), the formula as a string, and the VJP twice:
//
//   formula   g -> one gradient per input, written with tapegrad's own ops. Backward with
//             create_graph runs it with recording on, so it can be differentiated again.
//   fused     optional: the same maths as a hand-written kernel (ops/kernels/), run when nothing is
//             recorded (backward without create_graph). Tests check that the two agree.
//
// The engine makes the choice; a VJP never asks GradMode. A VJP reads what it needs through Saved
// (s[i]: the i-th saved tensor; s.shape(k), s.dtype(k), s.needs_grad(k): input k) and captures only
// plain values (dims, scalars, shapes): closures must be trivially destructible, so that everything
// a node keeps alive is on the node where tape_stats counts it.
class Saved;

using Vjp = detail::SmallFunction<Grads(const Tensor& g, const Saved& saved), 48>;

// An input as its node remembers it: enough to route a gradient, no values (a leaf that requires
// grad is referenced, since its .grad is filled; tape_stats counts those bytes as leaf_bytes).
struct InputEdge {
  InputEdge() = default;
  explicit InputEdge(const TensorImpl& t)  // metadata only; record_node sets leaf/ref
      : node_id(t.node_id), node_index(t.node_index), requires_grad(t.requires_grad), dtype(t.dtype), op(t.op),
        shape(t.shape) {}
  // Routing first (backward reads these for every edge), then references and metadata.
  std::uint64_t node_id = 0;         // the producing node's id; 0: a leaf or a constant
  std::int64_t node_index = -1;      // the producing node's position (non-leaves)
  bool requires_grad = false;
  DType dtype = DType::Float32;
  std::shared_ptr<detail::TensorHead> leaf;  // a leaf that requires grad, else null
  std::weak_ptr<detail::TensorHead> ref;     // a constant, for inspection while someone else holds it
  const char* op = nullptr;          // the producing node's op (named in errors after it is gone)
  Shape shape;
  bool is_leaf() const { return node_id == 0; }
  // The input tensor when it is still alive (always for leaves that require grad), else undefined.
  Tensor tensor() const;
};
// Two of each inside the node (most ops), more in one pooled block.
using InputEdges = detail::InlineVector<InputEdge, 2>;
using SavedTensors = detail::InlineVector<Tensor, 2>;

struct Node {
  // What backward reads for every node comes first (one cache line), then the edges.
  std::uint64_t id = 0;
  bool released = false;
  bool retains_grad = false;       // retain_grad() was called on the output (so backward need not look)
  DType out_dtype = DType::Float32;
  const char* op = "";
  const char* formula = "";        // the VJP in short maths, shown by to_dot, explain and traces
  std::size_t saved_bytes = 0;     // bytes of `saved` when recorded
  std::weak_ptr<detail::TensorHead> out;   // weak: a node whose output nobody holds can be dropped
  InputEdges inputs;
  SavedTensors saved;              // what the VJP reads; the output appears as an alias
  Vjp vjp;                         // the formula (tensor ops)
  Vjp fused;                       // optional fast path, used when backward records nothing
  Shape out_shape;
  std::size_t leaf_bytes = 0;      // bytes of the leaves `inputs` refer to
  std::size_t closure_bytes = 0;   // VJP closures stored outside the node (larger than Vjp's buffer)
  SourceLocation site{};     // where the user called the op, when the op said so (line 0: unknown)
};

// What a VJP reads: the saved tensors and the inputs' metadata.
class Saved {
 public:
  // last_use: the engine releases the node right after this VJP (backward without retain_graph).
  explicit Saved(Node& n, bool last_use = false) : n_(&n), last_use_(last_use) {}
  const Tensor& operator[](std::size_t i) const { return n_->saved[i]; }
  // The i-th saved tensor handed over, so that a fused VJP can write its result over it instead of
  // filling a new buffer, when this VJP is its last reader (the node is released right after) and
  // nothing else holds it or its storage; otherwise undefined (read s[i] and allocate). Afterwards
  // s[i] is undefined. A formula VJP never takes: it may run again on a retained graph.
  Tensor take(std::size_t i) const;
  std::size_t size() const { return n_->saved.size(); }
  const Shape& shape(std::size_t input) const { return n_->inputs[input].shape; }
  DType dtype(std::size_t input) const { return n_->inputs[input].dtype; }
  bool needs_grad(std::size_t input) const { return n_->inputs[input].requires_grad; }
  std::size_t inputs() const { return n_->inputs.size(); }

 private:
  Node* n_;
  bool last_use_;
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

namespace detail {
// The tensors an op passes to record, viewed without copying a handle (each copy would be two
// atomic reference-count updates per tensor per op): a braced list or a std::vector.
class TensorList {
 public:
  TensorList(std::span<const std::reference_wrapper<const Tensor>> r) : refs_(r.data()), n_(r.size()) {}  // NOLINT
  TensorList(const std::vector<Tensor>& v) : vals_(v.data()), n_(v.size()) {}  // NOLINT: implicit, like a span
  std::size_t size() const { return n_; }
  const Tensor& operator[](std::size_t i) const { return refs_ ? refs_[i].get() : vals_[i]; }

 private:
  const std::reference_wrapper<const Tensor>* refs_ = nullptr;
  const Tensor* vals_ = nullptr;
  std::size_t n_;
};
}  // namespace detail

// The name, and the VJP in short maths (g = upstream gradient, y = output, ⊙ = elementwise
// product), e.g. {"softmax", "dx = y ⊙ (g − Σ g ⊙ y)"}. Both must outlive the tape (literals).
struct OpDef {
  const char* op;
  const char* formula;
};

namespace detail {
// Observers watch the engine without the engine knowing them (inspection tools: anomaly mode,
// traces, check_tape, precision_report live in autodiff/inspect.cpp, above the engine).
// A RecordObserver is called after a node is on the tape, newest observer first, with the node's
// position, the input tensors as the op passed them, and its output (which it may read or, for
// check_tape's replays, perturb). Without observers recording pays one thread-local load and branch.
class RecordObserver {
 public:
  RecordObserver();   // installs itself on this thread
  virtual ~RecordObserver();  // uninstalls (observers are scoped: destroy in reverse order)
  RecordObserver(const RecordObserver&) = delete;
  RecordObserver& operator=(const RecordObserver&) = delete;
  virtual void on_record(std::size_t position, const Node& node, std::span<const Tensor> inputs, Tensor& out) = 0;
  RecordObserver* previous() const { return prev_; }

 private:
  RecordObserver* prev_;
};

// Scoped installation on this thread (newest first); backward calls every installed observer.
class ScopedBackwardObserver {
 public:
  explicit ScopedBackwardObserver(BackwardObserver& o);
  ~ScopedBackwardObserver();
  ScopedBackwardObserver(const ScopedBackwardObserver&) = delete;
  ScopedBackwardObserver& operator=(const ScopedBackwardObserver&) = delete;
  BackwardObserver& observer;
  ScopedBackwardObserver* previous;
};

bool should_record(TensorRefs inputs);
bool should_record(const std::vector<Tensor>& inputs);
// retain_grad() on a recorded output: marks its node, so that backward looks at the output tensor
// only for nodes whose output asked for its gradient.
void mark_retains_grad(const TensorImpl& out);
void record_node(OpDef def, TensorList inputs, Tensor& out, TensorList saved, Vjp&& vjp,
                 Vjp&& fused, std::size_t closure_bytes);

template <class F>
constexpr void check_vjp_closure() {
  static_assert(std::is_invocable_r_v<Grads, F&, const Tensor&, const Saved&>,
                "a VJP is [captures](const Tensor& g, const Saved& s) -> Grads");
  static_assert(std::is_trivially_destructible_v<F>,
                "a VJP captures only plain values (dims, scalars, Shape); put the tensors it needs in `saved` "
                "so that tape_stats counts them");
}
template <class F>
constexpr std::size_t heap_bytes() {
  return sizeof(F) <= 48 ? 0 : sizeof(F);
}

template <class Formula, class Fused>
void record_impl(OpDef def, TensorList inputs, Tensor& out, TensorList saved, Formula&& formula,
                 Fused&& fused) {
  using F1 = std::decay_t<Formula>;
  check_vjp_closure<F1>();
  std::size_t closure = heap_bytes<F1>();
  Vjp fast;
  if constexpr (!std::is_same_v<std::decay_t<Fused>, std::nullptr_t>) {
    using F2 = std::decay_t<Fused>;
    check_vjp_closure<F2>();
    closure += heap_bytes<F2>();
    fast = Vjp(std::forward<Fused>(fused));
  }
  record_node(def, inputs, out, saved, Vjp(std::forward<Formula>(formula)), std::move(fast), closure);
}

}  // namespace detail

// Records out = op(inputs), if grad mode is on and an input requires grad (else does nothing and
// the closures are never stored). `saved` lists the tensors the VJPs read, in the order s[i]
// returns them; listing `out` itself saves the output (as an alias that does not keep the node alive).
template <class Formula, class Fused = std::nullptr_t>
void record(OpDef def, TensorRefs inputs, Tensor& out, TensorRefs saved, Formula&& formula, Fused&& fused = nullptr) {
  if (!detail::should_record(inputs)) return;
  // The lists' arrays live until the end of the caller's full expression, past record_impl.
  detail::record_impl(def, std::span(inputs.begin(), inputs.size()), out, std::span(saved.begin(), saved.size()),
                      std::forward<Formula>(formula), std::forward<Fused>(fused));
}
template <class Formula, class Fused = std::nullptr_t>
void record(OpDef def, const std::vector<Tensor>& inputs, Tensor& out, const std::vector<Tensor>& saved,
            Formula&& formula, Fused&& fused = nullptr) {
  if (!detail::should_record(inputs)) return;
  detail::record_impl(def, inputs, out, saved, std::forward<Formula>(formula), std::forward<Fused>(fused));
}

// Read-only walk over this thread's tape, oldest first (graph printing, tests).
const NodeStore& tape_nodes();

}  // namespace tapegrad
