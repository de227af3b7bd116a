// SPDX-License-Identifier: MIT
#pragma once
// Binary checkpoints in the safetensors format (https://github.com/huggingface/safetensors), the
// format PyTorch users exchange weights in:
//
//   8 bytes     N, the header's length, unsigned little-endian
//   N bytes     JSON header: {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//               ..., "__metadata__": {"<key>": "<string value>", ...}}   (padded with spaces)
//   rest        the tensors' raw little-endian bytes, offsets relative to the end of the header
//
// Written: F32, F64, I64, BOOL. Read: those, and F16/BF16 widened to float32.
//
// save_* is atomic (temporary file in the same directory, fsync, rename, as nn::save). read/load
// validate the whole file (header length within the file, JSON, dtypes, shapes against byte counts,
// offsets inside the data area and non-overlapping, names present and none extra) before copying
// anything into a module, so a bad file throws CheckpointError naming the file and the entry and
// leaves the module as it was.
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
// companion file companion_path(path).
void save_safetensors(const Module& module, const Optimizer& optimizer, const std::string& path,
                      const CheckpointExtras& extras = {});
void load_safetensors(Module& module, Optimizer& optimizer, const std::string& path, const CheckpointExtras& extras = {});
std::string safetensors_companion_path(const std::string& path);

}  // namespace tapegrad::nn
