// SPDX-License-Identifier: MIT
#include "nn/data.hpp"

#include <charconv>
#include <cmath>
#include <fstream>
#include <numeric>

#include <fmt/format.h>
#include <fmt/ranges.h>

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
  std::int64_t max_label = -1;
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
        double n, f;
        if (fields.size() < 3 || !parse_double(fields[0], n) || !parse_double(fields[1], f) || n < 0 || f < 1)
          throw InvalidArgument(fmt::format("read_csv: {}:1: header '{}' is not 'n_samples,n_features,class names...'", path, line));
        declared_n = static_cast<std::int64_t>(n);
        n_features = static_cast<std::int64_t>(f);
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
    double lab;
    const std::string& lf = fields.back();
    if (!parse_double(lf, lab) || lab < 0 || lab != std::floor(lab))
      throw InvalidArgument(fmt::format("read_csv: {}:{}: label '{}' is not an integer >= 0", path, line_no, lf));
    labels.push_back(static_cast<std::int64_t>(lab));
    max_label = std::max(max_label, labels.back());
  }
  const auto n = static_cast<std::int64_t>(labels.size());
  if (n == 0) throw InvalidArgument(fmt::format("read_csv: '{}' has no samples", path));
  if (declared_n >= 0 && declared_n != n)
    throw InvalidArgument(fmt::format("read_csv: {}: the header declares {} samples but the file has {}", path, declared_n, n));
  if (names.empty())
    for (std::int64_t c = 0; c <= max_label; ++c) names.push_back(std::to_string(c));
  if (max_label >= static_cast<std::int64_t>(names.size()))
    throw InvalidArgument(fmt::format("read_csv: {}: label {} is out of range for {} classes", path, max_label, names.size()));
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
  Generator gen(seed);
  std::vector<std::int64_t> train, val, test;
  const std::int64_t* lab = data.labels.data<std::int64_t>();
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
  std::vector<Dataset> out;
  for (std::int64_t b = 0; b < batches_per_epoch(); ++b) {
    const std::int64_t lo = b * batch_size_, hi = std::min(n, lo + batch_size_);
    out.push_back(data_.subset(std::vector<std::int64_t>(order.begin() + lo, order.begin() + hi)));
  }
  return out;
}

}  // namespace tapegrad::nn
