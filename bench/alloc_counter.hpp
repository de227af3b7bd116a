// SPDX-License-Identifier: MIT
#pragma once
// A counting global operator new for the memory benchmarks. Include it from exactly one .cpp of a
// benchmark program (each bench/*.cpp is its own program): it replaces operator new/delete.
#include <atomic>
#include <cstdlib>
#include <new>

namespace tapegrad::bench {
inline std::atomic<std::size_t> g_alloc_bytes{0};
inline std::atomic<std::size_t> g_alloc_count{0};
}  // namespace tapegrad::bench

// Replacing the global operator new/delete pair with malloc/free is deliberate here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  tapegrad::bench::g_alloc_bytes.fetch_add(n, std::memory_order_relaxed);
  tapegrad::bench::g_alloc_count.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
