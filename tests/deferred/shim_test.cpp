// Deferred free through the prefixed standard names (wfmm_shim_malloc, wfmm_shim_free, ...)
// of the test library, beside the system malloc: the alone path, the switch to shared at a
// second thread's first malloc, implicit regions, held batches and cross-thread frees, with
// content checks. Built against both flavours and run by scripts/sanitize under
// ThreadSanitizer (the shared library cannot be: TSan brings its own malloc).
#include <gtest/gtest.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

#include "test_util.h"
#include "wfmm/wfmm.h"

#include "../shim_names.h"

namespace {

wfmm_stats stats() {
  wfmm_stats s;
  wfmm_stats_get(&s);
  return s;
}

}  // namespace

TEST(DeferredShim, ModeIsOn) { ASSERT_EQ(wfmm_option_get("deferred_free"), 1); }

// One thread alone frees at once (no retire); a second thread's first malloc makes the
// process shared, and from then on the first thread's frees retire and the second thread's
// implicit region keeps the block it reads intact.
TEST(DeferredShim, AloneThenSharedThenReaderHolds) {
  // (gtest's own threads, if any, never call the prefixed names.)
  uint64_t retired0 = stats().retired;
  for (int i = 0; i < 1000; ++i) wfmm_shim_free(wfmm_shim_malloc(64));
  bool alone_ran = stats().retired == retired0;
  void* x = wfmm_shim_malloc(64);
  wfmm_test::fill(x, 64, 5);
  std::atomic<void*> shared{nullptr};
  std::atomic<int> phase{0};
  std::atomic<long> bad{0};
  std::thread reader([&] {
    void* mine = wfmm_shim_malloc(32);  // its first allocator call: opens its implicit region
    void* q;
    while ((q = shared.load(std::memory_order_acquire)) == nullptr) std::this_thread::yield();
    phase.store(1, std::memory_order_release);
    long b = 0;
    while (phase.load(std::memory_order_acquire) != 2) b += !wfmm_test::check(q, 64, 5);
    bad.store(b);
    wfmm_shim_free(mine);
  });
  shared.store(x, std::memory_order_release);
  while (phase.load(std::memory_order_acquire) != 1) std::this_thread::yield();
  wfmm_shim_free(x);
  std::vector<void*> v;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 500; ++i) {
      void* p = wfmm_shim_malloc(64);
      memset(p, 0x5a, 64);
      v.push_back(p);
    }
    for (void* p : v) wfmm_shim_free(p);
    v.clear();
  }
  phase.store(2, std::memory_order_release);
  reader.join();
  EXPECT_EQ(bad.load(), 0) << "the block changed under its reader";
  EXPECT_GT(stats().retired, retired0) << "frees did not retire once a second thread came";
  if (!alone_ran) GTEST_LOG_(INFO) << "alone mode was off (membarrier refused?)";
}

// Four threads hand blocks to each other through a ring of slots, reallocating and freeing
// them: every block's contents are checked before it is freed; nothing is lost or reused
// early; after all threads are gone and a barrier, nothing stays deferred.
TEST(DeferredShim, CrossThreadHandOffsWithRealloc) {
  constexpr int kThreads = 4, kSlots = 64, kOps = 20000;
  std::atomic<void*> slot[kSlots];
  for (auto& s : slot) s.store(nullptr);
  std::atomic<long> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      uint64_t rng = 0x9e3779b97f4a7c15ull * uint64_t(t + 1);
      for (int i = 0; i < kOps; ++i) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        int k = int(rng % kSlots);
        size_t n = 16 + (rng >> 20) % 200;
        uint64_t seed = rng | 1;
        auto* p = static_cast<uint64_t*>((rng & 3) == 0 ? wfmm_shim_calloc(1, n)
                                                         : wfmm_shim_malloc(n));
        if ((rng & 4) != 0) p = static_cast<uint64_t*>(wfmm_shim_realloc(p, n + 64));
        // The block says what it holds: its size and seed, then the pattern.
        p[0] = n;
        p[1] = seed;
        wfmm_test::fill(p + 2, n - 16, seed);
        auto* old = static_cast<uint64_t*>(slot[k].exchange(p, std::memory_order_acq_rel));
        if (old != nullptr) {
          if (old[0] < 16 || old[0] > 216 || !wfmm_test::check(old + 2, old[0] - 16, old[1]))
            bad.fetch_add(1);
          wfmm_shim_free(old);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  for (auto& s : slot)
    if (void* p = s.exchange(nullptr)) wfmm_shim_free(p);
  EXPECT_EQ(bad.load(), 0) << "a block changed between its fill and its free";
  wfmm_barrier();
  EXPECT_EQ(stats().deferred_bytes, 0u) << "freed bytes still deferred after every thread left";
}
