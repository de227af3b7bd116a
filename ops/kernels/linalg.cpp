// SPDX-License-Identifier: MIT
#include "ops/kernels/linalg.hpp"

#include <array>

#include <Eigen/Core>

#include "autodiff/eigen.hpp"
#include "autodiff/threads.hpp"

namespace tapegrad::kernels {

namespace {

// Calls f(i, ia, ib) for every flat index i of out_batch with the index of the matching matrix of
// each operand, whose batch shapes a_batch and b_batch broadcast to it (size-1 and missing dims
// repeat). No allocation: a training step must not touch the heap.
template <class F>
void for_each_batch(const Shape& a_batch, const Shape& b_batch, const Shape& out_batch, F&& f) {
  const int r = out_batch.rank();
  auto strides = [&](const Shape& in) {
    const auto cs = contiguous_strides(in);
    std::array<std::int64_t, kMaxRank> st{};
    const int off = r - in.rank();
    for (int k = 0; k < in.rank(); ++k)
      st[static_cast<std::size_t>(off + k)] = in[k] == 1 ? 0 : cs[static_cast<std::size_t>(k)];
    return st;
  };
  const auto sa = strides(a_batch), sb = strides(b_batch);
  std::array<std::int64_t, kMaxRank> idx{};
  for (std::int64_t i = 0; i < out_batch.numel(); ++i) {
    std::int64_t oa = 0, ob = 0;
    for (int k = 0; k < r; ++k) {
      oa += idx[static_cast<std::size_t>(k)] * sa[static_cast<std::size_t>(k)];
      ob += idx[static_cast<std::size_t>(k)] * sb[static_cast<std::size_t>(k)];
    }
    f(i, oa, ob);
    for (int k = r - 1; k >= 0; --k) {
      if (++idx[static_cast<std::size_t>(k)] < out_batch[k]) break;
      idx[static_cast<std::size_t>(k)] = 0;
    }
  }
}

}  // namespace

Shape batch_of(const Shape& s) {
  Shape b;
  for (int i = 0; i + 2 < s.rank(); ++i) b.push_back(s[i]);
  return b;
}

template <class T>
void gemm(const T* pa, const T* pb, T* pc, std::int64_t a_rows, std::int64_t a_cols, std::int64_t b_rows,
          std::int64_t b_cols, bool ta, bool tb) {
  // The thread count defaults to 1 before the first product (OpenBLAS would otherwise use every core).
  static const int threads_initialised = get_num_threads();
  (void)threads_initialised;
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const Mat> A(pa, a_rows, a_cols);
  const Eigen::Map<const Mat> B(pb, b_rows, b_cols);
  Eigen::Map<Mat> C(pc, ta ? a_cols : a_rows, tb ? b_rows : b_cols);
  if (!ta && !tb)
    C.noalias() = A * B;
  else if (!ta && tb)
    C.noalias() = A * B.transpose();
  else if (ta && !tb)
    C.noalias() = A.transpose() * B;
  else
    C.noalias() = A.transpose() * B.transpose();
}
template void gemm<float>(const float*, const float*, float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                          bool, bool);
template void gemm<double>(const double*, const double*, double*, std::int64_t, std::int64_t, std::int64_t,
                           std::int64_t, bool, bool);

Tensor matmul_forward(const Tensor& a, const Tensor& b, bool ta, bool tb, const Shape& batch, const char* op) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  const std::int64_t a_rows = sa[sa.rank() - 2], a_cols = sa[sa.rank() - 1];
  const std::int64_t b_rows = sb[sb.rank() - 2], b_cols = sb[sb.rank() - 1];
  const std::int64_t n = ta ? a_cols : a_rows;
  const std::int64_t k = ta ? a_rows : a_cols;
  const std::int64_t m = tb ? b_rows : b_cols;
  const Shape batch_a = batch_of(sa);
  const Shape batch_b = batch_of(sb);
  Shape out_shape = batch;
  out_shape.push_back(n);
  out_shape.push_back(m);
  Tensor out = Tensor::empty(out_shape, a.dtype(), op);
  if (out.numel() == 0) return out;
  dispatch_float(a.dtype(), [&]<class T>() {
    T* po = out.mutable_data<T>();
    if (k == 0) {
      out.mutable_array<T>().setZero();
    } else if (batch_b.numel() == 1 && !ta) {
      // B shared by every batch and A's rows contiguous: fold A's batch into rows.
      gemm<T>(a.data<T>(), b.data<T>(), po, batch_a.numel() * a_rows, a_cols, b_rows, b_cols, false, tb);
    } else {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      for_each_batch(batch_a, batch_b, batch, [&](std::int64_t i, std::int64_t oa, std::int64_t ob) {
        gemm<T>(pa + oa * a_rows * a_cols, pb + ob * b_rows * b_cols, po + i * n * m, a_rows, a_cols, b_rows, b_cols,
                ta, tb);
      });
    }
  });
  return out;
}

}  // namespace tapegrad::kernels
