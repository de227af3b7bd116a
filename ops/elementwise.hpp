// SPDX-License-Identifier: MIT
#pragma once
// Elementwise ops with NumPy broadcasting. Every binary op aligns trailing dims (sizes match or
// are 1); its VJP sums the upstream gradient back to each input's shape (sum_to_size).
// Scalars (double) take the tensor's dtype, as Python numbers do in PyTorch.
// `saved:` says what each op's tape node keeps for its VJP (input shapes and dtypes are always
// kept as metadata; an input is kept only when its gradient formula reads it).
#include <string>

#include "autodiff/source_location.hpp"

#include "autodiff/tensor.hpp"

namespace tapegrad {

// ---- broadcasting ----
Tensor broadcast_to(const Tensor& x, const Shape& shape, SourceLocation site = SourceLocation::current());  // vjp: sum_to_size(g, x.shape)   saved: nothing
Tensor sum_to_size(const Tensor& x, const Shape& shape, SourceLocation site = SourceLocation::current());  // vjp: broadcast_to(g, x.shape)   saved: nothing

// ---- binary arithmetic ----
Tensor add(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());        // da = g            db = g        saved: nothing
Tensor sub(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());        // da = g            db = -g       saved: nothing
Tensor mul(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());        // da = g b          db = g a      saved: b if a needs grad, a if b does
Tensor div(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());        // da = g / b        db = -g a / b^2   saved: b; a if b needs grad
Tensor pow(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());        // da = g b a^(b-1)  db = g a^b log a (0 where a = 0, b >= 0)
//   saved: a; b if a needs grad; y if b needs grad
Tensor pow(const Tensor& a, double exponent, SourceLocation site = SourceLocation::current());        // da = g p a^(p-1)  (0 for p = 0)   saved: a (nothing for p = 0)
Tensor maximum(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());    // g to the larger; ties split g/2 each (PyTorch)   saved: a, b
Tensor minimum(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());    // g to the smaller; ties split g/2 each            saved: a, b
Tensor add(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor sub(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor mul(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor div(const Tensor& a, double b, SourceLocation site = SourceLocation::current());

// ---- unary ----
Tensor neg(const Tensor& x, SourceLocation site = SourceLocation::current());       // dx = -g                  saved: nothing
Tensor exp(const Tensor& x, SourceLocation site = SourceLocation::current());       // dx = g y                 saved: y
Tensor log(const Tensor& x, SourceLocation site = SourceLocation::current());       // dx = g / x               saved: x
Tensor log1p(const Tensor& x, SourceLocation site = SourceLocation::current());     // dx = g / (1 + x)         saved: x
Tensor sqrt(const Tensor& x, SourceLocation site = SourceLocation::current());      // dx = g / (2 y)           saved: y
Tensor abs(const Tensor& x, SourceLocation site = SourceLocation::current());       // dx = g sign(x); sign(0) = 0, the subgradient PyTorch picks   saved: x
Tensor sign(const Tensor& x, SourceLocation site = SourceLocation::current());      // -1, 0, 1; gradient 0, nothing recorded
Tensor tanh(const Tensor& x, SourceLocation site = SourceLocation::current());      // dx = g (1 - y^2)         saved: y
Tensor sigmoid(const Tensor& x, SourceLocation site = SourceLocation::current());   // dx = g y (1 - y)         saved: y
Tensor relu(const Tensor& x, SourceLocation site = SourceLocation::current());      // dx = g [x > 0]; at x = 0 the gradient is 0 (PyTorch)
//   saved: y ([y > 0] = [x > 0]; x can be freed). Fused backward (one branch-free pass) without create_graph.
Tensor erf(const Tensor& x, SourceLocation site = SourceLocation::current());       // dx = g 2/sqrt(pi) exp(-x^2)   saved: x
// gelu(x) = x Phi(x) = x/2 (1 + erf(x/sqrt 2))               dx = g (Phi(x) + x phi(x))
// approximate = "tanh": x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)   (PyTorch's two modes)
// saved: x (exact mode; one fused pass for the backward without create_graph). The tanh mode is
// composed from recorded ops (mul, add, tanh), which save what they save.
Tensor gelu(const Tensor& x, const std::string& approximate = "none", SourceLocation site = SourceLocation::current());
// clamp(x, lo, hi) = min(max(x, lo), hi); dx = g [lo <= x <= hi] (bounds inclusive, PyTorch).
// Pass -inf/+inf for a one-sided clamp; lo > hi is an error.   saved: x
Tensor clamp(const Tensor& x, double lo, double hi, SourceLocation site = SourceLocation::current());
Tensor clamp_min(const Tensor& x, double lo, SourceLocation site = SourceLocation::current());
Tensor clamp_max(const Tensor& x, double hi, SourceLocation site = SourceLocation::current());

// ---- selection with masks (mask: bool tensor, broadcast) ----
// where(cond, a, b) = cond ? a : b;  da = where(cond, g, 0)  db = where(cond, 0, g)   saved: cond
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor where(const Tensor& cond, const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor where(const Tensor& cond, double a, const Tensor& b, SourceLocation site = SourceLocation::current());
// masked_fill(x, mask, v): v where mask is true, else x; output has x's shape, mask must
// broadcast to it.  dx = where(mask, 0, g)   (a where: saved: mask)
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value, SourceLocation site = SourceLocation::current());

// ---- comparisons: bool masks, no gradient (PyTorch names) ----
Tensor eq(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor ne(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor lt(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor le(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor gt(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor ge(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor eq(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor ne(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor lt(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor le(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor gt(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor ge(const Tensor& a, double b, SourceLocation site = SourceLocation::current());
Tensor logical_and(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor logical_or(const Tensor& a, const Tensor& b, SourceLocation site = SourceLocation::current());
Tensor logical_not(const Tensor& a, SourceLocation site = SourceLocation::current());
Tensor isnan(const Tensor& x, SourceLocation site = SourceLocation::current());
Tensor isinf(const Tensor& x, SourceLocation site = SourceLocation::current());

// ---- operators ----
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// ---- more unary ops (issue 11) ----
Tensor sin(const Tensor& x, SourceLocation site = SourceLocation::current());       // dx = g cos(x)    saved: x
Tensor cos(const Tensor& x, SourceLocation site = SourceLocation::current());       // dx = -g sin(x)   saved: x
// softplus(x) = log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's
// linear region, which also avoids overflow).    dx = g sigmoid(beta x), g in the linear region.
// beta may be negative (a soft minimum) and threshold any number, as in PyTorch; beta = 0 (a
// division by zero: PyTorch returns inf) and NaN arguments are errors. Below the threshold the
// value is computed as max(beta x, 0) + log1p(exp(-|beta x|)), which does not overflow for a large
// threshold (PyTorch's log1p(exp(beta x)) gives inf there).   saved: x
Tensor softplus(const Tensor& x, double beta = 1.0, double threshold = 20.0, SourceLocation site = SourceLocation::current());
// leaky_relu(x) = x for x > 0, negative_slope x otherwise.   dx = g [x > 0] + negative_slope g [x <= 0];
// at x = 0 the gradient is negative_slope (PyTorch's convention). Any finite slope (negative too,
// as PyTorch); a non-finite slope is an error.   saved: x
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01, SourceLocation site = SourceLocation::current());

}  // namespace tapegrad
