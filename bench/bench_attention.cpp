// SPDX-License-Identifier: MIT
// A causal self-attention block, forward + backward, float32, batch 1, 1 thread:
//
//   x [T, E] -> q, k, v = x W_qᵀ + b_q, ...  (in_proj [3E, E], PyTorch's layout)
//            -> per head h (d = E / H):  P_h = causal_softmax(q_h k_hᵀ / sqrt(d)),  o_h = P_h v_h
//            -> y = [o_1 ... o_H] W_oᵀ + b_o;   loss = sum(y);   backward to x and every weight
//
//   sizes   (T = 64, E = 64) and (T = 256, E = 128), each with 1 and 4 heads
//
// Side by side in one run:
//   tapegrad/nn       nn::MultiheadAttention(batch_first) with is_causal: what a user writes
//   tapegrad/ops      the same block from ops: one linear for q, k and v together (as PyTorch's
//                     packed in-projection), scaled_dot_product_attention (is_causal), linear
//   eigen_by_hand     explicit forward and backward with Eigen, no autodiff (the same GEMMs, a
//                     causal softmax that skips the masked half)
//   libtorch/mha      (bench_attention_torch) torch::nn::MultiheadAttention with a bool causal mask
//   libtorch/ops      (bench_attention_torch) the same block from torch ops
// Before any timing, the hand-written backward is checked against tapegrad's gradients (both
// tapegrad variants) on every size: the program aborts if any gradient differs by more than 1e-3
// relative (max |a - b| / max |b|).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "bench_main.hpp"
#include <fmt/format.h>

#include "tapegrad.hpp"

namespace {

using namespace tapegrad;
using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using V = Eigen::RowVectorXf;
using Map = Eigen::Map<const M>;

struct Config {
  std::int64_t T, E, H;
};
const Config kConfigs[] = {{64, 64, 1}, {64, 64, 4}, {256, 128, 1}, {256, 128, 4}};

void set_label(benchmark::State& state, const Config& c) {
  state.SetLabel(fmt::format("T={} E={} H={} batch 1 float32 threads 1 ({})", c.T, c.E, c.H,
                             using_openblas() ? "OpenBLAS" : "Eigen GEMM"));
}

// The weights every implementation starts from: tapegrad's MultiheadAttention initialisation,
// with random (non-zero) biases so their gradients are exercised too.
struct Weights {
  Tensor x;                // [1, T, E]
  Tensor in_w, in_b;       // [3E, E], [3E]
  Tensor out_w, out_b;     // [E, E], [E]
};

Weights make_weights(const Config& c, std::uint64_t seed) {
  Generator gen(seed);
  nn::MultiheadAttention mha(c.E, c.H, gen, {.batch_first = true});
  Weights w{randn({1, c.T, c.E}, gen), mha.in_proj_weight.detach().clone(), (rand({3 * c.E}, gen) - 0.5) * 0.2,
            mha.out_proj->weight.detach().clone(), (rand({c.E}, gen) - 0.5) * 0.2};
  return w;
}

// ---------------------------------------------------------------- tapegrad, nn layer
struct TapegradNn {
  nn::MultiheadAttention mha;
  Tensor x;
  TapegradNn(const Config& c, const Weights& w, Generator gen = Generator(0))
      : mha(c.E, c.H, gen, {.batch_first = true}), x(w.x.clone().requires_grad_()) {
    nn::assign_value(mha.in_proj_weight, w.in_w);
    nn::assign_value(mha.in_proj_bias, w.in_b);
    nn::assign_value(mha.out_proj->weight, w.out_w);
    nn::assign_value(mha.out_proj->bias, w.out_b);
  }
  Tensor step() {
    mha.zero_grad();
    x.zero_grad();
    Tensor y = mha.forward(x, x, x, {.need_weights = false, .is_causal = true}).output;  // [1, T, E]
    Tensor loss = sum(y);
    backward(loss);
    return loss;
  }
};

// ---------------------------------------------------------------- tapegrad, ops
struct TapegradOps {
  Config c;
  Tensor x, in_w, in_b, out_w, out_b;
  TapegradOps(const Config& cfg, const Weights& w)
      : c(cfg),
        x(reshape(w.x, {cfg.T, cfg.E}).clone().requires_grad_()),
        in_w(w.in_w.clone().requires_grad_()),
        in_b(w.in_b.clone().requires_grad_()),
        out_w(w.out_w.clone().requires_grad_()),
        out_b(w.out_b.clone().requires_grad_()) {}
  std::vector<Tensor> params() const { return {x, in_w, in_b, out_w, out_b}; }
  Tensor step() {
    for (Tensor p : params()) p.zero_grad();
    const std::int64_t d = c.E / c.H;
    // One GEMM for q, k and v, then one permute to [3, H, T, d], so each part is a contiguous block
    // (narrow along dim 0 copies one block; narrow along the last dim would gather element by element).
    Tensor qkv = permute(reshape(linear(x, in_w, in_b), {c.T, 3, c.H, d}), {1, 2, 0, 3});  // [3, H, T, d]
    auto head_split = [&](std::int64_t part) { return reshape(narrow(qkv, 0, part, 1), {c.H, c.T, d}); };
    Tensor o = scaled_dot_product_attention(head_split(0), head_split(1), head_split(2), {.is_causal = true});
    Tensor y = linear(reshape(transpose(o, 0, 1), {c.T, c.E}), out_w, out_b);  // [T, E]
    Tensor loss = sum(y);
    backward(loss);
    return loss;
  }
};

// ---------------------------------------------------------------- Eigen, by hand
struct EigenByHand {
  Eigen::Index T, E, H, d;
  float scale;
  M X, Win, Wo;             // [T, E], [3E, E], [E, E]
  V bin, bo;                // [3E], [E]
  M QKV, A, Y, S;           // [T, 3E], [T, E], [T, E], [T, T]
  std::vector<M> P;         // per head [T, T], the softmax (0 above the diagonal)
  M dY, dA, dQKV, dP, dS;   // gradients of the intermediates
  M dX, dWin, dWo;          // gradients of the inputs
  V dbin, dbo;

  EigenByHand(const Config& c, const Weights& w)
      : T(c.T), E(c.E), H(c.H), d(c.E / c.H), scale(1.0f / std::sqrt(static_cast<float>(c.E / c.H))) {
    X = Map(w.x.data<float>(), T, E);
    Win = Map(w.in_w.data<float>(), 3 * E, E);
    bin = Eigen::Map<const V>(w.in_b.data<float>(), 3 * E);
    Wo = Map(w.out_w.data<float>(), E, E);
    bo = Eigen::Map<const V>(w.out_b.data<float>(), E);
    QKV.resize(T, 3 * E), A.resize(T, E), Y.resize(T, E), S.resize(T, T);
    P.assign(static_cast<std::size_t>(H), M(T, T));
    dY = M::Ones(T, E);  // d sum(y) / dy
    dA.resize(T, E), dQKV.resize(T, 3 * E), dP.resize(T, T), dS.resize(T, T);
    dX.resize(T, E), dWin.resize(3 * E, E), dWo.resize(E, E);
  }

  float step() {
    // forward: QKV = X Winᵀ + bin; q, k, v are column blocks [0, E), [E, 2E), [2E, 3E)
    QKV.noalias() = X * Win.transpose();
    QKV.rowwise() += bin;
    for (Eigen::Index h = 0; h < H; ++h) {
      auto q = QKV.middleCols(h * d, d), k = QKV.middleCols(E + h * d, d), v = QKV.middleCols(2 * E + h * d, d);
      S.noalias() = q * k.transpose();
      M& p = P[static_cast<std::size_t>(h)];
      for (Eigen::Index i = 0; i < T; ++i) {  // causal softmax over keys 0..i of scale * S
        auto s = S.row(i).head(i + 1).array();
        const float m = s.maxCoeff();
        auto pr = p.row(i);
        pr.head(i + 1) = ((s - m) * scale).exp().matrix();
        pr.head(i + 1) /= pr.head(i + 1).sum();
        pr.tail(T - i - 1).setZero();
      }
      A.middleCols(h * d, d).noalias() = p * v;
    }
    Y.noalias() = A * Wo.transpose();
    Y.rowwise() += bo;
    const float loss = Y.sum();

    // backward
    dWo.noalias() = dY.transpose() * A;
    dbo = dY.colwise().sum();
    dA.noalias() = dY * Wo;
    for (Eigen::Index h = 0; h < H; ++h) {
      auto q = QKV.middleCols(h * d, d), k = QKV.middleCols(E + h * d, d), v = QKV.middleCols(2 * E + h * d, d);
      auto da = dA.middleCols(h * d, d);
      const M& p = P[static_cast<std::size_t>(h)];
      dP.noalias() = da * v.transpose();                               // dP = dO vᵀ
      dQKV.middleCols(2 * E + h * d, d).noalias() = p.transpose() * da;  // dv = Pᵀ dO
      for (Eigen::Index i = 0; i < T; ++i) {  // dS = scale P ⊙ (dP − ⟨dP, P⟩), 0 where masked
        auto pr = p.row(i).head(i + 1).array();
        auto gr = dP.row(i).head(i + 1).array();
        const float dot = (pr * gr).sum();
        dS.row(i).head(i + 1) = (scale * pr * (gr - dot)).matrix();
        dS.row(i).tail(T - i - 1).setZero();
      }
      dQKV.middleCols(h * d, d).noalias() = dS * k;                // dq = dS k
      dQKV.middleCols(E + h * d, d).noalias() = dS.transpose() * q;  // dk = dSᵀ q
    }
    dWin.noalias() = dQKV.transpose() * X;
    dbin = dQKV.colwise().sum();
    dX.noalias() = dQKV * Win;
    return loss;
  }
};

// ---------------------------------------------------------------- the gradient check
double rel_diff(const float* a, const float* b, std::int64_t n) {
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    num = std::max(num, std::abs(static_cast<double>(a[i]) - b[i]));
    den = std::max(den, std::abs(static_cast<double>(b[i])));
  }
  return num / std::max(den, 1e-30);
}

// Aborts unless the hand-written gradients agree with tapegrad's on every size.
void check_eigen_against_tapegrad() {
  constexpr double kTol = 1e-3;
  bool ok = true;
  for (const Config& c : kConfigs) {
    const Weights w = make_weights(c, 11);
    EigenByHand e(c, w);
    TapegradNn tn(c, w);
    TapegradOps to(c, w);
    const float le = e.step();
    const double ln = tn.step().item(), lo = to.step().item();
    auto check = [&](const char* variant, const char* name, const Tensor& t, const float* ref) {
      if (!t.defined()) {
        fmt::print(stderr, "gradient check: {} {} has no gradient\n", variant, name);
        ok = false;
        return;
      }
      const double r = rel_diff(ref, t.data<float>(), t.numel());
      if (!(r <= kTol)) {
        fmt::print(stderr, "gradient check FAILED (T={} E={} H={}): {} {}: relative difference {:.2e} > {:.0e}\n", c.T,
                   c.E, c.H, variant, name, r, kTol);
        ok = false;
      }
    };
    for (const auto& [variant, loss] : {std::pair{"tapegrad/nn", ln}, std::pair{"tapegrad/ops", lo}})
      if (!(std::abs(loss - le) <= kTol * std::max(1.0, std::abs(loss)))) {
        fmt::print(stderr, "gradient check FAILED (T={} E={} H={}): {} loss {} vs by hand {}\n", c.T, c.E, c.H,
                   variant, loss, le);
        ok = false;
      }
    check("tapegrad/nn", "dx", tn.x.grad(), e.dX.data());
    check("tapegrad/nn", "d in_proj_weight", tn.mha.in_proj_weight.grad(), e.dWin.data());
    check("tapegrad/nn", "d in_proj_bias", tn.mha.in_proj_bias.grad(), e.dbin.data());
    check("tapegrad/nn", "d out_proj.weight", tn.mha.out_proj->weight.grad(), e.dWo.data());
    check("tapegrad/nn", "d out_proj.bias", tn.mha.out_proj->bias.grad(), e.dbo.data());
    check("tapegrad/ops", "dx", to.x.grad(), e.dX.data());
    check("tapegrad/ops", "d in_w", to.in_w.grad(), e.dWin.data());
    check("tapegrad/ops", "d in_b", to.in_b.grad(), e.dbin.data());
    check("tapegrad/ops", "d out_w", to.out_w.grad(), e.dWo.data());
    check("tapegrad/ops", "d out_b", to.out_b.grad(), e.dbo.data());
  }
  if (!ok) {
    fmt::print(stderr, "bench_attention: the hand-written backward disagrees with tapegrad; not benchmarking\n");
    std::exit(1);
  }
  benchmark::AddCustomContext("gradient_check", "hand-written Eigen backward == tapegrad (1e-3 relative), every size");
}

// ---------------------------------------------------------------- benchmarks
void attention_tapegrad_nn(benchmark::State& state) {
  const Config& c = kConfigs[state.range(0)];
  set_num_threads(1);
  TapegradNn t(c, make_weights(c, 1));
  for (int i = 0; i < 3; ++i) t.step();  // warm the pools
  for (auto _ : state) benchmark::DoNotOptimize(t.step().data<float>());
  set_label(state, c);
}

void attention_tapegrad_ops(benchmark::State& state) {
  const Config& c = kConfigs[state.range(0)];
  set_num_threads(1);
  TapegradOps t(c, make_weights(c, 1));
  for (int i = 0; i < 3; ++i) t.step();
  for (auto _ : state) benchmark::DoNotOptimize(t.step().data<float>());
  set_label(state, c);
}

void attention_eigen(benchmark::State& state) {
  const Config& c = kConfigs[state.range(0)];
  set_num_threads(1);
  EigenByHand e(c, make_weights(c, 1));
  for (auto _ : state) {
    benchmark::DoNotOptimize(e.step());
    benchmark::DoNotOptimize(e.dX.data());
  }
  set_label(state, c);
}

#if TAPEGRAD_HAVE_TORCH
torch::Tensor to_torch(const Tensor& t) {
  std::vector<std::int64_t> shape(t.shape().begin(), t.shape().end());
  return torch::from_blob(const_cast<float*>(t.data<float>()), shape, torch::kFloat32).clone();
}

// torch::nn::MultiheadAttention takes [T, B, E] (no batch_first in the C++ frontend of 1.13).
void attention_torch_mha(benchmark::State& state) {
  const Config& c = kConfigs[state.range(0)];
  torch::set_num_threads(1);
  const Weights w = make_weights(c, 1);
  torch::nn::MultiheadAttention mha(torch::nn::MultiheadAttentionOptions(c.E, c.H));
  {
    torch::NoGradGuard no_grad;
    mha->in_proj_weight.copy_(to_torch(w.in_w));
    mha->in_proj_bias.copy_(to_torch(w.in_b));
    mha->out_proj->weight.copy_(to_torch(w.out_w));
    mha->out_proj->bias.copy_(to_torch(w.out_b));
  }
  auto x = to_torch(w.x).transpose(0, 1).contiguous().requires_grad_(true);  // [T, 1, E]
  auto mask = torch::ones({c.T, c.T}, torch::kBool).triu(1);                  // true = may not attend
  for (auto _ : state) {
    mha->zero_grad(/*set_to_none=*/true);
    x.mutable_grad() = torch::Tensor();
    auto y = std::get<0>(mha->forward(x, x, x, {}, /*need_weights=*/false, mask));
    auto loss = y.sum();
    loss.backward();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  set_label(state, c);
}

void attention_torch_ops(benchmark::State& state) {
  const Config& c = kConfigs[state.range(0)];
  torch::set_num_threads(1);
  const Weights w = make_weights(c, 1);
  auto x = to_torch(w.x).reshape({c.T, c.E}).requires_grad_(true);
  auto in_w = to_torch(w.in_w).requires_grad_(true), in_b = to_torch(w.in_b).requires_grad_(true);
  auto out_w = to_torch(w.out_w).requires_grad_(true), out_b = to_torch(w.out_b).requires_grad_(true);
  auto mask = torch::ones({c.T, c.T}, torch::kBool).triu(1);
  const std::int64_t d = c.E / c.H;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (auto _ : state) {
    for (auto* t : {&x, &in_w, &in_b, &out_w, &out_b}) t->mutable_grad() = torch::Tensor();
    auto qkv = torch::linear(x, in_w, in_b).view({c.T, 3, c.H, d}).permute({1, 2, 0, 3});  // [3, H, T, d]
    auto q = qkv[0], k = qkv[1], v = qkv[2];
    auto s = torch::matmul(q, k.transpose(-2, -1)).mul(scale).masked_fill(mask, -INFINITY);
    auto o = torch::matmul(torch::softmax(s, -1), v);  // [H, T, d]
    auto y = torch::linear(o.transpose(0, 1).reshape({c.T, c.E}), out_w, out_b);
    auto loss = y.sum();
    loss.backward();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  set_label(state, c);
}
#endif

void args(benchmark::internal::Benchmark* b) {
  for (int c = 0; c < 4; ++c) b->Arg(c);
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(attention_tapegrad_nn)->Name("attention/tapegrad_nn")->Apply(args);
BENCHMARK(attention_tapegrad_ops)->Name("attention/tapegrad_ops")->Apply(args);
BENCHMARK(attention_eigen)->Name("attention/eigen_by_hand")->Apply(args);
#if TAPEGRAD_HAVE_TORCH
BENCHMARK(attention_torch_mha)->Name("attention/libtorch_mha")->Apply(args);
BENCHMARK(attention_torch_ops)->Name("attention/libtorch_ops")->Apply(args);
#endif

}  // namespace

int main(int argc, char** argv) {
  check_eigen_against_tapegrad();
  return tapegrad::bench::run_main(argc, argv, "bench_attention");
}
