// SPDX-License-Identifier: MIT
// Checkpoints: exact round trip, optimiser resume bit-identical to an uninterrupted run, atomic
// save (a failed write leaves the old file), and load that validates everything before touching
// the model (each kind of bad checkpoint named, model left bit-for-bit as it was).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  const fs::path dir = fs::temp_directory_path() / fmt::format("tapegrad_ckpt_{}", ::getpid());
  fs::create_directories(dir);
  return dir;
}

// Bit patterns of every state tensor, to compare models exactly.
std::vector<std::vector<unsigned char>> bits(const Module& m) {
  std::vector<std::vector<unsigned char>> out;
  for (const auto& [n, t] : m.state()) {
    const auto* p = static_cast<const unsigned char*>(t.impl().data);
    out.emplace_back(p, p + t.numel() * static_cast<std::int64_t>(dtype_size(t.dtype())));
  }
  return out;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_text(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }

struct Batch {
  Tensor x, y;
};
std::vector<Batch> make_batches(Generator& gen, DType dt) {
  std::vector<Batch> out;
  for (int i = 0; i < 20; ++i) out.push_back({randn({8, 4}, gen, dt), randint(0, 3, {8}, gen)});
  return out;
}

void train(MLP& net, Optimizer& opt, const std::vector<Batch>& batches, int from, int to) {
  for (int s = from; s < to; ++s) {
    opt.zero_grad();
    backward(cross_entropy(net(batches[static_cast<std::size_t>(s)].x), batches[static_cast<std::size_t>(s)].y));
    opt.step();
  }
}

}  // namespace

TEST_CASE("checkpoint: values come back bit-identical, float32 and float64, non-finite included", "[nn][checkpoint]") {
  const fs::path dir = temp_dir();
  for (DType dt : {kFloat32, kFloat64}) {
    Generator gen(1);
    MLP a({3, 5, 2}, "relu", gen, dt);
    Tensor w = a.parameters()[0];
    // awkward values: subnormal, -0, extremes, non-finite
    const double denorm = dt == kFloat32 ? 1e-40 : 5e-320;
    w.set({0, 0}, denorm);
    w.set({0, 1}, -0.0);
    w.set({0, 2}, dt == kFloat32 ? 3.4028234663852886e38 : 1.7976931348623157e308);
    w.set({1, 0}, std::numeric_limits<double>::infinity());
    w.set({1, 1}, -std::numeric_limits<double>::infinity());
    w.set({1, 2}, std::numeric_limits<double>::quiet_NaN());
    w.set({2, 0}, 0.1);  // not representable: the float32 or double nearest 0.1 must come back
    save(a, (dir / "m.json").string());
    Generator other(2);
    MLP b({3, 5, 2}, "relu", other, dt);
    REQUIRE(bits(a) != bits(b));
    load(b, (dir / "m.json").string());
    REQUIRE(bits(a) == bits(b));
    REQUIRE(std::signbit(b.parameters()[0].at({0, 1})));
  }
  const auto j = nlohmann::json::parse(read_text(dir / "m.json"));
  REQUIRE(j["format"] == "tapegrad-checkpoint");
  REQUIRE(j["version"] == 1);
  REQUIRE(j["model"]["0.weight"]["shape"] == nlohmann::json({5, 3}));
  REQUIRE(j["model"]["0.weight"]["dtype"] == "float64");
  REQUIRE(j["model"]["0.weight"]["values"][5] == "nan");
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: 10 steps, save, load into fresh objects, 10 more = 20 uninterrupted", "[nn][checkpoint]") {
  const fs::path dir = temp_dir();
  // With dropout too: the checkpoint carries each Dropout layer's random stream, so the resumed
  // run draws the same masks (a fresh model's layers start from other seeds).
  for (int which = 0; which < 3; ++which) {
    for (DType dt : {kFloat32, kFloat64}) {
     for (double p : {0.0, 0.25}) {
      Generator data_gen(3);
      const auto batches = make_batches(data_gen, dt);
      auto make_opt = [&](MLP& net) -> std::unique_ptr<Optimizer> {
        if (which == 0) return std::make_unique<SGD>(net.parameters(), SgdOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
        if (which == 1) return std::make_unique<Adam>(net.parameters(), AdamOptions{.lr = 0.01, .amsgrad = true});
        return std::make_unique<AdamW>(net.parameters(), AdamOptions{.lr = 0.01, .weight_decay = 0.05});
      };
      Generator g1(4);
      MLP straight({4, 6, 3}, "gelu", g1, dt, p);
      auto opt_straight = make_opt(straight);
      train(straight, *opt_straight, batches, 0, 20);

      Generator g2(4);
      MLP first({4, 6, 3}, "gelu", g2, dt, p);
      auto opt_first = make_opt(first);
      train(first, *opt_first, batches, 0, 10);
      save(first, *opt_first, (dir / "resume.json").string());

      Generator g3(99);  // a fresh model with other weights, a fresh optimiser with no state
      MLP resumed({4, 6, 3}, "gelu", g3, dt, p);
      auto opt_resumed = make_opt(resumed);
      load(resumed, *opt_resumed, (dir / "resume.json").string());
      train(resumed, *opt_resumed, batches, 10, 20);
      INFO(opt_straight->type_name() << " " << dtype_name(dt) << " dropout " << p);
      REQUIRE(bits(resumed) == bits(straight));
      if (p > 0) {
        // The streams matter: the same resume without them ends elsewhere.
        auto j = nlohmann::json::parse(read_text(dir / "resume.json"));
        REQUIRE(j["rng"].contains("2"));
        j.erase("rng");
        write_text(dir / "no_rng.json", j.dump());
        Generator g4(99);
        MLP no_rng({4, 6, 3}, "gelu", g4, dt, p);
        auto opt_no_rng = make_opt(no_rng);
        load(no_rng, *opt_no_rng, (dir / "no_rng.json").string());
        train(no_rng, *opt_no_rng, batches, 10, 20);
        REQUIRE(bits(no_rng) != bits(straight));
      }
     }
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: a failed write leaves the previous file intact and no temporary behind", "[nn][checkpoint]") {
  const fs::path dir = temp_dir();
  const std::string path = (dir / "good.json").string();
  Generator gen(5);
  MLP net({30, 64, 10}, "relu", gen);  // large enough for several write chunks
  save(net, path);
  const std::string good = read_text(path);
  Generator gen2(6);
  MLP other({30, 64, 10}, "relu", gen2);
  nn::detail::checkpoint_write_hook = [](std::size_t written) {
    if (written > 0) throw RuntimeError("simulated: no space left on device");
  };
  REQUIRE_THROWS_WITH(save(other, path), Contains("no space left"));
  nn::detail::checkpoint_write_hook = nullptr;
  REQUIRE(read_text(path) == good);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  REQUIRE(files == 1);
  // A directory that does not exist: an error naming it, nothing created.
  REQUIRE_THROWS_WITH(save(net, (dir / "missing" / "x.json").string()), Contains("missing"));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: bad checkpoints are named and leave the model untouched", "[nn][checkpoint]") {
  const fs::path dir = temp_dir();
  Generator gen(7);
  MLP net({4, 8, 3}, "relu", gen);
  SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  backward(sum(net(ones({2, 4}))));
  opt.step();
  const std::string path = (dir / "c.json").string();
  save(net, opt, path);
  const std::string text = read_text(path);
  const auto original = nlohmann::json::parse(text);

  Generator gen2(8);
  MLP target({4, 8, 3}, "relu", gen2);
  SGD target_opt(target.parameters(), {.lr = 0.1, .momentum = 0.9});
  const auto before = bits(target);
  const auto opt_before = target_opt.state_dict();

  auto expect_failure = [&](const nlohmann::json& j, const std::string& fragment) {
    write_text(dir / "bad.json", j.dump());
    INFO("expecting: " << fragment);
    REQUIRE_THROWS_WITH(load(target, target_opt, (dir / "bad.json").string()), Contains(fragment));
    REQUIRE(bits(target) == before);
    REQUIRE(target_opt.state_dict() == opt_before);
  };
  auto j = original;
  j["model"].erase("2.bias");
  expect_failure(j, "'2.bias': missing");
  j = original;
  j["model"]["3.weight"] = j["model"]["2.weight"];
  expect_failure(j, "'3.weight': in the checkpoint but not in the model");
  j = original;
  j["model"]["2.weight"]["shape"] = {8, 3};
  expect_failure(j, "'2.weight': checkpoint has shape [8, 3], the model has [3, 8]");
  j = original;
  j["model"]["0.bias"]["dtype"] = "float64";
  expect_failure(j, "'0.bias': checkpoint has dtype float64, the model has float32");
  j = original;
  j["model"]["0.bias"]["values"].erase(0);
  expect_failure(j, "'0.bias': has 7 values for shape [8]");
  j = original;
  j["model"]["0.bias"]["values"][3] = "x";
  expect_failure(j, "'0.bias': value 3 is \"x\"");
  j = original;
  j["version"] = 2;
  expect_failure(j, "format version 2");
  j = original;
  j.erase("format");
  expect_failure(j, "not a tapegrad checkpoint");
  j = original;
  j["optimizer"]["type"] = "Adam";
  expect_failure(j, "optimizer state is for '\"Adam\"', not SGD");
  j = original;
  j["optimizer"]["state"][1]["momentum_buffer"]["shape"] = {9};
  expect_failure(j, "state[1].momentum_buffer");
  j = original;
  j.erase("optimizer");
  expect_failure(j, "no optimizer state");

  // truncated and corrupted files
  write_text(dir / "bad.json", text.substr(0, text.size() / 2));
  REQUIRE_THROWS_WITH(load(target, (dir / "bad.json").string()), Contains("not valid JSON"));
  std::string corrupt = text;
  corrupt[text.size() / 3] = '#';
  write_text(dir / "bad.json", corrupt);
  REQUIRE_THROWS_AS(load(target, (dir / "bad.json").string()), CheckpointError);
  REQUIRE_THROWS_WITH(load(target, (dir / "nope.json").string()), Contains("cannot open"));
  REQUIRE(bits(target) == before);

  // a different architecture
  Generator gen3(9);
  MLP wider({4, 16, 3}, "relu", gen3);
  const auto wider_before = bits(wider);
  REQUIRE_THROWS_WITH(load(wider, path), Contains("'0.weight': checkpoint has shape [8, 4], the model has [16, 4]"));
  REQUIRE(bits(wider) == wider_before);

  // and the good one loads
  load(target, target_opt, path);
  REQUIRE(bits(target) == bits(net));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: bad dropout streams are named and leave the model and its streams untouched", "[nn][checkpoint]") {
  const fs::path dir = temp_dir();
  Generator gen(10);
  MLP net({4, 8, 8, 3}, "relu", gen, kFloat64, 0.5);  // Dropout layers "2" and "5"
  const std::string path = (dir / "d.json").string();
  save(net, path);
  const auto original = nlohmann::json::parse(read_text(path));
  REQUIRE(original["rng"].size() == 2);
  REQUIRE(original["rng"]["2"].size() == 4);
  REQUIRE(!original["model"].contains("2"));  // "model" stays a plain PyTorch state_dict

  Generator gen2(11);
  MLP target({4, 8, 8, 3}, "relu", gen2, kFloat64, 0.5);
  const auto before = bits(target);
  auto streams = [&] {
    std::vector<Generator::State> s;
    for (const auto& [n, g] : target.named_generators()) s.push_back(g->state());
    return s;
  };
  const auto streams_before = streams();
  REQUIRE(target.named_generators().size() == 2);
  REQUIRE(target.named_generators()[1].first == "5");

  auto expect_failure = [&](const nlohmann::json& j, const std::string& fragment) {
    write_text(dir / "bad.json", j.dump());
    INFO("expecting: " << fragment);
    REQUIRE_THROWS_WITH(load(target, (dir / "bad.json").string()), Contains(fragment));
    REQUIRE(bits(target) == before);
    REQUIRE(streams() == streams_before);
  };
  auto j = original;
  j["rng"].erase("5");
  expect_failure(j, "rng '5': the model's random stream is missing");
  j = original;
  j["rng"]["7"] = j["rng"]["2"];
  expect_failure(j, "rng '7': in the checkpoint but the model has no such random stream");
  j = original;
  j["rng"]["2"].erase(0);
  expect_failure(j, "rng '2': expected 4 unsigned 64-bit integers");
  j = original;
  j["rng"]["2"][1] = -3;
  expect_failure(j, "rng '2': expected 4 unsigned 64-bit integers");
  j = original;
  j["rng"]["5"] = {0, 0, 0, 0};
  expect_failure(j, "rng '5': the state is all zeros");
  j = original;
  j["rng"] = "abc";
  expect_failure(j, "\"rng\": expected an object");
  j = original;
  j["model"].erase("0.bias");  // a model error wins before any stream is touched
  expect_failure(j, "'0.bias': missing");

  load(target, path);
  REQUIRE(bits(target) == bits(net));
  for (std::size_t i = 0; i < 2; ++i)
    REQUIRE(target.named_generators()[i].second->state() == net.named_generators()[i].second->state());
  // Without an "rng" entry the streams are left as they are.
  j = original;
  j.erase("rng");
  write_text(dir / "plain.json", j.dump());
  Generator gen3(12);
  MLP third({4, 8, 8, 3}, "relu", gen3, kFloat64, 0.5);
  const auto third_streams = third.named_generators()[0].second->state();
  load(third, (dir / "plain.json").string());
  REQUIRE(third.named_generators()[0].second->state() == third_streams);
  fs::remove_all(dir);
}
