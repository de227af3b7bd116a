// SPDX-License-Identifier: MIT
// Gradient tools: finite differences and reverse-mode Jacobians against hand-computed matrices,
// Hessians, gradcheck/gradgradcheck passing on correct ops and failing on wrong VJPs, fast mode,
// reports (text and JSON) and argument errors. Every expected number below was worked out by
// hand (or with numpy) from the formula in the comment next to it.
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

Tensor total(const Tensor& t) { return sum_to_size(t, Shape{}); }

Tensor mat(std::initializer_list<std::initializer_list<double>> rows) { return tensor(rows, kFloat64); }

Tensor leaf(std::initializer_list<double> v) { return tensor(v, kFloat64).requires_grad_(); }

// Random float64 leaf; positive = in [0.5, 1.5) for ops with a restricted domain.
Tensor random_leaf(const Shape& s, Generator& gen, bool positive = false) {
  Tensor t = positive ? rand(s, gen, kFloat64) + 0.5 : randn(s, gen, kFloat64);
  return t.detach().requires_grad_();
}

// x -> x*x, with a VJP that forgets the factor 2 (the classic mistake).
Tensor square_missing_two(const Tensor& x) {
  return custom_op(
      "square_missing_two", x, [](const Tensor& v) { return v * v; }, [](const Tensor& v, const Tensor& g) { return g * v; });
}

// x -> x^3 with a VJP that is right in value (3 x^2 g) but built from a detached copy of x, so
// the VJP's own derivative w.r.t. x is lost: first derivatives pass, second derivatives do not.
Tensor cube_detached_vjp(const Tensor& x) {
  return custom_op(
      "cube_detached_vjp", x, [](const Tensor& v) { return v * v * v; },
      [](const Tensor& v, const Tensor& g) {
        const Tensor c = v.detach();
        return g * (c * c * 3.0);
      });
}

// The same op written correctly.
Tensor cube(const Tensor& x) {
  return custom_op(
      "cube", x, [](const Tensor& v) { return v * v * v; }, [](const Tensor& v, const Tensor& g) { return g * (v * v * 3.0); });
}

}  // namespace

// ---- Jacobians against hand-computed matrices ----

TEST_CASE("gradcheck: numerical_jacobian and jacobian of x*x are diag(2x)", "[gradcheck]") {
  Tensor x = leaf({1.5, -2.0, 0.5});
  const Function f = [](const std::vector<Tensor>& in) { return in[0] * in[0]; };
  const Tensor expected = mat({{3.0, 0.0, 0.0}, {0.0, -4.0, 0.0}, {0.0, 0.0, 1.0}});

  const auto num = numerical_jacobian(f, {x});
  REQUIRE(num.size() == 1);
  REQUIRE(num[0].shape() == Shape{3, 3});
  REQUIRE(num[0].dtype() == kFloat64);
  REQUIRE_ALLCLOSE(num[0], expected, 1e-8, 1e-8);

  const auto ana = jacobian(f, {x});
  REQUIRE_ALLCLOSE(ana[0], expected, 1e-15, 0.0);

  // The single-tensor overload differentiates w.r.t. x even when it does not require grad.
  const Tensor plain = tensor({1.5, -2.0, 0.5}, kFloat64);
  REQUIRE_ALLCLOSE(jacobian([](const Tensor& v) { return v * v; }, plain), expected, 1e-15, 0.0);
}

TEST_CASE("gradcheck: jacobian of a*b with broadcasting, both inputs", "[gradcheck]") {
  // a [2, 3], b [3]: out[i, j] = a[i, j] b[j]
  //   d out[i, j] / d a[k, l] = [i = k][j = l] b[j]      -> diag(b, b)          [6, 6]
  //   d out[i, j] / d b[l]    = [j = l] a[i, j]                                  [6, 3]
  Tensor a = mat({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}).requires_grad_();
  Tensor b = leaf({10.0, 20.0, 30.0});
  const Function f = [](const std::vector<Tensor>& in) { return in[0] * in[1]; };
  const Tensor ja = mat({{10, 0, 0, 0, 0, 0},
                         {0, 20, 0, 0, 0, 0},
                         {0, 0, 30, 0, 0, 0},
                         {0, 0, 0, 10, 0, 0},
                         {0, 0, 0, 0, 20, 0},
                         {0, 0, 0, 0, 0, 30}});
  const Tensor jb = mat({{1, 0, 0}, {0, 2, 0}, {0, 0, 3}, {4, 0, 0}, {0, 5, 0}, {0, 0, 6}});

  const auto ana = jacobian(f, {a, b});
  REQUIRE_ALLCLOSE(ana[0], ja, 0.0, 0.0);
  REQUIRE_ALLCLOSE(ana[1], jb, 0.0, 0.0);
  const auto num = numerical_jacobian(f, {a, b});
  REQUIRE_ALLCLOSE(num[0], ja, 1e-8, 1e-8);
  REQUIRE_ALLCLOSE(num[1], jb, 1e-8, 1e-8);
}

TEST_CASE("gradcheck: rank-0 outputs and inputs give [1, n] and [m, 1] Jacobians", "[gradcheck]") {
  // sum(x*x) -> row 2x
  Tensor x = leaf({1.0, -3.0});
  const Function s = [](const std::vector<Tensor>& in) { return total(in[0] * in[0]); };
  REQUIRE_ALLCLOSE(jacobian(s, {x})[0], mat({{2.0, -6.0}}), 0.0, 0.0);
  REQUIRE_ALLCLOSE(numerical_jacobian(s, {x})[0], mat({{2.0, -6.0}}), 1e-8, 1e-8);

  // c * v for a scalar c = 2 and v = [1, 4, -1]: d/dc = v as a column
  Tensor c = tensor(2.0, kFloat64).requires_grad_();
  Tensor v = tensor({1.0, 4.0, -1.0}, kFloat64);
  const Function f = [](const std::vector<Tensor>& in) { return in[0] * in[1]; };
  const auto j = jacobian(f, {c, v});
  REQUIRE_ALLCLOSE(j[0], mat({{1.0}, {4.0}, {-1.0}}), 0.0, 0.0);
  REQUIRE_FALSE(j[1].defined());  // v does not require grad

  // scalar -> scalar: d(x^3)/dx at 3 = 27
  Tensor t = tensor(3.0, kFloat64).requires_grad_();
  const Function cubef = [](const std::vector<Tensor>& in) { return in[0] * in[0] * in[0]; };
  REQUIRE_ALLCLOSE(jacobian(cubef, {t})[0], mat({{27.0}}), 1e-15, 0.0);
  REQUIRE_ALLCLOSE(numerical_jacobian(cubef, {t})[0], mat({{27.0}}), 1e-8, 0.0);
}

TEST_CASE("gradcheck: an input the output does not use has a zero Jacobian", "[gradcheck]") {
  Tensor a = leaf({1.0, 2.0});
  Tensor b = leaf({5.0, 6.0, 7.0});
  const Function f = [](const std::vector<Tensor>& in) { return in[0] * 2.0; };
  const auto j = jacobian(f, {a, b});
  REQUIRE_ALLCLOSE(j[0], mat({{2.0, 0.0}, {0.0, 2.0}}), 0.0, 0.0);
  REQUIRE_ALLCLOSE(j[1], zeros({2, 3}, kFloat64), 0.0, 0.0);
  REQUIRE(gradcheck(f, {a, b}).ok());
}

TEST_CASE("gradcheck: the caller's tensors are not modified", "[gradcheck]") {
  Tensor x = leaf({0.25, -1.0, 2.0});
  const std::vector<double> before = x.to_vector();
  const auto report = gradcheck([](const std::vector<Tensor>& in) { return exp(in[0]) * in[0]; }, {x});
  REQUIRE(report.ok());
  (void)gradgradcheck([](const std::vector<Tensor>& in) { return exp(in[0]) * in[0]; }, {x});
  REQUIRE(x.to_vector() == before);
  REQUIRE_FALSE(x.grad().defined());  // gradients are returned, never accumulated into .grad
  REQUIRE(x.is_leaf());
}

// ---- Hessians ----

TEST_CASE("gradcheck: hessian and hvp of known functions", "[gradcheck]") {
  SECTION("sum(x^3) -> diag(6x)") {
    const Tensor x = tensor({1.0, -2.0, 0.5}, kFloat64);
    const UnaryFunction f = [](const Tensor& v) { return total(v * v * v); };
    REQUIRE_ALLCLOSE(hessian(f, x), mat({{6.0, 0.0, 0.0}, {0.0, -12.0, 0.0}, {0.0, 0.0, 3.0}}), 1e-15, 0.0);
    // H v with v = [1, 2, 3]: [6, -24, 9]
    const Tensor hv = hvp(f, x, tensor({1.0, 2.0, 3.0}, kFloat64));
    REQUIRE(hv.shape() == x.shape());
    REQUIRE_ALLCLOSE(hv, tensor({6.0, -24.0, 9.0}, kFloat64), 1e-15, 0.0);
  }
  SECTION("sum(x)^2 -> 2 everywhere") {
    const Tensor x = tensor({{1.0, 2.0}, {3.0, -4.0}}, kFloat64);
    const UnaryFunction f = [](const Tensor& v) {
      const Tensor s = total(v);
      return s * s;
    };
    REQUIRE_ALLCLOSE(hessian(f, x), full({4, 4}, 2.0, kFloat64), 0.0, 0.0);
    // H v = 2 sum(v) = 2 (1 + 0 - 2 + 0.5) = -1 in every entry
    REQUIRE_ALLCLOSE(hvp(f, x, tensor({{1.0, 0.0}, {-2.0, 0.5}}, kFloat64)), full({2, 2}, -1.0, kFloat64), 1e-15, 0.0);
  }
  SECTION("sum(x e^x) -> diag(e^x (2 + x))") {
    // at x = [0, 1]: [2, 3e] = [2, 8.154845485377136]
    const Tensor x = tensor({0.0, 1.0}, kFloat64);
    const UnaryFunction f = [](const Tensor& v) { return total(v * exp(v)); };
    REQUIRE_ALLCLOSE(hessian(f, x), mat({{2.0, 0.0}, {0.0, 8.154845485377136}}), 1e-14, 0.0);
  }
  SECTION("a linear function has a zero Hessian; a constant one too") {
    const Tensor x = tensor({1.0, 2.0}, kFloat64);
    REQUIRE_ALLCLOSE(hessian([](const Tensor& v) { return total(v * 3.0); }, x), zeros({2, 2}, kFloat64), 0.0, 0.0);
    REQUIRE_ALLCLOSE(hessian([](const Tensor& v) { return total(v.detach()); }, x), zeros({2, 2}, kFloat64), 0.0, 0.0);
    REQUIRE_ALLCLOSE(hvp([](const Tensor& v) { return total(v * 3.0); }, x, x), zeros({2}, kFloat64), 0.0, 0.0);
  }
}

// ---- gradcheck passes on correct ops ----

TEST_CASE("gradcheck: elementwise ops pass on random float64 inputs of several shapes", "[gradcheck]") {
  Generator gen(11);
  struct Case {
    const char* name;
    Function f;
    bool positive_a;
    bool positive_b;
  };
  const std::vector<Case> cases = {
      {"add", [](const std::vector<Tensor>& in) { return in[0] + in[1]; }, false, false},
      {"sub", [](const std::vector<Tensor>& in) { return in[0] - in[1]; }, false, false},
      {"mul", [](const std::vector<Tensor>& in) { return in[0] * in[1]; }, false, false},
      {"div", [](const std::vector<Tensor>& in) { return in[0] / in[1]; }, false, true},
      {"pow", [](const std::vector<Tensor>& in) { return pow(in[0], in[1]); }, true, false},
      {"exp*tanh", [](const std::vector<Tensor>& in) { return exp(in[0]) * tanh(in[1]); }, false, false},
      {"sigmoid-log", [](const std::vector<Tensor>& in) { return sigmoid(in[0]) - log(in[1]); }, false, true},
      {"sqrt/log1p", [](const std::vector<Tensor>& in) { return sqrt(in[0]) / log1p(in[1]); }, true, true},
  };
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {Shape{}, Shape{}}, {Shape{4}, Shape{4}}, {Shape{2, 3}, Shape{3}}, {Shape{2, 1}, Shape{1, 3}}, {Shape{}, Shape{2, 2}},
      {Shape{2, 1, 3}, Shape{2, 3}}};
  for (const Case& c : cases)
    for (const auto& [sa, sb] : shapes) {
      Tensor a = random_leaf(sa, gen, c.positive_a);
      Tensor b = random_leaf(sb, gen, c.positive_b);
      const GradcheckReport r = gradcheck(c.f, {a, b});
      INFO(c.name << " " << sa.str() << " " << sb.str() << "\n" << r);
      REQUIRE(r.ok());
      REQUIRE(r.inputs.size() == 2);
      REQUIRE(r.inputs[0].checked);
      REQUIRE(r.inputs[0].max_abs_error < 1e-7);
      REQUIRE(r.warnings.empty());
      const GradcheckReport rr = gradgradcheck(c.f, {a, b});
      INFO(rr);
      REQUIRE(rr.ok());
      REQUIRE(rr.inputs.size() == 3);  // a, b and the random cotangent
    }
}

TEST_CASE("gradcheck: unary ops and the single-tensor overload", "[gradcheck]") {
  Generator gen(3);
  const Tensor x = randn({3, 4}, gen, kFloat64);  // no requires_grad: the overload differentiates w.r.t. x
  for (const UnaryFunction& f : std::vector<UnaryFunction>{
           [](const Tensor& v) { return tanh(v); }, [](const Tensor& v) { return sigmoid(v) * v; },
           [](const Tensor& v) { return exp(-v * v); }, [](const Tensor& v) { return pow(v, 3.0); },
           [](const Tensor& v) { return total(v * v); }, [](const Tensor& v) { return abs(v) + relu(v); }}) {
    const GradcheckReport r = gradcheck(f, x);
    INFO(r);
    REQUIRE(r.ok());
    REQUIRE(gradgradcheck(f, x).ok());
  }
}

TEST_CASE("gradcheck: inputs that do not require grad are passed through, not checked", "[gradcheck]") {
  Tensor x = leaf({1.0, -2.0, 3.0});
  const Tensor mask = tensor({1.0, 0.0, 1.0}, kFloat64).to(kBool);
  const Function f = [](const std::vector<Tensor>& in) { return where(in[1], in[0] * in[0], in[0]); };
  const GradcheckReport r = gradcheck(f, {x, mask});
  INFO(r);
  REQUIRE(r.ok());
  REQUIRE(r.inputs[0].checked);
  REQUIRE_FALSE(r.inputs[1].checked);
  REQUIRE_THAT(r.str(), Contains("not checked"));
}

// ---- the checker can fail ----

TEST_CASE("gradcheck: a VJP off by a factor of 2 fails and the report names the worst element", "[gradcheck]") {
  // analytic J = diag(x), numeric J = diag(2x); the violation |x| / (atol + rtol 2|x|) grows
  // with |x|, so the worst element is the largest |x| = 2.5 at [1, 0] (flat 3).
  Tensor x = mat({{0.5, -1.5, 1.0}, {2.5, -0.7, 0.3}}).requires_grad_();
  const GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return square_missing_two(in[0]); }, {x});
  INFO(r);
  REQUIRE_FALSE(r.ok());
  REQUIRE_FALSE(static_cast<bool>(r));
  const InputCheck& ic = r.inputs.at(0);
  REQUIRE_FALSE(ic.ok);
  REQUIRE(ic.worst_element == 3);
  REQUIRE(ic.worst_index == std::vector<std::int64_t>{1, 0});
  REQUIRE(ic.worst_output == 3);
  REQUIRE(ic.worst_output_index == std::vector<std::int64_t>{1, 0});
  REQUIRE(ic.analytic == Approx(2.5).epsilon(1e-12));
  REQUIRE(ic.numeric == Approx(5.0).epsilon(1e-8));
  REQUIRE(ic.max_abs_error == Approx(2.5).epsilon(1e-8));
  REQUIRE(ic.max_rel_error == Approx(0.5).epsilon(1e-8));  // |x - 2x| / |2x|
  const std::string s = r.str();
  REQUIRE_THAT(s, Contains("FAILED"));
  REQUIRE_THAT(s, Contains("input 0"));
  REQUIRE_THAT(s, Contains("[1, 0]"));
}

TEST_CASE("gradcheck: a wrong sign in one element is found in that element of that input", "[gradcheck]") {
  // f(a, b) = a * b with the VJP for b correct except element 2, whose sign is flipped.
  const auto mul_bad = [](const Tensor& a, const Tensor& b) {
    return custom_op(
        "mul_bad_b", {a, b}, [](const std::vector<Tensor>& in) { return in[0] * in[1]; },
        [](const std::vector<Tensor>& in, const Tensor&, const Tensor& g) {
          const Tensor flip = tensor({1.0, 1.0, -1.0, 1.0}, kFloat64);
          return Grads{g * in[1], g * in[0] * flip};
        });
  };
  Tensor a = leaf({0.5, -1.0, 2.0, 1.5});
  Tensor b = leaf({1.0, 3.0, -0.5, 2.0});
  const GradcheckReport r = gradcheck([&](const std::vector<Tensor>& in) { return mul_bad(in[0], in[1]); }, {a, b});
  INFO(r);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.inputs[0].ok);
  REQUIRE_FALSE(r.inputs[1].ok);
  REQUIRE(r.inputs[1].worst_element == 2);
  REQUIRE(r.inputs[1].worst_output == 2);
  REQUIRE(r.inputs[1].analytic == Approx(-2.0));  // -a[2]
  REQUIRE(r.inputs[1].numeric == Approx(2.0));    // a[2]
  REQUIRE_THAT(r.str(), Contains("input 1"));
  REQUIRE_THAT(r.str(), Contains("FAILED for 1 of 2 inputs"));
}

TEST_CASE("gradcheck: an output cut from the graph gives a zero analytic Jacobian, not a crash", "[gradcheck]") {
  // f(x) = (x*x).detach(): reverse mode sees a constant, finite differences see 2x.
  Tensor x = leaf({1.0, -3.0});
  const GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return (in[0] * in[0]).detach(); }, {x});
  INFO(r);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.inputs[0].worst_element == 1);
  REQUIRE(r.inputs[0].analytic == 0.0);
  REQUIRE(r.inputs[0].numeric == Approx(-6.0));
  // A function that ignores its inputs is consistent: both Jacobians are zero.
  const Tensor c = tensor({4.0, 5.0}, kFloat64);
  REQUIRE(gradcheck([c](const std::vector<Tensor>&) { return c; }, {x}).ok());
  REQUIRE_ALLCLOSE(jacobian([c](const std::vector<Tensor>&) { return c; }, {x})[0], zeros({2, 2}, kFloat64), 0.0, 0.0);
}

TEST_CASE("gradcheck: a wrong second derivative passes gradcheck and fails gradgradcheck", "[gradcheck]") {
  Tensor x = leaf({0.5, -1.25, 2.0});
  const Function bad = [](const std::vector<Tensor>& in) { return cube_detached_vjp(in[0]); };
  const Function good = [](const std::vector<Tensor>& in) { return cube(in[0]); };
  REQUIRE(gradcheck(bad, {x}).ok());
  REQUIRE(gradcheck(good, {x}).ok());
  REQUIRE(gradgradcheck(good, {x}).ok());

  const GradcheckReport r = gradgradcheck(bad, {x});
  INFO(r);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.check == "gradgradcheck");
  REQUIRE(r.inputs.size() == 2);
  // d(VJP)/dx should be diag(6 x g); the detached factor makes it 0. d(VJP)/dg = diag(3x^2) is right.
  REQUIRE_FALSE(r.inputs[0].ok);
  REQUIRE(r.inputs[0].analytic == 0.0);
  REQUIRE(r.inputs[1].ok);
  REQUIRE(r.inputs[1].name == "grad_output");
  REQUIRE_THAT(r.str(), Contains("gradgradcheck"));

  // The Hessian sees the same mistake: 0 instead of diag(6x).
  const UnaryFunction sum_bad = [](const Tensor& v) { return total(cube_detached_vjp(v)); };
  const UnaryFunction sum_good = [](const Tensor& v) { return total(cube(v)); };
  REQUIRE_ALLCLOSE(hessian(sum_good, x), mat({{3.0, 0, 0}, {0, -7.5, 0}, {0, 0, 12.0}}), 1e-15, 0.0);
  REQUIRE_ALLCLOSE(hessian(sum_bad, x), zeros({3, 3}, kFloat64), 0.0, 0.0);
}

// ---- fast mode ----

TEST_CASE("gradcheck: fast mode passes on correct VJPs and fails on wrong ones", "[gradcheck]") {
  Generator gen(5);
  GradcheckOptions fast;
  fast.fast_mode = true;
  for (std::uint64_t seed : {0u, 1u, 2u}) {
    fast.seed = seed;
    Tensor a = random_leaf({3, 4}, gen);
    Tensor b = random_leaf({4}, gen, true);
    const Function good = [](const std::vector<Tensor>& in) { return tanh(in[0]) * in[1] / (in[1] + 1.0); };
    const GradcheckReport r = gradcheck(good, {a, b}, fast);
    INFO(r);
    REQUIRE(r.ok());
    REQUIRE(r.inputs[0].worst_element == -1);  // one projection per input, no element
    REQUIRE(gradgradcheck(good, {a, b}, fast).ok());

    const GradcheckReport bad = gradcheck([](const std::vector<Tensor>& in) { return square_missing_two(in[0]); }, {a}, fast);
    INFO(bad);
    REQUIRE_FALSE(bad.ok());
    REQUIRE_FALSE(bad.inputs[0].ok);
    REQUIRE_THAT(bad.str(), Contains("fast mode"));
    REQUIRE_FALSE(gradgradcheck([](const std::vector<Tensor>& in) { return cube_detached_vjp(in[0]); }, {a}, fast).ok());
    REQUIRE(gradgradcheck([](const std::vector<Tensor>& in) { return cube(in[0]); }, {a}, fast).ok());
  }
}

TEST_CASE("gradcheck: fast mode projection is u^T J v", "[gradcheck]") {
  // For f(x) = 3x the Jacobian is 3I, so u^T J v = 3 <u, v> whatever u and v are; analytic and
  // numeric agree to rounding, and both are finite and non-zero for random directions.
  Tensor x = leaf({1.0, 2.0, 3.0, 4.0});
  GradcheckOptions fast;
  fast.fast_mode = true;
  fast.seed = 42;
  const GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return in[0] * 3.0; }, {x}, fast);
  INFO(r);
  REQUIRE(r.ok());
  REQUIRE(r.inputs[0].analytic != 0.0);
  REQUIRE(r.inputs[0].analytic == Approx(r.inputs[0].numeric).epsilon(1e-8));
  // The same seed gives the same projection.
  const GradcheckReport again = gradcheck([](const std::vector<Tensor>& in) { return in[0] * 3.0; }, {x}, fast);
  REQUIRE(again.inputs[0].analytic == r.inputs[0].analytic);
}

// ---- reports ----

TEST_CASE("gradcheck: float32 inputs carry a warning and still pass when the check passes", "[gradcheck]") {
  Tensor x = tensor({0.5f, -1.0f, 2.0f}, kFloat32).requires_grad_();
  GradcheckOptions loose;
  loose.eps = 1e-2;
  loose.atol = 1e-3;
  loose.rtol = 1e-2;
  const GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return in[0] * 2.0; }, {x}, loose);
  INFO(r);
  REQUIRE(r.ok());
  REQUIRE(r.dtype == kFloat32);
  REQUIRE(r.warnings.size() == 1);
  REQUIRE_THAT(r.warnings[0], Contains("float32 inputs: central differences are not accurate enough; use float64"));
  REQUIRE_THAT(r.str(), Contains("warning: float32 inputs"));
  REQUIRE_THAT(r.str(), Contains(": ok"));
  // float64 has no warning
  REQUIRE(gradcheck([](const std::vector<Tensor>& in) { return in[0] * 2.0; }, {x.to(kFloat64).detach().requires_grad_()})
              .warnings.empty());
}

TEST_CASE("gradcheck: report prints through fmt and operator<<", "[gradcheck]") {
  Tensor x = leaf({1.0, 2.0});
  const GradcheckReport r = gradcheck([](const std::vector<Tensor>& in) { return in[0] * in[0]; }, {x});
  std::ostringstream os;
  os << r;
  REQUIRE(os.str() == r.str());
  REQUIRE(fmt::format("{}", r) == r.str());
  REQUIRE_THAT(r.str(), Contains("gradcheck: ok (float64, eps=1e-06, atol=1e-05, rtol=0.001)"));
  REQUIRE_THAT(r.str(), Contains("input 0 [2]: ok"));
}

TEST_CASE("gradcheck: JSON output parses and has the expected fields", "[gradcheck]") {
  Tensor x = mat({{0.5, -1.5, 1.0}, {2.5, -0.7, 0.3}}).requires_grad_();
  Tensor y = leaf({1.0, 2.0, 3.0});
  const GradcheckReport r =
      gradcheck([](const std::vector<Tensor>& in) { return square_missing_two(in[0]) + in[1]; }, {x, y});
  const nlohmann::json j = nlohmann::json::parse(r.to_json().dump());
  REQUIRE(j.at("check") == "gradcheck");
  REQUIRE(j.at("ok") == false);
  REQUIRE(j.at("dtype") == "float64");
  REQUIRE(j.at("options").at("eps").get<double>() == 1e-6);
  REQUIRE(j.at("options").at("atol").get<double>() == 1e-5);
  REQUIRE(j.at("options").at("rtol").get<double>() == 1e-3);
  REQUIRE(j.at("options").at("fast_mode") == false);
  REQUIRE(j.at("outputs") == nlohmann::json::parse("[[2, 3]]"));
  REQUIRE(j.at("inputs").size() == 2);
  const auto& in0 = j.at("inputs").at(0);
  REQUIRE(in0.at("input") == 0);
  REQUIRE(in0.at("name") == "input 0");
  REQUIRE(in0.at("shape") == nlohmann::json::parse("[2, 3]"));
  REQUIRE(in0.at("checked") == true);
  REQUIRE(in0.at("ok") == false);
  REQUIRE(in0.at("worst_index") == nlohmann::json::parse("[1, 0]"));
  REQUIRE(in0.at("worst_element") == 3);
  REQUIRE(in0.at("analytic").get<double>() == Approx(2.5));
  REQUIRE(in0.at("numeric").get<double>() == Approx(5.0));
  REQUIRE(in0.at("max_abs_error").is_number());
  REQUIRE(j.at("inputs").at(1).at("ok") == true);
  REQUIRE(j.at("warnings").is_array());
}

TEST_CASE("gradcheck: non-finite numbers appear in JSON as strings", "[gradcheck]") {
  // A VJP that returns NaN: the check fails and the JSON stays valid.
  const auto nan_vjp = [](const Tensor& x) {
    return custom_op(
        "nan_vjp", x, [](const Tensor& v) { return v * 2.0; },
        [](const Tensor&, const Tensor& g) { return g * std::numeric_limits<double>::quiet_NaN(); });
  };
  Tensor x = leaf({1.0, 2.0});
  const GradcheckReport r = gradcheck([&](const std::vector<Tensor>& in) { return nan_vjp(in[0]); }, {x});
  INFO(r);
  REQUIRE_FALSE(r.ok());
  REQUIRE(std::isnan(r.inputs[0].analytic));
  const std::string text = r.to_json().dump();
  const nlohmann::json j = nlohmann::json::parse(text);
  REQUIRE(j.at("inputs").at(0).at("analytic") == "nan");
  REQUIRE(j.at("inputs").at(0).at("max_abs_error") == "nan");
  REQUIRE(j.at("inputs").at(0).at("numeric").get<double>() == Approx(2.0));
}

// ---- argument errors ----

TEST_CASE("gradcheck: bad arguments throw InvalidArgument with the fix", "[gradcheck][bad]") {
  const Function f = [](const std::vector<Tensor>& in) { return in[0] * 2.0; };
  Tensor x = leaf({1.0, 2.0});
  REQUIRE_THROWS_WITH(gradcheck(f, {Tensor()}), Contains("input 0 is an undefined Tensor"));
  REQUIRE_THROWS_AS(gradcheck(f, {Tensor()}), InvalidArgument);
  REQUIRE_THROWS_AS(gradcheck(f, std::vector<Tensor>{}), InvalidArgument);
  REQUIRE_THROWS_WITH(gradcheck(f, {tensor({1.0}, kFloat64)}), Contains("requires_grad_()"));
  REQUIRE_THROWS_AS(numerical_jacobian(f, {tensor({1.0}, kFloat64)}), InvalidArgument);
  REQUIRE_THROWS_AS(jacobian(f, {tensor({1.0}, kFloat64)}), InvalidArgument);
  REQUIRE_THROWS_AS(gradgradcheck(f, {tensor({1.0}, kFloat64)}), InvalidArgument);
  GradcheckOptions o;
  o.eps = 0.0;
  REQUIRE_THROWS_WITH(gradcheck(f, {x}, o), Contains("eps = 0"));
  REQUIRE_THROWS_AS(gradcheck(f, {x}, o), InvalidArgument);
  o.eps = -1e-6;
  REQUIRE_THROWS_AS(gradgradcheck(f, {x}, o), InvalidArgument);
  REQUIRE_THROWS_AS(numerical_jacobian(f, {x}, 0.0), InvalidArgument);
  o = GradcheckOptions{};
  o.atol = -1.0;
  REQUIRE_THROWS_AS(gradcheck(f, {x}, o), InvalidArgument);
  REQUIRE_THROWS_AS(gradcheck(Function{}, {x}), InvalidArgument);
  REQUIRE_THROWS_AS(gradcheck([](const std::vector<Tensor>&) { return Tensor(); }, {x}), InvalidArgument);
  REQUIRE_THROWS_AS(gradcheck(UnaryFunction([](const Tensor& v) { return v; }), tensor({1.0}, kFloat64).to(kInt64)),
                    InvalidArgument);
  // hessian/hvp need a scalar function and a v shaped like x
  REQUIRE_THROWS_WITH(hessian([](const Tensor& v) { return v * v; }, tensor({1.0, 2.0}, kFloat64)),
                      Contains("expected a single element"));
  REQUIRE_THROWS_AS(hvp([](const Tensor& v) { return total(v * v); }, tensor({1.0, 2.0}, kFloat64), tensor({1.0}, kFloat64)),
                    InvalidArgument);
}

// ---------------------------------------------------------------- hessian dtype

TEST_CASE("hessian returns the input's dtype (float32 and float64)", "[hardening][gradcheck]") {
  for (DType dt : {kFloat32, kFloat64}) {
    const Tensor x = tensor({1.0, 2.0}, dt);
    const Tensor h = hessian([](const Tensor& t) { return sum(mul(t, t)); }, x);
    REQUIRE(h.dtype() == dt);
    REQUIRE(h.shape() == Shape{2, 2});
    REQUIRE(h.to_vector() == std::vector<double>{2, 0, 0, 2});
  }
}
