// SPDX-License-Identifier: MIT
// Parity of the nn layer with PyTorch (fixtures written by make_nn_fixtures.py): Linear and MLP
// forward and backward from given parameters (float64 at 1e-10, float32 at 1e-5 relative), and
// 5 optimiser steps of SGD, Adam and AdamW from given weights and data (float64, 1e-10).
#include <map>
#include <memory>

#include "parity/parity.hpp"
#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using namespace tapegrad::parity;

namespace {

// Copies the fixture's parameters (keyed by PyTorch names) into the module, checking the keys.
void set_params(Module& m, const json& params) {
  json state = json::object();
  for (const auto& [k, v] : params.items()) state[k] = v;
  load_state_dict(m, state);
}

std::unique_ptr<Module> build(const json& o, DType dt) {
  Generator gen(0);
  if (o.at("kind") == "linear")
    return std::make_unique<Linear>(o.at("in").get<std::int64_t>(), o.at("out").get<std::int64_t>(), gen,
                                    o.at("bias").get<bool>(), dt);
  return std::make_unique<MLP>(o.at("sizes").get<std::vector<std::int64_t>>(), o.at("activation").get<std::string>(),
                               gen, dt);
}

}  // namespace

TEST_CASE("parity nn: Linear and MLP outputs and gradients match PyTorch", "[parity][nn]") {
  const auto cases = load_cases("nn_modules.json");
  REQUIRE(cases.size() >= 40);
  for (const json& c : cases) {
    const DType dt = parse_dtype(c.at("dtype").get<std::string>());
    auto m = build(c.at("options"), dt);
    set_params(*m, c.at("params"));
    Tensor x = to_tensor(c.at("input")).requires_grad_();
    Tensor out = (*m)(x);
    std::vector<Tensor> wrt = {x};
    std::vector<std::string> names = {"input"};
    for (const auto& [n, p] : m->named_parameters()) {
      wrt.push_back(p);
      names.push_back(n);
    }
    auto grads = grad({out}, wrt, {to_tensor(c.at("grad_out"))});
    std::string why;
    compare("output", out, c.at("output"), why);
    for (std::size_t i = 0; i < wrt.size(); ++i) compare("grad " + names[i], grads[i], c.at("grads").at(names[i]), why);
    INFO(c.at("name").get<std::string>() << "\n" << why);
    CHECK(why.empty());
  }
}

TEST_CASE("parity nn: 5 steps of SGD, Adam and AdamW match PyTorch", "[parity][nn][optim]") {
  const auto cases = load_cases("nn_optim.json");
  REQUIRE(cases.size() >= 7);
  for (const json& c : cases) {
    Generator gen(0);
    MLP net(c.at("sizes").get<std::vector<std::int64_t>>(), c.at("activation").get<std::string>(), gen, kFloat64);
    set_params(net, c.at("params"));
    const json& o = c.at("options");
    const std::string kind = o.at("optimizer");
    std::unique_ptr<Optimizer> opt;
    if (kind == "SGD") {
      opt = std::make_unique<SGD>(net.parameters(), SgdOptions{.lr = o.at("lr"),
                                                               .momentum = o.value("momentum", 0.0),
                                                               .dampening = o.value("dampening", 0.0),
                                                               .weight_decay = o.value("weight_decay", 0.0),
                                                               .nesterov = o.value("nesterov", false)});
    } else {
      const auto betas = o.value("betas", std::vector<double>{0.9, 0.999});
      AdamOptions a{.lr = o.at("lr"), .beta1 = betas[0], .beta2 = betas[1], .eps = o.value("eps", 1e-8),
                    .weight_decay = o.value("weight_decay", kind == "AdamW" ? 1e-2 : 0.0),
                    .amsgrad = o.value("amsgrad", false)};
      if (kind == "Adam") opt = std::make_unique<Adam>(net.parameters(), a);
      else opt = std::make_unique<AdamW>(net.parameters(), a);
    }
    const Tensor x = to_tensor(c.at("input")), y = to_tensor(c.at("target"));
    std::string why;
    for (int step = 0; step < 5; ++step) {
      opt->zero_grad();
      Tensor loss = cross_entropy(net(x), y);
      backward(loss);
      opt->step();
      const double expected = c.at("losses")[static_cast<std::size_t>(step)].get<double>();
      if (!agrees(loss.item(), expected, tolerance(kFloat64)))
        why += fmt::format("  loss at step {}: {:.17g} vs torch {:.17g}\n", step, loss.item(), expected);
    }
    for (const auto& [n, p] : net.named_parameters()) compare(n, p, c.at("final").at(n), why);
    INFO(c.at("name").get<std::string>() << "\n" << why);
    CHECK(why.empty());
  }
}
