// SPDX-License-Identifier: MIT
// Softmax regression, first by hand on a tiny worked example, then trained on Fisher's iris.
//
//   model   Z = X W^T + b             X [N, F], W [K, F] (PyTorch's layout), b [K], Z [N, K] logits
//           P = softmax(Z, dim 1)     P[n, k] = exp(Z[n, k]) / sum_j exp(Z[n, j])
//   loss    L = -1/N sum_n log P[n, y_n]                               (cross_entropy)
//   grads   dL/dZ = (P - Y) / N       Y = one_hot(y)
//           dL/dW = (P - Y)^T X / N   dL/db = sum_n (P - Y)[n, :] / N
//
// Part 1 takes the worked example of the reference notes (2 samples, 3 features, 3 classes), lets
// tapegrad compute every quantity (forward, then backward() for dW and db) and checks the
// gradients against the closed form above. The notes write Z = X W + b with W [features, classes];
// we store its transpose, as nn::Linear does, and print gradients in both layouts.
// Part 2 trains one nn::Linear(4, 3) on iris and checks test accuracy >= 93%.
//
// Run: ./build/softmax_regression [--short] [--data DIR]
#include <algorithm>
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

// Y[n, k] = 1 if y[n] == k else 0
Tensor one_hot(const Tensor& y, std::int64_t num_classes, DType dtype) {
  std::vector<double> v(static_cast<std::size_t>(y.numel() * num_classes), 0.0);
  for (std::int64_t n = 0; n < y.numel(); ++n) v[static_cast<std::size_t>(n * num_classes + y.data<std::int64_t>()[n])] = 1.0;
  return from_vector(v, Shape{y.numel(), num_classes}, dtype);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  NoGradGuard no_grad;
  return max(abs(a - b)).item();
}

// Part 1: returns true when autodiff and the closed form agree.
bool worked_example() {
  fmt::print("=== Part 1: the worked example (2 samples, 3 features, 3 classes), float64 ===\n");
  const Tensor X = tensor({{1.0, 0.5, -0.5}, {0.2, -0.3, 0.8}}, kFloat64);   // [N = 2, F = 3]
  const Tensor W_notes = tensor({{0.1, 0.2, 0.3}, {0.4, -0.1, 0.2}, {-0.2, 0.3, 0.1}}, kFloat64);  // [F, K]
  const Tensor b0 = tensor({0.0, 0.1, -0.1}, kFloat64);
  const Tensor y = from_vector(std::vector<std::int64_t>{0, 2}, Shape{2});  // true classes

  // A Linear layer holding exactly these numbers: weight = W_notes^T ([K, F]), bias = b0.
  Generator gen(0);
  nn::Linear layer(3, 3, gen, /*bias=*/true, kFloat64);
  nn::assign_value(layer.weight, transpose(W_notes, 0, 1).contiguous_copy_detached());
  nn::assign_value(layer.bias, b0);
  fmt::print("X =\n{}\nW (notes' layout [features, classes]) =\n{}\nb = {}\ny = {}\n\n", X, W_notes, b0, y);

  // Forward, every step recorded on the tape.
  const Tensor Z = layer(X);         // logits [2, 3]
  const Tensor P = softmax(Z, 1);    // probabilities [2, 3]
  const Tensor L = cross_entropy(Z, y);  // -mean_n log P[n, y_n], from Z directly (log_softmax inside)
  fmt::print("Step 1, logits Z = X W + b =\n{}\n", Z);
  fmt::print("Step 2, probabilities P = softmax(Z) =\n{}\n", P);
  fmt::print("        row sums: {}\n", sum(P.detach(), 1));
  double by_hand = 0;
  for (std::int64_t n = 0; n < 2; ++n) {
    const double p = P.at({n, y.data<std::int64_t>()[n]});
    fmt::print("        sample {}: P[{}, {}] = {:.6f}, log = {:.6f}\n", n, n, y.data<std::int64_t>()[n], p, std::log(p));
    by_hand -= std::log(p) / 2;
  }
  fmt::print("Step 3, loss L = cross_entropy(Z, y) = {:.16f}   (-mean log P[n, y_n] = {:.16f})\n\n", L.item(), by_hand);

  // Backward: one reverse walk of the tape fills layer.weight.grad() and layer.bias.grad().
  backward(L);
  const Tensor dW = layer.weight.grad();  // [K, F]
  const Tensor db = layer.bias.grad();    // [K]
  fmt::print("Step 4, backward(L):\n  dL/dW (notes' layout [features, classes]) =\n{}\n  dL/db = {}\n\n",
             transpose(dW, 0, 1), db);

  // The same gradients from the closed form, with the probabilities as plain numbers.
  NoGradGuard no_grad;
  const Tensor Y = one_hot(y, 3, kFloat64);
  const Tensor G = (P.detach() - Y) / 2.0;                 // dL/dZ = (P - Y) / N
  const Tensor dW_closed = matmul(transpose(G, 0, 1), X);  // (P - Y)^T X / N   [K, F]
  const Tensor db_closed = sum(G, 0);                      // column sums of (P - Y) / N
  fmt::print("Closed form: P - Y =\n{}\n  (P - Y)^T X / N (notes' layout X^T (P - Y) / N) =\n{}\n  sum_n (P - Y) / N = {}\n",
             P.detach() - Y, transpose(dW_closed, 0, 1), db_closed);
  const double err = std::max(max_abs_diff(dW, dW_closed), max_abs_diff(db, db_closed));
  const bool agree = err < 1e-12 && std::abs(L.item() - by_hand) < 1e-12;
  fmt::print("largest difference, autodiff vs closed form: {:.3g} -> {}\n\n", err, agree ? "they agree" : "MISMATCH");

  // One gradient-descent step with learning rate 0.1, as the notes do: W <- W - 0.1 dW.
  nn::SGD sgd(layer.parameters(), {.lr = 0.1});
  sgd.step();
  const double new_loss = cross_entropy(layer(X), y).item();
  fmt::print("After one SGD step (lr 0.1): W (notes' layout) =\n{}\n  b = {}\n  loss {:.6f} -> {:.6f}\n\n",
             transpose(layer.weight, 0, 1), layer.bias, L.item(), new_loss);
  return agree && new_loss < L.item();
}

// Part 2: returns the test accuracy.
double iris(const examples::Options& opt) {
  fmt::print("=== Part 2: softmax regression on iris (150 flowers, 4 measurements, 3 species) ===\n");
  const std::string dir = examples::find_data_dir(opt, "iris.csv");
  const nn::Dataset data = nn::read_csv(dir + "/iris.csv", kFloat32);

  // Stratified: 70% train, 30% test, each species in the same proportion in both; fixed seed.
  nn::DatasetSplit split = nn::stratified_split(data, /*validation=*/0.0, /*test=*/0.3, /*seed=*/42);
  // z = (x - mean) / std with the training split's statistics only, applied to both splits.
  nn::Standardizer scaler;
  scaler.fit(split.train.features);
  const nn::Dataset train = scaler.transform(split.train), test = scaler.transform(split.test);
  fmt::print("data: {} ({} classes: {}); train {} / test {} samples\n", dir + "/iris.csv", data.num_classes(),
             fmt::join(data.class_names, ", "), train.size(), test.size());

  // The whole model is one Linear(4, 3): softmax regression is a network with no hidden layer.
  Generator gen(1);
  nn::Linear model(data.num_features(), data.num_classes(), gen);
  // Full-batch gradient descent: the training set is 105 rows, so --short changes nothing here.
  nn::SGD sgd(model.parameters(), {.lr = 0.5});
  const int epochs = 150;
  examples::Stopwatch clock;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    sgd.zero_grad();
    Tensor loss = cross_entropy(model(train.features), train.labels);
    backward(loss);
    sgd.step();
    if (epoch == 1 || epoch % (epochs / 5) == 0)
      fmt::print("epoch {:4d}  loss {:.4f}  train acc {:.4f}  test acc {:.4f}\n", epoch, loss.item(),
                 examples::accuracy(model, train), examples::accuracy(model, test));
  }
  const double train_acc = examples::accuracy(model, train), test_acc = examples::accuracy(model, test);
  fmt::print("trained {} epochs in {:.3f} s\nweight (rows: classes; columns: standardised features) =\n{}\nbias = {}\n",
             epochs, clock.seconds(), model.weight, model.bias);
  fmt::print("train accuracy {:.4f}, test accuracy {:.4f} ({} of {})\n", train_acc, test_acc,
             std::llround(test_acc * static_cast<double>(test.size())), test.size());
  examples::print_confusion_matrix(examples::confusion_matrix(examples::logits_of(model, test.features), test.labels, 3),
                                   data.class_names);
  return test_acc;
}

}  // namespace

int main(int argc, char** argv) {
  const examples::Options opt =
      examples::parse_options(argc, argv, "softmax regression: the notes' worked example, then iris");
  const bool example_ok = worked_example();
  const double test_acc = iris(opt);
  const bool iris_ok = test_acc >= 0.93;
  fmt::print("\nworked example: {}; iris test accuracy {:.4f} {} 0.93\n", example_ok ? "OK" : "FAILED", test_acc,
             iris_ok ? ">=" : "< (FAILED)");
  return example_ok && iris_ok ? 0 : 1;
}
