// SPDX-License-Identifier: MIT
// Hidden test "[.interop]": writes checkpoints with inputs and tapegrad's outputs for
// torch_interop.py, which loads them into torch.nn modules (CTest: parity.torch_interop).
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;

TEST_CASE("interop: write MLP and attention-block checkpoints for torch", "[.interop]") {
  const char* dir = std::getenv("TAPEGRAD_INTEROP_DIR");
  REQUIRE(dir != nullptr);
  nlohmann::json cases = nlohmann::json::array();
  int k = 0;
  for (DType dt : {kFloat64, kFloat32}) {
    for (const std::vector<std::int64_t>& sizes : {std::vector<std::int64_t>{4, 16, 3}, {8, 12, 12, 5}}) {
      Generator gen(static_cast<std::uint64_t>(100 + k));
      MLP net(sizes, "relu", gen, dt);
      Tensor x = randn({7, sizes[0]}, gen, dt);
      Tensor y = net(x);
      const std::string name = fmt::format("mlp{}.json", k++);
      save(net, (std::filesystem::path(dir) / name).string());
      cases.push_back({{"checkpoint", name}, {"sizes", sizes}, {"dtype", std::string(dtype_name(dt))},
                       {"input", tensor_to_json(x)}, {"output", tensor_to_json(y)}});
    }
  }
  // The attention block: TransformerBlock is torch.nn.TransformerEncoderLayer(norm_first=True,
  // batch_first=True, activation="gelu") under the same parameter names.
  for (DType dt : {kFloat64, kFloat32}) {
    for (bool causal : {false, true}) {
      Generator gen(static_cast<std::uint64_t>(100 + k));
      const std::int64_t E = 8, H = 2, FF = 16, B = 3, T = 5;
      TransformerBlock block(E, H, FF, gen, {.causal = causal, .dtype = dt});
      block.eval();
      Tensor x = randn({B, T, E}, gen, dt);
      Tensor y = block(x);
      const std::string name = fmt::format("block{}.json", k++);
      save(block, (std::filesystem::path(dir) / name).string());
      cases.push_back({{"checkpoint", name},
                       {"kind", "transformer_block"},
                       {"embed_dim", E},
                       {"num_heads", H},
                       {"ffn_dim", FF},
                       {"causal", causal},
                       {"dtype", std::string(dtype_name(dt))},
                       {"input", tensor_to_json(x)},
                       {"output", tensor_to_json(y)}});
    }
  }
  std::ofstream(std::filesystem::path(dir) / "cases.json") << cases.dump();
  REQUIRE(k == 8);
}
