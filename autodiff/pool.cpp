// SPDX-License-Identifier: MIT
#include "autodiff/pool.hpp"

#include <array>
#include <unordered_map>
#include <vector>

namespace tapegrad::detail {

#ifndef TAPEGRAD_NO_POOL
namespace {

constexpr std::size_t kClasses = kPoolMaxBytes / kPoolGranule;
constexpr std::size_t kMaxFree = 8192;  // blocks kept per size class and thread

struct FreeBlock {
  FreeBlock* next;
};

// Large blocks (tensor values above kPoolMaxBytes) are kept by exact rounded size, up to
// kLargeCacheBytes per thread: a training loop allocates the same sizes every step, and handing
// them back to malloc makes it return the pages to the kernel and fault them in again next step.
constexpr std::size_t kLargeCacheBytes = std::size_t{128} << 20;
constexpr std::size_t kLargeGranule = 64;

struct Pools {
  std::array<FreeBlock*, kClasses> head{};
  std::array<std::size_t, kClasses> count{};
  std::unordered_map<std::size_t, std::vector<void*>> large;
  std::size_t large_bytes = 0;
  void release_large() {
    for (auto& [size, blocks] : large)
      for (void* b : blocks) ::operator delete(b);
    large.clear();
    large_bytes = 0;
  }
  ~Pools();
};

// 0 before the pools exist, 1 while they live, 2 after this thread destroyed them. An int is
// trivially destructible, so it can still be read while (and after) thread-local destructors run:
// a block freed that late (a static tensor, or a thread_local destroyed after the pools) goes
// straight back to operator delete.
thread_local int pools_state = 0;

Pools* pools() {
  if (pools_state == 2) return nullptr;
  thread_local Pools p;
  pools_state = 1;
  return &p;
}

Pools::~Pools() {
  pools_state = 2;
  release_large();
  for (std::size_t c = 0; c < kClasses; ++c) {
    FreeBlock* b = head[c];
    while (b) {
      FreeBlock* next = b->next;
      ::operator delete(static_cast<void*>(b));
      b = next;
    }
    head[c] = nullptr;
  }
}

std::size_t size_class(std::size_t bytes) { return (bytes + kPoolGranule - 1) / kPoolGranule - 1; }

}  // namespace

std::size_t large_size(std::size_t bytes) { return (bytes + kLargeGranule - 1) / kLargeGranule * kLargeGranule; }

void* pool_allocate(std::size_t bytes) {
  if (bytes == 0) return ::operator new(1);
  if (bytes > kPoolMaxBytes) {
    const std::size_t n = large_size(bytes);
    if (Pools* p = pools()) {
      auto it = p->large.find(n);
      if (it != p->large.end() && !it->second.empty()) {
        void* b = it->second.back();
        it->second.pop_back();
        p->large_bytes -= n;
        return b;
      }
    }
    return ::operator new(n);
  }
  const std::size_t c = size_class(bytes);
  Pools* p = pools();
  if (p)
    if (FreeBlock* b = p->head[c]) {
      p->head[c] = b->next;
      --p->count[c];
      return b;
    }
  return ::operator new((c + 1) * kPoolGranule);
}

void pool_deallocate(void* ptr, std::size_t bytes) noexcept {
  if (!ptr) return;
  if (bytes == 0 || pools_state != 1) {
    ::operator delete(ptr);
    return;
  }
  if (bytes > kPoolMaxBytes) {
    const std::size_t n = large_size(bytes);
    Pools* p = pools();
    if (p->large_bytes + n > kLargeCacheBytes) {
      ::operator delete(ptr);
      return;
    }
    p->large[n].push_back(ptr);
    p->large_bytes += n;
    return;
  }
  const std::size_t c = size_class(bytes);
  Pools* p = pools();
  if (p->count[c] >= kMaxFree) {
    ::operator delete(ptr);
    return;
  }
  auto* b = static_cast<FreeBlock*>(ptr);
  b->next = p->head[c];
  p->head[c] = b;
  ++p->count[c];
}

void empty_cache() {
  if (pools_state == 1) pools()->release_large();
}

#else
void empty_cache() {}
// Sanitizer builds: every block goes to malloc so AddressSanitizer sees each use after free.
void* pool_allocate(std::size_t bytes) { return ::operator new(bytes == 0 ? 1 : bytes); }
void pool_deallocate(void* ptr, std::size_t) noexcept { ::operator delete(ptr); }
#endif

}  // namespace tapegrad::detail
