// SPDX-License-Identifier: MIT
// The per-thread block pool (autodiff/detail/pool.hpp): it reuses what a long graph frees, keeps what it
// retains bounded, and keeps the large blocks a loop uses now rather than those of an earlier phase.
// With TAPEGRAD_NO_POOL (sanitizer builds) every block goes to malloc and the pool holds nothing.
#include <thread>
#include <vector>

#include "autodiff/detail/node.hpp"
#include "autodiff/detail/pool.hpp"
#include "testing.hpp"

using namespace tapegrad;
using detail::pool_stats;

namespace {

// n tiny ops on one float (the chain of bench_core's chain_length/tapegrad), then backward
void tiny_chain(int n) {
  Tensor x = tensor({0.5f}).requires_grad_();
  Tensor c = tensor({1.0001f});
  Tensor y = x;
  for (int i = 0; i < n / 2; ++i) {
    y = y * c;
    y = y + c;
  }
  backward(y);
}

}  // namespace

TEST_CASE("pool: a chain of 20,000 ops reuses every block on the next step", "[pool][memory]") {
  // Each op's output handle is one block of the same size class, all alive until backward: the
  // free lists must hold the whole chain's worth, not a fixed count (8,192 per class used to send
  // the rest back to malloc and fetch it again every step).
  tiny_chain(20000);
  const auto before = pool_stats();
  tiny_chain(20000);
  const auto after = pool_stats();
#ifndef TAPEGRAD_NO_POOL
  INFO("small blocks fetched from operator new on the second chain: " << after.small_misses - before.small_misses);
  REQUIRE(after.small_misses == before.small_misses);
  REQUIRE(after.small_cached_blocks >= 20000);  // the chain's handles, back on the lists
#else
  REQUIRE(after.small_cached_bytes == 0);
  REQUIRE(after.small_misses == before.small_misses);  // no pool, no counters
#endif
}

TEST_CASE("pool: after a chain of 1e5 ops and clear_tape, the pool retains at most its caps", "[pool][memory]") {
  {
    Tensor x = tensor({0.5f}).requires_grad_();
    Tensor c = tensor({1.0001f});
    Tensor y = x;
    for (int i = 0; i < 50000; ++i) {
      y = y * c;
      y = y + c;
    }
    REQUIRE(tape_size() == 100000);
    clear_tape();  // no backward: the nodes (and the handles they hold) go at once
    REQUIRE(tape_size() == 0);
  }
  const auto s = pool_stats();
  REQUIRE(s.small_cached_bytes <= detail::kPoolSmallCacheBytes);
  REQUIRE(s.large_cached_bytes <= detail::kPoolLargeCacheBytes);
#ifndef TAPEGRAD_NO_POOL
  // 1e5 handles of at least sizeof(TensorImpl) bytes each are kept for the next chain (well under the cap)
  REQUIRE(s.small_cached_bytes >= 100000 * sizeof(TensorImpl));
#endif
  detail::empty_cache();  // everything goes back to malloc
  const auto e = pool_stats();
  REQUIRE(e.small_cached_bytes == 0);
  REQUIRE(e.small_cached_blocks == 0);
  REQUIRE(e.large_cached_bytes == 0);
  REQUIRE(e.large_cached_blocks == 0);
}

TEST_CASE("pool: the small free lists stop at kPoolSmallCacheBytes; the rest goes back to malloc", "[pool][memory]") {
  detail::empty_cache();
  constexpr std::size_t kBlock = detail::kPoolMaxBytes;  // the largest small class
  const std::size_t n = detail::kPoolSmallCacheBytes / kBlock + 100;
  std::vector<void*> blocks(n);
  for (void*& b : blocks) b = detail::pool_allocate(kBlock);
  const auto before = pool_stats();
  for (void* b : blocks) detail::pool_deallocate(b, kBlock);
  const auto after = pool_stats();
#ifndef TAPEGRAD_NO_POOL
  REQUIRE(after.small_cached_bytes == detail::kPoolSmallCacheBytes);
  REQUIRE(after.released_blocks - before.released_blocks == 100);
#else
  REQUIRE(after.small_cached_bytes == 0);
  REQUIRE(after.released_blocks == before.released_blocks);
#endif
  detail::empty_cache();
}

TEST_CASE("pool: large blocks of sizes an earlier phase left make room for the sizes in use", "[pool][memory]") {
  // Fill the large cache past its cap with sizes that never come back (a data phase with varying
  // shapes), then free and reuse a block of a new size, as a training step does: the new size must
  // be cached (reused on the next allocation), and the sizes cached longest ago must be the ones
  // released. With a cache that simply refused blocks once full, the new size went to malloc (and,
  // above malloc's mmap threshold, to the kernel) every step.
  detail::empty_cache();
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  const std::size_t stale = detail::kPoolLargeCacheBytes / kMiB + 8;  // just over the cap
  auto stale_size = [&](std::size_t i) { return kMiB + 64 * (i + 1); };  // all distinct
  std::vector<void*> blocks(stale);
  for (std::size_t i = 0; i < stale; ++i) blocks[i] = detail::pool_allocate(stale_size(i));
  for (std::size_t i = 0; i < stale; ++i) detail::pool_deallocate(blocks[i], stale_size(i));
  REQUIRE(pool_stats().large_cached_bytes <= detail::kPoolLargeCacheBytes);

  const std::size_t in_use = 3 * kMiB;  // one step's value
  for (int step = 0; step < 3; ++step) {
    const auto before = pool_stats();
    void* b = detail::pool_allocate(in_use);
    static_cast<char*>(b)[in_use - 1] = 1;  // usable to its last byte
    detail::pool_deallocate(b, in_use);
    const auto after = pool_stats();
    REQUIRE(after.large_cached_bytes <= detail::kPoolLargeCacheBytes);
#ifndef TAPEGRAD_NO_POOL
    INFO("step " << step);
    if (step > 0) REQUIRE(after.large_hits == before.large_hits + 1);  // reused, not fetched again
#else
    REQUIRE(after.large_hits == before.large_hits);  // no pool: nothing is reused
#endif
  }
#ifndef TAPEGRAD_NO_POOL
  // The oldest stale sizes were released to make room, the newest are still cached.
  auto hits = [] { return pool_stats().large_hits; };
  const auto h0 = hits();
  void* oldest = detail::pool_allocate(stale_size(0));
  REQUIRE(hits() == h0);
  void* newest = detail::pool_allocate(stale_size(stale - 1));
  REQUIRE(hits() == h0 + 1);
  detail::pool_deallocate(oldest, stale_size(0));
  detail::pool_deallocate(newest, stale_size(stale - 1));
#endif
  detail::empty_cache();
  REQUIRE(pool_stats().large_cached_bytes == 0);
}

TEST_CASE("pool: a large block comes back only for its own rounded size, never while in use", "[pool][memory]") {
  detail::empty_cache();
  void* a = detail::pool_allocate(5000);
  void* b = detail::pool_allocate(5000);
  REQUIRE(a != b);
  detail::pool_deallocate(a, 5000);
  void* c = detail::pool_allocate(9000);  // another size: not a
  REQUIRE(c != a);
  void* d = detail::pool_allocate(5010);  // the same 64-byte rounded size (5056): a again
#ifndef TAPEGRAD_NO_POOL
  REQUIRE(d == a);
#endif
  for (auto [p, n] : {std::pair{b, 5000}, std::pair{c, 9000}, std::pair{d, 5010}}) detail::pool_deallocate(p, n);
  detail::empty_cache();
}

TEST_CASE("pool: blocks freed on another thread join that thread's pool", "[pool][threads]") {
  detail::pool_deallocate(detail::pool_allocate(16), 16);  // this thread's pool exists from its first allocation
  detail::empty_cache();
  std::vector<Tensor> made;
  detail::PoolStats worker_end{};
  std::thread([&] {
    for (int i = 0; i < 100; ++i) made.push_back(full({1000}, i));  // 4 KB values: large blocks
    tiny_chain(2000);
    worker_end = pool_stats();
  }).join();
#ifndef TAPEGRAD_NO_POOL
  REQUIRE(worker_end.small_cached_blocks > 0);  // the worker's pool held blocks until it exited
#endif
  const auto before = pool_stats();
  made.clear();  // freed here, on the main thread
  const auto after = pool_stats();
#ifndef TAPEGRAD_NO_POOL
  REQUIRE(after.large_cached_blocks == before.large_cached_blocks + 100);
#else
  REQUIRE(after.large_cached_blocks == before.large_cached_blocks);  // both 0: no pool
#endif
  detail::empty_cache();
}
