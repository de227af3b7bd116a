// SPDX-License-Identifier: MIT
#include "nn/serialize.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tapegrad::nn {

nlohmann::json tensor_to_json(const Tensor& t) {
  nlohmann::json j;
  j["shape"] = std::vector<std::int64_t>(t.shape().begin(), t.shape().end());
  j["dtype"] = std::string(dtype_name(t.dtype()));
  nlohmann::json values = nlohmann::json::array();
  auto put = [&](double v) {
    if (std::isfinite(v)) values.push_back(v);
    else values.push_back(std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
  };
  dispatch_all(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      if constexpr (std::is_floating_point_v<T>) put(static_cast<double>(p[i]));
      else if constexpr (std::is_same_v<T, bool>) values.push_back(p[i]);
      else values.push_back(p[i]);
    }
  });
  j["values"] = std::move(values);
  return j;
}

Tensor tensor_from_json(const nlohmann::json& j, const std::string& key) {
  auto fail = [&](const std::string& what) -> CheckpointError {
    return CheckpointError(fmt::format("'{}': {}", key, what));
  };
  if (!j.is_object()) throw fail("expected an object with shape, dtype and values");
  for (const char* field : {"shape", "dtype", "values"})
    if (!j.contains(field)) throw fail(fmt::format("missing field '{}'", field));
  const auto& js = j["shape"];
  if (!js.is_array() || js.size() > 4) throw fail("shape must be an array of at most 4 sizes");
  // Sizes checked against the number of values as they are multiplied, so a shape such as
  // [2^32, 2^32] cannot overflow the element count.
  const auto& jv_count = j["values"];
  const std::uint64_t n_values = jv_count.is_array() ? jv_count.size() : 0;
  std::vector<std::int64_t> dims;
  std::uint64_t count = 1;
  for (const auto& d : js) {
    if (!d.is_number_unsigned() || d.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw fail(fmt::format("shape {} has an invalid size (expected integers >= 0)", js.dump()));
    const std::uint64_t size = d.get<std::uint64_t>();
    if (size == 0) count = 0;
    else if (count > n_values / size)  // count * size > n_values, and no overflow in testing it
      throw fail(fmt::format("has {} values for shape {} (more expected)", n_values, js.dump()));
    else count *= size;
    dims.push_back(static_cast<std::int64_t>(size));
  }
  const Shape shape(dims);
  if (!j["dtype"].is_string()) throw fail("dtype must be a string");
  const std::string dt = j["dtype"].get<std::string>();
  DType dtype;
  if (dt == "float32") dtype = kFloat32;
  else if (dt == "float64") dtype = kFloat64;
  else if (dt == "int64") dtype = kInt64;
  else if (dt == "bool") dtype = kBool;
  else throw fail(fmt::format("unknown dtype '{}' (expected float32, float64, int64 or bool)", dt));
  const auto& jv = j["values"];
  if (!jv.is_array()) throw fail("values must be an array");
  if (static_cast<std::int64_t>(jv.size()) != shape.numel())
    throw fail(fmt::format("has {} values for shape {} ({} expected)", jv.size(), shape, shape.numel()));
  Tensor t = Tensor::empty(shape, dtype);
  dispatch_all(dtype, [&]<class T>() {
    T* p = t.mutable_data<T>();
    for (std::int64_t i = 0; i < shape.numel(); ++i) {
      const auto& v = jv[static_cast<std::size_t>(i)];
      if constexpr (std::is_floating_point_v<T>) {
        double x;
        if (v.is_number()) x = v.get<double>();
        else if (v.is_string() && v.get<std::string>() == "nan") x = std::numeric_limits<double>::quiet_NaN();
        else if (v.is_string() && v.get<std::string>() == "inf") x = std::numeric_limits<double>::infinity();
        else if (v.is_string() && v.get<std::string>() == "-inf") x = -std::numeric_limits<double>::infinity();
        else throw fail(fmt::format("value {} is {}; expected a number", i, v.dump()));
        if (std::isfinite(x) && std::abs(x) > static_cast<double>(std::numeric_limits<T>::max()))
          throw fail(fmt::format("value {} = {} does not fit in {}", i, x, dt));
        p[i] = static_cast<T>(x);
      } else if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean()) throw fail(fmt::format("value {} is {}; expected true or false", i, v.dump()));
        p[i] = v.get<bool>();
      } else {
        const bool fits = v.is_number_integer() &&
                          !(v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<T>::max()));
        if (!fits) throw fail(fmt::format("value {} is {}; expected an integer that fits in int64", i, v.dump()));
        p[i] = v.get<T>();
      }
    }
  });
  return t;
}

namespace detail {
namespace {

class LocatingParser final : public nlohmann::json_sax<nlohmann::json> {
 public:
  using json = nlohmann::json;
  LocatingParser(json& root, bool reject_duplicate_keys) : root_(root), reject_duplicates_(reject_duplicate_keys) {}

  bool null() override { return put(json(nullptr)); }
  bool boolean(bool v) override { return put(json(v)); }
  bool number_integer(number_integer_t v) override { return put(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return put(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return put(json(v)); }
  bool string(string_t& v) override { return put(json(std::move(v))); }
  bool binary(binary_t& v) override { return put(json::binary(std::move(v))); }
  bool start_object(std::size_t) override { return open(json::object()); }
  bool key(string_t& k) override {
    if (reject_duplicates_ && frames_.back().value->contains(k)) {
      failure_ = located(JsonParseFailure::Kind::DuplicateKey);
      failure_->token = k;
      failure_->at_top = frames_.size() == 1;
      return false;
    }
    frames_.back().key = k;
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t position, const std::string& token, const json::exception& e) override {
    // out_of_range.406: number overflow
    failure_ = located(e.id == 406 ? JsonParseFailure::Kind::NumberOverflow : JsonParseFailure::Kind::Syntax);
    failure_->position = position;
    failure_->token = token;
    failure_->what = e.what();
    return false;
  }
  const std::optional<JsonParseFailure>& failure() const { return failure_; }

 private:
  struct Frame {
    json* value;
    std::string key;  // objects: the last key read
  };

  json* insert(json&& v) {
    if (frames_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& top = frames_.back();
    if (top.value->is_array()) {
      top.value->push_back(std::move(v));
      return &top.value->back();
    }
    json& slot = (*top.value)[top.key];
    slot = std::move(v);
    return &slot;
  }
  bool put(json&& v) {
    insert(std::move(v));
    return true;
  }
  bool open(json&& v) {
    frames_.push_back({insert(std::move(v)), {}});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return true;
  }
  JsonParseFailure located(JsonParseFailure::Kind kind) const {
    JsonParseFailure f;
    f.kind = kind;
    f.where = where();
    if (!frames_.empty()) f.top_key = frames_[0].key;
    return f;
  }
  // The path of the value being read: an array's innermost index is the next element.
  std::string where() const {
    std::string out;
    for (std::size_t i = 0; i < frames_.size(); ++i) {
      const json& v = *frames_[i].value;
      if (v.is_array()) out += fmt::format("[{}]", i + 1 == frames_.size() ? v.size() : v.size() - 1);
      else if (i == 0) out += frames_[i].key;
      else out += fmt::format("[\"{}\"]", frames_[i].key);
    }
    return out.empty() ? "the top level" : out;
  }

  json& root_;
  bool reject_duplicates_;
  std::vector<Frame> frames_;
  std::optional<JsonParseFailure> failure_;
};

}  // namespace

std::optional<JsonParseFailure> parse_json(std::string_view text, nlohmann::json& out, bool reject_duplicate_keys) {
  LocatingParser parser(out, reject_duplicate_keys);
  if (nlohmann::json::sax_parse(text.begin(), text.end(), &parser)) return std::nullopt;
  if (parser.failure()) return parser.failure();
  JsonParseFailure stopped;  // not reached: every stop records why
  stopped.what = "the JSON parser stopped";
  return stopped;
}

}  // namespace detail

}  // namespace tapegrad::nn
