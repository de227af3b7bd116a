// SPDX-License-Identifier: MIT
// Training steps of an MLP classifier, float32: forward, cross-entropy, backward, SGD update.
//
//   small   64 -> 128 -> 10,          batch 32
//   medium  784 -> 256 -> 10,         batch 128
//   large   784 -> 1024 -> 1024 -> 10, batch 256
//
// Side by side in one run: tapegrad (nn::MLP + nn::SGD), a hand-written Eigen version (explicit
// forward and backward, no autodiff, the same matrix products) and, in the bench_nn_torch twin,
// libtorch's C++ frontend (torch::nn::Sequential + torch::optim::SGD). Each at 1 and 2 threads
// (tapegrad::set_num_threads: OpenBLAS's threads when built with it; libtorch: torch::set_num_threads
// for its own loops plus OpenBLAS's threads, since Debian's libtorch runs its GEMMs on OpenBLAS).
// A counting operator new reports the heap bytes each steady-state step allocates.
#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "alloc_counter.hpp"
#include "bench_main.hpp"
#include <fmt/ranges.h>

#include "tapegrad.hpp"

using tapegrad::bench::g_alloc_bytes;

namespace {

using namespace tapegrad;

struct Config {
  std::vector<std::int64_t> sizes;
  std::int64_t batch;
};
const Config kConfigs[] = {{{64, 128, 10}, 32}, {{784, 256, 10}, 128}, {{784, 1024, 1024, 10}, 256}};
constexpr double kLr = 0.01;

void set_label(benchmark::State& state, const Config& c, int threads) {
  state.SetLabel(fmt::format("{} b{} threads {} ({})", fmt::join(c.sizes, "-"), c.batch, threads,
                             using_openblas() ? "OpenBLAS" : "Eigen GEMM"));
}

void mlp_step_tapegrad(benchmark::State& state) {
  const Config& c = kConfigs[state.range(0)];
  const int threads = static_cast<int>(state.range(1));
  set_num_threads(threads);
  Generator gen(1);
  nn::MLP net(c.sizes, "relu", gen);
  nn::SGD opt(net.parameters(), {.lr = kLr});
  Tensor x = randn({c.batch, c.sizes.front()}, gen);
  Tensor y = randint(0, c.sizes.back(), {c.batch}, gen);
  auto step = [&] {
    opt.zero_grad();
    Tensor loss = cross_entropy(net(x), y);
    backward(loss);
    opt.step();
    return loss;
  };
  for (int i = 0; i < 3; ++i) step();  // warm the pools
  const std::size_t before = g_alloc_bytes.load();
  std::int64_t steps = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(step().data<float>());
    ++steps;
  }
  state.counters["alloc_bytes_per_step"] = static_cast<double>(g_alloc_bytes.load() - before) / static_cast<double>(steps);
  set_label(state, c, threads);
  set_num_threads(1);
}

void mlp_step_eigen(benchmark::State& state) {
  using M = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using V = Eigen::RowVectorXf;
  const Config& c = kConfigs[state.range(0)];
  const int threads = static_cast<int>(state.range(1));
  set_num_threads(threads);
  Generator gen(1);
  const std::size_t L = c.sizes.size() - 1;
  const Eigen::Index B = c.batch;
  std::vector<M> W(L), dW(L), act(L + 1), grad(L + 1);
  std::vector<V> b(L), db(L);
  for (std::size_t l = 0; l < L; ++l) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(c.sizes[l]));
    W[l] = M::Random(c.sizes[l + 1], c.sizes[l]) * bound;
    b[l] = V::Random(c.sizes[l + 1]) * bound;
    dW[l].resize(W[l].rows(), W[l].cols());
    db[l].resize(b[l].size());
  }
  act[0] = M::Random(B, c.sizes[0]);
  for (std::size_t l = 1; l <= L; ++l) act[l].resize(B, c.sizes[l]), grad[l].resize(B, c.sizes[l]);
  grad[0].resize(B, c.sizes[0]);
  std::vector<int> y(static_cast<std::size_t>(B));
  for (auto& v : y) v = static_cast<int>(gen.below(static_cast<std::uint64_t>(c.sizes.back())));
  for (auto _ : state) {
    // forward: act[l+1] = relu(act[l] W^T + b) (no relu on the logits)
    for (std::size_t l = 0; l < L; ++l) {
      act[l + 1].noalias() = act[l] * W[l].transpose();
      act[l + 1].rowwise() += b[l];
      if (l + 1 < L) act[l + 1] = act[l + 1].cwiseMax(0.0f);
    }
    // softmax cross-entropy, mean over the batch; grad[L] = (p - onehot) / B
    M& logits = act[L];
    float loss = 0;
    for (Eigen::Index i = 0; i < B; ++i) {
      const float m = logits.row(i).maxCoeff();
      auto e = (logits.row(i).array() - m).exp();
      const float s = e.sum();
      grad[L].row(i) = e / (s * static_cast<float>(B));
      const int t = y[static_cast<std::size_t>(i)];
      loss += std::log(s) - (logits(i, t) - m);
      grad[L](i, t) -= 1.0f / static_cast<float>(B);
    }
    benchmark::DoNotOptimize(loss);
    // backward
    for (std::size_t l = L; l-- > 0;) {
      dW[l].noalias() = grad[l + 1].transpose() * act[l];
      db[l] = grad[l + 1].colwise().sum();
      if (l > 0) {
        grad[l].noalias() = grad[l + 1] * W[l];
        grad[l] = (act[l].array() > 0.0f).select(grad[l], 0.0f);
      }
    }
    // SGD
    for (std::size_t l = 0; l < L; ++l) {
      W[l] -= kLr * dW[l];
      b[l] -= kLr * db[l];
    }
    benchmark::DoNotOptimize(W[0].data());
  }
  set_label(state, c, threads);
  set_num_threads(1);
}

#if TAPEGRAD_HAVE_TORCH
void mlp_step_torch(benchmark::State& state) {
  const Config& c = kConfigs[state.range(0)];
  const int threads = static_cast<int>(state.range(1));
  // libtorch's loops use its own (OpenMP) pool; its GEMMs run on OpenBLAS's, which
  // torch::set_num_threads does not reach. Both are set: OpenBLAS at `threads` (what a libtorch
  // program gets by default, OpenBLAS taking every core) and, as a second variant, at 1.
  const int blas_threads = static_cast<int>(state.range(2));
  torch::set_num_threads(threads);
  bench::set_blas_threads(blas_threads);
  torch::manual_seed(1);
  torch::nn::Sequential net;
  for (std::size_t l = 0; l + 1 < c.sizes.size(); ++l) {
    net->push_back(torch::nn::Linear(c.sizes[l], c.sizes[l + 1]));
    if (l + 2 < c.sizes.size()) net->push_back(torch::nn::ReLU());
  }
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(kLr));
  auto x = torch::randn({c.batch, c.sizes.front()});
  auto y = torch::randint(0, c.sizes.back(), {c.batch});
  for (auto _ : state) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  state.SetLabel(fmt::format("{} b{} threads {} (OpenBLAS threads {})", fmt::join(c.sizes, "-"), c.batch, threads,
                             blas_threads));
  torch::set_num_threads(1);
  bench::set_blas_threads(1);
}
#endif

void args(benchmark::internal::Benchmark* b) {
  for (int c = 0; c < 3; ++c)
    for (int t : {1, 2}) b->Args({c, t});
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(mlp_step_tapegrad)->Name("mlp_step/tapegrad")->Apply(args);
BENCHMARK(mlp_step_eigen)->Name("mlp_step/eigen_by_hand")->Apply(args);
#if TAPEGRAD_HAVE_TORCH
BENCHMARK(mlp_step_torch)->Name("mlp_step/libtorch")->Apply([](benchmark::internal::Benchmark* b) {
  for (int c = 0; c < 3; ++c) {
    b->Args({c, 1, 1});
    b->Args({c, 2, 2});
    b->Args({c, 2, 1});
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
});
#endif

}  // namespace

int main(int argc, char** argv) { return tapegrad::bench::run_main(argc, argv, "bench_nn"); }
