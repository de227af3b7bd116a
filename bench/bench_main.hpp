// SPDX-License-Identifier: MIT
#pragma once
// The main() every benchmark program shares: thread context lines, then Google Benchmark.
#include <string>

#include <dlfcn.h>

#include <benchmark/benchmark.h>

#include <Eigen/Core>

#include "autodiff/threads.hpp"

#if TAPEGRAD_HAVE_TORCH
#include <torch/torch.h>
#endif

namespace tapegrad::bench {

// OpenBLAS's thread count, wherever OpenBLAS was loaded from: tapegrad's own GEMM backend, or
// libtorch's (Debian's libtorch runs its GEMMs on OpenBLAS even when tapegrad is built with
// Eigen's GEMM, and torch::set_num_threads does not reach OpenBLAS's pool). Looked up at run time
// so the program needs no link to OpenBLAS; a no-op when none is loaded.
inline void set_blas_threads(int n) {
  using Fn = void (*)(int);
  if (auto* f = reinterpret_cast<Fn>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

// `program` names the binary whose _torch twin carries the libtorch figures.
inline int run_main(int argc, char** argv, const std::string& program) {
  // One thread everywhere unless a benchmark says otherwise. libtorch's own set_num_threads does
  // not reach OpenBLAS (a separate thread pool), so libtorch benchmarks set both.
  tapegrad::set_num_threads(1);
  set_blas_threads(1);
  benchmark::AddCustomContext("eigen_threads", std::to_string(Eigen::nbThreads()));
#if TAPEGRAD_HAVE_TORCH
  (void)program;
  torch::set_num_threads(1);
  benchmark::AddCustomContext("torch_threads", "1");
  benchmark::AddCustomContext("process", "multi-threaded (libtorch linked)");
#else
  benchmark::AddCustomContext("process",
                              "single-threaded; libtorch figures: " + program + "_torch (needs libtorch-dev)");
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace tapegrad::bench
