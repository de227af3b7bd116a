// SPDX-License-Identifier: MIT
// Tensor: factories (linspace, absurd sizes, braced Shapes), values, dtypes, conversions, printing,
// retain_grad, and the generator's exact streams.
#include <string>
#include <thread>

#include "autodiff/detail/pool.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {
Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }
}  // namespace

TEST_CASE("tensor: nested initializer lists give shape, dtype and row-major values", "[tensor]") {
  Tensor a = tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64);
  REQUIRE(a.shape() == Shape{2, 3});
  REQUIRE(a.dtype() == kFloat64);
  REQUIRE(a.numel() == 6);
  REQUIRE(a.dim() == 2);
  REQUIRE(a.to_vector() == std::vector<double>{1, 2, 3, 4, 5, 6});
  REQUIRE(a.at({1, 0}) == 4.0);
  REQUIRE(a.size(-1) == 3);

  Tensor s = tensor(2.5);
  REQUIRE(s.dim() == 0);
  REQUIRE(s.dtype() == kFloat32);
  REQUIRE(s.item() == 2.5);

  Tensor c = tensor({{{1, 2}}, {{3, 4}}}, kFloat64);
  REQUIRE(c.shape() == Shape{2, 1, 2});
  Tensor d = tensor({{{{1, 2}, {3, 4}}}}, kFloat64);
  REQUIRE(d.shape() == Shape{1, 1, 2, 2});

  Tensor v = from_vector(std::vector<double>{1, 2, 3, 4}, Shape{2, 2}, kFloat32);
  REQUIRE(v.at({1, 1}) == 4.0);
  Tensor i = from_vector(std::vector<std::int64_t>{3, 1}, Shape{2});
  REQUIRE(i.dtype() == kInt64);
  REQUIRE(i.data<std::int64_t>()[0] == 3);
}

TEST_CASE("tensor: factories zeros, ones, full, arange", "[tensor]") {
  REQUIRE(zeros({2, 2}, kFloat64).to_vector() == std::vector<double>(4, 0.0));
  REQUIRE(ones({3}).to_vector() == std::vector<double>(3, 1.0));
  REQUIRE(full({2}, -1.5, kFloat64).to_vector() == std::vector<double>{-1.5, -1.5});
  REQUIRE(arange(4).to_vector() == std::vector<double>{0, 1, 2, 3});
  // 0, 0.25, 0.5, 0.75: ceil((1 - 0) / 0.25) = 4 elements, end excluded (torch.arange)
  REQUIRE(arange(0, 1, 0.25, kFloat64).to_vector() == std::vector<double>{0, 0.25, 0.5, 0.75});
  REQUIRE(arange(3, 0, -1, kFloat64).to_vector() == std::vector<double>{3, 2, 1});
  REQUIRE(zeros({0, 3}).numel() == 0);
}

TEST_CASE("tensor: bad construction and access throw with a clear message", "[tensor][bad]") {
  REQUIRE_THROWS_WITH(zeros({1, 1, 1, 1, 1}), Contains("rank 0 to 4"));
  REQUIRE_THROWS_AS(tensor({{1, 2}, {3}}), InvalidArgument);
  REQUIRE_THROWS_WITH(tensor({{1, 2}, {3}}), Contains("ragged"));
  REQUIRE_THROWS_WITH(from_vector(std::vector<double>{1, 2, 3}, Shape{2, 2}), Contains("3 values for shape [2, 2]"));
  REQUIRE_THROWS_WITH(tensor({1, 2}).item(), Contains("exactly one element"));
  REQUIRE_THROWS_WITH(tensor({1, 2}).at({2}), Contains("index 2 is out of range"));
  REQUIRE_THROWS_WITH(tensor({1, 2}).at({0, 0}), Contains("2 indices"));
  REQUIRE_THROWS_WITH(tensor({1.0}, kFloat64).data<float>(), Contains("float32"));
  REQUIRE_THROWS_WITH(arange(0, 1, 0), Contains("step"));
  REQUIRE_THROWS_WITH(arange(0, 1, -1), Contains("sign of step"));
  Tensor idx = from_vector(std::vector<std::int64_t>{1}, Shape{1});
  REQUIRE_THROWS_WITH(idx.requires_grad_(), Contains("only float32 and float64"));
  REQUIRE_THROWS_WITH(Tensor().shape(), Contains("undefined"));
  REQUIRE_THROWS_WITH(tensor({1, 2}).size(2), Contains("dim 2 is out of range"));
  REQUIRE_THROWS_WITH(zeros({2}).set_grad(zeros({3})), Contains("must match"));
}

TEST_CASE("tensor: to(dtype) converts and is differentiable between float types", "[tensor]") {
  Tensor x = tensor({1.5, -2.25}, kFloat64).requires_grad_();
  Tensor y = x.to(kFloat32);
  REQUIRE(y.dtype() == kFloat32);
  REQUIRE(y.to_vector() == std::vector<double>{1.5, -2.25});
  backward(sum_to_size(y * 3.0, Shape{}));
  REQUIRE(x.grad().dtype() == kFloat64);
  REQUIRE(x.grad().to_vector() == std::vector<double>{3.0, 3.0});

  Tensor i = tensor({2.7, -1.2}).to(kInt64);
  REQUIRE(i.data<std::int64_t>()[0] == 2);   // truncation toward zero, like a C++ cast and torch
  REQUIRE(i.data<std::int64_t>()[1] == -1);
  Tensor b = tensor({0.0, 3.0}).to(kBool);
  REQUIRE(b.data<bool>()[0] == false);
  REQUIRE(b.data<bool>()[1] == true);
  REQUIRE_FALSE(i.requires_grad());
}

TEST_CASE("tensor: detach shares storage, clone copies and passes gradients", "[tensor]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor d = x.detach();
  REQUIRE_FALSE(d.requires_grad());
  d.set({0}, 10.0);
  REQUIRE(x.at({0}) == 10.0);  // same storage, as torch.detach

  Tensor c = x.clone();
  c.detach().set({1}, 99.0);
  REQUIRE(x.at({1}) == 2.0);   // clone has its own storage
  REQUIRE(c.requires_grad());
  backward(sum_to_size(c * c, Shape{}));
  REQUIRE(x.grad().to_vector() == std::vector<double>{20.0, 2 * 99.0});
}

TEST_CASE("tensor: printing shows values, shape and dtype, abbreviated when large", "[tensor][print]") {
  const std::string s = fmt::format("{}", tensor({{1, 2}, {3, 4.5}}, kFloat64));
  REQUIRE(s == "tensor([[1, 2],\n        [3, 4.5]], shape=[2, 2], dtype=float64)");
  const std::string r = fmt::format("{}", tensor({1.0}).requires_grad_());
  REQUIRE_THAT(r, Contains("requires_grad"));
  Tensor leaf = tensor({1.0}).requires_grad_();
  Tensor prod = leaf * 2.0;
  REQUIRE_THAT(fmt::format("{}", prod), Contains("grad_fn=mul"));
  backward(prod);
  REQUIRE_THAT(fmt::format("{}", prod), Contains("grad_fn=<released>"));
  const std::string big = fmt::format("{}", arange(2000));
  REQUIRE_THAT(big, Contains("[0, 1, 2, ..., 1997, 1998, 1999]"));
  REQUIRE(big.size() < 100);
  std::ostringstream os;
  os << tensor(3.0, kFloat64);
  REQUIRE(os.str() == "tensor(3, shape=[], dtype=float64)");
}

TEST_CASE("generator: xoshiro256** streams match an independent implementation", "[tensor][random]") {
  // Expected values from a separate Python implementation of SplitMix64 + xoshiro256**.
  Generator g(42);
  REQUIRE(g.next_u64() == 0x15780b2e0c2ec716ULL);
  REQUIRE(g.next_u64() == 0x6104d9866d113a7eULL);
  REQUIRE(g.next_u64() == 0xae17533239e499a1ULL);

  Generator u(7);
  Tensor r = rand({2}, u, kFloat64);
  REQUIRE(r.at({0}) == 0.7005764821796896);
  REQUIRE(r.at({1}) == 0.2787512294737843);

  Generator uf(7);
  Tensor rf = rand({2}, uf, kFloat32);
  REQUIRE(rf.at({0}) == 0.7005764245986938);
  REQUIRE(rf.at({1}) == 0.2787511944770813);

  Generator n(7);
  Tensor z = randn({3}, n, kFloat64);
  REQUIRE(z.at({0}) == Approx(-0.2790239910251981).epsilon(1e-15));
  REQUIRE(z.at({1}) == Approx(1.8997685786889567).epsilon(1e-15));
  REQUIRE(z.at({2}) == Approx(2.136306014732201).epsilon(1e-15));
}

TEST_CASE("generator: same seed same numbers, sensible distributions", "[tensor][random]") {
  Generator a(123), b(123), c(124);
  Tensor x = randn({1000}, a, kFloat64);
  Tensor y = randn({1000}, b, kFloat64);
  Tensor w = randn({1000}, c, kFloat64);
  REQUIRE(x.to_vector() == y.to_vector());
  REQUIRE(x.to_vector() != w.to_vector());

  Generator g(5);
  const auto v = randn({20000}, g, kFloat64).to_vector();
  double m = 0, s2 = 0;
  for (double e : v) m += e;
  m /= static_cast<double>(v.size());
  for (double e : v) s2 += (e - m) * (e - m);
  s2 /= static_cast<double>(v.size());
  REQUIRE(std::abs(m) < 0.03);          // ~4 standard errors (1/sqrt(20000) = 0.007)
  REQUIRE(std::abs(s2 - 1.0) < 0.05);

  const auto u = rand({20000}, g, kFloat32).to_vector();
  for (double e : u) REQUIRE((e >= 0.0 && e < 1.0));

  Tensor k = randint(-2, 3, {1000}, g);
  REQUIRE(k.dtype() == kInt64);
  bool seen[5] = {};
  for (std::int64_t i = 0; i < 1000; ++i) {
    const auto val = k.data<std::int64_t>()[i];
    REQUIRE((val >= -2 && val < 3));
    seen[val + 2] = true;
  }
  for (bool s : seen) REQUIRE(s);
  REQUIRE_THROWS_WITH(randint(3, 3, {1}, g), Contains("low < high"));
  REQUIRE_THROWS_WITH(rand({2}, g, kInt64), Contains("float32 or float64"));
}

TEST_CASE("generator: state() and set_state() resume a stream exactly", "[tensor][random]") {
  Generator g(77);
  for (int i = 0; i < 5; ++i) g.next_u64();
  const Generator::State s = g.state();
  std::vector<std::uint64_t> first;
  for (int i = 0; i < 10; ++i) first.push_back(g.next_u64());
  Generator h(1);  // another seed entirely
  h.set_state(s);
  for (int i = 0; i < 10; ++i) REQUIRE(h.next_u64() == first[static_cast<std::size_t>(i)]);
  REQUIRE_THROWS_WITH(h.set_state(Generator::State{}), Contains("set_state") && Contains("all zeros"));
  REQUIRE(h.state() != Generator::State{});  // left as it was
}

TEST_CASE("tensor: recycled storage is never shared by two live tensors", "[tensor][memory]") {
  // Large values come from a per-thread cache of freed blocks: churn it, then check that tensors
  // alive at the same time hold distinct, intact values.
  std::vector<Tensor> live;
  for (int round = 0; round < 50; ++round) {
    Tensor t = full({4096}, static_cast<double>(round), kFloat64);
    if (round % 5 == 0) live.push_back(t);
  }
  for (std::size_t i = 0; i < live.size(); ++i) {
    REQUIRE(live[i].at({0}) == static_cast<double>(5 * i));
    REQUIRE(live[i].at({4095}) == static_cast<double>(5 * i));
    for (std::size_t j = i + 1; j < live.size(); ++j) REQUIRE(live[i].data<double>() != live[j].data<double>());
  }
  detail::empty_cache();  // hands the cached blocks back; live tensors are unaffected
  REQUIRE(live.back().at({100}) == 45.0);
}

// ---------------------------------------------------------------- factories: linspace, braced lists, absurd sizes

TEST_CASE("linspace: values as torch.linspace", "[ops][new_ops][linspace]") {
  REQUIRE_ALLCLOSE(linspace(0.0, 1.0, 5, kFloat64), f64({0.0, 0.25, 0.5, 0.75, 1.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(-1.0, 2.0, 4, kFloat64), f64({-1.0, 0.0, 1.0, 2.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(1.0, 0.0, 3, kFloat64), f64({1.0, 0.5, 0.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(3.0, 3.0, 3, kFloat64), f64({3.0, 3.0, 3.0}), 0, 0);
  REQUIRE_ALLCLOSE(linspace(2.0, 5.0, 1, kFloat64), f64({2.0}), 0, 0);  // steps = 1: [start]
  REQUIRE(linspace(0.0, 1.0, 0).shape() == Shape{0});
  // Python: [i / 10 for i in range(11)] up to rounding; both ends exact.
  const Tensor t = linspace(0.0, 1.0, 11, kFloat64);
  for (int i = 0; i <= 10; ++i) REQUIRE(std::abs(t.at({std::int64_t{i}}) - i / 10.0) <= 1e-16);
  REQUIRE(t.at({0}) == 0.0);
  REQUIRE(t.at({10}) == 1.0);
  // Default dtype float32, as PyTorch; not differentiable (a factory).
  const Tensor f = linspace(-2.0, 2.0, 9);
  REQUIRE(f.dtype() == kFloat32);
  REQUIRE(f.to_vector() == std::vector<double>{-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0});
  REQUIRE_FALSE(f.requires_grad());
}

TEST_CASE("README: from_vector({1.0, 2.0}, Shape{2, 1}) compiles and gives float32 [2, 1]", "[hardening][factories]") {
  const Tensor t = from_vector({1.0, 2.0}, Shape{2, 1});
  REQUIRE(t.dtype() == kFloat32);
  REQUIRE(t.shape() == Shape{2, 1});
  REQUIRE(t.to_vector() == std::vector<double>{1.0, 2.0});
}

TEST_CASE("Shape: a braced list with too many or negative sizes names the list and the caller's line, not an op",
          "[hardening][shape]") {
  // Before: "tensor: 5 dims requested ..." with no line, as if an op called tensor had failed.
  // (one line: gcc and clang attribute a call spread over lines of a macro to different lines)
  std::string message = "(no InvalidArgument thrown)";
  try { zeros({1, 1, 1, 1, 1}); } catch (const InvalidArgument& e) { message = e.what(); } const int line = __LINE__;
  REQUIRE_THAT(message, Contains("Shape {1, 1, 1, 1, 1}: 5 dims") && Contains("rank 0 to 4") &&
                            Contains("test_tensor.cpp:" + std::to_string(line) + ")"));
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

// ---------------------------------------------------------------- retain_grad

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

TEST_CASE("retain_grad: called from another thread, backward on the recording thread still fills the grad",
          "[retain_grad][thread]") {
  // Backward looks at a node's output only when retain_grad() marked the node; a thread that did
  // not record the tensor cannot mark this thread's node, so that case must still work.
  const Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  Tensor h = mul(x, 3.0);
  const Tensor y = sum(mul(h, h));  // dy/dh = 2h = [6, 12]
  std::thread([&] { h.retain_grad(); }).join();
  REQUIRE(h.retains_grad());
  backward(y);
  REQUIRE(h.grad().to_vector() == std::vector<double>{6, 12});
  REQUIRE(x.grad().to_vector() == std::vector<double>{18, 36});
  // After backward freed the graph, retain_grad on a tensor whose node is gone changes nothing else.
  const Tensor h2 = mul(x, 2.0);
  backward(sum(h2));
  Tensor h2b = h2;
  h2b.retain_grad();
  REQUIRE(h2b.retains_grad());
  REQUIRE_THROWS_WITH(backward(sum(h2)), Contains("already freed"));
}

// ---------------------------------------------------------------- copy_, set_data

TEST_CASE("tensor: copy_ writes src's values into the tensor's own storage, converting the dtype as PyTorch",
          "[tensor][copy_]") {
  // Same dtype, inline (<= 32 bytes) and heap storage: every handle and view on dst sees the values;
  // dst does not alias src afterwards.
  for (const Shape& s : {Shape{}, Shape{3}, Shape{2, 3}, Shape{5, 7}, Shape{0, 2}}) {
    INFO("shape " << s.str());
    Tensor dst = zeros(s, kFloat64);
    const Tensor handle = dst, view = dst.detach();
    std::vector<double> v(static_cast<std::size_t>(s.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = 0.5 * static_cast<double>(i) - 3.0;
    Tensor src = from_vector(v, s, kFloat64);
    Tensor& r = dst.copy_(src);
    REQUIRE(&r == &dst);
    REQUIRE(dst.to_vector() == v);
    REQUIRE(handle.to_vector() == v);
    REQUIRE(view.to_vector() == v);
    if (s.numel() > 0) {
      src.mutable_data<double>()[0] = 100.0;
      REQUIRE(dst.to_vector()[0] == -3.0);
    }
  }
  // Conversions: float64 -> float32 rounds; float -> int64 truncates toward zero; -> bool is x != 0
  // (NaN is true, -0.0 false, as bool(float('nan')) and torch); int64 and bool -> float exactly.
  Tensor f = zeros({3});
  f.copy_(f64({0.1, -2.5, 1e10}));
  REQUIRE(f.to_vector() == std::vector<double>{static_cast<double>(0.1f), -2.5, static_cast<double>(1e10f)});
  Tensor i = zeros({4}, kInt64);
  i.copy_(f64({-2.7, 2.7, 0.5, -9.2e18}));
  REQUIRE(i.data<std::int64_t>()[0] == -2);
  REQUIRE(i.data<std::int64_t>()[1] == 2);
  REQUIRE(i.data<std::int64_t>()[2] == 0);
  REQUIRE(i.data<std::int64_t>()[3] == -9200000000000000000);
  Tensor b = zeros({4}, kBool);
  b.copy_(f64({0.0, -0.0, 3.0, std::nan("")}));
  REQUIRE(b.to_vector() == std::vector<double>{0, 0, 1, 1});
  Tensor d = zeros({3}, kFloat64);
  d.copy_(from_vector(std::vector<std::int64_t>{-4, 0, 9007199254740993}, Shape{3}));
  REQUIRE(d.to_vector() == std::vector<double>{-4.0, 0.0, 9007199254740992.0});  // 2^53 + 1 rounds to even
  d.copy_(from_vector(std::vector<bool>{true, false, true}, Shape{3}));
  REQUIRE(d.to_vector() == std::vector<double>{1.0, 0.0, 1.0});
  // Copying a view of itself changes nothing.
  d.copy_(d.detach());
  REQUIRE(d.to_vector() == std::vector<double>{1.0, 0.0, 1.0});
}

TEST_CASE("tensor: copy_ into a parameter under NoGradGuard records nothing and keeps grad and identity",
          "[tensor][copy_]") {
  Tensor p = f64({1.0, 2.0}).requires_grad_();
  backward(sum(mul(p, p)));  // grad 2p = [2, 4]
  const std::size_t nodes = tape_size();
  {
    NoGradGuard no_grad;
    p.copy_(f64({3.0, -1.0}));
  }
  REQUIRE(tape_size() == nodes);
  REQUIRE(p.requires_grad());
  REQUIRE(p.is_leaf());
  REQUIRE(p.grad().to_vector() == std::vector<double>{2.0, 4.0});  // untouched, as PyTorch
  p.zero_grad();
  backward(sum(mul(p, p)));  // the new value is what backward sees: 2p = [6, -2]
  REQUIRE(p.grad().to_vector() == std::vector<double>{6.0, -2.0});
  // Grad mode off also lets a src that requires grad be copied (values only).
  Tensor q = zeros({2}, kFloat64);
  {
    NoGradGuard no_grad;
    q.copy_(p);
  }
  REQUIRE(q.to_vector() == std::vector<double>{3.0, -1.0});
  REQUIRE_FALSE(q.requires_grad());
}

TEST_CASE("tensor: copy_ bad input names copy_, both shapes and the fix; the destination is left untouched",
          "[tensor][copy_][bad]") {
  using tapegrad::testing::error_of;
  Tensor dst = zeros({2, 3}, kFloat64);
  REQUIRE_THROWS_AS(dst.copy_(zeros({3, 2}, kFloat64)), InvalidArgument);
  REQUIRE_THAT(error_of([&] { dst.copy_(zeros({3, 2}, kFloat64)); }),
               StartsWith("copy_: src has shape [3, 2] but this tensor has shape [2, 3]; expected the same shape"));
  // no broadcasting, and the same number of elements is not enough
  REQUIRE_THAT(error_of([&] { dst.copy_(zeros({3}, kFloat64)); }), StartsWith("copy_: src has shape [3] but this tensor has shape [2, 3]"));
  REQUIRE_THAT(error_of([&] { dst.copy_(zeros({6}, kFloat64)); }), StartsWith("copy_: src has shape [6] but this tensor has shape [2, 3]"));
  REQUIRE_THAT(error_of([&] { dst.copy_(Tensor()); }), StartsWith("copy_: src is an undefined Tensor"));
  REQUIRE_THAT(error_of([&] { Tensor().copy_(dst); }), StartsWith("copy_: this Tensor is undefined"));
  // With grad mode on it would silently bypass the tape: an error naming NoGradGuard.
  Tensor p = zeros({2, 3}, kFloat64).requires_grad_();
  REQUIRE_THAT(error_of([&] { p.copy_(ones({2, 3}, kFloat64)); }),
               StartsWith("copy_: this tensor requires grad and grad mode is on") && Contains("NoGradGuard"));
  REQUIRE_THAT(error_of([&] { dst.copy_(p); }), StartsWith("copy_: src requires grad and grad mode is on") &&
                                                   Contains("detach()") && Contains("clone()"));
  REQUIRE(p.to_vector() == std::vector<double>(6, 0.0));
  // Floats with no int64 value: NaN, inf, 2^63. Checked before anything is written.
  Tensor i = from_vector(std::vector<std::int64_t>{7, 7, 7}, Shape{3});
  REQUIRE_THAT(error_of([&] { i.copy_(f64({1.0, std::nan(""), 2.0})); }),
               StartsWith("copy_: src[1] = nan cannot be converted to int64"));
  REQUIRE_THAT(error_of([&] { i.copy_(tensor({1.0, 2.0, INFINITY})); }), StartsWith("copy_: src[2] = inf cannot be converted"));
  REQUIRE_THAT(error_of([&] { i.copy_(f64({9.3e18, 0.0, 0.0})); }), StartsWith("copy_: src[0] = 9.3e+18 cannot be converted"));
  REQUIRE(i.to_vector() == std::vector<double>{7, 7, 7});
}

TEST_CASE("tensor: set_data gives a leaf a new value, shape or dtype, keeping its identity (PyTorch's t.data = src)",
          "[tensor][set_data]") {
  for (const Shape& s : {Shape{2}, Shape{4, 5}}) {  // inline and heap storage
    INFO("shape " << s.str());
    Tensor p = zeros(s).requires_grad_();
    p.set_name("w");
    const Tensor handle = p;
    backward(sum(p));
    REQUIRE(p.grad().defined());
    // same shape and dtype: the grad stays
    p.set_data(ones(s));
    REQUIRE(handle.to_vector() == std::vector<double>(static_cast<std::size_t>(s.numel()), 1.0));
    REQUIRE(p.grad().defined());
    // float32 -> float64 (Module::to): every handle sees the new dtype; grad cleared (no longer fits)
    p.set_data(full(s, 0.25, kFloat64));
    REQUIRE(handle.dtype() == kFloat64);
    REQUIRE(handle.to_vector() == std::vector<double>(static_cast<std::size_t>(s.numel()), 0.25));
    REQUIRE_FALSE(p.grad().defined());
    REQUIRE(handle.requires_grad());
    REQUIRE(handle.name() == "w");
    // another shape
    p.set_data(f64({1.0, 2.0, 3.0}));
    REQUIRE(handle.shape() == Shape{3});
    backward(sum(mul(handle, handle)));
    REQUIRE(p.grad().to_vector() == std::vector<double>{2.0, 4.0, 6.0});
  }
  // a constant may become int64
  Tensor c = zeros({2});
  c.set_data(from_vector(std::vector<std::int64_t>{4, 5}, Shape{2}));
  REQUIRE(c.dtype() == kInt64);
}

TEST_CASE("tensor: set_data bad input names set_data and what to do", "[tensor][set_data][bad]") {
  using tapegrad::testing::error_of;
  Tensor x = f64({1.0, 2.0}).requires_grad_();
  Tensor y = mul(x, 2.0);
  REQUIRE_THAT(error_of([&] { y.set_data(f64({0.0, 0.0})); }),
               StartsWith("set_data: this tensor is the output of 'mul' (a non-leaf)") && Contains("leaves"));
  REQUIRE_THAT(error_of([&] { x.set_data(from_vector(std::vector<std::int64_t>{1, 2}, Shape{2})); }),
               StartsWith("set_data: this tensor requires grad, so its value must be float32 or float64; src is int64"));
  REQUIRE_THAT(error_of([&] { x.set_data(Tensor()); }), StartsWith("set_data: src is an undefined Tensor"));
  REQUIRE(x.to_vector() == std::vector<double>{1.0, 2.0});
}
