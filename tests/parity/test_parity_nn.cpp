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

namespace {

// Compares output (and weights, when present) and every named gradient of a case. float32 key,
// value and parameter gradients of the composite layers are sums over many (batch, query, key)
// terms of order 1, so their rounding error is about eps times the number of terms near 0: their
// floor is 1 (absolute 1e-5) instead of 0.1. float64 keeps 1e-10 with floor 1e-4.
std::string compare_case(const json& c, const Tensor& out, const Tensor& weights, const std::vector<Tensor>& wrt,
                         const std::vector<std::string>& names, bool composite = false) {
  std::string why;
  compare("output", out, c.at("output"), why);
  if (c.contains("weights")) compare("weights", weights, c.at("weights"), why);
  auto grads = grad({out}, wrt, {to_tensor(c.at("grad_out"))});
  std::optional<Tolerance> tol;
  if (composite && out.dtype() == kFloat32) tol = Tolerance{1e-5, 1.0};
  for (std::size_t i = 0; i < wrt.size(); ++i)
    compare("grad " + names[i], grads[i], c.at("grads").at(names[i]), why, i == 0 ? std::nullopt : tol);
  return why;
}

Tensor leaf(const json& c, const char* key) { return to_tensor(c.at(key)).requires_grad_(); }
Tensor maybe(const json& c, const char* key) { return c.contains(key) ? to_tensor(c.at(key)) : Tensor(); }

}  // namespace

TEST_CASE("parity nn: attention, layer norm, multi-head attention and a transformer block match PyTorch",
          "[parity][attention]") {
  const auto cases = load_cases("nn_attention.json");
  REQUIRE(cases.size() >= 80);
  int seen_sdpa = 0, seen_ln = 0, seen_mha = 0, seen_block = 0;
  for (const json& c : cases) {
    const std::string name = c.at("name");
    const DType dt = parse_dtype(c.at("dtype").get<std::string>());
    const json& o = c.at("options");
    std::string why;
    if (name.starts_with("sdpa/")) {
      ++seen_sdpa;
      Tensor q = leaf(c, "q"), k = leaf(c, "k"), v = leaf(c, "v");
      AttentionOptions ao{.attn_mask = maybe(c, "attn_mask"), .is_causal = o.at("kind") == "causal"};
      if (o.contains("scale")) ao.scale = o.at("scale").get<double>();
      why = compare_case(c, scaled_dot_product_attention(q, k, v, ao), Tensor(), {q, k, v}, {"q", "k", "v"});
    } else if (name.starts_with("layer_norm/")) {
      ++seen_ln;
      Tensor x = leaf(c, "input");
      std::vector<Tensor> wrt = {x};
      std::vector<std::string> names = {"input"};
      Tensor w, b;
      if (c.contains("weight")) {
        w = leaf(c, "weight");
        b = leaf(c, "bias");
        wrt.insert(wrt.end(), {w, b});
        names.insert(names.end(), {"weight", "bias"});
      }
      Tensor y = layer_norm(x, o.at("normalized_shape").get<std::vector<std::int64_t>>(), w, b, o.at("eps").get<double>());
      why = compare_case(c, y, Tensor(), wrt, names);
    } else if (name.starts_with("mha/")) {
      ++seen_mha;
      Generator gen(0);
      nn::MultiheadAttention mha(o.at("embed_dim"), o.at("num_heads"), gen,
                                 {.batch_first = o.at("batch_first").get<bool>(), .dtype = dt});
      set_params(mha, c.at("params"));
      Tensor q = leaf(c, "query"), k = leaf(c, "key"), v = leaf(c, "value");
      nn::MhaOutput r = mha.forward(q, k, v, {.key_padding_mask = maybe(c, "key_padding_mask"),
                                              .attn_mask = maybe(c, "attn_mask"),
                                              .need_weights = true,
                                              .average_attn_weights = o.at("average").get<bool>()});
      std::vector<Tensor> wrt = {q, k, v};
      std::vector<std::string> names = {"query", "key", "value"};
      for (const auto& [n, p] : mha.named_parameters()) {
        wrt.push_back(p);
        names.push_back(n);
      }
      why = compare_case(c, r.output, r.weights, wrt, names, /*composite=*/true);
    } else if (name.starts_with("transformer_block/")) {
      ++seen_block;
      Generator gen(0);
      nn::TransformerBlock block(o.at("embed_dim"), o.at("num_heads"), o.at("ffn_dim"), gen,
                                 {.causal = o.at("causal").get<bool>(), .dtype = dt});
      set_params(block, c.at("params"));  // PyTorch's TransformerEncoderLayer names load as they are
      Tensor x = leaf(c, "input");
      std::vector<Tensor> wrt = {x};
      std::vector<std::string> names = {"input"};
      for (const auto& [n, p] : block.named_parameters()) {
        wrt.push_back(p);
        names.push_back(n);
      }
      why = compare_case(c, block(x), Tensor(), wrt, names, /*composite=*/true);
    } else {
      FAIL("unknown case " << name);
    }
    INFO(name << "\n" << why);
    CHECK(why.empty());
  }
  REQUIRE(seen_sdpa > 0);
  REQUIRE(seen_ln > 0);
  REQUIRE(seen_mha > 0);
  REQUIRE(seen_block > 0);
}
