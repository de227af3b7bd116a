// SPDX-License-Identifier: MIT
#pragma once
// Checkpoints: a module's parameters and buffers (and optionally an optimiser's state) as JSON.
//
//   {"format": "tapegrad-checkpoint", "version": 1,
//    "model": {"0.weight": {"shape": [16, 4], "dtype": "float32", "values": [...]}, ...},
//    "rng": {"1": [w0, w1, w2, w3], ...},                 (only if the model has Dropout layers)
//    "optimizer": {"type": "Adam", "lr": ..., "state": [...]},          (optimizer only if saved)
//    "scheduler": {"type": "StepLR", "last_epoch": ..., ...},            (only if saved with one)
//    "batch_iterator": {"epochs": ..., "generator": [...], ...}}         (only if saved with one)
//
// "rng" holds each Dropout layer's random stream (Generator::state(), keyed by the layer's
// name), so training resumed from a checkpoint draws the same masks as an uninterrupted run. It
// sits outside "model", which stays a plain PyTorch state_dict. A checkpoint without it loads
// and leaves the streams as they are.
//
// Keys are PyTorch's state_dict names, so a checkpoint of an MLP loads into the equivalent
// torch.nn.Sequential with a few lines of Python (README). Values round-trip exactly.
//
// "scheduler" and "batch_iterator" (a learning-rate schedule's and a BatchIterator's state) make a
// resumed run exact: with the optimiser, the Dropout streams, the schedule and the shuffling all
// restored, 10 epochs + save + load + 10 epochs equal 20 uninterrupted epochs bit for bit. A
// checkpoint without them loads and leaves the schedule and the iterator as they are.
//
// save() is atomic: it writes the whole file under a temporary name ".<file>.tmp.<pid>.<6 chars>"
// in the same directory, flushes it to disk and renames it over `path`, so a crash or a full disk
// leaves the previous checkpoint in place, never a truncated one. The file gets mode
// 0666 & ~umask, as fopen or std::ofstream would create it. A save also removes temporaries of
// the same `path` that crashed saves left behind (see remove_stale_temporaries in checkpoint.cpp
// for how a live writer's temporary is told apart).
// load() parses and validates everything first (format, version, every key present and no extra
// ones, shapes, dtypes, values, the optimiser's, scheduler's and iterator's state) and only then
// copies the values in, so a failed load leaves the model, the optimiser, the Dropout streams,
// the scheduler and the iterator exactly as they were. Every failure is a CheckpointError that
// starts with "load: '<path>': " and names the entry.
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nn/data.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"
#include "nn/serialize.hpp"

namespace tapegrad::nn {

inline constexpr int kCheckpointVersion = 1;

nlohmann::json state_dict(const Module& module);            // {"name": tensor json, ...}
void load_state_dict(Module& module, const nlohmann::json& state);  // strict: same keys, shapes, dtypes

// Training state saved and restored next to the optimiser; each may be left out.
struct CheckpointExtras {
  LRScheduler* scheduler = nullptr;
  BatchIterator* batches = nullptr;
};

void save(const Module& module, const std::string& path);
void save(const Module& module, const Optimizer& optimizer, const std::string& path, const CheckpointExtras& extras = {});
void load(Module& module, const std::string& path);
void load(Module& module, Optimizer& optimizer, const std::string& path, const CheckpointExtras& extras = {});

// Writes `text` to `path` atomically (temporary file in the same directory, fsync, rename), with
// mode 0666 & ~umask, after removing temporaries of `path` left by crashed writers.
void write_file_atomically(const std::string& path, const std::string& text);
// The same for bytes given in pieces written one after another (a binary header, then each
// tensor's raw bytes, with no joined copy); `who` names the caller's function in errors.
void write_file_atomically(const std::string& path, std::span<const std::span<const char>> pieces,
                           const char* who = "save");

namespace detail {
// Dropout's random streams, shared with the safetensors checkpoints: {"<module name>": [w0, w1,
// w2, w3]}; parse_rng_state checks an entry against the module's generators (every stream
// present, none extra, 4 unsigned words, not all zero) and returns them in named_generators()
// order without changing anything; commit_rng_state installs them.
nlohmann::json rng_state(const Module& module);
std::vector<Generator::State> parse_rng_state(Module& module, const nlohmann::json& rng);
void commit_rng_state(Module& module, const std::vector<Generator::State>& states);

// Test hook: when set, called with the number of bytes written so far before each chunk; throwing
// from it simulates a failed write (a full disk) in the middle of a save.
extern void (*checkpoint_write_hook)(std::size_t bytes_written);
}  // namespace detail

}  // namespace tapegrad::nn
