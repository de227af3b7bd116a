// SPDX-License-Identifier: MIT
#include "nn/checkpoint.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tapegrad::nn {

namespace detail {
void (*checkpoint_write_hook)(std::size_t) = nullptr;
}

nlohmann::json state_dict(const Module& module) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, t] : module.state()) j[name] = tensor_to_json(t);
  return j;
}

namespace {

// Parses every entry against the module's own tensors; returns the new values in state() order.
std::vector<Tensor> parse_state(const Module& module, const nlohmann::json& j) {
  if (!j.is_object()) throw CheckpointError("model state: expected an object of named tensors");
  const auto own = module.state();
  std::vector<Tensor> values;
  for (const auto& [name, t] : own) {
    if (!j.contains(name))
      throw CheckpointError(fmt::format("'{}': missing from the checkpoint (a different architecture?)", name));
    Tensor v = tensor_from_json(j.at(name), name);
    if (v.dtype() != t.dtype())
      throw CheckpointError(fmt::format("'{}': checkpoint has dtype {}, the model has {}", name, dtype_name(v.dtype()),
                                        dtype_name(t.dtype())));
    if (v.shape() != t.shape())
      throw CheckpointError(fmt::format("'{}': checkpoint has shape {}, the model has {} (a different architecture?)",
                                        name, v.shape(), t.shape()));
    values.push_back(std::move(v));
  }
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const auto& [name, t] : own) known = known || name == key;
    if (!known) throw CheckpointError(fmt::format("'{}': in the checkpoint but not in the model (a different architecture?)", key));
  }
  return values;
}

// Copies parsed values into the module's tensors (same shape and dtype: checked by parse_state).
void commit_state(const Module& module, const std::vector<Tensor>& values) {
  auto own = module.state();
  for (std::size_t i = 0; i < own.size(); ++i) {
    Tensor& t = own[i].second;
    dispatch_all(t.dtype(), [&]<class T>() { std::copy_n(values[i].data<T>(), t.numel(), t.mutable_data<T>()); });
  }
}

// Dropout's random streams: {"module name": [w0, w1, w2, w3]} (Generator::state()).
nlohmann::json rng_state(const Module& module) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, g] : module.named_generators()) j[name] = g->state();
  return j;
}

// The "rng" entry parsed against the module's generators, in named_generators() order. A
// checkpoint without one (written before streams were saved, or by hand) restores no stream.
std::optional<std::vector<Generator::State>> parse_rng(Module& module, const nlohmann::json& ckpt) {
  if (!ckpt.contains("rng")) return std::nullopt;
  const nlohmann::json& j = ckpt["rng"];
  if (!j.is_object()) throw CheckpointError("\"rng\": expected an object of named generator states");
  const auto own = module.named_generators();
  std::vector<Generator::State> states;
  for (const auto& [name, g] : own) {
    if (!j.contains(name))
      throw CheckpointError(fmt::format("rng '{}': the model's random stream is missing from the checkpoint (a different architecture?)", name));
    const nlohmann::json& v = j.at(name);
    Generator::State s{};
    bool ok = v.is_array() && v.size() == s.size();
    for (std::size_t i = 0; ok && i < s.size(); ++i) {
      ok = v[i].is_number_unsigned();
      if (ok) s[i] = v[i].get<std::uint64_t>();
    }
    if (!ok)
      throw CheckpointError(fmt::format("rng '{}': expected 4 unsigned 64-bit integers, got {}", name, v.dump()));
    if (s == Generator::State{}) throw CheckpointError(fmt::format("rng '{}': the state is all zeros (corrupted)", name));
    states.push_back(s);
  }
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const auto& [name, g] : own) known = known || name == key;
    if (!known) throw CheckpointError(fmt::format("rng '{}': in the checkpoint but the model has no such random stream (a different architecture?)", key));
  }
  return states;
}

void commit_rng(Module& module, const std::optional<std::vector<Generator::State>>& states) {
  if (!states) return;
  const auto own = module.named_generators();
  for (std::size_t i = 0; i < own.size(); ++i) own[i].second->set_state((*states)[i]);
}

nlohmann::json read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(fmt::format("load: cannot open '{}': {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw CheckpointError(fmt::format("load: '{}' is not valid JSON (truncated or corrupted?): {}", path, e.what()));
  }
  if (!j.is_object() || !j.contains("format") || j["format"] != "tapegrad-checkpoint")
    throw CheckpointError(fmt::format("load: '{}' is not a tapegrad checkpoint (no \"format\": \"tapegrad-checkpoint\")", path));
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != kCheckpointVersion)
    throw CheckpointError(fmt::format("load: '{}' has format version {}; this build reads version {}", path,
                                      j.contains("version") ? j["version"].dump() : "(missing)", kCheckpointVersion));
  if (!j.contains("model")) throw CheckpointError(fmt::format("load: '{}' has no \"model\" entry", path));
  return j;
}

std::string checkpoint_text(const Module& module, const Optimizer* optimizer) {
  nlohmann::json j;
  j["format"] = "tapegrad-checkpoint";
  j["version"] = kCheckpointVersion;
  j["model"] = state_dict(module);
  if (nlohmann::json rng = rng_state(module); !rng.empty()) j["rng"] = std::move(rng);
  if (optimizer) j["optimizer"] = optimizer->state_dict();
  return j.dump(1);
}

}  // namespace

void load_state_dict(Module& module, const nlohmann::json& state) { commit_state(module, parse_state(module, state)); }

void write_file_atomically(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string tmpl = (dir / fmt::format(".{}.tmp.XXXXXX", target.filename().string())).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw RuntimeError(fmt::format("save: cannot create a temporary file in '{}': {}", dir.string(), std::strerror(errno)));
  bool closed = false;
  auto fail = [&](const std::string& what) {
    const int err = errno;
    closed = true;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return RuntimeError(fmt::format("save: {} '{}': {}; the previous file at '{}' is unchanged", what, tmpl,
                                    std::strerror(err), path));
  };
  std::size_t written = 0;
  try {
    while (written < text.size()) {
      if (detail::checkpoint_write_hook) detail::checkpoint_write_hook(written);
      const std::size_t chunk = std::min<std::size_t>(text.size() - written, 1 << 16);
      const ssize_t n = ::write(fd, text.data() + written, chunk);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw fail("writing");
      }
      written += static_cast<std::size_t>(n);
    }
  } catch (...) {
    if (!closed) {
      ::close(fd);
      ::unlink(tmpl.c_str());
    }
    throw;
  }
  if (::fsync(fd) != 0) throw fail("flushing");
  if (::close(fd) != 0) {
    ::unlink(tmpl.c_str());
    throw RuntimeError(fmt::format("save: closing '{}' failed: {}", tmpl, std::strerror(errno)));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmpl.c_str());
    throw RuntimeError(fmt::format("save: cannot rename '{}' to '{}': {}", tmpl, path, std::strerror(err)));
  }
}

void save(const Module& module, const std::string& path) { write_file_atomically(path, checkpoint_text(module, nullptr)); }

void save(const Module& module, const Optimizer& optimizer, const std::string& path) {
  write_file_atomically(path, checkpoint_text(module, &optimizer));
}

void load(Module& module, const std::string& path) {
  const nlohmann::json j = read_checkpoint(path);
  const std::vector<Tensor> values = parse_state(module, j["model"]);
  const auto rng = parse_rng(module, j);
  commit_state(module, values);
  commit_rng(module, rng);
}

void load(Module& module, Optimizer& optimizer, const std::string& path) {
  const nlohmann::json j = read_checkpoint(path);
  std::vector<Tensor> values = parse_state(module, j["model"]);
  const auto rng = parse_rng(module, j);
  if (!j.contains("optimizer")) throw CheckpointError(fmt::format("load: '{}' has no optimizer state", path));
  // The optimiser validates its whole state before changing anything; if it throws, the model
  // has not been touched yet either.
  optimizer.load_state_dict(j["optimizer"]);
  commit_state(module, values);
  commit_rng(module, rng);
}

}  // namespace tapegrad::nn
