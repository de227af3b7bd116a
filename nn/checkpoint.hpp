// SPDX-License-Identifier: MIT
#pragma once
// Checkpoints: a module's parameters and buffers (and optionally an optimiser's state) as JSON.
//
//   {"format": "tapegrad-checkpoint", "version": 1,
//    "model": {"0.weight": {"shape": [16, 4], "dtype": "float32", "values": [...]}, ...},
//    "rng": {"1": [w0, w1, w2, w3], ...},                 (only if the model has Dropout layers)
//    "optimizer": {"type": "Adam", "lr": ..., "state": [...]}}          (optimizer only if saved)
//
// "rng" holds each Dropout layer's random stream (Generator::state(), keyed by the layer's
// name), so training resumed from a checkpoint draws the same masks as an uninterrupted run. It
// sits outside "model", which stays a plain PyTorch state_dict. A checkpoint without it loads
// and leaves the streams as they are.
//
// Keys are PyTorch's state_dict names, so a checkpoint of an MLP loads into the equivalent
// torch.nn.Sequential with a few lines of Python (README). Values round-trip exactly.
//
// save() is atomic: it writes the whole file under a temporary name in the same directory, flushes
// it to disk and renames it over `path`, so a crash or a full disk leaves the previous checkpoint
// in place, never a truncated one.
// load() parses and validates everything first (format, version, every key present and no extra
// ones, shapes, dtypes, values, the optimiser's state) and only then copies the values in, so a
// failed load leaves the model and the optimiser exactly as they were.
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/serialize.hpp"

namespace tapegrad::nn {

inline constexpr int kCheckpointVersion = 1;

nlohmann::json state_dict(const Module& module);            // {"name": tensor json, ...}
void load_state_dict(Module& module, const nlohmann::json& state);  // strict: same keys, shapes, dtypes

void save(const Module& module, const std::string& path);
void save(const Module& module, const Optimizer& optimizer, const std::string& path);
void load(Module& module, const std::string& path);
void load(Module& module, Optimizer& optimizer, const std::string& path);

// Writes `text` to `path` atomically (temporary file in the same directory, fsync, rename).
void write_file_atomically(const std::string& path, const std::string& text);

namespace detail {
// Test hook: when set, called with the number of bytes written so far before each chunk; throwing
// from it simulates a failed write (a full disk) in the middle of a save.
extern void (*checkpoint_write_hook)(std::size_t bytes_written);
}  // namespace detail

}  // namespace tapegrad::nn
