// SPDX-License-Identifier: MIT
#pragma once
// Reading PyTorch fixtures (tests/parity/fixtures/*.json) and comparing tapegrad tensors with them;
// shared by the parity tests. Tolerance: |tapegrad - torch| <= rtol * max(|torch|, floor).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "testing.hpp"

namespace tapegrad::parity {

using json = nlohmann::json;

inline const std::filesystem::path kFixtureDir = std::filesystem::path(TAPEGRAD_SOURCE_DIR) / "tests" / "parity" / "fixtures";

struct Tolerance {
  double rtol;
  double floor;
};
inline Tolerance tolerance(DType d) { return d == kFloat64 ? Tolerance{1e-10, 1e-4} : Tolerance{1e-5, 1e-1}; }

// ---- reading fixtures ----
inline double number(const json& v) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    throw std::runtime_error("fixture: unknown number string \"" + s + "\"");
  }
  return v.get<double>();
}

inline DType parse_dtype(const std::string& s) {
  if (s == "float64") return kFloat64;
  if (s == "float32") return kFloat32;
  if (s == "int64") return kInt64;
  if (s == "bool") return kBool;
  throw std::runtime_error("fixture: unknown dtype \"" + s + "\"");
}

inline Shape parse_shape(const json& j) { return Shape(j.at("shape").get<std::vector<std::int64_t>>()); }

inline Tensor to_tensor(const json& j) {
  const Shape shape = parse_shape(j);
  const DType dtype = parse_dtype(j.at("dtype").get<std::string>());
  const json& values = j.at("values");
  if (dtype == kInt64) return from_vector(values.get<std::vector<std::int64_t>>(), shape);
  if (dtype == kBool) {  // written as 0.0 / 1.0
    std::vector<bool> b;
    for (const json& x : values) b.push_back(number(x) != 0.0);
    return from_vector(b, shape);
  }
  std::vector<double> v;
  v.reserve(values.size());
  for (const json& x : values) v.push_back(number(x));
  return from_vector(v, shape, dtype);
}

inline std::vector<json> load_cases(const std::string& file) {
  const auto path = kFixtureDir / file;
  INFO("fixture file " << path.string() << " (regenerate: /usr/bin/python3 tests/parity/make_fixtures.py)");
  std::ifstream in(path);
  REQUIRE(in.good());
  const json all = json::parse(in);
  REQUIRE(all.is_array());
  REQUIRE(!all.empty());
  return all.get<std::vector<json>>();
}

// ---- comparing ----
inline std::string index_str(const Shape& shape, std::int64_t flat) {
  std::vector<std::int64_t> idx(static_cast<std::size_t>(shape.rank()));
  for (int d = shape.rank() - 1; d >= 0; --d) {
    idx[static_cast<std::size_t>(d)] = flat % shape[d];
    flat /= shape[d];
  }
  return fmt::format("[{}]", fmt::join(idx, ", "));
}

inline bool agrees(double a, double b, Tolerance tol) {
  if (std::isnan(b)) return std::isnan(a);
  if (std::isinf(b) || std::isinf(a) || std::isnan(a)) return a == b;
  return std::abs(a - b) <= tol.rtol * std::max(std::abs(b), tol.floor);
}

// Appends one line per mismatching element of `what` (the first few, then a count) to `why`.
inline void compare(const std::string& what, const Tensor& actual, const json& expected, std::string& why,
                    std::optional<Tolerance> tol_override = std::nullopt) {
  const Shape shape = parse_shape(expected);
  const DType dtype = parse_dtype(expected.at("dtype").get<std::string>());
  if (!actual.defined()) {
    why += fmt::format("  {}: tapegrad gave no tensor (torch: shape {})\n", what, shape);
    return;
  }
  if (actual.shape() != shape || actual.dtype() != dtype) {
    why += fmt::format("  {}: tapegrad shape {} {} vs torch {} {}\n", what, actual.shape(), dtype_name(actual.dtype()),
                       shape, dtype_name(dtype));
    return;
  }
  const Tolerance tol = tol_override ? *tol_override : tolerance(dtype);
  const std::vector<double> a = actual.to_vector();
  const json& b = expected.at("values");
  int bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = number(b[i]);
    if (agrees(a[i], e, tol)) continue;
    if (++bad <= 4)
      why += fmt::format("  {}{} (element {}): tapegrad {:.17g} vs torch {:.17g} (|diff| {:.3g}, allowed {:.3g})\n",
                         what, index_str(shape, static_cast<std::int64_t>(i)), i, a[i], e, std::abs(a[i] - e),
                         tol.rtol * std::max(std::abs(e), tol.floor));
  }
  if (bad > 4) why += fmt::format("  {}: {} mismatching elements of {} in all\n", what, bad, a.size());
}

}  // namespace tapegrad::parity
