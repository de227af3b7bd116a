// SPDX-License-Identifier: MIT
#pragma once
// tapegrad: a small reverse-mode automatic differentiation library. One include for everything.
#include "autodiff/check.hpp"
#include "autodiff/dtype.hpp"
#include "autodiff/error.hpp"
#include "autodiff/generator.hpp"
#include "autodiff/shape.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"
#include "ops/elementwise.hpp"
#include "autodiff/custom_op.hpp"
#include "autodiff/gradcheck.hpp"
#include "ops/linalg.hpp"
#include "ops/reduce.hpp"
#include "ops/shape.hpp"
#include "ops/softmax.hpp"
#include "ops/loss.hpp"
#include "nn/nn.hpp"
