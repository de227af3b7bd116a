// SPDX-License-Identifier: MIT
// explain: what softmax and its relatives do to a vector, and what their derivatives look like.
//
//   explain softmax 2 1 0.5               probabilities, full Jacobian J = diag(p) − ppᵀ and its
//                                         properties checked numerically (symmetric, rows sum to 0,
//                                         eigenvalues >= 0 with one 0, rank K−1), the VJP for an
//                                         upstream gradient by formula and via the tape, a
//                                         temperature table
//   explain log_softmax 2 1 0.5           J = I − 1pᵀ (a projection: J² = J, rank K−1)
//   explain logsumexp 2 1 0.5             gradient softmax(x), Hessian diag(p) − ppᵀ
//   explain cross_entropy --target 0 2 1 0.5
//                                         loss −log p_t, gradient p − y, Hessian diag(p) − ppᵀ from
//                                         double backward
// Options: --grad 1,0,0 (upstream gradient for the VJP; default e_0), --json (machine-readable),
// --short (no other argument: run the default cases quickly; CI runs every example this way).
// Bad arguments: a usage message on stderr and exit code 2.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>  // the reports' to_json()

#include "autodiff/inspect.hpp"
#include "tapegrad.hpp"

using namespace tapegrad;

namespace {

constexpr const char* kUsage =
    "usage: explain <softmax|log_softmax|logsumexp|cross_entropy> [options] x_0 x_1 ... x_{K-1}\n"
    "  --target t     class index (cross_entropy; required there, 0 <= t < K)\n"
    "  --grad g0,g1,...  upstream gradient for the VJP (K values; default e_0)\n"
    "  --json         machine-readable output\n"
    "  --short        with no other argument: run the default cases quickly\n"
    "example: explain softmax 2 1 0.5\n"
    "         explain cross_entropy --target 0 2 1 0.5\n";

struct Args {
  std::string fn;
  std::vector<double> x;
  std::optional<std::int64_t> target;
  std::vector<double> g;
  bool json = false;
};

[[noreturn]] void usage_error(const std::string& why) {
  std::cerr << "explain: " << why << "\n" << kUsage;
  std::exit(2);
}

bool parse_double(const std::string& s, double& out) {
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && std::isfinite(out);
}

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = s.find(',', start);
    const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    double d = 0;
    if (!parse_double(part, d)) usage_error(fmt::format("--grad: '{}' is not a number (expected e.g. --grad 1,0,0)", part));
    v.push_back(d);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return v;
}

Args parse(const std::vector<std::string>& argv) {
  Args a;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    double d = 0;
    if (s == "--json") {
      a.json = true;
    } else if (s == "--target" || s == "--grad") {
      if (i + 1 >= argv.size()) usage_error(s + " needs a value");
      const std::string v = argv[++i];
      if (s == "--grad") {
        a.g = parse_list(v);
      } else {
        if (!parse_double(v, d) || d != std::floor(d) || d < 0)
          usage_error(fmt::format("--target {}: expected a class index (an integer >= 0)", v));
        a.target = static_cast<std::int64_t>(d);
      }
    } else if (s.rfind("--grad=", 0) == 0) {
      a.g = parse_list(s.substr(7));
    } else if (a.fn.empty() && !parse_double(s, d)) {
      a.fn = s;
    } else if (parse_double(s, d)) {
      a.x.push_back(d);
    } else {
      usage_error(fmt::format("unexpected argument '{}'", s));
    }
  }
  if (a.fn != "softmax" && a.fn != "log_softmax" && a.fn != "logsumexp" && a.fn != "cross_entropy")
    usage_error(a.fn.empty() ? "missing the function name" : fmt::format("unknown function '{}'", a.fn));
  if (a.x.empty()) usage_error("missing the input values x_0 ... x_{K-1}");
  const auto K = static_cast<std::int64_t>(a.x.size());
  if (a.fn == "cross_entropy") {
    if (!a.target) usage_error("cross_entropy needs --target t");
    if (*a.target >= K) usage_error(fmt::format("--target {} is out of range for {} classes (expected 0 <= t < {})", *a.target, K, K));
  } else if (a.target) {
    usage_error("--target applies to cross_entropy only");
  }
  const std::int64_t g_size = a.fn == "logsumexp" || a.fn == "cross_entropy" ? 1 : K;
  if (a.g.empty()) {
    a.g.assign(static_cast<std::size_t>(g_size), 0.0);
    a.g[0] = 1.0;
  } else if (static_cast<std::int64_t>(a.g.size()) != g_size) {
    usage_error(fmt::format("--grad has {} values; {} of a {}-vector gives {} (expected {} values)", a.g.size(), a.fn, K,
                            g_size == 1 ? "a scalar" : "a vector", g_size));
  }
  return a;
}

using Mat = Eigen::MatrixXd;

Mat to_mat(const Tensor& t) {
  const auto v = t.to_vector();
  const auto r = t.dim() == 2 ? t.size(0) : 1, c = t.dim() == 2 ? t.size(1) : t.numel();
  Mat m(r, c);
  for (Eigen::Index i = 0; i < r; ++i)
    for (Eigen::Index j = 0; j < c; ++j) m(i, j) = v[static_cast<std::size_t>(i * c + j)];
  return m;
}

std::vector<std::vector<double>> rows_of(const Mat& m) {
  std::vector<std::vector<double>> r(static_cast<std::size_t>(m.rows()));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) r[static_cast<std::size_t>(i)].push_back(m(i, j));
  return r;
}

std::string vec_str(const std::vector<double>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += fmt::format("{}{:.6f}", i ? ", " : "", v[i]);
  return s + "]";
}

std::string mat_str(const Mat& m, const std::string& indent = "    ") {
  std::string s;
  for (Eigen::Index i = 0; i < m.rows(); ++i) {
    s += indent;
    for (Eigen::Index j = 0; j < m.cols(); ++j) s += fmt::format("{:>11.6f}", m(i, j));
    s += "\n";
  }
  return s;
}

// Matrix facts a learner can check by hand.
nlohmann::json properties(const Mat& J, bool symmetric_expected) {
  nlohmann::json p;
  p["max_asymmetry"] = (J - J.transpose()).cwiseAbs().maxCoeff();
  p["symmetric"] = p["max_asymmetry"].get<double>() < 1e-9;
  const Eigen::VectorXd row_sums = J.rowwise().sum();
  p["row_sums"] = std::vector<double>(row_sums.data(), row_sums.data() + row_sums.size());
  std::vector<double> eig;
  if (symmetric_expected) {
    Eigen::SelfAdjointEigenSolver<Mat> es((J + J.transpose()) / 2.0);
    for (Eigen::Index i = 0; i < es.eigenvalues().size(); ++i) eig.push_back(es.eigenvalues()(i));
  } else {
    Eigen::EigenSolver<Mat> es(J);
    for (Eigen::Index i = 0; i < es.eigenvalues().size(); ++i) eig.push_back(es.eigenvalues()(i).real());
    std::sort(eig.begin(), eig.end());
  }
  p["eigenvalues"] = eig;
  Eigen::FullPivLU<Mat> lu(J);
  lu.setThreshold(1e-10);
  p["rank"] = lu.rank();
  return p;
}

void print_properties(const nlohmann::json& p, const std::string& expect) {
  fmt::print("  properties (checked numerically; expected: {}):\n", expect);
  fmt::print("    symmetric:   {} (max |J - Jᵀ| = {:.2e})\n", p["symmetric"].get<bool>() ? "yes" : "no",
             p["max_asymmetry"].get<double>());
  fmt::print("    row sums:    {}\n", vec_str(p["row_sums"].get<std::vector<double>>()));
  fmt::print("    eigenvalues: {}\n", vec_str(p["eigenvalues"].get<std::vector<double>>()));
  fmt::print("    rank:        {}\n", p["rank"].get<int>());
}

double entropy(const std::vector<double>& p) {
  double h = 0.0;
  for (double v : p)
    if (v > 0) h -= v * std::log(v);
  return h;
}

// softmax(x / T) for a few temperatures; with a target, the cross-entropy loss −log p_t too.
nlohmann::json temperature_table(const Tensor& x, std::optional<std::int64_t> target, bool print) {
  nlohmann::json t = nlohmann::json::array();
  if (print) fmt::print("  temperature table: softmax(x / T) (T → 0: one-hot at the max; T → ∞: uniform)\n");
  for (double T : {0.25, 0.5, 1.0, 2.0, 4.0}) {
    NoGradGuard no_grad;
    const auto p = softmax(x, 0, T).to_vector();
    nlohmann::json row = {{"T", T}, {"p", p}, {"entropy", entropy(p)}};
    std::string loss;
    if (target) {
      const double l = -std::log(p[static_cast<std::size_t>(*target)]);
      row["loss"] = l;
      loss = fmt::format("  loss {:.4f}", l);
    }
    t.push_back(std::move(row));
    if (print) fmt::print("    T = {:<5} p = {}  entropy {:.4f}{}\n", T, vec_str(p), entropy(p), loss);
  }
  return t;
}

int explain(const Args& a) {
  const auto K = static_cast<std::int64_t>(a.x.size());
  const Tensor x = from_vector(a.x, Shape{K}, kFloat64);
  const Tensor p_t = [&] {
    NoGradGuard no_grad;
    return softmax(x, 0);
  }();
  const std::vector<double> p = p_t.to_vector();
  const Mat P = to_mat(p_t).transpose();  // K x 1
  const Mat softmax_jac = Mat(P.asDiagonal()) - P * P.transpose();
  nlohmann::json out;
  out["function"] = a.fn;
  out["x"] = a.x;
  out["p"] = p;
  const bool print = !a.json;
  if (print) fmt::print("{}(x), x = {}\n  p = softmax(x) = {}\n", a.fn, vec_str(a.x), vec_str(p));

  if (a.fn == "softmax" || a.fn == "log_softmax") {
    const bool sm = a.fn == "softmax";
    const UnaryFunction f = [sm](const Tensor& v) { return sm ? softmax(v, 0) : log_softmax(v, 0); };
    const Tensor y = [&] {
      NoGradGuard no_grad;
      return f(x);
    }();
    const Mat J = to_mat(jacobian(f, x));
    const Mat I = Mat::Identity(K, K);
    const Mat J_formula = sm ? softmax_jac : Mat(I - Mat::Ones(K, 1) * P.transpose());
    const nlohmann::json props = properties(J, sm);
    out["y"] = y.to_vector();
    out["jacobian"] = rows_of(J);
    out["jacobian_formula"] = sm ? "diag(p) - p p^T" : "I - 1 p^T";
    out["jacobian_formula_error"] = (J - J_formula).cwiseAbs().maxCoeff();
    out["properties"] = props;
    if (!sm) out["properties"]["idempotent_error"] = (J * J - J).cwiseAbs().maxCoeff();
    // The VJP for g, by formula and by the tape.
    const Mat g = Eigen::Map<const Eigen::VectorXd>(a.g.data(), K);
    const Eigen::VectorXd by_formula = sm ? Eigen::VectorXd(P.array().col(0) * (g.array().col(0) - g.col(0).dot(P.col(0))))
                                          : Eigen::VectorXd(g.col(0) - P.col(0) * g.col(0).sum());
    Tensor leaf = x.detach().requires_grad_();
    BackwardTrace trace;
    backward(f(leaf), from_vector(a.g, Shape{K}, kFloat64), {.trace = &trace});
    const auto by_tape = leaf.grad().to_vector();
    out["vjp"] = {{"g", a.g},
                  {"formula", sm ? "p ⊙ (g − ⟨g,p⟩)" : "g − p Σg"},
                  {"by_formula", std::vector<double>(by_formula.data(), by_formula.data() + K)},
                  {"by_tape", by_tape},
                  {"trace", trace.to_json()}};
    if (print) {
      fmt::print("  y = {}(x) = {}\n", a.fn, vec_str(out["y"].get<std::vector<double>>()));
      fmt::print("  Jacobian J[i][j] = dy_i/dx_j (by reverse mode, one backward per row):\n{}", mat_str(J));
      fmt::print("  formula {}: max difference {:.2e}\n", out["jacobian_formula"].get<std::string>(),
                 out["jacobian_formula_error"].get<double>());
      print_properties(props, sm ? "symmetric, rows sum to 0, eigenvalues >= 0 with one 0 (eigenvector 1), rank K-1"
                                 : "not symmetric, rows sum to 0, eigenvalues 0 and 1 (a projection), rank K-1");
      if (!sm) fmt::print("    J² − J:      {:.2e} (J is a projection)\n", out["properties"]["idempotent_error"].get<double>());
      fmt::print("  VJP for g = {}: dx = gᵀJ\n    by formula {}: {}\n    by the tape: {}\n", vec_str(a.g),
                 out["vjp"]["formula"].get<std::string>(), vec_str(out["vjp"]["by_formula"].get<std::vector<double>>()),
                 vec_str(by_tape));
    }
  } else if (a.fn == "logsumexp") {
    const UnaryFunction f = [](const Tensor& v) { return logsumexp(v, 0); };
    const double value = [&] {
      NoGradGuard no_grad;
      return f(x).item();
    }();
    Tensor leaf = x.detach().requires_grad_();
    backward(f(leaf), tensor(a.g[0], kFloat64));
    const auto grad = leaf.grad().to_vector();
    const Mat H = to_mat(hessian(f, x));
    out["value"] = value;
    out["vjp"] = {{"g", a.g}, {"formula", "g p"}, {"by_tape", grad}};
    out["hessian"] = rows_of(H);
    out["hessian_formula_error"] = (H - softmax_jac).cwiseAbs().maxCoeff();
    out["properties"] = properties(H, true);
    if (print) {
      fmt::print("  logsumexp(x) = {:.6f}   (max(x) = {:.6f}: a smooth maximum)\n", value, *std::max_element(a.x.begin(), a.x.end()));
      fmt::print("  gradient × g = {} ( = g·softmax(x): the gradient is the probabilities)\n", vec_str(grad));
      fmt::print("  Hessian (double backward):\n{}  formula diag(p) − ppᵀ: max difference {:.2e}\n", mat_str(H),
                 out["hessian_formula_error"].get<double>());
      print_properties(out["properties"], "symmetric, rows sum to 0, eigenvalues >= 0 with one 0, rank K-1");
    }
  } else {  // cross_entropy
    const std::int64_t t = *a.target;
    const Tensor target = from_vector(std::vector<std::int64_t>{t}, Shape{1});
    const UnaryFunction f = [target, K](const Tensor& v) { return cross_entropy(reshape(v, {1, K}), target); };
    Tensor leaf = x.detach().requires_grad_();
    const Tensor loss = f(leaf);
    backward(loss, tensor(a.g[0], kFloat64));
    const auto grad = leaf.grad().to_vector();
    std::vector<double> p_minus_y = p;
    p_minus_y[static_cast<std::size_t>(t)] -= 1.0;
    for (double& v : p_minus_y) v *= a.g[0];
    const Mat H = to_mat(hessian(f, x));
    out["target"] = t;
    out["loss"] = loss.item();
    out["gradient"] = {{"formula", "g (p − y)"}, {"by_formula", p_minus_y}, {"by_tape", grad}};
    out["hessian"] = rows_of(H);
    out["hessian_formula_error"] = (H - softmax_jac).cwiseAbs().maxCoeff();
    out["properties"] = properties(H, true);
    if (print) {
      fmt::print("  loss = −log p[{}] = {:.6f}\n", t, loss.item());
      fmt::print("  gradient (g = {}): by formula g (p − y) {}\n                       by the tape          {}\n", a.g[0],
                 vec_str(p_minus_y), vec_str(grad));
      fmt::print("  Hessian (double backward):\n{}  formula diag(p) − ppᵀ: max difference {:.2e}\n", mat_str(H),
                 out["hessian_formula_error"].get<double>());
      print_properties(out["properties"], "symmetric, rows sum to 0, eigenvalues >= 0 with one 0, rank K-1");
    }
  }
  out["temperature"] = temperature_table(x, a.target, print);
  if (a.json) fmt::print("{}\n", out.dump(2));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool is_short = false;
  std::erase_if(args, [&](const std::string& s) {
    if (s != "--short") return false;
    is_short = true;
    return true;
  });
  if (args.empty() && is_short) {
    // CI: the default cases, quickly.
    for (const auto& argv_case : {std::vector<std::string>{"softmax", "2", "1", "0.5"},
                                  std::vector<std::string>{"cross_entropy", "--target", "0", "2", "1", "0.5"}}) {
      if (explain(parse(argv_case)) != 0) return 1;
    }
    return 0;
  }
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    (args.empty() ? std::cerr : std::cout) << kUsage;
    return args.empty() ? 2 : 0;
  }
  try {
    return explain(parse(args));
  } catch (const std::exception& e) {
    std::cerr << "explain: " << e.what() << "\n";
    return 1;
  }
}
