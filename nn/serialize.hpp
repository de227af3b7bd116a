// SPDX-License-Identifier: MIT
#pragma once
// Tensors as JSON, with exact round trip: {"shape": [2, 3], "dtype": "float32", "values": [...]}.
// Values are written as JSON numbers in the shortest form that reads back to the same double (and a
// float converts to double exactly, so float32 values also come back bit-identical); NaN and
// infinities, which JSON cannot hold, are written as the strings "nan", "inf" and "-inf".
// Python reads them back with float(v).
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

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

namespace detail {
// Why parse_json failed, with where it was, for the loaders to word their errors.
struct JsonParseFailure {
  enum class Kind { Syntax, NumberOverflow, DuplicateKey } kind = Kind::Syntax;
  std::size_t position = 0;  // byte offset of the failure (Syntax, NumberOverflow)
  std::string token;         // the number that overflows, or the key that appears twice
  std::string where;         // path of the value being read: model["0.bias"]["values"][2]
  std::string top_key;       // the key being read in the outermost object
  bool at_top = false;       // the duplicate key is one of the outermost object's
  std::string what;          // nlohmann's message (Syntax, NumberOverflow)
};
// Builds `out` as nlohmann::json::parse does, but knows where it is, so a failure (a number that
// does not fit in a double, such as 1e400, which nlohmann refuses with out_of_range) can be named;
// with reject_duplicate_keys a key that appears twice in an object fails too (parse keeps the last).
std::optional<JsonParseFailure> parse_json(std::string_view text, nlohmann::json& out, bool reject_duplicate_keys);
}  // namespace detail

}  // namespace tapegrad::nn
