// SPDX-License-Identifier: MIT
// custom_op: recording, accumulation into leaves, create_graph through a user VJP, errors, and
// intern_name. Expected values are worked out by hand in the comments.
#include <thread>

#include "autodiff/detail/node.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

Tensor total(const Tensor& t) { return sum_to_size(t, Shape{}); }

// muladd(a, b) = a * b + a        da = g (b + 1)     db = g a
Tensor muladd(const Tensor& a, const Tensor& b) {
  return custom_op(
      "muladd", {a, b}, [](const std::vector<Tensor>& in) { return in[0] * in[1] + in[0]; },
      [](const std::vector<Tensor>& in, const Tensor&, const Tensor& g) {
        return Grads{g * (in[1] + 1.0), g * in[0]};
      });
}

// my_exp(x) = e^x                 dx = g out (uses the saved output)
Tensor my_exp(const Tensor& x) {
  return custom_op(
      "my_exp", {x}, [](const std::vector<Tensor>& in) { return exp(in[0]); },
      [](const std::vector<Tensor>&, const Tensor& out, const Tensor& g) { return Grads{g * out}; });
}

// cube(x) = x^3                   dx = 3 g x^2
Tensor cube(const Tensor& x) {
  return custom_op(
      "cube", x, [](const Tensor& v) { return v * v * v; }, [](const Tensor& v, const Tensor& g) { return g * v * v * 3.0; });
}

// softplus(x) = log(1 + e^x)      dx = g sigmoid(x)   (my_softplus: tapegrad::softplus is built in)
Tensor my_softplus(const Tensor& x) {
  return custom_op(
      "softplus", x, [](const Tensor& v) { return log1p(exp(v)); }, [](const Tensor& v, const Tensor& g) { return g * sigmoid(v); });
}

}  // namespace

TEST_CASE("custom_op: a two-input op is one node on the tape and accumulates into leaves", "[custom_op]") {
  Tensor a = tensor({1.0, 2.0, 3.0}, kFloat64).requires_grad_();
  Tensor b = tensor({4.0, 5.0, 6.0}, kFloat64).requires_grad_();
  const std::size_t before = tape_size();
  Tensor out = muladd(a, b);
  // The forward's own ops (mul, add) run without recording: exactly one node, labelled by name.
  REQUIRE(tape_size() == before + 1);
  REQUIRE(std::string(tape_nodes().back().op) == "muladd");
  REQUIRE(out.requires_grad());
  REQUIRE_FALSE(out.is_leaf());
  REQUIRE(out.to_vector() == std::vector<double>{5.0, 12.0, 21.0});  // a b + a

  backward(total(out));
  REQUIRE(a.grad().to_vector() == std::vector<double>{5.0, 6.0, 7.0});  // b + 1
  REQUIRE(b.grad().to_vector() == std::vector<double>{1.0, 2.0, 3.0});  // a
  // A second graph accumulates (+=).
  backward(total(muladd(a, b)));
  REQUIRE(a.grad().to_vector() == std::vector<double>{10.0, 12.0, 14.0});
  REQUIRE(b.grad().to_vector() == std::vector<double>{2.0, 4.0, 6.0});
}

TEST_CASE("custom_op: the same input twice gets both gradients", "[custom_op]") {
  // muladd(x, x) = x^2 + x: d/dx = 2x + 1
  Tensor x = tensor({0.5, -2.0}, kFloat64).requires_grad_();
  backward(total(muladd(x, x)));
  REQUIRE(x.grad().to_vector() == std::vector<double>{2.0, -3.0});
}

TEST_CASE("custom_op: create_graph through a custom VJP gives second derivatives", "[custom_op]") {
  SECTION("my_exp: the VJP uses the saved output") {
    // d/dx e^x = e^x, again e^x: at [0.5, -1]: [1.6487212707001282, 0.36787944117144233]
    Tensor x = tensor({0.5, -1.0}, kFloat64).requires_grad_();
    const Tensor gx = grad({total(my_exp(x))}, {x}, {}, GradOptions{.create_graph = true}).at(0);
    REQUIRE(gx.requires_grad());
    REQUIRE_ALLCLOSE(gx, tensor({1.6487212707001282, 0.36787944117144233}, kFloat64), 1e-15, 0.0);
    const Tensor gxx = grad({total(gx)}, {x}).at(0);
    REQUIRE_ALLCLOSE(gxx, tensor({1.6487212707001282, 0.36787944117144233}, kFloat64), 1e-15, 0.0);
  }
  SECTION("cube: 3x^2 then 6x, also through backward(create_graph)") {
    Tensor x = tensor({0.5, -1.0}, kFloat64).requires_grad_();
    backward(total(cube(x)), BackwardOptions{.create_graph = true});
    const Tensor gx = x.grad();
    REQUIRE_ALLCLOSE(gx, tensor({0.75, 3.0}, kFloat64), 1e-15, 0.0);
    REQUIRE(gx.requires_grad());
    const Tensor gxx = grad({total(gx)}, {x}).at(0);
    REQUIRE_ALLCLOSE(gxx, tensor({3.0, -6.0}, kFloat64), 1e-15, 0.0);
    // hessian goes the same way: diag(6x)
    REQUIRE_ALLCLOSE(hessian([](const Tensor& v) { return total(cube(v)); }, x),
                     tensor({{3.0, 0.0}, {0.0, -6.0}}, kFloat64), 1e-15, 0.0);
  }
  SECTION("muladd: mixed second derivative d2/da db = 1") {
    Tensor a = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    Tensor b = tensor({3.0, 4.0}, kFloat64).requires_grad_();
    const auto g = grad({total(muladd(a, b))}, {a, b}, {}, GradOptions{.create_graph = true});
    // d/db sum(da) = d/db sum(b + 1) = 1
    const Tensor dab = grad({total(g[0])}, {b}).at(0);
    REQUIRE(dab.to_vector() == std::vector<double>{1.0, 1.0});
  }
}

TEST_CASE("custom_op: softplus passes gradcheck and gradgradcheck, saturated inputs too", "[custom_op][gradcheck]") {
  Generator gen(7);
  for (double scale : {1.0, 30.0}) {
    const Tensor x = randn({3, 4}, gen, kFloat64) * scale;
    const GradcheckReport r = gradcheck(my_softplus, x);
    INFO(r);
    REQUIRE(r.ok());
    const GradcheckReport rr = gradgradcheck(my_softplus, x);
    INFO(rr);
    REQUIRE(rr.ok());
  }
  Tensor a = tensor({0.5, -1.0, 2.0}, kFloat64).requires_grad_();
  Tensor b = tensor({1.5, 0.25, -3.0}, kFloat64).requires_grad_();
  const Function f = [](const std::vector<Tensor>& in) { return muladd(in[0], in[1]); };
  REQUIRE(gradcheck(f, {a, b}).ok());
  REQUIRE(gradgradcheck(f, {a, b}).ok());
}

TEST_CASE("custom_op: the output is a fresh tensor even when forward returns an input", "[custom_op]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  const Tensor constant = tensor({7.0, 8.0}, kFloat64);
  Tensor id = custom_op(
      "identity", x, [](const Tensor& v) { return v; }, [](const Tensor&, const Tensor& g) { return g; });
  REQUIRE_FALSE(id.same(x));
  REQUIRE(x.is_leaf());
  REQUIRE_FALSE(id.is_leaf());
  backward(total(id));
  REQUIRE(x.grad().to_vector() == std::vector<double>{1.0, 1.0});

  // A forward returning a tensor the caller holds leaves that tensor alone.
  Tensor c = custom_op(
      "constant", x, [constant](const Tensor&) { return constant; },
      [](const Tensor& v, const Tensor&) { return zeros_like(v); });
  REQUIRE(c.requires_grad());
  REQUIRE_FALSE(constant.requires_grad());
  REQUIRE(constant.is_leaf());
  REQUIRE(c.to_vector() == std::vector<double>{7.0, 8.0});
}

TEST_CASE("custom_op: the VJP receives inputs, output and g; undefined means zero", "[custom_op]") {
  Tensor a = tensor({2.0, 3.0}, kFloat64).requires_grad_();
  Tensor b = tensor({5.0, 7.0}, kFloat64).requires_grad_();
  Tensor seen_out;
  Tensor seen_g;
  Tensor y = custom_op(
      "add_only_b", {a, b}, [](const std::vector<Tensor>& in) { return in[0] + in[1]; },
      [&](const std::vector<Tensor>& in, const Tensor& out, const Tensor& g) {
        REQUIRE(in.size() == 2);
        REQUIRE(in[0].same(a));
        seen_out = out.detach();
        seen_g = g.detach();
        return Grads{Tensor(), g * 2.0};  // nothing for a (undefined = zero)
      });
  backward(y, tensor({1.0, -1.0}, kFloat64));
  REQUIRE(seen_out.to_vector() == std::vector<double>{7.0, 10.0});
  REQUIRE(seen_g.to_vector() == std::vector<double>{1.0, -1.0});
  REQUIRE_FALSE(a.grad().defined());
  REQUIRE(b.grad().to_vector() == std::vector<double>{2.0, -2.0});
}

TEST_CASE("custom_op: inputs that do not require grad, and grad mode off", "[custom_op]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  const Tensor w = tensor({3.0, 4.0}, kFloat64);  // a constant
  backward(total(muladd(x, w)));
  REQUIRE(x.grad().to_vector() == std::vector<double>{4.0, 5.0});  // w + 1

  const std::size_t before = tape_size();
  {
    NoGradGuard no_grad;
    const Tensor y = muladd(x, w);
    REQUIRE_FALSE(y.requires_grad());
    REQUIRE(tape_size() == before);
  }
  const Tensor z = muladd(w, w);  // nothing requires grad: not recorded
  REQUIRE_FALSE(z.requires_grad());
  REQUIRE(z.to_vector() == std::vector<double>{12.0, 20.0});

  // A non-floating output (a mask) has no gradient and is not recorded.
  const Tensor m = custom_op(
      "positive", x, [](const Tensor& v) { return gt(v, 1.5); }, [](const Tensor& v, const Tensor&) { return zeros_like(v); });
  REQUIRE(m.dtype() == kBool);
  REQUIRE_FALSE(m.requires_grad());
}

TEST_CASE("custom_op: mistakes are reported with the op's name", "[custom_op][bad]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  SECTION("wrong number of gradients") {
    Tensor y = custom_op(
        "two_grads", {x}, [](const std::vector<Tensor>& in) { return in[0] * 2.0; },
        [](const std::vector<Tensor>&, const Tensor&, const Tensor& g) { return Grads{g, g}; });
    REQUIRE_THROWS_AS(backward(total(y)), RuntimeError);
  }
  SECTION("wrong number of gradients: message") {
    Tensor y = custom_op(
        "two_grads", {x}, [](const std::vector<Tensor>& in) { return in[0] * 2.0; },
        [](const std::vector<Tensor>&, const Tensor&, const Tensor& g) { return Grads{g, g}; });
    REQUIRE_THROWS_WITH(backward(total(y)), Contains("custom_op 'two_grads': vjp returned 2 gradients for 1 inputs"));
  }
  SECTION("wrong gradient shape") {
    Tensor y = custom_op(
        "bad_shape", x, [](const Tensor& v) { return v * 2.0; },
        [](const Tensor&, const Tensor&) { return tensor({1.0, 2.0, 3.0}, kFloat64); });
    REQUIRE_THROWS_WITH(backward(total(y)), Contains("bad_shape"));
  }
  SECTION("forward returning nothing, empty callables, undefined inputs") {
    REQUIRE_THROWS_WITH(custom_op(
                            "nothing", x, [](const Tensor&) { return Tensor(); },
                            [](const Tensor&, const Tensor& g) { return g; }),
                        Contains("custom_op 'nothing': forward returned an undefined Tensor"));
    REQUIRE_THROWS_AS(custom_op("no_forward", {x}, CustomForward{},
                                [](const std::vector<Tensor>&, const Tensor&, const Tensor& g) { return Grads{g}; }),
                      InvalidArgument);
    REQUIRE_THROWS_AS(custom_op("no_vjp", {x}, [](const std::vector<Tensor>& in) { return in[0]; }, CustomVjp{}),
                      InvalidArgument);
    REQUIRE_THROWS_WITH(custom_op("undefined_input", {x, Tensor()}, [](const std::vector<Tensor>& in) { return in[0]; },
                                  [](const std::vector<Tensor>&, const Tensor&, const Tensor& g) { return Grads{g, Tensor()}; }),
                        Contains("input 1 is an undefined Tensor"));
  }
}

TEST_CASE("custom_op: intern_name is stable and thread-safe", "[custom_op]") {
  const char* p = intern_name("my_op");
  REQUIRE(std::string(p) == "my_op");
  REQUIRE(intern_name(std::string("my_") + "op") == p);  // same string, same pointer
  REQUIRE(intern_name("other_op") != p);
  for (int i = 0; i < 100; ++i) (void)intern_name(fmt::format("filler_{}", i));  // the store grows
  REQUIRE(intern_name("my_op") == p);
  REQUIRE(std::string(p) == "my_op");

  std::vector<const char*> seen(8, nullptr);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < seen.size(); ++t)
    threads.emplace_back([t, &seen] {
      for (int i = 0; i < 200; ++i) (void)intern_name(fmt::format("thread_{}_{}", t, i));
      seen[t] = intern_name("shared_name");
    });
  for (auto& th : threads) th.join();
  for (const char* s : seen) REQUIRE(s == seen[0]);
  REQUIRE(std::string(seen[0]) == "shared_name");
  REQUIRE(std::string(intern_name("thread_3_150")) == "thread_3_150");
}

TEST_CASE("custom_op: ops recorded on another thread's tape run there", "[custom_op]") {
  // Each thread has its own tape; a custom op works on any of them.
  std::vector<double> result;
  std::thread t([&] {
    Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
    backward(total(cube(x)));
    result = x.grad().to_vector();  // 3x^2
  });
  t.join();
  REQUIRE(result == std::vector<double>{3.0, 12.0});
}

// ---------------------------------------------------------------- call sites

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
      REQUIRE_THAT(s.site, Contains(fmt::format("test_custom_op.cpp:{}", line)));
      found = true;
    }
  REQUIRE(found);
  // An error thrown inside the op carries the site too.
  REQUIRE_THROWS_WITH(custom_op("bad", {x}, [](const std::vector<Tensor>&) { return Tensor(); },
                                [](const std::vector<Tensor>&, const Tensor&, const Tensor&) { return Grads{}; }),
                      Contains("test_custom_op.cpp:"));
}
