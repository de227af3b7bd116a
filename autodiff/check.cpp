// SPDX-License-Identifier: MIT
#include "autodiff/check.hpp"

namespace tapegrad {

void check_defined(const char* op, const char* name, const Tensor& t) {
  if (!t.defined()) throw InvalidArgument(fmt::format("{}: {} is an undefined Tensor (expected a tensor with a value)", op, name));
}

void check_floating(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  if (!is_floating(t.dtype()))
    throw InvalidArgument(fmt::format("{}: {} has dtype {} (shape {}); expected float32 or float64 (use {}.to(kFloat64))", op,
                                      name, dtype_name(t.dtype()), t.shape(), name));
}

DType check_same_dtype(const char* op, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b) {
  check_defined(op, a_name, a);
  check_defined(op, b_name, b);
  if (a.dtype() != b.dtype())
    throw InvalidArgument(fmt::format("{}: {} is {} but {} is {}; tapegrad does not mix dtypes silently (convert one with .to(dtype))",
                                      op, a_name, dtype_name(a.dtype()), b_name, dtype_name(b.dtype())));
  return a.dtype();
}

int check_dim(const char* op, const char* name, const Tensor& t, int dim) {
  check_defined(op, name, t);
  const int r = t.dim();
  const int lo = r == 0 ? -1 : -r;
  const int hi = r == 0 ? 0 : r - 1;
  if (dim < lo || dim > hi)
    throw InvalidArgument(fmt::format("{}: dim {} is out of range for {} of shape {} (expected {} <= dim <= {})", op, dim, name,
                                      t.shape(), lo, hi));
  return dim < 0 ? dim + (r == 0 ? 1 : r) : dim;
}

int check_insert_dim(const char* op, const char* name, const Tensor& t, int dim) {
  check_defined(op, name, t);
  const int r = t.dim() + 1;
  if (dim < -r || dim >= r)
    throw InvalidArgument(fmt::format("{}: dim {} is out of range for {} of shape {} (expected {} <= dim <= {})", op, dim, name,
                                      t.shape(), -r, r - 1));
  return dim < 0 ? dim + r : dim;
}

void check_not_empty(const char* op, const char* name, const Tensor& t) {
  check_defined(op, name, t);
  if (t.numel() == 0)
    throw InvalidArgument(fmt::format("{}: {} is empty (shape {}); expected at least one element", op, name, t.shape()));
}

Shape broadcast_shapes(const char* op, const char* a_name, const Shape& a, const char* b_name, const Shape& b) {
  if (a == b) return a;
  const int r = std::max(a.rank(), b.rank());
  Shape out;
  for (int i = 0; i < r; ++i) out.push_back(1);
  for (int i = 1; i <= r; ++i) {
    const std::int64_t sa = i <= a.rank() ? a[a.rank() - i] : 1;
    const std::int64_t sb = i <= b.rank() ? b[b.rank() - i] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      throw InvalidArgument(fmt::format("{}: cannot broadcast {} of shape {} with {} of shape {} (dim {}: {} vs {}; sizes must match or one must be 1)",
                                        op, a_name, a, b_name, b, -i, sa, sb));
    out[r - i] = sa == 1 ? sb : sa;
  }
  return out;
}

}  // namespace tapegrad
