// SPDX-License-Identifier: MIT
#pragma once
// A per-thread pool for the blocks the tape churns through.
//
// Small blocks (up to kPoolMaxBytes: tensor handles, tiny values, node inputs, gradient lists): a
// forward pass allocates one or more per op and backward frees them in reverse order, a pattern
// that defeats malloc's per-thread cache; free lists per size class make each allocation a few
// instructions. The lists grow with the working set (a chain of 1e5 ops keeps 1e5 handles alive
// and reuses all of them next step) up to kPoolSmallCacheBytes per thread; past that, freed
// blocks go back to malloc.
//
// Large blocks (tensor values above kPoolMaxBytes) are cached by rounded size, up to
// kPoolLargeCacheBytes per thread, so a training loop reuses the same memory every step instead of
// getting it from malloc, which maps blocks above its mmap threshold (up to 32 MiB) fresh from the
// kernel and unmaps them on free: a page fault per 4 KiB, every step. When the cache is full the
// blocks cached longest ago are released first, so sizes an earlier phase left behind make room
// for the ones in use now.
//
// Blocks freed on another thread join that thread's cache (memory is interchangeable). A thread's
// cache is released when the thread exits, or on empty_cache(). TAPEGRAD_NO_POOL (sanitizer
// builds) sends every block straight to operator new/delete.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include "autodiff/tape.hpp"

namespace tapegrad::detail {

inline constexpr std::size_t kPoolMaxBytes = 1024;  // larger blocks are "large"
inline constexpr std::size_t kPoolSmallCacheBytes = std::size_t{64} << 20;   // per thread
inline constexpr std::size_t kPoolLargeCacheBytes = std::size_t{128} << 20;  // per thread

// pool_allocate, pool_deallocate and PoolAllocator<T> (for containers) are declared in
// autodiff/tape.hpp, whose Grads list allocates through them.

// Hands this thread's cached blocks (small and large) back to malloc. Useful after a phase with big
// tensors or a huge graph that will not come back; live tensors are unaffected.
void empty_cache();

// This thread's pool: what it holds now, and counters since the thread started (all 0 with
// TAPEGRAD_NO_POOL).
struct PoolStats {
  std::size_t small_cached_bytes = 0;   // in the small free lists, at most kPoolSmallCacheBytes
  std::size_t small_cached_blocks = 0;
  std::size_t large_cached_bytes = 0;   // in the large cache, at most kPoolLargeCacheBytes
  std::size_t large_cached_blocks = 0;
  std::uint64_t small_misses = 0;       // small allocations the lists could not serve (operator new)
  std::uint64_t large_hits = 0;         // large allocations served from the cache
  std::uint64_t large_misses = 0;       // large allocations that went to operator new
  std::uint64_t released_blocks = 0;    // freed blocks handed to operator delete because a cache was full
};
PoolStats pool_stats();


}  // namespace tapegrad::detail
