// SPDX-License-Identifier: MIT
// tapegrad's flagship demo: train a small network, then check its gradients.
//
//   1. data     200 points (x1, x2) in [-2, 2]^2, target y = sin(x1) * cos(x2)
//   2. model    y_hat = tanh(x W1^T + b1) W2^T + b2        (2 -> 16 -> 1, PyTorch's [out, in] layout)
//   3. loss     mean((y_hat - y)^2), minimised by plain gradient descent; backward() fills .grad
//   4. check    gradcheck compares every parameter's analytic gradient with central differences
//
// Run: ./build/demo            (or ./build/demo --short for a quick run)
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "autodiff/eigen.hpp"  // Tensor::mutable_array, for the hand-written SGD step
#include "tapegrad.hpp"

using namespace tapegrad;

namespace {

struct Model {
  Tensor w1, b1, w2, b2;  // leaves with requires_grad
  std::vector<Tensor> parameters() const { return {w1, b1, w2, b2}; }
};

Tensor forward(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  Tensor h = tanh(linear(x, w1, b1));  // [N, 16]
  return linear(h, w2, b2);                              // [N, 1]
}

Tensor mse(const Tensor& pred, const Tensor& target) {
  Tensor d = pred - target;
  return mean(d * d);
}

}  // namespace

int main(int argc, char** argv) {
  const bool short_run = argc > 1 && std::strcmp(argv[1], "--short") == 0;
  const int steps = short_run ? 300 : 2000;
  Generator gen(2024);

  // 1. data
  const std::int64_t n = 200;
  Tensor x = rand({n, 2}, gen, kFloat64) * 4.0 - 2.0;
  std::vector<double> targets;
  for (std::int64_t i = 0; i < n; ++i) targets.push_back(std::sin(x.at({i, 0})) * std::cos(x.at({i, 1})));
  Tensor y = from_vector(targets, Shape{n, 1}, kFloat64);

  // 2. model: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) like torch.nn.Linear
  auto init = [&](Shape shape, double fan_in) {
    const double bound = 1.0 / std::sqrt(fan_in);
    return (rand(shape, gen, kFloat64) * (2 * bound) - bound).requires_grad_();
  };
  Model m{init({16, 2}, 2), init({16}, 2), init({1, 16}, 16), init({1}, 16)};

  // 3. training
  const double lr = 0.2;
  const auto t0 = std::chrono::steady_clock::now();
  double first_loss = 0, last_loss = 0;
  for (int step = 0; step <= steps; ++step) {
    Tensor loss = mse(forward(x, m.w1, m.b1, m.w2, m.b2), y);
    backward(loss);  // fills .grad of w1, b1, w2, b2; the tape is empty again afterwards
    {
      NoGradGuard no_grad;  // the update itself is not differentiated
      for (Tensor& p : m.parameters()) {
        p.mutable_array<double>() -= lr * p.grad().array<double>();
        p.zero_grad();
      }
    }
    if (step == 0) first_loss = loss.item();
    last_loss = loss.item();
    if (step % (steps / 5) == 0) fmt::print("step {:5d}  loss {:.6f}\n", step, loss.item());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("trained {} steps in {:.2f} s: loss {:.4f} -> {:.4f} (tape nodes left: {})\n", steps, secs, first_loss,
             last_loss, tape_size());

  // 4. gradient check at the trained weights, on 8 points, every parameter at once
  Tensor xs = slice(x, 0, 0, 8), ys = slice(y, 0, 0, 8);
  auto loss_of_params = [&](const std::vector<Tensor>& p) { return mse(forward(xs, p[0], p[1], p[2], p[3]), ys); };
  std::vector<Tensor> params;
  for (const Tensor& p : m.parameters()) params.push_back(p.detach().clone().requires_grad_());
  GradcheckReport report = gradcheck(loss_of_params, params);
  fmt::print("{}\n", report);

  const bool learned = last_loss < first_loss / 5;
  fmt::print("{}\n", learned && report.ok() ? "demo OK: the loss went down and the gradients check out"
                                            : "demo FAILED");
  return learned && report.ok() ? 0 : 1;
}
