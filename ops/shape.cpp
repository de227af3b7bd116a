// SPDX-License-Identifier: MIT
#include "ops/shape.hpp"

#include "autodiff/detail/node.hpp"
#include "autodiff/site.hpp"

#include <array>
#include <limits>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/kernels/shape.hpp"

namespace tapegrad {

namespace {

// A new handle on x's storage with another shape (same numel), no graph: what every view returns.
Tensor make_view(const Tensor& x, const Shape& shape) { return x.alias(shape); }

Tensor reshape_to(const Tensor& g, const Shape& shape) { return reshape(g, shape.to_vector()); }

// Views differ only in how they compute the new shape; all of them are
//   forward   out = x's storage seen with another shape      vjp   dx = reshape(g, x.shape)
//   saved     nothing (x's shape is in the node's input metadata)
Tensor view_op(const char* op, const Tensor& x, const Shape& shape) {
  Tensor out = make_view(x, shape);
  record(OpDef{op, "dx = reshape(g, x.shape)"}, {x}, out, {},
         [](const Tensor& g, const Saved& s) { return Grads{reshape_to(g, s.shape(0))}; });
  return out;
}

std::string sizes_str(const std::vector<std::int64_t>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }

// The shape `sizes` asks for, with one -1 inferred from x.numel().
Shape infer_shape(const char* op, const Tensor& x, const std::vector<std::int64_t>& sizes) {
  if (sizes.size() > static_cast<std::size_t>(kMaxRank))
    throw InvalidArgument(fmt::format("{}: shape {} has {} dims; tapegrad tensors have rank 0 to {}", op,
                                      sizes_str(sizes), sizes.size(), kMaxRank));
  int infer = -1;
  std::int64_t known = 1;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::int64_t s = sizes[i];
    if (s == -1) {
      if (infer >= 0)
        throw InvalidArgument(fmt::format("{}: shape {} has -1 at dims {} and {}; only one size can be inferred", op,
                                          sizes_str(sizes), infer, i));
      infer = static_cast<int>(i);
    } else if (s < 0) {
      throw InvalidArgument(fmt::format("{}: shape {} has size {} at dim {} (expected sizes >= 0, or -1 once to infer one)",
                                        op, sizes_str(sizes), s, i));
    } else {
      if (s != 0 && known > std::numeric_limits<std::int64_t>::max() / s)
        throw InvalidArgument(fmt::format("{}: shape {} has more elements than fit in int64", op, sizes_str(sizes)));
      known *= s;
    }
  }
  std::vector<std::int64_t> out = sizes;
  if (infer >= 0) {
    if (known == 0)
      throw InvalidArgument(fmt::format("{}: cannot infer the -1 in shape {} for x of shape {}: the other sizes hold 0 "
                                        "elements, so any size would fit (give every size explicitly)",
                                        op, sizes_str(sizes), x.shape()));
    if (x.numel() % known != 0)
      throw InvalidArgument(fmt::format("{}: x of shape {} ({} elements) cannot be viewed as {}: {} is not a multiple of {}",
                                        op, x.shape(), x.numel(), sizes_str(sizes), x.numel(), known));
    out[static_cast<std::size_t>(infer)] = x.numel() / known;
  } else if (known != x.numel()) {
    throw InvalidArgument(fmt::format("{}: x of shape {} ({} elements) cannot be viewed as {} ({} elements); the number "
                                      "of elements must stay the same",
                                      op, x.shape(), x.numel(), sizes_str(sizes), known));
  }
  return Shape(out);
}

// Checks index is a 1-D int64 tensor whose values are in [0, size(dim)).
void check_index(const char* op, const Tensor& x, int dim, const Tensor& index) {
  check_defined(op, "index", index);
  if (index.dtype() != kInt64)
    throw InvalidArgument(fmt::format("{}: index has dtype {} (shape {}); expected int64 positions "
                                      "(from_vector(std::vector<std::int64_t>{{...}}, {{n}}))",
                                      op, dtype_name(index.dtype()), index.shape()));
  if (index.dim() != 1)
    throw InvalidArgument(fmt::format("{}: index has shape {} (rank {}); expected a 1-D tensor of positions", op,
                                      index.shape(), index.dim()));
  const std::int64_t* pos = index.data<std::int64_t>();
  const std::int64_t size = x.shape()[dim];
  for (std::int64_t j = 0; j < index.numel(); ++j)
    if (pos[j] < 0 || pos[j] >= size)
      throw InvalidArgument(fmt::format("{}: index[{}] = {} is out of range for dim {} of x with shape {} (expected 0 <= "
                                        "index < {})",
                                        op, j, pos[j], dim, x.shape(), size));
}

void check_has_dims(const char* op, const char* name, const Tensor& x) {
  check_defined(op, name, x);
  if (x.dim() == 0)
    throw InvalidArgument(fmt::format("{}: {} is 0-dimensional (shape []); expected at least 1 dim (reshape it to [1])",
                                      op, name));
}

// slice and narrow: positions start, start + step, ... (len of them) along dim, all in range.
//   forward   out[.., j, ..] = x[.., start + j step, ..]
//   vjp       dx = index_add(zeros(x.shape), dim, start + arange(len) step, g)
//   saved     nothing (start, len and step are plain values; the positions are rebuilt in the VJP)
Tensor slice_op(const char* op, const Tensor& x, int dim, std::int64_t start, std::int64_t len, std::int64_t step) {
  Tensor out = kernels::slice_forward(x, dim, start, len, step);
  record(OpDef{op, "dx = 0 with g added at positions start + j·step along dim"}, {x}, out, {},
         [dim, start, len, step](const Tensor& g, const Saved& s) {
           return Grads{index_add(zeros(s.shape(0), g.dtype()), dim, kernels::slice_positions(start, len, step), g)};
         });
  return out;
}

}  // namespace

// ---- views ----

Tensor reshape(const Tensor& x, const std::vector<std::int64_t>& shape, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("reshape", "x", x);
  return view_op("reshape", x, infer_shape("reshape", x, shape));
}

Tensor view(const Tensor& x, const std::vector<std::int64_t>& shape, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("view", "x", x);
  return view_op("view", x, infer_shape("view", x, shape));
}

// flatten: dims start_dim..end_dim merged into one; a rank-0 x becomes [1] (as PyTorch).
Tensor flatten(const Tensor& x, int start_dim, int end_dim, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("flatten", "x", x);
  const int s = check_dim("flatten", "x", x, start_dim);
  const int e = check_dim("flatten", "x", x, end_dim);
  if (x.dim() == 0) return view_op("flatten", x, Shape{1});
  if (s > e)
    throw InvalidArgument(fmt::format("flatten: start_dim {} comes after end_dim {} for x of shape {} (dims {} > {}); "
                                      "expected start_dim <= end_dim",
                                      start_dim, end_dim, x.shape(), s, e));
  Shape out;
  std::int64_t merged = 1;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < s || i > e) {
      out.push_back(x.shape()[i]);
    } else {
      merged *= x.shape()[i];
      if (i == e) out.push_back(merged);
    }
  }
  return view_op("flatten", x, out);
}

Tensor unsqueeze(const Tensor& x, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_insert_dim("unsqueeze", "x", x, dim);
  if (x.dim() >= kMaxRank)
    throw InvalidArgument(fmt::format("unsqueeze: x of shape {} has rank {} already; tapegrad tensors have at most {} dims",
                                      x.shape(), x.dim(), kMaxRank));
  Shape s = x.shape();
  s.insert(d, 1);
  return view_op("unsqueeze", x, s);
}

Tensor squeeze(const Tensor& x, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("squeeze", "x", x);
  Shape s;
  for (std::int64_t n : x.shape())
    if (n != 1) s.push_back(n);
  return view_op("squeeze", x, s);
}

Tensor squeeze(const Tensor& x, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d = check_dim("squeeze", "x", x, dim);
  Shape s = x.shape();
  if (s.rank() > 0 && s[d] == 1) s.erase(d);
  return view_op("squeeze", x, s);
}

// ---- copies ----

// transpose: out = x with dims dim0 and dim1 swapped (a copy; tensors are always contiguous).
//   vjp  dx = transpose(g, dim0, dim1)      saved: nothing
Tensor transpose(const Tensor& x, int dim0, int dim1, SourceLocation site) {
  const SiteScope site_scope(site);
  const int d0 = check_dim("transpose", "x", x, dim0);
  const int d1 = check_dim("transpose", "x", x, dim1);
  std::array<int, kMaxRank> perm{};
  for (int i = 0; i < x.dim(); ++i) perm[static_cast<std::size_t>(i)] = i;
  if (x.dim() > 0) std::swap(perm[static_cast<std::size_t>(d0)], perm[static_cast<std::size_t>(d1)]);
  Tensor out = kernels::permute_forward(x, {perm.data(), static_cast<std::size_t>(x.dim())});
  record(OpDef{"transpose", "dx = transpose(g, dim0, dim1)"}, {x}, out, {},
         [d0, d1](const Tensor& g, const Saved&) { return Grads{transpose(g, d0, d1)}; });
  return out;
}

// permute: out.shape[k] = x.shape[dims[k]].   vjp  dx = permute(g, inverse(dims))
//   saved: nothing (the inverse permutation is a std::array in the closure)
Tensor permute(const Tensor& x, const std::vector<int>& dims, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("permute", "x", x);
  if (static_cast<int>(dims.size()) != x.dim())
    throw InvalidArgument(fmt::format("permute: dims [{}] has {} entries but x of shape {} has {} dims (expected one entry "
                                      "per dim)",
                                      fmt::join(dims, ", "), dims.size(), x.shape(), x.dim()));
  std::array<int, kMaxRank> perm{};
  std::array<int, kMaxRank> inverse{-1, -1, -1, -1};
  for (std::size_t k = 0; k < dims.size(); ++k) {
    const int d = check_dim("permute", "x", x, dims[k]);
    if (inverse[static_cast<std::size_t>(d)] >= 0)
      throw InvalidArgument(fmt::format("permute: dims [{}] names dim {} twice; expected a permutation of 0..{}",
                                        fmt::join(dims, ", "), d, x.dim() - 1));
    perm[k] = d;
    inverse[static_cast<std::size_t>(d)] = static_cast<int>(k);
  }
  const auto rank = static_cast<std::size_t>(x.dim());
  Tensor out = kernels::permute_forward(x, {perm.data(), rank});
  record(OpDef{"permute", "dx = permute(g, inverse(dims))"}, {x}, out, {},
         [inverse, rank](const Tensor& g, const Saved&) {
           return Grads{permute(g, std::vector<int>(inverse.begin(), inverse.begin() + static_cast<std::ptrdiff_t>(rank)))};
         });
  return out;
}

// slice: Python's x[start:end:step] along dim. Negative start/end count from the end, both are
// clamped to [0, size]; an empty range gives size 0. step must be positive (as in PyTorch).
Tensor slice(const Tensor& x, int dim, std::int64_t start, std::int64_t end, std::int64_t step, SourceLocation site) {
  const SiteScope site_scope(site);
  check_has_dims("slice", "x", x);
  const int d = check_dim("slice", "x", x, dim);
  if (step <= 0)
    throw InvalidArgument(fmt::format("slice: step {} for x of shape {}; expected step > 0 (negative steps are not "
                                      "supported, as in PyTorch)",
                                      step, x.shape()));
  const std::int64_t size = x.shape()[d];
  auto clamp_index = [size](std::int64_t i) {
    if (i < 0) i = i < -size ? 0 : i + size;
    return i > size ? size : i;
  };
  const std::int64_t b = clamp_index(start);
  const std::int64_t e = clamp_index(end);
  const std::int64_t len = e > b ? (e - b - 1) / step + 1 : 0;
  return slice_op("slice", x, d, b, len, step);
}

// narrow(x, dim, start, length) = x[start:start+length] along dim; unlike slice the range must
// fit (start may be negative, counting from the end).
Tensor narrow(const Tensor& x, int dim, std::int64_t start, std::int64_t length, SourceLocation site) {
  const SiteScope site_scope(site);
  check_has_dims("narrow", "x", x);
  const int d = check_dim("narrow", "x", x, dim);
  const std::int64_t size = x.shape()[d];
  if (start < -size || start > size)
    throw InvalidArgument(fmt::format("narrow: start {} is out of range for dim {} of x with shape {} (expected {} <= "
                                      "start <= {})",
                                      start, d, x.shape(), -size, size));
  if (start < 0) start += size;
  if (length < 0 || length > size - start)
    throw InvalidArgument(fmt::format("narrow: length {} from start {} does not fit in dim {} of x with shape {} "
                                      "(expected 0 <= length <= {})",
                                      length, start, d, x.shape(), size - start));
  return slice_op("narrow", x, d, start, length, 1);
}

// cat: tensors joined along dim; all have the same dtype, rank and sizes except along dim.
//   vjp   d tensors[i] = slice(g, dim, offset_i, offset_i + size_i)
//   saved nothing (the sizes are the inputs' shapes, which the node keeps as metadata)
Tensor cat(const std::vector<Tensor>& tensors, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  if (tensors.empty()) throw InvalidArgument("cat: tensors is empty; expected at least one tensor to concatenate");
  for (std::size_t i = 0; i < tensors.size(); ++i)
    check_defined("cat", fmt::format("tensors[{}]", i).c_str(), tensors[i]);
  const Tensor& first = tensors[0];
  if (first.dim() == 0)
    throw InvalidArgument("cat: tensors[0] is 0-dimensional (shape []); cat joins along an existing dim (use stack to "
                          "join scalars)");
  const int d = check_dim("cat", "tensors[0]", first, dim);
  Shape os = first.shape();
  os[d] = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    const std::string name = fmt::format("tensors[{}]", i);
    check_same_dtype("cat", "tensors[0]", first, name.c_str(), t);
    bool ok = t.dim() == first.dim();
    for (int k = 0; ok && k < t.dim(); ++k) ok = k == d || t.shape()[k] == first.shape()[k];
    if (!ok)
      throw InvalidArgument(fmt::format("cat: {} has shape {} but tensors[0] has shape {}; expected the same rank and the "
                                        "same sizes except in dim {}",
                                        name, t.shape(), first.shape(), d));
    os[d] += t.shape()[d];
  }
  Tensor out = kernels::cat_forward(tensors, d);
  record(OpDef{"cat", "dtensors[i] = the slice of g along dim that tensors[i] filled"}, tensors, out, {},
         [d](const Tensor& g, const Saved& s) {
           Grads gs;
           gs.reserve(s.inputs());
           std::int64_t off = 0;
           for (std::size_t i = 0; i < s.inputs(); ++i) {
             const std::int64_t n = s.shape(i)[d];
             gs.push_back(s.needs_grad(i) ? slice(g, d, off, off + n) : Tensor());
             off += n;
           }
           return gs;
         });
  return out;
}

// stack: tensors (all the same shape) joined along a new dim = cat of unsqueeze(t, dim).
Tensor stack(const std::vector<Tensor>& tensors, int dim, SourceLocation site) {
  const SiteScope site_scope(site);
  if (tensors.empty()) throw InvalidArgument("stack: tensors is empty; expected at least one tensor to stack");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = fmt::format("tensors[{}]", i);
    check_defined("stack", name.c_str(), tensors[i]);
    check_same_dtype("stack", "tensors[0]", tensors[0], name.c_str(), tensors[i]);
    if (tensors[i].shape() != tensors[0].shape())
      throw InvalidArgument(fmt::format("stack: {} has shape {} but tensors[0] has shape {}; expected equal shapes", name,
                                        tensors[i].shape(), tensors[0].shape()));
  }
  const int d = check_insert_dim("stack", "tensors[0]", tensors[0], dim);
  if (tensors[0].dim() >= kMaxRank)
    throw InvalidArgument(fmt::format("stack: tensors of shape {} have rank {} already; stacking adds a dim and tapegrad "
                                      "tensors have at most {}",
                                      tensors[0].shape(), tensors[0].dim(), kMaxRank));
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (const Tensor& t : tensors) parts.push_back(unsqueeze(t, d));
  return cat(parts, d);
}

// index_select: out[.., j, ..] = x[.., index[j], ..] along dim.
//   vjp   dx = index_add(zeros(x.shape), dim, index, g)      saved: index (not x)
Tensor index_select(const Tensor& x, int dim, const Tensor& index, SourceLocation site) {
  const SiteScope site_scope(site);
  check_has_dims("index_select", "x", x);
  const int d = check_dim("index_select", "x", x, dim);
  check_index("index_select", x, d, index);
  Tensor out = kernels::index_select_forward(x, d, index);
  record(OpDef{"index_select", "dx = index_add(0, dim, index, g)"}, {x}, out, {index},
         [d](const Tensor& g, const Saved& s) { return Grads{index_add(zeros(s.shape(0), g.dtype()), d, s[0], g)}; });
  return out;
}

// index_add: out = x; out[.., index[j], ..] += source[.., j, ..].
//   vjp   dx = g      dsource = index_select(g, dim, index)      saved: index (not x, not source)
Tensor index_add(const Tensor& x, int dim, const Tensor& index, const Tensor& source, SourceLocation site) {
  const SiteScope site_scope(site);
  check_has_dims("index_add", "x", x);
  check_floating("index_add", "x", x);
  check_floating("index_add", "source", source);
  check_same_dtype("index_add", "x", x, "source", source);
  const int d = check_dim("index_add", "x", x, dim);
  check_index("index_add", x, d, index);
  Shape expected = x.shape();
  expected[d] = index.numel();
  if (source.shape() != expected)
    throw InvalidArgument(fmt::format("index_add: source has shape {}; expected {} (x's shape {} with dim {} of size "
                                      "index.numel() = {})",
                                      source.shape(), expected, x.shape(), d, index.numel()));
  Tensor out = kernels::index_add_forward(x, d, index, source);
  record(OpDef{"index_add", "dx = g, dsource = index_select(g, dim, index)"}, {x, source}, out, {index},
         [d](const Tensor& g, const Saved& s) {
           return Grads{g, s.needs_grad(1) ? index_select(g, d, s[0]) : Tensor()};
         });
  return out;
}


// ---- gather / scatter_add ----

namespace {

// Checks index for gather/scatter_add against input (rank, dtype, sizes, values).
void check_gather_index(const char* op, const Tensor& input, int dim, const Tensor& index) {
  check_defined(op, "index", index);
  if (index.dtype() != kInt64)
    throw InvalidArgument(fmt::format("{}: index has dtype {} (shape {}); expected int64 positions (use index.to(kInt64) "
                                      "or from_vector(std::vector<std::int64_t>{{...}}, shape))",
                                      op, dtype_name(index.dtype()), index.shape()));
  if (index.dim() != input.dim())
    throw InvalidArgument(fmt::format("{}: index has shape {} (rank {}) but input has shape {} (rank {}); expected index "
                                      "of the same rank as input",
                                      op, index.shape(), index.dim(), input.shape(), input.dim()));
  const std::int64_t n = index.numel();
  if (n == 0) return;
  for (int d = 0; d < input.dim(); ++d)
    if (d != dim && index.size(d) > input.size(d))
      throw InvalidArgument(fmt::format("{}: index of shape {} is larger than input of shape {} at dim {} ({} > {}); "
                                        "expected index.size(d) <= input.size(d) for every d != dim ({})",
                                        op, index.shape(), input.shape(), d, index.size(d), input.size(d), dim));
  const std::int64_t size = input.dim() == 0 ? 1 : input.size(dim);
  const std::int64_t* pi = index.data<std::int64_t>();
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t v = pi[j];
    if (v < 0 || v >= size)
      throw InvalidArgument(fmt::format("{}: index[{}] = {} is out of range for dim {} of input with shape {} (expected "
                                        "0 <= index < {})",
                                        op, fmt::join(unravel_index(index.shape(), j), ", "), v, dim, input.shape(),
                                        size));
  }
}

}  // namespace

// gather: out[j] = input at index[j] along dim, at j's own coordinates elsewhere.
//   vjp   dinput = scatter_add(zeros(input.shape), dim, index, g)      saved: index (not input)
Tensor gather(const Tensor& input, int dim, const Tensor& index, SourceLocation site) {
  const SiteScope site_scope(site);
  check_defined("gather", "input", input);
  const int d = check_dim("gather", "input", input, dim);
  check_gather_index("gather", input, d, index);
  Tensor out = kernels::gather_forward(input, d, index);
  record(OpDef{"gather", "dinput = scatter_add(0, dim, index, g)"}, {input}, out, {index},
         [d](const Tensor& g, const Saved& s) { return Grads{scatter_add(zeros(s.shape(0), g.dtype()), d, s[0], g)}; });
  return out;
}

// scatter_add: out = input; out at index[j] along dim (j's coordinates elsewhere) += src[j].
//   vjp   dinput = g      dsrc = gather(g, dim, index)      saved: index (not input, not src)
Tensor scatter_add(const Tensor& input, int dim, const Tensor& index, const Tensor& src, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("scatter_add", "input", input);
  check_floating("scatter_add", "src", src);
  check_same_dtype("scatter_add", "input", input, "src", src);
  const int d = check_dim("scatter_add", "input", input, dim);
  check_gather_index("scatter_add", input, d, index);
  if (src.shape() != index.shape())
    throw InvalidArgument(fmt::format("scatter_add: src has shape {} but index has shape {}; expected src of index's "
                                      "shape (slice src to it)",
                                      src.shape(), index.shape()));
  Tensor out = kernels::scatter_add_forward(input, d, index, src);
  record(OpDef{"scatter_add", "dinput = g, dsrc = gather(g, dim, index)"}, {input, src}, out, {index},
         [d](const Tensor& g, const Saved& s) {
           return Grads{s.needs_grad(0) ? g : Tensor(), s.needs_grad(1) ? gather(g, d, s[0]) : Tensor()};
         });
  return out;
}

}  // namespace tapegrad
