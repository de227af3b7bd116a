// SPDX-License-Identifier: MIT
#include "nn/data.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "nn/serialize.hpp"
#include "ops/shape.hpp"

namespace tapegrad::nn {
namespace {

std::vector<std::string> split_commas(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = line.find(',', start);
    out.push_back(line.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  for (auto& f : out) {  // trim spaces and a trailing \r
    const auto b = f.find_first_not_of(" \t\r");
    const auto e = f.find_last_not_of(" \t\r");
    f = b == std::string::npos ? "" : f.substr(b, e - b + 1);
  }
  return out;
}

bool parse_double(const std::string& s, double& v) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && p == end;
}

// An integer-valued double in [lo, hi] (both exactly representable, below 2^53), so the cast to
// int64 is exact; NaN, infinities and fractions fail.
bool parse_count(const std::string& s, double lo, double hi, std::int64_t& out) {
  double v;
  if (!parse_double(s, v) || !(v >= lo && v <= hi) || v != std::floor(v)) return false;
  out = static_cast<std::int64_t>(v);
  return true;
}

// Rows and labels must agree before anything indexes one by the other.
void check_rows(const char* who, const Dataset& d) {
  if (!d.labels.defined() || d.labels.dim() != 1 || d.labels.dtype() != kInt64)
    throw InvalidArgument(fmt::format("{}: labels must be a 1-d int64 tensor; got {}", who,
                                      d.labels.defined() ? fmt::format("{} {}", dtype_name(d.labels.dtype()), d.labels.shape())
                                                         : "undefined"));
  if (!d.features.defined() || d.features.dim() < 1 || d.features.size(0) != d.labels.numel())
    throw InvalidArgument(fmt::format("{}: features have {} rows but there are {} labels; expected one label per row", who,
                                      d.features.defined() && d.features.dim() >= 1 ? d.features.size(0) : 0,
                                      d.labels.numel()));
}

}  // namespace

Dataset Dataset::subset(const std::vector<std::int64_t>& indices) const {
  std::vector<std::int64_t> idx(indices);
  for (std::int64_t i : idx)
    if (i < 0 || i >= size()) throw InvalidArgument(fmt::format("Dataset::subset: index {} is out of range for {} samples", i, size()));
  const Tensor index = from_vector(idx, Shape{static_cast<std::int64_t>(idx.size())});
  return {index_select(features, 0, index), index_select(labels, 0, index), class_names};
}

Dataset read_csv(const std::string& path, DType dtype) {
  if (!is_floating(dtype)) throw InvalidArgument("read_csv: dtype must be float32 or float64");
  std::ifstream in(path);
  if (!in) throw InvalidArgument(fmt::format("read_csv: cannot open '{}'", path));
  std::string line;
  std::int64_t line_no = 0, declared_n = -1, n_features = -1;
  std::vector<std::string> names;
  std::vector<double> values;
  std::vector<std::int64_t> labels;
  std::int64_t max_label = -1, max_label_line = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto fields = split_commas(line);
    if (line_no == 1) {
      // A header when any field past the second is not a number (class names).
      double tmp;
      bool header = false;
      for (std::size_t k = 2; k < fields.size(); ++k) header = header || !parse_double(fields[k], tmp);
      if (header) {
        // Counts as integers the cast to int64 keeps exactly (1e300 or nan would be undefined).
        constexpr double kMaxCount = 1e15;
        if (fields.size() < 3 || !parse_count(fields[0], 0, kMaxCount, declared_n) ||
            !parse_count(fields[1], 1, kMaxCount, n_features))
          throw InvalidArgument(fmt::format("read_csv: {}:1: header '{}' is not 'n_samples,n_features,class names...' "
                                            "(expected integers 0 <= n_samples <= {:g} and 1 <= n_features <= {:g})",
                                            path, line, kMaxCount, kMaxCount));
        names.assign(fields.begin() + 2, fields.end());
        continue;
      }
    }
    if (n_features < 0) n_features = static_cast<std::int64_t>(fields.size()) - 1;
    if (static_cast<std::int64_t>(fields.size()) != n_features + 1)
      throw InvalidArgument(fmt::format("read_csv: {}:{}: {} columns; expected {} ({} features and the label)", path,
                                        line_no, fields.size(), n_features + 1, n_features));
    for (std::int64_t k = 0; k < n_features; ++k) {
      double v;
      if (!parse_double(fields[static_cast<std::size_t>(k)], v) || !std::isfinite(v))
        throw InvalidArgument(fmt::format("read_csv: {}:{}: column {} is '{}'; expected a finite number", path, line_no,
                                          k + 1, fields[static_cast<std::size_t>(k)]));
      values.push_back(v);
    }
    // The label: an integer in [0, classes) with a header; without one, below 2^53 here (an exact
    // cast) and checked against the class bound once the number of rows is known.
    const std::string& lf = fields.back();
    const double hi = names.empty() ? 9007199254740992.0 : static_cast<double>(names.size()) - 1;
    std::int64_t lab;
    if (!parse_count(lf, 0, hi, lab)) {
      const std::string range = names.empty() ? std::string("an integer >= 0")
                                              : fmt::format("an integer in [0, {}) (the header names {} classes)",
                                                            names.size(), names.size());
      throw InvalidArgument(fmt::format("read_csv: {}:{}: column {}: label '{}' is not {}", path, line_no,
                                        n_features + 1, lf, range));
    }
    labels.push_back(lab);
    if (lab > max_label) {
      max_label = lab;
      max_label_line = line_no;
    }
  }
  const auto n = static_cast<std::int64_t>(labels.size());
  if (n == 0) throw InvalidArgument(fmt::format("read_csv: '{}' has no samples", path));
  if (declared_n >= 0 && declared_n != n)
    throw InvalidArgument(fmt::format("read_csv: {}: the header declares {} samples but the file has {}", path, declared_n, n));
  if (names.empty()) {
    const std::int64_t bound = std::max(kMaxUnnamedClasses, n);
    if (max_label >= bound)
      throw InvalidArgument(fmt::format("read_csv: {}:{}: column {}: label {} would make {} classes for "
                                        "{} rows; without a header, labels must be below max({}, number of rows) = {} "
                                        "(name the classes in a header line 'n_samples,n_features,names...' for more)",
                                        path, max_label_line, n_features + 1, max_label, max_label + 1, n,
                                        kMaxUnnamedClasses, bound));
    for (std::int64_t c = 0; c <= max_label; ++c) names.push_back(std::to_string(c));
  }
  return {from_vector(values, Shape{n, n_features}, dtype), from_vector(labels, Shape{n}), names};
}

void check_finite(const Tensor& t, const std::string& what) {
  if (!t.defined()) throw InvalidArgument(fmt::format("{}: tensor is undefined", what));
  if (!is_floating(t.dtype())) return;
  dispatch_float(t.dtype(), [&]<class T>() {
    const T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(p[i])) {
        const auto idx = unravel_index(t.shape(), i);
        throw InvalidArgument(fmt::format("{}: element [{}] is {}; expected finite values (shape {})", what,
                                          fmt::join(idx, ", "), static_cast<double>(p[i]), t.shape()));
      }
  });
}

std::vector<std::int64_t> permutation(std::int64_t n, Generator& gen) {
  if (n < 0) throw InvalidArgument(fmt::format("permutation: n = {} is negative (expected n >= 0)", n));
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  for (std::int64_t i = n - 1; i > 0; --i)
    std::swap(p[static_cast<std::size_t>(i)], p[gen.below(static_cast<std::uint64_t>(i + 1))]);
  return p;
}

DatasetSplit stratified_split(const Dataset& data, double validation_fraction, double test_fraction, std::uint64_t seed) {
  if (!(validation_fraction >= 0 && test_fraction >= 0 && validation_fraction + test_fraction < 1))
    throw InvalidArgument(fmt::format("stratified_split: validation {} and test {} fractions; expected both >= 0 and "
                                      "a sum below 1", validation_fraction, test_fraction));
  check_rows("stratified_split", data);
  const std::int64_t* lab = data.labels.data<std::int64_t>();
  for (std::int64_t i = 0; i < data.size(); ++i)
    if (lab[i] < 0 || lab[i] >= data.num_classes())
      throw InvalidArgument(fmt::format("stratified_split: labels[{}] = {} is out of range for {} classes (expected 0 <= "
                                        "label < {}; it would be left out of every split)", i, lab[i],
                                        data.num_classes(), data.num_classes()));
  Generator gen(seed);
  std::vector<std::int64_t> train, val, test;
  for (std::int64_t c = 0; c < data.num_classes(); ++c) {
    std::vector<std::int64_t> members;
    for (std::int64_t i = 0; i < data.size(); ++i)
      if (lab[i] == c) members.push_back(i);
    const auto perm = permutation(static_cast<std::int64_t>(members.size()), gen);
    const auto m = static_cast<double>(members.size());
    const auto n_test = static_cast<std::size_t>(std::llround(m * test_fraction));
    const auto n_val = static_cast<std::size_t>(std::llround(m * validation_fraction));
    for (std::size_t k = 0; k < members.size(); ++k) {
      const std::int64_t i = members[static_cast<std::size_t>(perm[k])];
      (k < n_test ? test : k < n_test + n_val ? val : train).push_back(i);
    }
  }
  // Interleave classes: shuffle each split once more so batches are mixed.
  for (auto* s : {&train, &val, &test}) {
    const auto perm = permutation(static_cast<std::int64_t>(s->size()), gen);
    std::vector<std::int64_t> shuffled;
    for (auto k : perm) shuffled.push_back((*s)[static_cast<std::size_t>(k)]);
    *s = std::move(shuffled);
  }
  auto make = [&](const std::vector<std::int64_t>& idx) {
    return idx.empty() ? Dataset{Tensor(), Tensor(), data.class_names} : data.subset(idx);
  };
  return {make(train), make(val), make(test)};
}

void Standardizer::fit(const Tensor& x) {
  if (!x.defined() || x.dim() != 2 || x.size(0) < 1 || !is_floating(x.dtype()))
    throw InvalidArgument(fmt::format("Standardizer::fit: expected floating features [N, F] with N >= 1; got {}",
                                      x.defined() ? fmt::format("{}", x.shape()) : "undefined"));
  check_finite(x, "Standardizer::fit: x");  // one NaN would make that feature's mean and std NaN
  const std::int64_t n = x.size(0), f = x.size(1);
  mean_.assign(static_cast<std::size_t>(f), 0.0);
  std_.assign(static_cast<std::size_t>(f), 0.0);
  const std::vector<double> v = x.to_vector();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < f; ++k) mean_[static_cast<std::size_t>(k)] += v[static_cast<std::size_t>(i * f + k)];
  for (auto& m : mean_) m /= static_cast<double>(n);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < f; ++k) {
      const double d = v[static_cast<std::size_t>(i * f + k)] - mean_[static_cast<std::size_t>(k)];
      std_[static_cast<std::size_t>(k)] += d * d;
    }
  for (auto& s : std_) s = std::sqrt(s / static_cast<double>(n));  // population std, as sklearn's StandardScaler
}

Tensor Standardizer::transform(const Tensor& x) const {
  if (mean_.empty()) throw RuntimeError("Standardizer::transform: call fit() on the training features first");
  if (!x.defined() || x.dim() != 2 || x.size(1) != static_cast<std::int64_t>(mean_.size()))
    throw InvalidArgument(fmt::format("Standardizer::transform: features of shape {}; expected [N, {}]",
                                      x.defined() ? fmt::format("{}", x.shape()) : "undefined", mean_.size()));
  Tensor out = x.contiguous_copy_detached();
  dispatch_float(out.dtype(), [&]<class T>() {
    T* p = out.mutable_data<T>();
    const std::int64_t f = x.size(1);
    for (std::int64_t i = 0; i < x.size(0); ++i)
      for (std::int64_t k = 0; k < f; ++k) {
        const auto kk = static_cast<std::size_t>(k);
        const double z = (static_cast<double>(p[i * f + k]) - mean_[kk]) / (std_[kk] > 0 ? std_[kk] : 1.0);
        p[i * f + k] = static_cast<T>(z);
      }
  });
  return out;
}

Dataset Standardizer::transform(const Dataset& d) const {
  if (d.size() == 0) return d;
  return {transform(d.features), d.labels, d.class_names};
}

BatchIterator::BatchIterator(const Dataset& data, std::int64_t batch_size, bool shuffle, std::uint64_t seed, bool drop_last)
    : data_(data), batch_size_(batch_size), shuffle_(shuffle), drop_last_(drop_last), gen_(seed) {
  if (batch_size <= 0) throw InvalidArgument(fmt::format("BatchIterator: batch_size = {}; expected > 0", batch_size));
  if (data.size() == 0) throw InvalidArgument("BatchIterator: the dataset is empty");
  check_rows("BatchIterator", data);
}

std::int64_t BatchIterator::batches_per_epoch() const {
  const std::int64_t n = data_.size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

std::vector<Dataset> BatchIterator::epoch() {
  const std::int64_t n = data_.size();
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  if (shuffle_) order = permutation(n, gen_);
  else std::iota(order.begin(), order.end(), 0);
  ++epochs_;
  std::vector<Dataset> out;
  for (std::int64_t b = 0; b < batches_per_epoch(); ++b) {
    const std::int64_t lo = b * batch_size_, hi = std::min(n, lo + batch_size_);
    out.push_back(data_.subset(std::vector<std::int64_t>(order.begin() + lo, order.begin() + hi)));
  }
  return out;
}

nlohmann::json BatchIterator::state_dict() const {
  nlohmann::json j;
  j["epochs"] = epochs_;
  j["generator"] = gen_.state();
  j["num_samples"] = data_.size();
  j["batch_size"] = batch_size_;
  j["shuffle"] = shuffle_;
  j["drop_last"] = drop_last_;
  return j;
}

Generator::State BatchIterator::parse_state(const nlohmann::json& j, std::int64_t& epochs) const {
  auto fail = [](const std::string& what) { return CheckpointError("BatchIterator state: " + what); };
  if (!j.is_object()) throw fail(fmt::format("expected an object; got {}", j.dump()));
  for (const char* key : {"epochs", "generator", "num_samples", "batch_size", "shuffle", "drop_last"})
    if (!j.contains(key)) throw fail(fmt::format("missing field '{}'", key));
  // The same data and settings: a state for other data would hand out other batches.
  auto same_int = [&](const char* key, std::int64_t own) {
    const auto& v = j.at(key);
    if (!v.is_number_integer() || v.get<std::int64_t>() != own)
      throw fail(fmt::format("'{}' is {}; this iterator has {} (a different dataset or settings?)", key, v.dump(), own));
  };
  auto same_bool = [&](const char* key, bool own) {
    const auto& v = j.at(key);
    if (!v.is_boolean() || v.get<bool>() != own)
      throw fail(fmt::format("'{}' is {}; this iterator has {}", key, v.dump(), own));
  };
  same_int("num_samples", data_.size());
  same_int("batch_size", batch_size_);
  same_bool("shuffle", shuffle_);
  same_bool("drop_last", drop_last_);
  const auto& e = j.at("epochs");
  if (!e.is_number_integer() || e.get<std::int64_t>() < 0)
    throw fail(fmt::format("'epochs' is {}; expected an integer >= 0", e.dump()));
  epochs = e.get<std::int64_t>();
  const auto& g = j.at("generator");
  Generator::State s{};
  bool ok = g.is_array() && g.size() == s.size();
  for (std::size_t i = 0; ok && i < s.size(); ++i) {
    ok = g[i].is_number_unsigned();
    if (ok) s[i] = g[i].get<std::uint64_t>();
  }
  if (!ok) throw fail(fmt::format("'generator' is {}; expected 4 unsigned 64-bit integers", g.dump()));
  if (s == Generator::State{}) throw fail("'generator' is all zeros (corrupted)");
  return s;
}

void BatchIterator::check_state_dict(const nlohmann::json& state) const {
  std::int64_t epochs;
  parse_state(state, epochs);
}

void BatchIterator::load_state_dict(const nlohmann::json& state) {
  std::int64_t epochs;
  const Generator::State s = parse_state(state, epochs);
  gen_.set_state(s);
  epochs_ = epochs;
}

}  // namespace tapegrad::nn
