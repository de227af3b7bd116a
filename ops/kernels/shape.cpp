// SPDX-License-Identifier: MIT
#include "ops/kernels/shape.hpp"
#include "autodiff/detail/node.hpp"

#include <array>
#include <cstring>

#include <Eigen/Core>

namespace tapegrad::kernels {

namespace {

// The row walk shared by slice, index_select and index_add. Seen as [outer, size, inner] along
// dim, the full tensor has rows (o, pos(j)) and the narrow one rows (o, j) for j < n; f gets both
// rows' element offsets: f(full_offset, narrow_offset). Selecting copies full -> narrow, index_add
// adds narrow -> full.
template <class Pos, class F>
void for_each_indexed_row(const DimSplit& full, std::int64_t n, Pos&& pos, F&& f) {
  for (std::int64_t o = 0; o < full.outer; ++o)
    for (std::int64_t j = 0; j < n; ++j) f((o * full.size + pos(j)) * full.inner, (o * n + j) * full.inner);
}

// out[.., j, ..] = x[.., pos(j), ..] along dim, rows copied as bytes (any dtype).
template <class Pos>
Tensor select_rows(const Tensor& x, int dim, std::int64_t n, Pos&& pos) {
  Shape os = x.shape();
  os[dim] = n;
  Tensor out = Tensor::empty(os, x.dtype());
  if (out.numel() == 0) return out;
  const auto es = dtype_size(x.dtype());
  const DimSplit sp = split_at(x.shape(), dim);
  const auto row = static_cast<std::size_t>(sp.inner) * es;
  const auto* px = static_cast<const unsigned char*>(x.impl().data);
  auto* po = static_cast<unsigned char*>(out.impl().data);
  for_each_indexed_row(sp, n, pos, [&](std::int64_t full, std::int64_t narrow) {
    std::memcpy(po + static_cast<std::size_t>(narrow) * es, px + static_cast<std::size_t>(full) * es, row);
  });
  return out;
}

// The walk shared by gather and scatter_add: for each element j of index (row-major), the flat
// offset in input it addresses (index's value along dim, its own coordinate elsewhere): f(j, offset).
template <class F>
void for_each_gather_offset(const Shape& input_shape, int dim, const Tensor& index, F&& f) {
  const auto in_st = contiguous_strides(input_shape);
  const auto ix_st = contiguous_strides(index.shape());
  const std::int64_t* pi = index.data<std::int64_t>();
  const int rank = index.dim();
  for (std::int64_t j = 0; j < index.numel(); ++j) {
    std::int64_t off = 0, rem = j;
    for (int d = 0; d < rank; ++d) {
      const auto ud = static_cast<std::size_t>(d);
      const std::int64_t c = rem / ix_st[ud];
      rem %= ix_st[ud];
      off += (d == dim ? pi[j] : c) * in_st[ud];
    }
    f(j, off);
  }
}

}  // namespace

Tensor permute_forward(const Tensor& x, std::span<const int> dims) {
  Shape os;
  for (int d : dims) os.push_back(x.shape()[d]);
  Tensor out = Tensor::empty(os, x.dtype());
  if (out.numel() == 0) return out;
  // Walk out in row-major order over a rank-4 index (leading dims of size 1), reading x through
  // its strides permuted.
  const auto cs = contiguous_strides(x.shape());
  std::array<std::int64_t, kMaxRank> n{1, 1, 1, 1};
  std::array<std::int64_t, kMaxRank> st{0, 0, 0, 0};
  const int off = kMaxRank - os.rank();
  for (int k = 0; k < os.rank(); ++k) {
    n[static_cast<std::size_t>(off + k)] = os[k];
    st[static_cast<std::size_t>(off + k)] = cs[static_cast<std::size_t>(dims[static_cast<std::size_t>(k)])];
  }
  dispatch_all(x.dtype(), [&]<class T>() {
    const T* px = x.data<T>();
    T* po = out.mutable_data<T>();
    std::int64_t i = 0;
    for (std::int64_t i0 = 0; i0 < n[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < n[1]; ++i1)
        for (std::int64_t i2 = 0; i2 < n[2]; ++i2) {
          const std::int64_t base = i0 * st[0] + i1 * st[1] + i2 * st[2];
          for (std::int64_t i3 = 0; i3 < n[3]; ++i3) po[i++] = px[base + i3 * st[3]];
        }
  });
  return out;
}

Tensor slice_forward(const Tensor& x, int dim, std::int64_t start, std::int64_t len, std::int64_t step) {
  return select_rows(x, dim, len, [start, step](std::int64_t j) { return start + j * step; });
}

Tensor slice_positions(std::int64_t start, std::int64_t len, std::int64_t step) {
  Tensor out = Tensor::empty(Shape{len}, kInt64);
  std::int64_t* p = out.mutable_data<std::int64_t>();
  for (std::int64_t j = 0; j < len; ++j) p[j] = start + j * step;
  return out;
}

Tensor cat_forward(std::span<const Tensor> tensors, int dim) {
  Shape os = tensors[0].shape();
  os[dim] = 0;
  for (const Tensor& t : tensors) os[dim] += t.shape()[dim];
  Tensor out = Tensor::empty(os, tensors[0].dtype());
  // Each tensor fills a block of n * inner elements in every outer row, at its running offset.
  const DimSplit so = split_at(os, dim);
  const auto es = dtype_size(out.dtype());
  auto* po = static_cast<unsigned char*>(out.impl().data);
  std::int64_t offset = 0;
  for (const Tensor& t : tensors) {
    const std::int64_t n = t.shape()[dim];
    const auto block = static_cast<std::size_t>(n * so.inner) * es;
    if (block > 0) {
      const auto* pt = static_cast<const unsigned char*>(t.impl().data);
      for (std::int64_t o = 0; o < so.outer; ++o)
        std::memcpy(po + static_cast<std::size_t>((o * so.size + offset) * so.inner) * es,
                    pt + static_cast<std::size_t>(o) * block, block);
    }
    offset += n;
  }
  return out;
}

Tensor index_select_forward(const Tensor& x, int dim, const Tensor& index) {
  const std::int64_t* pi = index.data<std::int64_t>();
  return select_rows(x, dim, index.numel(), [pi](std::int64_t j) { return pi[j]; });
}

Tensor index_add_forward(const Tensor& x, int dim, const Tensor& index, const Tensor& source) {
  Tensor out = x.contiguous_copy_detached();
  if (source.numel() == 0) return out;
  const DimSplit sp = split_at(x.shape(), dim);
  const std::int64_t* pi = index.data<std::int64_t>();
  dispatch_float(x.dtype(), [&]<class T>() {
    using Row = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
    using CRow = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    const T* ps = source.data<T>();
    T* po = out.mutable_data<T>();
    const auto inner = static_cast<Eigen::Index>(sp.inner);
    for_each_indexed_row(sp, index.numel(), [pi](std::int64_t j) { return pi[j]; },
                         [&](std::int64_t full, std::int64_t narrow) { Row(po + full, inner) += CRow(ps + narrow, inner); });
  });
  return out;
}

Tensor gather_forward(const Tensor& input, int dim, const Tensor& index) {
  Tensor out = Tensor::empty(index.shape(), input.dtype());
  if (index.numel() == 0) return out;
  dispatch_all(input.dtype(), [&]<class T>() {
    const T* px = input.data<T>();
    T* po = out.mutable_data<T>();
    for_each_gather_offset(input.shape(), dim, index, [&](std::int64_t j, std::int64_t off) { po[j] = px[off]; });
  });
  return out;
}

Tensor scatter_add_forward(const Tensor& input, int dim, const Tensor& index, const Tensor& src) {
  Tensor out = input.contiguous_copy_detached();
  if (index.numel() == 0) return out;
  dispatch_float(input.dtype(), [&]<class T>() {
    const T* ps = src.data<T>();
    T* po = out.mutable_data<T>();
    for_each_gather_offset(input.shape(), dim, index, [&](std::int64_t j, std::int64_t off) { po[off] += ps[j]; });
  });
  return out;
}

}  // namespace tapegrad::kernels
