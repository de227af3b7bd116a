// SPDX-License-Identifier: MIT
#include "nn/checkpoint.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace tapegrad::nn {

namespace detail {
void (*checkpoint_write_hook)(std::size_t) = nullptr;

// Dropout's random streams: {"module name": [w0, w1, w2, w3]} (Generator::state()).
nlohmann::json rng_state(const Module& module) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, g] : module.named_generators()) j[name] = g->state();
  return j;
}

std::vector<Generator::State> parse_rng_state(Module& module, const nlohmann::json& j) {
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

void commit_rng_state(Module& module, const std::vector<Generator::State>& states) {
  const auto own = module.named_generators();
  for (std::size_t i = 0; i < own.size(); ++i) own[i].second->set_state(states[i]);
}
}  // namespace detail

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

// The "rng" entry parsed against the module's generators, in named_generators() order. A
// checkpoint without one (written before streams were saved, or by hand) restores no stream.
std::optional<std::vector<Generator::State>> parse_rng(Module& module, const nlohmann::json& ckpt) {
  if (!ckpt.contains("rng")) return std::nullopt;
  return detail::parse_rng_state(module, ckpt["rng"]);
}

void commit_rng(Module& module, const std::optional<std::vector<Generator::State>>& states) {
  if (states) detail::commit_rng_state(module, *states);
}

// Errors below name the entry; load() adds the file.
nlohmann::json read_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(fmt::format("cannot open it: {}", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  if (const auto f = detail::parse_json(ss.str(), j, false)) {
    if (f->kind == detail::JsonParseFailure::Kind::NumberOverflow)
      throw CheckpointError(fmt::format("the number {} at {} does not fit in a double (|x| <= 1.8e308)", f->token, f->where));
    throw CheckpointError(fmt::format("not valid JSON (truncated or corrupted?) at byte {}, near {}: {}", f->position,
                                      f->where, f->what));
  }
  if (!j.is_object() || !j.contains("format") || j["format"] != "tapegrad-checkpoint")
    throw CheckpointError("not a tapegrad checkpoint (no \"format\": \"tapegrad-checkpoint\")");
  // Exactly the integer 1: 1.5, 1e30, -1, "1" or 4294967297 (which an int would truncate to 1) are not.
  const bool version_ok = j.contains("version") && j["version"].is_number_unsigned() &&
                          j["version"].get<std::uint64_t>() == static_cast<std::uint64_t>(kCheckpointVersion);
  if (!version_ok)
    throw CheckpointError(fmt::format("has format version {}; this build reads format version {} (\"version\" must be "
                                      "the integer {})", j.contains("version") ? j["version"].dump() : "(missing)",
                                      kCheckpointVersion, kCheckpointVersion));
  if (!j.contains("model")) throw CheckpointError("has no \"model\" entry");
  return j;
}

// Runs f, turning every failure into a CheckpointError that starts with the file.
template <class F>
auto naming_file(const std::string& path, F f) {
  auto wrap = [&](const char* what) { return CheckpointError(fmt::format("load: '{}': {}", path, what)); };
  try {
    return f();
  } catch (const CheckpointError& e) {
    throw wrap(e.what());
  } catch (const InvalidArgument& e) {
    throw wrap(e.what());
  } catch (const nlohmann::json::exception& e) {
    throw wrap(e.what());
  }
}

std::string checkpoint_text(const Module& module, const Optimizer* optimizer, const CheckpointExtras& extras) {
  nlohmann::json j;
  j["format"] = "tapegrad-checkpoint";
  j["version"] = kCheckpointVersion;
  j["model"] = state_dict(module);
  if (nlohmann::json rng = detail::rng_state(module); !rng.empty()) j["rng"] = std::move(rng);
  if (optimizer) j["optimizer"] = optimizer->state_dict();
  if (extras.scheduler) j["scheduler"] = extras.scheduler->state_dict();
  if (extras.batches) j["batch_iterator"] = extras.batches->state_dict();
  return j.dump(1);
}

// Temporaries: ".<file>.tmp.<pid>.<6 of [A-Za-z0-9]>". The writer's pid in the name is what lets a
// later save decide whether a temporary is garbage.
std::string temp_prefix(const std::string& file) { return fmt::format(".{}.tmp.", file); }

bool parse_temp_name(const std::string& name, const std::string& prefix, pid_t& pid) {
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string rest = name.substr(prefix.size());  // "<pid>.<6 chars>"
  const auto dot = rest.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 10 || rest.size() != dot + 7) return false;
  long long v = 0;
  for (std::size_t i = 0; i < dot; ++i) {
    if (rest[i] < '0' || rest[i] > '9') return false;
    v = v * 10 + (rest[i] - '0');
  }
  for (std::size_t i = dot + 1; i < rest.size(); ++i)
    if (!std::isalnum(static_cast<unsigned char>(rest[i]))) return false;
  if (v <= 0 || v > std::numeric_limits<pid_t>::max()) return false;
  pid = static_cast<pid_t>(v);
  return true;
}

// When the process `pid` started, in seconds since the epoch (Linux /proc), if known.
std::optional<double> process_start_time(pid_t pid) {
  std::ifstream stat_file(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat_file, line)) return std::nullopt;
  const auto paren = line.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(paren + 1));
  std::string field;
  unsigned long long start_ticks = 0;
  for (int i = 3; i <= 22 && fields >> field; ++i)  // field 22: starttime, clock ticks after boot
    if (i == 22) start_ticks = std::strtoull(field.c_str(), nullptr, 10);
  if (start_ticks == 0) return std::nullopt;
  std::ifstream proc_stat("/proc/stat");
  long long boot = -1;
  while (std::getline(proc_stat, line))
    if (line.rfind("btime ", 0) == 0) boot = std::atoll(line.c_str() + 6);
  const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
  if (boot < 0 || ticks_per_second <= 0) return std::nullopt;
  return static_cast<double>(boot) + static_cast<double>(start_ticks) / static_cast<double>(ticks_per_second);
}

// mkstemp's names, used by tapegrad before the pid was part of the name: prefix + 6 of [A-Za-z0-9].
constexpr double kLegacyStaleSeconds = 600;
bool is_legacy_temp_name(const std::string& name, const std::string& prefix) {
  if (name.size() != prefix.size() + 6 || name.compare(0, prefix.size(), prefix) != 0) return false;
  for (std::size_t i = prefix.size(); i < name.size(); ++i)
    if (!std::isalnum(static_cast<unsigned char>(name[i]))) return false;
  return true;
}

// Removes temporaries of `target` that crashed saves left behind. Only names of exactly our
// pattern for this target are considered, and one is removed only when its writer cannot be
// running any more:
//   - no process has its pid (kill(pid, 0) fails with ESRCH): the writer is gone; or
//   - a process has the pid but started more than 2 s after the temporary was last written
//     (/proc/<pid>/stat): the pid was reused, the writer is gone.
// Everything else is kept: a temporary of this process (another thread may be saving the same
// target right now), and one whose writer may be alive. "Older than this save's start" alone is
// not a safe rule: a concurrent writer that started earlier has an older temporary, and removing
// it would make its rename fail. (Across pid namespaces sharing a directory a pid may name another
// process; such a temporary is then kept, never wrongly removed, unless that pid is free here.)
// Best effort: a temporary that cannot be removed (or that another saver removed first) is skipped.
void remove_stale_temporaries(const std::filesystem::path& dir, const std::string& file) {
  namespace fs = std::filesystem;
  const std::string prefix = temp_prefix(file);
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return;
  for (const auto& entry : it) {
    pid_t pid = 0;
    const std::string name = entry.path().filename().string();
    if (is_legacy_temp_name(name, prefix)) {
      // Written by a build before the pid was in the name (mkstemp's ".<file>.tmp.XXXXXX"): no
      // writer to ask, so only one untouched for 10 minutes is taken as stale (a save writes its
      // temporary continuously and renames it within seconds).
      struct stat st {};
      if (::lstat(entry.path().c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          static_cast<double>(st.st_mtime) + kLegacyStaleSeconds < static_cast<double>(std::time(nullptr)))
        ::unlink(entry.path().c_str());
      continue;
    }
    if (!parse_temp_name(name, prefix, pid) || pid == ::getpid()) continue;
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    bool stale = ::kill(pid, 0) != 0 && errno == ESRCH;
    if (!stale) {
      const auto started = process_start_time(pid);
      stale = started && static_cast<double>(st.st_mtime) + 2.0 < *started;
    }
    if (stale) ::unlink(entry.path().c_str());
  }
}

// Creates the temporary with O_EXCL and mode 0666, so the kernel applies the umask (and a default
// ACL) as for any new file; mkstemp would give 0600.
int create_temporary(const std::filesystem::path& dir, const std::string& file, std::string& name) {
  static std::atomic<std::uint64_t> counter{0};
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::uint64_t x = (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^
                    static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                    (counter.fetch_add(1) * 0x9E3779B97F4A7C15ULL);
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string suffix;
    for (int k = 0; k < 6; ++k) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
      suffix += kChars[x % 62];
    }
    name = (dir / fmt::format("{}{}.{}", temp_prefix(file), ::getpid(), suffix)).string();
    const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

}  // namespace

void load_state_dict(Module& module, const nlohmann::json& state) { commit_state(module, parse_state(module, state)); }

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::span<const char> piece(text.data(), text.size());
  write_file_atomically(path, std::span<const std::span<const char>>(&piece, 1));
}

void write_file_atomically(const std::string& path, std::span<const std::span<const char>> pieces, const char* who) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string file = target.filename().string();
  remove_stale_temporaries(dir, file);
  std::string tmpl;
  const int fd = create_temporary(dir, file, tmpl);
  if (fd < 0)
    throw RuntimeError(fmt::format("{}: cannot create a temporary file in '{}': {}", who, dir.string(), std::strerror(errno)));
  bool closed = false;
  auto fail = [&](const std::string& what) {
    const int err = errno;
    closed = true;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return RuntimeError(fmt::format("{}: {} '{}': {}; the previous file at '{}' is unchanged", who, what, tmpl,
                                    std::strerror(err), path));
  };
  std::size_t written = 0;  // over all pieces, for the test hook
  try {
    for (const std::span<const char> piece : pieces) {
      std::size_t done = 0;
      while (done < piece.size()) {
        if (detail::checkpoint_write_hook) detail::checkpoint_write_hook(written);
        const std::size_t chunk = std::min<std::size_t>(piece.size() - done, 1 << 16);
        const ssize_t n = ::write(fd, piece.data() + done, chunk);
        if (n < 0) {
          if (errno == EINTR) continue;
          throw fail("writing");
        }
        done += static_cast<std::size_t>(n);
        written += static_cast<std::size_t>(n);
      }
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
    throw RuntimeError(fmt::format("{}: closing '{}' failed: {}", who, tmpl, std::strerror(errno)));
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmpl.c_str());
    throw RuntimeError(fmt::format("{}: cannot rename '{}' to '{}': {}", who, tmpl, path, std::strerror(err)));
  }
}

void save(const Module& module, const std::string& path) { write_file_atomically(path, checkpoint_text(module, nullptr, {})); }

void save(const Module& module, const Optimizer& optimizer, const std::string& path, const CheckpointExtras& extras) {
  write_file_atomically(path, checkpoint_text(module, &optimizer, extras));
}

void load(Module& module, const std::string& path) {
  naming_file(path, [&] {
    const nlohmann::json j = read_checkpoint(path);
    const std::vector<Tensor> values = parse_state(module, j["model"]);
    const auto rng = parse_rng(module, j);
    commit_state(module, values);
    commit_rng(module, rng);
  });
}

void load(Module& module, Optimizer& optimizer, const std::string& path, const CheckpointExtras& extras) {
  naming_file(path, [&] {
    const nlohmann::json j = read_checkpoint(path);
    std::vector<Tensor> values = parse_state(module, j["model"]);
    const auto rng = parse_rng(module, j);
    if (!j.contains("optimizer")) throw CheckpointError("has no optimizer state");
    // Each entry is checked before anything changes. The optimiser checks its whole state
    // before it changes anything, and goes last among the checks: after it, nothing can throw.
    const bool with_scheduler = extras.scheduler && j.contains("scheduler");
    const bool with_batches = extras.batches && j.contains("batch_iterator");
    if (with_scheduler) extras.scheduler->check_state_dict(j["scheduler"]);
    if (with_batches) extras.batches->check_state_dict(j["batch_iterator"]);
    optimizer.load_state_dict(j["optimizer"]);
    if (with_scheduler) extras.scheduler->load_state_dict(j["scheduler"]);
    if (with_batches) extras.batches->load_state_dict(j["batch_iterator"]);
    commit_state(module, values);
    commit_rng(module, rng);
  });
}

}  // namespace tapegrad::nn
