// SPDX-License-Identifier: MIT
// Core engine costs, side by side with hand-written Eigen (no autodiff) in the same run:
//   chain/*   1,000 tiny elementwise ops (y = y * c, y = y + c on one float), forward + backward;
//             the counter s_per_op is the cost of one op including its share of backward
//             (printed with an SI prefix: 120n = 120 ns)
//   chain_length/tapegrad/N   the same chain with N = 1e3, 1e4, 1e5 ops: s_per_op should stay flat
//   mlp/*     float32 MLP step 64 -> 128 (ReLU) -> 10, batch 32, loss = mean(out^2),
//             forward + backward
//   memory/*  bytes allocated per training step and bytes left on the tape after backward; bytes
//             allocated and pages faulted in per log_softmax step over a 4 MB row, after a phase
//             that left blocks of many other sizes behind
// Run: cmake --build build --target run_benchmarks   (or ./build/bench_core directly)
// Threads: every benchmark runs on one thread; the thread settings are printed in the context.
// bench_core is a single-threaded process; bench_core_torch (built when libtorch is installed)
// adds libtorch, whose thread pools make the process multi-threaded, so shared_ptr and malloc use
// atomic operations there: its tapegrad figures are the ones a threaded program sees.
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include <Eigen/Dense>

#include "tapegrad.hpp"
#include "alloc_counter.hpp"
#include "bench_main.hpp"

#if TAPEGRAD_HAVE_TORCH
#include <torch/torch.h>
#endif

using namespace tapegrad;

using tapegrad::bench::g_alloc_bytes;

namespace {

constexpr int kChain = 1000;  // ops per chain (kChain / 2 muls and kChain / 2 adds)

void chain_tapegrad(benchmark::State& state) {
  Tensor x = tensor({0.5f}).requires_grad_();
  Tensor c = tensor({1.0001f});
  for (auto _ : state) {
    Tensor y = x;
    for (int i = 0; i < kChain / 2; ++i) {
      y = y * c;
      y = y + c;
    }
    backward(y);
    benchmark::DoNotOptimize(x.grad().data<float>());
    x.zero_grad();
  }
  state.counters["s_per_op"] = benchmark::Counter(kChain, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(chain_tapegrad)->Name("chain/tapegrad");

// The same chain by hand: Eigen arrays of one element, intermediates kept for backward.
void chain_eigen(benchmark::State& state) {
  using A = Eigen::ArrayXf;
  A x = A::Constant(1, 0.5f), c = A::Constant(1, 1.0001f);
  for (auto _ : state) {
    std::vector<A> ys;
    ys.reserve(kChain);
    A y = x;
    for (int i = 0; i < kChain / 2; ++i) {
      y = y * c;
      ys.push_back(y);
      y = y + c;
      ys.push_back(y);
    }
    A g = A::Ones(1);
    for (int i = kChain / 2 - 1; i >= 0; --i) g = g * c;  // d(y+c)/dy = 1, d(y*c)/dy = c
    benchmark::DoNotOptimize(g.data());
    benchmark::DoNotOptimize(ys.data());
  }
  state.counters["s_per_op"] = benchmark::Counter(kChain, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(chain_eigen)->Name("chain/eigen_by_hand");

// The chain at N = 1e3, 1e4 and 1e5 ops: the cost per op should not depend on N. A long chain
// keeps N nodes, N small values and their handles alive at once, so it measures whether the
// allocator's caches keep up with the working set (issue 13: 124 ns/op at 1e3 grew to 476 at 1e5).
void chain_length_tapegrad(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  Tensor x = tensor({0.5f}).requires_grad_();
  Tensor c = tensor({1.0001f});
  for (auto _ : state) {
    Tensor y = x;
    for (int i = 0; i < n / 2; ++i) {
      y = y * c;
      y = y + c;
    }
    backward(y);
    benchmark::DoNotOptimize(x.grad().data<float>());
    x.zero_grad();
  }
  state.counters["s_per_op"] = benchmark::Counter(n, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(chain_length_tapegrad)->Name("chain_length/tapegrad")->Arg(1000)->Arg(10000)->Arg(100000);

#if TAPEGRAD_HAVE_TORCH
void chain_torch(benchmark::State& state) {
  torch::set_num_threads(1);
  auto x = torch::full({1}, 0.5f, torch::requires_grad());
  auto c = torch::full({1}, 1.0001f);
  for (auto _ : state) {
    auto y = x;
    for (int i = 0; i < kChain / 2; ++i) {
      y = y * c;
      y = y + c;
    }
    y.backward();
    x.mutable_grad().reset();
  }
  state.counters["s_per_op"] = benchmark::Counter(kChain, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}
BENCHMARK(chain_torch)->Name("chain/libtorch");
#endif

// ---- MLP step 64 -> 128 (ReLU) -> 10, batch 32, float32 ----
constexpr int kB = 32, kIn = 64, kHidden = 128, kOut = 10;

void mlp_tapegrad(benchmark::State& state) {
  Generator gen(1);
  Tensor x = randn({kB, kIn}, gen);
  Tensor w1 = (randn({kHidden, kIn}, gen) * 0.1).requires_grad_();
  Tensor b1 = zeros({kHidden}).requires_grad_();
  Tensor w2 = (randn({kOut, kHidden}, gen) * 0.1).requires_grad_();
  Tensor b2 = zeros({kOut}).requires_grad_();
  for (auto _ : state) {
    Tensor h = relu(linear(x, w1, b1));
    Tensor out = linear(h, w2, b2);
    Tensor loss = mean(out * out);
    backward(loss);
    benchmark::DoNotOptimize(w1.grad().data<float>());
    for (Tensor* p : {&w1, &b1, &w2, &b2}) p->zero_grad();
  }
}
BENCHMARK(mlp_tapegrad)->Name("mlp/tapegrad")->Unit(benchmark::kMicrosecond);

void mlp_eigen(benchmark::State& state) {
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using V = Eigen::RowVectorXf;
  Generator gen(1);
  auto fill = [&](M& m) {
    for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(gen.normal());
  };
  M x(kB, kIn), w1(kHidden, kIn), w2(kOut, kHidden);
  fill(x);
  fill(w1);
  fill(w2);
  w1 *= 0.1f;
  w2 *= 0.1f;
  V b1 = V::Zero(kHidden), b2 = V::Zero(kOut);
  M h(kB, kHidden), out(kB, kOut), d_out(kB, kOut), d_h(kB, kHidden), dw1(kHidden, kIn), dw2(kOut, kHidden);
  V db1(kHidden), db2(kOut);
  for (auto _ : state) {
    h.noalias() = x * w1.transpose();
    h.rowwise() += b1;
    h = h.cwiseMax(0.0f);
    out.noalias() = h * w2.transpose();
    out.rowwise() += b2;
    const float loss = out.squaredNorm() / static_cast<float>(out.size());
    benchmark::DoNotOptimize(loss);
    d_out = out * (2.0f / static_cast<float>(out.size()));
    dw2.noalias() = d_out.transpose() * h;
    db2 = d_out.colwise().sum();
    d_h.noalias() = d_out * w2;
    d_h = (h.array() > 0.0f).select(d_h, 0.0f);
    dw1.noalias() = d_h.transpose() * x;
    db1 = d_h.colwise().sum();
    benchmark::DoNotOptimize(dw1.data());
    benchmark::DoNotOptimize(db1.data());
  }
}
BENCHMARK(mlp_eigen)->Name("mlp/eigen_by_hand")->Unit(benchmark::kMicrosecond);

#if TAPEGRAD_HAVE_TORCH
void mlp_torch(benchmark::State& state) {
  torch::set_num_threads(1);
  torch::manual_seed(1);
  auto x = torch::randn({kB, kIn});
  auto w1 = (torch::randn({kHidden, kIn}) * 0.1).requires_grad_();
  auto b1 = torch::zeros({kHidden}, torch::requires_grad());
  auto w2 = (torch::randn({kOut, kHidden}) * 0.1).requires_grad_();
  auto b2 = torch::zeros({kOut}, torch::requires_grad());
  for (auto _ : state) {
    auto h = torch::relu(torch::nn::functional::linear(x, w1, b1));
    auto out = torch::nn::functional::linear(h, w2, b2);
    auto loss = (out * out).mean();
    loss.backward();
    for (auto* p : {&w1, &b1, &w2, &b2}) p->mutable_grad().reset();
  }
}
BENCHMARK(mlp_torch)->Name("mlp/libtorch")->Unit(benchmark::kMicrosecond);
#endif

// ---- memory: what one training step allocates, and what the tape keeps afterwards ----
void memory_training_loop(benchmark::State& state) {
  Generator gen(1);
  Tensor x = randn({kB, kIn}, gen);
  Tensor w1 = (randn({kHidden, kIn}, gen) * 0.1).requires_grad_();
  Tensor w2 = (randn({kOut, kHidden}, gen) * 0.1).requires_grad_();
  std::size_t peak_saved = 0;
  for (auto _ : state) {
    const std::size_t before = g_alloc_bytes.load();
    for (int step = 0; step < 100; ++step) {
      Tensor out = linear(relu(linear(x, w1)), w2);
      Tensor loss = mean(out * out);
      peak_saved = std::max(peak_saved, tape_stats().saved_bytes);
      backward(loss);
      w1.zero_grad();
      w2.zero_grad();
    }
    state.counters["alloc_bytes_per_step"] = static_cast<double>(g_alloc_bytes.load() - before) / 100.0;
  }
  state.counters["tape_peak_saved_bytes"] = static_cast<double>(peak_saved);
  state.counters["tape_bytes_after"] = static_cast<double>(tape_stats().saved_bytes);
  state.counters["tape_nodes_after"] = static_cast<double>(tape_size());
}
BENCHMARK(memory_training_loop)->Name("memory/100_mlp_steps")->Unit(benchmark::kMillisecond);

// A step whose values are large blocks (log_softmax over one row of K = 1e6 floats: the output,
// the saved exp and the gradient, 4 MB each), after an earlier phase that freed blocks of many
// other sizes, more than the pool's large-block cache holds (a data phase with varying shapes).
// Whether the step's blocks are reused or fetched from operator new (malloc, which maps blocks
// above its mmap threshold fresh from the kernel and unmaps them on free) shows in
// alloc_bytes_per_step and page_faults_per_step (minor faults: fresh pages touched).
long minor_faults() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

void memory_large_after_other_sizes(benchmark::State& state) {
  {
    std::vector<Tensor> phase;
    // 160 distinct sizes of 1 MiB and a little more: over the pool's 128 MiB large-block cache
    for (std::int64_t i = 0; i < 160; ++i) phase.push_back(Tensor::empty({262144 + 16 * (i + 1)}, kFloat32));
  }
  Generator gen(7);
  Tensor x = (randn({1, 1000000}, gen) * 3.0).requires_grad_();
  const Tensor g = randn({1, 1000000}, gen);
  auto step = [&] {
    Tensor y = log_softmax(x, -1);
    backward(y, g);
    benchmark::DoNotOptimize(x.grad().data<float>());
    x.zero_grad();
  };
  step();  // the first step's blocks are new in any case; the counters are for warm steps
  std::size_t bytes = 0;
  long faults = 0;
  for (auto _ : state) {
    const std::size_t b0 = g_alloc_bytes.load();
    const long f0 = minor_faults();
    step();
    bytes += g_alloc_bytes.load() - b0;
    faults += minor_faults() - f0;
  }
  const auto steps = static_cast<double>(state.iterations());
  state.counters["alloc_bytes_per_step"] = static_cast<double>(bytes) / steps;
  state.counters["page_faults_per_step"] = static_cast<double>(faults) / steps;
}
BENCHMARK(memory_large_after_other_sizes)
    ->Name("memory/log_softmax_1x1000000_after_other_sizes")
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) { return tapegrad::bench::run_main(argc, argv, "bench_core"); }
