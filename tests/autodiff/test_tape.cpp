// SPDX-License-Identifier: MIT
// The tape and backward: accumulation, retain_graph/create_graph, errors, grad mode, threads, memory.
#include <thread>

#include "autodiff/detail/node.hpp"
#include "autodiff/eigen.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {
Tensor total(const Tensor& t) { return sum_to_size(t, Shape{}); }
}  // namespace

TEST_CASE("tape: a tensor used several times gets the sum of its gradients", "[tape]") {
  Tensor x = tensor({1.0, -2.0, 3.0}, kFloat64).requires_grad_();
  // y = x*x + x + x*3  ->  dy/dx = 2x + 4
  Tensor y = total(x * x + x + x * 3.0);
  backward(y);
  REQUIRE(x.grad().to_vector() == std::vector<double>{6.0, 0.0, 10.0});
  // A second graph accumulates (+=) into the same .grad, as in PyTorch.
  backward(total(x * 2.0));
  REQUIRE(x.grad().to_vector() == std::vector<double>{8.0, 2.0, 12.0});
  x.zero_grad();
  REQUIRE_FALSE(x.grad().defined());
}

TEST_CASE("tape: leaves never share one gradient buffer", "[tape]") {
  Tensor a = tensor({1.0}, kFloat64).requires_grad_();
  Tensor b = tensor({2.0}, kFloat64).requires_grad_();
  backward(total(a + b));          // the add VJP hands the same g to both inputs
  backward(total(a * 5.0));        // in-place accumulation into a.grad only
  REQUIRE(a.grad().item() == 6.0);
  REQUIRE(b.grad().item() == 1.0);
}

TEST_CASE("tape: accumulating into .grad never writes into the caller's grad_out", "[tape]") {
  Tensor x = tensor({{1.0, 2.0}, {3.0, 4.0}}, kFloat64).requires_grad_();
  Tensor go = tensor({1.0, 2.0, 3.0, 4.0}, kFloat64);
  backward(reshape(x, {4}), go);  // reshape's VJP hands back a view of go
  backward(reshape(x, {4}), go);  // the second backward adds into x.grad in place
  REQUIRE(go.to_vector() == std::vector<double>{1.0, 2.0, 3.0, 4.0});
  REQUIRE(x.grad().to_vector() == std::vector<double>{2.0, 4.0, 6.0, 8.0});
  // A large fresh gradient is taken over rather than copied, and still accumulates.
  Tensor big = zeros({1000}, kFloat64).requires_grad_();
  backward(sum(big * 2.0));
  backward(sum(big * 3.0));
  REQUIRE(big.grad().at({999}) == 5.0);
}

TEST_CASE("tape: backward through a released graph says to pass retain_graph", "[tape][bad]") {
  Tensor x = tensor({2.0}, kFloat64).requires_grad_();
  Tensor y = total(x * x);
  backward(y);
  REQUIRE(x.grad().item() == 4.0);
  REQUIRE_THROWS_AS(backward(y), RuntimeError);
  REQUIRE_THROWS_WITH(backward(y), Contains("retain_graph"));
  REQUIRE(x.grad().item() == 4.0);  // unchanged by the failed call

  Tensor z = total(x * x * x);
  backward(z, {.retain_graph = true});
  backward(z);                      // the retained graph can be walked again
  REQUIRE(x.grad().item() == 4.0 + 2 * 12.0);
  REQUIRE_THROWS_WITH(backward(z), Contains("retain_graph"));

  // A new graph built on a released intermediate fails before touching any gradient.
  Tensor h = x * 3.0;
  backward(total(h));
  Tensor w = tensor({1.0}, kFloat64).requires_grad_();
  Tensor k = total(h * w);
  REQUIRE_THROWS_WITH(backward(k), Contains("retain_graph"));
  REQUIRE_FALSE(w.grad().defined());
}

TEST_CASE("tape: backward of a non-scalar needs grad_out of the output's shape", "[tape][bad]") {
  Tensor x = tensor({1.0, 2.0, 3.0}, kFloat64).requires_grad_();
  Tensor y = x * x;
  REQUIRE_THROWS_AS(backward(y), InvalidArgument);
  REQUIRE_THROWS_WITH(backward(y), Contains("grad_out"));
  REQUIRE_THROWS_WITH(backward(y, zeros({2}, kFloat64)), Contains("must match"));
  REQUIRE_THROWS_WITH(backward(y, ones({3}, kFloat32)), Contains("must match"));
  backward(y, tensor({1.0, 0.5, -1.0}, kFloat64));
  REQUIRE(x.grad().to_vector() == std::vector<double>{2.0, 2.0, -6.0});
}

TEST_CASE("tape: backward of something without a graph is an error", "[tape][bad]") {
  Tensor c = tensor({1.0}, kFloat64);
  REQUIRE_THROWS_WITH(backward(total(c * 2.0)), Contains("does not require grad"));
  Tensor x = tensor({1.0}, kFloat64).requires_grad_();
  Tensor y;
  {
    NoGradGuard guard;
    y = x * 2.0;
  }
  REQUIRE_FALSE(y.requires_grad());
  REQUIRE_THROWS_WITH(backward(total(y)), Contains("NoGradGuard"));
}

TEST_CASE("tape: NoGradGuard records nothing and restores the previous mode", "[tape]") {
  clear_tape();
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  {
    NoGradGuard outer;
    {
      NoGradGuard inner;
      REQUIRE_FALSE(GradMode::is_enabled());
    }
    REQUIRE_FALSE(GradMode::is_enabled());
    Tensor y = exp(x) * x;
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE(tape_size() == 0);
  }
  REQUIRE(GradMode::is_enabled());
  Tensor y = exp(x);
  REQUIRE(y.requires_grad());
  REQUIRE(tape_size() == 1);
  REQUIRE(std::string(tape_nodes().back().op) == "exp");
}

TEST_CASE("tape: requires_grad_ and detach", "[tape]") {
  Tensor x = tensor({1.0}, kFloat64).requires_grad_();
  REQUIRE(x.is_leaf());
  Tensor y = x * 2.0;
  REQUIRE_FALSE(y.is_leaf());
  REQUIRE_THROWS_WITH(y.requires_grad_(), Contains("leaves"));
  Tensor d = y.detach();
  REQUIRE(d.is_leaf());
  REQUIRE_FALSE(d.requires_grad());
  d.requires_grad_();
  backward(total(d * 3.0));
  REQUIRE(d.grad().item() == 3.0);
  REQUIRE_FALSE(x.grad().defined());  // detach cut the graph
}

TEST_CASE("tape: create_graph gives second derivatives", "[tape][create_graph]") {
  // f(x) = x^3: f' = 3x^2, f'' = 6x, f''' = 6
  Tensor x = tensor({2.0, -1.0}, kFloat64).requires_grad_();
  Tensor f = total(x * x * x);
  Tensor d1 = grad({f}, {x}, {}, {.create_graph = true})[0];
  REQUIRE(d1.to_vector() == std::vector<double>{12.0, 3.0});
  REQUIRE(d1.requires_grad());
  Tensor d2 = grad({total(d1)}, {x}, {}, {.create_graph = true})[0];
  REQUIRE(d2.to_vector() == std::vector<double>{12.0, -6.0});
  Tensor d3 = grad({total(d2)}, {x})[0];
  REQUIRE(d3.to_vector() == std::vector<double>{6.0, 6.0});
  REQUIRE_FALSE(x.grad().defined());  // grad() returns, it does not accumulate

  // backward with create_graph leaves a differentiable .grad
  Tensor y = tensor({3.0}, kFloat64).requires_grad_();
  backward(total(exp(y * 0.5)), {.create_graph = true});
  Tensor gy = y.grad();  // 0.5 e^{y/2}
  REQUIRE(gy.requires_grad());
  Tensor h = grad({total(gy)}, {y})[0];  // 0.25 e^{y/2}
  REQUIRE(h.item() == Approx(0.25 * std::exp(1.5)).epsilon(1e-14));
}

TEST_CASE("tape: grad() with unused inputs and several outputs", "[tape]") {
  Tensor a = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor b = tensor({5.0}, kFloat64).requires_grad_();
  Tensor y = total(a * a);
  REQUIRE_THROWS_WITH(grad({y}, {a, b}, {}, {.retain_graph = true}), Contains("allow_unused"));
  auto gs = grad({y}, {a, b}, {}, {.retain_graph = true, .allow_unused = true});
  REQUIRE(gs[0].to_vector() == std::vector<double>{2.0, 4.0});
  REQUIRE_FALSE(gs[1].defined());
  // Two outputs: the gradient of their weighted sum.
  Tensor z = total(a * b);
  auto g2 = grad({y, z}, {a, b}, {tensor(1.0, kFloat64), tensor(2.0, kFloat64)});
  REQUIRE(g2[0].to_vector() == std::vector<double>{2.0 + 10.0, 4.0 + 10.0});
  REQUIRE(g2[1].to_vector() == std::vector<double>{2.0 * 3.0});
  // Gradient with respect to an intermediate.
  Tensor h = a * 3.0;
  Tensor o = total(h * h);
  REQUIRE(grad({o}, {h})[0].to_vector() == std::vector<double>{6.0, 12.0});
}

TEST_CASE("tape: a VJP returning the wrong shape is reported with the op's name", "[tape][bad]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor out = x.detach().clone();
  record({"broken_op", "dx = 0 (wrong shape on purpose)"}, {x}, out, {},
         [](const Tensor&, const Saved&) { return Grads{zeros({3}, kFloat64)}; });
  REQUIRE_THROWS_WITH(backward(total(out)), Contains("broken_op") && Contains("shape [3]"));
  Tensor out2 = x.detach().clone();
  record({"two_grads", "dx = g, g (one too many on purpose)"}, {x}, out2, {},
         [](const Tensor& g, const Saved&) { return Grads{g, g}; });
  REQUIRE_THROWS_WITH(backward(total(out2)), Contains("two_grads") && Contains("2 gradients for 1 inputs"));
  clear_tape();
}

TEST_CASE("tape: record takes any number of inputs and saved tensors, as braced lists or vectors", "[tape]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  const auto vjp = [](const Tensor& g, const Saved& s) {
    REQUIRE(s.size() == 5);
    REQUIRE(s.inputs() == 5);
    return Grads{g, g, g, g, g};
  };
  Tensor out = x.detach().clone();
  record({"five_in", "dx = g (five times)"}, {x, x, x, x, x}, out, {x, x, x, x, x}, vjp);
  REQUIRE(!out.is_leaf());
  backward(total(out));
  REQUIRE(x.grad().to_vector() == std::vector<double>{5.0, 5.0});
  x.zero_grad();
  Tensor out2 = x.detach().clone();
  record({"five_in", "dx = g (five times)"}, std::vector<Tensor>{x, x, x, x, x}, out2, std::vector<Tensor>{x, x, x, x, x},
         vjp);
  backward(total(out2));
  REQUIRE(x.grad().to_vector() == std::vector<double>{5.0, 5.0});
  clear_tape();
}

TEST_CASE("tape: Saved::take hands a saved tensor over only to its last reader, and only when no one else holds it", "[tape]") {
  // A fused VJP that doubles g into its saved buffer when it may, else into a new tensor, and
  // reports which it did.
  static int taken = 0, copied = 0;
  const auto vjp = [](const Tensor& g, const Saved& s) {
    Tensor buf = s.take(0);
    if (buf.defined()) {
      ++taken;
      REQUIRE(!s[0].defined());  // handed over
      buf.copy_(g * 2.0);
      return Grads{buf};
    }
    ++copied;
    REQUIRE(s[0].defined());
    return Grads{g * 2.0};
  };
  const auto run = [&](bool hold, const BackwardOptions& opt, int backwards) {
    taken = copied = 0;
    Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    Tensor out = x.detach().clone();
    Tensor buf = zeros({2}, kFloat64);
    record({"twice", "dx = 2 g"}, {x}, out, {buf}, vjp, vjp);
    if (!hold) buf = Tensor();
    for (int i = 0; i < backwards; ++i) backward(out, ones({2}, kFloat64), opt);
    REQUIRE(x.grad().to_vector() == std::vector<double>(2, 2.0 * backwards));
    clear_tape();
  };
  run(/*hold=*/false, {}, 1);
  REQUIRE((taken == 1 && copied == 0));
  run(/*hold=*/true, {}, 1);  // the caller still holds buf: not handed over
  REQUIRE((taken == 0 && copied == 1));
  run(/*hold=*/false, {.retain_graph = true}, 2);  // the graph is walked again: never handed over
  REQUIRE((taken == 0 && copied == 2));
  // cross_entropy's fused backward writes dx over its saved e only when backward is e's last reader:
  // the same gradient either way.
  Generator gen(3);
  const Tensor logits0 = randn({4, 70}, gen), target = randint(0, 70, {4}, gen);
  Tensor l1 = logits0.clone().detach().requires_grad_(), l2 = logits0.clone().detach().requires_grad_();
  backward(cross_entropy(l1, target));
  const Tensor loss2 = cross_entropy(l2, target);
  backward(loss2, {.retain_graph = true});
  REQUIRE(l2.grad().to_vector() == l1.grad().to_vector());
  l2.zero_grad();
  backward(loss2);  // the retained graph's e is intact
  REQUIRE(l2.grad().to_vector() == l1.grad().to_vector());
}

TEST_CASE("tape: the tape is empty after backward and does not grow over 10,000 steps", "[tape][memory]") {
  clear_tape();
  Tensor w = tensor({0.5, -0.5}, kFloat64).requires_grad_();
  Tensor x = tensor({1.0, 2.0}, kFloat64);
  std::size_t max_nodes = 0;
  for (int step = 0; step < 10000; ++step) {
    Tensor loss = total(tanh(w * x) * (w - 1.0));
    max_nodes = std::max(max_nodes, tape_size());
    backward(loss);
    REQUIRE(tape_size() == 0);
  }
  REQUIRE(max_nodes == 5);  // mul, tanh, sub, mul, sum_to_size: one step's graph
  REQUIRE(tape_stats().saved_bytes == 0);

  // Forward passes without backward (e.g. evaluation without NoGradGuard) do not pile up either:
  // a node whose output nobody holds is dropped when the next op is recorded.
  for (int step = 0; step < 1000; ++step) {
    Tensor loss = total(tanh(w * x));
    REQUIRE(tape_size() <= 6);
  }
}

TEST_CASE("tape: tape_stats counts live nodes and saved bytes", "[tape][memory]") {
  clear_tape();
  Tensor x = zeros({10}, kFloat64).requires_grad_();
  Tensor y = exp(x);  // saves y (its VJP is g ⊙ y): 80 bytes; refers to the leaf x: 80 bytes
  TapeStats s = tape_stats();
  REQUIRE(s.nodes == 1);
  REQUIRE(s.live_nodes == 1);
  REQUIRE(s.saved_bytes == 80);
  REQUIRE(s.leaf_bytes == 80);
  backward(total(y));
  REQUIRE(tape_stats().nodes == 0);
}

namespace {
// A small model trained with plain SGD; returns the final weights.
std::vector<double> train_model(double seed_w, int steps) {
  Tensor w = tensor({seed_w, -seed_w, 0.25}, kFloat64).requires_grad_();
  Tensor x = tensor({{1.0, 2.0, -1.0}, {0.5, -1.5, 2.0}}, kFloat64);
  Tensor t = tensor({{0.3, -0.2, 0.1}, {0.0, 0.4, -0.3}}, kFloat64);
  for (int i = 0; i < steps; ++i) {
    Tensor diff = tanh(x * w) - t;
    Tensor loss = total(diff * diff);
    backward(loss);
    NoGradGuard no_grad;
    w.mutable_array<double>() -= 0.05 * w.grad().array<double>();
    w.zero_grad();
  }
  return w.to_vector();
}
}  // namespace

TEST_CASE("tape: two threads train independent models at once, as sequential runs do", "[tape][threads]") {
  const auto seq_a = train_model(0.7, 300);
  const auto seq_b = train_model(-0.3, 300);
  std::vector<double> par_a, par_b;
  std::thread ta([&] { par_a = train_model(0.7, 300); });
  std::thread tb([&] { par_b = train_model(-0.3, 300); });
  ta.join();
  tb.join();
  REQUIRE(par_a == seq_a);  // bit-identical: each thread has its own tape and grad mode
  REQUIRE(par_b == seq_b);
  REQUIRE(seq_a != seq_b);
}

TEST_CASE("tape: a graph recorded on another thread cannot be differentiated here", "[tape][threads][bad]") {
  Tensor x = tensor({1.0}, kFloat64).requires_grad_();
  Tensor y;
  std::thread t([&] { y = total(x * 2.0); });
  t.join();
  REQUIRE_THROWS_WITH(backward(y), Contains("another thread"));
  // A grad-mode guard on one thread does not affect another.
  NoGradGuard guard;
  bool other_enabled = false;
  std::thread u([&] { other_enabled = GradMode::is_enabled(); });
  u.join();
  REQUIRE(other_enabled);
}

// ---------------------------------------------------------------- errors

TEST_CASE("errors name the op the user called", "[hardening][errors]") {
  SECTION("backward twice names the released op and says retain_graph") {
    const Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    const Tensor y = sum(exp(x));
    backward(y);
    REQUIRE_THROWS_WITH(backward(y), Contains("'sum'") && Contains("retain_graph"));
  }
  SECTION("permutation(-1)") {
    Generator gen(1);
    REQUIRE_THROWS_AS(nn::permutation(-1, gen), InvalidArgument);
    REQUIRE_THROWS_WITH(nn::permutation(-1, gen), Contains("permutation") && Contains("-1"));
  }
}
