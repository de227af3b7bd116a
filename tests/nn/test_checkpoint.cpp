// SPDX-License-Identifier: MIT
// Checkpoints: exact round trip, optimiser resume bit-identical to an uninterrupted run, atomic
// save (a failed write leaves the old file), and load that validates everything before touching
// the model (each kind of bad checkpoint named, model left bit-for-bit as it was).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "autodiff/detail/node.hpp"
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
  expect_failure(j, "optimizer state is for Adam, not SGD");
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

TEST_CASE("checkpoint: every load failure is a CheckpointError naming the file and the key", "[nn][checkpoint][hardening]") {
  const fs::path dir = temp_dir();
  Generator gen(20);
  MLP net({3, 4, 2}, "relu", gen, kFloat64, 0.5);  // Dropout layer "2": a random stream too
  Adam opt(net.parameters(), {.lr = 0.01, .amsgrad = true});
  backward(sum(net(ones({2, 3}, kFloat64))));
  opt.step();
  const std::string path = (dir / "c.json").string();
  save(net, opt, path);
  const std::string text = read_text(path);
  const auto original = nlohmann::json::parse(text);

  Generator gen2(21);
  MLP target({3, 4, 2}, "relu", gen2, kFloat64, 0.5);
  Adam target_opt(target.parameters(), {.lr = 0.02});
  const auto before = bits(target);
  const auto opt_before = target_opt.state_dict();
  const auto stream_before = target.named_generators()[0].second->state();
  const std::string bad = (dir / "bad.json").string();

  // Raw text, because nlohmann cannot hold 1e400: the parser itself must not escape.
  auto expect_text_failure = [&](const std::string& raw, const std::vector<std::string>& fragments) {
    write_text(bad, raw);
    INFO("text: " << raw.substr(0, 200));
    try {
      load(target, target_opt, bad);
      FAIL("load did not throw");
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      INFO("message: " << what);
      REQUIRE_THAT(what, Contains("load: '" + bad + "'"));
      for (const auto& f : fragments) REQUIRE_THAT(what, Contains(f));
    }
    REQUIRE(bits(target) == before);
    REQUIRE(target_opt.state_dict() == opt_before);
    REQUIRE(target.named_generators()[0].second->state() == stream_before);
  };
  auto expect_failure = [&](const nlohmann::json& j, const std::vector<std::string>& fragments) {
    expect_text_failure(j.dump(), fragments);
  };

  // A number beyond double in the model values and in the optimiser's scalars.
  {
    auto j = original;
    j["model"]["0.bias"]["values"][2] = 12345.0;
    std::string raw = j.dump();
    raw.replace(raw.find("12345.0"), 7, "1e400");
    expect_text_failure(raw, {"0.bias", "1e400"});
    j = original;
    j["optimizer"]["eps"] = 12345.0;
    raw = j.dump();
    raw.replace(raw.find("12345.0"), 7, "-1e400");
    expect_text_failure(raw, {"eps", "-1e400"});
  }
  // Versions that would truncate to 1, or are not an integer at all.
  for (const char* v : {"1.5", "1e30", "-1", "\"1\"", "4294967297", "18446744073709551617", "1.0"}) {
    std::string raw = original.dump();
    const auto at = raw.find("\"version\":1");
    REQUIRE(at != std::string::npos);
    raw.replace(at, 11, std::string("\"version\":") + v);
    expect_text_failure(raw, {"format version", "the integer 1"});
  }
  // Optimiser state that Adam's constructor would reject.
  auto j = original;
  j["optimizer"]["eps"] = -1e-8;
  expect_failure(j, {"Adam", "eps = -1e-08"});
  j["optimizer"]["eps"] = 0;
  expect_failure(j, {"Adam", "eps = 0"});
  j = original;
  j["optimizer"]["lr"] = -0.5;
  expect_failure(j, {"Adam", "lr = -0.5"});
  j = original;
  j["optimizer"]["beta2"] = 1.0;
  expect_failure(j, {"Adam", "beta2 = 1"});
  j = original;
  j["optimizer"]["weight_decay"] = -0.1;
  expect_failure(j, {"Adam", "weight_decay = -0.1"});
  j = original;
  j["optimizer"]["state"][0]["exp_avg_sq"]["values"][1] = -0.25;
  expect_failure(j, {"state[0].exp_avg_sq", "-0.25", ">= 0"});
  j = original;
  j["optimizer"]["state"][1]["exp_avg_sq"]["values"][0] = "nan";
  expect_failure(j, {"state[1].exp_avg_sq", "nan"});
  j = original;
  j["optimizer"]["state"][1]["max_exp_avg_sq"]["values"][0] = -1.0;
  expect_failure(j, {"state[1].max_exp_avg_sq", ">= 0"});
  j = original;
  j["optimizer"]["state"][2]["exp_avg"]["values"][3] = "inf";
  expect_failure(j, {"state[2].exp_avg", "inf", "finite"});
  j = original;
  j["optimizer"]["state"][2]["exp_avg"]["shape"] = {8, 1};
  expect_failure(j, {"state[2].exp_avg", "[8, 1]", "[2, 4]"});
  j = original;
  j["optimizer"]["state"][0]["step"] = 0;  // moments without a step: bias correction 1 - b^0 = 0
  expect_failure(j, {"state[0]", "step"});
  j = original;
  j["optimizer"]["state"][0]["step"] = 1.5;
  expect_failure(j, {"state[0].step", "1.5"});
  // A shape whose element count overflows, and an int64 value beyond int64.
  j = original;
  j["model"]["0.weight"]["shape"] = {4294967296, 4294967296};
  expect_failure(j, {"0.weight", "shape"});
  // SGD state with values its constructor rejects.
  {
    SGD sgd(net.parameters(), {.lr = 0.1, .momentum = 0.9});
    save(net, sgd, path);
    const auto s = nlohmann::json::parse(read_text(path));
    SGD target_sgd(target.parameters(), {.lr = 0.1});
    auto expect_sgd_failure = [&](const nlohmann::json& js, const std::string& fragment) {
      write_text(bad, js.dump());
      const auto sgd_before = target_sgd.state_dict();
      REQUIRE_THROWS_WITH(load(target, target_sgd, bad), Contains("bad.json") && Contains(fragment));
      REQUIRE(target_sgd.state_dict() == sgd_before);
      REQUIRE(bits(target) == before);
    };
    auto k = s;
    k["optimizer"]["momentum"] = -0.9;
    expect_sgd_failure(k, "momentum = -0.9");
    k = s;
    k["optimizer"]["nesterov"] = true;
    k["optimizer"]["dampening"] = 0.5;
    expect_sgd_failure(k, "nesterov");
    k = s;
    backward(sum(net(ones({2, 3}, kFloat64))));
    sgd.step();
    save(net, sgd, path);
    k = nlohmann::json::parse(read_text(path));
    k["optimizer"]["state"][0]["momentum_buffer"]["values"][0] = "-inf";
    expect_sgd_failure(k, "state[0].momentum_buffer");
  }
  // The optimiser-kind mismatch names both kinds once, without doubled quotes.
  j = original;
  j["optimizer"]["type"] = "SGD";
  write_text(bad, j.dump());
  try {
    load(target, target_opt, bad);
    FAIL("load did not throw");
  } catch (const CheckpointError& e) {
    const std::string what = e.what();
    INFO(what);
    REQUIRE_THAT(what, Contains("optimizer state is for SGD, not Adam"));
    REQUIRE(what.find("'\"") == std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: the next save removes temporaries left by a crashed save, and only those", "[nn][checkpoint][hardening]") {
  const fs::path dir = temp_dir() / "stale";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "m.json").string();
  Generator gen(30);
  MLP net({30, 64, 10}, "relu", gen);  // several write chunks
  // A writer that dies in the middle of its save (after the first chunk), as a crash would.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    nn::detail::checkpoint_write_hook = [](std::size_t written) {
      if (written > 0) ::_exit(0);
    };
    save(net, path);
    ::_exit(1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  auto listing = [&] {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
  };
  const auto after_crash = listing();
  INFO("after the crash: " << fmt::format("{}", fmt::join(after_crash, " ")));
  REQUIRE(after_crash.size() == 1);  // the half-written temporary, no m.json
  REQUIRE(!fs::exists(path));
  const std::string stale = *after_crash.begin();
  REQUIRE_THAT(stale, Contains(".m.json.tmp."));

  // Files the cleanup must leave alone: a live writer's temporary (this process's parent, which
  // is running), the same pattern for another target, and names that only look similar.
  const std::vector<std::string> keep = {fmt::format(".m.json.tmp.{}.AbC123", ::getppid()),
                                         fmt::format(".other.json.tmp.{}.AbC123", child),
                                         fmt::format(".m.json.tmp.{}.AbC12", child),
                                         fmt::format(".m.json.tmp.{}x.AbC123", child),
                                         fmt::format("m.json.tmp.{}.AbC123", child), "notes.txt"};
  for (const auto& k : keep) write_text(dir / k, "x");
  // mkstemp-style names from builds before the pid was in the name: removed once untouched for
  // 10 minutes, kept while fresh (a writer may still be using it).
  write_text(dir / ".m.json.tmp.Old123", "x");
  fs::last_write_time(dir / ".m.json.tmp.Old123", fs::file_time_type::clock::now() - std::chrono::hours(1));
  write_text(dir / ".m.json.tmp.New123", "x");
  std::vector<std::string> keep_all = keep;
  keep_all.push_back(".m.json.tmp.New123");

  save(net, path);
  std::set<std::string> expected(keep_all.begin(), keep_all.end());
  expected.insert("m.json");
  REQUIRE(listing() == expected);
  Generator gen2(31);
  MLP back({30, 64, 10}, "relu", gen2);
  load(back, path);
  REQUIRE(bits(back) == bits(net));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: save creates the file with mode 0666 & ~umask, as fopen does", "[nn][checkpoint][hardening]") {
  const fs::path dir = temp_dir();
  Generator gen(32);
  MLP net({2, 3}, "relu", gen);
  const mode_t old = ::umask(0);
  for (mode_t mask : {mode_t{022}, mode_t{027}, mode_t{002}, mode_t{077}}) {
    ::umask(mask);
    const fs::path path = dir / fmt::format("m{:o}.json", mask);
    save(net, path.string());
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    INFO("umask " << fmt::format("{:04o}", mask) << ": mode " << fmt::format("{:04o}", st.st_mode & 07777));
    CHECK((st.st_mode & 07777) == (0666 & ~mask));
    // Overwriting an existing checkpoint gives the same mode.
    save(net, path.string());
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == (0666 & ~mask));
  }
  ::umask(old);
  fs::remove_all(dir);
}

namespace {

Dataset resume_data(DType dt) {
  Generator gen(50);
  const Tensor x = randn({36, 4}, gen, dt);
  const Tensor y = randint(0, 3, {36}, gen);
  return {x, y, {"a", "b", "c"}};
}

std::unique_ptr<LRScheduler> make_scheduler(int kind, Optimizer& opt) {
  if (kind == 0) return std::make_unique<StepLR>(opt, 3, 0.5);
  return std::make_unique<CosineAnnealingLR>(opt, 8, 1e-3);  // T_max < 20: it rises again, as PyTorch's
}

void run_epochs(Module& net, Optimizer& opt, LRScheduler& sched, BatchIterator& batches, int epochs) {
  net.train();
  for (int e = 0; e < epochs; ++e) {
    for (const Dataset& b : batches.epoch()) {
      opt.zero_grad();
      backward(cross_entropy(net(b.features), b.labels));
      opt.step();
    }
    sched.step();
  }
}

double max_abs_diff(const Module& a, const Module& b) {
  double d = 0;
  const auto sa = a.state(), sb = b.state();
  for (std::size_t i = 0; i < sa.size(); ++i) {
    const auto va = sa[i].second.to_vector(), vb = sb[i].second.to_vector();
    for (std::size_t k = 0; k < va.size(); ++k) d = std::max(d, std::abs(va[k] - vb[k]));
  }
  return d;
}

}  // namespace

TEST_CASE("checkpoint: 10 + 10 epochs with a schedule, shuffling and dropout = 20 uninterrupted, bit for bit",
          "[nn][checkpoint][hardening]") {
  const fs::path dir = temp_dir() / "resume";
  fs::create_directories(dir);
  const std::string path = (dir / "r.json").string();
  for (int kind = 0; kind < 2; ++kind) {
    for (DType dt : {kFloat32, kFloat64}) {
      const Dataset data = resume_data(dt);
      const AdamOptions o{.lr = 0.02, .weight_decay = 0.05};

      Generator g1(4);
      MLP straight({4, 8, 3}, "gelu", g1, dt, 0.25);
      AdamW opt_straight(straight.parameters(), o);
      auto sched_straight = make_scheduler(kind, opt_straight);
      BatchIterator it_straight(data, 8, true, 5);
      run_epochs(straight, opt_straight, *sched_straight, it_straight, 20);

      Generator g2(4);
      MLP first({4, 8, 3}, "gelu", g2, dt, 0.25);
      AdamW opt_first(first.parameters(), o);
      auto sched_first = make_scheduler(kind, opt_first);
      BatchIterator it_first(data, 8, true, 5);
      run_epochs(first, opt_first, *sched_first, it_first, 10);
      save(first, opt_first, path, {.scheduler = sched_first.get(), .batches = &it_first});

      // Fresh objects: other weights, no optimiser state, the schedule at epoch 0, another shuffle seed.
      Generator g3(99);
      MLP resumed({4, 8, 3}, "gelu", g3, dt, 0.25);
      AdamW opt_resumed(resumed.parameters(), o);
      auto sched_resumed = make_scheduler(kind, opt_resumed);
      BatchIterator it_resumed(data, 8, true, 77);
      load(resumed, opt_resumed, path, {.scheduler = sched_resumed.get(), .batches = &it_resumed});
      REQUIRE(sched_resumed->epoch() == 10);
      REQUIRE(it_resumed.epochs() == 10);
      run_epochs(resumed, opt_resumed, *sched_resumed, it_resumed, 10);
      INFO(sched_straight->type_name() << " " << dtype_name(dt));
      REQUIRE(bits(resumed) == bits(straight));
      REQUIRE(opt_resumed.lr() == opt_straight.lr());
      REQUIRE(sched_resumed->state_dict() == sched_straight->state_dict());
      REQUIRE(it_resumed.state_dict() == it_straight.state_dict());

      // What a resume was before schedules and iterators had state: the same load without them.
      Generator g4(99);
      MLP partial({4, 8, 3}, "gelu", g4, dt, 0.25);
      AdamW opt_partial(partial.parameters(), o);
      auto sched_partial = make_scheduler(kind, opt_partial);
      BatchIterator it_partial(data, 8, true, 77);
      load(partial, opt_partial, path);
      run_epochs(partial, opt_partial, *sched_partial, it_partial, 10);
      const double off = max_abs_diff(partial, straight);
      INFO("without the schedule's and iterator's state the weights end up to " << off << " away");
      REQUIRE(off > 1e-3);
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: bad scheduler and iterator entries are named; nothing is modified", "[nn][checkpoint][hardening]") {
  const fs::path dir = temp_dir() / "extras";
  fs::create_directories(dir);
  const std::string path = (dir / "e.json").string(), bad = (dir / "bad.json").string();
  const Dataset data = resume_data(kFloat64);
  Generator gen(60);
  MLP net({4, 8, 3}, "relu", gen, kFloat64, 0.5);
  Adam opt(net.parameters(), {.lr = 0.01});
  StepLR sched(opt, 2, 0.5);
  BatchIterator it(data, 8, true, 1);
  run_epochs(net, opt, sched, it, 3);
  save(net, opt, path, {.scheduler = &sched, .batches = &it});
  const auto original = nlohmann::json::parse(read_text(path));
  REQUIRE(original["scheduler"]["type"] == "StepLR");
  REQUIRE(original["scheduler"]["last_epoch"] == 3);
  REQUIRE(original["scheduler"]["_step_count"] == 4);
  REQUIRE(original["scheduler"]["base_lrs"] == nlohmann::json::array({0.01}));
  REQUIRE(original["batch_iterator"]["epochs"] == 3);

  Generator gen2(61);
  MLP target({4, 8, 3}, "relu", gen2, kFloat64, 0.5);
  Adam target_opt(target.parameters(), {.lr = 0.01});
  StepLR target_sched(target_opt, 2, 0.5);
  CosineAnnealingLR target_cos(target_opt, 5);
  BatchIterator target_it(data, 8, true, 2);
  const auto before = bits(target);
  const auto opt_before = target_opt.state_dict();
  const auto sched_before = target_sched.state_dict();
  const auto it_before = target_it.state_dict();
  const auto stream_before = target.named_generators()[0].second->state();

  auto expect_failure = [&](const nlohmann::json& j, const std::string& fragment, LRScheduler* s = nullptr) {
    write_text(bad, j.dump());
    INFO("expecting: " << fragment);
    REQUIRE_THROWS_WITH(load(target, target_opt, bad, {.scheduler = s ? s : &target_sched, .batches = &target_it}),
                        Contains("load: '" + bad + "'") && Contains(fragment));
    REQUIRE(bits(target) == before);
    REQUIRE(target_opt.state_dict() == opt_before);
    REQUIRE(target_sched.state_dict() == sched_before);
    REQUIRE(target_it.state_dict() == it_before);
    REQUIRE(target.named_generators()[0].second->state() == stream_before);
  };
  expect_failure(original, "scheduler state is for StepLR, not CosineAnnealingLR", &target_cos);
  auto j = original;
  j["scheduler"]["last_epoch"] = -1;
  expect_failure(j, "StepLR state: 'last_epoch' is -1");
  j = original;
  j["scheduler"]["_step_count"] = 7;
  expect_failure(j, "'_step_count' is 7; expected last_epoch + 1 = 4");
  j = original;
  j["scheduler"]["base_lrs"] = {0.01, 0.02};
  expect_failure(j, "'base_lrs' is [0.01,0.02]; expected one number");
  j = original;
  j["scheduler"]["base_lrs"] = {-0.01};
  expect_failure(j, "base_lrs[0]: lr = -0.01");
  j = original;
  j["scheduler"]["gamma"] = 0;
  expect_failure(j, "StepLR state: gamma = 0");
  j = original;
  j["scheduler"]["step_size"] = 0;
  expect_failure(j, "StepLR state: 'step_size' is 0");
  j = original;
  j["scheduler"].erase("step_size");
  expect_failure(j, "StepLR state: missing field 'step_size'");
  j = original;
  j["batch_iterator"]["num_samples"] = 35;
  expect_failure(j, "BatchIterator state: 'num_samples' is 35; this iterator has 36");
  j = original;
  j["batch_iterator"]["batch_size"] = 4;
  expect_failure(j, "BatchIterator state: 'batch_size' is 4; this iterator has 8");
  j = original;
  j["batch_iterator"]["shuffle"] = false;
  expect_failure(j, "BatchIterator state: 'shuffle' is false");
  j = original;
  j["batch_iterator"]["epochs"] = -2;
  expect_failure(j, "BatchIterator state: 'epochs' is -2");
  j = original;
  j["batch_iterator"]["generator"] = {0, 0, 0, 0};
  expect_failure(j, "BatchIterator state: 'generator' is all zeros");
  j = original;
  j["batch_iterator"]["generator"] = {1, 2, 3};
  expect_failure(j, "BatchIterator state: 'generator' is [1,2,3]");
  j = original;  // a bad optimiser entry: the scheduler and the iterator are not touched either
  j["optimizer"]["eps"] = -1;
  expect_failure(j, "Adam state: eps = -1");

  // A cosine schedule's own checks.
  {
    CosineAnnealingLR cos(opt, 5, 1e-3);  // base lr: the optimiser's lr now, 0.01 * 0.5
    REQUIRE(cos.base_lr() == 0.005);
    save(net, opt, path, {.scheduler = &cos});
    auto c = nlohmann::json::parse(read_text(path));
    c["scheduler"]["eta_min"] = 0.5;
    write_text(bad, c.dump());
    const auto cos_before = target_cos.state_dict();
    REQUIRE_THROWS_WITH(load(target, target_opt, bad, {.scheduler = &target_cos}),
                        Contains("CosineAnnealingLR state: eta_min = 0.5; expected 0 <= eta_min < base_lrs[0] = 0.005"));
    c["scheduler"]["eta_min"] = 1e-3;
    c["scheduler"]["T_max"] = 0;
    write_text(bad, c.dump());
    REQUIRE_THROWS_WITH(load(target, target_opt, bad, {.scheduler = &target_cos}),
                        Contains("CosineAnnealingLR state: 'T_max' is 0"));
    REQUIRE(target_cos.state_dict() == cos_before);
    REQUIRE(bits(target) == before);
  }

  // A checkpoint without the entries loads as before and leaves the schedule and iterator as they are.
  j = original;
  j.erase("scheduler");
  j.erase("batch_iterator");
  write_text(bad, j.dump());
  load(target, target_opt, bad, {.scheduler = &target_sched, .batches = &target_it});
  REQUIRE(bits(target) == bits(net));
  REQUIRE(target_sched.state_dict() == sched_before);
  REQUIRE(target_it.state_dict() == it_before);
  // And the full one restores them.
  save(net, opt, path, {.scheduler = &sched, .batches = &it});
  load(target, target_opt, path, {.scheduler = &target_sched, .batches = &target_it});
  REQUIRE(target_sched.state_dict() == sched.state_dict());
  REQUIRE(target_it.state_dict() == it.state_dict());
  fs::remove_all(dir);
}
