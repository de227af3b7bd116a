// SPDX-License-Identifier: MIT
// Checkpoint save and load of the 784-1024-1024-10 float32 MLP (1,863,690 parameters, 7.45 MB of
// raw float32): safetensors (nn::save_safetensors / nn::load_safetensors) against the JSON
// checkpoint (nn::save / nn::load). bench/torch_checkpoint.py times torch.save / torch.load (and
// safetensors.torch when installed) on the same architecture.
//
// Counters: file_bytes (the file's size), raw_bytes (4 bytes per parameter) and overhead_bytes
// (file - raw: for safetensors, the 8-byte length and the JSON header), MB_per_s of raw bytes.
// Both savers are atomic (temporary file, fsync, rename), so a save includes an fsync: its time
// depends on the disk. torch.save does not sync; torch_checkpoint.py prints torch.save + fsync too.
// A load reads the file (from the page cache after the first iteration), validates it and copies
// every value into the model's existing parameters.
#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

#include "bench_main.hpp"
#include "nn/safetensors.hpp"
#include "tapegrad.hpp"

namespace {

using namespace tapegrad;

const std::vector<std::int64_t> kSizes = {784, 1024, 1024, 10};

std::string temp_path(const std::string& ext) {
  return (std::filesystem::temp_directory_path() /
          ("tapegrad_bench_checkpoint." + std::to_string(::getpid()) + ext)).string();
}

void set_counters(benchmark::State& state, const nn::Module& net, const std::string& path) {
  const double raw = static_cast<double>(net.num_parameters()) * 4.0;
  const double file = static_cast<double>(std::filesystem::file_size(path));
  state.counters["file_bytes"] = file;
  state.counters["raw_bytes"] = raw;
  state.counters["overhead_bytes"] = file - raw;
  state.counters["MB_per_s"] = benchmark::Counter(raw / 1e6 * static_cast<double>(state.iterations()),
                                                  benchmark::Counter::kIsRate);
  state.SetLabel(fmt::format("{} params", net.num_parameters()));
}

template <bool Safetensors>
void save_bench(benchmark::State& state) {
  Generator gen(1);
  nn::MLP net(kSizes, "relu", gen);
  const std::string path = temp_path(Safetensors ? ".safetensors" : ".json");
  for (auto _ : state) {
    if constexpr (Safetensors) nn::save_safetensors(net, path);
    else nn::save(net, path);
  }
  set_counters(state, net, path);
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

template <bool Safetensors>
void load_bench(benchmark::State& state) {
  Generator gen(1);
  nn::MLP net(kSizes, "relu", gen);
  const std::string path = temp_path(Safetensors ? ".safetensors" : ".json");
  if constexpr (Safetensors) nn::save_safetensors(net, path);
  else nn::save(net, path);
  nn::MLP into(kSizes, "relu", gen);
  for (auto _ : state) {
    if constexpr (Safetensors) nn::load_safetensors(into, path);
    else nn::load(into, path);
    benchmark::DoNotOptimize(into.parameters()[0].data<float>());
  }
  // The load really happened: the last layer's bias is now the saved model's.
  if (into.parameters().back().to_vector() != net.parameters().back().to_vector())
    state.SkipWithError("load did not restore the saved parameters");
  set_counters(state, net, path);
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

}  // namespace

BENCHMARK(save_bench<true>)->Name("checkpoint/save/safetensors")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(load_bench<true>)->Name("checkpoint/load/safetensors")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(save_bench<false>)->Name("checkpoint/save/json")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(load_bench<false>)->Name("checkpoint/load/json")->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) { return tapegrad::bench::run_main(argc, argv, "bench_checkpoint"); }
