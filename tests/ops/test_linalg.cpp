// SPDX-License-Identifier: MIT
// matmul and matmul_t: values against numpy.matmul (numbers pasted from /usr/bin/python3 + numpy),
// float64 gradchecks over torch.matmul's cases (vectors, matrices, broadcast batch dims, size-1
// dims), second derivatives, the fast paths against the general path, and bad input.
#include "autodiff/detail/node.hpp"
#include "testing.hpp"

using namespace tapegrad;
using Catch::Matchers::Contains;

namespace {

Tensor leaf(const Shape& s, Generator& gen) { return randn(s, gen, kFloat64).requires_grad_(); }

Tensor values(std::vector<double> v, const Shape& s) { return from_vector(v, s, kFloat64); }


Tensor mm(const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }

}  // namespace

TEST_CASE("matmul: matrix, vector and dot products match numpy", "[ops][matmul]") {
  const Tensor a = tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64);
  const Tensor b = tensor({{7, 8}, {9, 10}, {11, 12}}, kFloat64);
  REQUIRE_ALLCLOSE(matmul(a, b), tensor({{58, 64}, {139, 154}}, kFloat64));

  const Tensor dot = matmul(tensor({1, 2, 3}, kFloat64), tensor({4, 5, 6}, kFloat64));
  REQUIRE(dot.dim() == 0);
  REQUIRE(dot.item() == 32.0);
  REQUIRE_ALLCLOSE(matmul(tensor({1, 2}, kFloat64), a), tensor({9, 12, 15}, kFloat64));      // [2] @ [2, 3]
  REQUIRE_ALLCLOSE(matmul(a, tensor({1, 0, -1}, kFloat64)), tensor({-2, -2}, kFloat64));      // [2, 3] @ [3]

  // float32 gives the same numbers (all exact in float)
  const Tensor c32 = matmul(a.to(kFloat32), b.to(kFloat32));
  REQUIRE(c32.dtype() == kFloat32);
  REQUIRE_ALLCLOSE(c32, tensor({{58, 64}, {139, 154}}, kFloat32));
}

TEST_CASE("matmul: batch dims broadcast like numpy.matmul", "[ops][matmul]") {
  const Tensor a = tensor({{{-5, -4, -3}, {-2, -1, 0}}, {{1, 2, 3}, {4, 5, 6}}}, kFloat64);  // [2, 2, 3]
  const Tensor b = tensor({{-1, -0.5}, {0, 0.5}, {1, 1.5}}, kFloat64);                     // [3, 2]
  REQUIRE_ALLCLOSE(matmul(a, b), values({2, -4, 2, 0.5, 2, 5, 2, 9.5}, {2, 2, 2}));

  const Tensor c = tensor({{{{-2, -1, 0}, {1, 2, -2}}}, {{{-1, 0, 1}, {2, -2, -1}}}}, kFloat64);  // [2, 1, 2, 3]
  const Tensor d = tensor({{{-3, -2}, {-1, 0}, {1, 2}}, {{3, -3}, {-2, -1}, {0, 1}}, {{2, 3}, {-3, -2}, {-1, 0}}},
                          kFloat64);  // [3, 3, 2]
  REQUIRE_ALLCLOSE(matmul(c, d), values({7, 4, -7, -6, -4, 7, -1, -7, -1, -4, -2, -1,
                                         4, 4, -5, -6, -3, 4, 10, -5, -3, -3, 11, 10},
                                        {2, 3, 2, 2}));

  const Tensor v = tensor({1, -2, 3}, kFloat64);
  REQUIRE_ALLCLOSE(matmul(v, d), values({2, 4, 7, 2, 5, 7}, {3, 2}));  // [3] @ [3, 3, 2]
  REQUIRE_ALLCLOSE(matmul(a, v), values({-6, 0, 6, 12}, {2, 2}));       // [2, 2, 3] @ [3]
}

TEST_CASE("matmul: empty dims give empty or zero results", "[ops][matmul]") {
  const Tensor z = matmul(zeros({2, 0}, kFloat64), zeros({0, 3}, kFloat64));  // inner size 0: zeros
  REQUIRE(z.shape() == Shape{2, 3});
  REQUIRE_ALLCLOSE(z, zeros({2, 3}, kFloat64));
  REQUIRE(matmul(zeros({0, 4}, kFloat64), zeros({4, 3}, kFloat64)).shape() == Shape{0, 3});
  REQUIRE(matmul(zeros({2, 0, 4}, kFloat64), zeros({4, 3}, kFloat64)).shape() == Shape{2, 0, 3});
  REQUIRE(matmul(zeros({0, 2, 4}, kFloat64), zeros({1, 4, 3}, kFloat64)).shape() == Shape{0, 2, 3});
}

TEST_CASE("matmul_t: transposed operands match numpy without materialising them", "[ops][matmul]") {
  const Tensor A = tensor({{1, 2}, {3, 4}, {5, 6}}, kFloat64);  // [3, 2]
  const Tensor B = tensor({{1, 0, -1}, {2, 1, 0}}, kFloat64);   // [2, 3]
  REQUIRE_ALLCLOSE(matmul_t(A, A, true, false), values({35, 44, 44, 56}, {2, 2}));  // A^T A
  REQUIRE_ALLCLOSE(matmul_t(A, A, false, true), values({5, 11, 17, 11, 25, 39, 17, 39, 61}, {3, 3}));  // A A^T
  REQUIRE_ALLCLOSE(matmul_t(A, B, false, false), values({5, 2, -1, 11, 4, -3, 17, 6, -5}, {3, 3}));  // A B
  REQUIRE_ALLCLOSE(matmul_t(A, B, true, true), values({-4, 5, -4, 8}, {2, 2}));  // A^T B^T

  // batched, against matmul with explicit transposes
  Generator gen(11);
  const Tensor x = randn({2, 3, 4}, gen, kFloat64);
  const Tensor y = randn({3, 5}, gen, kFloat64);
  const Tensor w = randn({2, 5, 4}, gen, kFloat64);
  const Tensor u = randn({2, 5, 3}, gen, kFloat64);
  REQUIRE_ALLCLOSE(matmul_t(x, y, true, false), matmul(transpose(x, -1, -2), y), 1e-12, 1e-12);
  REQUIRE_ALLCLOSE(matmul_t(x, w, false, true), matmul(x, transpose(w, -1, -2)), 1e-12, 1e-12);
  REQUIRE_ALLCLOSE(matmul_t(x, u, true, true), matmul(transpose(x, 1, 2), transpose(u, 1, 2)), 1e-12, 1e-12);
}

TEST_CASE("matmul: float64 gradcheck over vectors, matrices and broadcast batch dims", "[ops][matmul][gradcheck]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {Shape{3}, Shape{3}},                 // dot
      {Shape{2, 3}, Shape{3, 4}},           // matrix product
      {Shape{3}, Shape{3, 2}},              // vector @ matrix
      {Shape{2, 3}, Shape{3}},              // matrix @ vector
      {Shape{1, 3}, Shape{3, 1}},           // size-1 dims
      {Shape{2, 2, 3}, Shape{3, 4}},        // batch @ matrix (folded fast path)
      {Shape{2, 2, 3}, Shape{1, 3, 2}},     // batch @ size-1 batch (folded fast path)
      {Shape{3, 4}, Shape{2, 4, 2}},        // matrix @ batch
      {Shape{1, 2, 3}, Shape{2, 3, 2}},     // size-1 batch on a
      {Shape{2, 1, 2, 3}, Shape{3, 3, 2}},  // both broadcast, rank 4 out
      {Shape{3}, Shape{2, 3, 2}},           // vector @ batch
      {Shape{2, 2, 3}, Shape{3}},           // batch @ vector
      {Shape{2, 2, 1, 3}, Shape{2, 3, 1}},  // rank 4 @ rank 3, size-1 rows and cols
  };
  Generator gen(1);
  for (const auto& [sa, sb] : cases) {
    INFO("a " << sa.str() << " b " << sb.str());
    tapegrad::testing::require_gradcheck(mm, {leaf(sa, gen), leaf(sb, gen)}, false);
  }
  // only one operand requires grad
  const Tensor a = leaf({2, 2, 3}, gen);
  const Tensor b = randn({3, 2}, gen, kFloat64);
  tapegrad::testing::require_gradcheck(mm, {a, b}, true);
  tapegrad::testing::require_gradcheck(mm, {b, leaf({2, 2, 3}, gen)}, false);  // [3, 2] @ [2, 2, 3]
}

TEST_CASE("matmul: second derivatives (gradgradcheck)", "[ops][matmul][gradcheck]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {Shape{3}, Shape{3}}, {Shape{2, 3}, Shape{3, 2}}, {Shape{2, 2, 3}, Shape{3, 2}},
      {Shape{3, 2}, Shape{2, 2, 3}}, {Shape{2, 1, 2, 3}, Shape{2, 3, 2}}};
  Generator gen(2);
  for (const auto& [sa, sb] : cases) {
    INFO("a " << sa.str() << " b " << sb.str());
    tapegrad::testing::require_gradcheck(mm, {leaf(sa, gen), leaf(sb, gen)}, true);
  }
  // Hessian of a quadratic form x^T A x is A + A^T
  const Tensor A = tensor({{1, 2}, {0, 3}}, kFloat64);
  const Tensor H = hessian([&](const Tensor& x) { return matmul(x, matmul(A, x)); }, tensor({0.5, -1}, kFloat64));
  REQUIRE_ALLCLOSE(H, tensor({{2, 2}, {2, 6}}, kFloat64), 1e-12, 1e-12);
}

TEST_CASE("matmul_t: gradcheck and gradgradcheck for every transpose combination", "[ops][matmul][gradcheck]") {
  Generator gen(3);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Function f = [ta, tb](const std::vector<Tensor>& in) { return matmul_t(in[0], in[1], ta, tb); };
      // op(a) is [.., 2, 3] and op(b) is [.., 3, 2]
      auto shape_a = [ta](std::vector<std::int64_t> batch) {
        batch.push_back(ta ? 3 : 2);
        batch.push_back(ta ? 2 : 3);
        return Shape(batch);
      };
      auto shape_b = [tb](std::vector<std::int64_t> batch) {
        batch.push_back(tb ? 2 : 3);
        batch.push_back(tb ? 3 : 2);
        return Shape(batch);
      };
      INFO("ta " << ta << " tb " << tb);
      tapegrad::testing::require_gradcheck(f, {leaf(shape_a({}), gen), leaf(shape_b({}), gen)}, true);
      tapegrad::testing::require_gradcheck(f, {leaf(shape_a({2}), gen), leaf(shape_b({}), gen)}, true);      // folded when !ta
      tapegrad::testing::require_gradcheck(f, {leaf(shape_a({}), gen), leaf(shape_b({2}), gen)}, true);
      tapegrad::testing::require_gradcheck(f, {leaf(shape_a({2, 1}), gen), leaf(shape_b({3}), gen)}, false);  // broadcast both
    }
}

TEST_CASE("matmul: bad inputs throw InvalidArgument naming matmul", "[ops][matmul][bad]") {
  const Tensor a = zeros({2, 3}, kFloat64);
  const Tensor b = zeros({4, 5}, kFloat64);
  REQUIRE_THROWS_AS(matmul(a, b), InvalidArgument);
  REQUIRE_THROWS_WITH(matmul(a, b), Contains("matmul: a [2, 3] and b [4, 5] have mismatched inner dims (a.size(-1) = 3, "
                                             "b.size(-2) = 4; expected equal)"));
  REQUIRE_THROWS_WITH(matmul(a, zeros({4}, kFloat64)), Contains("matmul") && Contains("b.size(0) = 4"));
  REQUIRE_THROWS_WITH(matmul(zeros({4}, kFloat64), a), Contains("matmul") && Contains("mismatched inner dims"));
  // batch dims that do not broadcast
  REQUIRE_THROWS_AS(matmul(zeros({2, 2, 3}, kFloat64), zeros({3, 3, 2}, kFloat64)), InvalidArgument);
  REQUIRE_THROWS_WITH(matmul(zeros({2, 2, 3}, kFloat64), zeros({3, 3, 2}, kFloat64)),
                      Contains("matmul") && Contains("batch dims [2] and [3]"));
  // rank 0
  REQUIRE_THROWS_AS(matmul(tensor(2.0, kFloat64), a), InvalidArgument);
  REQUIRE_THROWS_WITH(matmul(a, tensor(2.0, kFloat64)), Contains("matmul") && Contains("0-dimensional"));
  // dtypes
  REQUIRE_THROWS_AS(matmul(a, zeros({3, 2}, kFloat32)), InvalidArgument);
  REQUIRE_THROWS_WITH(matmul(a, zeros({3, 2}, kFloat32)), Contains("matmul") && Contains("float32"));
  const Tensor idx = from_vector(std::vector<std::int64_t>{1, 2, 3}, Shape{3});
  REQUIRE_THROWS_WITH(matmul(idx, idx), Contains("matmul") && Contains("int64"));
  REQUIRE_THROWS_WITH(matmul(Tensor(), a), Contains("matmul") && Contains("undefined"));

  REQUIRE_THROWS_AS(matmul_t(zeros({3}, kFloat64), a, false, false), InvalidArgument);
  REQUIRE_THROWS_WITH(matmul_t(zeros({3}, kFloat64), a, false, false), Contains("matmul_t") && Contains("at least 2 dims"));
  REQUIRE_THROWS_WITH(matmul_t(a, a, false, false), Contains("matmul_t") && Contains("mismatched inner dims"));
  REQUIRE_THROWS_WITH(matmul_t(zeros({2, 2, 3}, kFloat64), zeros({3, 2, 3}, kFloat64), false, true),
                      Contains("matmul_t") && Contains("do not broadcast"));
  REQUIRE_NOTHROW(matmul_t(a, a, false, true));
  REQUIRE_NOTHROW(matmul_t(a, a, true, false));
}

TEST_CASE("linear: x W^T + b in PyTorch's [out, in] layout", "[ops][linear]") {
  using Catch::Matchers::Contains;
  const Tensor x = tensor({{1, 2, 3}, {4, 5, 6}}, kFloat64);
  const Tensor w = tensor({{1, 0, -1}, {2, 1, 0}}, kFloat64);
  const Tensor b = tensor({0.5, -1}, kFloat64);
  // by hand: [1-3+0.5, 2+2-1] and [4-6+0.5, 8+5-1]
  REQUIRE_ALLCLOSE(linear(x, w, b), tensor({{-1.5, 3}, {-1.5, 12}}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(linear(x, w), tensor({{-2, 4}, {-2, 13}}, kFloat64), 0, 0);
  REQUIRE_ALLCLOSE(linear(tensor({1, 2, 3}, kFloat64), w, b), tensor({-1.5, 3}, kFloat64), 0, 0);
  REQUIRE(linear(reshape(x, {2, 1, 3}), w, b).shape() == Shape{2, 1, 2});

  Generator gen(77);
  for (const Shape& xs : {Shape{3}, Shape{4, 3}, Shape{2, 1, 3}}) {
    Tensor xi = randn(xs, gen, kFloat64).requires_grad_();
    Tensor wi = randn({2, 3}, gen, kFloat64).requires_grad_();
    Tensor bi = randn({2}, gen, kFloat64).requires_grad_();
    auto f = [](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); };
    GradcheckReport r = gradcheck(f, {xi, wi, bi});
    INFO(r);
    REQUIRE(r.ok());
    GradcheckReport r2 = gradgradcheck(f, {xi, wi, bi});
    INFO(r2);
    REQUIRE(r2.ok());
  }
  REQUIRE_THROWS_WITH(linear(x, tensor({1, 2, 3}, kFloat64)), Contains("linear: weight has shape [3]"));
  REQUIRE_THROWS_WITH(linear(x, zeros({2, 4}, kFloat64)), Contains("linear: x of shape [2, 3] and weight of shape [2, 4]"));
  REQUIRE_THROWS_WITH(linear(x, w, zeros({3}, kFloat64)), Contains("linear: bias has shape [3]; expected [2]"));
  REQUIRE_THROWS_WITH(linear(x, w.to(kFloat32)), Contains("float32"));
}

TEST_CASE("matmul, matmul_t: nodes save both operands and nothing else", "[ops][matmul][saved]") {
  Generator gen(9);
  const Tensor a = randn({2, 3, 4}, gen, kFloat64).requires_grad_();
  const Tensor b = randn({4, 5}, gen, kFloat64).requires_grad_();
  auto check_last = [&](const char* op) {
    const Node& n = tape_nodes()[tape_nodes().size() - 1];
    CHECK(std::string(n.op) == op);
    REQUIRE(n.saved.size() == 2);
    CHECK(n.saved[0].same(a));
    CHECK(n.saved[1].same(b));
    CHECK(n.saved_bytes == (24 + 20) * sizeof(double));
  };
  const Tensor c = matmul(a, b);
  check_last("matmul");
  const Tensor ct = matmul_t(a, b, false, false);
  check_last("matmul_t");
}
