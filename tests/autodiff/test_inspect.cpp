// SPDX-License-Identifier: MIT
// Looking inside the tape (autodiff/inspect.hpp): graph export, backward traces, per-node VJP
// checks, precision reports, anomaly mode, creation sites and tape statistics.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autodiff/detail/node.hpp"
#include "autodiff/inspect.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// y = sum(tanh(w * x + b)): 4 nodes  mul(0) add(1) tanh(2) sum(3)
struct SmallGraph {
  Tensor x = tensor({0.5, -1.0, 2.0}, kFloat64);
  Tensor w = tensor({1.0, 2.0, 3.0}, kFloat64).requires_grad_();
  Tensor b = tensor(0.25, kFloat64).requires_grad_();
  SmallGraph() {
    x.set_name("x");
    w.set_name("fc1.weight");
    b.set_name("fc1.bias");
  }
  Tensor run() const { return sum(tanh(w * x + b)); }
};

// A two-layer network in float64 with a custom op in the middle:
//   h = tanh(x W1 + b1);  s = square(h);  out = s W2;  loss = mean(out²)
// square's VJP is dx = 2 g x; `broken` drops the factor 2.
Tensor square_op(const Tensor& h, bool broken) {
  return custom_op(
      broken ? "square_broken" : "square", h, [](const Tensor& v) { return v * v; },
      [broken](const Tensor& v, const Tensor& g) { return broken ? g * v : g * v * 2.0; });
}

struct Net {
  Tensor x, w1, b1, w2;
  bool broken;
  explicit Net(bool broken_square) : broken(broken_square) {
    Generator gen(11);
    x = randn({4, 3}, gen, kFloat64);
    w1 = (randn({3, 5}, gen, kFloat64) * 0.5).detach().requires_grad_();
    b1 = (randn({5}, gen, kFloat64) * 0.1).detach().requires_grad_();
    w2 = (randn({5, 2}, gen, kFloat64) * 0.5).detach().requires_grad_();
    w1.set_name("fc1.weight");
    b1.set_name("fc1.bias");
    w2.set_name("fc2.weight");
  }
  Tensor forward(const Tensor& W1, const Tensor& B1, const Tensor& W2) const {
    Tensor h = tanh(matmul(x, W1) + B1);
    Tensor out = matmul(square_op(h, broken), W2);
    return mean(out * out);
  }
};

// A custom relu whose VJP at 0 is `at_zero` (the correct subgradients are [0, 1]).
Tensor relu_with(const Tensor& x, double at_zero) {
  return custom_op(
      "my_relu", x, [](const Tensor& v) { return relu(v); },
      [at_zero](const Tensor& v, const Tensor& g) { return g * where(gt(v, 0.0), 1.0, where(eq(v, 0.0), at_zero, scalar_like(v, 0.0))); });
}

}  // namespace

// ---- tensor names ----

TEST_CASE("inspect: tensor names are kept, printed and survive detach-free use", "[inspect][names]") {
  Tensor w = zeros({2, 3}, kFloat64);
  REQUIRE(w.name().empty());
  w.set_name("fc1.weight").requires_grad_();
  REQUIRE(w.name() == "fc1.weight");
  REQUIRE_THAT(to_string(w), Contains("name=fc1.weight"));
  Tensor alias = w;  // a handle: same tensor, same name
  REQUIRE(alias.name() == "fc1.weight");
}

// ---- graph export ----

TEST_CASE("inspect: to_dot of a known graph has one box per op, leaves by name, and input -> op edges", "[inspect][dot]") {
  clear_tape();
  SmallGraph sg;
  const Tensor y = sg.run();
  const std::string dot = to_dot(y);
  INFO(dot);
  REQUIRE(contains(dot, "digraph tapegrad {"));
  // Four op boxes, positions 0..3, with op, shape, dtype and formula.
  REQUIRE(contains(dot, "n0 [label=\"#0 mul\\n[3] float64\\nda = g ⊙ b, db = g ⊙ a"));
  REQUIRE(contains(dot, "n1 [label=\"#1 add\\n[3] float64"));
  REQUIRE(contains(dot, "n2 [label=\"#2 tanh\\n[3] float64\\ndx = g ⊙ (1 − y²)"));
  REQUIRE(contains(dot, "n3 [label=\"#3 sum\\n[] float64"));
  // The root has a double border; leaves are ellipses labelled with their names.
  REQUIRE(std::regex_search(dot, std::regex("n3 \\[label=[^\\n]*peripheries=2")));
  REQUIRE(contains(dot, "label=\"fc1.weight\\n[3] float64\""));
  REQUIRE(contains(dot, "label=\"fc1.bias\\n[] float64\""));
  REQUIRE(contains(dot, "label=\"x\\n[3] float64\""));  // a constant (dashed)
  // Edges: input -> op, labelled by position for two-input ops.
  REQUIRE(contains(dot, "n0 -> n1 [label=\"0\"]"));
  REQUIRE(contains(dot, "n1 -> n2;"));
  REQUIRE(contains(dot, "n2 -> n3;"));
  REQUIRE(std::regex_search(dot, std::regex("t\\d+ -> n0 \\[label=\"0\"\\]")));  // w (mul's first input)
  REQUIRE(std::regex_search(dot, std::regex("t\\d+ -> n1 \\[label=\"1\"\\]")));  // b
  // Exactly 4 op boxes and 6 edges (w, x -> mul; mul, b -> add; add -> tanh; tanh -> sum).
  std::size_t boxes = 0, edges = 0;
  std::istringstream lines(dot);
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_search(line, std::regex("^  n\\d+ \\[label="))) ++boxes;
    if (contains(line, " -> ")) ++edges;
  }
  REQUIRE(boxes == 4);
  REQUIRE(edges == 6);
  // Without constants the input x and its edge disappear.
  const std::string no_const = to_dot(y, {.constants = false});
  REQUIRE_FALSE(contains(no_const, "label=\"x\\n"));
}

TEST_CASE("inspect: to_dot shows values and, with a trace, the gradient arriving at each node", "[inspect][dot]") {
  clear_tape();
  SmallGraph sg;
  const Tensor y = sg.run();
  BackwardTrace trace;
  backward(y, {.retain_graph = true, .trace = &trace});
  const std::string dot = to_dot(y, {.values = true, .grads = true, .trace = &trace});
  INFO(dot);
  REQUIRE(contains(dot, "value [0.5, -1, 2]"));  // x
  REQUIRE(contains(dot, "g [1]"));               // sum's incoming gradient
  REQUIRE(contains(dot, "grad ["));              // leaves' .grad
  REQUIRE_THROWS_AS(to_dot(Tensor()), InvalidArgument);
  // A leaf alone is one ellipse.
  REQUIRE(contains(to_dot(sg.w), "fc1.weight"));
}

TEST_CASE("inspect: to_dot output is accepted by Graphviz dot (skipped without dot)", "[inspect][dot]") {
  if (std::system("command -v dot > /dev/null 2>&1") != 0) {
    WARN("Graphviz 'dot' is not on PATH: DOT syntax check skipped (apt-get install graphviz to run it)");
    SUCCEED();
    return;
  }
  clear_tape();
  SmallGraph sg;
  const Tensor y = sg.run();
  BackwardTrace trace;
  backward(y, {.retain_graph = true, .trace = &trace});
  const std::string base = fmt::format("/tmp/tapegrad_test_dot_{}", static_cast<long>(std::rand()));
  {
    std::ofstream f(base + ".dot");
    f << to_dot(y, {.values = true, .trace = &trace});
  }
  const int rc = std::system(fmt::format("dot -Tsvg {0}.dot -o {0}.svg 2> {0}.err", base).c_str());
  std::ifstream err(base + ".err");
  const std::string err_text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  INFO(err_text);
  REQUIRE(rc == 0);
  std::ifstream svg(base + ".svg");
  const std::string svg_text((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  REQUIRE(contains(svg_text, "<svg"));
  REQUIRE(contains(svg_text, "fc1.weight"));
  for (const char* ext : {".dot", ".svg", ".err"}) std::remove((base + ext).c_str());
}

TEST_CASE("inspect: every op the library records carries its VJP formula on its node", "[inspect][dot]") {
  clear_tape();
  Generator gen(3);
  const Tensor x = randn({2, 3}, gen, kFloat64).requires_grad_();
  const Tensor w = randn({3, 2}, gen, kFloat64).requires_grad_();
  const Tensor s = softmax(x, 1);
  REQUIRE(vjp_formula(s) == "dx = y ⊙ (g − Σ g ⊙ y)");  // the op's string, read off the tape
  REQUIRE(vjp_formula(x).empty());                     // a leaf has no VJP
  // A graph touching most op families, including create_graph's recorded backward.
  const Tensor target = from_vector(std::vector<std::int64_t>{0, 1}, Shape{2});
  Tensor loss = cross_entropy(matmul(tanh(x) * 2.0 + x, w), target) + mean(layer_norm(x, {3})) +
                sum(logsumexp(transpose(x, 0, 1), 0)) + mse_loss(relu(x), exp(x)) + sum(cat({x, x}, 0));
  const std::vector<Tensor> g = grad({loss}, {x, w}, {}, {.create_graph = true});
  REQUIRE(tape_size() > 20);
  for (const Node& n : tape_nodes()) {
    INFO(n.op);
    REQUIRE(std::string_view(n.formula).size() > 0);
  }
}

TEST_CASE("inspect: no op in the sources records without a formula", "[inspect][dot]") {
#ifdef TAPEGRAD_SOURCE_DIR
  // Every record call passes OpDef{name, formula}; a record("name", ...) form (the one without a
  // formula) or an empty formula string would show here.
  namespace fs = std::filesystem;
  std::size_t calls = 0;
  for (const char* dir : {"ops", "ops/kernels", "nn", "autodiff", "autodiff/detail"})
    for (const auto& entry : fs::directory_iterator(fs::path(TAPEGRAD_SOURCE_DIR) / dir)) {
      if (entry.path().extension() != ".cpp") continue;
      std::ifstream in(entry.path());
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      INFO(entry.path().string());
      REQUIRE(text.find("record(\"") == std::string::npos);
      REQUIRE(text.find("record({\"\"") == std::string::npos);
      for (const char* form : {"record({", "OpDef{", "OpDef def{"})
        for (std::size_t at = text.find(form); at != std::string::npos; at = text.find(form, at + 1)) {
          ++calls;
          const std::size_t end = text.find('}', at);
          REQUIRE(text.substr(at, end - at).find(", \"\"") == std::string::npos);  // an empty formula literal
        }
    }
  REQUIRE(calls > 50);
#else
  WARN("TAPEGRAD_SOURCE_DIR not set: the source scan did not run");
#endif
}

// ---- backward trace ----

TEST_CASE("inspect: the backward trace lists nodes in reverse creation order with the right shapes", "[inspect][trace]") {
  clear_tape();
  // x [2, 3] -> matmul(x, w [3, 2]) [2, 2] -> softmax [2, 2] -> mean []
  Tensor x = tensor({{1.0, 2.0, 3.0}, {-1.0, 0.5, 0.0}}, kFloat64).requires_grad_();
  Tensor w = tensor({{0.1, 0.2}, {0.3, -0.4}, {0.5, 0.6}}, kFloat64).requires_grad_();
  x.set_name("x");
  w.set_name("w");
  const Tensor loss = mean(softmax(matmul(x, w), 1) * tensor({1.0, 2.0}, kFloat64));
  BackwardTrace trace;
  backward(loss, {.trace = &trace});
  INFO(trace.str());
  REQUIRE(trace.steps.size() == 4);
  const std::vector<std::string> ops{"mean", "mul", "softmax", "matmul"};
  for (std::size_t i = 0; i < 4; ++i) {
    REQUIRE(trace.steps[i].op == ops[i]);
    if (i > 0) REQUIRE(trace.steps[i].position < trace.steps[i - 1].position);
  }
  REQUIRE(trace.steps[0].grad_out.shape == Shape{});
  REQUIRE(trace.steps[0].grad_out.values == std::vector<double>{1.0});
  REQUIRE(trace.steps[0].inputs[0].grad.shape == Shape{2, 2});  // 1/4 each
  REQUIRE(trace.steps[0].inputs[0].grad.values == std::vector<double>{0.25, 0.25, 0.25, 0.25});
  REQUIRE(trace.steps[1].inputs.size() == 2);
  REQUIRE(trace.steps[1].inputs[1].source == "constant");
  REQUIRE_FALSE(trace.steps[1].inputs[1].grad.defined);  // no gradient for a constant
  REQUIRE(trace.steps[3].grad_out.shape == Shape{2, 2});
  REQUIRE(trace.steps[3].inputs[0].grad.shape == Shape{2, 3});
  REQUIRE(trace.steps[3].inputs[0].source == "leaf 'x'");
  REQUIRE(trace.steps[3].inputs[1].grad.shape == Shape{3, 2});
  REQUIRE(trace.steps[3].inputs[1].source == "leaf 'w'");
  // The trace's last step produced exactly the leaves' gradients.
  REQUIRE(trace.steps[3].inputs[0].grad.values == x.grad().to_vector());

  const std::string text = trace.str();
  REQUIRE_THAT(text, Contains("4 steps"));
  REQUIRE_THAT(text, Contains("softmax"));
  REQUIRE_THAT(fmt::format("{}", trace), Contains("leaf 'w'"));
  const nlohmann::json j = trace.to_json();
  REQUIRE(j["steps"].size() == 4);
  REQUIRE(j["steps"][2]["op"] == "softmax");
  REQUIRE(j["steps"][3]["inputs"][1]["grad"]["shape"] == std::vector<std::int64_t>{3, 2});
  REQUIRE(nlohmann::json::parse(j.dump()) == j);
}

TEST_CASE("inspect: tracing keeps long tensors abbreviated and works through grad()", "[inspect][trace]") {
  Tensor x = arange(20.0, kFloat64).requires_grad_();
  BackwardTrace trace;
  trace.max_values = 3;
  const Tensor y = sum(x * x);
  const auto gs = grad({y}, {x}, {}, {.trace = &trace});
  REQUIRE(trace.steps.size() == 2);
  REQUIRE(trace.steps[1].inputs[0].grad.values.size() == 3);
  REQUIRE(trace.steps[1].inputs[0].grad.numel == 20);
  REQUIRE_THAT(trace.steps[1].inputs[0].grad.values_str(), Contains("... (20 values)"));
  REQUIRE_FALSE(x.grad().defined());  // grad() does not accumulate
  REQUIRE(gs[0].to_vector()[3] == 6.0);
}

// ---- check_tape ----

TEST_CASE("inspect: check_tape names the broken custom op that whole-network gradcheck only detects", "[inspect][check_tape]") {
  const Net net(/*broken_square=*/true);
  const Function f = [&net](const std::vector<Tensor>& in) { return net.forward(in[0], in[1], in[2]); };
  const std::vector<Tensor> params{net.w1, net.b1, net.w2};

  // Whole network: the wrong VJP shows up at the parameters before it, but nothing says where.
  const GradcheckReport whole = gradcheck(f, params);
  INFO(whole);
  REQUIRE_FALSE(whole.ok());

  const TapeCheckReport r = check_tape(f, params);
  INFO(r);
  REQUIRE_FALSE(r.ok());
  const NodeCheck* bad = r.first_failure();
  REQUIRE(bad != nullptr);
  REQUIRE(bad->op == "square_broken");
  REQUIRE(bad->index == 3);  // matmul(0) add(1) tanh(2) square_broken(3) matmul(4) mul(5) mean(6)
  // analytic g h vs numeric 2 g h: exactly half.
  REQUIRE(bad->analytic == Approx(bad->numeric / 2.0).epsilon(1e-6));
  REQUIRE(bad->worst_input_source == "node 2 (tanh)");
  for (std::size_t i = 0; i < 3; ++i) REQUIRE(r.nodes[i].ok);  // the nodes before it pass
  REQUIRE_THAT(r.str(), Contains("first wrong VJP: node 3 'square_broken'"));
  const nlohmann::json j = r.to_json();
  REQUIRE(j["ok"] == false);
  REQUIRE(j["first_failure"] == 3);
  REQUIRE(j["nodes"][3]["op"] == "square_broken");
  // The parameters are restored exactly after the in-place perturbations.
  const Net fresh(true);
  REQUIRE_ALLCLOSE(net.w1, fresh.w1, 0.0, 0.0);
}

TEST_CASE("inspect: check_tape passes a correct network, aliased inputs and shared subexpressions", "[inspect][check_tape]") {
  const Net net(/*broken_square=*/false);
  const Function f = [&net](const std::vector<Tensor>& in) { return net.forward(in[0], in[1], in[2]); };
  const TapeCheckReport r = check_tape(f, {net.w1, net.b1, net.w2});
  INFO(r);
  REQUIRE(r.ok());
  REQUIRE(r.nodes.size() == 7);
  REQUIRE(r.nodes[3].op == "square");
  REQUIRE(r.nodes[3].checked_inputs == 1);
  REQUIRE(r.nodes[0].checked_inputs == 1);  // x is a constant
  REQUIRE(r.nodes[5].checked_inputs == 1);  // out * out: one input, used twice

  // x - max(x): the second input depends on the first; both sides see the total derivative.
  Tensor x = tensor({{0.3, -1.2, 2.0}, {1.5, 0.1, -0.7}}, kFloat64).requires_grad_();
  const TapeCheckReport r2 = check_tape(
      [](const std::vector<Tensor>& in) { return sum(exp(in[0] - max(in[0], 1, true)) * in[0]); }, {x});
  INFO(r2);
  REQUIRE(r2.ok());
}

TEST_CASE("inspect: check_tape explains what it cannot do", "[inspect][check_tape]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  // A leaf made inside f cannot be perturbed from outside.
  const Function inner_leaf = [](const std::vector<Tensor>& in) {
    Tensor w = tensor({3.0, 4.0}, kFloat64).requires_grad_();
    return sum(in[0] * w);
  };
  REQUIRE_THROWS_WITH(check_tape(inner_leaf, {x}), Contains("create it outside f"));
  // A function that records different ops each time.
  int calls = 0;
  const Function flaky = [&calls](const std::vector<Tensor>& in) { return ++calls == 1 ? sum(exp(in[0])) : sum(tanh(in[0])); };
  REQUIRE_THROWS_WITH(check_tape(flaky, {x}), Contains("must record the same ops"));
  REQUIRE_THROWS_AS(check_tape(Function(), {x}), InvalidArgument);
}

// ---- kinks ----

TEST_CASE("inspect: gradcheck reports relu, abs, max ties and clamp bounds as kinks, not failures", "[inspect][gradcheck][kinks]") {
  struct Case {
    const char* name;
    UnaryFunction f;
    Tensor x;
    double lo, hi;  // the expected subgradient interval at the kink
  };
  const std::vector<Case> cases{
      {"relu", [](const Tensor& v) { return relu(v); }, tensor({-1.0, 0.0, 2.0}, kFloat64), 0.0, 1.0},
      {"abs", [](const Tensor& v) { return abs(v); }, tensor({-1.0, 0.0, 2.0}, kFloat64), -1.0, 1.0},
      {"clamp", [](const Tensor& v) { return clamp(v, 0.0, 1.0); }, tensor({-1.0, 0.0, 0.5}, kFloat64), 0.0, 1.0},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    GradcheckReport r = gradcheck(c.f, c.x);
    INFO(r);
    REQUIRE(r.ok());
    REQUIRE(r.inputs[0].kinks.size() == 1);
    const Kink& k = r.inputs[0].kinks[0];
    REQUIRE(k.index == std::vector<std::int64_t>{1});
    REQUIRE(k.output_index == std::vector<std::int64_t>{1});
    REQUIRE(std::min(k.left, k.right) == Approx(c.lo).margin(1e-9));
    REQUIRE(std::max(k.left, k.right) == Approx(c.hi).margin(1e-9));
    REQUIRE_THAT(r.str(), Contains("1 kink"));
    // Without kink detection relu and clamp fail there (central difference 1/2 vs the subgradient
    // 0 or 1); for abs the central difference 0 happens to equal the subgradient 0.
    if (std::string(c.name) != "abs") {  // abs: central difference 0 = analytic 0, passes anyway
      GradcheckOptions plain;
      plain.detect_kinks = false;
      REQUIRE_FALSE(gradcheck(c.f, c.x, plain).ok());
    }
  }
  // max over all elements with a tie: g is shared (1/2 each), inside [0, 1] for each tied entry.
  Tensor t = tensor({1.0, 3.0, 3.0}, kFloat64);
  const GradcheckReport r = gradcheck([](const Tensor& v) { return max(v); }, t);
  INFO(r);
  REQUIRE(r.ok());
  REQUIRE(r.inputs[0].kinks.size() == 2);
  REQUIRE(r.inputs[0].kinks[0].analytic == 0.5);
  const nlohmann::json j = r.to_json();
  REQUIRE(j["inputs"][0]["kinks"].size() == 2);
  REQUIRE(j["inputs"][0]["kinks"][0]["interval"][1].get<double>() == Approx(1.0));
  REQUIRE(j["options"]["detect_kinks"] == true);
}

TEST_CASE("inspect: a wrong VJP at a kink still fails gradcheck", "[inspect][gradcheck][kinks]") {
  const Tensor x = tensor({-1.0, 0.0, 2.0}, kFloat64);
  // Any value in [0, 1] is a valid subgradient of relu at 0; 1.5 is not.
  for (double ok_value : {0.0, 0.5, 1.0}) {
    const GradcheckReport r = gradcheck([ok_value](const Tensor& v) { return relu_with(v, ok_value); }, x);
    INFO(r);
    REQUIRE(r.ok());
  }
  const GradcheckReport bad = gradcheck([](const Tensor& v) { return relu_with(v, 1.5); }, x);
  INFO(bad);
  REQUIRE_FALSE(bad.ok());
  REQUIRE(bad.inputs[0].worst_index == std::vector<std::int64_t>{1});
  REQUIRE(bad.inputs[0].analytic == 1.5);
  REQUIRE(bad.inputs[0].kinks.empty());
  // A smooth function with a wrong derivative is not mistaken for a kink.
  const GradcheckReport smooth = gradcheck(
      [](const Tensor& v) {
        return custom_op("bad_exp", v, [](const Tensor& u) { return exp(u); }, [](const Tensor& u, const Tensor& g) { return g * exp(u) * 1.01; });
      },
      x);
  REQUIRE_FALSE(smooth.ok());
  REQUIRE(smooth.inputs[0].kinks.empty());
}

// ---- precision report ----

TEST_CASE("inspect: the precision report finds the subtraction that cancels in float32", "[inspect][precision]") {
  // (x + 1) - 1 for small x: float32 rounds x + 1 to 24 bits, the subtraction exposes that error
  // relative to the small result.
  Tensor x = tensor({1e-3, 2e-3, -3e-3}, kFloat64).requires_grad_();
  x.set_name("x");
  const Function f = [](const std::vector<Tensor>& in) { return sum(((in[0] + 1.0) - 1.0) * 1000.0); };
  const PrecisionReport r = precision_report(f, {x});
  INFO(r);
  REQUIRE(r.nodes.size() == 4);  // add, sub, mul, sum
  REQUIRE(r.nodes[0].op == "add");
  REQUIRE(r.nodes[1].op == "sub");
  REQUIRE(r.nodes[0].value_rel_error < 1e-7);   // 1.001 in float32: ~6e-8 relative
  REQUIRE(r.nodes[1].value_rel_error > 1e-6);   // 1e-3 recovered from 1.001: ~1e-5 relative
  REQUIRE(r.nodes[1].loses_precision());
  REQUIRE_FALSE(r.nodes[0].loses_precision());
  REQUIRE_FALSE(r.nodes[2].loses_precision());  // inherits the error, does not add to it
  REQUIRE(r.nodes[2].input_rel_error == r.nodes[1].value_rel_error);
  REQUIRE(r.output_rel_error > 1e-5);
  REQUIRE(r.nodes[1].grad_rel_error == 0.0);  // gradients of + and - are exact
  REQUIRE(r.input_grad_rel_error[0] == 0.0);
  REQUIRE_THAT(r.str(), Contains("<- loses precision"));
  const nlohmann::json j = r.to_json();
  REQUIRE(j["nodes"][1]["loses_precision"] == true);
  REQUIRE(j["inputs"][0]["name"] == "x");
  REQUIRE_THROWS_WITH(precision_report(f, {x.to(kFloat32)}), Contains("pass float64 inputs"));
}

// ---- anomaly mode ----

TEST_CASE("inspect: anomaly mode names the op whose forward gives -inf (log(0))", "[inspect][anomaly]") {
  Tensor x = tensor({1.0, 0.0, 2.0}, kFloat64).requires_grad_();
  {
    // Outside anomaly mode log(0) = -inf is a value, not an error.
    const Tensor y = log(x);
    REQUIRE(std::isinf(y.to_vector()[1]));
  }
  DetectAnomalyGuard anomaly;
  try {
    const SiteScope site(SourceLocation::current());  // as the ops do with their caller's site
    const Tensor y = log(x * 1.0);
    FAIL("expected an anomaly error");
  } catch (const RuntimeError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE_THAT(what, Contains("the forward of 'log'"));
    REQUIRE_THAT(what, Contains("-inf at [1]"));
    REQUIRE_THAT(what, Contains("test_inspect.cpp:"));  // the creation site
    REQUIRE_THAT(what, Contains("clamp_min"));          // the fix
  }
  // -inf masks can be allowed; NaN still cannot.
  DetectAnomalyGuard allow_inf(AnomalyOptions{.allow_forward_inf = true});
  REQUIRE_NOTHROW(log(x));
}

TEST_CASE("inspect: anomaly mode names the op whose VJP computes 0/0", "[inspect][anomaly]") {
  // f(x) = x, with a VJP g * x / x: 0/0 = NaN at x = 0.
  const auto bad_identity = [](const Tensor& x) {
    return custom_op("bad_identity", x, [](const Tensor& v) { return v * 1.0; }, [](const Tensor& v, const Tensor& g) { return g * v / v; });
  };
  Tensor x = tensor({0.0, 1.0}, kFloat64).requires_grad_();
  {
    backward(sum(bad_identity(x) * 2.0));  // silently NaN without anomaly mode
    REQUIRE(std::isnan(x.grad().to_vector()[0]));
    x.zero_grad();
  }
  DetectAnomalyGuard anomaly;
  const Tensor loss = sum(bad_identity(x) * 2.0);
  try {
    backward(loss);
    FAIL("expected an anomaly error");
  } catch (const RuntimeError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE_THAT(what, Contains("the vjp of 'bad_identity'"));
    REQUIRE_THAT(what, Contains("nan"));
    REQUIRE_THAT(what, Contains("at [0]"));
    REQUIRE_THAT(what, Contains("the incoming gradient g was finite"));
  }
  REQUIRE_FALSE(x.grad().defined());  // the error came before anything reached the leaf
}

TEST_CASE("inspect: anomaly guards nest and restore the previous mode", "[inspect][anomaly]") {
  REQUIRE_FALSE(is_anomaly_enabled());
  {
    DetectAnomalyGuard outer;
    {
      DetectAnomalyGuard inner;
      REQUIRE(is_anomaly_enabled());
    }
    REQUIRE(is_anomaly_enabled());
  }
  REQUIRE_FALSE(is_anomaly_enabled());
  Tensor x = tensor({0.0}, kFloat64).requires_grad_();
  REQUIRE_NOTHROW(log(x));
}

// ---- creation sites ----

TEST_CASE("inspect: nodes carry the call site that was current when they were recorded", "[inspect][site]") {
  Tensor x = tensor({1.0, 2.0}, kFloat64).requires_grad_();
  std::uint_least32_t line = 0;
  {
    const SourceLocation here = SourceLocation::current();
    const SiteScope site(here);  // what an op does with its caller's site
    line = here.line();
    Tensor y = exp(x);
    REQUIRE(tape_nodes().back().site.line() == line);
    REQUIRE_THAT(site_str(tape_nodes().back().site), Contains("test_inspect.cpp:"));
  }
  Tensor z = mul(x, x);  // an op called from here: its own site
  REQUIRE(tape_nodes().back().site.line() == static_cast<std::uint_least32_t>(__LINE__ - 1));
  Tensor w = x * x;  // operators cannot take the site argument; no enclosing site: unknown
  REQUIRE(site_str(tape_nodes().back().site).empty() == (tape_nodes().back().site.line() == 0));
}

// ---- tape statistics ----

TEST_CASE("inspect: tape statistics count nodes, saved bytes and the peak since reset_peak", "[inspect][stats]") {
  clear_tape();
  reset_peak();
  REQUIRE(tape_stats().peak_live_nodes == 0);
  Tensor x = ones({100}, kFloat64).requires_grad_();
  {
    Tensor y = exp(x);          // saves y (800 B); x is a leaf it refers to (800 B of leaf_bytes)
    Tensor z = sum(y * 2.0);    // mul saves the scalar 2 (8 B), all y's gradient reads; sum saves nothing
    const TapeStats s = tape_stats();
    REQUIRE(s.nodes == 3);
    REQUIRE(s.live_nodes == 3);
    REQUIRE(s.saved_bytes == 800 + 8 + 0);
    REQUIRE(s.leaf_bytes == 800);
    REQUIRE(s.node_bytes >= 3 * sizeof(Node));  // the nodes themselves, their edges and saved handles
    REQUIRE(s.peak_saved_bytes == s.saved_bytes);
    REQUIRE(s.peak_live_nodes == 3);
    backward(z);
  }
  const TapeStats after = tape_stats();
  REQUIRE(after.nodes == 0);
  REQUIRE(after.saved_bytes == 0);
  REQUIRE(after.peak_live_nodes == 3);  // the peak remembers
  REQUIRE(after.peak_saved_bytes == 808);
  REQUIRE_THAT(after.str(), Contains("peak 3"));
  REQUIRE_THAT(fmt::format("{}", after), Contains("808 B"));
  reset_peak();
  REQUIRE(tape_stats().peak_live_nodes == 0);
  REQUIRE(tape_stats().peak_saved_bytes == 0);
}
