// SPDX-License-Identifier: MIT
// Regression tests of issue 11 ("Hardening") for the softmax family, attention and the losses:
// the gradient of a learned temperature at -inf masks and at tiny/huge T, errors that name the op
// the user called (not an internal one), layer_norm's eps, invalid Reduction values, and empty
// inputs through these ops.
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor f64(std::initializer_list<double> v) { return tensor(v, kFloat64); }
Tensor f64(const std::vector<double>& v, const Shape& s) { return from_vector(v, s, kFloat64); }
Tensor idx(const std::vector<std::int64_t>& v, const Shape& s) { return from_vector(v, s); }

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

using tapegrad::testing::error_of;

using TempOp = std::function<Tensor(const Tensor&, int, const Tensor&)>;
struct NamedTempOp {
  const char* name;
  TempOp f;
};
const std::vector<NamedTempOp> kTempOps = {
    {"softmax", [](const Tensor& x, int d, const Tensor& t) { return softmax(x, d, t); }},
    {"log_softmax", [](const Tensor& x, int d, const Tensor& t) { return log_softmax(x, d, t); }},
};

// dL/dT for L = sum(g * op(x, dim, T)), T a fresh leaf holding t.
double temperature_grad(const TempOp& f, const Tensor& x, int dim, double t, const Tensor& g) {
  Tensor tl = tensor(t, x.dtype()).requires_grad_();
  backward(sum(mul(f(x, dim, tl), g)));
  return tl.grad().item();
}

}  // namespace

// ---------------------------------------------------------------- 1. learned temperature: dT

// y = op(x / T): dL/dT = -(1/T^2) sum_k x_k dz_k with dz = dL/d(x / T). A -inf logit is x / T = -inf
// for every T, a constant, so it adds nothing to dT (its probability is exactly 0 and it enters no
// other output). Central differences cannot run at -inf, so the mask is applied inside the checked
// function: f(x, T) = op(masked_fill(x, mask, -inf), dim, T); outputs that are -inf whatever x and
// T are (log_softmax at masked entries) are then set to 0.
TEST_CASE("temperature: dT at -inf masks is finite and passes gradcheck and gradgradcheck",
          "[issue11][ops][softmax][temperature][mask]") {
  Generator gen(1101);
  const Tensor x = (randn({4, 5}, gen, kFloat64) * 2.0).detach().requires_grad_();
  std::vector<bool> m(20, false);
  for (int k : {1, 3, 7, 11, 12, 18}) m[static_cast<std::size_t>(k)] = true;
  const Tensor mask = from_vector(m, Shape{4, 5});
  const Tensor t0 = tensor(1.3, kFloat64).requires_grad_();
  const Tensor tr = f64({0.6, 1.1, 2.3, 0.9}, Shape{4, 1}).requires_grad_();
  for (const NamedTempOp& op : kTempOps)
    for (const Tensor& t : {t0, tr}) {
      INFO(op.name << ", T of shape " << t.shape().str());
      const TempOp f = op.f;
      const Tensor out_mask = isinf(f(masked_fill(x.detach(), mask, -kInf), 1, t.detach()));
      const Function checked = [f, mask, out_mask](const std::vector<Tensor>& v) {
        return masked_fill(f(masked_fill(v[0], mask, -kInf), 1, v[1]), out_mask, 0.0);
      };
      testing::require_gradcheck(checked, {x, t}, true);
      // T alone, x a constant holding the -inf entries (no finite differences over them)
      const Tensor xm = masked_fill(x.detach(), mask, -kInf);
      const Function t_only = [f, xm, out_mask](const std::vector<Tensor>& v) {
        return masked_fill(f(xm, 1, v[0]), out_mask, 0.0);
      };
      testing::require_gradcheck(t_only, {t}, true);
    }
}

// dL/dT for L = sum(g * op(x / T)) along the last dim of a [R, K] x, by hand in double: per row,
// p = softmax(x / T) over the finite entries, dz = dL/d(x / T) (softmax: p (g - <g, p>); log_softmax:
// g - p sum(g)), dT = -(1/T) sum over the finite entries of (x / T) dz. Masked entries add nothing:
// their outputs (softmax 0, log_softmax -inf) are the same for every T, so for log_softmax the
// cotangent there is left out of sum(g) as well.
double expected_temperature_grad(bool log, const std::vector<double>& x, const std::vector<double>& g, std::int64_t K,
                                 double t) {
  double dT = 0.0;
  for (std::size_t r0 = 0; r0 < x.size(); r0 += static_cast<std::size_t>(K)) {
    double m = -kInf, s = 0.0, gsum = 0.0, gp = 0.0;
    for (std::int64_t k = 0; k < K; ++k) m = std::max(m, x[r0 + static_cast<std::size_t>(k)] / t);
    std::vector<double> p(static_cast<std::size_t>(K), 0.0);
    for (std::int64_t k = 0; k < K; ++k) {
      const double xk = x[r0 + static_cast<std::size_t>(k)];
      if (std::isfinite(xk)) p[static_cast<std::size_t>(k)] = std::exp(xk / t - m);
      s += p[static_cast<std::size_t>(k)];
    }
    for (std::int64_t k = 0; k < K; ++k) {
      p[static_cast<std::size_t>(k)] /= s;
      if (std::isfinite(x[r0 + static_cast<std::size_t>(k)])) gsum += g[r0 + static_cast<std::size_t>(k)];
      gp += g[r0 + static_cast<std::size_t>(k)] * p[static_cast<std::size_t>(k)];
    }
    for (std::int64_t k = 0; k < K; ++k) {
      const double xk = x[r0 + static_cast<std::size_t>(k)], gk = g[r0 + static_cast<std::size_t>(k)];
      const double pk = p[static_cast<std::size_t>(k)];
      if (!std::isfinite(xk)) continue;
      const double dz = log ? gk - pk * gsum : pk * (gk - gp);
      dT -= (xk / t) * dz / t;
    }
  }
  return dT;
}

TEST_CASE("temperature: dT with -inf logits is finite for every cotangent and matches the formula by hand",
          "[issue11][ops][softmax][temperature][mask]") {
  Generator gen(1102);
  for (DType dt : {kFloat64, kFloat32}) {
    const Tensor x = masked_fill(randn({3, 6}, gen, dt), from_vector(std::vector<bool>{
                                                             false, true, false, false, true, false,  //
                                                             true, false, false, false, false, false,  //
                                                             false, false, true, true, false, false},
                                                                    Shape{3, 6}),
                                 -kInf);
    const Tensor g = randn({3, 6}, gen, dt);
    const Tensor g_finite = where(isinf(x), 0.0, g);  // the usual case: masked outputs carry no cotangent
    for (const NamedTempOp& op : kTempOps) {
      const bool log = std::string(op.name) == "log_softmax";
      for (const Tensor& gg : {g, g_finite}) {
        INFO(op.name << ", " << dtype_name(dt) << ", cotangent " << gg);
        const double got = temperature_grad(op.f, x, 1, 0.7, gg);
        const double expected = expected_temperature_grad(log, x.to_vector(), gg.to_vector(), 6, 0.7);
        REQUIRE(std::isfinite(got));
        REQUIRE(std::abs(got - expected) <= (dt == kFloat64 ? 1e-12 : 1e-5) * (1.0 + std::abs(expected)));
        // the gradient of x is finite too, and both agree with the recorded (create_graph) formulas
        Tensor xl = x.detach().requires_grad_();
        Tensor tl = tensor(0.7, dt).requires_grad_();
        backward(sum(mul(op.f(xl, 1, tl), gg)));
        REQUIRE(all_finite(xl.grad()));
        const auto rec = grad({sum(mul(op.f(xl, 1, tl), gg))}, {xl, tl}, {}, GradOptions{.create_graph = true});
        REQUIRE_ALLCLOSE(rec.at(0), xl.grad(), 1e-5, 1e-6);
        REQUIRE_ALLCLOSE(rec.at(1), tl.grad(), 1e-5, 1e-6);
      }
      // the cotangent at masked entries does not reach T (their outputs do not depend on it)
      REQUIRE(std::abs(temperature_grad(op.f, x, 1, 0.7, g) - temperature_grad(op.f, x, 1, 0.7, g_finite)) <=
                (dt == kFloat64 ? 1e-13 : 1e-5));
    }
    // temperature_scale alone: d(x / T)/dT = -x / T^2, and 0 where x = -inf (x / T is -inf for every T)
    Tensor tl2 = tensor(2.0, dt).requires_grad_();
    backward(sum(where(isinf(x), 0.0, temperature_scale(x, tl2))));
    const Tensor xf = where(isinf(x), 0.0, x);
    REQUIRE(std::abs(tl2.grad().item() - (-sum(xf).item() / 4.0)) <= 1e-5 * (1.0 + std::abs(sum(xf).item())));
  }
}

TEST_CASE("temperature: a fully -inf row has zero gradient for x and T (documented policy)",
          "[issue11][ops][softmax][temperature][mask]") {
  Generator gen(1103);
  const Tensor base = randn({3, 4}, gen, kFloat64);
  const Tensor full = from_vector(std::vector<bool>{false, false, false, false, true, true, true, true,  //
                                                    false, true, false, false},
                                  Shape{3, 4});
  const Tensor x = masked_fill(base, full, -kInf);
  const Tensor g = randn({3, 4}, gen, kFloat64);
  for (const NamedTempOp& op : kTempOps) {
    INFO(op.name);
    // rank-0 T: the masked row adds nothing, so dT equals dT over the other two rows alone
    const double with_row = temperature_grad(op.f, x, 1, 1.4, g);
    const Tensor keep = from_vector(std::vector<std::int64_t>{0, 2}, Shape{2});
    const double without_row = temperature_grad(op.f, index_select(x, 0, keep), 1, 1.4, index_select(g, 0, keep));
    REQUIRE(std::isfinite(with_row));
    REQUIRE(std::abs(with_row - without_row) <= 1e-12 * (1.0 + std::abs(without_row)));
    // per-row T: the masked row's T gets exactly 0, x's gradient is 0 on that row
    Tensor xl = x.detach().requires_grad_();
    Tensor tr = f64({0.5, 0.8, 1.9}, Shape{3, 1}).requires_grad_();
    backward(sum(mul(op.f(xl, 1, tr), g)));
    REQUIRE(all_finite(tr.grad()));
    REQUIRE(tr.grad().to_vector()[1] == 0.0);
    for (int k = 4; k < 8; ++k) REQUIRE(xl.grad().to_vector()[static_cast<std::size_t>(k)] == 0.0);
    REQUIRE(all_finite(xl.grad()));
    // and with create_graph (the recorded formulas)
    Tensor xl2 = x.detach().requires_grad_();
    Tensor tr2 = f64({0.5, 0.8, 1.9}, Shape{3, 1}).requires_grad_();
    const auto gr = grad({sum(mul(op.f(xl2, 1, tr2), g))}, {xl2, tr2}, {}, GradOptions{.create_graph = true});
    REQUIRE(all_finite(gr.at(0)));
    REQUIRE_ALLCLOSE(gr.at(1), tr.grad(), 1e-12, 1e-14);
  }
}

// softmax([0, a] / T)_1 = sigmoid(a / T) = s, so d/dT = -(a / T^2) s (1 - s): finite however small
// T is, as long as a / T is moderate. x / T^2 underflows or overflows long before that.
TEST_CASE("temperature: tiny and huge T give the exact finite dT, never NaN", "[issue11][ops][softmax][temperature]") {
  struct Case {
    DType dt;
    double t;
  };
  for (const Case& c : {Case{kFloat64, 1e-30}, Case{kFloat64, 1e-200}, Case{kFloat64, 1e-300}, Case{kFloat32, 1e-30},
                        Case{kFloat32, 1e-18}, Case{kFloat64, 1e200}, Case{kFloat32, 1e30}}) {
    INFO(dtype_name(c.dt) << ", T = " << c.t);
    const double a = -0.8 * c.t;  // a / T = -0.8
    const double s = 1.0 / (1.0 + std::exp(0.8));
    const double expected = -(a / c.t) / c.t * s * (1 - s);  // = 0.8 / T * s (1 - s)
    Tensor t = tensor(c.t, c.dt).requires_grad_();
    backward(narrow(softmax(tensor({0.0, a}, c.dt), 0, t), 0, 1, 1));
    REQUIRE(std::isfinite(t.grad().item()));
    REQUIRE(std::abs(t.grad().item() - expected) <= (c.dt == kFloat64 ? 1e-12 : 1e-5) * std::abs(expected) + 1e-300);
    // log_softmax: log sigmoid(a / T), d/dT = -(a / T^2) (1 - s)
    Tensor t2 = tensor(c.t, c.dt).requires_grad_();
    backward(narrow(log_softmax(tensor({0.0, a}, c.dt), 0, t2), 0, 1, 1));
    const double expected2 = -(a / c.t) / c.t * (1 - s);
    REQUIRE(std::abs(t2.grad().item() - expected2) <= (c.dt == kFloat64 ? 1e-12 : 1e-5) * std::abs(expected2) + 1e-300);
  }
  // x / T overflows (to -inf) for finite logits: the probability is 0 (the limit) and so is the
  // contribution to dT; the row's other entries are one-hot, so dT = 0 exactly.
  for (DType dt : {kFloat32, kFloat64}) {
    const double t = dt == kFloat32 ? 1e-37 : 1e-305;
    const Tensor x = tensor({{-50.0, -100.0, -75.0}, {3.0, 1.0, -2.0}}, dt);
    for (const NamedTempOp& op : kTempOps) {
      INFO(op.name << ", " << dtype_name(dt) << ", T = " << t);
      Tensor xl = x.detach().requires_grad_();
      Tensor tl = tensor(t, dt).requires_grad_();
      const Tensor y = op.f(xl, 1, tl);
      // only the argmax entries carry a cotangent (log_softmax of the others is -inf or ~ -1e39,
      // whose derivative in T, -x / T^2, is beyond the dtype's range)
      backward(sum(where(eq(x, max(x, 1, /*keepdim=*/true)), y, 0.0)));
      REQUIRE(tl.grad().item() == 0.0);
      REQUIRE(all_finite(xl.grad()));
    }
    Tensor tl = tensor(t, dt).requires_grad_();
    backward(sum(softmax(x, 1, tl) * tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}, dt)));
    REQUIRE(tl.grad().item() == 0.0);
  }
}

// ---------------------------------------------------------------- 2. errors name the op the user called

TEST_CASE("temperature: bad temperatures name softmax or log_softmax, the argument and the shapes",
          "[issue11][ops][softmax][temperature][bad]") {
  const Tensor x = zeros({2, 4}, kFloat64);
  for (const char* name : {"softmax", "log_softmax"}) {
    INFO(name);
    const std::string prefix = std::string(name) + ":";
    const bool sm = std::string(name) == "softmax";
    const auto with_t = [sm](const Tensor& x, int dim, const Tensor& t) { return sm ? softmax(x, dim, t) : log_softmax(x, dim, t); };
    const auto with_d = [sm](const Tensor& x, int dim, double t) { return sm ? softmax(x, dim, t) : log_softmax(x, dim, t); };
    for (double t : {0.0, -0.0, -1.0, kNaN, kInf}) {
      INFO("T = " << t);
      REQUIRE_THAT(error_of([&] { with_d(x, 1, t); }), StartsWith(prefix) && Contains("temperature") && Contains("T > 0"));
      REQUIRE_THAT(error_of([&] { with_t(x, 1, tensor(t, kFloat64)); }),
                   StartsWith(prefix) && Contains("temperature") && Contains("T > 0"));
    }
    // one bad element among good ones
    REQUIRE_THAT(error_of([&] { with_t(x, 1, f64({1.0, -0.5}, Shape{2, 1})); }),
                 StartsWith(prefix) && Contains("temperature[1, 0] = -0.5"));
    // shape: [3] does not broadcast against x [2, 4]
    REQUIRE_THAT(error_of([&] { with_t(x, 1, f64({1.0, 2.0, 3.0})); }),
                 StartsWith(prefix) && Contains("temperature") && Contains("[3]") && Contains("[2, 4]"));
    // dtype
    REQUIRE_THAT(error_of([&] { with_t(x, 1, tensor(1.0, kFloat32)); }),
                 StartsWith(prefix) && Contains("temperature") && Contains("float32") && Contains("float64"));
    REQUIRE_THAT(error_of([&] { with_t(x, 1, from_vector(std::vector<std::int64_t>{2}, Shape{})); }),
                 StartsWith(prefix) && Contains("temperature") && Contains("int64"));
    REQUIRE_THAT(error_of([&] { with_t(x, 1, Tensor()); }), StartsWith(prefix) && Contains("temperature"));
    // x itself
    const Tensor xi = from_vector(std::vector<std::int64_t>{1, 2}, Shape{2});
    REQUIRE_THAT(error_of([&] { with_d(xi, 0, 1.0); }), StartsWith(prefix) && Contains("x") && Contains("int64"));
    REQUIRE_THAT(error_of([&] { with_t(xi, 0, tensor(1.0, kFloat64)); }), StartsWith(prefix) && Contains("int64"));
    REQUIRE_THAT(error_of([&] { with_d(x, 2, 1.0); }), StartsWith(prefix) && Contains("dim 2"));
    REQUIRE_THAT(error_of([&] { with_t(tensor({{1.0, kNaN}}, kFloat64), 1, tensor(2.0, kFloat64)); }),
                 StartsWith(prefix) && Contains("NaN"));
  }
  // temperature_scale names itself, never div
  REQUIRE_THAT(error_of([&] { temperature_scale(x, f64({1.0, 2.0, 3.0})); }),
               StartsWith("temperature_scale:") && Contains("temperature") && Contains("[3]") && Contains("[2, 4]"));
  REQUIRE_THAT(error_of([&] { temperature_scale(x, 0.0); }), StartsWith("temperature_scale:"));
}

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

// ---------------------------------------------------------------- 3. layer_norm eps, Reduction values

TEST_CASE("layer_norm: eps must be finite and > 0 (eps = 0 divides by zero on constant rows)", "[issue11][ops][attention][bad]") {
  Generator gen(1105);
  const Tensor x = randn({2, 4}, gen);
  for (double eps : {0.0, -0.0, -1e-5, kNaN, kInf, -kInf}) {
    INFO("eps = " << eps);
    REQUIRE_THAT(error_of([&] { layer_norm(x, {4}, Tensor(), Tensor(), eps); }),
                 StartsWith("layer_norm:") && Contains("eps") && Contains("eps > 0"));
    // nn::LayerNorm rejects it when built, not at its first forward
    REQUIRE_THAT(error_of([&] { LayerNorm ln({4}, eps); }), StartsWith("LayerNorm:") && Contains("eps > 0"));
  }
  REQUIRE_NOTHROW(layer_norm(x, {4}, Tensor(), Tensor(), 1e-12));
  // a constant row with the smallest accepted eps: finite
  REQUIRE(all_finite(layer_norm(zeros({2, 4}), {4}, Tensor(), Tensor(), 1e-30)));
}

TEST_CASE("losses: a Reduction value outside the enum is rejected, naming the loss", "[issue11][ops][loss][bad]") {
  const auto bad = static_cast<Reduction>(7);
  const Tensor x = tensor({{0.5, -1.0, 2.0}, {0.1, 0.2, 0.3}}, kFloat64);
  const Tensor t = idx({2, 0}, Shape{2});
  REQUIRE_THAT(error_of([&] { cross_entropy(x, t, {.reduction = bad}); }),
               StartsWith("cross_entropy:") && Contains("reduction") && Contains("7") && Contains("Mean"));
  REQUIRE_THAT(error_of([&] { cross_entropy(x.detach().requires_grad_(), softmax(x, 1), {.reduction = bad}); }),
               StartsWith("cross_entropy:") && Contains("reduction"));
  REQUIRE_THAT(error_of([&] { nll_loss(log_softmax(x, 1), t, {.reduction = bad}); }),
               StartsWith("nll_loss:") && Contains("reduction") && Contains("7"));
  REQUIRE_THAT(error_of([&] { kl_div(log_softmax(x, 1), softmax(x, 1), {.reduction = bad}); }),
               StartsWith("kl_div:") && Contains("reduction") && Contains("7") && Contains("BatchMean"));
  REQUIRE_THAT(error_of([&] { binary_cross_entropy_with_logits(x, ones_like(x), {.reduction = bad}); }),
               StartsWith("binary_cross_entropy_with_logits:") && Contains("reduction") && Contains("7"));
  REQUIRE_THAT(error_of([&] { cross_entropy(x, t, {.reduction = static_cast<Reduction>(-1)}); }),
               StartsWith("cross_entropy:") && Contains("-1"));
}

// ---------------------------------------------------------------- 4. empty inputs

TEST_CASE("empty inputs: softmax family, temperature, cross_entropy, attention and layer_norm with no rows",
          "[issue11][ops][softmax][empty]") {
  for (const Shape& s : {Shape{0, 5}, Shape{2, 0, 3}}) {
    INFO("shape " << s.str());
    const int dim = s.rank() - 1;
    Tensor x = zeros(s, kFloat64).requires_grad_();
    Tensor t = tensor(1.5, kFloat64).requires_grad_();
    backward(sum(softmax(x, dim)) + sum(log_softmax(x, dim)) + sum(logsumexp(x, dim)) + sum(softmax(x, dim, t)) +
             sum(log_softmax(x, dim, t)));
    REQUIRE(x.grad().shape() == s);
    REQUIRE(t.grad().item() == 0.0);
  }
  for (Reduction r : {Reduction::None, Reduction::Mean, Reduction::Sum}) {
    Tensor x = zeros({0, 4}, kFloat64).requires_grad_();
    const Tensor y = cross_entropy(x, idx({}, Shape{0}), {.reduction = r});
    backward(sum(y));
    REQUIRE(x.grad().shape() == Shape{0, 4});
  }
  // attention with no queries, and with no keys (every query sees nothing: output 0, as a fully masked row)
  Generator gen(1106);
  Tensor q = randn({0, 4}, gen, kFloat64).requires_grad_(), k = randn({5, 4}, gen, kFloat64).requires_grad_(),
         v = randn({5, 2}, gen, kFloat64).requires_grad_();
  Tensor out = scaled_dot_product_attention(q, k, v);
  REQUIRE(out.shape() == Shape{0, 2});
  backward(sum(out));
  REQUIRE(all_finite(k.grad()));
  Tensor q2 = randn({3, 4}, gen, kFloat64).requires_grad_(), k2 = randn({0, 4}, gen, kFloat64).requires_grad_(),
         v2 = randn({0, 2}, gen, kFloat64).requires_grad_();
  Tensor out2 = scaled_dot_product_attention(q2, k2, v2);
  REQUIRE_ALLCLOSE(out2, zeros({3, 2}, kFloat64), 0, 0);
  backward(sum(out2));
  REQUIRE_ALLCLOSE(q2.grad(), zeros({3, 4}, kFloat64), 0, 0);
  // layer_norm of no rows
  Tensor xl = zeros({0, 4}, kFloat64).requires_grad_();
  Tensor w = ones({4}, kFloat64).requires_grad_();
  backward(sum(layer_norm(xl, {4}, w)));
  REQUIRE(xl.grad().shape() == Shape{0, 4});
  REQUIRE_ALLCLOSE(w.grad(), zeros({4}, kFloat64), 0, 0);
}
