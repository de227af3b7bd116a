// SPDX-License-Identifier: MIT
#include "autodiff/tensor.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include <fmt/ranges.h>
#include <unistd.h>
#include <ostream>

#include "autodiff/detail/node.hpp"
#include "autodiff/detail/pool.hpp"
#include "autodiff/tape.hpp"

namespace tapegrad {

// ---- Tensor members ----

namespace {
std::shared_ptr<TensorImpl> new_impl() { return std::allocate_shared<TensorImpl>(detail::PoolAllocator<TensorImpl>()); }
}  // namespace

namespace {
std::string bytes_human(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (b >= 1024.0 && u < 6) {
    b /= 1024.0;
    ++u;
  }
  return fmt::format("{:.3g} {}", b, units[u]);
}

std::int64_t physical_memory_bytes() {
  static const std::int64_t bytes = [] {
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long page = ::sysconf(_SC_PAGE_SIZE);
    if (pages <= 0 || page <= 0) return std::numeric_limits<std::int64_t>::max();  // unknown: only overflow checks
    std::int64_t b = 0;
    return __builtin_mul_overflow(static_cast<std::int64_t>(pages), static_cast<std::int64_t>(page), &b)
               ? std::numeric_limits<std::int64_t>::max()
               : b;
  }();
  return bytes;
}
}  // namespace

std::size_t check_allocation(const char* op, const Shape& shape, DType dtype) {
  const std::optional<std::int64_t> n = shape.checked_numel();
  std::int64_t bytes = 0;
  if (!n || __builtin_mul_overflow(*n, static_cast<std::int64_t>(dtype_size(dtype)), &bytes)) [[unlikely]]
    throw InvalidArgument(fmt::format("{}: shape {} has more {} than an int64 can count (overflow); expected a size "
                                      "that fits in memory", op, shape, n ? "bytes" : "elements"));
  if (bytes > physical_memory_bytes()) [[unlikely]]
    throw InvalidArgument(fmt::format("{}: shape {} has {:g} elements ({} of {}), more than this machine's memory ({}); "
                                      "expected a smaller shape", op, shape, static_cast<double>(*n),
                                      bytes_human(static_cast<double>(bytes)), dtype_name(dtype),
                                      bytes_human(static_cast<double>(physical_memory_bytes()))));
  return static_cast<std::size_t>(bytes);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, const char* op) {
  const std::size_t bytes = check_allocation(op, shape, dtype);
  auto impl = new_impl();
  impl->shape = shape;
  impl->dtype = dtype;
  if (bytes <= TensorImpl::kInlineBytes) {
    impl->data = impl->inline_data;
  } else {
    // One block of doubles: 8-byte aligned for every dtype, no value initialisation.
    auto block = std::allocate_shared_for_overwrite<double[]>(detail::PoolAllocator<double>(), (bytes + 7) / 8);
    impl->data = block.get();
    impl->storage = std::shared_ptr<void>(std::move(block), impl->data);
  }
  return Tensor(std::move(impl));
}

std::shared_ptr<void> Tensor::storage_ref() const {
  const TensorImpl& t = impl();
  if (t.storage) return t.storage;
  return std::shared_ptr<void>(impl_, t.data);  // inline: the impl owns the bytes
}

Tensor Tensor::alias(const Shape& shape) const {
  const TensorImpl& s = impl();
  if (shape.numel() != s.shape.numel())
    throw InvalidArgument(fmt::format("alias: shape {} has {} elements but the tensor has {} (shape {})", shape,
                                      shape.numel(), s.shape.numel(), s.shape));
  auto v = new_impl();
  v->storage = storage_ref();
  v->data = s.data;
  v->shape = shape;
  v->dtype = s.dtype;
  return Tensor(std::move(v));
}

void Tensor::throw_undefined() {
  throw InvalidArgument("tensor: this Tensor is undefined (default-constructed or an absent gradient)");
}

std::int64_t Tensor::size(int d) const {
  const int r = dim();
  if (d < -r || d >= r || r == 0)
    throw InvalidArgument(fmt::format("size: dim {} is out of range for a tensor of shape {} (expected {} <= dim < {})",
                                      d, shape(), -r, r));
  return shape()[d < 0 ? d + r : d];
}

Tensor& Tensor::requires_grad_(bool on) {
  TensorImpl& t = impl();
  if (on && !is_floating(t.dtype))
    throw InvalidArgument(fmt::format("requires_grad_: only float32 and float64 tensors can require grad; this one is {}",
                                      dtype_name(t.dtype)));
  if (!is_leaf())
    throw InvalidArgument("requires_grad_: this tensor was produced by a recorded op; requires_grad_ applies to leaves (use detach() first)");
  t.requires_grad = on;
  return *this;
}

Tensor& Tensor::retain_grad() {
  TensorImpl& t = impl();
  if (is_leaf()) return *this;  // leaves that require grad get theirs anyway (PyTorch: no-op)
  if (!t.requires_grad)
    throw RuntimeError("retain_grad: this tensor does not require grad, so backward never reaches it");
  t.retains_grad = true;
  detail::mark_retains_grad(t);
  return *this;
}

Tensor Tensor::grad() const {
  const TensorImpl& t = impl();
  if (t.grad) return Tensor(t.grad);
  // PyTorch returns None here with a warning; an undefined tensor would pass silently until used.
  if (t.node_id != 0 && t.requires_grad && !t.retains_grad)
    throw RuntimeError(fmt::format(
        "grad: this tensor is the output of '{}', a non-leaf; backward does not keep a non-leaf's gradient "
        "unless retain_grad() is called on it before backward",
        t.op ? t.op : "?"));
  return Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  if (!g.defined()) {
    impl().grad.reset();
    return;
  }
  if (g.shape() != shape() || g.dtype() != dtype())
    throw InvalidArgument(fmt::format("set_grad: gradient of shape {} ({}) for a tensor of shape {} ({}); they must match",
                                      g.shape(), dtype_name(g.dtype()), shape(), dtype_name(dtype())));
  impl().grad = g.impl_ptr();
}

Tensor& Tensor::set_name(std::string name) {
  impl().name = std::move(name);
  return *this;
}

void Tensor::throw_bad_access(DType asked) const {
  throw InvalidArgument(fmt::format("data: asked for {} elements but the tensor is {} (use to({}) first)",
                                    dtype_name(asked), dtype_name(impl().dtype), dtype_name(asked)));
}

Tensor Tensor::detach() const { return alias(shape()); }

Tensor Tensor::contiguous_copy_detached() const {
  Tensor out = Tensor::empty(shape(), dtype());
  const auto bytes = static_cast<std::size_t>(numel()) * dtype_size(dtype());
  if (bytes > 0) std::memcpy(out.impl().data, impl().data, bytes);
  return out;
}

Tensor& Tensor::copy_(const Tensor& src) {
  if (!defined()) throw InvalidArgument("copy_: this Tensor is undefined (default-constructed); copy_ writes into an existing tensor");
  if (!src.defined()) throw InvalidArgument(fmt::format("copy_: src is an undefined Tensor (copying into shape {})", shape()));
  if (src.shape() != shape())
    throw InvalidArgument(fmt::format("copy_: src has shape {} but this tensor has shape {}; expected the same shape "
                                      "(reshape or expand src first)", src.shape(), shape()));
  // The copy is not recorded: a VJP would otherwise see a value the tape knows nothing about.
  if (GradMode::is_enabled() && (requires_grad() || src.requires_grad()))
    throw InvalidArgument(fmt::format("copy_: {} requires grad and grad mode is on; copy_ records no graph, so copy "
                                      "under NoGradGuard (PyTorch: torch.no_grad()), or use src.detach(), or clone() "
                                      "for a differentiable copy", requires_grad() ? "this tensor" : "src"));
  if (same(src)) return *this;
  const TensorImpl& s = src.impl();
  TensorImpl& d = impl();
  const std::int64_t n = numel();
  if (s.dtype == d.dtype) {
    const auto bytes = static_cast<std::size_t>(n) * dtype_size(d.dtype);
    if (bytes > 0 && s.data != d.data) std::memmove(d.data, s.data, bytes);  // views may share storage
    return *this;
  }
  dispatch_all(s.dtype, [&]<class S>() {
    const S* in = static_cast<const S*>(s.data);
    dispatch_all(d.dtype, [&]<class D>() {
      D* out = static_cast<D*>(d.data);
      if constexpr (std::is_floating_point_v<S> && std::is_same_v<D, std::int64_t>) {
        // A float outside [-2^63, 2^63) (or NaN) has no int64 value: the cast would be undefined.
        for (std::int64_t i = 0; i < n; ++i)
          if (!(in[i] >= S(-0x1p63) && in[i] < S(0x1p63)))
            throw InvalidArgument(fmt::format("copy_: src{} = {} cannot be converted to int64 (expected finite values "
                                              "in int64's range)", fmt::format("[{}]", fmt::join(unravel_index(s.shape, i), ", ")),
                                              static_cast<double>(in[i])));
      }
      for (std::int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<D, bool>)
          out[i] = in[i] != S(0);
        else
          out[i] = static_cast<D>(in[i]);
      }
    });
  });
  return *this;
}

Tensor& Tensor::set_data(const Tensor& src) {
  if (!defined()) throw InvalidArgument("set_data: this Tensor is undefined (default-constructed)");
  if (!src.defined()) throw InvalidArgument(fmt::format("set_data: src is an undefined Tensor (for a tensor of shape {})", shape()));
  TensorImpl& d = impl();
  if (!is_leaf())
    throw InvalidArgument(fmt::format("set_data: this tensor is the output of '{}' (a non-leaf), whose backward expects its "
                                      "shape and dtype; set_data applies to leaves (parameters, buffers, constants)",
                                      d.op ? d.op : "?"));
  if (d.requires_grad && !is_floating(src.dtype()))
    throw InvalidArgument(fmt::format("set_data: this tensor requires grad, so its value must be float32 or float64; "
                                      "src is {} (shape {})", dtype_name(src.dtype()), src.shape()));
  if (same(src)) return *this;
  const TensorImpl& s = src.impl();
  if (s.shape != d.shape || s.dtype != d.dtype) d.grad.reset();
  if (s.data == static_cast<const void*>(s.inline_data)) {  // src's bytes live inside its impl: copy them
    std::memcpy(d.inline_data, s.inline_data, static_cast<std::size_t>(s.shape.numel()) * dtype_size(s.dtype));
    d.storage.reset();
    d.data = d.inline_data;
  } else {
    d.storage = s.storage;
    d.data = s.data;
  }
  d.shape = s.shape;
  d.dtype = s.dtype;
  return *this;
}

Tensor Tensor::clone() const {
  Tensor out = contiguous_copy_detached();
  // saved: nothing (dx = g).
  record(OpDef{"clone", "dx = g"}, {*this}, out, {}, [](const Tensor& g, const Saved&) { return Grads{g}; });
  return out;
}

Tensor Tensor::to(DType target) const {
  const DType src = dtype();
  if (src == target) return *this;
  Tensor out = Tensor::empty(shape(), target);
  const auto n = numel();
  dispatch_all(src, [&]<class S>() {
    const S* in = static_cast<const S*>(impl().data);
    dispatch_all(target, [&]<class D>() {
      D* o = static_cast<D*>(out.impl().data);
      for (std::int64_t i = 0; i < n; ++i) {
        if constexpr (std::is_same_v<D, bool>)
          o[i] = in[i] != S(0);
        else
          o[i] = static_cast<D>(in[i]);
      }
    });
  });
  if (is_floating(src) && is_floating(target))
    // saved: nothing (x's dtype is in the node's input metadata).
    record(OpDef{"to", "dx = g.to(x.dtype)"}, {*this}, out, {},
           [](const Tensor& g, const Saved& s) { return Grads{g.to(s.dtype(0))}; });
  return out;
}

namespace {
double read_as_double(const TensorImpl& t, std::int64_t i) {
  return dispatch_all(t.dtype, [&]<class T>() { return static_cast<double>(static_cast<const T*>(t.data)[i]); });
}
void write_from_double(TensorImpl& t, std::int64_t i, double v) {
  dispatch_all(t.dtype, [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>)
      static_cast<T*>(t.data)[i] = v != 0.0;
    else
      static_cast<T*>(t.data)[i] = static_cast<T>(v);
  });
}
std::int64_t flat_index(const char* who, const Shape& shape, std::initializer_list<std::int64_t> index) {
  if (static_cast<int>(index.size()) != shape.rank())
    throw InvalidArgument(fmt::format("{}: {} indices for a tensor of shape {} (expected one per dim: {})", who,
                                      index.size(), shape, shape.rank()));
  const auto strides = contiguous_strides(shape);
  std::int64_t flat = 0;
  int d = 0;
  for (std::int64_t i : index) {
    if (i < 0 || i >= shape[d])
      throw InvalidArgument(fmt::format("{}: index {} is out of range for dim {} of size {} (shape {}; expected 0 <= index < {})",
                                        who, i, d, shape[d], shape, shape[d]));
    flat += i * strides[static_cast<std::size_t>(d)];
    ++d;
  }
  return flat;
}
}  // namespace

bool Tensor::retains_grad() const { return defined() && impl().retains_grad; }
void Tensor::zero_grad() { impl().grad.reset(); }
const std::string& Tensor::name() const { return impl().name; }

double Tensor::item() const {
  if (numel() != 1)
    throw InvalidArgument(fmt::format("item: the tensor has shape {} ({} elements); item() needs exactly one element",
                                      shape(), numel()));
  return read_as_double(impl(), 0);
}

double Tensor::at(std::initializer_list<std::int64_t> index) const {
  return read_as_double(impl(), flat_index("at", shape(), index));
}

void Tensor::set(std::initializer_list<std::int64_t> index, double value) {
  write_from_double(impl(), flat_index("set", shape(), index), value);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> v(static_cast<std::size_t>(numel()));
  for (std::int64_t i = 0; i < numel(); ++i) v[static_cast<std::size_t>(i)] = read_as_double(impl(), i);
  return v;
}

// ---- factories ----

namespace {
void check_count(std::size_t n, const Shape& shape) {
  if (static_cast<std::int64_t>(n) != shape.numel())
    throw InvalidArgument(fmt::format("from_vector: {} values for shape {} (expected {} = product of the sizes)", n,
                                      shape, shape.numel()));
}
}  // namespace

Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  check_count(values.size(), shape);
  Tensor t = Tensor::empty(shape, dtype);
  for (std::size_t i = 0; i < values.size(); ++i) write_from_double(t.impl(), static_cast<std::int64_t>(i), values[i]);
  return t;
}

Tensor from_vector(std::initializer_list<double> values, const Shape& shape, DType dtype) {
  return from_vector(std::vector<double>(values), shape, dtype);
}

namespace {
template <class T>
Tensor from_typed(const std::vector<T>& values, const Shape& shape) {
  check_count(values.size(), shape);
  Tensor t = Tensor::empty(shape, dtype_of<T>());
  T* d = t.mutable_data<T>();
  for (std::size_t i = 0; i < values.size(); ++i) d[i] = values[i];
  return t;
}
}  // namespace

Tensor from_vector(const std::vector<float>& values, const Shape& shape) { return from_typed(values, shape); }
Tensor from_vector(const std::vector<std::int64_t>& values, const Shape& shape) { return from_typed(values, shape); }
Tensor from_vector(const std::vector<bool>& values, const Shape& shape) {
  check_count(values.size(), shape);
  Tensor t = Tensor::empty(shape, kBool);
  bool* d = t.mutable_data<bool>();
  for (std::size_t i = 0; i < values.size(); ++i) d[i] = values[i];
  return t;
}

Tensor tensor(double value, DType dtype) { return from_vector(std::vector<double>{value}, Shape{}, dtype); }

Tensor tensor(std::initializer_list<double> values, DType dtype) {
  return from_vector(std::vector<double>(values), Shape{static_cast<std::int64_t>(values.size())}, dtype);
}

namespace {
// Flattens a nested initializer list, checking that it is rectangular.
void flatten(std::initializer_list<double> l, std::vector<double>& out, std::vector<std::int64_t>& sizes, int depth) {
  const auto n = static_cast<std::int64_t>(l.size());
  if (static_cast<int>(sizes.size()) <= depth)
    sizes.push_back(n);
  else if (sizes[static_cast<std::size_t>(depth)] != n)
    throw InvalidArgument(fmt::format("tensor: ragged nested list: a row at depth {} has {} elements, another has {} (all rows must have the same length)",
                                      depth, n, sizes[static_cast<std::size_t>(depth)]));
  out.insert(out.end(), l.begin(), l.end());
}
template <class L>
void flatten(std::initializer_list<L> l, std::vector<double>& out, std::vector<std::int64_t>& sizes, int depth) {
  const auto n = static_cast<std::int64_t>(l.size());
  if (static_cast<int>(sizes.size()) <= depth)
    sizes.push_back(n);
  else if (sizes[static_cast<std::size_t>(depth)] != n)
    throw InvalidArgument(fmt::format("tensor: ragged nested list: a row at depth {} has {} elements, another has {} (all rows must have the same length)",
                                      depth, n, sizes[static_cast<std::size_t>(depth)]));
  for (const auto& sub : l) flatten(sub, out, sizes, depth + 1);
}
template <class L>
Tensor from_nested(std::initializer_list<L> values, DType dtype, int rank) {
  std::vector<double> flat;
  std::vector<std::int64_t> sizes;
  flatten(values, flat, sizes, 0);
  while (static_cast<int>(sizes.size()) < rank) sizes.push_back(0);  // e.g. {{}} -> [1, 0]
  return from_vector(flat, Shape(sizes), dtype);
}
}  // namespace

Tensor tensor(std::initializer_list<std::initializer_list<double>> values, DType dtype) {
  return from_nested(values, dtype, 2);
}
Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<double>>> values, DType dtype) {
  return from_nested(values, dtype, 3);
}
Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<std::initializer_list<double>>>> values,
              DType dtype) {
  return from_nested(values, dtype, 4);
}

namespace {
Tensor full_named(const char* op, const Shape& shape, double value, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, op);
  const auto n = shape.numel();
  dispatch_all(dtype, [&]<class T>() {
    T* d = t.mutable_data<T>();
    const T v = std::is_same_v<T, bool> ? static_cast<T>(value != 0.0) : static_cast<T>(value);
    for (std::int64_t i = 0; i < n; ++i) d[i] = v;
  });
  return t;
}
}  // namespace
Tensor full(const Shape& shape, double value, DType dtype) { return full_named("full", shape, value, dtype); }
Tensor zeros(const Shape& shape, DType dtype) { return full_named("zeros", shape, 0.0, dtype); }
Tensor ones(const Shape& shape, DType dtype) { return full_named("ones", shape, 1.0, dtype); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype()); }
Tensor scalar_like(const Tensor& t, double value) { return full(Shape{}, value, t.dtype()); }

Tensor arange(double end, DType dtype) { return arange(0.0, end, 1.0, dtype); }

Tensor arange(double start, double end, double step, DType dtype) {
  if (step == 0.0 || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step))
    throw InvalidArgument(fmt::format("arange: start={}, end={}, step={}; expected finite values and step != 0",
                                      start, end, step));
  if ((end - start) / step < 0)
    throw InvalidArgument(fmt::format("arange: step {} moves away from end (start={}, end={}); the sign of step must match end - start",
                                      step, start, end));
  const double count = std::ceil((end - start) / step);
  if (count >= 9.2e18)  // would not fit in int64 (the cast below would be UB)
    throw InvalidArgument(fmt::format("arange: start={}, end={}, step={} gives {:g} elements, more than an int64 can count",
                                      start, end, step, count));
  const auto n = static_cast<std::int64_t>(count);
  Tensor t = Tensor::empty(Shape{n}, dtype, "arange");
  for (std::int64_t i = 0; i < n; ++i) write_from_double(t.impl(), i, start + static_cast<double>(i) * step);
  return t;
}

// PyTorch's kernel, in the output's precision: step = (end - start) / (steps - 1); the first half
// counts up from start (start + i step), the second half down from end (end - (steps - 1 - i) step),
// so both ends are exact and the values are symmetric.
Tensor linspace(double start, double end, std::int64_t steps, DType dtype) {
  if (steps < 0)
    throw InvalidArgument(fmt::format("linspace: steps = {}; expected steps >= 0 (the number of values)", steps));
  if (!std::isfinite(start) || !std::isfinite(end))
    throw InvalidArgument(fmt::format("linspace: start={}, end={}; expected finite values", start, end));
  if (!is_floating(dtype))
    throw InvalidArgument(fmt::format("linspace: dtype {} is not supported (expected float32 or float64; use arange for "
                                      "integer sequences)",
                                      dtype_name(dtype)));
  Tensor t = Tensor::empty(Shape{steps}, dtype, "linspace");
  dispatch_float(dtype, [&]<class T>() {
    T* p = t.mutable_data<T>();
    if (steps == 1) p[0] = static_cast<T>(start);
    if (steps < 2) return;
    const T s = static_cast<T>(start), e = static_cast<T>(end);
    if (!std::isfinite(e - s))  // float32 overflow (|start|, |end| or their distance beyond 3.4e38)
      throw InvalidArgument(fmt::format("linspace: start={}, end={} do not fit {} (end - start overflows); expected "
                                        "values within its range, or dtype kFloat64",
                                        start, end, dtype_name(dtype)));
    const T step = (e - s) / static_cast<T>(steps - 1);
    const std::int64_t half = steps / 2;
    for (std::int64_t i = 0; i < steps; ++i)
      p[i] = i < half ? s + step * static_cast<T>(i) : e - step * static_cast<T>(steps - 1 - i);
  });
  return t;
}

namespace {
void check_random_dtype(const char* who, DType dtype) {
  if (!is_floating(dtype))
    throw InvalidArgument(fmt::format("{}: dtype {} is not supported (expected float32 or float64)", who, dtype_name(dtype)));
}
}  // namespace

Tensor rand(const Shape& shape, Generator& gen, DType dtype) {
  check_random_dtype("rand", dtype);
  Tensor t = Tensor::empty(shape, dtype, "rand");
  const auto n = shape.numel();
  if (dtype == kFloat64) {
    double* d = t.mutable_data<double>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = gen.uniform();
  } else {
    float* d = t.mutable_data<float>();
    for (std::int64_t i = 0; i < n; ++i) d[i] = gen.uniform_float();
  }
  return t;
}

Tensor randn(const Shape& shape, Generator& gen, DType dtype) {
  check_random_dtype("randn", dtype);
  Tensor t = Tensor::empty(shape, dtype, "randn");
  for (std::int64_t i = 0; i < shape.numel(); ++i) write_from_double(t.impl(), i, gen.normal());
  return t;
}

Tensor randint(std::int64_t low, std::int64_t high, const Shape& shape, Generator& gen) {
  if (high <= low)
    throw InvalidArgument(fmt::format("randint: low={} >= high={} (expected low < high; values are in [low, high))", low, high));
  Tensor t = Tensor::empty(shape, kInt64, "randint");
  auto* d = t.mutable_data<std::int64_t>();
  const auto range = static_cast<std::uint64_t>(high - low);
  for (std::int64_t i = 0; i < shape.numel(); ++i) d[i] = low + static_cast<std::int64_t>(gen.below(range));
  return t;
}

// ---- printing ----
namespace {
constexpr std::int64_t kSummarizeAbove = 1000;  // PyTorch's print threshold
constexpr std::int64_t kEdgeItems = 3;

std::string format_element(const TensorImpl& t, std::int64_t i) {
  switch (t.dtype) {
    case DType::Bool: return static_cast<const bool*>(t.data)[i] ? "true" : "false";
    case DType::Int64: return fmt::format("{}", static_cast<const std::int64_t*>(t.data)[i]);
    case DType::Float32: return fmt::format("{:.6g}", static_cast<const float*>(t.data)[i]);
    case DType::Float64: return fmt::format("{:.6g}", static_cast<const double*>(t.data)[i]);
  }
  return "?";
}

void format_dim(const TensorImpl& t, int d, std::int64_t offset, bool summarize, int indent, std::string& out) {
  const Shape& s = t.shape;
  if (d < 0 || d >= kMaxRank) return;  // rank <= 4 (also tells the compiler the recursion is bounded)
  const auto strides = contiguous_strides(s);
  const std::int64_t n = s[d];
  const bool cut = summarize && n > 2 * kEdgeItems;
  out += '[';
  for (std::int64_t i = 0; i < n; ++i) {
    if (cut && i == kEdgeItems) {
      out += d + 1 == s.rank() ? "..., " : fmt::format("...,\n{:{}}", "", indent + 1);
      i = n - kEdgeItems;
    }
    const std::int64_t off = offset + i * strides[static_cast<std::size_t>(d)];
    if (d + 1 == s.rank())
      out += format_element(t, off);
    else
      format_dim(t, d + 1, off, summarize, indent + 1, out);
    if (i + 1 < n) out += d + 1 == s.rank() ? ", " : fmt::format(",\n{:{}}", "", indent + 1);
  }
  out += ']';
}
}  // namespace

std::string to_string(const Tensor& t) {
  if (!t.defined()) return "tensor(undefined)";
  const TensorImpl& impl = t.impl();
  std::string body;
  if (impl.shape.rank() == 0)
    body = format_element(impl, 0);
  else
    format_dim(impl, 0, 0, t.numel() > kSummarizeAbove, 7, body);
  std::string s = fmt::format("tensor({}, shape={}, dtype={}", body, impl.shape, dtype_name(impl.dtype));
  if (impl.requires_grad && impl.node_id == 0) {
    s += ", requires_grad";
  } else if (impl.requires_grad) {
    const char* op = producer_name(t);  // PyTorch prints grad_fn=<MulBackward0>
    s += fmt::format(", grad_fn={}", op ? op : "<released>");
  }
  if (!impl.name.empty()) s += fmt::format(", name={}", impl.name);
  return s + ")";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << to_string(t); }

}  // namespace tapegrad
