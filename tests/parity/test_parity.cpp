// SPDX-License-Identifier: MIT
// Parity with PyTorch: every case in tests/parity/fixtures/*.json (written by make_fixtures.py
// with PyTorch; see README.md there) is rebuilt as tapegrad tensors, run through the tapegrad op,
// differentiated with the fixture's upstream gradient, and compared element by element:
//
//   |tapegrad - torch| <= rtol * max(|torch|, floor)       float64: rtol 1e-10, floor 1e-4
//                                                          float32: rtol 1e-5,  floor 1e-1
//
// The floor is an absolute tolerance of rtol * floor (1e-14 in float64, 1e-6 in float32: a few
// dozen / a few units in the last place of 1) for values near 0: those come from cancellation
// (softmax's g - <g, y>, p - y) between terms of order 1 (inputs and upstream gradients are of
// order 1), whose rounding error is about eps * 1, not eps * |result|. Infinities must match
// exactly (-inf == -inf), NaN matches NaN (no fixture holds NaN).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "parity/parity.hpp"
#include "testing.hpp"

namespace {

using namespace tapegrad;
using namespace tapegrad::parity;

// ---- running one case ----
int opt_int(const json& c, const char* key) { return c.at("options").at(key).get<int>(); }

// The tapegrad op for a softmax-family case; `t` holds the case's tensors by fixture name.
Tensor run_softmax_family(const std::string& op, const json& c, const std::map<std::string, Tensor>& t) {
  const Tensor& x = t.at("input");
  const json& o = c.at("options");
  const int dim = opt_int(c, "dim");
  if (op == "logsumexp") return logsumexp(x, dim, o.at("keepdim").get<bool>());
  const bool log = op == "log_softmax";
  if (o.contains("temperature")) {
    const double T = o.at("temperature").get<double>();
    return log ? log_softmax(x, dim, T) : softmax(x, dim, T);
  }
  if (t.count("temperature")) return log ? log_softmax(x, dim, t.at("temperature")) : softmax(x, dim, t.at("temperature"));
  return log ? log_softmax(x, dim) : softmax(x, dim);
}

Reduction parse_reduction(const std::string& r) {
  if (r == "none") return Reduction::None;
  if (r == "mean") return Reduction::Mean;
  if (r == "sum") return Reduction::Sum;
  if (r == "batchmean") return Reduction::BatchMean;
  throw std::runtime_error("fixture: unknown reduction \"" + r + "\"");
}

Tensor optional(const std::map<std::string, Tensor>& t, const char* key) {
  const auto it = t.find(key);
  return it == t.end() ? Tensor() : it->second;
}

// The tapegrad loss for a loss case (PyTorch's option names map one to one onto the options structs).
Tensor run_loss(const std::string& op, const json& c, const std::map<std::string, Tensor>& t) {
  const json& o = c.at("options");
  const Tensor& input = t.at("input");
  const Tensor& target = t.at("target");
  const Reduction reduction = parse_reduction(o.at("reduction").get<std::string>());
  if (op == "cross_entropy") {
    CrossEntropyOptions opt;
    opt.weight = optional(t, "weight");
    opt.ignore_index = o.at("ignore_index").get<std::int64_t>();
    opt.reduction = reduction;
    opt.label_smoothing = o.at("label_smoothing").get<double>();
    return cross_entropy(input, target, opt);
  }
  if (op == "nll_loss") {
    NllLossOptions opt;
    opt.weight = optional(t, "weight");
    opt.ignore_index = o.at("ignore_index").get<std::int64_t>();
    opt.reduction = reduction;
    return nll_loss(input, target, opt);
  }
  if (op == "kl_div") {
    KlDivOptions opt;
    opt.reduction = reduction;
    opt.log_target = o.at("log_target").get<bool>();
    return kl_div(input, target, opt);
  }
  if (op == "binary_cross_entropy_with_logits") {
    BceWithLogitsOptions opt;
    opt.weight = optional(t, "weight");
    opt.pos_weight = optional(t, "pos_weight");
    opt.reduction = reduction;
    return binary_cross_entropy_with_logits(input, target, opt);
  }
  throw std::runtime_error("fixture: unknown loss \"" + op + "\"");
}

using OpRunner = Tensor (*)(const std::string& op, const json& c, const std::map<std::string, Tensor>& t);

// The ops of issue 11 (regression losses, sin, cos, softplus, leaky_relu, gather, scatter_add).
Tensor run_new_op(const std::string& op, const json& c, const std::map<std::string, Tensor>& t) {
  const json& o = c.at("options");
  const Tensor& input = t.at("input");
  if (op == "mse_loss" || op == "l1_loss" || op == "smooth_l1_loss") {
    const Tensor& target = t.at("target");
    const Reduction reduction = parse_reduction(o.at("reduction").get<std::string>());
    if (op == "mse_loss") return mse_loss(input, target, reduction);
    if (op == "l1_loss") return l1_loss(input, target, reduction);
    return smooth_l1_loss(input, target, reduction, o.at("beta").get<double>());
  }
  if (op == "sin") return sin(input);
  if (op == "cos") return cos(input);
  if (op == "softplus") return softplus(input, o.at("beta").get<double>(), o.at("threshold").get<double>());
  if (op == "leaky_relu") return leaky_relu(input, o.at("negative_slope").get<double>());
  if (op == "gather") return gather(input, opt_int(c, "dim"), t.at("index"));
  if (op == "scatter_add") return scatter_add(input, opt_int(c, "dim"), t.at("index"), t.at("src"));
  throw std::runtime_error("fixture: unknown op \"" + op + "\"");
}

// The case's tensors by fixture name, fresh leaves; those with an expected gradient require grad.
std::map<std::string, Tensor> make_inputs(const json& c) {
  std::map<std::string, Tensor> t;
  for (const char* key : {"input", "target", "weight", "pos_weight", "temperature", "index", "src"})
    if (c.contains(key)) t[key] = to_tensor(c.at(key));
  for (const auto& [key, _] : c.at("grads").items()) {
    if (!t.count(key)) throw std::runtime_error("fixture has a gradient for \"" + key + "\" but no such tensor");
    t[key].requires_grad_();
  }
  return t;
}

// Runs one case twice: backward() into .grad (the fused kernels), then tapegrad::grad with
// create_graph (the recorded tensor-op VJPs, separate code). Returns "" when everything agrees,
// else a report naming the case and the elements.
std::string run_case(const json& c, OpRunner runner) {
  const std::string name = c.at("name").get<std::string>();
  const std::string op = c.at("op").get<std::string>();
  const json& grads = c.at("grads");
  std::string why;
  try {
    std::map<std::string, Tensor> t = make_inputs(c);
    const Tensor out = runner(op, c, t);
    compare("output", out, c.at("output"), why);
    if (why.empty()) {  // no point comparing gradients of a wrong output
      const Tensor g = to_tensor(c.at("grad_out"));
      if (g.dim() == 0 && g.item() == 1.0 && out.dim() == 0)
        backward(out);  // scalar loss: the ordinary backward(loss)
      else
        backward(out, g);
      for (const auto& [key, expected] : grads.items()) compare("grad " + key, t.at(key).grad(), expected, why);

      std::map<std::string, Tensor> t2 = make_inputs(c);
      const Tensor out2 = runner(op, c, t2);
      std::vector<Tensor> wrt;
      for (const auto& [key, _] : grads.items()) wrt.push_back(t2.at(key));
      GradOptions options;
      options.create_graph = true;
      const std::vector<Tensor> gs = tapegrad::grad({out2}, wrt, {g}, options);
      std::size_t k = 0;
      for (const auto& [key, expected] : grads.items()) compare("grad " + key + " (create_graph)", gs[k++], expected, why);
    }
  } catch (const std::exception& e) {
    why += fmt::format("  threw: {}\n", e.what());
  }
  return why.empty() ? why : name + ":\n" + why;
}

void run_file(const std::string& file, const std::string& op, OpRunner runner) {
  const std::vector<json> cases = load_cases(file);
  int failed = 0;
  for (const json& c : cases) {
    REQUIRE(c.at("op").get<std::string>() == op);
    const std::string why = run_case(c, runner);
    if (!why.empty()) ++failed;
    INFO(why);
    CHECK(why.empty());
  }
  INFO(fmt::format("{}: {} of {} cases disagree with PyTorch", file, failed, cases.size()));
  CHECK(failed == 0);
}

// Fixture files this test knows; a fixture without a test (or a test without its fixture) fails.
const std::set<std::string> kKnownFixtures = {"softmax.json",       "log_softmax.json", "logsumexp.json",
                                               "cross_entropy.json", "nll_loss.json",    "kl_div.json",
                                               "binary_cross_entropy_with_logits.json",
                                               "nn_modules.json",    "nn_optim.json",
                                               "nn_attention.json",  // test_parity_nn.cpp
                                               "mse_loss.json",      "l1_loss.json",     "smooth_l1_loss.json",
                                               "sin.json",           "cos.json",         "softplus.json",
                                               "leaky_relu.json",    "gather.json",      "scatter_add.json",
                                               "linspace.json"};

}  // namespace

TEST_CASE("parity: every fixture file is read by a test", "[parity]") {
  INFO("fixture directory " << kFixtureDir.string());
  REQUIRE(std::filesystem::is_directory(kFixtureDir));
  std::set<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(kFixtureDir))
    if (entry.path().extension() == ".json") found.insert(entry.path().filename().string());
  for (const auto& f : kKnownFixtures) {
    INFO("missing fixture " << f);
    CHECK(found.count(f) == 1);
  }
  for (const auto& f : found) {
    INFO("fixture " << f << " is not read by a parity test");
    CHECK(kKnownFixtures.count(f) == 1);
  }
}

TEST_CASE("parity: softmax matches PyTorch", "[parity][softmax]") {
  run_file("softmax.json", "softmax", run_softmax_family);
}

TEST_CASE("parity: log_softmax matches PyTorch", "[parity][softmax]") {
  run_file("log_softmax.json", "log_softmax", run_softmax_family);
}

TEST_CASE("parity: logsumexp matches PyTorch", "[parity][softmax]") {
  run_file("logsumexp.json", "logsumexp", run_softmax_family);
}

TEST_CASE("parity: cross_entropy matches PyTorch", "[parity][loss]") {
  run_file("cross_entropy.json", "cross_entropy", run_loss);
}

TEST_CASE("parity: nll_loss matches PyTorch", "[parity][loss]") { run_file("nll_loss.json", "nll_loss", run_loss); }

TEST_CASE("parity: kl_div matches PyTorch", "[parity][loss]") { run_file("kl_div.json", "kl_div", run_loss); }

TEST_CASE("parity: binary_cross_entropy_with_logits matches PyTorch", "[parity][loss]") {
  run_file("binary_cross_entropy_with_logits.json", "binary_cross_entropy_with_logits", run_loss);
}

TEST_CASE("parity: mse_loss, l1_loss and smooth_l1_loss match PyTorch", "[parity][loss][regression_loss]") {
  run_file("mse_loss.json", "mse_loss", run_new_op);
  run_file("l1_loss.json", "l1_loss", run_new_op);
  run_file("smooth_l1_loss.json", "smooth_l1_loss", run_new_op);
}

TEST_CASE("parity: sin, cos, softplus and leaky_relu match PyTorch", "[parity][new_ops]") {
  for (const char* op : {"sin", "cos", "softplus", "leaky_relu"}) run_file(std::string(op) + ".json", op, run_new_op);
}

TEST_CASE("parity: gather and scatter_add match PyTorch", "[parity][new_ops][gather]") {
  run_file("gather.json", "gather", run_new_op);
  run_file("scatter_add.json", "scatter_add", run_new_op);
}

TEST_CASE("parity: linspace matches PyTorch", "[parity][new_ops][linspace]") {
  const std::vector<json> cases = load_cases("linspace.json");
  for (const json& c : cases) {
    REQUIRE(c.at("op").get<std::string>() == "linspace");
    const json& o = c.at("options");
    std::string why;
    try {
      const Tensor out = linspace(o.at("start").get<double>(), o.at("end").get<double>(), o.at("steps").get<std::int64_t>(),
                                  parse_dtype(c.at("dtype").get<std::string>()));
      compare("output", out, c.at("output"), why);
    } catch (const std::exception& e) {
      why += fmt::format("  threw: {}\n", e.what());
    }
    INFO(c.at("name").get<std::string>() << ":\n" << why);
    CHECK(why.empty());
  }
}
