// SPDX-License-Identifier: MIT
#include "nn/safetensors.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string_view>
#include <tuple>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

namespace tapegrad::nn {

// The format's bytes are little-endian, and save/load copy tensors' bytes exactly as they lie in
// memory: this is only right on a little-endian host (x86-64, AArch64 as Linux runs it).
static_assert(std::endian::native == std::endian::little, "safetensors I/O copies raw bytes: little-endian hosts only");

namespace {

using nlohmann::json;

// huggingface/safetensors (tensor.rs, MAX_HEADER_SIZE) refuses headers above 100,000,000 bytes.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
// The training-state (companion) file's __metadata__ and the key both files share.
constexpr const char* kTrainingFormat = "tapegrad-training-state";
constexpr const char* kTrainingVersion = "1";
constexpr const char* kIdKey = "tapegrad_checkpoint_id";

enum class Encoding { Raw, F16, BF16 };  // how the file's bytes become the tensor's

struct FileDType {
  const char* name;
  DType dtype;          // what the tensor is in memory (F16 and BF16 widen to float32)
  std::size_t itemsize; // bytes per element in the file
  Encoding encoding;
};

constexpr FileDType kReadable[] = {
    {"F64", kFloat64, 8, Encoding::Raw}, {"F32", kFloat32, 4, Encoding::Raw},   {"F16", kFloat32, 2, Encoding::F16},
    {"BF16", kFloat32, 2, Encoding::BF16}, {"I64", kInt64, 8, Encoding::Raw}, {"BOOL", kBool, 1, Encoding::Raw}};
// The rest of the format's dtypes: named as unsupported rather than unknown.
constexpr const char* kUnsupported[] = {"I32", "I16", "I8", "U8", "U16", "U32", "U64", "C64", "F8_E5M2",
                                        "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"};

const char* file_dtype_name(DType d) {
  switch (d) {
    case DType::Float64: return "F64";
    case DType::Int64: return "I64";
    case DType::Bool: return "BOOL";
    case DType::Float32: break;
  }
  return "F32";
}

// The reference writer's order: alignment descending (its dtype enum order: I64 > F64 > F32 >
// BOOL), then name.
int write_rank(DType d) {
  switch (d) {
    case DType::Int64: return 0;
    case DType::Float64: return 1;
    case DType::Float32: return 2;
    case DType::Bool: return 3;
  }
  return 4;
}

// A JSON value shown in an error, cut short (a corrupted header may hold megabytes).
std::string brief(const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Runs f, turning every failure into a CheckpointError "<who>: '<path>': <what>".
template <class F>
auto naming_file(const char* who, const std::string& path, F f) {
  auto wrap = [&](const char* what) { return CheckpointError(fmt::format("{}: '{}': {}", who, path, what)); };
  try {
    return f();
  } catch (const CheckpointError& e) {
    throw wrap(e.what());
  } catch (const InvalidArgument& e) {
    throw wrap(e.what());
  } catch (const json::exception& e) {
    throw wrap(e.what());
  }
}

// ---------------------------------------------------------------- reading

struct Entry {
  std::string name;
  const FileDType* dtype = nullptr;
  Shape shape;
  std::uint64_t begin = 0, end = 0;  // data_offsets, relative to the data area
};

struct Contents {
  std::unique_ptr<char[]> bytes;  // the whole file, read at once
  std::uint64_t size = 0;
  std::uint64_t data_start = 0;   // 8 + header length
  std::vector<Entry> entries;     // sorted by name
  std::map<std::string, std::string> metadata;

  const char* data(const Entry& e) const { return bytes.get() + data_start + e.begin; }
  const Entry* find(const std::string& name) const {
    const auto it = std::lower_bound(entries.begin(), entries.end(), name,
                                     [](const Entry& e, const std::string& n) { return e.name < n; });
    return it != entries.end() && it->name == name ? &*it : nullptr;
  }
};

// One read of the whole file (no mmap: a file truncated by another process while mapped would
// kill us with SIGBUS; a read just comes up short, which we report).
void read_whole_file(const std::string& path, Contents& c) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw CheckpointError(fmt::format("cannot open it: {}", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw CheckpointError(fmt::format("cannot stat it: {}", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw CheckpointError("is not a regular file");
  c.size = static_cast<std::uint64_t>(st.st_size);
  c.bytes = std::make_unique_for_overwrite<char[]>(static_cast<std::size_t>(std::max<std::uint64_t>(c.size, 1)));
  std::uint64_t done = 0;
  while (done < c.size) {
    const ssize_t n = ::read(fd, c.bytes.get() + done, static_cast<std::size_t>(c.size - done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw CheckpointError(fmt::format("reading failed after {} of {} bytes: {}", done, c.size, std::strerror(errno)));
    }
    if (n == 0) throw CheckpointError(fmt::format("the file shrank while being read ({} of {} bytes)", done, c.size));
    done += static_cast<std::uint64_t>(n);
  }
}

Entry parse_entry(const std::string& name, const json& v, std::uint64_t data_size) {
  auto fail = [&](const std::string& what) { return CheckpointError(fmt::format("'{}': {}", name, what)); };
  if (!v.is_object()) throw fail(fmt::format("expected an object with dtype, shape and data_offsets, got {}", brief(v)));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) throw fail(fmt::format("missing field \"{}\"", field));
  Entry e;
  e.name = name;
  const json& dt = v["dtype"];
  if (!dt.is_string()) throw fail(fmt::format("dtype is {}; expected a string such as \"F32\"", brief(dt)));
  const std::string dts = dt.get<std::string>();
  for (const FileDType& f : kReadable)
    if (dts == f.name) e.dtype = &f;
  if (!e.dtype) {
    const bool known = std::any_of(std::begin(kUnsupported), std::end(kUnsupported), [&](const char* n) { return dts == n; });
    throw fail(fmt::format("{} dtype {}; tapegrad reads F64, F32, F16, BF16 (as float32), I64 and BOOL",
                           known ? "unsupported" : "unknown", brief(dt)));
  }
  const json& sh = v["shape"];
  if (!sh.is_array()) throw fail(fmt::format("shape is {}; expected a list of sizes", brief(sh)));
  if (sh.size() > static_cast<std::size_t>(kMaxRank))
    throw fail(fmt::format("shape {} has {} dimensions; tapegrad tensors have at most {}", brief(sh), sh.size(), kMaxRank));
  // Sizes multiplied with an overflow check (the zeros left out, so [0, 2^62, 2^62] cannot wrap).
  std::vector<std::int64_t> dims;
  std::uint64_t numel = 1;
  bool has_zero = false;
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (const json& d : sh) {
    if (!d.is_number_unsigned() || d.get<std::uint64_t>() > kMax)
      throw fail(fmt::format("shape {}: every size must be an integer >= 0", brief(sh)));
    const std::uint64_t size = d.get<std::uint64_t>();
    if (size == 0) has_zero = true;
    else if (numel > kMax / size) throw fail(fmt::format("shape {} has more elements than a 64-bit count holds", brief(sh)));
    else numel *= size;
    dims.push_back(static_cast<std::int64_t>(size));
  }
  if (has_zero) numel = 0;
  e.shape = Shape(dims);
  if (numel > kMax / e.dtype->itemsize)
    throw fail(fmt::format("shape {} of {} has more bytes than a 64-bit count holds", brief(sh), e.dtype->name));
  const std::uint64_t bytes = numel * e.dtype->itemsize;
  const json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    throw fail(fmt::format("data_offsets is {}; expected [begin, end], two integers >= 0", brief(off)));
  e.begin = off[0].get<std::uint64_t>();
  e.end = off[1].get<std::uint64_t>();
  if (e.begin > e.end) throw fail(fmt::format("data_offsets [{}, {}]: begin > end; expected begin <= end", e.begin, e.end));
  if (e.end > data_size)
    throw fail(fmt::format("data_offsets [{}, {}] run past the end of the data area, which holds {} bytes (truncated?)",
                           e.begin, e.end, data_size));
  if (e.end - e.begin != bytes)
    throw fail(fmt::format("data_offsets [{}, {}] hold {} bytes; shape {} of {} needs {} ({} elements of {} bytes)",
                           e.begin, e.end, e.end - e.begin, e.shape, e.dtype->name, bytes, numel, e.dtype->itemsize));
  return e;
}

// The reference reader's rule (tensor.rs, Metadata::validate and read_metadata): taken in order of
// their offsets, the tensors cover the data area from 0 to its end exactly, each starting where the
// previous one ends: no overlap, no hole, no trailing bytes.
void check_layout(const std::vector<Entry>& entries, std::uint64_t data_size) {
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  std::uint64_t covered = 0;
  const Entry* last = nullptr;  // the last tensor with bytes
  for (const Entry* e : order) {
    if (e->begin < covered)
      throw CheckpointError(fmt::format("'{}': data_offsets [{}, {}] overlap those of '{}' [{}, {}]; expected begin = {} "
                                        "(each tensor has its own bytes)", e->name, e->begin, e->end, last->name,
                                        last->begin, last->end, covered));
    if (e->begin > covered)
      throw CheckpointError(fmt::format("'{}': data_offsets [{}, {}] leave bytes [{}, {}) of the data area unused (a "
                                        "hole); expected begin = {}", e->name, e->begin, e->end, covered, e->begin, covered));
    covered = e->end;
    if (e->end > e->begin) last = e;
  }
  if (covered != data_size)
    throw CheckpointError(fmt::format("data area: {} bytes after the header, but the tensors cover only the first {} "
                                      "(trailing bytes; expected the file to end after the last tensor)", data_size, covered));
}

// Parses and validates everything; what it returns can be copied from without further checks.
Contents read_contents(const std::string& path) {
  Contents c;
  read_whole_file(path, c);
  if (c.size < 8)
    throw CheckpointError(fmt::format("the file is {} bytes long; a safetensors file starts with an 8-byte header length "
                                      "(truncated, or not a safetensors file?)", c.size));
  std::uint64_t n = 0;
  std::memcpy(&n, c.bytes.get(), 8);  // little-endian (static_assert above)
  if (n == 0) throw CheckpointError("header length: 0; expected the length of the JSON header that follows (>= 2)");
  if (n > kMaxHeaderBytes)
    throw CheckpointError(fmt::format("header length: {} bytes, above the format's limit of {} (corrupted, or not a "
                                      "safetensors file?)", n, kMaxHeaderBytes));
  if (n > c.size - 8)
    throw CheckpointError(fmt::format("header length: {} bytes, but only {} bytes follow the length field (truncated?)", n,
                                      c.size - 8));
  c.data_start = 8 + n;
  json root;
  const char* h = c.bytes.get() + 8;
  // nlohmann's lexer takes a NUL for the end of the input and would ignore what follows; JSON
  // text never holds a raw NUL (strings escape control characters).
  if (const void* nul = std::memchr(h, '\0', static_cast<std::size_t>(n)))
    throw CheckpointError(fmt::format("header: a NUL byte at byte {} of the header; expected UTF-8 JSON padded with spaces",
                                      static_cast<const char*>(nul) - h));
  if (const auto f = detail::parse_json(std::string_view(h, static_cast<std::size_t>(n)), root, true)) {
    if (f->kind == detail::JsonParseFailure::Kind::DuplicateKey)
      throw CheckpointError(f->at_top ? fmt::format("'{}': the name appears twice in the header (each tensor once)", f->token)
                                      : fmt::format("'{}': the field \"{}\" appears twice", f->top_key, f->token));
    throw CheckpointError(fmt::format("header: not valid JSON (byte {} of the header; truncated or corrupted?): {}",
                                      f->position, f->what));
  }
  if (!root.is_object()) throw CheckpointError(fmt::format("header: expected a JSON object of named tensors, got {}", brief(root)));
  const std::uint64_t data_size = c.size - c.data_start;
  for (const auto& [key, v] : root.items()) {
    if (key == "__metadata__") {
      if (!v.is_object()) throw CheckpointError(fmt::format("__metadata__: expected an object of strings, got {}", brief(v)));
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string())
          throw CheckpointError(fmt::format("__metadata__: \"{}\" is {}; expected a string (the format's metadata maps "
                                            "strings to strings)", mk, brief(mv)));
        c.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    c.entries.push_back(parse_entry(key, v, data_size));  // items() are in name order
  }
  check_layout(c.entries, data_size);
  for (const Entry& e : c.entries) {
    if (e.dtype->dtype != kBool) continue;
    const auto* p = reinterpret_cast<const unsigned char*>(c.data(e));
    for (std::uint64_t i = 0; i < e.end - e.begin; ++i)
      if (p[i] > 1)
        throw CheckpointError(fmt::format("'{}': element {} is the byte {}; a BOOL is 0 or 1", e.name, i, p[i]));
  }
  return c;
}

// IEEE half -> float, exactly (every half is a float).
float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));  // inf, NaN (payload kept)
  if (exp == 0) {  // zero and subnormals: mant * 2^-24
    const float f = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -f : f;
  }
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));  // rebias 15 -> 127
}

// A tensor's bytes, for the raw reads and writes of the format (through the typed accessors, which
// check the dtype).
void* bytes_of(Tensor& t) {
  return dispatch_all(t.dtype(), [&]<class T>() -> void* { return t.mutable_data<T>(); });
}
const void* bytes_of(const Tensor& t) {
  return dispatch_all(t.dtype(), [&]<class T>() -> const void* { return t.data<T>(); });
}

// Copies (or widens) entry e's bytes into dst, which holds e's numel elements of e.dtype->dtype.
void copy_entry(const Contents& c, const Entry& e, void* dst) {
  const char* src = c.data(e);
  const std::uint64_t bytes = e.end - e.begin;
  const std::uint64_t count = bytes / e.dtype->itemsize;
  auto* out = static_cast<float*>(dst);
  switch (e.dtype->encoding) {
    case Encoding::Raw:
      if (bytes) std::memcpy(dst, src, static_cast<std::size_t>(bytes));
      return;
    case Encoding::F16:
      for (std::uint64_t i = 0; i < count; ++i) {
        std::uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = half_to_float(h);
      }
      return;
    case Encoding::BF16:  // the top half of a float32
      for (std::uint64_t i = 0; i < count; ++i) {
        std::uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
      }
      return;
  }
}

Tensor make_tensor(const Contents& c, const Entry& e) {
  Tensor t = Tensor::empty(e.shape, e.dtype->dtype, "load_safetensors");
  copy_entry(c, e, bytes_of(t));
  return t;
}

std::string name_list(const std::vector<std::string>& names) {
  std::string out;
  const std::size_t shown = std::min<std::size_t>(names.size(), 8);
  for (std::size_t i = 0; i < shown; ++i) out += fmt::format("{}'{}'", i ? ", " : "", names[i]);
  if (names.size() > shown) out += fmt::format(" and {} more", names.size() - shown);
  return out;
}

// The file's entry for each of the module's tensors, in state() order; strict.
std::vector<const Entry*> match_module(const Module& module, const Contents& c) {
  const auto own = module.state();
  std::vector<const Entry*> plan;
  std::vector<std::string> missing, extra;
  for (const auto& [name, t] : own) {
    const Entry* e = c.find(name);
    if (!e) missing.push_back(name);
    plan.push_back(e);
  }
  for (const Entry& e : c.entries) {
    const bool known = std::any_of(own.begin(), own.end(), [&](const NamedTensor& nt) { return nt.first == e.name; });
    if (!known) extra.push_back(e.name);
  }
  if (!missing.empty() || !extra.empty()) {
    std::string what = "the file's tensors do not match the model's state_dict (a different architecture?):";
    if (!missing.empty()) what += fmt::format(" missing from the file: {};", name_list(missing));
    if (!extra.empty()) what += fmt::format(" in the file but not in the model: {};", name_list(extra));
    what.pop_back();
    throw CheckpointError(what);
  }
  for (std::size_t i = 0; i < own.size(); ++i) {
    const Tensor& t = own[i].second;
    const Entry& e = *plan[i];
    if (e.dtype->dtype != t.dtype())
      throw CheckpointError(fmt::format("'{}': the file has {}{}, the model has {} (convert the model with to() or save "
                                        "the file in the model's dtype)", e.name, e.dtype->name,
                                        e.dtype->encoding == Encoding::Raw ? "" : " (read as float32)",
                                        dtype_name(t.dtype())));
    if (e.shape != t.shape())
      throw CheckpointError(fmt::format("'{}': the file has shape {}, the model has {} (a different architecture?)", e.name,
                                        e.shape, t.shape()));
  }
  return plan;
}

void commit_module(const Module& module, const Contents& c, const std::vector<const Entry*>& plan) {
  auto own = module.state();
  for (std::size_t i = 0; i < own.size(); ++i) copy_entry(c, *plan[i], bytes_of(own[i].second));
}

// ---------------------------------------------------------------- writing

std::string quoted(const std::string& s, const char* what) {
  try {
    return json(s).dump();
  } catch (const json::type_error&) {
    throw InvalidArgument(fmt::format("save_safetensors: {} {} is not valid UTF-8 (the header is UTF-8 JSON)", what,
                                      json(s).dump(-1, ' ', false, json::error_handler_t::replace)));
  }
}

// Writes `tensors` (sorted as the reference writer sorts them) and `metadata` to `path`, atomically.
void write_safetensors(std::vector<NamedTensor> tensors, const std::map<std::string, std::string>& metadata,
                       const std::string& path) {
  for (const auto& [name, t] : tensors) {
    if (!t.defined()) throw InvalidArgument(fmt::format("save_safetensors: tensor '{}' is undefined", name));
    if (name == "__metadata__")
      throw InvalidArgument("save_safetensors: a tensor cannot be named '__metadata__' (the format's metadata key)");
  }
  std::sort(tensors.begin(), tensors.end(), [](const NamedTensor& a, const NamedTensor& b) {
    const int ra = write_rank(a.second.dtype()), rb = write_rank(b.second.dtype());
    return ra != rb ? ra < rb : a.first < b.first;
  });
  // The reference writer's JSON: compact, "__metadata__" first (left out when there is none),
  // then each tensor as {"dtype", "shape", "data_offsets"} in data order.
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) header += quoted(k, "metadata key") + ":" + quoted(v, "metadata value") + ",";
    header.back() = '}';
  }
  std::uint64_t offset = 0;
  std::vector<std::span<const char>> pieces(1);
  for (const auto& [name, t] : tensors) {
    const auto bytes = static_cast<std::uint64_t>(t.numel()) * dtype_size(t.dtype());
    if (header.size() > 1) header += ",";
    header += fmt::format("{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", quoted(name, "tensor name"),
                          file_dtype_name(t.dtype()), fmt::join(t.shape().begin(), t.shape().end(), ","), offset,
                          offset + bytes);
    if (bytes) pieces.emplace_back(static_cast<const char*>(bytes_of(t)), static_cast<std::size_t>(bytes));
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data area starts 8-byte aligned
  if (header.size() > kMaxHeaderBytes)
    throw InvalidArgument(fmt::format("save_safetensors: the header would be {} bytes, above the format's limit of {}",
                                      header.size(), kMaxHeaderBytes));
  std::string head(8, '\0');
  const std::uint64_t n = header.size();
  std::memcpy(head.data(), &n, 8);
  head += header;
  pieces[0] = std::span<const char>(head.data(), head.size());
  write_file_atomically(path, pieces, "save_safetensors");
}

std::vector<NamedTensor> as_named(const std::map<std::string, Tensor>& tensors) {
  return {tensors.begin(), tensors.end()};
}

// 128 random bits as hex: ties a model file to the companion written by the same save.
std::string new_checkpoint_id() {
  static std::atomic<std::uint64_t> counter{0};
  std::random_device rd;
  std::uint64_t a = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  std::uint64_t b = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  a ^= static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  b ^= counter.fetch_add(1) * 0x9E3779B97F4A7C15ULL ^ static_cast<std::uint64_t>(::getpid());
  return fmt::format("{:016x}{:016x}", a, b);
}

// The optimiser's state JSON holds {"tensor": <index>} for each tensor; the file names each by
// its place in that JSON ("optimizer.state.0.exp_avg") and the JSON then holds the name.
void name_tensors(json& j, const std::string& prefix, const std::vector<Tensor>& tensors, std::vector<NamedTensor>& out) {
  if (j.is_object() && j.size() == 1 && j.contains("tensor") && j["tensor"].is_number_unsigned()) {
    out.emplace_back(prefix, tensors.at(j["tensor"].get<std::size_t>()));
    j["tensor"] = prefix;
    return;
  }
  if (j.is_object())
    for (auto& [k, v] : j.items()) name_tensors(v, prefix + "." + k, tensors, out);
  else if (j.is_array())
    for (std::size_t i = 0; i < j.size(); ++i) name_tensors(j[i], fmt::format("{}.{}", prefix, i), tensors, out);
}

// The reverse: each {"tensor": "<name>"} becomes {"tensor": <index>} into `tensors`, built from
// the file; every tensor of the file must be referenced exactly once.
void resolve_tensors(json& j, const Contents& c, std::vector<Tensor>& tensors, std::vector<bool>& used) {
  if (j.is_object() && j.size() == 1 && j.contains("tensor")) {
    const json& ref = j["tensor"];
    const Entry* e = ref.is_string() ? c.find(ref.get<std::string>()) : nullptr;
    if (!e)
      throw CheckpointError(fmt::format("__metadata__ \"optimizer\": refers to tensor {}, which the file does not hold",
                                        brief(ref)));
    const auto index = static_cast<std::size_t>(e - c.entries.data());
    if (used[index])
      throw CheckpointError(fmt::format("__metadata__ \"optimizer\": tensor '{}' is referenced twice", e->name));
    used[index] = true;
    j["tensor"] = tensors.size();
    tensors.push_back(make_tensor(c, *e));
    return;
  }
  if (j.is_object())
    for (auto& [k, v] : j.items()) resolve_tensors(v, c, tensors, used);
  else if (j.is_array())
    for (auto& v : j) resolve_tensors(v, c, tensors, used);
}

json metadata_json(const Contents& c, const std::string& key) {
  const auto it = c.metadata.find(key);
  if (it == c.metadata.end()) throw CheckpointError(fmt::format("__metadata__: has no \"{}\" entry", key));
  try {
    return json::parse(it->second);
  } catch (const json::parse_error& e) {
    throw CheckpointError(fmt::format("__metadata__ \"{}\": not valid JSON: {}", key, e.what()));
  }
}

}  // namespace

// ---------------------------------------------------------------- public API

void save_safetensors(const std::map<std::string, Tensor>& tensors, const std::string& path,
                      const std::map<std::string, std::string>& metadata) {
  write_safetensors(as_named(tensors), metadata, path);
}

SafetensorsFile read_safetensors(const std::string& path) {
  return naming_file("read_safetensors", path, [&] {
    const Contents c = read_contents(path);
    SafetensorsFile f;
    for (const Entry& e : c.entries) f.tensors.emplace(e.name, make_tensor(c, e));
    f.metadata = c.metadata;
    return f;
  });
}

std::map<std::string, Tensor> load_safetensors(const std::string& path) {
  return naming_file("load_safetensors", path, [&] {
    const Contents c = read_contents(path);
    std::map<std::string, Tensor> out;
    for (const Entry& e : c.entries) out.emplace(e.name, make_tensor(c, e));
    return out;
  });
}

void save_safetensors(const Module& module, const std::string& path) { write_safetensors(module.state(), {}, path); }

void load_safetensors(Module& module, const std::string& path) {
  naming_file("load_safetensors", path, [&] {
    const Contents c = read_contents(path);
    commit_module(module, c, match_module(module, c));
  });
}

std::string safetensors_companion_path(const std::string& path) {
  static constexpr std::string_view kExt = ".safetensors";
  const std::string_view p(path);
  const std::string_view stem = p.ends_with(kExt) ? p.substr(0, p.size() - kExt.size()) : p;
  return std::string(stem) + ".train" + std::string(kExt);
}

void save_safetensors(const Module& module, const Optimizer& optimizer, const std::string& path,
                      const CheckpointExtras& extras) {
  const std::string id = new_checkpoint_id();
  std::vector<Tensor> state_tensors;
  json opt = optimizer.state_dict_with_tensors(state_tensors);
  std::vector<NamedTensor> named;
  name_tensors(opt, "optimizer", state_tensors, named);
  std::map<std::string, std::string> meta{
      {"format", kTrainingFormat}, {"version", kTrainingVersion}, {kIdKey, id}, {"optimizer", opt.dump()}};
  if (json rng = detail::rng_state(module); !rng.empty()) meta["rng"] = rng.dump();
  if (extras.scheduler) meta["scheduler"] = extras.scheduler->state_dict().dump();
  if (extras.batches) meta["batch_iterator"] = extras.batches->state_dict().dump();
  // The companion first, the model last: a crash in between leaves the previous model file with
  // a new companion, which load detects (the ids differ) instead of resuming from a mixed pair.
  write_safetensors(std::move(named), meta, safetensors_companion_path(path));
  write_safetensors(module.state(), {{kIdKey, id}}, path);
}

void load_safetensors(Module& module, Optimizer& optimizer, const std::string& path, const CheckpointExtras& extras) {
  static constexpr const char* who = "load_safetensors";
  const std::string companion = safetensors_companion_path(path);
  // Everything is read and checked first; the commits at the end cannot throw.
  const Contents model = naming_file(who, path, [&] { return read_contents(path); });
  const std::vector<const Entry*> plan = naming_file(who, path, [&] {
    auto p = match_module(module, model);
    if (!model.metadata.contains(kIdKey))
      throw CheckpointError(fmt::format("__metadata__: has no \"{}\": this file was saved without training state (load "
                                        "it with load_safetensors(module, path), or save with the optimizer)", kIdKey));
    return p;
  });
  naming_file(who, companion, [&] {
    const Contents train = read_contents(companion);
    const auto format = train.metadata.find("format");
    if (format == train.metadata.end() || format->second != kTrainingFormat)
      throw CheckpointError(fmt::format("__metadata__: not a tapegrad training state (no \"format\": \"{}\")", kTrainingFormat));
    const auto version = train.metadata.find("version");
    if (version == train.metadata.end() || version->second != kTrainingVersion)
      throw CheckpointError(fmt::format("__metadata__: has version {}; this build reads version \"{}\"",
                                        version == train.metadata.end() ? "(missing)" : "\"" + version->second + "\"",
                                        kTrainingVersion));
    const auto id = train.metadata.find(kIdKey);
    const std::string& model_id = model.metadata.at(kIdKey);
    if (id == train.metadata.end() || id->second != model_id)
      throw CheckpointError(fmt::format(
          "__metadata__ \"{}\": '{}' here but '{}' in the model file '{}': the two files come from different saves "
          "(a save interrupted between writing this file and the model file leaves such a pair; the model file "
          "alone loads with load_safetensors(module, path))",
          kIdKey, id == train.metadata.end() ? "(missing)" : id->second, model_id, path));
    std::optional<std::vector<Generator::State>> rng;
    if (train.metadata.contains("rng")) rng = detail::parse_rng_state(module, metadata_json(train, "rng"));
    json opt = metadata_json(train, "optimizer");
    std::vector<Tensor> tensors;
    std::vector<bool> used(train.entries.size(), false);
    resolve_tensors(opt, train, tensors, used);
    for (std::size_t i = 0; i < used.size(); ++i)
      if (!used[i])
        throw CheckpointError(fmt::format("'{}': not referenced by the optimizer state (expected only the optimizer's "
                                          "tensors)", train.entries[i].name));
    const bool with_scheduler = extras.scheduler && train.metadata.contains("scheduler");
    const bool with_batches = extras.batches && train.metadata.contains("batch_iterator");
    const json sched = with_scheduler ? metadata_json(train, "scheduler") : json();
    const json batches = with_batches ? metadata_json(train, "batch_iterator") : json();
    if (with_scheduler) extras.scheduler->check_state_dict(sched);
    if (with_batches) extras.batches->check_state_dict(batches);
    // The optimiser checks its whole state before it changes anything, and goes last among the
    // checks: after it, nothing can throw.
    optimizer.load_state_dict_with_tensors(opt, tensors);
    if (with_scheduler) extras.scheduler->load_state_dict(sched);
    if (with_batches) extras.batches->load_state_dict(batches);
    commit_module(module, model, plan);
    if (rng) detail::commit_rng_state(module, *rng);
  });
}

}  // namespace tapegrad::nn
