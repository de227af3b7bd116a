// SPDX-License-Identifier: MIT
// Regression tests for issue 11 ("Hardening"): empty tensors through forward and backward,
// dtype of hessian, error messages that name the op the user called, from_vector with a braced list.
#include <limits>

#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {
Tensor empty_leaf(const Shape& s) { return zeros(s, kFloat64).requires_grad_(); }

// Backward with a grad_out of ones; every input that requires grad gets a grad of its own shape.
void backward_ones(const Tensor& out, const std::vector<Tensor>& inputs) {
  backward(out, ones_like(out).detach());
  for (const Tensor& in : inputs) {
    INFO("input shape " << in.shape().str());
    REQUIRE(in.grad().defined());
    REQUIRE(in.grad().shape() == in.shape());
  }
}
}  // namespace

TEST_CASE("empty tensors: broadcasting binary ops against empties, forward and backward", "[hardening][empty]") {
  // The repro of issue 11: sum_to_size divided by the zero element count (SIGFPE).
  const Tensor a = empty_leaf({0});
  backward(sum(add(a, zeros({3, 0}, kFloat64))));
  REQUIRE(a.grad().shape() == Shape{0});

  struct Pair { Shape a, b, out; };
  const std::vector<Pair> pairs = {{{0}, {3, 0}, {3, 0}}, {{0, 4}, {4}, {0, 4}}, {{3, 1}, {0}, {3, 0}},
                                   {{1}, {0}, {0}},       {{0}, {}, {0}},         {{2, 0}, {2, 1}, {2, 0}}};
  for (const Pair& p : pairs) {
    INFO(p.a.str() << " with " << p.b.str());
    for (auto op : {&add, &sub, &mul, &div, &maximum, &minimum}) {
      const Tensor x = empty_leaf(p.a), y = ones(p.b, kFloat64).requires_grad_();
      const Tensor out = op(x, y, SourceLocation::current());
      REQUIRE(out.shape() == p.out);
      backward_ones(out, {x, y});
      if (y.numel() > 0) REQUIRE(sum(y.grad()).item() == 0.0);  // summed over no elements
    }
    const Tensor x = empty_leaf(p.a);
    backward_ones(broadcast_to(x, p.out), {x});
  }
}

TEST_CASE("empty tensors: reductions and matmul", "[hardening][empty]") {
  const Tensor x = empty_leaf({3, 0});
  const Tensor s = sum(x);
  REQUIRE(s.item() == 0.0);
  backward_ones(s, {x});
  const Tensor r = sum(x, 1);
  REQUIRE(r.shape() == Shape{3});
  REQUIRE(r.to_vector() == std::vector<double>{0, 0, 0});

  const Tensor a = empty_leaf({2, 0}), b = empty_leaf({0, 3});
  const Tensor c = matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 3});
  REQUIRE(c.to_vector() == std::vector<double>(6, 0.0));
  backward_ones(c, {a, b});
  const Tensor u = empty_leaf({0, 3}), w = ones({3, 2}, kFloat64).requires_grad_();
  const Tensor uw = matmul(u, w);
  REQUIRE(uw.shape() == Shape{0, 2});
  backward_ones(uw, {u, w});
  REQUIRE(sum(w.grad()).item() == 0.0);

  REQUIRE_THROWS_WITH(max(x, 1), Contains("max") && Contains("size 0"));
  REQUIRE_THROWS_WITH(argmax(x, 1), Contains("argmax") && Contains("size 0"));
}

TEST_CASE("hessian returns the input's dtype (float32 and float64)", "[hardening][gradcheck]") {
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor x = tensor({1.0, 2.0}, dt);
    const Tensor h = hessian([](const Tensor& t) { return sum(mul(t, t)); }, x);
    REQUIRE(h.dtype() == dt);
    REQUIRE(h.shape() == Shape{2, 2});
    REQUIRE(h.to_vector() == std::vector<double>{2, 0, 0, 2});
  }
}

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

TEST_CASE("README: from_vector({1.0, 2.0}, Shape{2, 1}) compiles and gives float32 [2, 1]", "[hardening][factories]") {
  const Tensor t = from_vector({1.0, 2.0}, Shape{2, 1});
  REQUIRE(t.dtype() == kFloat32);
  REQUIRE(t.shape() == Shape{2, 1});
  REQUIRE(t.to_vector() == std::vector<double>{1.0, 2.0});
}

TEST_CASE("custom_op records the user's call site (trace and errors)", "[hardening][custom_op]") {
  const Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  const int line = __LINE__ + 1;
  const Tensor y = custom_op("twice", x, [](const Tensor& t) { return mul(t, 2.0); },
                             [](const Tensor&, const Tensor& g) { return mul(g, 2.0); });
  BackwardTrace trace;
  backward(sum(y), {.trace = &trace});
  bool found = false;
  for (const TraceStep& s : trace.steps)
    if (s.op == "twice") {
      INFO("site: " << s.site);
      REQUIRE_THAT(s.site, Contains(fmt::format("test_hardening.cpp:{}", line)));
      found = true;
    }
  REQUIRE(found);
  // An error thrown inside the op carries the site too.
  REQUIRE_THROWS_WITH(custom_op("bad", {x}, [](const std::vector<Tensor>&) { return Tensor(); },
                                [](const std::vector<Tensor>&, const Tensor&, const Tensor&) { return Grads{}; }),
                      Contains("test_hardening.cpp:"));
}

TEST_CASE("empty tensors: shape ops, softmax family, losses, attention", "[hardening][empty]") {
  const Tensor x = empty_leaf({3, 0});
  backward_ones(reshape(x, {0, 3}), {x});
  const Tensor x2 = empty_leaf({0, 4});
  backward_ones(transpose(x2, 0, 1), {x2});
  const Tensor x3 = empty_leaf({0, 4});
  backward_ones(cat({x3, ones({2, 4}, kFloat64)}, 0), {x3});
  const Tensor x4 = empty_leaf({0, 4});
  backward_ones(slice(x4, 1, 1, 3), {x4});
  const Tensor x5 = empty_leaf({2, 4});
  backward_ones(index_select(x5, 0, from_vector(std::vector<std::int64_t>{}, Shape{0})), {x5});

  for (const Shape& s : {Shape{0, 4}, Shape{3, 0}}) {
    INFO("shape " << s.str());
    const Tensor a = empty_leaf(s), b = empty_leaf(s);
    backward_ones(softmax(a, 1), {a});
    backward_ones(log_softmax(b, 1), {b});
  }
  const Tensor l = empty_leaf({3, 0});
  const Tensor lse = logsumexp(l, 1);  // log of an empty sum: -inf, as PyTorch
  REQUIRE(lse.shape() == Shape{3});
  for (double v : lse.to_vector()) REQUIRE(v == -std::numeric_limits<double>::infinity());
  backward_ones(lse, {l});

  const Tensor logits = empty_leaf({0, 3});
  const Tensor target = from_vector(std::vector<std::int64_t>{}, Shape{0});
  const Tensor ce = cross_entropy(logits, target, {.reduction = Reduction::Sum});
  REQUIRE(ce.item() == 0.0);
  backward_ones(ce, {logits});
  const Tensor z = empty_leaf({0, 3});
  const Tensor bce = binary_cross_entropy_with_logits(z, zeros({0, 3}, kFloat64), {.reduction = Reduction::Sum});
  REQUIRE(bce.item() == 0.0);
  backward_ones(bce, {z});

  const Tensor q = empty_leaf({0, 4}), k = ones({3, 4}, kFloat64).requires_grad_(), v = ones({3, 5}, kFloat64).requires_grad_();
  const Tensor att = scaled_dot_product_attention(q, k, v);
  REQUIRE(att.shape() == Shape{0, 5});
  backward_ones(att, {q, k, v});
  const Tensor ln = empty_leaf({0, 4});
  backward_ones(layer_norm(ln, {4}), {ln});
}

TEST_CASE("absurd sizes are rejected before allocating, naming the op and the shape", "[hardening][alloc]") {
  const std::int64_t big = std::int64_t{1} << 62;
  REQUIRE_THROWS_WITH(Shape({big, 4}).numel(), Contains("[4611686018427387904, 4]") && Contains("overflow"));
  REQUIRE_THROWS_WITH(zeros({1000000, 1000000}), Contains("zeros") && Contains("[1000000, 1000000]") &&
                                                     Contains("1e+12 elements") && Contains("memory"));
  REQUIRE_THROWS_WITH(zeros({big, 4}), Contains("zeros") && Contains("overflow"));
  REQUIRE_THROWS_WITH(arange(1e12), Contains("arange") && Contains("memory"));
  REQUIRE_THROWS_WITH(broadcast_to(zeros({1, 1}), Shape{1000000, 1000000}), Contains("broadcast_to") && Contains("memory"));
  REQUIRE_THROWS_WITH(matmul(zeros({1000000, 0}), zeros({0, 1000000})), Contains("matmul") && Contains("memory"));
  Generator gen(1);
  REQUIRE_THROWS_WITH(nn::Linear(1000000, 1000000, gen), Contains("Linear") && Contains("[1000000, 1000000]") && Contains("memory"));
  // Every user-sized allocation names the function the user called, not an internal "tensor".
  REQUIRE_THROWS_WITH(linspace(0.0, 1.0, 1000000000000), StartsWith("linspace:") && Contains("memory"));
  REQUIRE_THROWS_WITH(nn::Embedding(1000000000000, 4, gen), StartsWith("Embedding:") && Contains("memory"));
  REQUIRE_THROWS_WITH(nn::LearnedPositionalEncoding(1000000000000, 4, gen),
                      StartsWith("LearnedPositionalEncoding:") && Contains("memory"));
  REQUIRE_THROWS_WITH(nn::sinusoidal_positional_encoding(1000000000000, 4),
                      StartsWith("sinusoidal_positional_encoding:") && Contains("memory"));
  REQUIRE_THROWS_WITH(nn::MultiheadAttention(std::int64_t{1} << 62, 1, gen), StartsWith("MultiheadAttention:"));
}

TEST_CASE("retain_grad: a non-leaf gets its grad accumulated by backward", "[hardening][retain_grad]") {
  const Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor h = mul(x, 3.0);
  REQUIRE_FALSE(h.retains_grad());
  h.retain_grad();
  REQUIRE(h.retains_grad());
  const Tensor y = sum(mul(h, h));  // dy/dh = 2h = [6, 12]
  backward(y, {.retain_graph = true});
  REQUIRE(h.grad().to_vector() == std::vector<double>{6, 12});
  backward(y);  // accumulates
  REQUIRE(h.grad().to_vector() == std::vector<double>{12, 24});
  REQUIRE(x.grad().to_vector() == std::vector<double>{36, 72});
  // With create_graph the retained grad is itself differentiable.
  const Tensor x2 = tensor({1.0}, kFloat64).requires_grad_();
  Tensor h2 = mul(x2, x2);
  h2.retain_grad();
  backward(sum(mul(h2, x2)), {.create_graph = true});  // d/dh2 = x2
  REQUIRE(h2.grad().requires_grad());
  // On a leaf it is a no-op, as in PyTorch.
  Tensor leaf = tensor({1.0}, kFloat64).requires_grad_();
  leaf.retain_grad();
  REQUIRE_FALSE(leaf.retains_grad());
  // A non-leaf that did not ask keeps no grad, and reading it says so instead of handing back an
  // undefined tensor that reads as "no gradient".
  const Tensor h3 = mul(x, 2.0);
  backward(sum(h3));
  REQUIRE_THROWS_AS(h3.grad(), RuntimeError);
  REQUIRE_THROWS_WITH(h3.grad(), Contains("'mul'") && Contains("non-leaf") && Contains("retain_grad()"));
  // Outputs that do not require grad (constants, no_grad results) are not non-leaves: undefined grad.
  REQUIRE_FALSE(mul(tensor({1.0}, kFloat64), 2.0).grad().defined());
}

TEST_CASE("Shape: a braced list with too many or negative sizes names the list and the caller's line, not an op",
          "[hardening][shape]") {
  // Before: "tensor: 5 dims requested ..." with no line, as if an op called tensor had failed.
  // (one line: gcc and clang attribute a call spread over lines of a macro to different lines)
  std::string message = "(no InvalidArgument thrown)";
  try { zeros({1, 1, 1, 1, 1}); } catch (const InvalidArgument& e) { message = e.what(); } const int line = __LINE__;
  REQUIRE_THAT(message, Contains("Shape {1, 1, 1, 1, 1}: 5 dims") && Contains("rank 0 to 4") &&
                            Contains("test_hardening.cpp:" + std::to_string(line) + ")"));
  REQUIRE_THROWS_WITH(broadcast_to(zeros({2, 2}), Shape{1, 1, 1, 2, 2}), Contains("Shape {1, 1, 1, 2, 2}: 5 dims"));
  REQUIRE_THROWS_WITH(zeros({2, -3}), Contains("Shape {2, -3}: size -3 is negative"));
  REQUIRE_THROWS_WITH(Shape(std::vector<std::int64_t>{1, 2, 3, 4, 5}), Contains("Shape {1, 2, 3, 4, 5}: 5 dims"));
  // Ops that would produce rank 5 say so themselves.
  const Tensor x = zeros({1, 1, 2, 2}, kFloat64);
  REQUIRE_THROWS_WITH(unsqueeze(x, 0), Contains("unsqueeze") && Contains("at most 4 dims"));
  REQUIRE_THROWS_WITH(stack({x, x}, 0), Contains("stack") && Contains("at most 4"));
  // matmul of rank-4 operands stays rank 4 (batch dims broadcast, never concatenate).
  REQUIRE(matmul(zeros({2, 1, 2, 3}), zeros({1, 2, 3, 4})).shape() == Shape{2, 2, 2, 4});
}

TEST_CASE("empty tensors: every unary op and the remaining ops, forward and VJP (first and second order)",
          "[hardening][empty]") {
  using Unary = std::function<Tensor(const Tensor&)>;
  const std::vector<std::pair<const char*, Unary>> unary = {
      {"neg", [](const Tensor& x) { return neg(x); }},
      {"exp", [](const Tensor& x) { return exp(x); }},
      {"log", [](const Tensor& x) { return log(x); }},
      {"log1p", [](const Tensor& x) { return log1p(x); }},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }},
      {"abs", [](const Tensor& x) { return abs(x); }},
      {"sin", [](const Tensor& x) { return sin(x); }},
      {"cos", [](const Tensor& x) { return cos(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }},
      {"softplus", [](const Tensor& x) { return softplus(x); }},
      {"relu", [](const Tensor& x) { return relu(x); }},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x); }},
      {"gelu", [](const Tensor& x) { return gelu(x); }},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, "tanh"); }},
      {"erf", [](const Tensor& x) { return erf(x); }},
      {"clamp", [](const Tensor& x) { return clamp(x, -1.0, 1.0); }},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }},
      {"pow tensor", [](const Tensor& x) { return pow(x, ones_like(x).detach()); }},
      {"where", [](const Tensor& x) { return where(gt(x, 0.0), x, 2.0); }},
      {"masked_fill", [](const Tensor& x) { return masked_fill(x, gt(x, 0.0), 1.0); }},
      {"to float32", [](const Tensor& x) { return x.to(kFloat32); }},
      {"clone", [](const Tensor& x) { return x.clone(); }},
      {"sum dim 0", [](const Tensor& x) { return sum(x, 0); }},
      {"mean dim 1", [](const Tensor& x) { return mean(x, 1); }},  // [0, 3] -> [0]: nothing divided by 3
      {"permute", [](const Tensor& x) { return permute(x, {1, 0}); }},
      {"unsqueeze", [](const Tensor& x) { return unsqueeze(x, 1); }},
      {"flatten", [](const Tensor& x) { return flatten(x); }},
      {"narrow", [](const Tensor& x) { return narrow(x, 1, 1, 2); }},
      {"stack", [](const Tensor& x) { return stack({x, x}, 0); }},
      {"gather", [](const Tensor& x) { return gather(x, 1, zeros(x.shape(), kInt64)); }},
      {"scatter_add", [](const Tensor& x) { return scatter_add(x, 1, zeros(x.shape(), kInt64), x); }},
      {"index_add", [](const Tensor& x) { return index_add(x, 0, zeros({0}, kInt64), x); }},
      {"linear", [](const Tensor& x) { return linear(x, ones({2, 3}, kFloat64), ones({2}, kFloat64)); }},
      {"softmax T", [](const Tensor& x) { return softmax(x, 1, 2.0); }},
      {"mse_loss sum", [](const Tensor& x) { return mse_loss(x, zeros_like(x), Reduction::Sum); }},
      {"l1_loss none", [](const Tensor& x) { return l1_loss(x, zeros_like(x), Reduction::None); }},
      {"smooth_l1_loss sum", [](const Tensor& x) { return smooth_l1_loss(x, zeros_like(x), Reduction::Sum); }},
  };
  for (const auto& [name, f] : unary) {
    INFO("op " << name);
    const Tensor x = empty_leaf({0, 3});
    const Tensor y = f(x);
    for (double v : y.to_vector()) REQUIRE(v == 0.0);  // empty, or sums of nothing (sum over dim 0: [0, 0, 0])
    backward_ones(y, {x});
    // second order: the VJP of the VJP on empties too
    const Tensor x2 = empty_leaf({0, 3});
    const std::vector<Tensor> g = grad({f(x2)}, {x2}, {ones_like(f(x2)).detach()}, {.create_graph = true, .allow_unused = true});
    if (g[0].defined() && g[0].requires_grad()) {
      backward(sum(g[0]));
      SUCCEED();
    }
  }
  REQUIRE(sign(empty_leaf({0, 3})).shape() == Shape{0, 3});  // no gradient (not recorded)
  // Index ops with empty indices into non-empty inputs.
  const Tensor w = ones({4, 3}, kFloat64).requires_grad_();
  backward_ones(embedding(w, zeros({0}, kInt64)), {w});
  REQUIRE(sum(w.grad()).item() == 0.0);
  const Tensor lp = empty_leaf({0, 3});
  REQUIRE(nll_loss(lp, zeros({0}, kInt64), {.reduction = Reduction::Sum}).item() == 0.0);
  backward_ones(nll_loss(lp, zeros({0}, kInt64), {.reduction = Reduction::Sum}), {lp});
  const Tensor kl = empty_leaf({0, 3});
  backward_ones(kl_div(kl, zeros({0, 3}, kFloat64), {.reduction = Reduction::Sum}), {kl});
  // mean of nothing: PyTorch gives NaN; tapegrad says so instead.
  REQUIRE_THROWS_WITH(mean(empty_leaf({0, 3})), Contains("mean"));
}
