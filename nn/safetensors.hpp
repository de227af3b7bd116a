// SPDX-License-Identifier: MIT
#pragma once
// Binary checkpoints in the safetensors format (https://github.com/huggingface/safetensors), the
// format PyTorch users exchange weights in:
//
//   8 bytes     N, the header's length, unsigned little-endian
//   N bytes     JSON header: {"__metadata__": {"<key>": "<string>", ...},
//                             "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
//               padded with spaces so that the data starts at a multiple of 8 (8 + N = 0 mod 8)
//   rest        the tensors' raw little-endian bytes, row-major; offsets relative to the end of the header
//
// Written: F32, F64, I64, BOOL, as the reference writer writes them: compact JSON, "__metadata__"
// first (left out when empty, keys sorted), then the tensors in data order, sorted by dtype
// alignment descending (I64, F64, F32, BOOL) and then by name, each as {"dtype", "shape",
// "data_offsets"}. A file holds 8 + N + the raw bytes, nothing else. Read: those, and F16/BF16
// widened exactly to float32 (NaN payloads, infinities and subnormals kept). Ranks 0 to 4.
// The bytes are copied as they lie in memory: little-endian hosts only (a static_assert).
//
// save_* is atomic (a temporary file in the same directory, fsync, rename, mode 0666 & ~umask,
// stale temporaries of crashed saves removed: write_file_atomically, as nn::save). read/load read
// the file with one read() and validate everything before copying anything: the header length
// (>= 1, at most the format's 100,000,000-byte cap, inside the file), the header (UTF-8 JSON, no
// NUL byte, an object, no name or field twice), every entry (dtype, shape of at most 4 sizes,
// data_offsets two integers with begin <= end inside the data area, end - begin = numel *
// itemsize without overflow), the layout (the reference reader's rule: taken by offset, the
// tensors cover the data area from 0 to the end of the file exactly: no overlap, no hole, no
// trailing byte), __metadata__ (strings to strings) and BOOL bytes (0 or 1). Loading a module
// is strict: the file's names are exactly the module's state() names (the error lists the missing
// and the extra ones), with the same shapes and dtypes (an F16/BF16 tensor counts as float32).
// Every failure is a CheckpointError "<function>: '<file>': <entry>: <what, and what was
// expected>" (function = load_safetensors or read_safetensors), and leaves the module, the
// optimiser, the scheduler, the iterator and the Dropout streams exactly as they were.
// Saving refuses an undefined tensor, a tensor named "__metadata__" and names or metadata that are not
// UTF-8 (InvalidArgument); an I/O failure is a RuntimeError that leaves the previous file in place.
//
// Training state: save_safetensors(module, optimizer, path, extras) writes the model file at
// `path` as save_safetensors(module, path) does (a plain state_dict that
// safetensors.torch.load_file + torch's load_state_dict(strict=True) accept) with one metadata
// entry, "tapegrad_checkpoint_id" (128 random bits), and the companion file
// safetensors_companion_path(path) ("<path without .safetensors>.train.safetensors"), holding:
//   tensors       the optimiser's state tensors, named by their place in its state_dict:
//                 "optimizer.state.<i>.exp_avg", ".exp_avg_sq", ".max_exp_avg_sq", ".momentum_buffer"
//   __metadata__  "format": "tapegrad-training-state", "version": "1", "tapegrad_checkpoint_id",
//                 "optimizer" (Optimizer::state_dict() as JSON, each tensor as {"tensor": "<name>"}),
//                 "rng" (the Dropout streams, if any), "scheduler" and "batch_iterator" (their
//                 state_dict() JSON, if given)
// The companion is written first and the model file last: a crash between the two leaves the
// previous model file next to the new companion, and load refuses the pair (the ids differ; the
// model file alone still loads with load_safetensors(module, path)). load_safetensors(module,
// optimizer, path, extras) validates both files completely before changing anything. A plain
// save_safetensors(module, path) writes no metadata and no companion (a model has no Dropout
// stream in a PyTorch state_dict either).
#include <map>
#include <string>

#include "autodiff/tensor.hpp"
#include "nn/checkpoint.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"

namespace tapegrad::nn {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;  // the header's "__metadata__" (string to string)
};

// Plain tensor maps, as safetensors.torch.save_file / load_file.
void save_safetensors(const std::map<std::string, Tensor>& tensors, const std::string& path,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile read_safetensors(const std::string& path);
std::map<std::string, Tensor> load_safetensors(const std::string& path);

// A module's parameters and buffers under their state_dict names: the file loads in Python with
// safetensors.torch.load_file into the equivalent torch.nn module's load_state_dict.
void save_safetensors(const Module& module, const std::string& path);
void load_safetensors(Module& module, const std::string& path);  // strict: same names, shapes, dtypes

// With training state (optimiser, and optionally scheduler and batch iterator, plus the Dropout
// streams), so that save -> load -> continue equals an uninterrupted run bit for bit. The model
// file at `path` stays a plain state_dict that PyTorch loads; the training state goes to the
// companion file safetensors_companion_path(path) (above).
void save_safetensors(const Module& module, const Optimizer& optimizer, const std::string& path,
                      const CheckpointExtras& extras = {});
void load_safetensors(Module& module, Optimizer& optimizer, const std::string& path, const CheckpointExtras& extras = {});
std::string safetensors_companion_path(const std::string& path);

}  // namespace tapegrad::nn
