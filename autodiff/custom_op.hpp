// SPDX-License-Identifier: MIT
#pragma once
// User-defined ops, like torch.autograd.Function: a forward and a VJP, recorded on the tape like
// a built-in op.
//
//   // softplus(x) = log(1 + e^x)      vjp: dx = g * sigmoid(x)
//   Tensor my_softplus(const Tensor& x) {   // tapegrad::softplus exists; a demo
//     return custom_op("my_softplus", x,
//         [](const Tensor& x) { return log1p(exp(x)); },
//         [](const Tensor& x, const Tensor& g) { return g * sigmoid(x); });
//   }
//
// forward runs without recording (its inner ops are not on the tape); vjp receives the inputs,
// the output and the upstream gradient g, and returns one gradient per input (shape of that
// input; an undefined Tensor means zero). Write vjp with tapegrad ops and second derivatives
// (create_graph, gradgradcheck, hessian) work through the custom op too.
//
// Details:
//   - the op is one node on the tape, labelled `name` (interned); it is recorded only when grad
//     mode is on and some input requires grad, as for built-in ops
//   - the output is always a fresh handle (forward may return one of its inputs or a tensor the
//     caller holds; the result shares that storage but not its graph or requires_grad)
//   - `out` in vjp is the saved output, safe to use in the VJP (and differentiable under
//     create_graph); the inputs are kept alive by the node until it is released
//   - a non-floating output (a mask, indices) is returned without recording
//   - `site` is the caller's file:line (filled in by the compiler), as for built-in ops: traces,
//     anomaly errors and check_tape name it, and errors thrown during the call end with it
//   - mistakes throw: empty callables or undefined inputs (InvalidArgument, at the call), a vjp
//     returning the wrong number of gradients (RuntimeError, at backward, naming the op)
#include <functional>
#include <string>
#include <vector>

#include "autodiff/tape.hpp"

namespace tapegrad {

using CustomForward = std::function<Tensor(const std::vector<Tensor>& inputs)>;
using CustomVjp = std::function<Grads(const std::vector<Tensor>& inputs, const Tensor& out, const Tensor& g)>;

Tensor custom_op(const std::string& name, const std::vector<Tensor>& inputs, const CustomForward& forward,
                 const CustomVjp& vjp, SourceLocation site = SourceLocation::current());

// One input: forward(x), vjp(x, g) -> dx.
Tensor custom_op(const std::string& name, const Tensor& x, const std::function<Tensor(const Tensor&)>& forward,
                 const std::function<Tensor(const Tensor& x, const Tensor& g)>& vjp,
                 SourceLocation site = SourceLocation::current());

// A stable C string for a runtime name (tape nodes keep const char* labels).
const char* intern_name(const std::string& name);

}  // namespace tapegrad
