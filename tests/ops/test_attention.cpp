// SPDX-License-Identifier: MIT
// Attention ops and layers: values by hand, properties (rows sum to 1 over visible keys, causality
// by perturbation, permutation invariance), fully masked rows, float64 gradcheck and gradgradcheck
// of scaled_dot_product_attention (every mask kind), MultiheadAttention and TransformerBlock on
// small shapes, and bad input. PyTorch parity: tests/parity/test_parity_nn.cpp. layer_norm:
// test_norm.cpp; embedding: test_embedding.cpp.
#include <cmath>
#include <limits>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {
Tensor rnd(const Shape& s, Generator& gen, double scale = 1.0) {
  return (randn(s, gen, kFloat64) * scale).detach().requires_grad_();
}
Tensor bool_mask(std::vector<bool> v, const Shape& s) { return from_vector(v, s); }
using tapegrad::testing::error_of;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}  // namespace

TEST_CASE("attention: values by hand", "[ops][attention]") {
  // One query, two keys: scores = [q.k0, q.k1] / sqrt(2) = [1, 0] / sqrt 2
  Tensor q = tensor({{1.0, 0.0}}, kFloat64), k = tensor({{1.0, 0.0}, {0.0, 1.0}}, kFloat64);
  Tensor v = tensor({{10.0, 0.0}, {0.0, 10.0}}, kFloat64);
  const double a = std::exp(1.0 / std::sqrt(2.0)), p0 = a / (a + 1.0);
  REQUIRE_ALLCLOSE(scaled_dot_product_attention(q, k, v), tensor({{10 * p0, 10 * (1 - p0)}}, kFloat64), 1e-14);
  // A bool mask hiding key 0 (true = attend): all weight on key 1.
  REQUIRE_ALLCLOSE(scaled_dot_product_attention(q, k, v, {.attn_mask = bool_mask({false, true}, Shape{1, 2})}),
                   tensor({{0.0, 10.0}}, kFloat64), 0, 1e-15);
  // Float mask adds to the scores; scale overrides 1/sqrt(d).
  const double b = std::exp(2.0 * 1.0 + 0.5), pb = b / (b + 1.0);
  REQUIRE_ALLCLOSE(scaled_dot_product_attention(q, k, v, {.attn_mask = tensor({{0.5, 0.0}}, kFloat64), .scale = 2.0}),
                   tensor({{10 * pb, 10 * (1 - pb)}}, kFloat64), 1e-14);
  Tensor pe = sinusoidal_positional_encoding(3, 4, kFloat64);
  REQUIRE(pe.at({2, 0}) == std::sin(2.0));
  REQUIRE(pe.at({2, 1}) == std::cos(2.0));
  REQUIRE(pe.at({2, 2}) == Approx(std::sin(2.0 / 100.0)).epsilon(1e-15));
  REQUIRE(pe.at({2, 3}) == Approx(std::cos(2.0 / 100.0)).epsilon(1e-15));
}

TEST_CASE("attention: properties", "[ops][attention]") {
  Generator gen(1);
  Tensor q = randn({2, 5, 3}, gen, kFloat64), k = randn({2, 6, 3}, gen, kFloat64), v = randn({2, 6, 4}, gen, kFloat64);
  std::vector<bool> m(30);
  for (std::size_t i = 0; i < 30; ++i) m[i] = gen.uniform() < 0.6 || i % 6 == 0;
  const Tensor mask = bool_mask(m, Shape{5, 6});
  AttentionResult r = scaled_dot_product_attention_with_weights(q, k, v, {.attn_mask = mask});
  // each row sums to 1 over the keys it may see, 0 elsewhere
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 5; ++i) {
      double s = 0;
      for (std::int64_t j = 0; j < 6; ++j) {
        const double w = r.weights.at({b, i, j});
        if (!m[static_cast<std::size_t>(i * 6 + j)]) REQUIRE(w == 0.0);
        REQUIRE(w >= 0.0);
        s += w;
      }
      REQUIRE(s == Approx(1.0).epsilon(1e-14));
    }
  // causal: output t does not change when inputs after t change
  Tensor x = randn({7, 4}, gen, kFloat64);
  Tensor y = scaled_dot_product_attention(x, x, x, {.is_causal = true});
  for (std::int64_t t = 0; t < 6; ++t) {
    Tensor x2 = x.clone().detach();
    for (std::int64_t s = t + 1; s < 7; ++s)
      for (std::int64_t j = 0; j < 4; ++j) x2.set({s, j}, x2.at({s, j}) + 3.0);
    Tensor y2 = scaled_dot_product_attention(x2, x2, x2, {.is_causal = true});
    for (std::int64_t s = 0; s <= t; ++s)
      for (std::int64_t j = 0; j < 4; ++j) REQUIRE(y2.at({s, j}) == y.at({s, j}));
    REQUIRE(y2.at({t + 1, 0}) != y.at({t + 1, 0}));
  }
  // permuting keys and values together leaves the output unchanged (no mask)
  Tensor perm = from_vector(std::vector<std::int64_t>{3, 0, 5, 1, 4, 2}, Shape{6});
  REQUIRE_ALLCLOSE(scaled_dot_product_attention(q, index_select(k, 1, perm), index_select(v, 1, perm)),
                   scaled_dot_product_attention(q, k, v), 1e-13, 1e-15);
  // MultiheadAttention keeps that property too
  Generator g2(3);
  MultiheadAttention mha(4, 2, g2, {.batch_first = true, .dtype = kFloat64});
  Tensor xq = randn({2, 3, 4}, gen, kFloat64), xk = randn({2, 6, 4}, gen, kFloat64);
  Tensor a = mha.forward(xq, xk, xk).output;
  Tensor xk_p = index_select(xk, 1, perm);
  REQUIRE_ALLCLOSE(mha.forward(xq, xk_p, xk_p).output, a, 1e-13, 1e-15);
}

TEST_CASE("attention: fully masked rows give zero output and zero gradient", "[ops][attention]") {
  Generator gen(2);
  Tensor q = rnd({3, 2}, gen), k = rnd({4, 2}, gen), v = rnd({4, 2}, gen);
  std::vector<bool> m(12, true);
  for (int j = 0; j < 4; ++j) m[static_cast<std::size_t>(4 + j)] = false;  // query 1 sees nothing
  const Tensor mask = bool_mask(m, Shape{3, 4});
  Tensor out = scaled_dot_product_attention(q, k, v, {.attn_mask = mask});
  REQUIRE(out.at({1, 0}) == 0.0);
  REQUIRE(out.at({1, 1}) == 0.0);
  backward(sum(out));
  REQUIRE(q.grad().at({1, 0}) == 0.0);
  REQUIRE(q.grad().at({1, 1}) == 0.0);
  for (double g : q.grad().to_vector()) REQUIRE(std::isfinite(g));
  testing::require_gradcheck(
      [&](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], {.attn_mask = mask}); },
      {q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_()}, true);
}

TEST_CASE("attention: gradcheck and gradgradcheck of scaled_dot_product_attention", "[ops][attention]") {
  Generator gen(4);
  struct Case {
    Shape q, k, v;
  };
  for (const Case& c : {Case{{3, 2}, {3, 2}, {3, 2}}, Case{{2, 3, 2}, {2, 4, 2}, {2, 4, 3}},
                        Case{{1, 2, 2, 3}, {1, 2, 2, 3}, {1, 2, 2, 1}}, Case{{2, 1, 3, 2}, {2, 3, 2}, {2, 3, 2}}}) {
    const std::int64_t L = c.q[c.q.rank() - 2], S = c.k[c.k.rank() - 2];
    std::vector<bool> m(static_cast<std::size_t>(L * S));
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = i % static_cast<std::size_t>(S) == 0 || gen.uniform() < 0.5;
    const Tensor bmask = bool_mask(m, Shape{L, S});
    const Tensor fmask = randn({L, S}, gen, kFloat64);
    const std::vector<AttentionOptions> variants = {
        {}, {.attn_mask = bmask}, {.attn_mask = fmask}, {.scale = 0.7}, {.is_causal = true}};
    for (std::size_t vi = 0; vi < variants.size(); ++vi) {
      if (variants[vi].is_causal && L != S) continue;
      INFO("q " << c.q.str() << " k " << c.k.str() << " variant " << vi);
      const AttentionOptions o = variants[vi];
      testing::require_gradcheck(
          [o](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], o); },
          {rnd(c.q, gen), rnd(c.k, gen), rnd(c.v, gen)}, true);
    }
  }
}

TEST_CASE("attention layers: gradcheck of MultiheadAttention and TransformerBlock", "[nn][attention]") {
  Generator gen(6);
  MultiheadAttention mha(4, 2, gen, {.batch_first = true, .dtype = kFloat64});
  Tensor kpm = bool_mask({false, false, true, false, false, false}, Shape{2, 3});
  Tensor am = bool_mask({false, true, false, false, false, true, false, false, false}, Shape{3, 3});
  for (int variant = 0; variant < 3; ++variant) {
    INFO("variant " << variant);
    auto f = [&](const std::vector<Tensor>& in) {
      MhaForwardOptions o{.need_weights = false, .is_causal = variant == 2};
      if (variant == 1) {
        o.key_padding_mask = kpm;
        o.attn_mask = am;
      }
      return mha.forward(in[0], in[1], in[2], o).output;
    };
    testing::require_gradcheck(f, {rnd({2, 3, 4}, gen), rnd({2, 3, 4}, gen), rnd({2, 3, 4}, gen)}, variant == 0);
  }
  // Parameter gradients are checked against PyTorch's (tests/parity, float64 at 1e-10).
  TransformerBlock block(4, 2, 8, gen, {.causal = true, .dtype = kFloat64});
  testing::require_gradcheck([&](const std::vector<Tensor>& in) { return block(in[0]); }, {rnd({2, 3, 4}, gen)}, true);
}

TEST_CASE("attention: bad input", "[ops][attention]") {
  Generator gen(7);
  Tensor q = randn({3, 4}, gen), k = randn({5, 4}, gen), v = randn({5, 2}, gen);
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, randn({5, 3}, gen), v),
                      Contains("q [3, 4] and k [5, 3]") && Contains("feature sizes"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, randn({4, 2}, gen)), Contains("numbers of keys"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v, {.attn_mask = bool_mask({true, false}, Shape{2})}),
                      Contains("attn_mask of shape [2]") && Contains("[3, 5]"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v, {.attn_mask = zeros({3, 5}, kFloat32), .is_causal = true}),
                      Contains("not both"));
  REQUIRE_THROWS_WITH(scaled_dot_product_attention(q, k, v, {.attn_mask = zeros({3, 5}, kInt64)}), Contains("int64"));
  REQUIRE_THROWS_WITH(MultiheadAttention(6, 4, gen), Contains("embed_dim = 6 is not divisible by num_heads = 4"));
  MultiheadAttention mha(4, 2, gen, {.batch_first = true});
  REQUIRE_THROWS_WITH(mha.forward(randn({2, 3, 5}, gen), randn({2, 3, 5}, gen), randn({2, 3, 5}, gen)),
                      Contains("query has shape [2, 3, 5]"));
  REQUIRE_THROWS_WITH(mha.forward(randn({2, 3, 4}, gen), randn({2, 3, 4}, gen), randn({2, 3, 4}, gen),
                                  {.key_padding_mask = bool_mask({true, false}, Shape{2})}),
                      Contains("key_padding_mask has shape [2]") && Contains("[2, 3]"));
}

// ---------------------------------------------------------------- errors name scaled_dot_product_attention

TEST_CASE("scaled_dot_product_attention: shape and value errors name scaled_dot_product_attention, not matmul or softmax",
          "[issue11][ops][attention][bad]") {
  Generator gen(1104);
  const std::string prefix = "scaled_dot_product_attention:";
  // leading (batch) dims of q and k that do not broadcast
  REQUIRE_THAT(error_of([&] { scaled_dot_product_attention(randn({2, 3, 4}, gen), randn({3, 5, 4}, gen), randn({3, 5, 2}, gen)); }),
               StartsWith(prefix) && Contains("[2, 3, 4]") && Contains("[3, 5, 4]"));
  // v's leading dims against the scores
  REQUIRE_THAT(error_of([&] { scaled_dot_product_attention(randn({2, 3, 4}, gen), randn({2, 5, 4}, gen), randn({3, 5, 2}, gen)); }),
               StartsWith(prefix) && Contains("v") && Contains("[3, 5, 2]"));
  REQUIRE_THAT(error_of([&] { scaled_dot_product_attention_with_weights(randn({2, 3, 4}, gen), randn({3, 5, 4}, gen),
                                                                        randn({3, 5, 2}, gen)); }),
               StartsWith(prefix));
  // undefined inputs
  REQUIRE_THAT(error_of([&] { scaled_dot_product_attention(Tensor(), randn({5, 4}, gen), randn({5, 2}, gen)); }),
               StartsWith(prefix) && Contains("q"));
  // float mask of another dtype
  REQUIRE_THAT(error_of([&] {
                 scaled_dot_product_attention(randn({3, 4}, gen), randn({5, 4}, gen), randn({5, 2}, gen),
                                              {.attn_mask = zeros({3, 5}, kFloat64)});
               }),
               StartsWith(prefix) && Contains("attn_mask"));
  // NaN or +inf in a float mask, or NaN in q: the scores are not valid logits
  for (double bad : {kNaN, kInf}) {
    Tensor mask = zeros({3, 5});
    mask.mutable_data<float>()[7] = static_cast<float>(bad);
    REQUIRE_THAT(error_of([&] {
                   scaled_dot_product_attention(randn({3, 4}, gen), randn({5, 4}, gen), randn({5, 2}, gen), {.attn_mask = mask});
                 }),
                 StartsWith(prefix) && Contains("attn_mask") && Contains("[1, 2]"));
  }
  Tensor q = randn({2, 3, 4}, gen);
  q.mutable_data<float>()[13] = NAN;
  REQUIRE_THAT(error_of([&] { scaled_dot_product_attention(q, randn({2, 5, 4}, gen), randn({2, 5, 2}, gen)); }),
               StartsWith(prefix) && Contains("NaN"));
  // scale so large that finite q kᵀ overflows
  REQUIRE_THAT(error_of([&] {
                 scaled_dot_product_attention(full({3, 4}, 1e10, kFloat32), full({5, 4}, 1e10, kFloat32), randn({5, 2}, gen),
                                              {.scale = 1e30});
               }),
               StartsWith(prefix) && Contains("scale"));
}
