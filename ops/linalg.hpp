// SPDX-License-Identifier: MIT
#pragma once
// matmul with torch.matmul's semantics:
//   1-D . 1-D -> scalar (dot); 2-D . 2-D -> matrix product; 1-D a is treated as [1, k] and
//   1-D b as [k, 1], the added dim removed from the result; batch dims (all but the last two)
//   broadcast, up to rank 4.
//   vjp: dA = g B^T, dB = A^T g, each summed back over broadcast batch dims.
//   saved: A and B (the promoted vectors are recorded views that save nothing)
#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

Tensor matmul(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());

// op(a) @ op(b) with op(x) = x^T (of the last two dims) when its flag is set, else x; both ranks
// >= 2, batch dims broadcast as in matmul. The transpose is never materialised: the kernel
// multiplies through Eigen's .transpose() of the mapped storage. matmul's VJP is written with it
// (dA = g B^T = matmul_t(g, B, false, true), dB = A^T g = matmul_t(A, g, true, false)), and so is
// its own VJP, so second derivatives stay cheap. Also the fast way to write x W^T (nn.Linear).
//   C = op_a(A) op_b(B)
//   vjp   dA = ta ? op_b(B) g^T : g op_b(B)^T      dB = tb ? g^T op_a(A) : op_a(A)^T g
//         (then summed over broadcast batch dims); saved: A and B
Tensor matmul_t(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, SourceLocation site = SourceLocation::current());

// torch.nn.functional.linear: y = x W^T + b for x [..., in], weight [out, in] (PyTorch's layout),
// bias [out] or undefined. Written as matmul_t(x, W, false, true) + b, so W is never transposed
// in memory; its VJP is that of matmul_t and add (dx = g W, dW = g^T x, db = g summed over rows).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), SourceLocation site = SourceLocation::current());

}  // namespace tapegrad
