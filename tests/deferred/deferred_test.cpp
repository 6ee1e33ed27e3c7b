// Deferred free (WFMM_DEFERRED_FREE=1): free retires, and a block is reused only after every
// other thread passed through the allocator since. Linked with libwfmm.so, so malloc and
// free are wfmm's; ctest sets WFMM_DEFERRED_FREE=1 (the test checks it took effect).
#include <gtest/gtest.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "../test_util.h"
#include "wfmm/wfmm.h"

namespace {

// Every malloc/free here must be wfmm's (no builtin folding of malloc+free pairs).
void* volatile g_sink;
void* alloc(size_t n) {
  void* p = malloc(n);
  g_sink = p;
  return p;
}

wfmm_stats stats() {
  wfmm_stats s;
  wfmm_stats_get(&s);
  return s;
}

uint64_t peak_rss_kib() {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  uint64_t v = 0;
  while (f != nullptr && fgets(line, sizeof line, f) != nullptr)
    if (strncmp(line, "VmHWM:", 6) == 0) v = strtoull(line + 6, nullptr, 10);
  if (f != nullptr) fclose(f);
  return v;
}

TEST(Deferred, ModeIsOn) { ASSERT_EQ(wfmm_option_get("deferred_free"), 1); }

// A reader that loaded a pointer and makes no allocator call keeps seeing the block intact
// while the block is freed and other threads churn the same size class through many eras.
TEST(Deferred, FreedBlockStaysIntactWhileReaderMakesNoAllocatorCall) {
  constexpr size_t kSize = 64;
  std::atomic<void*> shared{nullptr};
  std::atomic<int> phase{0};
  std::atomic<uint64_t> bad{0}, checks{0};
  void* p = alloc(kSize);
  wfmm_test::fill(p, kSize, 77);
  std::thread reader([&] {
    free(alloc(32));  // an allocator call after p was born: p is covered from here on
    void* q = shared.load(std::memory_order_acquire);
    while (q == nullptr) q = shared.load(std::memory_order_acquire);
    phase.store(1, std::memory_order_release);
    // No allocator call in this loop (no gtest macros, no I/O).
    while (phase.load(std::memory_order_acquire) != 3) {
      if (!wfmm_test::check(q, kSize, 77)) bad.fetch_add(1, std::memory_order_relaxed);
      checks.fetch_add(1, std::memory_order_relaxed);
    }
    free(alloc(32));  // ends its implicit region: p may be reused from now on
  });
  shared.store(p, std::memory_order_release);
  while (phase.load(std::memory_order_acquire) != 1) {
  }
  uint64_t era0 = stats().era;
  free(p);
  phase.store(2, std::memory_order_release);
  std::vector<std::thread> churn;
  for (int t = 0; t < 3; ++t) {
    churn.emplace_back([] {
      for (int i = 0; i < 300000; ++i) {
        void* a = alloc(kSize);
        memset(a, 0x5a, kSize);  // reuse of p would overwrite its pattern
        free(a);
      }
    });
  }
  for (auto& c : churn) c.join();
  uint64_t era1 = stats().era;
  phase.store(3, std::memory_order_release);
  reader.join();
  EXPECT_EQ(bad.load(), 0u) << "the freed block changed while its reader made no allocator call";
  EXPECT_GT(checks.load(), 0u);
  EXPECT_GT(era1, era0 + 100) << "the churn must have moved the era a lot";
  // After the reader's allocator call, the block is reclaimed like any other.
  wfmm_barrier();
  wfmm_stats s = stats();
  EXPECT_EQ(s.retired, s.reclaimed);
  EXPECT_GT(s.deferral_max_eras, 0u);
}

// One thread sleeps (after an allocator call) while four free millions of blocks: memory held
// back stays bounded (the sleeper pins only blocks born before its last call).
TEST(Deferred, PeakBoundedWhileOneThreadSleeps) {
  std::atomic<bool> stop{false};
  std::thread sleeper([&] {
    free(alloc(100));
    while (!stop.load(std::memory_order_acquire)) usleep(1000);
  });
  usleep(10000);
  uint64_t rss0 = peak_rss_kib();
  std::vector<std::thread> ts;
  std::atomic<uint64_t> max_deferred{0};
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::vector<void*> live(64, nullptr);
      wfmm_test::Rng rng(t + 1);
      for (int i = 0; i < 1000000; ++i) {
        size_t k = rng.next() % live.size();
        free(live[k]);
        live[k] = alloc(16 + rng.next() % 200);
        if ((i & 65535) == 0) {
          uint64_t d = stats().deferred_bytes, m = max_deferred.load();
          while (d > m && !max_deferred.compare_exchange_weak(m, d)) {
          }
        }
      }
      for (void* p : live) free(p);
    });
  }
  for (auto& t : ts) t.join();
  stop.store(true);
  sleeper.join();
  uint64_t rss1 = peak_rss_kib();
  wfmm_stats s = stats();
  // 4 M frees of ~116 B on average would be ~460 MB if the sleeper pinned them all.
  EXPECT_LT(s.deferred_peak_bytes, 32u << 20) << "deferred bytes grew with the work done";
  EXPECT_LT(rss1 - rss0, 96u * 1024) << "peak RSS grew by " << (rss1 - rss0) << " KiB";
  printf("deferred: peak %llu bytes, sampled max %llu, rss +%llu KiB, longest %llu eras\n",
         (unsigned long long)s.deferred_peak_bytes, (unsigned long long)max_deferred.load(),
         (unsigned long long)(rss1 - rss0), (unsigned long long)s.deferral_max_eras);
}

// Blocks born before a sleeping thread's last allocator call are held back; young blocks
// freed among them are not (they go to other batches than the old ones).
TEST(Deferred, OldBlocksDoNotPinYoungOnes) {
  constexpr int kOld = 2000;
  std::vector<void*> old;
  for (int i = 0; i < kOld; ++i) old.push_back(alloc(64));
  std::atomic<bool> stop{false}, ready{false};
  std::thread sleeper([&] {
    free(alloc(100));  // its implicit region now covers every old block
    ready.store(true, std::memory_order_release);
    while (!stop.load(std::memory_order_acquire)) usleep(1000);
  });
  while (!ready.load(std::memory_order_acquire)) usleep(100);
  // (No wfmm_barrier here: it would wait for the sleeper's next allocator call.)
  uint64_t peak0 = stats().deferred_peak_bytes;
  std::vector<void*> live(256, nullptr);
  wfmm_test::Rng rng(5);
  for (int i = 0; i < 400000; ++i) {
    // One old block among every 200 young ones: mixed into the same batches, each old
    // block would pin 63 young ones (about 2000 x 63 x 1 KiB = 126 MiB).
    if (i % 200 == 0 && !old.empty()) {
      free(old.back());
      old.pop_back();
    }
    size_t k = rng.next() % live.size();
    free(live[k]);
    live[k] = alloc(1024);
  }
  for (void* p : live) free(p);
  for (void* p : old) free(p);
  wfmm_stats s = stats();
  stop.store(true);
  sleeper.join();
  uint64_t peak = s.deferred_peak_bytes > peak0 ? s.deferred_peak_bytes : 0;
  EXPECT_LT(peak, 16u << 20) << "young blocks were held back with old ones: peak " << peak;
}

// While another thread has a record, free retires; alone, a thread frees at once (nobody
// could read the block) and records nothing.
TEST(Deferred, AloneFreesAtOnceOthersRetire) {
  wfmm_barrier();  // the other tests' threads are gone and their batches freed
  wfmm_stats a = stats();
  free(alloc(48));
  wfmm_stats b = stats();
  EXPECT_EQ(b.retired, a.retired) << "a thread alone retired instead of freeing";
  std::atomic<bool> stop{false}, ready{false};
  std::thread other([&] {
    free(alloc(100));
    ready.store(true, std::memory_order_release);
    while (!stop.load(std::memory_order_acquire)) usleep(1000);
  });
  while (!ready.load(std::memory_order_acquire)) usleep(100);
  wfmm_stats c = stats();
  free(alloc(48));
  wfmm_stats d = stats();
  EXPECT_EQ(d.retired, c.retired + 1) << "with another thread alive, free must retire";
  stop.store(true);
  other.join();
  // realloc alone grows in place when it can; with others alive it always moves (the old
  // block must stay readable). Both keep the contents.
  char* r = static_cast<char*>(alloc(100));
  memset(r, 7, 100);
  r = static_cast<char*>(realloc(r, 3000));
  ASSERT_NE(r, nullptr);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(r[i], 7);
  free(r);
}

TEST(DeferredDeath, DoubleFreeWithOtherThreadsAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::atomic<bool> ready{false};
        std::thread other([&] {
          free(alloc(100));
          ready.store(true);
          for (;;) usleep(1000);  // (the death test's process ends with the abort)
        });
        other.detach();
        while (!ready.load()) usleep(100);
        void* p = alloc(48);
        free(p);  // retired: another thread has a record
        free(p);
      },
      "wfmm: free: double free of 0x");
}

TEST(DeferredDeath, DoubleFreeAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = alloc(48);
        free(p);
        free(p);
      },
      "wfmm: free: double free of 0x");
}

TEST(DeferredDeath, DoubleFreeAfterReuseWindowAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        void* p = alloc(48);
        free(p);
        wfmm_barrier();  // reclaimed: now an ordinary freed block
        free(p);
      },
      "wfmm: free: double free of 0x");
}

TEST(Deferred, DoubleFreeContinueModeFreesOnce) {
  ASSERT_EQ(wfmm_option_set("on_error", 1), 0);
  void* p = alloc(48);
  free(p);
  wfmm_stats before = stats();
  free(p);  // reported, ignored
  wfmm_stats after = stats();
  EXPECT_EQ(after.retired, before.retired) << "the second free must not retire again";
  wfmm_barrier();
  // The block comes back exactly once: two live allocations never share it.
  std::vector<void*> v;
  for (int i = 0; i < 20000; ++i) v.push_back(alloc(48));
  std::sort(v.begin(), v.end());
  EXPECT_EQ(std::adjacent_find(v.begin(), v.end()), v.end());
  for (void* q : v) free(q);
  ASSERT_EQ(wfmm_option_set("on_error", 0), 0);
}

// WFMM_DEFER_MIN_BYTES gives a single thread a reuse distance: the blocks freed last are not
// handed out again until that many bytes were freed after them.
TEST(Deferred, MinBytesGivesSingleThreadAReuseDistance) {
  ASSERT_EQ(wfmm_option_set("defer_min_bytes", 1 << 20), 0);
  constexpr size_t kSize = 256;
  std::vector<void*> recent;
  for (int i = 0; i < 2000; ++i) {  // 2000 x 256 B = 500 KiB < 1 MiB
    void* p = alloc(kSize);
    recent.push_back(p);
  }
  for (void* p : recent) free(p);
  std::sort(recent.begin(), recent.end());
  bool reused = false;
  std::vector<void*> fresh;
  for (int i = 0; i < 20000; ++i) {  // many eras pass on this thread
    void* q = alloc(kSize);
    if (std::binary_search(recent.begin(), recent.end(), q)) reused = true;
    fresh.push_back(q);
  }
  EXPECT_FALSE(reused) << "a block came back before 1 MiB was freed after it";
  for (void* q : fresh) free(q);
  ASSERT_EQ(wfmm_option_set("defer_min_bytes", 0), 0);
  wfmm_flush();
}

}  // namespace

using wfmm_test::count_of;

// Two threads free the same block at the same moment, round after round: exactly one report
// per pair, and afterwards no block is handed out twice. The second free reports at once
// when it sees the block retired; when both loaded its side word before either stored (a
// plain store: mark_retired), both batches hold it and the one the side word does not name
// reports at reclamation (counted after the barrier).
TEST(Deferred, RacingDoubleFreeIsReportedExactlyOncePerPair) {
  const int rounds = 200;
  constexpr int kPerRound = 64;  // blocks both threads free in the same order each round
  void* blocks[kPerRound];
  std::atomic<int> go{0}, done{0};
  wfmm_option_set("on_error", 1);
  testing::internal::CaptureStderr();
  auto racer = [&] {
    for (int r = 1; r <= rounds; ++r) {
      // Spin briefly (the race needs both threads running), then let the other in: 3
      // threads on 2 cores would otherwise wait out whole time slices.
      for (int spin = 0; go.load(std::memory_order_acquire) != r; ++spin)
        if (spin > 200) std::this_thread::yield();
      for (void* p : blocks) free(p);
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  };
  std::thread a(racer), b(racer);
  for (int r = 1; r <= rounds; ++r) {
    for (void*& p : blocks) p = alloc(48);
    go.store(r, std::memory_order_release);
    while (done.load(std::memory_order_acquire) != 2 * r) std::this_thread::yield();
  }
  a.join();
  b.join();
  wfmm_barrier();  // every batch freed: reports found at reclamation are in by now
  std::string err = testing::internal::GetCapturedStderr();
  wfmm_option_set("on_error", 0);
  EXPECT_EQ(count_of(err, "double free of"), size_t(rounds) * kPerRound) << err.substr(0, 2000);
  EXPECT_EQ(count_of(err, "wfmm:"), size_t(rounds) * kPerRound) << err.substr(0, 2000);
  // A block both frees added to their batches goes back once, through the batch its side
  // word names: the other batch's free of it never reaches the heap (whose own check would
  // then report "retire: double free of", or miss it once the block was handed out again).
  EXPECT_EQ(count_of(err, "retire: double free of"), 0u) << err.substr(0, 2000);
  printf("double frees found at reclamation: %zu of %zu\n", count_of(err, "found at reclamation"),
         size_t(rounds) * kPerRound);
  wfmm_stats s = stats();  // a block reported at reclamation still counts as reclaimed
  EXPECT_EQ(s.retired, s.reclaimed);
  EXPECT_EQ(s.retired_pending_bytes, 0u);
  EXPECT_EQ(wfmm_test::fresh_blocks_check(alloc, free, 8000, 48), "");
}

// A thread that inherits an exited thread's heap (recycled at the same era) still opens its
// implicit region at its first malloc: the block it reads is not reused under it.
TEST(Deferred, ThreadOnARecycledHeapHoldsWhatItReads) {
  constexpr size_t kSize = 64;
  std::vector<void*> pool;
  for (int i = 0; i < 256; ++i) pool.push_back(alloc(kSize));
  void* x = alloc(kSize);
  memset(x, 0x3c, kSize);
  for (int round = 0; round < 20; ++round) {
    // The heap's last owner: one allocator call, then exit (the era rarely moves meanwhile).
    std::thread([] { free(alloc(kSize)); }).join();
    std::atomic<int> phase{0};
    std::atomic<long> bad{0};
    std::thread reader([&] {
      g_sink = alloc(24);  // its only allocator call: on the recycled heap
      phase.store(1, std::memory_order_release);
      long b = 0;
      while (phase.load(std::memory_order_acquire) != 2) {
        const volatile unsigned char* c = static_cast<const volatile unsigned char*>(x);
        for (size_t i = 0; i < kSize; ++i) b += c[i] != 0x3c;
      }
      bad.store(b);
    });
    while (phase.load(std::memory_order_acquire) != 1) {
    }
    free(x);
    for (void* p : pool) free(p);
    pool.clear();
    for (int i = 0; i < 4000; ++i) {
      void* p = alloc(kSize);
      memset(p, 0x5a, kSize);
      pool.push_back(p);
    }
    phase.store(2, std::memory_order_release);
    reader.join();
    ASSERT_EQ(bad.load(), 0) << "round " << round << ": the block changed under its reader";
    x = pool.back();
    pool.pop_back();
    memset(x, 0x3c, kSize);
  }
  free(x);
  for (void* p : pool) free(p);
}
