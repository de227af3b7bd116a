// SPDX-License-Identifier: MIT
// embedding (ops/embedding.cpp), also through nn::Embedding: values by hand, float64 gradcheck and
// gradgradcheck, padding_idx, and bad input. PyTorch parity: tests/parity/test_parity_nn.cpp.
#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;

namespace {
Tensor rnd(const Shape& s, Generator& gen, double scale = 1.0) {
  return (randn(s, gen, kFloat64) * scale).detach().requires_grad_();
}
}  // namespace

TEST_CASE("embedding: values by hand", "[ops][attention][embedding]") {
  // embedding picks rows
  Tensor w = tensor({{0.0, 1.0}, {2.0, 3.0}, {4.0, 5.0}}, kFloat64);
  REQUIRE_ALLCLOSE(embedding(w, from_vector(std::vector<std::int64_t>{2, 0, 2}, Shape{3})),
                   tensor({{4.0, 5.0}, {0.0, 1.0}, {4.0, 5.0}}, kFloat64), 0, 0);
}

TEST_CASE("embedding: gradcheck and gradgradcheck; padding_idx gets no gradient", "[ops][attention][embedding]") {
  Generator gen(5);
  Tensor idx = from_vector(std::vector<std::int64_t>{1, 0, 1, 3, 2, 1}, Shape{2, 3});
  testing::require_gradcheck([&](const std::vector<Tensor>& in) { return embedding(in[0], idx); }, {rnd({4, 3}, gen)}, true);
  // padding_idx: that row gets no gradient, the others their counts
  Tensor w = rnd({4, 2}, gen);
  backward(sum(embedding(w, idx, 1)));
  REQUIRE_ALLCLOSE(w.grad(), tensor({{1, 1}, {0, 0}, {1, 1}, {1, 1}}, kFloat64), 0, 0);
}

TEST_CASE("embedding: bad input", "[ops][attention][embedding][bad]") {
  Generator gen(7);
  Embedding emb(10, 3, gen);
  REQUIRE_THROWS_WITH(emb(from_vector(std::vector<std::int64_t>{1, 2, 3, 12}, Shape{2, 2})),
                      Contains("indices[1, 1] = 12 is out of range for 10 embeddings"));
  REQUIRE_THROWS_WITH(emb(from_vector(std::vector<std::int64_t>{-1}, Shape{1})), Contains("indices[0] = -1"));
}
