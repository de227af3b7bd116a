// SPDX-License-Identifier: MIT
// Optimisers, clipping and schedules: updates against the formulas evaluated by hand in the test
// (scalar double arithmetic, independent of the optimiser code), PyTorch parity lives in
// tests/parity; training reduces a loss; bad input.
#include <cmath>

#include <nlohmann/json.hpp>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;

namespace {

// A parameter p (float64) with a given gradient g, as after a backward.
Tensor param_with_grad(std::vector<double> p, std::vector<double> g) {
  const auto n = static_cast<std::int64_t>(p.size());
  Tensor t = from_vector(p, Shape{n}, kFloat64).requires_grad_();
  t.set_grad(from_vector(g, Shape{n}, kFloat64));
  return t;
}

}  // namespace

TEST_CASE("SGD: plain, momentum, dampening, nesterov and weight decay by hand", "[nn][optim]") {
  const double lr = 0.1, mu = 0.9, wd = 0.01;
  SECTION("plain") {
    Tensor p = param_with_grad({1.0, -2.0}, {0.5, 0.25});
    SGD opt({p}, {.lr = lr});
    opt.step();
    REQUIRE_ALLCLOSE(p.detach(), tensor({1.0 - 0.05, -2.0 - 0.025}, kFloat64), 1e-15);
  }
  SECTION("momentum + weight decay, two steps with different gradients") {
    Tensor p = param_with_grad({1.0}, {0.5});
    SGD opt({p}, {.lr = lr, .momentum = mu, .dampening = 0.2, .weight_decay = wd});
    opt.step();
    // step 1: d = g + wd p = 0.51; buffer = d; p = 1 - 0.1 * 0.51
    double d = 0.5 + wd * 1.0, b = d, x = 1.0 - lr * b;
    REQUIRE(p.item() == Approx(x).epsilon(1e-15));
    p.set_grad(tensor({-0.3}, kFloat64));
    opt.step();
    // step 2: d = -0.3 + wd x; b = mu b + (1 - dampening) d; p -= lr b
    d = -0.3 + wd * x;
    b = mu * b + 0.8 * d;
    x -= lr * b;
    REQUIRE(p.item() == Approx(x).epsilon(1e-15));
  }
  SECTION("nesterov") {
    Tensor p = param_with_grad({2.0}, {1.0});
    SGD opt({p}, {.lr = lr, .momentum = mu, .nesterov = true});
    opt.step();
    double b = 1.0, x = 2.0 - lr * (1.0 + mu * b);  // d + mu b
    REQUIRE(p.item() == Approx(x).epsilon(1e-15));
    p.set_grad(tensor({0.5}, kFloat64));
    opt.step();
    b = mu * b + 0.5;
    x -= lr * (0.5 + mu * b);
    REQUIRE(p.item() == Approx(x).epsilon(1e-15));
  }
  SECTION("a parameter without a grad is skipped") {
    Tensor p = from_vector(std::vector<double>{3.0}, Shape{1}, kFloat64).requires_grad_();
    SGD opt({p}, {.lr = lr, .momentum = mu});
    opt.step();
    REQUIRE(p.item() == 3.0);
  }
}

TEST_CASE("Adam, AdamW and amsgrad: three steps by hand", "[nn][optim]") {
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const std::vector<double> grads = {0.3, -0.2, 0.05};
  for (int variant = 0; variant < 4; ++variant) {
    const bool decoupled = variant == 1, amsgrad = variant == 3;
    const double wd = variant == 0 ? 0.0 : 0.1;
    INFO("variant " << variant);
    Tensor p = param_with_grad({0.7}, {grads[0]});
    std::unique_ptr<Optimizer> opt;
    AdamOptions o{.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd, .amsgrad = amsgrad};
    if (decoupled) opt = std::make_unique<AdamW>(std::vector<Tensor>{p}, o);
    else opt = std::make_unique<Adam>(std::vector<Tensor>{p}, o);
    double x = 0.7, m = 0, v = 0, vmax = 0;
    for (int t = 1; t <= 3; ++t) {
      p.set_grad(tensor({grads[t - 1]}, kFloat64));
      opt->step();
      double g = grads[t - 1];
      if (decoupled) x *= 1 - lr * wd;
      else g += wd * x;
      m = b1 * m + (1 - b1) * g;
      v = b2 * v + (1 - b2) * g * g;
      vmax = std::max(vmax, v);
      // p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)     (v: vmax with amsgrad)
      x -= lr / (1 - std::pow(b1, t)) * m / (std::sqrt(amsgrad ? vmax : v) / std::sqrt(1 - std::pow(b2, t)) + eps);
      REQUIRE(p.item() == Approx(x).epsilon(1e-13));
    }
  }
}

TEST_CASE("Adam: the first step moves each weight by about lr against its gradient's sign", "[nn][optim]") {
  // m_hat = g, v_hat = g^2 after one step, so the update is lr g / (|g| + eps).
  Tensor p = param_with_grad({0.0, 0.0, 0.0}, {1e-3, -5.0, 200.0});
  Adam opt({p}, {.lr = 0.5});
  opt.step();
  REQUIRE_ALLCLOSE(p.detach(), tensor({-0.5, 0.5, -0.5}, kFloat64), 1e-5);
}

TEST_CASE("Optimisers train a small network (loss goes down)", "[nn][optim]") {
  for (int which = 0; which < 3; ++which) {
    Generator gen(10);
    MLP net({2, 16, 3}, "tanh", gen, kFloat64);
    Tensor x = randn({64, 2}, gen, kFloat64);
    // three classes by angle
    std::vector<std::int64_t> y;
    for (std::int64_t i = 0; i < 64; ++i) {
      const double a = std::atan2(x.at({i, 1}), x.at({i, 0}));
      y.push_back(a < -1.0 ? 0 : a < 1.0 ? 1 : 2);
    }
    Tensor target = from_vector(y, Shape{64});
    std::unique_ptr<Optimizer> opt;
    if (which == 0) opt = std::make_unique<SGD>(net.parameters(), SgdOptions{.lr = 0.5, .momentum = 0.9});
    if (which == 1) opt = std::make_unique<Adam>(net.parameters(), AdamOptions{.lr = 0.05});
    if (which == 2) opt = std::make_unique<AdamW>(net.parameters(), AdamOptions{.lr = 0.05, .weight_decay = 0.01});
    double first = 0, last = 0;
    for (int step = 0; step < 100; ++step) {
      opt->zero_grad();
      Tensor loss = cross_entropy(net(x), target);
      backward(loss);
      opt->step();
      if (step == 0) first = loss.item();
      last = loss.item();
    }
    INFO(opt->type_name() << ": " << first << " -> " << last);
    REQUIRE(last < 0.3 * first);
  }
}

TEST_CASE("clip_grad_norm_: scales by max_norm / (norm + 1e-6) only when above", "[nn][optim]") {
  Tensor a = param_with_grad({0, 0}, {3.0, 0.0});
  Tensor b = param_with_grad({0}, {4.0});
  const double norm = clip_grad_norm_({a, b}, 1.0);
  REQUIRE(norm == Approx(5.0).epsilon(1e-15));
  const double c = 1.0 / (5.0 + 1e-6);
  REQUIRE_ALLCLOSE(a.grad(), tensor({3.0 * c, 0.0}, kFloat64), 1e-15);
  REQUIRE_ALLCLOSE(b.grad(), tensor({4.0 * c}, kFloat64), 1e-15);
  // below max_norm: untouched
  REQUIRE(clip_grad_norm_({a, b}, 10.0) == Approx(1.0).epsilon(1e-6));
  REQUIRE(a.grad().at({0}) == 3.0 * c);
  // inf norm = max |g|
  Tensor d = param_with_grad({0, 0}, {-7.0, 2.0});
  REQUIRE(clip_grad_norm_({d}, 1e9, INFINITY) == 7.0);
  // non-finite: error when asked, gradients unchanged
  Tensor e = param_with_grad({0, 0}, {NAN, 1.0});
  REQUIRE_THROWS_WITH(clip_grad_norm_({e}, 1.0, 2.0, true), Contains("total norm") && Contains("nan"));
  REQUIRE(e.grad().at({1}) == 1.0);
}

TEST_CASE("StepLR and CosineAnnealingLR follow PyTorch's formulas", "[nn][optim]") {
  Tensor p = param_with_grad({0}, {0});
  SGD opt({p}, {.lr = 0.1});
  StepLR sched(opt, 2, 0.5);
  std::vector<double> lrs;
  for (int e = 0; e < 5; ++e) {
    sched.step();
    lrs.push_back(opt.lr());
  }
  REQUIRE(lrs == std::vector<double>{0.1, 0.05, 0.05, 0.025, 0.025});
  SGD opt2({p}, {.lr = 1.0});
  CosineAnnealingLR cos(opt2, 4, 0.0);
  std::vector<double> expected = {(1 + std::cos(M_PI / 4)) / 2, 0.5, (1 + std::cos(3 * M_PI / 4)) / 2, 0.0};
  for (double e : expected) {
    cos.step();
    REQUIRE(opt2.lr() == Approx(e).margin(1e-15));
  }
}

TEST_CASE("Optimisers: bad input", "[nn][optim]") {
  Tensor p = param_with_grad({1}, {1});
  REQUIRE_THROWS_WITH(SGD({p}, {.lr = 0.0}), Contains("SGD") && Contains("lr = 0"));
  REQUIRE_THROWS_WITH(SGD({p}, {.lr = -1.0}), Contains("lr = -1"));
  REQUIRE_THROWS_WITH(Adam({p}, {.beta1 = 1.0}), Contains("Adam") && Contains("beta1 = 1"));
  REQUIRE_THROWS_WITH(AdamW({p}, {.beta2 = -0.1}), Contains("AdamW") && Contains("beta2 = -0.1"));
  REQUIRE_THROWS_WITH(SGD({p}, {.lr = 0.1, .nesterov = true}), Contains("nesterov"));
  REQUIRE_THROWS_WITH(SGD({}, {.lr = 0.1}), Contains("empty"));
  REQUIRE_THROWS_WITH(SGD({p, p}, {.lr = 0.1}), Contains("twice"));
  REQUIRE_THROWS_WITH(SGD({zeros({2})}, {.lr = 0.1}), Contains("requires grad"));
  REQUIRE_THROWS_WITH(StepLR(*std::make_unique<SGD>(std::vector<Tensor>{p}, SgdOptions{.lr = 0.1}), 0),
                      Contains("step_size = 0"));
}

TEST_CASE("Adam and AdamW: eps must be finite and > 0", "[nn][optim][hardening]") {
  Tensor p = param_with_grad({1}, {1});
  for (double eps : {0.0, -1e-8, double(NAN), double(INFINITY)}) {
    INFO(eps);
    REQUIRE_THROWS_WITH(Adam({p}, {.eps = eps}), Contains("Adam") && Contains("eps = ") && Contains("eps > 0"));
    REQUIRE_THROWS_WITH(AdamW({p}, {.eps = eps}), Contains("AdamW") && Contains("eps = ") && Contains("eps > 0"));
  }
  REQUIRE_THROWS_WITH(Adam({p}, {.lr = NAN}), Contains("Adam") && Contains("lr = nan"));
  REQUIRE_THROWS_WITH(Adam({p}, {.beta1 = NAN}), Contains("beta1 = nan"));
  REQUIRE_THROWS_WITH(AdamW({p}, {.weight_decay = -0.01}), Contains("AdamW") && Contains("weight_decay = -0.01"));
}

TEST_CASE("AdamW: weight_decay defaults to 0.01 as in PyTorch, Adam's to 0", "[nn][optim][hardening]") {
  Tensor p = param_with_grad({0.5}, {0.2});
  AdamW w({p}, {.lr = 0.1});
  REQUIRE(w.options().weight_decay == 0.01);
  REQUIRE(w.state_dict()["weight_decay"] == 0.01);
  w.step();
  // One step by hand: p *= 1 - lr wd, then p -= lr g / (|g| + eps) (bias-corrected first step).
  const double x = 0.5 * (1 - 0.1 * 0.01) - 0.1 * 0.2 / (0.2 + 1e-8);
  REQUIRE(p.item() == Approx(x).epsilon(1e-15));
  Tensor q = param_with_grad({0.5}, {0.2});
  Adam a({q}, {.lr = 0.1});
  REQUIRE(a.options().weight_decay == 0.0);
  AdamW explicit_zero({q}, {.lr = 0.1, .weight_decay = 0.0});
  REQUIRE(explicit_zero.options().weight_decay == 0.0);
}
