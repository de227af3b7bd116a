// SPDX-License-Identifier: MIT
#pragma once
// Small helpers shared by the classifier examples (softmax_regression, digits_mlp, calibration,
// distillation): command-line options, finding examples/data, accuracy, a confusion matrix and the
// expected calibration error. Header-only, so each example stays one self-contained program.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "tapegrad.hpp"

namespace examples {

namespace fs = std::filesystem;
using namespace tapegrad;

// ---- command line: --short, --data DIR, --out DIR ----

struct Options {
  bool short_run = false;  // CI mode: small and fast
  std::string data_dir;    // empty: look it up (find_data_dir)
  std::string out_dir;     // empty: the program's default
  std::string program;     // argv[0]
};

inline Options parse_options(int argc, char** argv, std::string_view what) {
  Options o;
  o.program = argc > 0 ? argv[0] : "example";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--short") {
      o.short_run = true;
    } else if ((a == "--data" || a == "--out") && i + 1 < argc) {
      (a == "--data" ? o.data_dir : o.out_dir) = argv[++i];
    } else {
      const bool help = a == "--help" || a == "-h";
      fmt::print(help ? stdout : stderr,
                 "{}{}\nusage: {} [--short] [--data DIR] [--out DIR]\n"
                 "  --short     quick run (CI)\n"
                 "  --data DIR  directory holding the CSV files (default: examples/data of the source tree)\n"
                 "  --out DIR   where to write output files, if the program writes any\n",
                 help ? "" : fmt::format("unknown or incomplete option '{}'\n", a), what, o.program);
      std::exit(help ? 0 : 2);
    }
  }
  return o;
}

// The directory holding `file` (e.g. "iris.csv"): --data if given, else, in order, the directory
// the build defined (TAPEGRAD_EXAMPLES_DATA or TAPEGRAD_SOURCE_DIR/examples/data), examples/data
// under the current directory and its parent (repo root, build directory), and beside the
// executable's directory and its parent (build/<program>). Exits with a message when not found.
inline std::string find_data_dir(const Options& o, const std::string& file) {
  std::vector<fs::path> candidates;
  if (!o.data_dir.empty()) {
    candidates.push_back(o.data_dir);
  } else {
#ifdef TAPEGRAD_EXAMPLES_DATA
    candidates.emplace_back(TAPEGRAD_EXAMPLES_DATA);
#endif
#ifdef TAPEGRAD_SOURCE_DIR
    candidates.push_back(fs::path(TAPEGRAD_SOURCE_DIR) / "examples" / "data");
#endif
    std::error_code ec;
    const fs::path cwd = fs::current_path(ec);
    const fs::path exe_dir = fs::weakly_canonical(fs::path(o.program), ec).parent_path();
    for (const fs::path& base : {cwd, cwd.parent_path(), exe_dir, exe_dir.parent_path()})
      if (!base.empty() && std::find(candidates.begin(), candidates.end(), base / "examples" / "data") == candidates.end())
        candidates.push_back(base / "examples" / "data");
  }
  for (const fs::path& dir : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(dir / file, ec)) return dir.string();
  }
  fmt::print(stderr, "cannot find {}; looked in:\n", file);
  for (const fs::path& dir : candidates) fmt::print(stderr, "  {}\n", dir.string());
  fmt::print(stderr, "pass --data DIR (the repository's examples/data)\n");
  std::exit(2);
}

// ---- timing ----

class Stopwatch {
 public:
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

// ---- evaluation ----

// The model's logits for every sample, without recording anything on the tape.
inline Tensor logits_of(nn::Module& model, const Tensor& features) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  Tensor out = model(features);
  model.train(was_training);
  return out;
}

// Fraction of rows whose largest logit is at the label.
inline double accuracy(const Tensor& logits, const Tensor& labels) {
  const Tensor pred = argmax(logits, 1);
  const std::int64_t* p = pred.data<std::int64_t>();
  const std::int64_t* y = labels.data<std::int64_t>();
  std::int64_t correct = 0;
  for (std::int64_t i = 0; i < labels.numel(); ++i) correct += p[i] == y[i];
  return static_cast<double>(correct) / static_cast<double>(labels.numel());
}

inline double accuracy(nn::Module& model, const nn::Dataset& d) { return accuracy(logits_of(model, d.features), d.labels); }

// Mean cross-entropy (negative log-likelihood) of the labels under softmax(logits).
inline double nll(const Tensor& logits, const Tensor& labels) {
  NoGradGuard no_grad;
  return cross_entropy(logits, labels).item();
}

// counts[true][predicted], printed with the true class down the side.
inline std::vector<std::vector<std::int64_t>> confusion_matrix(const Tensor& logits, const Tensor& labels,
                                                               std::int64_t num_classes) {
  std::vector<std::vector<std::int64_t>> m(static_cast<std::size_t>(num_classes),
                                           std::vector<std::int64_t>(static_cast<std::size_t>(num_classes), 0));
  const Tensor pred = argmax(logits, 1);
  for (std::int64_t i = 0; i < labels.numel(); ++i)
    ++m[static_cast<std::size_t>(labels.data<std::int64_t>()[i])][static_cast<std::size_t>(pred.data<std::int64_t>()[i])];
  return m;
}

inline void print_confusion_matrix(const std::vector<std::vector<std::int64_t>>& m,
                                   const std::vector<std::string>& names) {
  std::size_t w = 4;
  for (const auto& n : names) w = std::max(w, n.size());
  fmt::print("confusion matrix (rows: true class, columns: predicted class)\n{:>{}}", "", w);
  for (const auto& n : names) fmt::print(" {:>{}}", n, w);
  fmt::print("\n");
  for (std::size_t i = 0; i < m.size(); ++i) {
    fmt::print("{:>{}}", names[i], w);
    for (std::int64_t c : m[i]) fmt::print(" {:>{}}", c == 0 ? std::string(".") : std::to_string(c), w);
    fmt::print("\n");
  }
}

// ---- calibration ----
//
// Reliability of the confidence c_n = max_k p[n, k]: split (0, 1] into `bins` equal-width bins
// (c in ((b - 1) / B, b / B]), and in each compare the mean confidence with the accuracy.
//   ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|          (Naeini et al. 2015; Guo et al. 2017)

struct ReliabilityBin {
  double lo, hi;
  std::int64_t count = 0;
  double confidence = 0, accuracy = 0;  // means over the bin (0 when empty)
};

struct Reliability {
  std::vector<ReliabilityBin> bins;
  double ece = 0;
};

inline Reliability reliability(const Tensor& probs, const Tensor& labels, int num_bins = 15) {
  Reliability r;
  for (int b = 0; b < num_bins; ++b) r.bins.push_back({double(b) / num_bins, double(b + 1) / num_bins});
  const Tensor conf = max(probs, 1), pred = argmax(probs, 1);
  const std::vector<double> c = conf.to_vector();
  const std::int64_t n = labels.numel();
  for (std::int64_t i = 0; i < n; ++i) {
    const double ci = c[static_cast<std::size_t>(i)];
    int b = static_cast<int>(std::ceil(ci * num_bins)) - 1;  // (b/B, (b+1)/B]
    b = b < 0 ? 0 : b >= num_bins ? num_bins - 1 : b;
    ReliabilityBin& bin = r.bins[static_cast<std::size_t>(b)];
    ++bin.count;
    bin.confidence += ci;
    bin.accuracy += pred.data<std::int64_t>()[i] == labels.data<std::int64_t>()[i] ? 1.0 : 0.0;
  }
  for (ReliabilityBin& bin : r.bins) {
    if (bin.count == 0) continue;
    r.ece += std::abs(bin.accuracy - bin.confidence) / static_cast<double>(n);
    bin.confidence /= static_cast<double>(bin.count);
    bin.accuracy /= static_cast<double>(bin.count);
  }
  return r;
}

inline void print_reliability(const Reliability& r) {
  fmt::print("  {:>13}  {:>5}  {:>10}  {:>8}  {:>7}\n", "confidence in", "count", "mean conf.", "accuracy", "gap");
  for (const ReliabilityBin& b : r.bins)
    if (b.count > 0)
      fmt::print("  ({:.3f}, {:.3f}]  {:>5}  {:>10.4f}  {:>8.4f}  {:>+7.4f}\n", b.lo, b.hi, b.count, b.confidence,
                 b.accuracy, b.accuracy - b.confidence);
  fmt::print("  ECE ({} bins) = {:.4f}\n", r.bins.size(), r.ece);
}

}  // namespace examples
