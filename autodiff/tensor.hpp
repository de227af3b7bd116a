// SPDX-License-Identifier: MIT
#pragma once
// Tensor: a cheap shared handle (copying it copies a pointer) to
//   value          contiguous row-major storage, rank 0-4, float32/float64 (int64/bool for indices, masks)
//   grad           filled by backward on leaves that require grad (accumulates, never assigns)
//   requires_grad  whether ops on it are recorded on the tape
//   node           which tape node produced it (none for leaves and constants)
// Views (reshape, view, squeeze, unsqueeze, detach) share storage with their source, as in PyTorch;
// every other op writes a new tensor.
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autodiff/dtype.hpp"
#include "autodiff/error.hpp"
#include "autodiff/generator.hpp"
#include "autodiff/shape.hpp"

namespace tapegrad {

namespace detail {
// The Eigen map types behind Tensor::array<T>() and mutable_array<T>(), defined in
// autodiff/eigen.hpp: the declarations here do not need Eigen, so this header need not include it.
template <class T> struct EigenArray;
}  // namespace detail

// A tensor's state lives in a TensorImpl (autodiff/detail/tensor_impl.hpp, not installed). Its head,
// the fields Tensor's inline accessors read, is declared here so that those stay inline.
struct TensorImpl;
namespace detail {
struct TensorHead {
  void* data = nullptr;           // first element
  Shape shape;
  DType dtype = DType::Float32;
  bool requires_grad = false;
  std::uint64_t node_id = 0;      // the producing node's id (tape id << 40 | counter), 0 for leaves
};
}  // namespace detail

class Tensor {
 public:
  Tensor() = default;  // undefined: no value
  explicit Tensor(std::shared_ptr<detail::TensorHead> impl) : impl_(std::move(impl)) {}

  // Uninitialised storage of the given shape and dtype (internal kernels fill it). `op` names the
  // user-facing op in the error check_allocation throws for an absurd size.
  static Tensor empty(const Shape& shape, DType dtype, const char* op = "tensor");

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return head().shape; }
  int dim() const { return head().shape.rank(); }
  std::int64_t size(int d) const;  // negative d counts from the end
  std::int64_t numel() const { return head().shape.numel(); }
  DType dtype() const { return head().dtype; }

  // Autodiff state.
  bool requires_grad() const { return defined() && impl_->requires_grad; }
  Tensor& requires_grad_(bool on = true);  // leaves only, floating dtypes only
  bool is_leaf() const { return head().node_id == 0; }
  // Undefined until a backward reaches this leaf (or a non-leaf that retains grad). On a non-leaf
  // that requires grad and does not retain it, throws RuntimeError naming the op (PyTorch: None and
  // a warning), so a forgotten retain_grad() is not read as a zero gradient.
  Tensor grad() const;
  // PyTorch's retain_grad: backward also accumulates this non-leaf's gradient into grad() (with
  // create_graph, a recorded one). A no-op on leaves; an error on a tensor without requires_grad.
  Tensor& retain_grad();
  bool retains_grad() const;
  void set_grad(const Tensor& g);          // replace (checks shape and dtype); undefined clears
  void zero_grad();  // PyTorch's set_to_none=True
  const std::string& name() const;
  Tensor& set_name(std::string name);

  // Copies and conversions.
  Tensor detach() const;                   // shares storage, no graph, requires_grad false
  Tensor clone() const;                    // new storage; differentiable (identity VJP)
  Tensor to(DType dtype) const;            // differentiable between float32 and float64
  Tensor contiguous_copy_detached() const; // new storage, no graph
  // PyTorch's copy_: writes src's values into this tensor's storage (every handle and view on it
  // sees them) and returns *this. Shapes must be equal (PyTorch would broadcast src). src's dtype
  // is converted to this tensor's, as PyTorch does: float to int64 truncates toward zero (NaN, inf
  // and values outside int64 are errors), anything to bool is x != 0. Records no graph, so with
  // grad mode on neither tensor may require grad: write parameters under NoGradGuard (PyTorch's
  // `with torch.no_grad(): p.copy_(src)`). The grad is left as it is.
  Tensor& copy_(const Tensor& src);
  // PyTorch's `t.data = src`: this tensor takes src's value, shape and dtype and keeps its identity
  // (every handle on it sees the new value), requires_grad and name, so a module can change its
  // parameters' dtype under an optimiser that holds them. Afterwards it may share src's storage,
  // as in PyTorch (pass src.contiguous_copy_detached() for a value of its own). No graph; leaves
  // only; a tensor that requires grad needs a float32/float64 value. The grad is kept when shape
  // and dtype stay the same, and cleared otherwise (it would no longer fit).
  Tensor& set_data(const Tensor& src);

  // Values.
  double item() const;                     // numel must be 1
  template <class T> T item() const { return static_cast<T>(item()); }
  double at(std::initializer_list<std::int64_t> index) const;  // bounds-checked read
  void set(std::initializer_list<std::int64_t> index, double value);  // in-place write, no graph
  std::vector<double> to_vector() const;   // all elements as double, row-major
  template <class T> const T* data() const { check_access<T>(); return static_cast<const T*>(impl_->data); }
  // In-place access to the storage, outside the tape (optimisers, initialisers). Writing to a tensor
  // that a recorded op saved changes what its VJP sees, as in PyTorch without version counters.
  template <class T> T* mutable_data() { check_access<T>(); return static_cast<T*>(impl_->data); }

  // Eigen views of the storage as a flat column array: Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>
  // and Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>. Need #include "autodiff/eigen.hpp".
  template <class T> auto array() const { return detail::EigenArray<T>::map(data<T>(), numel()); }
  template <class T> auto mutable_array() { return detail::EigenArray<T>::map(mutable_data<T>(), numel()); }

  // A new handle on the same storage with another shape of the same numel, no graph: the
  // building block of views (reshape, squeeze, detach). Keeps the storage alive.
  Tensor alias(const Shape& shape) const;
  // Owning pointer to this tensor's bytes (aliases the impl itself for inline values).
  std::shared_ptr<void> storage_ref() const;

  // The whole state, for the library's own code: defined in autodiff/detail/tensor_impl.hpp.
  TensorImpl& impl() const;
  const std::shared_ptr<detail::TensorHead>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  const detail::TensorHead& head() const {
    if (!impl_) [[unlikely]]
      throw_undefined();
    return *impl_;
  }
  template <class T> void check_access() const {
    if (dtype_of<T>() != head().dtype) throw_bad_access(dtype_of<T>());
  }
  [[noreturn]] void throw_bad_access(DType asked) const;
  [[noreturn]] static void throw_undefined();
  std::shared_ptr<detail::TensorHead> impl_;
};

// Throws InvalidArgument naming `op` and the shape when a tensor of this shape and dtype cannot be
// allocated: its element or byte count overflows int64, or its bytes exceed this machine's physical
// memory. Every allocation goes through it (Tensor::empty); cheap enough to run on every op.
std::size_t check_allocation(const char* op, const Shape& shape, DType dtype);  // the bytes, when they fit

// ---- factories (PyTorch's default dtype is float32; tests pass kFloat64 explicitly) ----
Tensor tensor(double value, DType dtype = kFloat32);
Tensor tensor(std::initializer_list<double> values, DType dtype = kFloat32);
Tensor tensor(std::initializer_list<std::initializer_list<double>> values, DType dtype = kFloat32);
Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<double>>> values,
              DType dtype = kFloat32);
Tensor tensor(
    std::initializer_list<std::initializer_list<std::initializer_list<std::initializer_list<double>>>> values,
    DType dtype = kFloat32);
Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = kFloat32);
// A braced list of numbers: from_vector({1.0, 2.0}, Shape{2, 1}). Without this overload the list
// converts equally well to each vector type above and the call is ambiguous. Same dtype rule as
// the std::vector<double> form (and tensor({...})): float32 unless dtype says otherwise.
Tensor from_vector(std::initializer_list<double> values, const Shape& shape, DType dtype = kFloat32);
Tensor from_vector(const std::vector<float>& values, const Shape& shape);
Tensor from_vector(const std::vector<std::int64_t>& values, const Shape& shape);
Tensor from_vector(const std::vector<bool>& values, const Shape& shape);
Tensor zeros(const Shape& shape, DType dtype = kFloat32);
Tensor ones(const Shape& shape, DType dtype = kFloat32);
Tensor full(const Shape& shape, double value, DType dtype = kFloat32);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor scalar_like(const Tensor& t, double value);  // rank 0, same dtype
// [start, end) with step, as torch.arange; arange(5) is 0..4.
Tensor arange(double end, DType dtype = kFloat32);
Tensor arange(double start, double end, double step = 1.0, DType dtype = kFloat32);
// steps evenly spaced values from start to end inclusive, as torch.linspace: steps >= 0; steps = 1
// gives [start]; start and end finite. Float32/float64 only (PyTorch's integer linspace truncates
// each value; use arange for integers). Like every factory, not differentiable.
Tensor linspace(double start, double end, std::int64_t steps, DType dtype = kFloat32);
Tensor rand(const Shape& shape, Generator& gen, DType dtype = kFloat32);   // U[0, 1)
Tensor randn(const Shape& shape, Generator& gen, DType dtype = kFloat32);  // N(0, 1)
Tensor randint(std::int64_t low, std::int64_t high, const Shape& shape, Generator& gen);  // int64 in [low, high)

// ---- printing ----
std::string to_string(const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace tapegrad

template <>
struct fmt::formatter<tapegrad::Tensor> : fmt::formatter<std::string> {
  auto format(const tapegrad::Tensor& t, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(tapegrad::to_string(t), ctx);
  }
};
