// SPDX-License-Identifier: MIT
#pragma once
// A per-thread pool for the small blocks the tape churns through (tensor handles, tiny values,
// node inputs, gradient lists). A forward pass allocates thousands of them and backward frees
// them in reverse order, a pattern that defeats malloc's per-thread cache; free lists per size
// class make each allocation a few instructions. Blocks freed on another thread join that
// thread's lists (memory is interchangeable); lists are capped, the excess goes back to malloc.
// Larger blocks (tensor values) are cached by size, up to 128 MiB per thread, so a training loop
// reuses the same memory every step instead of faulting fresh pages in.
#include <cstddef>
#include <memory>
#include <new>

namespace tapegrad::detail {

inline constexpr std::size_t kPoolGranule = 16;
inline constexpr std::size_t kPoolMaxBytes = 1024;  // larger blocks come from operator new

void* pool_allocate(std::size_t bytes);
// Hands this thread's cached large blocks (tensor values above 1 KiB, at most 128 MiB) back to
// malloc. Useful after a phase with big tensors that will not come back.
void empty_cache();
void pool_deallocate(void* p, std::size_t bytes) noexcept;

template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() noexcept = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}  // NOLINT: allocators convert implicitly
  T* allocate(std::size_t n) {
    static_assert(alignof(T) <= kPoolGranule, "PoolAllocator: over-aligned type");
    return static_cast<T*>(pool_allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { pool_deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const noexcept { return true; }
};

}  // namespace tapegrad::detail
