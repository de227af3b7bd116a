// SPDX-License-Identifier: MIT
// Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017).
//
// A classifier is calibrated when its confidence matches its accuracy: of the predictions made
// with confidence 0.9, 90% are right. Networks trained long without regularisation drive the
// training loss to 0 by growing their logits, and become over-confident on new data.
// Temperature scaling divides every logit by one scalar T > 0 fitted after training:
//
//   p_T = softmax(z / T)             T > 1 softens, T < 1 sharpens; argmax (so accuracy) unchanged
//   T*  = argmin_T  NLL_val(T) = -1/N sum_n log softmax(z_n / T)[y_n]      on the validation split
//
// T is a learned tensor: we optimise s = log T (so T = e^s stays > 0 whatever the step) by
// gradient descent (Adam), tapegrad differentiating through log_softmax(z, 1, T):
//   dNLL/dT = 1/(N T^2) sum_n (z_n[y_n] - <p_T(n), z_n>),   dNLL/ds = T dNLL/dT
// Reliability is measured on the test split by the expected calibration error with 15 equal-width
// confidence bins:  ECE = sum_b |B_b| / N |accuracy(B_b) - mean confidence(B_b)|.
//
// Run: ./build/calibration [--short] [--data DIR]
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common.hpp"
#include "tapegrad.hpp"

using namespace tapegrad;

int main(int argc, char** argv) {
  const examples::Options opt =
      examples::parse_options(argc, argv, "calibration: temperature scaling of an over-confident digits MLP");

  // ---- data: digits, 10% train / 45% validation (fits T) / 45% test (measures calibration) ----
  // A small training set (180 images) leaves room for over-confidence: trained on 60% of the
  // digits the same network is 98-99% accurate and there is little to calibrate (T about 1.2).
  const std::string dir = examples::find_data_dir(opt, "digits.csv");
  const nn::Dataset data = nn::read_csv(dir + "/digits.csv", kFloat32);
  const nn::DatasetSplit split = nn::stratified_split(data, /*validation=*/0.45, /*test=*/0.45, /*seed=*/3);
  nn::Standardizer scaler;
  scaler.fit(split.train.features);
  const nn::Dataset train = scaler.transform(split.train);
  const nn::Dataset val = scaler.transform(split.validation);
  const nn::Dataset test = scaler.transform(split.test);
  fmt::print("data: {}/digits.csv; train {} / validation {} / test {}\n", dir, train.size(), val.size(), test.size());

  // ---- 1. an over-confident classifier: wide, trained long, no weight decay, no dropout ----
  // Once every training image is classified correctly, cross-entropy keeps falling only by growing
  // the logits, so the confidence on new images grows too, right or wrong.
  const std::int64_t hidden = opt.short_run ? 128 : 512;
  const int epochs = opt.short_run ? 50 : 300;
  Generator gen(5);
  nn::MLP model({64, hidden, 10}, "relu", gen);
  nn::Adam adam(model.parameters(), {.lr = 3e-3});
  fmt::print("model 64-{}-10 (relu), Adam lr 3e-3, {} epochs, batches of 32, no regularisation\n", hidden, epochs);
  nn::BatchIterator batches(train, 32, /*shuffle=*/true, /*seed=*/6);
  examples::Stopwatch clock;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double loss_sum = 0;
    std::int64_t seen = 0;
    for (const nn::Dataset& batch : batches.epoch()) {
      adam.zero_grad();
      Tensor loss = cross_entropy(model(batch.features), batch.labels);
      backward(loss);
      adam.step();
      loss_sum += loss.item() * static_cast<double>(batch.size());
      seen += batch.size();
    }
    if (epoch == 1 || epoch % (epochs / 5) == 0)
      fmt::print("epoch {:3d}  train loss {:.6f}  val NLL {:.4f}  val acc {:.4f}  {:.2f} s\n", epoch,
                 loss_sum / static_cast<double>(seen),
                 examples::nll(examples::logits_of(model, val.features), val.labels), examples::accuracy(model, val),
                 clock.seconds());
  }

  // The logits are fixed from here on; calibration only rescales them. float64 for the fit.
  const Tensor val_z = examples::logits_of(model, val.features).to(kFloat64);
  const Tensor test_z = examples::logits_of(model, test.features).to(kFloat64);

  // ---- 2. fit T on the validation split ----
  Tensor log_t = tensor(0.0, kFloat64).requires_grad_();  // s = log T, starts at T = 1
  nn::Adam t_opt({log_t}, {.lr = 0.02});
  auto val_nll_at = [&](const Tensor& t) { return nll_loss(log_softmax(val_z, 1, t), val.labels); };
  const int steps = opt.short_run ? 200 : 500;
  fmt::print("\nfitting T on the validation split: minimise NLL_val(T) over s = log T, Adam lr 0.02, {} steps\n",
             steps);
  for (int step = 0; step <= steps; ++step) {
    t_opt.zero_grad();
    Tensor loss = val_nll_at(exp(log_t));  // recorded: exp, log_softmax with tensor T, nll_loss
    backward(loss);                        // fills log_t.grad() = dNLL/ds
    if (step % (steps / 5) == 0)
      fmt::print("  step {:4d}  T {:.5f}  NLL_val {:.6f}  dNLL/ds {:+.3e}\n", step, std::exp(log_t.item()),
                 loss.item(), log_t.grad().item());
    if (step < steps) t_opt.step();
  }
  const double T = std::exp(log_t.item());

  // ---- 3. before and after ----
  NoGradGuard no_grad;
  const double val_before = val_nll_at(tensor(1.0, kFloat64)).item(), val_after = val_nll_at(tensor(T, kFloat64)).item();
  const double test_before = examples::nll(test_z, test.labels);
  const double test_after = nll_loss(log_softmax(test_z, 1, T), test.labels).item();
  const examples::Reliability before = examples::reliability(softmax(test_z, 1), test.labels, 15);
  const examples::Reliability after = examples::reliability(softmax(test_z, 1, T), test.labels, 15);
  const double acc_before = examples::accuracy(test_z, test.labels);
  const double acc_after = examples::accuracy(temperature_scale(test_z, T), test.labels);

  fmt::print("\nfitted temperature T = {:.4f} ({})\n", T,
             T > 1 ? "> 1: the network was over-confident" : "<= 1: the network was not over-confident");
  fmt::print("test split, before (T = 1):\n");
  examples::print_reliability(before);
  fmt::print("test split, after (T = {:.4f}):\n", T);
  examples::print_reliability(after);
  fmt::print("\n{:>22}  {:>10}  {:>10}\n", "", "T = 1", fmt::format("T = {:.3f}", T));
  fmt::print("{:>22}  {:>10.4f}  {:>10.4f}\n", "validation NLL", val_before, val_after);
  fmt::print("{:>22}  {:>10.4f}  {:>10.4f}\n", "test NLL", test_before, test_after);
  fmt::print("{:>22}  {:>10.4f}  {:>10.4f}\n", "test ECE (15 bins)", before.ece, after.ece);
  fmt::print("{:>22}  {:>10.4f}  {:>10.4f}\n", "test accuracy", acc_before, acc_after);

  // Checks: the fit may only improve what it minimised, T stays positive, argmax is unchanged.
  const bool ok = val_after <= val_before + 1e-12 && T > 0 && std::isfinite(T) && acc_after == acc_before;
  fmt::print("\nvalidation NLL {:.6f} -> {:.6f}: {}\n", val_before, val_after,
             ok ? "not worse, accuracy unchanged: OK" : "FAILED");
  return ok ? 0 : 1;
}
