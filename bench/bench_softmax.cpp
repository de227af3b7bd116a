// SPDX-License-Identifier: MIT
// softmax, log_softmax and cross_entropy, forward + backward, float32, on [B, K] = [128, 10],
// [64, 1000], [16, 50000] and [1, 1000000] (one row of 4 MB: every step's values and gradients are
// blocks too big for malloc's heap, which it maps and unmaps unless something caches them), each
// side by side in the same run with a hand-written Eigen version
// (explicit forward and backward, no autodiff, buffers allocated once) and, in bench_softmax_torch,
// libtorch:
//   softmax/BxK/*        y = softmax(x, 1); backward(y, g) with a fixed upstream gradient g
//   log_softmax/BxK/*    y = log_softmax(x, 1); backward(y, g)
//   cross_entropy/BxK/*  loss = cross_entropy(x, t) (mean over the batch, int64 class targets); backward(loss)
// The counter `bandwidth` is an effective memory bandwidth, bytes / time (G/s = 1e9 bytes/s), for
// the bytes an ideal implementation must move once per step (float32, 4 bytes per element):
//   softmax, log_softmax  5 x B x K x 4: forward reads x and writes y; backward reads y and g, writes dx
//   cross_entropy         3 x B x K x 4: forward reads x; backward reads x again (or saved
//                         probabilities) and writes dx (targets and per-row scalars are negligible)
// It is the same byte count for every implementation, so ratios of bandwidth are ratios of speed.
// The two smaller shapes fit in L2 (2 MiB here), so these are cache bandwidths, not DRAM ones;
// [16, 50000] and [1, 1000000] (3.2 and 4 MB per tensor) do not.
// Run: cmake --build build --target run_benchmarks   (or ./build/bench_softmax directly)
// SIMD: tapegrad's float32 row kernels pick the widest ISA of this CPU at run time (printed in the
// context as tapegrad_simd; TAPEGRAD_SIMD=generic|avx2|avx512 forces one); the Eigen versions are
// compiled for the build's target (SSE2 by default, -march=native with TAPEGRAD_NATIVE=ON).
// Threads: every benchmark runs on one thread (Eigen and libtorch set to 1, printed in the context).
// bench_softmax is a single-threaded process; bench_softmax_torch, built when libtorch is found,
// adds libtorch, whose thread pools make the process multi-threaded (see bench_core.cpp).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include "tapegrad.hpp"
#include "bench_main.hpp"
#include "ops/kernels/simd.hpp"

#if TAPEGRAD_HAVE_TORCH
#include <torch/torch.h>
#endif

using namespace tapegrad;

namespace {

struct Problem {
  std::int64_t b, k;
};
const std::vector<Problem> kProblems = {{128, 10}, {64, 1000}, {16, 50000}, {1, 1000000}};

// Same inputs for every implementation: logits x ~ 3 N(0, 1), upstream gradient g ~ N(0, 1),
// targets t uniform in [0, K).
struct Data {
  std::vector<float> x, g;
  std::vector<std::int64_t> t;
};
Data make_data(const Problem& p) {
  Generator gen(7);
  Data d;
  const Tensor x = randn({p.b, p.k}, gen) * 3.0;
  const Tensor g = randn({p.b, p.k}, gen);
  const Tensor t = randint(0, p.k, {p.b}, gen);
  d.x.assign(x.data<float>(), x.data<float>() + x.numel());
  d.g.assign(g.data<float>(), g.data<float>() + g.numel());
  d.t.assign(t.data<std::int64_t>(), t.data<std::int64_t>() + t.numel());
  return d;
}

void set_bandwidth(benchmark::State& state, const Problem& p, int passes) {
  const double bytes = static_cast<double>(passes) * static_cast<double>(p.b * p.k) * sizeof(float);
  state.counters["bandwidth"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::OneK::kIs1000);
}

enum class Op { Softmax, LogSoftmax, CrossEntropy };
constexpr int bytes_passes(Op op) { return op == Op::CrossEntropy ? 3 : 5; }

// ---- tapegrad ----
void run_tapegrad(benchmark::State& state, Op op, Problem p) {
  const Data d = make_data(p);
  Tensor x = from_vector(d.x, Shape{p.b, p.k}).requires_grad_();
  const Tensor g = from_vector(d.g, Shape{p.b, p.k});
  const Tensor t = from_vector(d.t, Shape{p.b});
  for (auto _ : state) {
    if (op == Op::CrossEntropy) {
      Tensor loss = cross_entropy(x, t);
      backward(loss);
    } else {
      Tensor y = op == Op::Softmax ? softmax(x, 1) : log_softmax(x, 1);
      backward(y, g);
    }
    benchmark::DoNotOptimize(x.grad().data<float>());
    x.zero_grad();
  }
  set_bandwidth(state, p, bytes_passes(op));
}

// ---- Eigen by hand: one row at a time, contiguous (vectorised) maps, buffers allocated once ----
using Row = Eigen::Map<Eigen::ArrayXf>;
using ConstRow = Eigen::Map<const Eigen::ArrayXf>;

void run_eigen(benchmark::State& state, Op op, Problem p) {
  const Data d = make_data(p);
  const Eigen::Index k = p.k;
  // prob: exp(x - max) saved by the forward of log_softmax and cross_entropy, so that each
  // element costs one exp (exp, not memory, is what limits these kernels at the cached sizes)
  std::vector<float> y(d.x.size()), dx(d.x.size()), prob(d.x.size()), row_scale(static_cast<std::size_t>(p.b));
  const float inv_b = 1.0f / static_cast<float>(p.b);
  for (auto _ : state) {
    switch (op) {
      case Op::Softmax:
        // forward  y = exp(x - max) / sum;   backward  dx = y * (g - <g, y>)
        for (std::int64_t b = 0; b < p.b; ++b) {
          const ConstRow xr(d.x.data() + b * k, k);
          Row yr(y.data() + b * k, k);
          const float m = xr.maxCoeff();
          yr = (xr - m).exp();
          yr *= 1.0f / yr.sum();
        }
        benchmark::ClobberMemory();
        for (std::int64_t b = 0; b < p.b; ++b) {
          const ConstRow yr(y.data() + b * k, k), gr(d.g.data() + b * k, k);
          Row dr(dx.data() + b * k, k);
          const float dot = yr.matrix().dot(gr.matrix());
          dr = yr * (gr - dot);
        }
        break;
      case Op::LogSoftmax:
        // forward  e = exp(x - max), y = (x - max) - log sum(e);   backward  dx = g - e / sum(e) * sum(g)
        for (std::int64_t b = 0; b < p.b; ++b) {
          const ConstRow xr(d.x.data() + b * k, k);
          Row yr(y.data() + b * k, k), er(prob.data() + b * k, k);
          const float m = xr.maxCoeff();
          er = (xr - m).exp();
          const float s = er.sum();
          yr = (xr - m) - std::log(s);
          row_scale[static_cast<std::size_t>(b)] = 1.0f / s;
        }
        benchmark::ClobberMemory();
        for (std::int64_t b = 0; b < p.b; ++b) {
          const ConstRow er(prob.data() + b * k, k), gr(d.g.data() + b * k, k);
          Row dr(dx.data() + b * k, k);
          dr = gr - er * (row_scale[static_cast<std::size_t>(b)] * gr.sum());
        }
        break;
      case Op::CrossEntropy: {
        // forward  e = exp(x - max), loss = mean_b (max + log sum(e) - x[t]);
        // backward dx = (e / sum(e) - onehot(t)) / B   (llm.c's fused (p - y) form)
        double loss = 0.0;
        for (std::int64_t b = 0; b < p.b; ++b) {
          const ConstRow xr(d.x.data() + b * k, k);
          Row er(prob.data() + b * k, k);
          const float m = xr.maxCoeff();
          er = (xr - m).exp();
          const float s = er.sum();
          row_scale[static_cast<std::size_t>(b)] = inv_b / s;
          loss += m + std::log(s) - xr(d.t[static_cast<std::size_t>(b)]);
        }
        loss /= static_cast<double>(p.b);
        benchmark::DoNotOptimize(loss);
        benchmark::ClobberMemory();
        for (std::int64_t b = 0; b < p.b; ++b) {
          const ConstRow er(prob.data() + b * k, k);
          Row dr(dx.data() + b * k, k);
          dr = er * row_scale[static_cast<std::size_t>(b)];
          dr(d.t[static_cast<std::size_t>(b)]) -= inv_b;
        }
        break;
      }
    }
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  set_bandwidth(state, p, bytes_passes(op));
}

#if TAPEGRAD_HAVE_TORCH
void run_torch(benchmark::State& state, Op op, Problem p) {
  torch::set_num_threads(1);
  const Data d = make_data(p);
  auto x = torch::from_blob(const_cast<float*>(d.x.data()), {p.b, p.k}, torch::kFloat32).clone().requires_grad_();
  auto g = torch::from_blob(const_cast<float*>(d.g.data()), {p.b, p.k}, torch::kFloat32).clone();
  auto t = torch::from_blob(const_cast<std::int64_t*>(d.t.data()), {p.b}, torch::kInt64).clone();
  for (auto _ : state) {
    if (op == Op::CrossEntropy) {
      auto loss = torch::nn::functional::cross_entropy(x, t);
      loss.backward();
    } else {
      auto y = op == Op::Softmax ? torch::softmax(x, 1) : torch::log_softmax(x, 1);
      y.backward(g);
    }
    benchmark::DoNotOptimize(x.grad().data_ptr<float>());
    x.mutable_grad().reset();
  }
  set_bandwidth(state, p, bytes_passes(op));
}
#endif

void register_all() {
  const std::vector<std::pair<const char*, Op>> ops = {
      {"softmax", Op::Softmax}, {"log_softmax", Op::LogSoftmax}, {"cross_entropy", Op::CrossEntropy}};
  for (const auto& [name, op] : ops) {
    for (const Problem& p : kProblems) {
      const std::string base = fmt::format("{}/{}x{}/", name, p.b, p.k);
      const auto unit = p.b * p.k >= 1000000 ? benchmark::kMillisecond : benchmark::kMicrosecond;
      benchmark::RegisterBenchmark((base + "tapegrad").c_str(), run_tapegrad, op, p)->Unit(unit);
      benchmark::RegisterBenchmark((base + "eigen_by_hand").c_str(), run_eigen, op, p)->Unit(unit);
#if TAPEGRAD_HAVE_TORCH
      benchmark::RegisterBenchmark((base + "libtorch").c_str(), run_torch, op, p)->Unit(unit);
#endif
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("bandwidth", "bytes an ideal implementation moves per step / time; softmax and "
                                           "log_softmax 5 x B x K x 4, cross_entropy 3 x B x K x 4");
  benchmark::AddCustomContext("tapegrad_simd", tapegrad::simd::kernels().name);
  register_all();
  return tapegrad::bench::run_main(argc, argv, "bench_softmax");
}
