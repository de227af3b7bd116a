// SPDX-License-Identifier: MIT
// Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).
//
// A large teacher is trained on the digits; then a small student is trained twice from the same
// initial weights, on the same batches, with the same optimiser and epochs:
//   (a) hard labels only       L = CE(s, y)
//   (b) distilled              L = alpha T^2 KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) CE(s, y)
// where s, t are the student's and the teacher's logits. At temperature T > 1 the teacher's
// probabilities for the wrong classes ("this 7 looks a bit like a 1") become visible and carry
// information the one-hot labels lack. The soft term's gradient with respect to s is
// alpha T (softmax(s / T) - softmax(t / T)) / N, so the factor T^2 keeps its size comparable to the
// hard term's as T changes.
// KL is tapegrad's kl_div(log_softmax(s, 1, T), softmax(t, 1, T), batchmean) (PyTorch's
// F.kl_div(input = log-probabilities, target = probabilities)). The teacher's forward runs under
// NoGradGuard: it is a fixed function here, nothing of it is recorded on the tape.
// Since one run of a small network is noisy, each student is trained from several seeds.
// What to expect: trained long on hard labels, the 8-unit student fits its training set and stops
// improving; the teacher's soft targets keep giving it something to learn (they act as a
// regulariser), so the distilled student ends about a point of test accuracy higher.
//
// Run: ./build/distillation [--short] [--data DIR]
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common.hpp"
#include "tapegrad.hpp"

using namespace tapegrad;

namespace {

constexpr double kTemperature = 4.0;
constexpr double kAlpha = 0.9;  // weight of the soft (distillation) term

// One training run. With a teacher, the distillation loss; without, plain cross-entropy.
void train(nn::Module& model, const nn::Dataset& train, int epochs, std::uint64_t batch_seed, double lr,
           nn::Module* teacher) {
  nn::Adam adam(model.parameters(), {.lr = lr});
  nn::BatchIterator batches(train, 32, /*shuffle=*/true, batch_seed);
  for (int epoch = 0; epoch < epochs; ++epoch)
    for (const nn::Dataset& batch : batches.epoch()) {
      adam.zero_grad();
      const Tensor s = model(batch.features);
      Tensor loss = cross_entropy(s, batch.labels);
      if (teacher != nullptr) {
        const Tensor t = examples::logits_of(*teacher, batch.features);  // no grad: a constant target
        const Tensor soft = kl_div(log_softmax(s, 1, kTemperature), softmax(t, 1, kTemperature),
                                   {.reduction = Reduction::BatchMean});
        loss = soft * (kAlpha * kTemperature * kTemperature) + loss * (1 - kAlpha);
      }
      backward(loss);
      adam.step();
    }
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

}  // namespace

int main(int argc, char** argv) {
  const examples::Options opt =
      examples::parse_options(argc, argv, "distillation: a small student learns from a large teacher's soft outputs");

  const std::string dir = examples::find_data_dir(opt, "digits.csv");
  const nn::Dataset data = nn::read_csv(dir + "/digits.csv", kFloat32);
  const nn::DatasetSplit split = nn::stratified_split(data, /*validation=*/0.0, /*test=*/0.2, /*seed=*/2024);
  nn::Standardizer scaler;
  scaler.fit(split.train.features);
  const nn::Dataset train_set = scaler.transform(split.train), test_set = scaler.transform(split.test);
  fmt::print("data: {}/digits.csv; train {} / test {}\n", dir, train_set.size(), test_set.size());

  // ---- the teacher ----
  examples::Stopwatch clock;
  const std::vector<std::int64_t> teacher_sizes{64, 256, 256, 10};
  Generator teacher_gen(1);
  nn::MLP teacher(teacher_sizes, "relu", teacher_gen);
  train(teacher, train_set, opt.short_run ? 5 : 30, /*batch_seed=*/2, /*lr=*/1e-3, nullptr);
  const double teacher_acc = examples::accuracy(teacher, test_set);
  fmt::print("teacher {} ({} parameters): test accuracy {:.4f}  ({:.2f} s)\n", fmt::join(teacher_sizes, "-"),
             teacher.num_parameters(), teacher_acc, clock.seconds());

  // ---- the students: same seeds, data order, optimiser and epochs; only the loss differs ----
  const std::vector<std::int64_t> student_sizes{64, 8, 10};
  const int epochs = opt.short_run ? 5 : 100;
  const int runs = opt.short_run ? 1 : 5;
  fmt::print("students {}, {} epochs, Adam lr 3e-3; distillation at T = {}, alpha = {}; {} seed(s)\n",
             fmt::join(student_sizes, "-"), epochs, kTemperature, kAlpha, runs);
  fmt::print("{:>6}  {:>12}  {:>12}\n", "seed", "hard labels", "distilled");
  std::vector<double> hard, distilled;
  std::int64_t student_params = 0;
  for (int run = 0; run < runs; ++run) {
    const auto seed = static_cast<std::uint64_t>(100 + run);
    Generator gen_a(seed), gen_b(seed);  // identical initial weights
    nn::MLP student_a(student_sizes, "relu", gen_a), student_b(student_sizes, "relu", gen_b);
    student_params = student_a.num_parameters();
    train(student_a, train_set, epochs, seed + 1000, 3e-3, nullptr);
    train(student_b, train_set, epochs, seed + 1000, 3e-3, &teacher);
    hard.push_back(examples::accuracy(student_a, test_set));
    distilled.push_back(examples::accuracy(student_b, test_set));
    fmt::print("{:>6}  {:>12.4f}  {:>12.4f}\n", seed, hard.back(), distilled.back());
  }
  fmt::print("{:>6}  {:>12.4f}  {:>12.4f}\n", "mean", mean_of(hard), mean_of(distilled));
  fmt::print("\nsummary (test accuracy): teacher {:.4f} ({} parameters); student ({} parameters) on hard labels "
             "{:.4f}, distilled {:.4f} ({:+.4f}); {:.2f} s\n",
             teacher_acc, teacher.num_parameters(), student_params, mean_of(hard), mean_of(distilled),
             mean_of(distilled) - mean_of(hard), clock.seconds());

  // Sanity only: the teacher must have learned (the students' comparison is the result, not a check).
  const double bar = opt.short_run ? 0.80 : 0.95;
  const bool ok = teacher_acc >= bar;
  fmt::print("teacher accuracy {:.4f} {} {:.2f}\n", teacher_acc, ok ? ">=" : "< (FAILED)", bar);
  return ok ? 0 : 1;
}
