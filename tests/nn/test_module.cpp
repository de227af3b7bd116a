// SPDX-License-Identifier: MIT
// nn modules and layers: names, parameters, dtype conversion, train/eval, Linear values and
// gradients, activations, Dropout, Sequential, MLP, initialisers, bad input.
#include <cmath>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

struct Encoder : Module {
  std::shared_ptr<Linear> fc1, fc2;
  Encoder(Generator& gen) : Module("Encoder") {
    fc1 = register_module("fc1", std::make_shared<Linear>(3, 4, gen));
    fc2 = register_module("fc2", std::make_shared<Linear>(4, 2, gen, false));
  }
  Tensor forward(const Tensor& x) override { return (*fc2)(relu((*fc1)(x))); }
};

struct Net : Module {
  std::shared_ptr<Encoder> encoder;
  std::shared_ptr<Sequential> head;
  Tensor scale;
  Net(Generator& gen) : Module("Net") {
    scale = register_parameter("scale", ones({1}));
    register_buffer("steps", zeros({1}, kInt64));
    encoder = register_module("encoder", std::make_shared<Encoder>(gen));
    head = register_module("head", std::make_shared<Sequential>());
    head->add(Tanh()).add(Linear(2, 2, gen));
  }
  Tensor forward(const Tensor& x) override { return (*head)((*encoder)(x)) * scale; }
};

std::vector<std::string> names_of(const std::vector<NamedTensor>& v) {
  std::vector<std::string> out;
  for (const auto& [n, t] : v) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("Module: hierarchical parameter names as PyTorch's state_dict", "[nn][module]") {
  Generator gen(1);
  Net net(gen);
  const std::vector<std::string> expected = {"scale", "encoder.fc1.weight", "encoder.fc1.bias", "encoder.fc2.weight",
                                             "head.1.weight", "head.1.bias"};
  REQUIRE(names_of(net.named_parameters()) == expected);
  REQUIRE(names_of(net.named_buffers()) == std::vector<std::string>{"steps"});
  REQUIRE(net.state().size() == 7);
  // Tensors carry their full names (for graphs and errors).
  for (const auto& [n, t] : net.named_parameters()) REQUIRE(t.name() == n);
  REQUIRE(net.parameters().size() == 6);
  REQUIRE(net.num_parameters() == 1 + 12 + 4 + 8 + 4 + 2);
  REQUIRE(!net.encoder->fc2->bias.defined());
  REQUIRE_THAT(net.summary(), Contains("encoder: Encoder") && Contains("fc1: Linear") && Contains("31 trainable"));
  // A container's line counts its whole subtree: encoder 12 + 4 + 8, head 4 + 2, the root 31.
  REQUIRE_THAT(net.summary(), StartsWith("Net (31) scale[1]\n") && Contains("encoder: Encoder (24)\n") &&
                                  Contains("head: Sequential (6)\n") && Contains("fc2: Linear (8) weight[2, 4]\n"));
}

TEST_CASE("Module: zero_grad, train/eval and to(dtype) keep the same tensors", "[nn][module]") {
  Generator gen(2);
  Net net(gen);
  Tensor x = randn({5, 3}, gen);
  backward(sum(net(x)));
  for (const Tensor& p : net.parameters()) REQUIRE(p.grad().defined());
  net.zero_grad();
  for (const Tensor& p : net.parameters()) REQUIRE(!p.grad().defined());

  REQUIRE(net.is_training());
  net.eval();
  REQUIRE(!net.is_training());
  REQUIRE(!net.encoder->fc1->is_training());
  net.train();
  REQUIRE(net.head->is_training());

  Tensor w = net.encoder->fc1->weight;  // a handle taken before the conversion (as an optimiser holds)
  const double w00 = w.at({0, 0});
  REQUIRE(net.dtype() == kFloat32);
  net.to(kFloat64);
  REQUIRE(net.dtype() == kFloat64);
  REQUIRE(w.dtype() == kFloat64);          // the same tensor, converted in place
  REQUIRE(w.at({0, 0}) == w00);            // float -> double is exact
  REQUIRE(w.requires_grad());
  REQUIRE(net.named_buffers()[0].second.dtype() == kInt64);  // integer buffers untouched
  REQUIRE(net(x.to(kFloat64)).dtype() == kFloat64);
  REQUIRE_THROWS_WITH(net.to(kInt64), Contains("to") && Contains("int64"));
}

TEST_CASE("Linear: PyTorch layout, default init bounds and values", "[nn][layers]") {
  Generator gen(3);
  Linear fc(5, 3, gen, true, kFloat64);
  REQUIRE(fc.weight.shape() == Shape{3, 5});
  REQUIRE(fc.bias.shape() == Shape{3});
  const double bound = 1.0 / std::sqrt(5.0);
  for (double v : fc.weight.to_vector()) REQUIRE(std::abs(v) <= bound);
  for (double v : fc.bias.to_vector()) REQUIRE(std::abs(v) <= bound);
  // Same seed, same weights; another seed, others.
  Generator g1(3), g2(4);
  REQUIRE(Linear(5, 3, g1, true, kFloat64).weight.to_vector() == fc.weight.to_vector());
  REQUIRE(Linear(5, 3, g2, true, kFloat64).weight.to_vector() != fc.weight.to_vector());

  // y = x W^T + b, by hand: W = [[1, 2], [0, -1], [3, 1]], b = [0.5, 0, -1], x = [[1, 1], [2, -1]]
  Linear small(2, 3, gen, true, kFloat64);
  assign_value(small.weight, tensor({{1, 2}, {0, -1}, {3, 1}}, kFloat64));
  assign_value(small.bias, tensor({0.5, 0, -1}, kFloat64));
  REQUIRE_ALLCLOSE(small(tensor({{1, 1}, {2, -1}}, kFloat64)), tensor({{3.5, -1, 3}, {0.5, 1, 4}}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(small(tensor({1, 1}, kFloat64)), tensor({3.5, -1, 3}, kFloat64), 0, 0);  // 1-D input
}

TEST_CASE("Linear: gradcheck with respect to input, weight and bias on several shapes", "[nn][layers]") {
  Generator gen(4);
  for (const Shape& xs : {Shape{4}, Shape{3, 4}, Shape{2, 3, 4}, Shape{1, 1, 4}}) {
    Linear fc(4, 3, gen, true, kFloat64);
    Tensor x = randn(xs, gen, kFloat64).requires_grad_();
    INFO("x " << xs.str());
    testing::require_gradcheck(
        [&](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); },
        {x, fc.weight.detach().clone().requires_grad_(), fc.bias.detach().clone().requires_grad_()}, true);
  }
}

TEST_CASE("Activations and MLP: names, structure and values", "[nn][layers]") {
  Generator gen(5);
  MLP mlp({4, 8, 8, 3}, "relu", gen, kFloat64);
  // torch.nn.Sequential(Linear, ReLU, Linear, ReLU, Linear) names
  REQUIRE(names_of(mlp.named_parameters()) ==
          std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"});
  REQUIRE(mlp.size() == 5);
  REQUIRE(mlp[1].type_name() == "ReLU");
  Tensor x = randn({6, 4}, gen, kFloat64);
  // The MLP is exactly its layers composed.
  auto& l0 = dynamic_cast<Linear&>(mlp[0]);
  auto& l2 = dynamic_cast<Linear&>(mlp[2]);
  auto& l4 = dynamic_cast<Linear&>(mlp[4]);
  Tensor by_hand = linear(relu(linear(relu(linear(x, l0.weight, l0.bias)), l2.weight, l2.bias)), l4.weight, l4.bias);
  REQUIRE_ALLCLOSE(mlp(x), by_hand, 0, 0);
  REQUIRE(mlp(x).shape() == Shape{6, 3});

  const Tensor v = tensor({-1.0, 0.5}, kFloat64);
  REQUIRE_ALLCLOSE(GELU()(v), gelu(v), 0, 0);
  REQUIRE_ALLCLOSE(GELU("tanh")(v), gelu(v, "tanh"), 0, 0);
  REQUIRE_ALLCLOSE(Tanh()(v), tanh(v), 0, 0);
  REQUIRE_ALLCLOSE(Sigmoid()(v), sigmoid(v), 0, 0);
  REQUIRE_ALLCLOSE(ReLU()(v), tensor({0.0, 0.5}, kFloat64), 0, 0);
  for (const char* act : {"relu", "gelu", "gelu_tanh", "tanh", "sigmoid", "identity"})
    REQUIRE(MLP({2, 3, 1}, act, gen).size() == 3);

  // MLP gradcheck through every layer (float64, tanh keeps it smooth).
  MLP smooth({3, 5, 2}, "tanh", gen, kFloat64);
  Tensor xin = randn({4, 3}, gen, kFloat64).requires_grad_();
  testing::require_gradcheck([&](const std::vector<Tensor>& in) { return smooth(in[0]); }, {xin});
}

TEST_CASE("Dropout: seeded, scaled by 1/(1-p), identity in eval", "[nn][layers]") {
  Dropout d(0.25, 7);
  Tensor x = ones({1000}, kFloat64);
  const auto y = d(x).to_vector();
  int kept = 0;
  for (double v : y) {
    REQUIRE((v == 0.0 || std::abs(v - 1.0 / 0.75) < 1e-15));
    kept += v != 0.0;
  }
  REQUIRE(kept > 700);  // Binomial(1000, 0.75): mean 750, sd 13.7
  REQUIRE(kept < 800);
  Dropout d2(0.25, 7);
  REQUIRE(d2(x).to_vector() == y);  // same seed, same mask
  d.eval();
  REQUIRE(d(x).same(x));
  // Gradient flows through the kept elements with the same scale.
  Dropout d3(0.5, 9);
  Tensor xg = ones({8}, kFloat64).requires_grad_();
  Tensor out = d3(xg);
  backward(sum(out));
  REQUIRE_ALLCLOSE(xg.grad(), out.detach(), 0, 0);
  REQUIRE_THROWS_WITH(Dropout(1.5), Contains("Dropout") && Contains("1.5"));
}

TEST_CASE("init: bounds, statistics and reproducibility", "[nn][init]") {
  Generator gen(11);
  Tensor w = Tensor::empty({200, 300}, kFloat64);
  init::xavier_uniform_(w, gen);
  const double r = std::sqrt(6.0 / 500.0);
  double mx = 0;
  for (double v : w.to_vector()) mx = std::max(mx, std::abs(v));
  REQUIRE(mx <= r);
  REQUIRE(mx > 0.99 * r);

  init::kaiming_normal_(w, gen, 0.0, init::FanMode::FanIn, "relu");
  double s2 = 0;
  for (double v : w.to_vector()) s2 += v * v;
  const double sd = std::sqrt(s2 / 60000.0), expected = std::sqrt(2.0 / 300.0);
  REQUIRE(std::abs(sd / expected - 1) < 0.02);  // 60000 samples: relative sd error ~0.3%

  init::xavier_normal_(w, gen, 2.0);
  s2 = 0;
  for (double v : w.to_vector()) s2 += v * v;
  REQUIRE(std::abs(std::sqrt(s2 / 60000.0) / (2.0 * std::sqrt(2.0 / 500.0)) - 1) < 0.02);

  Generator a(5), b(5);
  Tensor wa = Tensor::empty({3, 4}, kFloat32), wb = Tensor::empty({3, 4}, kFloat32);
  init::kaiming_uniform_(wa, a);
  init::kaiming_uniform_(wb, b);
  REQUIRE(wa.to_vector() == wb.to_vector());
  REQUIRE(init::calculate_gain("tanh") == 5.0 / 3.0);
  REQUIRE(init::calculate_gain("leaky_relu", std::sqrt(5.0)) == std::sqrt(2.0 / 6.0));
  REQUIRE_THROWS_WITH(init::calculate_gain("swish"), Contains("swish"));
  Tensor v = Tensor::empty({4}, kFloat32);
  REQUIRE_THROWS_WITH(init::xavier_uniform_(v, gen), Contains("at least 2 dims"));
}

TEST_CASE("nn: bad input gets clear errors", "[nn][module]") {
  Generator gen(6);
  MLP mlp({4, 8, 3}, "relu", gen);
  REQUIRE_THROWS_WITH(mlp(zeros({2, 5})), Contains("Linear '0'") && Contains("[2, 5]") && Contains("4 (in_features)"));
  REQUIRE_THROWS_WITH(mlp(zeros({2, 4}, kFloat64)), Contains("float64") && Contains("float32"));
  REQUIRE_THROWS_WITH(MLP({4, 8, 3}, "swish", gen), Contains("unknown activation 'swish'"));
  REQUIRE_THROWS_WITH(MLP({4}, "relu", gen), Contains("at least 2"));
  REQUIRE_THROWS_WITH(Linear(0, 3, gen), Contains("in_features = 0"));
  REQUIRE_THROWS_WITH(mlp[7], Contains("index 7") && Contains("3 layers"));
  struct Twice : Module {
    Twice() : Module("Twice") {
      register_parameter("w", zeros({1}));
      register_parameter("w", zeros({1}));
    }
  };
  REQUIRE_THROWS_WITH(Twice(), Contains("'w' is already registered"));
  struct NoForward : Module {
    NoForward() : Module("Attention-like") {}
  };
  NoForward nf;
  REQUIRE_THROWS_WITH(nf(zeros({1})), Contains("Attention-like") && Contains("single tensor"));
}

TEST_CASE("nn: layers built with a non-floating dtype name the layer, before drawing anything", "[nn][layers][hardening]") {
  for (DType dt : {kInt64, kBool}) {
    Generator gen(40);
    const auto state = gen.state();
    const std::string name(dtype_name(dt));
    INFO(name);
    REQUIRE_THROWS_WITH(MultiheadAttention(4, 2, gen, {.dtype = dt}),
                        Contains("MultiheadAttention") && Contains(name) && Contains("float32 or float64"));
    REQUIRE_THROWS_WITH(TransformerBlock(4, 2, 8, gen, {.dtype = dt}),
                        Contains("TransformerBlock") && Contains(name) && Contains("float32 or float64"));
    REQUIRE_THROWS_WITH(Embedding(5, 3, gen, std::nullopt, dt),
                        Contains("Embedding") && Contains(name) && Contains("float32 or float64"));
    REQUIRE_THROWS_WITH(LearnedPositionalEncoding(5, 3, gen, dt),
                        Contains("LearnedPositionalEncoding") && Contains(name) && Contains("float32 or float64"));
    REQUIRE_THROWS_WITH(LayerNorm({3}, 1e-5, true, dt),
                        Contains("LayerNorm") && Contains(name) && Contains("float32 or float64"));
    REQUIRE_THROWS_WITH(MLP({3, 4, 2}, "relu", gen, dt), Contains("MLP") && Contains(name) && Contains("float32 or float64"));
    REQUIRE_THROWS_WITH(Linear(3, 2, gen, true, dt), Contains("Linear") && Contains("float32 or float64"));
    REQUIRE(gen.state() == state);  // nothing was drawn: the check comes first
  }
}

TEST_CASE("dropout: a non-floating input names dropout", "[nn][layers][hardening]") {
  Generator gen(41);
  const Tensor ids = from_vector(std::vector<std::int64_t>{1, 2, 3}, Shape{3});
  REQUIRE_THROWS_WITH(dropout(ids, 0.5, true, gen), Contains("dropout") && Contains("int64") && Contains("float32 or float64"));
  Dropout layer(0.5, 1);
  REQUIRE_THROWS_WITH(layer(ids), Contains("dropout") && Contains("int64"));
  REQUIRE_THROWS_WITH(dropout(Tensor(), 0.5, true, gen), Contains("dropout") && Contains("undefined"));
}
