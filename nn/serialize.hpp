// SPDX-License-Identifier: MIT
#pragma once
// Tensors as JSON, with exact round trip: {"shape": [2, 3], "dtype": "float32", "values": [...]}.
// Values are written as JSON numbers in the shortest form that reads back to the same double (and a
// float converts to double exactly, so float32 values also come back bit-identical); NaN and
// infinities, which JSON cannot hold, are written as the strings "nan", "inf" and "-inf".
// Python reads them back with float(v).
#include <string>

#include <nlohmann/json.hpp>

#include "autodiff/tensor.hpp"

namespace tapegrad::nn {

// A checkpoint or state that cannot be loaded: names the key and what is wrong.
class CheckpointError : public RuntimeError {
 public:
  explicit CheckpointError(const std::string& what) : RuntimeError(what) {}
};

nlohmann::json tensor_to_json(const Tensor& t);
// Parses and validates (shape, dtype, number of values, every value a number or a non-finite
// string); `key` names the entry in error messages.
Tensor tensor_from_json(const nlohmann::json& j, const std::string& key);

}  // namespace tapegrad::nn
