// SPDX-License-Identifier: MIT
#include "ops/linalg.hpp"

#include "autodiff/detail/node.hpp"
#include "autodiff/site.hpp"

#include <algorithm>

#include "autodiff/check.hpp"
#include "autodiff/tape.hpp"
#include "ops/elementwise.hpp"
#include "ops/kernels/linalg.hpp"
#include "ops/shape.hpp"

namespace tapegrad {

namespace {

using kernels::batch_of;

// Broadcast of two batch shapes; the message shows the full operand shapes.
Shape broadcast_batch(const char* op, const Shape& a, const Shape& b) {
  const Shape ba = batch_of(a);
  const Shape bb = batch_of(b);
  const int r = std::max(ba.rank(), bb.rank());
  Shape out;
  for (int i = 0; i < r; ++i) out.push_back(1);
  for (int i = 1; i <= r; ++i) {
    const std::int64_t sa = i <= ba.rank() ? ba[ba.rank() - i] : 1;
    const std::int64_t sb = i <= bb.rank() ? bb[bb.rank() - i] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      throw InvalidArgument(fmt::format("{}: a {} and b {} have batch dims {} and {} that do not broadcast (batch dim {}: "
                                        "{} vs {}; sizes must match or one must be 1)",
                                        op, a, b, ba, bb, -i, sa, sb));
    out[r - i] = sa == 1 ? sb : sa;
  }
  return out;
}

Tensor reshape_to(const Tensor& x, const Shape& s) { return reshape(x, s.to_vector()); }

// The batched product behind matmul and matmul_t, on validated operands of rank >= 2.
//   forward   C[b] = op_a(A[b_a]) op_b(B[b_b]), batch indices broadcast (kernels::matmul_forward)
//   vjp       dA = ta ? op_b(B) g^T : g op_b(B)^T          dB = tb ? g^T op_a(A) : op_a(A)^T g
//             each summed over the batch dims its operand broadcast (sum_to_size); when B has no
//             batch and A is not transposed, dB is one GEMM over the folded rows instead. Written
//             with mm_impl itself, so it records under create_graph and runs the kernel otherwise.
//   saved     A and B (each gradient needs the other operand)
Tensor mm_impl(const char* op, const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const Shape batch = broadcast_batch(op, a.shape(), b.shape());
  Tensor out = kernels::matmul_forward(a, b, ta, tb, batch, op);
  // B shared by every batch and A not transposed: the forward folded A's batch into rows, and so
  // can dB's product.
  const bool fold_db = batch_of(b.shape()).numel() == 1 && !ta && batch.numel() > 1;
  const std::int64_t rows = batch_of(a.shape()).numel() * a.size(-2);  // A's rows with its batch folded in
  const std::int64_t m = out.size(-1);
  record(OpDef{op, ta || tb ? "dA = g op(B)ᵀ (ta: op(B) gᵀ), dB = op(A)ᵀ g (tb: gᵀ op(A)), summed over broadcast batch dims"
                            : "dA = g Bᵀ, dB = Aᵀ g, summed over broadcast batch dims"},
         {a, b}, out, {a, b}, [ta, tb, fold_db, rows, m](const Tensor& g, const Saved& s) {
           const Tensor& a = s[0];
           const Tensor& b = s[1];
           Tensor da, db;
           if (s.needs_grad(0)) {
             da = ta ? mm_impl("matmul_t", b, g, tb, true) : mm_impl("matmul_t", g, b, false, !tb);
             da = sum_to_size(da, a.shape());
           }
           if (s.needs_grad(1)) {
             if (fold_db) {
               // Sum over the batch of A[i]^T g[i] = A_rows^T g_rows with the batch folded into rows.
               const Tensor af = reshape(a, {rows, a.size(-1)});
               const Tensor gf = reshape(g, {rows, m});
               db = reshape_to(tb ? mm_impl("matmul_t", gf, af, true, false) : mm_impl("matmul_t", af, gf, true, false),
                               b.shape());
             } else {
               db = tb ? mm_impl("matmul_t", g, a, true, ta) : mm_impl("matmul_t", a, g, !ta, false);
               db = sum_to_size(db, b.shape());
             }
           }
           return Grads{da, db};
         });
  return out;
}

void check_operands(const char* op, const Tensor& a, const Tensor& b) {
  check_floating(op, "a", a);
  check_floating(op, "b", b);
  check_same_dtype(op, "a", a, "b", b);
}

}  // namespace

// matmul (torch.matmul): vectors are promoted to matrices ([k] -> [1, k] on the left, [k, 1] on
// the right), multiplied as batched matrices, and the added dims removed again; the promotions
// are recorded views, so the VJP is mm_impl's.
Tensor matmul(const Tensor& a, const Tensor& b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_operands("matmul", a, b);
  if (a.dim() == 0 || b.dim() == 0)
    throw InvalidArgument(fmt::format("matmul: a {} and b {}: both arguments need at least 1 dim, but {} is 0-dimensional "
                                      "(use mul to multiply by a scalar)",
                                      a.shape(), b.shape(), a.dim() == 0 ? "a" : "b"));
  const std::int64_t ka = a.size(-1);
  const std::int64_t kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  if (ka != kb)
    throw InvalidArgument(fmt::format("matmul: a {} and b {} have mismatched inner dims (a.size(-1) = {}, b.size({}) = {}; "
                                      "expected equal)",
                                      a.shape(), b.shape(), ka, b.dim() == 1 ? 0 : -2, kb));
  if (a.dim() >= 2 && b.dim() >= 2) return mm_impl("matmul", a, b, false, false);
  const Tensor a2 = a.dim() == 1 ? reshape(a, {1, ka}) : a;
  const Tensor b2 = b.dim() == 1 ? reshape(b, {kb, 1}) : b;
  Shape s = batch_of(a2.dim() >= b2.dim() ? a2.shape() : b2.shape());
  if (a.dim() > 1) s.push_back(a.size(-2));
  if (b.dim() > 1) s.push_back(b.size(-1));
  return reshape_to(mm_impl("matmul", a2, b2, false, false), s);
}

Tensor matmul_t(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, SourceLocation site) {
  const SiteScope site_scope(site);
  check_operands("matmul_t", a, b);
  if (a.dim() < 2 || b.dim() < 2)
    throw InvalidArgument(fmt::format("matmul_t: a {} and b {}: both need at least 2 dims, but {} has {} (use matmul or "
                                      "reshape for vectors)",
                                      a.shape(), b.shape(), a.dim() < 2 ? "a" : "b", a.dim() < 2 ? a.dim() : b.dim()));
  const std::int64_t ka = transpose_a ? a.size(-2) : a.size(-1);
  const std::int64_t kb = transpose_b ? b.size(-1) : b.size(-2);
  if (ka != kb)
    throw InvalidArgument(fmt::format("matmul_t: a {} (transpose_a = {}) and b {} (transpose_b = {}) have mismatched inner "
                                      "dims (op(a).size(-1) = {}, op(b).size(-2) = {}; expected equal)",
                                      a.shape(), transpose_a, b.shape(), transpose_b, ka, kb));
  return mm_impl("matmul_t", a, b, transpose_a, transpose_b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, SourceLocation site) {
  const SiteScope site_scope(site);
  check_floating("linear", "x", x);
  check_floating("linear", "weight", weight);
  check_same_dtype("linear", "x", x, "weight", weight);
  if (weight.dim() != 2)
    throw InvalidArgument(fmt::format("linear: weight has shape {}; expected 2 dims [out_features, in_features]",
                                      weight.shape()));
  if (x.dim() < 1 || x.size(-1) != weight.size(1))
    throw InvalidArgument(fmt::format("linear: x of shape {} and weight of shape {} do not fit (expected x.size(-1) = "
                                      "in_features = {})", x.shape(), weight.shape(), weight.size(1)));
  if (bias.defined()) {
    check_same_dtype("linear", "x", x, "bias", bias);
    if (bias.shape() != Shape{weight.size(0)})
      throw InvalidArgument(fmt::format("linear: bias has shape {}; expected [{}] (out_features of weight {})",
                                        bias.shape(), weight.size(0), weight.shape()));
  }
  Tensor y = x.dim() == 1 ? reshape(matmul_t(reshape(x, {1, x.size(0)}), weight, false, true), {weight.size(0)})
                          : matmul_t(x, weight, false, true);
  return bias.defined() ? add(y, bias) : y;
}

}  // namespace tapegrad
