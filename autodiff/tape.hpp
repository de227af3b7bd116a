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
//
// Op internals (nodes, `record`, what a VJP reads) are in autodiff/detail/node.hpp.
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/site.hpp"
#include "autodiff/source_location.hpp"
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

// ---- gradient lists ----
struct Node;  // a tape entry (autodiff/detail/node.hpp)

namespace detail {
// The per-thread block pool (autodiff/detail/pool.hpp): gradient lists and the tape's own vectors
// allocate through it, so a warm training step does not call malloc.
inline constexpr std::size_t kPoolGranule = 16;
void* pool_allocate(std::size_t bytes);
void pool_deallocate(void* p, std::size_t bytes) noexcept;
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() noexcept = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}  // NOLINT: allocators convert implicitly
  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= kPoolGranule, "PoolAllocator: over-aligned type");
    return static_cast<T*>(pool_allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { pool_deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
};
}  // namespace detail

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

// ---- creation sites ----
// Each node keeps the call site that was current when it was recorded (autodiff/site.hpp: ops
// open a SiteScope with the caller's SourceLocation), so anomaly errors and traces can
// name the user's file and line. line() == 0: unknown.
// "file.cpp:42 (in f)"; "" for an unknown site (line 0).
std::string site_str(const SourceLocation& site);

namespace detail {
// A BackwardObserver is called after each VJP backward runs, with the node, its incoming gradient
// and the gradients it returned (before they are accumulated). Installed for a scope (anomaly
// mode) or passed to one backward (BackwardOptions::trace).
class BackwardObserver {
 public:
  virtual ~BackwardObserver() = default;
  virtual void on_vjp(std::size_t position, const Node& node, const Tensor& g, const Grads& gs) = 0;
};
}  // namespace detail

// ---- backward ----

struct BackwardOptions {
  bool retain_graph = false;  // keep the nodes so the graph can be walked again
  bool create_graph = false;  // record the backward computation (implies retain_graph)
  // When set, every node backward runs is appended to *trace, in execution order: op, incoming
  // gradient, produced input gradients (a BackwardTrace, autodiff/inspect.hpp). Off (nullptr): no cost.
  detail::BackwardObserver* trace = nullptr;
};

// backward(loss): loss must have one element; grad_out = 1.
void backward(const Tensor& out, const BackwardOptions& options = {});
// backward(out, grad_out): vector-Jacobian product for a non-scalar out; grad_out has out's shape.
void backward(const Tensor& out, const Tensor& grad_out, const BackwardOptions& options = {});

struct GradOptions {
  bool retain_graph = false;  // PyTorch's default is create_graph; see grad()
  bool create_graph = false;
  bool allow_unused = false;  // an input the outputs do not depend on gets an undefined Tensor
  detail::BackwardObserver* trace = nullptr;  // as in BackwardOptions
};

// torch.autograd.grad: d(sum_i <grad_outputs[i], outputs[i]>)/d inputs, returned rather than
// accumulated into .grad (which stays untouched). grad_outputs may be empty for scalar outputs.
// retain_graph is forced on when create_graph is on.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, const GradOptions& options = {});

// ---- inspection ----
struct TapeStats {
  std::size_t nodes = 0;         // entries on this thread's tape (live or released)
  std::size_t live_nodes = 0;    // entries still holding a VJP
  std::size_t saved_bytes = 0;   // values live nodes saved for their VJPs (outputs, inputs, buffers
                                 // for fused backwards); a tensor saved by two nodes counts twice
  std::size_t leaf_bytes = 0;    // values of the leaves live nodes refer to (usually parameters the
                                 // model holds anyway); a leaf used by two nodes counts twice
  std::size_t node_bytes = 0;    // the nodes themselves: live entries, their input edges and saved
                                 // handles, and VJP closures too large to sit in the node
  std::size_t peak_live_nodes = 0;   // the largest live_nodes since reset_peak() (or thread start)
  std::size_t peak_saved_bytes = 0;  // the largest saved_bytes since then
  std::size_t held_bytes() const { return saved_bytes + leaf_bytes + node_bytes; }  // all a graph keeps alive
  // "tape: 12 nodes (12 live, peak 40), saved tensors 3.1 KiB (peak 9.4 KiB), leaves 1.2 KiB, nodes 2.6 KiB"
  std::string str() const;
};
TapeStats tape_stats();
// Starts a new peak window: the peaks become the current values.
void reset_peak();
std::size_t tape_size();
// Releases every node of this thread's tape (like dropping every graph). Tensors that referred
// to them become as if their graph had been freed.
void clear_tape();
// Read-only walk over this thread's tape, oldest first (graph printing, tests).
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
