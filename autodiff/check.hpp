// SPDX-License-Identifier: MIT
#pragma once
// Validation helpers every op calls in forward. They throw InvalidArgument with a message that
// names the op, the argument, what it got and what was expected.
#include "autodiff/tensor.hpp"

namespace tapegrad {

void check_defined(const char* op, const char* name, const Tensor& t);
// Defined and float32/float64.
void check_floating(const char* op, const char* name, const Tensor& t);
// Both defined with the same dtype; returns it. No silent casts: the message says to use to().
DType check_same_dtype(const char* op, const char* a_name, const Tensor& a, const char* b_name, const Tensor& b);
// Wraps a negative dim (-1 is the last) and checks it is in range; returns it in [0, rank).
// As in PyTorch, a rank-0 tensor accepts dim 0 and -1.
int check_dim(const char* op, const char* name, const Tensor& t, int dim);
// Same for an insertion position (unsqueeze), which ranges over [0, rank].
int check_insert_dim(const char* op, const char* name, const Tensor& t, int dim);
void check_not_empty(const char* op, const char* name, const Tensor& t);
// NumPy broadcasting: align trailing dims; sizes must match or be 1.
Shape broadcast_shapes(const char* op, const char* a_name, const Shape& a, const char* b_name, const Shape& b);

}  // namespace tapegrad
