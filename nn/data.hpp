// SPDX-License-Identifier: MIT
#pragma once
// Small tabular classification datasets: reading, splitting, standardising, batching.
//
// CSV format (the datasets in examples/data): an optional header line
//   n_samples,n_features,class name 0,class name 1,...
// then one sample per line: the features, then the integer class label. Without a header (digits)
// the number of features is the column count minus one and classes are named "0", "1", ....
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "autodiff/generator.hpp"
#include "autodiff/tensor.hpp"

namespace tapegrad::nn {

struct Dataset {
  Tensor features;                       // [N, F], float32 or float64
  Tensor labels;                         // [N], int64 in [0, num_classes)
  std::vector<std::string> class_names;  // num_classes entries

  std::int64_t size() const { return labels.defined() ? labels.numel() : 0; }
  std::int64_t num_features() const { return features.size(1); }
  std::int64_t num_classes() const { return static_cast<std::int64_t>(class_names.size()); }
  Dataset subset(const std::vector<std::int64_t>& indices) const;  // rows in the given order
};

// Reads the CSV; errors name the file and line (wrong column count, unparsable number, label not
// an integer in range, header counts that are not integers or disagree with the data). With a
// header, labels must lie in [0, number of class names). Without one, the classes are 0..max label,
// and the largest label must be below max(1024, number of rows) (kMaxUnnamedClasses): a stray
// 50000000 would otherwise create fifty million classes. Name the classes in a header for more.
inline constexpr std::int64_t kMaxUnnamedClasses = 1024;
Dataset read_csv(const std::string& path, DType dtype = kFloat32);

struct DatasetSplit {
  Dataset train, validation, test;
};
// Stratified: each class is shuffled (seeded) and divided in the given proportions, so every split
// keeps the class balance; validation or test may be 0. Every label must be in [0, num_classes).
DatasetSplit stratified_split(const Dataset& data, double validation_fraction, double test_fraction,
                              std::uint64_t seed);

// Per-feature standardisation z = (x - mean) / std, fitted on one split (the training split) and
// applied to all. Constant features (std = 0) are only centred. fit() rejects NaN and infinities.
class Standardizer {
 public:
  void fit(const Tensor& x);  // x [N, F]
  Tensor transform(const Tensor& x) const;
  Dataset transform(const Dataset& d) const;
  const std::vector<double>& mean() const { return mean_; }
  const std::vector<double>& std() const { return std_; }

 private:
  std::vector<double> mean_, std_;
};

// Mini-batches of a dataset, reshuffled (seeded) on every call to epoch(). The dataset's features
// [N, ...] and labels [N] must have the same number of rows.
//
// state_dict() = {"epochs": epochs drawn so far, "generator": the shuffle stream's state, and the
// construction's "num_samples", "batch_size", "shuffle", "drop_last"}: epoch() hands out whole
// epochs, so between two calls the position is always an epoch boundary and the next permutation
// is determined by the stream; restoring it (nn::save/load take an iterator) makes a resumed run
// draw the same batches as an uninterrupted one. load_state_dict() requires the same dataset size
// and settings and validates everything before changing anything.
class BatchIterator {
 public:
  BatchIterator(const Dataset& data, std::int64_t batch_size, bool shuffle, std::uint64_t seed, bool drop_last = false);
  // The batches of one epoch: each {features [b, F], labels [b]}.
  std::vector<Dataset> epoch();
  std::int64_t batches_per_epoch() const;
  std::int64_t epochs() const { return epochs_; }  // calls to epoch() so far

  nlohmann::json state_dict() const;
  void load_state_dict(const nlohmann::json& state);
  void check_state_dict(const nlohmann::json& state) const;  // throws CheckpointError, changes nothing

 private:
  Generator::State parse_state(const nlohmann::json& state, std::int64_t& epochs) const;

  Dataset data_;  // a copy of the handles (cheap), so a temporary dataset is fine
  std::int64_t batch_size_;
  bool shuffle_, drop_last_;
  Generator gen_;
  std::int64_t epochs_ = 0;
};

// Throws if t has a NaN or an infinity, naming `what`, the position and the value; for callers that
// want their batches checked before a step (a NaN would otherwise spread into every weight).
void check_finite(const Tensor& t, const std::string& what);

// Fisher-Yates with the given generator.
std::vector<std::int64_t> permutation(std::int64_t n, Generator& gen);

}  // namespace tapegrad::nn
