// SPDX-License-Identifier: MIT
// safetensors checkpoints: the exact byte layout (against byte strings written out by hand and the
// reference implementation's own test vectors), bit-exact round trips, F16/BF16 widening, a
// corruption suite (every truncation, every kind of bad header; the model stays bit-identical and
// the message names the file and the entry), strict name checks, exact resume through the
// companion training-state file, mismatched pairs, and atomic saves.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "autodiff/detail/node.hpp"
#include "testing.hpp"

using namespace tapegrad;
using namespace tapegrad::nn;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("tapegrad_st_{}_{}", ::getpid(), name);
  fs::create_directories(dir);
  return dir;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string le64(std::uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s += static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Bytes given as hex pairs ("0000803f" = 1.0f little-endian).
std::string hex(const std::string& h) {
  std::string s;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) s += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return s;
}

// A file from a header and a data area; the header is used as given (no padding).
std::string st_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

std::vector<unsigned char> raw(const Tensor& t) {
  const auto* p = static_cast<const unsigned char*>(t.impl().data);
  return {p, p + t.numel() * static_cast<std::int64_t>(dtype_size(t.dtype()))};
}

std::vector<std::vector<unsigned char>> bits(const Module& m) {
  std::vector<std::vector<unsigned char>> out;
  for (const auto& [n, t] : m.state()) out.push_back(raw(t));
  return out;
}

std::vector<std::string> names(const Module& m) {
  std::vector<std::string> out;
  for (const auto& [n, t] : m.state()) out.push_back(n);
  return out;
}

// An attention model with buffers of every dtype we write (int64 and bool), and Dropout.
class AttentionNet : public Module {
 public:
  AttentionNet(Generator& gen, DType dt) : Module("AttentionNet") {
    block = register_module("block", std::make_shared<TransformerBlock>(
                                         8, 2, 16, gen, TransformerBlockOptions{.dropout = 0.1, .dtype = dt}));
    head = register_module("head", std::make_shared<Linear>(8, 3, gen, true, dt));
    steps = register_buffer("steps", from_vector(std::vector<std::int64_t>{7}, Shape{}));
    mask = register_buffer("mask", from_vector(std::vector<bool>{true, false, true}, Shape{3}));
  }
  std::shared_ptr<TransformerBlock> block;
  std::shared_ptr<Linear> head;
  Tensor steps, mask;
};

}  // namespace

TEST_CASE("safetensors: the bytes written are the format's, byte for byte", "[nn][safetensors]") {
  const fs::path dir = temp_dir("layout");
  const std::string p = (dir / "t.safetensors").string();
  // One F32 [2] tensor {1, -2}: the 54-byte JSON padded with 2 spaces to 56, then the floats.
  save_safetensors({{"a", from_vector({1.0, -2.0}, Shape{2})}}, p);
  const std::string json_a = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(json_a.size() == 54);
  REQUIRE(read_bytes(p) == hex("3800000000000000") + json_a + "  " + hex("0000803f000000c0"));

  // The reference implementation's test vectors (huggingface/safetensors, tensor.rs tests):
  // "attn.0" F32 [1, 2, 3] = 0..5, a 64-byte header that needs no padding ...
  std::vector<float> v{0, 1, 2, 3, 4, 5};
  save_safetensors({{"attn.0", from_vector(v, Shape{1, 2, 3})}}, p);
  const std::string floats = hex("00000000" "0000803f" "00000040" "00004040" "00008040" "0000a040");
  REQUIRE(read_bytes(p) == le64(64) + R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})" + floats);
  // ... "attn0" [1, 1, 2, 3]: 65 bytes padded with 7 spaces to 72 ...
  save_safetensors({{"attn0", from_vector(v, Shape{1, 1, 2, 3})}}, p);
  REQUIRE(read_bytes(p) ==
          le64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" + "       " + floats);
  // ... no tensors: "{}" and 6 spaces; only metadata {"framework": "pt"}: 35 bytes + 5 spaces.
  save_safetensors(std::map<std::string, Tensor>{}, p);
  REQUIRE(read_bytes(p) == le64(8) + "{}      ");
  save_safetensors(std::map<std::string, Tensor>{}, p, {{"framework", "pt"}});
  REQUIRE(read_bytes(p) == le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");

  // The reference writer's order: I64, F64, F32, BOOL (alignment, descending), then by name;
  // "__metadata__" first; a scalar has shape [], an empty tensor begin == end.
  save_safetensors({{"z", from_vector({0.5}, Shape{1})},
                    {"b", from_vector(std::vector<bool>{true, false}, Shape{2})},
                    {"c", from_vector(std::vector<std::int64_t>{-2}, Shape{})},
                    {"a", zeros({0}, kFloat64)},
                    {"y", from_vector({0.25}, Shape{1})}},
                   p, {{"k", "v"}, {"format", "pt"}});
  std::string header = R"({"__metadata__":{"format":"pt","k":"v"},)"
                       R"("c":{"dtype":"I64","shape":[],"data_offsets":[0,8]},)"
                       R"("a":{"dtype":"F64","shape":[0],"data_offsets":[8,8]},)"
                       R"("y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},)"
                       R"("z":{"dtype":"F32","shape":[1],"data_offsets":[12,16]},)"
                       R"("b":{"dtype":"BOOL","shape":[2],"data_offsets":[16,18]}})";
  header += std::string((8 - header.size() % 8) % 8, ' ');
  const std::string data = hex("feffffffffffffff" "0000803e" "0000003f" "0100");
  REQUIRE(read_bytes(p) == le64(header.size()) + header + data);
  fs::remove_all(dir);
}

TEST_CASE("safetensors: every dtype and shape comes back bit-identical (map API)", "[nn][safetensors]") {
  const fs::path dir = temp_dir("roundtrip");
  const std::string p = (dir / "m.safetensors").string();
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  std::map<std::string, Tensor> in{
      {"f32", from_vector({1e-40, -0.0, 3.4028234663852886e38, inf, -inf, nan, 0.1, -7.0}, Shape{2, 4})},
      {"f64", from_vector({5e-320, -0.0, 1.7976931348623157e308, inf, -inf, nan}, Shape{1, 2, 3}, kFloat64)},
      {"i64", from_vector(std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(), -1, 0,
                                                    std::numeric_limits<std::int64_t>::max()}, Shape{4})},
      {"bool", from_vector(std::vector<bool>{true, false, false, true, true, false}, Shape{3, 2})},
      {"scalar", tensor(2.5, kFloat64)},
      {"int_scalar", from_vector(std::vector<std::int64_t>{42}, Shape{})},
      {"empty", zeros({0})},
      {"empty3", zeros({3, 0, 2}, kInt64)},
      {"rank4", reshape(arange(0, 24, 1, kFloat64), {2, 1, 3, 4})},
      {"rank4_bool", zeros({2, 2, 1, 2}, kBool)},
      {"dotted.name/with \"quotes\" and ünïcode", ones({1})},
  };
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"note", "line\nbreak \"quoted\" ü"}};
  save_safetensors(in, p, meta);
  const SafetensorsFile f = read_safetensors(p);
  REQUIRE(f.metadata == meta);
  REQUIRE(f.tensors.size() == in.size());
  for (const auto& [name, t] : in) {
    INFO(name);
    REQUIRE(f.tensors.count(name) == 1);
    const Tensor& u = f.tensors.at(name);
    REQUIRE(u.dtype() == t.dtype());
    REQUIRE(u.shape() == t.shape());
    REQUIRE(raw(u) == raw(t));
  }
  const auto plain = load_safetensors(p);
  REQUIRE(plain.size() == in.size());
  REQUIRE(raw(plain.at("f64")) == raw(in.at("f64")));
  // File size = 8 + header + the raw bytes, nothing else.
  std::uint64_t raw_bytes = 0;
  for (const auto& [name, t] : in) raw_bytes += raw(t).size();
  const std::string bytes = read_bytes(p);
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  REQUIRE(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + raw_bytes);
  fs::remove_all(dir);
}

TEST_CASE("safetensors: modules round-trip bit for bit (MLP, attention with buffers)", "[nn][safetensors]") {
  const fs::path dir = temp_dir("module");
  const std::string p = (dir / "m.safetensors").string();
  for (DType dt : {kFloat32, kFloat64}) {
    Generator g1(1), g2(2);
    MLP a({5, 7, 3}, "relu", g1, dt), b({5, 7, 3}, "relu", g2, dt);
    a.parameters()[0].set({0, 0}, std::numeric_limits<double>::quiet_NaN());
    a.parameters()[0].set({0, 1}, -0.0);
    save_safetensors(a, p);
    REQUIRE(bits(a) != bits(b));
    load_safetensors(b, p);
    REQUIRE(bits(a) == bits(b));
    // The file is exactly the state_dict: the module's names, nothing else, no metadata.
    const SafetensorsFile f = read_safetensors(p);
    REQUIRE(f.metadata.empty());
    std::set<std::string> file_names;
    for (const auto& [n, t] : f.tensors) file_names.insert(n);
    REQUIRE(file_names == std::set<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});

    AttentionNet x(g1, dt), y(g2, dt);
    y.steps.mutable_data<std::int64_t>()[0] = 0;
    y.mask.mutable_data<bool>()[1] = true;
    save_safetensors(x, p);
    REQUIRE(bits(x) != bits(y));
    load_safetensors(y, p);
    REQUIRE(bits(x) == bits(y));
    REQUIRE(read_safetensors(p).tensors.size() == x.state().size());
    REQUIRE(read_safetensors(p).tensors.at("steps").dtype() == kInt64);
    REQUIRE(read_safetensors(p).tensors.at("mask").dtype() == kBool);
  }
  fs::remove_all(dir);
}

TEST_CASE("safetensors: F16 and BF16 are read and widened to float32 exactly", "[nn][safetensors]") {
  const fs::path dir = temp_dir("half");
  const std::string p = (dir / "h.safetensors").string();
  // F16: 1, -2, 2^-24 (smallest subnormal), 1023 * 2^-24 (largest subnormal), 65504 (largest
  // finite), inf, -inf, NaN, -0.   BF16 (the top half of a float32): 1, -2, inf, 2^-133, NaN.
  const std::string f16 = hex("003c" "00c0" "0100" "ff03" "ff7b" "007c" "00fc" "007e" "0080");
  const std::string bf16 = hex("803f" "00c0" "807f" "0100" "c07f");
  write_bytes(p, st_file(R"({"h":{"dtype":"F16","shape":[9],"data_offsets":[0,18]},)"
                         R"("b":{"dtype":"BF16","shape":[5],"data_offsets":[18,28]}})", f16 + bf16));
  const auto t = load_safetensors(p);
  const Tensor h = t.at("h"), b = t.at("b");
  REQUIRE(h.dtype() == kFloat32);
  REQUIRE(b.dtype() == kFloat32);
  const float* hv = h.data<float>();
  CHECK(hv[0] == 1.0f);
  CHECK(hv[1] == -2.0f);
  CHECK(hv[2] == 5.9604644775390625e-08f);   // 2^-24
  CHECK(hv[3] == 6.0975551605224609e-05f);   // 1023 * 2^-24
  CHECK(hv[4] == 65504.0f);
  CHECK(hv[5] == std::numeric_limits<float>::infinity());
  CHECK(hv[6] == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(hv[7]));
  CHECK((hv[8] == 0.0f && std::signbit(hv[8])));
  const float* bv = b.data<float>();
  CHECK(bv[0] == 1.0f);
  CHECK(bv[1] == -2.0f);
  CHECK(bv[2] == std::numeric_limits<float>::infinity());
  CHECK(bv[3] == 9.183549615799121e-41f);  // 2^-133, a float32 subnormal
  CHECK(std::isnan(bv[4]));

  // Into a float32 module (half-precision weights from elsewhere); a float64 one is refused.
  write_bytes(p, st_file(R"({"weight":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},)"
                         R"("bias":{"dtype":"F16","shape":[1],"data_offsets":[4,6]}})", hex("803f00c0" "00c0")));
  Generator gen(3);
  Linear lin(2, 1, gen);
  load_safetensors(lin, p);
  REQUIRE(lin.weight.to_vector() == std::vector<double>{1.0, -2.0});
  REQUIRE(lin.bias.to_vector() == std::vector<double>{-2.0});
  Linear lin64(2, 1, gen, true, kFloat64);
  REQUIRE_THROWS_WITH(load_safetensors(lin64, p),
                      Contains("'weight': the file has BF16 (read as float32), the model has float64"));
  fs::remove_all(dir);
}

TEST_CASE("safetensors: a file of another architecture is refused, naming the tensors", "[nn][safetensors]") {
  const fs::path dir = temp_dir("strict");
  const std::string p = (dir / "m.safetensors").string();
  Generator gen(4);
  MLP net({3, 4, 2}, "relu", gen);
  save_safetensors(net, p);
  auto refuse = [&](Module& m, const std::vector<std::string>& fragments) {
    const auto before = bits(m);
    try {
      load_safetensors(m, p);
      FAIL("expected a CheckpointError");
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK_THAT(what, Contains("load_safetensors: '" + p + "': "));
      for (const auto& f : fragments) CHECK_THAT(what, Contains(f));
    }
    REQUIRE(bits(m) == before);
  };
  MLP deeper({3, 4, 4, 2}, "relu", gen);
  refuse(deeper, {"a different architecture?): missing from the file: '4.weight', '4.bias'"});
  MLP shallower({3, 2}, "relu", gen);
  refuse(shallower, {"in the file but not in the model: '2.bias', '2.weight'"});
  MLP wider({3, 5, 2}, "relu", gen);
  refuse(wider, {"'0.weight': the file has shape [4, 3], the model has [5, 3]"});
  MLP doubles({3, 4, 2}, "relu", gen, kFloat64);
  refuse(doubles, {"'0.weight': the file has F32, the model has float64"});
}

TEST_CASE("safetensors: every truncation of a file is a CheckpointError, and the model is untouched",
          "[nn][safetensors]") {
  const fs::path dir = temp_dir("truncate");
  const std::string p = (dir / "m.safetensors").string(), bad = (dir / "bad.safetensors").string();
  Generator gen(5);
  Linear small(3, 2, gen);
  save_safetensors(small, p);
  const std::string bytes = read_bytes(p);
  Generator gen2(6);
  Linear target(3, 2, gen2);
  const auto before = bits(target);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    write_bytes(bad, bytes.substr(0, n));
    INFO("prefix of " << n << " bytes");
    REQUIRE_THROWS_AS(load_safetensors(target, bad), CheckpointError);
    REQUIRE_THROWS_AS(load_safetensors(bad), CheckpointError);
    REQUIRE(bits(target) == before);
  }
  // One byte more is refused too (the tensors must end where the file ends).
  write_bytes(bad, bytes + '\0');
  REQUIRE_THROWS_WITH(load_safetensors(target, bad), Contains("trailing bytes"));
  REQUIRE(bits(target) == before);
  load_safetensors(target, p);
  REQUIRE(bits(target) == bits(small));

  // The same for a file with every dtype, a scalar, an empty tensor and metadata (map API).
  save_safetensors({{"a", ones({2, 3})}, {"b", from_vector(std::vector<bool>{true}, Shape{1})},
                    {"c", from_vector(std::vector<std::int64_t>{3}, Shape{})}, {"d", zeros({0, 2}, kFloat64)}},
                   p, {{"k", "v"}});
  const std::string rich = read_bytes(p);
  for (std::size_t n = 0; n < rich.size(); ++n) {
    write_bytes(bad, rich.substr(0, n));
    INFO("prefix of " << n << " bytes");
    REQUIRE_THROWS_AS(read_safetensors(bad), CheckpointError);
  }
  REQUIRE(read_safetensors(p).tensors.size() == 4);
  fs::remove_all(dir);
}

TEST_CASE("safetensors: bad headers are named, file and entry, and leave the model untouched", "[nn][safetensors]") {
  const fs::path dir = temp_dir("corrupt");
  const std::string p = (dir / "bad.safetensors").string();
  Generator gen(7);
  Linear target(3, 2, gen);  // "weight" F32 [2, 3], "bias" F32 [2]
  const auto before = bits(target);
  const std::string data(32, '\x11');
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return fmt::format(R"("{}":{{"dtype":{},"shape":{},"data_offsets":{}}})", name, dtype, shape, offsets);
  };
  const std::string w = entry("weight", "\"F32\"", "[2,3]", "[0,24]"), b = entry("bias", "\"F32\"", "[2]", "[24,32]");
  auto header = [](const std::vector<std::string>& entries) {
    std::string h = "{";
    for (const auto& e : entries) h += (h.size() > 1 ? "," : "") + e;
    return h + "}";
  };
  // The well-formed file loads (so each failure below is the one change it makes).
  write_bytes(p, st_file(header({w, b}), data));
  load_safetensors(target, p);
  const auto loaded = bits(target);

  auto expect = [&](const std::string& bytes, const std::vector<std::string>& fragments) {
    write_bytes(p, bytes);
    try {
      load_safetensors(target, p);
      FAIL("expected a CheckpointError for " << bytes.substr(8, 120));
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK_THAT(what, Contains("load_safetensors: '" + p + "': "));
      for (const auto& f : fragments) CHECK_THAT(what, Contains(f));
    }
    REQUIRE(bits(target) == loaded);
    REQUIRE_THROWS_AS(read_safetensors(p), CheckpointError);
  };
  auto with = [&](const std::string& weight_entry, const std::string& d = std::string(32, '\x11')) {
    return st_file(header({weight_entry, b}), d);
  };

  // header length
  expect(le64(0) + header({w, b}) + data, {"header length: 0"});
  expect(le64(1000) + header({w, b}), {"header length: 1000 bytes, but only", "truncated"});
  expect(le64(100'000'001) + header({w, b}) + data, {"header length: 100000001 bytes, above the format's limit of 100000000"});
  expect(le64(~0ULL) + header({w, b}) + data, {"above the format's limit"});
  expect(std::string(5, '\0'), {"the file is 5 bytes long"});
  // JSON
  expect(st_file("{\"weight\": ", data), {"header: not valid JSON"});
  expect(st_file("[1, 2]", data), {"header: expected a JSON object"});
  expect(st_file(header({w, b}) + std::string(3, '\0'), data), {"header: a NUL byte at byte 120"});  // padding is spaces
  expect(st_file(header({w, b, w}), data), {"'weight': the name appears twice"});
  expect(st_file(R"({"weight":{"dtype":"F32","dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)" + b + "}", data),
         {"'weight': the field \"dtype\" appears twice"});
  expect(st_file("{\"weight\":{\"dtype\":\"F\xff\"}}", data), {"not valid JSON"});  // not UTF-8
  // entries
  expect(with(R"("weight":3)"), {"'weight': expected an object with dtype, shape and data_offsets, got 3"});
  expect(with(R"("weight":{"dtype":"F32","shape":[2,3]})"), {"'weight': missing field \"data_offsets\""});
  expect(with(entry("weight", "\"F33\"", "[2,3]", "[0,24]")), {"'weight': unknown dtype \"F33\""});
  expect(with(entry("weight", "\"I32\"", "[2,3]", "[0,24]")), {"'weight': unsupported dtype \"I32\"", "F16, BF16"});
  expect(with(entry("weight", "7", "[2,3]", "[0,24]")), {"'weight': dtype is 7"});
  expect(with(entry("weight", "\"F32\"", "[2,\"3\"]", "[0,24]")), {"'weight': shape [2,\"3\"]: every size must be an integer >= 0"});
  expect(with(entry("weight", "\"F32\"", "[-2,3]", "[0,24]")), {"'weight': shape [-2,3]: every size"});
  expect(with(entry("weight", "\"F32\"", "[2.0,3]", "[0,24]")), {"'weight': shape [2.0,3]: every size"});
  expect(with(entry("weight", "\"F32\"", "6", "[0,24]")), {"'weight': shape is 6"});
  expect(with(entry("weight", "\"F32\"", "[1,1,1,1,2,3]", "[0,24]")), {"'weight': shape [1,1,1,1,2,3] has 6 dimensions; tapegrad tensors have at most 4"});
  expect(with(entry("weight", "\"F32\"", "[4294967296,4294967296]", "[0,24]")), {"'weight': shape", "more"});
  expect(with(entry("weight", "\"F32\"", "[2,3]", "[0]")), {"'weight': data_offsets is [0]; expected [begin, end]"});
  expect(with(entry("weight", "\"F32\"", "[2,3]", "[0,24,32]")), {"'weight': data_offsets is [0,24,32]"});
  expect(with(entry("weight", "\"F32\"", "[2,3]", "[\"0\",24]")), {"'weight': data_offsets is"});
  expect(with(entry("weight", "\"F32\"", "[2,3]", "[-8,24]")), {"'weight': data_offsets is [-8,24]"});
  expect(with(entry("weight", "\"F32\"", "[2,3]", "{\"begin\":0}")), {"'weight': data_offsets is"});
  expect(with(entry("weight", "\"F32\"", "[2,3]", "[24,0]")), {"'weight': data_offsets [24, 0]: begin > end"});
  expect(with(entry("weight", "\"F32\"", "[2,3]", "[8,40]")), {"'weight': data_offsets [8, 40] run past the end of the data area, which holds 32 bytes"});
  expect(with(entry("weight", "\"F32\"", "[2,2]", "[0,24]")), {"'weight': data_offsets [0, 24] hold 24 bytes; shape [2, 2] of F32 needs 16"});
  // layout: overlapping, holes, trailing bytes
  expect(st_file(header({w, entry("bias", "\"F32\"", "[2]", "[16,24]")}), std::string(24, 'x')),
         {"'bias': data_offsets [16, 24] overlap those of 'weight' [0, 24]"});
  expect(st_file(header({w, entry("bias", "\"F32\"", "[2]", "[28,36]")}), std::string(36, 'x')),
         {"'bias': data_offsets [28, 36] leave bytes [24, 28) of the data area unused (a hole)"});
  expect(st_file(header({entry("weight", "\"F32\"", "[2,3]", "[8,32]"), entry("bias", "\"F32\"", "[2]", "[32,40]")}),
                 std::string(40, 'x')),
         {"'weight': data_offsets [8, 32] leave bytes [0, 8)"});
  expect(st_file(header({w, b}), data + "xxxx"), {"data area: 36 bytes", "cover only the first 32", "trailing"});
  // metadata
  expect(st_file(header({R"("__metadata__":{"a":1})", w, b}), data), {"__metadata__: \"a\" is 1; expected a string"});
  expect(st_file(header({R"("__metadata__":"x")", w, b}), data), {"__metadata__: expected an object of strings"});
  expect(st_file(header({R"("__metadata__":{"a":{"b":"c"}})", w, b}), data), {"__metadata__: \"a\" is {\"b\":\"c\"}"});
  // a BOOL byte other than 0 or 1
  write_bytes(p, st_file(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", hex("010200")));
  REQUIRE_THROWS_WITH(load_safetensors(p), Contains("'m': element 1 is the byte 2; a BOOL is 0 or 1"));
  // a file that is not there, a directory
  REQUIRE_THROWS_WITH(load_safetensors(target, (dir / "nope.safetensors").string()), Contains("cannot open it"));
  REQUIRE_THROWS_WITH(load_safetensors(target, dir.string()), Contains("not a regular file"));
  REQUIRE(bits(target) == loaded);
  // An unpadded header and metadata are fine (the reference reader does not require padding).
  write_bytes(p, st_file(header({R"("__metadata__":{"format":"pt"})", b, w}), data));
  load_safetensors(target, p);
  (void)before;
  fs::remove_all(dir);
}

TEST_CASE("safetensors: bad arguments to save are named and write nothing", "[nn][safetensors]") {
  const fs::path dir = temp_dir("badsave");
  const std::string p = (dir / "x.safetensors").string();
  REQUIRE_THROWS_WITH(save_safetensors({{"a", Tensor()}}, p), Contains("save_safetensors: tensor 'a' is undefined"));
  REQUIRE_THROWS_WITH(save_safetensors({{"__metadata__", ones({1})}}, p), Contains("cannot be named '__metadata__'"));
  REQUIRE_THROWS_WITH(save_safetensors({{"bad\xff", ones({1})}}, p), Contains("tensor name \"bad"));
  REQUIRE_THROWS_WITH(save_safetensors({{"a", ones({1})}}, p, {{"k", "\xfe"}}), Contains("metadata value"));
  REQUIRE_THROWS_WITH(save_safetensors({{"a", ones({1})}}, (dir / "missing" / "x.safetensors").string()),
                      Contains("save_safetensors: cannot create a temporary file"));
  REQUIRE(fs::is_empty(dir));
  fs::remove_all(dir);
}

namespace {

Dataset resume_data(DType dt) {
  Generator gen(50);
  const Tensor x = randn({36, 4}, gen, dt);
  const Tensor y = randint(0, 3, {36}, gen);
  return {x, y, {"a", "b", "c"}};
}

std::unique_ptr<Optimizer> make_optimizer(int kind, Module& net) {
  if (kind == 0) return std::make_unique<AdamW>(net.parameters(), AdamOptions{.lr = 0.02, .weight_decay = 0.05});
  if (kind == 1) return std::make_unique<Adam>(net.parameters(), AdamOptions{.lr = 0.02, .amsgrad = true});
  return std::make_unique<SGD>(net.parameters(), SgdOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true});
}

std::unique_ptr<LRScheduler> make_scheduler(int kind, Optimizer& opt) {
  if (kind == 1) return std::make_unique<CosineAnnealingLR>(opt, 8, 1e-3);
  return std::make_unique<StepLR>(opt, 3, 0.5);
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

}  // namespace

TEST_CASE("safetensors: 10 epochs + save + load into fresh objects + 10 = 20 uninterrupted, bit for bit",
          "[nn][safetensors]") {
  const fs::path dir = temp_dir("resume");
  const std::string path = (dir / "r.safetensors").string();
  REQUIRE(safetensors_companion_path(path) == (dir / "r.train.safetensors").string());
  REQUIRE(safetensors_companion_path("ckpt") == "ckpt.train.safetensors");
  for (int kind = 0; kind < 3; ++kind) {
    for (DType dt : {kFloat32, kFloat64}) {
      const Dataset data = resume_data(dt);
      Generator g1(4);
      MLP straight({4, 8, 3}, "gelu", g1, dt, 0.25);
      auto opt_straight = make_optimizer(kind, straight);
      auto sched_straight = make_scheduler(kind, *opt_straight);
      BatchIterator it_straight(data, 8, true, 5);
      run_epochs(straight, *opt_straight, *sched_straight, it_straight, 20);

      Generator g2(4);
      MLP first({4, 8, 3}, "gelu", g2, dt, 0.25);
      auto opt_first = make_optimizer(kind, first);
      auto sched_first = make_scheduler(kind, *opt_first);
      BatchIterator it_first(data, 8, true, 5);
      run_epochs(first, *opt_first, *sched_first, it_first, 10);
      save_safetensors(first, *opt_first, path, {.scheduler = sched_first.get(), .batches = &it_first});

      // Fresh objects: other weights, no optimiser state, the schedule at epoch 0, another shuffle
      // seed, other dropout streams.
      Generator g3(99);
      MLP resumed({4, 8, 3}, "gelu", g3, dt, 0.25);
      auto opt_resumed = make_optimizer(kind, resumed);
      auto sched_resumed = make_scheduler(kind, *opt_resumed);
      BatchIterator it_resumed(data, 8, true, 77);
      load_safetensors(resumed, *opt_resumed, path, {.scheduler = sched_resumed.get(), .batches = &it_resumed});
      REQUIRE(sched_resumed->epoch() == 10);
      REQUIRE(it_resumed.epochs() == 10);
      REQUIRE(opt_resumed->state_dict() == opt_first->state_dict());
      run_epochs(resumed, *opt_resumed, *sched_resumed, it_resumed, 10);
      INFO(opt_straight->type_name() << " " << sched_straight->type_name() << " " << dtype_name(dt));
      REQUIRE(bits(resumed) == bits(straight));
      REQUIRE(opt_resumed->state_dict() == opt_straight->state_dict());
      REQUIRE(sched_resumed->state_dict() == sched_straight->state_dict());
      REQUIRE(it_resumed.state_dict() == it_straight.state_dict());

      // The model file is a plain state_dict (what torch's load_state_dict(strict=True) takes)
      // plus the id; the training state is in the companion, moments as tensors.
      const SafetensorsFile model = read_safetensors(path);
      std::vector<std::string> file_names;
      for (const auto& [n, t] : model.tensors) file_names.push_back(n);
      auto own = names(first);
      std::sort(own.begin(), own.end());
      REQUIRE(file_names == own);
      REQUIRE(model.metadata.size() == 1);
      REQUIRE(model.metadata.count("tapegrad_checkpoint_id") == 1);
      const SafetensorsFile train = read_safetensors(safetensors_companion_path(path));
      REQUIRE(train.metadata.at("tapegrad_checkpoint_id") == model.metadata.at("tapegrad_checkpoint_id"));
      REQUIRE(train.metadata.at("format") == "tapegrad-training-state");
      for (const char* key : {"optimizer", "rng", "scheduler", "batch_iterator"}) REQUIRE(train.metadata.count(key) == 1);
      const char* moment = kind == 2 ? "optimizer.state.0.momentum_buffer" : "optimizer.state.0.exp_avg";
      REQUIRE(train.tensors.count(moment) == 1);
      REQUIRE(train.tensors.at(moment).shape() == first.parameters()[0].shape());
      REQUIRE(train.metadata.at("optimizer").find("\"values\"") == std::string::npos);  // no tensor in the JSON
    }
  }
  fs::remove_all(dir);
}

TEST_CASE("safetensors: a mismatched or damaged model/companion pair is refused; nothing changes",
          "[nn][safetensors]") {
  const fs::path dir = temp_dir("pair");
  const std::string a = (dir / "a.safetensors").string(), b = (dir / "b.safetensors").string();
  const Dataset data = resume_data(kFloat64);
  Generator gen(8);
  MLP net({4, 6, 3}, "relu", gen, kFloat64, 0.25);
  Adam opt(net.parameters(), {.lr = 0.01});
  StepLR sched(opt, 2);
  BatchIterator it(data, 8, true, 3);
  run_epochs(net, opt, sched, it, 2);
  save_safetensors(net, opt, a, {.scheduler = &sched, .batches = &it});
  run_epochs(net, opt, sched, it, 1);
  save_safetensors(net, opt, b, {.scheduler = &sched, .batches = &it});

  Generator gen2(9);
  MLP target({4, 6, 3}, "relu", gen2, kFloat64, 0.25);
  Adam target_opt(target.parameters(), {.lr = 0.5});
  StepLR target_sched(target_opt, 5);
  BatchIterator target_it(data, 8, true, 11);
  const auto before = bits(target);
  const auto opt_before = target_opt.state_dict();
  const auto sched_before = target_sched.state_dict();
  const auto it_before = target_it.state_dict();
  std::vector<Generator::State> rng_before;
  for (const auto& [n, g] : target.named_generators()) rng_before.push_back(g->state());
  auto expect = [&](const std::string& path, const std::vector<std::string>& fragments) {
    try {
      load_safetensors(target, target_opt, path, {.scheduler = &target_sched, .batches = &target_it});
      FAIL("expected a CheckpointError");
    } catch (const CheckpointError& e) {
      const std::string what = e.what();
      INFO(what);
      for (const auto& f : fragments) CHECK_THAT(what, Contains(f));
    }
    REQUIRE(bits(target) == before);
    REQUIRE(target_opt.state_dict() == opt_before);
    REQUIRE(target_sched.state_dict() == sched_before);
    REQUIRE(target_it.state_dict() == it_before);
    std::vector<Generator::State> rng;
    for (const auto& [n, g] : target.named_generators()) rng.push_back(g->state());
    REQUIRE(rng == rng_before);
  };
  const std::string ca = safetensors_companion_path(a), cb = safetensors_companion_path(b);
  const std::string a_train = read_bytes(ca);

  // b's training state next to a's model: the ids differ.
  fs::copy_file(cb, ca, fs::copy_options::overwrite_existing);
  expect(a, {"load_safetensors: '" + ca + "': ", "tapegrad_checkpoint_id", "in the model file '" + a + "'",
             "different saves"});
  write_bytes(ca, a_train);

  // A save that crashed between the two files (the companion is written first): detected.
  static int files_started = 0;
  files_started = 0;
  nn::detail::checkpoint_write_hook = [](std::size_t written) {
    if (written == 0 && ++files_started == 2) throw RuntimeError("simulated crash before the model file");
  };
  REQUIRE_THROWS_WITH(save_safetensors(net, opt, a, {.scheduler = &sched, .batches = &it}), Contains("simulated crash"));
  nn::detail::checkpoint_write_hook = nullptr;
  REQUIRE(read_bytes(ca) != a_train);
  expect(a, {"different saves", "interrupted"});
  write_bytes(ca, a_train);

  // The companion missing, truncated at every length, or with bad entries.
  fs::remove(ca);
  expect(a, {"load_safetensors: '" + ca + "': cannot open it"});
  for (std::size_t n = 0; n < a_train.size(); n += (n < 400 ? 1 : 97)) {
    write_bytes(ca, a_train.substr(0, n));
    INFO("companion prefix of " << n << " bytes");
    expect(a, {"load_safetensors: '" + ca + "': "});
  }
  write_bytes(ca, a_train);
  const SafetensorsFile good = read_safetensors(ca);
  auto rewrite = [&](std::map<std::string, Tensor> tensors, std::map<std::string, std::string> meta) {
    save_safetensors(tensors, ca, meta);
  };
  auto meta = good.metadata;
  meta["optimizer"] = "{not json";
  rewrite(good.tensors, meta);
  expect(a, {"__metadata__ \"optimizer\": not valid JSON"});
  meta = good.metadata;
  meta.erase("optimizer");
  rewrite(good.tensors, meta);
  expect(a, {"__metadata__: has no \"optimizer\" entry"});
  meta = good.metadata;
  meta["version"] = "2";
  rewrite(good.tensors, meta);
  expect(a, {"__metadata__: has version \"2\""});
  meta = good.metadata;
  meta["format"] = "pt";
  rewrite(good.tensors, meta);
  expect(a, {"not a tapegrad training state"});
  meta = good.metadata;
  meta["rng"] = R"({"2": [0, 0, 0, 0]})";
  rewrite(good.tensors, meta);
  expect(a, {"rng '2': the state is all zeros"});
  meta = good.metadata;
  meta["scheduler"] = R"({"type": "StepLR"})";
  rewrite(good.tensors, meta);
  expect(a, {"'" + ca + "': "});
  auto tensors = good.tensors;
  tensors["extra"] = ones({1});
  rewrite(tensors, good.metadata);
  expect(a, {"'extra': not referenced by the optimizer state"});
  tensors = good.tensors;
  tensors.erase("optimizer.state.1.exp_avg_sq");
  rewrite(tensors, good.metadata);
  expect(a, {"refers to tensor \"optimizer.state.1.exp_avg_sq\", which the file does not hold"});
  tensors = good.tensors;
  tensors["optimizer.state.1.exp_avg"] = zeros({7});
  rewrite(tensors, good.metadata);
  expect(a, {"state[1].exp_avg", "does not match its parameter"});
  tensors = good.tensors;
  tensors["optimizer.state.1.exp_avg_sq"] = full_like(tensors["optimizer.state.1.exp_avg_sq"], -1.0);
  rewrite(tensors, good.metadata);
  expect(a, {"state[1].exp_avg_sq", ">= 0"});
  meta = good.metadata;
  auto opt_json = nlohmann::json::parse(meta["optimizer"]);
  opt_json["state"][1]["exp_avg_sq"] = opt_json["state"][1]["exp_avg"];  // one tensor used twice
  meta["optimizer"] = opt_json.dump();
  rewrite(good.tensors, meta);
  expect(a, {"referenced twice"});
  write_bytes(ca, a_train);

  // A model file saved without training state, or damaged: named, nothing changes.
  save_safetensors(net, b);
  expect(b, {"load_safetensors: '" + b + "': __metadata__: has no \"tapegrad_checkpoint_id\"", "without training state"});
  const std::string model_bytes = read_bytes(a);
  write_bytes(a, model_bytes.substr(0, model_bytes.size() - 1));
  expect(a, {"load_safetensors: '" + a + "': "});
  write_bytes(a, model_bytes);

  // The good pair loads.
  load_safetensors(target, target_opt, a, {.scheduler = &target_sched, .batches = &target_it});
  REQUIRE(target_sched.epoch() == 2);
  fs::remove_all(dir);
}

TEST_CASE("safetensors: a failed write leaves the previous file intact and no temporary behind", "[nn][safetensors]") {
  const fs::path dir = temp_dir("atomic");
  const std::string path = (dir / "m.safetensors").string();
  Generator gen(10);
  MLP net({30, 64, 10}, "relu", gen);  // large enough for several write chunks
  save_safetensors(net, path);
  const std::string good = read_bytes(path);
  Generator gen2(11);
  MLP other({30, 64, 10}, "relu", gen2);
  nn::detail::checkpoint_write_hook = [](std::size_t written) {
    if (written > 0) throw RuntimeError("simulated: no space left on device");
  };
  REQUIRE_THROWS_WITH(save_safetensors(other, path), Contains("no space left"));
  Adam opt(other.parameters(), {});
  backward(sum(other(ones({2, 30}))));
  opt.step();  // moments: the companion (written first) has several pieces, and fails
  REQUIRE_THROWS_WITH(save_safetensors(other, opt, path), Contains("no space left"));
  nn::detail::checkpoint_write_hook = nullptr;
  REQUIRE(read_bytes(path) == good);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  REQUIRE(files == 1);
  fs::remove_all(dir);
}
