// SPDX-License-Identifier: MIT
#include "autodiff/detail/pool.hpp"

#include <array>
#include <unordered_map>

namespace tapegrad::detail {

#ifndef TAPEGRAD_NO_POOL
namespace {

constexpr std::size_t kClasses = kPoolMaxBytes / kPoolGranule;
constexpr std::size_t kLargeGranule = 64;
// Distinct large sizes remembered (with or without cached blocks) before empty entries are pruned.
constexpr std::size_t kMaxLargeSizes = 4096;

std::size_t size_class(std::size_t bytes) { return (bytes + kPoolGranule - 1) / kPoolGranule - 1; }
std::size_t large_size(std::size_t bytes) { return (bytes + kLargeGranule - 1) / kLargeGranule * kLargeGranule; }

struct FreeBlock {
  FreeBlock* next;
};

// A cached large block carries its own bookkeeping in its first bytes: a list by age (all cached
// blocks, oldest first, for eviction) and a list per size (newest first, for reuse).
struct LargeBlock {
  LargeBlock* older;
  LargeBlock* newer;
  LargeBlock* next_same;  // older block of the same size
  LargeBlock* prev_same;  // newer block of the same size (nullptr: the newest, held by the map)
  std::size_t size;
};
static_assert(sizeof(LargeBlock) <= kPoolMaxBytes);

struct Pools {
  // small blocks: one free list per size class, bounded by total bytes (not by count: a long
  // chain needs as many handles as it has ops, all in one class)
  std::array<FreeBlock*, kClasses> head{};
  std::size_t small_bytes = 0;
  std::size_t small_blocks = 0;

  // large blocks
  std::unordered_map<std::size_t, LargeBlock*> newest_of_size;  // entries stay when emptied: no
                                                                // map allocation in a warm loop
  LargeBlock* oldest = nullptr;
  LargeBlock* newest = nullptr;
  std::size_t large_bytes = 0;
  std::size_t large_blocks = 0;

  std::uint64_t small_misses = 0, large_hits = 0, large_misses = 0, released_blocks = 0;

  void* take_large(std::size_t n);
  void put_large(void* ptr, std::size_t n);
  void unlink_large(LargeBlock* b);
  void release_large();
  void release_small();
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
  release_small();
}

void Pools::unlink_large(LargeBlock* b) {
  (b->older ? b->older->newer : oldest) = b->newer;
  (b->newer ? b->newer->older : newest) = b->older;
  if (b->next_same) b->next_same->prev_same = b->prev_same;
  if (b->prev_same)
    b->prev_same->next_same = b->next_same;
  else
    newest_of_size.find(b->size)->second = b->next_same;  // b is cached, so its entry exists
  large_bytes -= b->size;
  --large_blocks;
}

void* Pools::take_large(std::size_t n) {
  const auto it = newest_of_size.find(n);
  if (it == newest_of_size.end() || !it->second) {
    ++large_misses;
    return nullptr;
  }
  LargeBlock* b = it->second;
  unlink_large(b);
  ++large_hits;
  return b;
}

void Pools::put_large(void* ptr, std::size_t n) {
  if (n > kPoolLargeCacheBytes) {
    ++released_blocks;
    ::operator delete(ptr);
    return;
  }
  // Make room by releasing the blocks cached longest ago: in a loop, the sizes in use come back
  // every step and stay young; sizes an earlier phase left behind age out.
  while (large_bytes + n > kPoolLargeCacheBytes) {
    LargeBlock* victim = oldest;
    unlink_large(victim);
    ++released_blocks;
    ::operator delete(static_cast<void*>(victim));
  }
  LargeBlock** head = nullptr;
  try {
    if (newest_of_size.size() >= kMaxLargeSizes && !newest_of_size.contains(n))
      std::erase_if(newest_of_size, [](const auto& entry) { return entry.second == nullptr; });
    head = &newest_of_size[n];  // stable: unordered_map never moves its elements
  } catch (...) {  // no memory for the map entry: do not cache this block
    ++released_blocks;
    ::operator delete(ptr);
    return;
  }
  auto* b = ::new (ptr) LargeBlock{newest, nullptr, *head, nullptr, n};
  (newest ? newest->newer : oldest) = b;
  newest = b;
  if (*head) (*head)->prev_same = b;
  *head = b;
  large_bytes += n;
  ++large_blocks;
}

void Pools::release_large() {
  while (oldest) {
    LargeBlock* b = oldest;
    oldest = b->newer;
    ::operator delete(static_cast<void*>(b));
  }
  newest = nullptr;
  newest_of_size.clear();
  large_bytes = 0;
  large_blocks = 0;
}

void Pools::release_small() {
  for (FreeBlock*& h : head) {
    while (h) {
      FreeBlock* next = h->next;
      ::operator delete(static_cast<void*>(h));
      h = next;
    }
  }
  small_bytes = 0;
  small_blocks = 0;
}

}  // namespace

void* pool_allocate(std::size_t bytes) {
  if (bytes == 0) return ::operator new(1);
  if (bytes > kPoolMaxBytes) {
    const std::size_t n = large_size(bytes);
    if (Pools* p = pools())
      if (void* b = p->take_large(n)) return b;
    return ::operator new(n);
  }
  const std::size_t c = size_class(bytes);
  if (Pools* p = pools()) {
    if (FreeBlock* b = p->head[c]) {
      p->head[c] = b->next;
      p->small_bytes -= (c + 1) * kPoolGranule;
      --p->small_blocks;
      return b;
    }
    ++p->small_misses;
  }
  return ::operator new((c + 1) * kPoolGranule);
}

void pool_deallocate(void* ptr, std::size_t bytes) noexcept {
  if (!ptr) return;
  if (bytes == 0 || pools_state != 1) {
    ::operator delete(ptr);
    return;
  }
  Pools* p = pools();
  if (bytes > kPoolMaxBytes) {
    p->put_large(ptr, large_size(bytes));
    return;
  }
  const std::size_t c = size_class(bytes);
  const std::size_t n = (c + 1) * kPoolGranule;
  if (p->small_bytes + n > kPoolSmallCacheBytes) {
    ++p->released_blocks;
    ::operator delete(ptr);
    return;
  }
  auto* b = static_cast<FreeBlock*>(ptr);
  b->next = p->head[c];
  p->head[c] = b;
  p->small_bytes += n;
  ++p->small_blocks;
}

void empty_cache() {
  if (pools_state != 1) return;
  Pools* p = pools();
  p->release_large();
  p->release_small();
}

PoolStats pool_stats() {
  PoolStats s;
  if (pools_state != 1) return s;
  const Pools* p = pools();
  s.small_cached_bytes = p->small_bytes;
  s.small_cached_blocks = p->small_blocks;
  s.large_cached_bytes = p->large_bytes;
  s.large_cached_blocks = p->large_blocks;
  s.small_misses = p->small_misses;
  s.large_hits = p->large_hits;
  s.large_misses = p->large_misses;
  s.released_blocks = p->released_blocks;
  return s;
}

#else
// Sanitizer builds: every block goes to malloc so AddressSanitizer sees each use after free.
void* pool_allocate(std::size_t bytes) { return ::operator new(bytes == 0 ? 1 : bytes); }
void pool_deallocate(void* ptr, std::size_t) noexcept { ::operator delete(ptr); }
void empty_cache() {}
PoolStats pool_stats() { return {}; }
#endif

}  // namespace tapegrad::detail
