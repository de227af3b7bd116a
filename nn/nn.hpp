// SPDX-License-Identifier: MIT
#pragma once
// tapegrad::nn: modules, layers, initialisers, optimisers, checkpoints and datasets.
#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/safetensors.hpp"
#include "nn/serialize.hpp"
#include "nn/attention.hpp"
