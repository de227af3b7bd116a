// SPDX-License-Identifier: MIT
// mse_loss, l1_loss, smooth_l1_loss: values against numbers computed in Python (double precision,
// plain arithmetic on the same inputs, printed with repr), gradients at chosen points by hand
// (including the kinks, with PyTorch's conventions), float64 gradcheck and gradgradcheck over
// reductions and shapes (rank 0, 1, 7, rank 4, size-1 dims), empty tensors, and bad input.
#include <cmath>
#include <functional>
#include <limits>

#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }

// The value tables' inputs: d = input - target = [0.2, 0, 1.5, 2, -0.8, -0.6] (one exact 0, one
// |d| = 2, the rest inside and outside smooth_l1's quadratic zone for beta 1 and 0.5).
Tensor table_input() { return tensor({{0.5, -1.2, 2.0}, {1.5, 0.2, -0.7}}, kFloat64); }
Tensor table_target() { return tensor({{0.3, -1.2, 0.5}, {-0.5, 1.0, -0.1}}, kFloat64); }

using Loss = std::function<Tensor(const Tensor&, const Tensor&, Reduction)>;

struct NamedLoss {
  const char* name;
  Loss f;
  double kink;  // |d| where the loss is not twice differentiable (besides 0), or -1
};

std::vector<NamedLoss> all_losses() {
  return {
      {"mse_loss", [](const Tensor& x, const Tensor& t, Reduction r) { return mse_loss(x, t, r); }, -1},
      {"l1_loss", [](const Tensor& x, const Tensor& t, Reduction r) { return l1_loss(x, t, r); }, -1},
      {"smooth_l1_loss", [](const Tensor& x, const Tensor& t, Reduction r) { return smooth_l1_loss(x, t, r); }, 1.0},
      {"smooth_l1_loss(beta=0.5)",
       [](const Tensor& x, const Tensor& t, Reduction r) { return smooth_l1_loss(x, t, r, 0.5); }, 0.5},
      {"smooth_l1_loss(beta=0)",
       [](const Tensor& x, const Tensor& t, Reduction r) { return smooth_l1_loss(x, t, r, 0.0); }, -1},
  };
}

// Random float64 leaves (input, target) of shape s whose differences stay at least 0.1 away from
// 0 and from `kink`, so central differences never straddle a kink.
std::pair<Tensor, Tensor> away_from_kinks(const Shape& s, Generator& gen, double kink) {
  Tensor x = randn(s, gen, kFloat64);
  Tensor t = randn(s, gen, kFloat64);
  const double* px = x.data<double>();
  double* pt = t.mutable_data<double>();
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    for (int k = 0; k < 4; ++k) {
      const double d = px[i] - pt[i];
      const bool near = std::abs(d) < 0.1 || (kink > 0 && std::abs(std::abs(d) - kink) < 0.1);
      if (!near) break;
      pt[i] -= 0.25;  // moves d by 0.25: off a kink, and never onto the next one within 4 steps
    }
  }
  return {x.requires_grad_(), t.requires_grad_()};
}

const std::vector<Shape> kShapes = {Shape{}, Shape{1}, Shape{7}, Shape{2, 3}, Shape{3, 1}, Shape{1, 2, 1, 3}};
const std::vector<Reduction> kReductions = {Reduction::None, Reduction::Mean, Reduction::Sum};

}  // namespace

TEST_CASE("regression losses: values match Python for every reduction", "[ops][loss][regression_loss]") {
  // Python (double): d = [a - b for a, b in zip(X, T)]; mse d*d; l1 abs(d);
  // smooth l1: 0.5*d*d/beta if abs(d) < beta else abs(d) - 0.5*beta; sums and sum/6.
  const Tensor x = table_input(), t = table_target();
  const Shape s{2, 3};
  auto check = [&](const Tensor& none, const Tensor& mean, const Tensor& sum, const std::vector<double>& l, double total) {
    REQUIRE_ALLCLOSE(none, from_vector(l, s, kFloat64), 1e-14, 1e-15);
    REQUIRE_ALLCLOSE(sum, tensor(total, kFloat64), 1e-14);
    REQUIRE_ALLCLOSE(mean, tensor(total / 6.0, kFloat64), 1e-14);
  };
  check(mse_loss(x, t, Reduction::None), mse_loss(x, t), mse_loss(x, t, Reduction::Sum),
        {0.04000000000000001, 0.0, 2.25, 4.0, 0.6400000000000001, 0.36}, 7.29);
  check(l1_loss(x, t, Reduction::None), l1_loss(x, t), l1_loss(x, t, Reduction::Sum), {0.2, 0.0, 1.5, 2.0, 0.8, 0.6}, 5.1);
  check(smooth_l1_loss(x, t, Reduction::None), smooth_l1_loss(x, t), smooth_l1_loss(x, t, Reduction::Sum),
        {0.020000000000000004, 0.0, 1.0, 1.5, 0.32000000000000006, 0.18}, 3.02);
  check(smooth_l1_loss(x, t, Reduction::None, 0.5), smooth_l1_loss(x, t, Reduction::Mean, 0.5),
        smooth_l1_loss(x, t, Reduction::Sum, 0.5), {0.04000000000000001, 0.0, 1.25, 1.75, 0.55, 0.35}, 3.94);
  // beta = 0 is l1_loss exactly.
  REQUIRE_ALLCLOSE(smooth_l1_loss(x, t, Reduction::None, 0.0), l1_loss(x, t, Reduction::None), 0, 0);
  // The default reduction is mean; output dtype follows the input (float32 too).
  REQUIRE(mse_loss(x, t).dim() == 0);
  const Tensor l32 = mse_loss(x.to(kFloat32), t.to(kFloat32));
  REQUIRE(l32.dtype() == kFloat32);
  REQUIRE(std::abs(l32.item() - 1.215) < 1e-6);
}

TEST_CASE("regression losses: gradients at chosen points, kinks as PyTorch", "[ops][loss][regression_loss]") {
  // Hand derivatives of the mean over 6 elements, d = [0.2, 0, 1.5, 2, -0.8, -0.6]:
  //   mse 2d/6;  l1 sign(d)/6 (sign(0) = 0, PyTorch);  smooth_l1(beta 1) clamp(d, -1, 1)/6.
  auto grads = [](const std::function<Tensor(const Tensor&, const Tensor&)>& f) {
    Tensor x = table_input().requires_grad_();
    Tensor t = table_target().requires_grad_();
    backward(f(x, t));
    return std::pair{x.grad(), t.grad()};
  };
  const Shape s{2, 3};
  {
    auto [gx, gt] = grads([](const Tensor& x, const Tensor& t) { return mse_loss(x, t); });
    const Tensor e = from_vector({0.06666666666666667, 0.0, 0.5, 0.6666666666666666, -0.26666666666666666, -0.2}, s, kFloat64);
    REQUIRE_ALLCLOSE(gx, e, 1e-13, 1e-15);
    REQUIRE_ALLCLOSE(gt, -e, 1e-13, 1e-15);
  }
  {
    auto [gx, gt] = grads([](const Tensor& x, const Tensor& t) { return l1_loss(x, t); });
    const Tensor e = from_vector({1.0 / 6, 0.0, 1.0 / 6, 1.0 / 6, -1.0 / 6, -1.0 / 6}, s, kFloat64);
    REQUIRE_ALLCLOSE(gx, e, 1e-14, 0);  // element 1: d = 0 gives exactly 0
    REQUIRE_ALLCLOSE(gt, -e, 1e-14, 0);
  }
  {
    auto [gx, gt] = grads([](const Tensor& x, const Tensor& t) { return smooth_l1_loss(x, t); });
    const Tensor e = from_vector({0.2 / 6, 0.0, 1.0 / 6, 1.0 / 6, -0.8 / 6, -0.6 / 6}, s, kFloat64);
    REQUIRE_ALLCLOSE(gx, e, 1e-13, 1e-15);
    REQUIRE_ALLCLOSE(gt, -e, 1e-13, 1e-15);
  }
  // smooth_l1 exactly at |d| = beta: PyTorch's kernel gives sign(d) (its x >= beta branch); both
  // pieces meet there with slope +-1. beta = 0 at d = 0: 0, as l1_loss (PyTorch >= 2.0 dispatches to
  // l1_loss; 1.13's kernel gave -1 there).
  {
    Tensor x = f64({1.0, -0.5, 0.0, 3.0}).requires_grad_();
    backward(smooth_l1_loss(x, f64({0.0, 0.0, 0.0, 2.5}), Reduction::Sum, 0.5));
    REQUIRE_ALLCLOSE(x.grad(), f64({1.0, -1.0, 0.0, 1.0}), 0, 0);
    Tensor y = f64({0.0, 2.0, -2.0}).requires_grad_();
    backward(smooth_l1_loss(y, zeros({3}, kFloat64), Reduction::Sum, 0.0));
    REQUIRE_ALLCLOSE(y.grad(), f64({0.0, 1.0, -1.0}), 0, 0);
  }
  // reduction none: the upstream gradient multiplies elementwise.
  {
    Tensor x = f64({1.0, 2.0}).requires_grad_();
    backward(mse_loss(x, f64({0.5, 3.0}), Reduction::None), f64({10.0, -1.0}));
    REQUIRE_ALLCLOSE(x.grad(), f64({10.0, 2.0}), 1e-15, 0);
  }
}

TEST_CASE("regression losses: gradcheck and gradgradcheck on several shapes", "[ops][loss][regression_loss][gradcheck]") {
  std::uint64_t seed = 100;
  for (const NamedLoss& loss : all_losses())
    for (Reduction r : kReductions)
      for (const Shape& s : kShapes) {
        Generator gen(seed++);
        auto [x, t] = away_from_kinks(s, gen, loss.kink);
        INFO(loss.name << " reduction " << static_cast<int>(r) << " shape " << s.str());
        const Function f = [&loss, r](const std::vector<Tensor>& in) { return loss.f(in[0], in[1], r); };
        testing::require_gradcheck(f, {x, t}, /*second_order=*/true);
      }
}

TEST_CASE("regression losses: create_graph gives mse_loss's second derivative 2/N", "[ops][loss][regression_loss]") {
  Tensor x = f64({0.3, -1.0, 2.0}).requires_grad_();
  const Tensor t = f64({0.0, 0.5, 1.0});
  GradOptions o;
  o.create_graph = true;
  const Tensor gx = grad({mse_loss(x, t)}, {x}, {}, o)[0];
  const Tensor h = grad({sum(gx)}, {x})[0];  // d/dx of sum(2 (x - t) / 3) = 2/3 each
  REQUIRE_ALLCLOSE(h, f64({2.0 / 3, 2.0 / 3, 2.0 / 3}), 1e-15);
}

TEST_CASE("regression losses: empty tensors work forward and backward", "[ops][loss][regression_loss][empty]") {
  for (const NamedLoss& loss : all_losses())
    for (const Shape& s : {Shape{0}, Shape{2, 0, 3}}) {
      INFO(loss.name << " shape " << s.str());
      for (Reduction r : kReductions) {
        Tensor x = zeros(s, kFloat64).requires_grad_();
        Tensor t = zeros(s, kFloat64).requires_grad_();
        const Tensor l = loss.f(x, t, r);
        if (r == Reduction::None) {
          REQUIRE(l.shape() == s);
          backward(l, zeros(s, kFloat64));
        } else {
          // sum of nothing is 0; mean of nothing is 0 too (tapegrad's policy, as kl_div; PyTorch: NaN)
          REQUIRE(l.dim() == 0);
          REQUIRE(l.item() == 0.0);
          backward(l);
        }
        // An undefined grad or an empty one: either way no elements, and nothing threw.
        if (x.grad().defined()) REQUIRE(x.grad().shape() == s);
        if (t.grad().defined()) REQUIRE(t.grad().shape() == s);
      }
    }
}

TEST_CASE("regression losses: bad input throws, naming the op, the argument and the fix", "[ops][loss][regression_loss][bad]") {
  const Tensor a = zeros({2, 3}, kFloat64);
  for (const char* op : {"mse_loss", "l1_loss", "smooth_l1_loss"}) {
    INFO(op);
    const std::string name = op;
    auto call = [&](const Tensor& x, const Tensor& t, Reduction r) {
      if (name == "mse_loss") return mse_loss(x, t, r);
      if (name == "l1_loss") return l1_loss(x, t, r);
      return smooth_l1_loss(x, t, r);
    };
    // Shapes differ (PyTorch would broadcast with a warning): an error here, even when they broadcast.
    REQUIRE_THROWS_AS(call(zeros({3, 1}, kFloat64), zeros({3}, kFloat64), Reduction::Mean), InvalidArgument);
    REQUIRE_THROWS_WITH(call(zeros({3, 1}, kFloat64), zeros({3}, kFloat64), Reduction::Mean),
                        Contains(name + ": target of shape [3] does not match input of shape [3, 1]") &&
                            Contains("expected the same shape"));
    REQUIRE_THROWS_WITH(call(a, zeros({2, 3}, kFloat32), Reduction::Mean),
                        Contains(name + ": input is float64 but target is float32"));
    REQUIRE_THROWS_WITH(call(zeros({2}, kInt64), zeros({2}, kInt64), Reduction::Mean),
                        Contains(name + ": input has dtype int64") && Contains("expected float32 or float64"));
    REQUIRE_THROWS_WITH(call(a, Tensor(), Reduction::Mean), Contains(name + ": target is an undefined Tensor"));
    REQUIRE_THROWS_WITH(call(a, a, Reduction::BatchMean), Contains(name + ": reduction = batchmean is only defined for kl_div"));
  }
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, -1.0),
                      Contains("smooth_l1_loss: beta = -1; expected a finite beta >= 0"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, std::nan("")), Contains("smooth_l1_loss: beta = nan"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, std::numeric_limits<double>::infinity()),
                      Contains("smooth_l1_loss: beta = inf"));
  // Errors name the caller's line (the ops open a SiteScope with their SourceLocation).
  REQUIRE_THROWS_WITH(mse_loss(a, zeros({3}, kFloat64)), Contains("(called from ") && Contains("test_regression_loss.cpp:"));
  REQUIRE_THROWS_WITH(l1_loss(a, zeros({3}, kFloat64)), Contains("test_regression_loss.cpp:"));
  REQUIRE_THROWS_WITH(smooth_l1_loss(a, a, Reduction::Mean, -2.0), Contains("test_regression_loss.cpp:"));
}

TEST_CASE("regression losses: the tape names them and inspect knows their VJPs", "[ops][loss][regression_loss][inspect]") {
  Tensor x = zeros({2}, kFloat64).requires_grad_();
  const Tensor t = ones({2}, kFloat64);
  for (const char* op : {"mse_loss", "l1_loss", "smooth_l1_loss"}) {
    const std::string name = op;
    const Tensor l = name == "mse_loss" ? mse_loss(x, t) : name == "l1_loss" ? l1_loss(x, t) : smooth_l1_loss(x, t);
    const char* producer = producer_name(l);
    REQUIRE(producer != nullptr);
    REQUIRE(std::string(producer) == name);
    REQUIRE_FALSE(vjp_formula(op).empty());
  }
}
