// SPDX-License-Identifier: MIT
// The chain rule on one neuron, in the spirit of micrograd:
//
//   o = tanh(x1 w1 + x2 w2 + b)          x1 = 2, x2 = 0, w1 = -3, w2 = 1, b = 6.8813735870195432
//
// 1. forward: every intermediate value, printed
// 2. backward with a trace: each node, in the order backward runs it, receives g = dL/d(out) and
//    hands g ⊙ (local derivative) to its inputs — the chain rule, one multiplication per edge
// 3. the graph as Graphviz DOT, with values, gradients and each op's VJP formula (an SVG too when
//    Graphviz's `dot` is installed)
// 4. gradcheck: the same gradients by central differences
//
// Usage: chain_rule [--short] [--out DIR]   (DOT/SVG files go to DIR, default the temp directory)
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "autodiff/inspect.hpp"
#include "tapegrad.hpp"

using namespace tapegrad;

namespace {

Tensor scalar(double v, const char* name) {
  Tensor t = tensor(v, kFloat64).requires_grad_();
  t.set_name(name);
  return t;
}

Tensor neuron(const Tensor& x1, const Tensor& x2, const Tensor& w1, const Tensor& w2, const Tensor& b) {
  return tanh(x1 * w1 + x2 * w2 + b);
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path out_dir = std::filesystem::temp_directory_path();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--short") continue;  // the example is already quick
    if (a == "--out" && i + 1 < argc) {
      out_dir = argv[++i];
      continue;
    }
    fmt::print(stderr, "usage: chain_rule [--short] [--out DIR]\n");
    return 2;
  }

  Tensor x1 = scalar(2.0, "x1"), x2 = scalar(0.0, "x2");
  Tensor w1 = scalar(-3.0, "w1"), w2 = scalar(1.0, "w2");
  Tensor b = scalar(6.8813735870195432, "b");

  // 1. Forward, one op per line.
  const Tensor x1w1 = x1 * w1;
  const Tensor x2w2 = x2 * w2;
  const Tensor sum2 = x1w1 + x2w2;
  const Tensor n = sum2 + b;
  const Tensor o = tanh(n);
  fmt::print("forward\n  x1*w1 = {:.4f}\n  x2*w2 = {:.4f}\n  x1*w1 + x2*w2 = {:.4f}\n  n = ... + b = {:.4f}\n  o = tanh(n) = {:.4f}\n\n",
             x1w1.item(), x2w2.item(), sum2.item(), n.item(), o.item());

  // 2. Backward, traced. retain_graph keeps the nodes so the graph can be drawn afterwards.
  BackwardTrace trace;
  backward(o, {.retain_graph = true, .trace = &trace});
  fmt::print("{}\n\n", trace);
  fmt::print("gradients: do/dx1 = {:.4f}, do/dw1 = {:.4f}, do/dx2 = {:.4f}, do/dw2 = {:.4f}, do/db = {:.4f}\n", x1.grad().item(),
             w1.grad().item(), x2.grad().item(), w2.grad().item(), b.grad().item());
  fmt::print("  (tanh'(n) = 1 − o² = {:.4f}; the + nodes pass it on unchanged; x1*w1 sends w1·g to x1 and x1·g to w1)\n\n",
             1.0 - o.item() * o.item());

  // 3. The graph.
  const std::string dot = to_dot(o, {.values = true, .grads = true, .trace = &trace});
  const std::filesystem::path dot_path = out_dir / "chain_rule.dot";
  std::ofstream(dot_path) << dot;
  fmt::print("graph: {} ({} bytes of DOT)\n", dot_path.string(), dot.size());
  if (std::system("command -v dot > /dev/null 2>&1") == 0) {
    const std::filesystem::path svg = out_dir / "chain_rule.svg";
    const int rc = std::system(fmt::format("dot -Tsvg '{}' -o '{}'", dot_path.string(), svg.string()).c_str());
    fmt::print("  rendered with Graphviz: {} ({})\n\n", svg.string(), rc == 0 ? "ok" : "dot failed");
    if (rc != 0) return 1;
  } else {
    fmt::print("  (install Graphviz to render it: dot -Tsvg {} -o chain_rule.svg)\n\n", dot_path.string());
  }

  // 4. The same gradients by central differences.
  const GradcheckReport r = gradcheck(
      [](const std::vector<Tensor>& in) { return neuron(in[0], in[1], in[2], in[3], in[4]); }, {x1, x2, w1, w2, b});
  fmt::print("{}\n", r);

  // micrograd's numbers: x1 -1.5, w1 1.0, x2 0.5, w2 0.0, b 0.5
  const bool expected = std::abs(x1.grad().item() + 1.5) < 1e-6 && std::abs(w1.grad().item() - 1.0) < 1e-6 &&
                        std::abs(x2.grad().item() - 0.5) < 1e-6 && std::abs(w2.grad().item()) < 1e-12 &&
                        std::abs(b.grad().item() - 0.5) < 1e-6;
  return r.ok() && expected && trace.steps.size() == 5 ? 0 : 1;
}
