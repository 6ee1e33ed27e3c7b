// Holes the reclamation layer once had, each as the user would hit it: two threads retiring the
// same block at the same moment (exactly one report, the block in one batch only), a free or
// realloc of a retired block (reported, never reused under its reader), a barrier in a fork
// child while the forking thread's region still holds an inherited batch, the frees a
// thread owes after a long stall spread over its next calls (at most kFreeBudget per call),
// and deleters of batches that reach zero inside the retirer's own region.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "reclaim_util.h"

using namespace rt;

namespace {

struct ContinueMode {
  ContinueMode() { wfmm_option_set("on_error", 1); }
  ~ContinueMode() { wfmm_option_set("on_error", 0); }
};

size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// No two of these blocks overlap and each still holds what was written into it.
void expect_distinct_and_intact(size_t n, size_t size) {
  std::vector<void*> v;
  for (size_t i = 0; i < n; ++i) {
    void* p = wfmm_malloc(size);
    wfmm_test::fill(p, size, i);
    v.push_back(p);
  }
  std::vector<void*> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "a block was handed out twice";
  for (size_t i = 0; i < n; ++i)
    EXPECT_TRUE(wfmm_test::check(v[i], size, i)) << "block " << i << " was overwritten";
  for (void* p : v) wfmm_free(p);
}

}  // namespace

// Two threads retire the same block at the same moment, round after round. The side word is
// taken with a CAS: one wins, the other reports and adds nothing. (With a plain store both
// could pass the check and the block went into two batches: freed twice.)
TEST(ReclaimSafety, RacingDoubleRetireIsReportedExactlyOncePerPair) {
  const int rounds = 200 * g_scale;
  constexpr int kPerRound = 64;  // blocks both threads free in the same order each round
  void* blocks[kPerRound];
  std::atomic<int> go{0}, done{0};
  std::string err;
  {
    ContinueMode on;
    testing::internal::CaptureStderr();
    auto racer = [&](int me) {
      for (int r = 1; r <= rounds; ++r) {
        while (go.load(std::memory_order_acquire) != r) {
        }
        for (void* p : blocks) wfmm_retire(p);
        done.fetch_add(1, std::memory_order_acq_rel);
        (void)me;
      }
    };
    std::thread a(racer, 0), b(racer, 1);
    for (int r = 1; r <= rounds; ++r) {
      for (void*& p : blocks) p = wfmm_malloc(48);
      go.store(r, std::memory_order_release);
      while (done.load(std::memory_order_acquire) != 2 * r) {
      }
    }
    a.join();
    b.join();
    wfmm_barrier();
    err = testing::internal::GetCapturedStderr();
  }
  // The loser finds the block retired, or (when the winner's batch filled, published and was
  // freed in between: no region holds it) freed: one report either way.
  EXPECT_EQ(count_of(err, "already retired") + count_of(err, "use of a freed block"),
            size_t(rounds) * kPerRound)
      << err.substr(0, 2000);
  EXPECT_EQ(count_of(err, "wfmm:"), size_t(rounds) * kPerRound) << err.substr(0, 2000);
  expect_all_reclaimed("after the racing retires");
  expect_distinct_and_intact(4000, 48);
}

// A reader holds p; p is retired; then the program (wrongly) frees p. The free is reported and
// ignored: p stays retired and is not handed out while the reader holds it.
TEST(ReclaimSafety, FreeOrReallocOfARetiredBlockIsReportedAndNotReused) {
  std::atomic<void*> root{nullptr};
  void* p = wfmm_malloc(64);
  wfmm_test::fill(p, 64, 99);
  root.store(p);
  std::atomic<int> phase{0};
  std::atomic<bool> intact{true};
  std::thread reader([&] {
    wfmm::region r;
    void* q = wfmm_protect(reinterpret_cast<void* const volatile*>(&root), 0);
    phase.store(1);
    while (phase.load() != 2) {
      if (!wfmm_test::check(q, 64, 99)) intact.store(false);
    }
  });
  while (phase.load() != 1) {
  }
  root.store(nullptr);
  wfmm_retire(p);
  wfmm_flush();
  std::string err;
  std::vector<void*> fresh;
  {
    ContinueMode on;
    testing::internal::CaptureStderr();
    wfmm_free(p);
    EXPECT_EQ(wfmm_realloc(p, 32), nullptr);
    EXPECT_EQ(wfmm_realloc(p, 4000), nullptr);
    for (int i = 0; i < 2000; ++i) {
      void* f = wfmm_malloc(64);
      memset(f, 0x5a, 64);
      fresh.push_back(f);
    }
    err = testing::internal::GetCapturedStderr();
  }
  EXPECT_EQ(count_of(err, "free of a retired block"), 3u) << err;
  EXPECT_EQ(std::find(fresh.begin(), fresh.end(), p), fresh.end()) << "the retired block was reused";
  phase.store(2);
  reader.join();
  EXPECT_TRUE(intact.load()) << "the reader saw its block change";
  for (void* f : fresh) wfmm_free(f);
  wfmm_barrier();
  expect_all_reclaimed("after the reader left");
}

// The owner holds its retired block in its own region, frees it wrongly (reported, ignored),
// then leaves last: its leave reclaims the block as a local free that skips the interior and
// retired tests (heap_free<kReclaimed>). The block goes back exactly once.
TEST(ReclaimSafety, OwnersReclamationOfABlockItWronglyFreedHandsItOutOnce) {
  std::atomic<void*> root{nullptr};
  std::string err;
  {
    ContinueMode on;
    testing::internal::CaptureStderr();
    for (int round = 0; round < 64; ++round) {
      void* p = wfmm_malloc(64);
      wfmm_test::fill(p, 64, round);
      root.store(p);
      wfmm_enter();
      void* q = wfmm_protect(reinterpret_cast<void* const volatile*>(&root), 0);
      root.store(nullptr);
      wfmm_retire(q);
      wfmm_flush();      // published: our own reservation holds it
      wfmm_free(q);      // the program's error: reported, not freed
      EXPECT_TRUE(wfmm_test::check(q, 64, round)) << "the retired block changed in its region";
      wfmm_leave();      // the last holder: frees it here, on this thread's own page
    }
    wfmm_barrier();
    err = testing::internal::GetCapturedStderr();
  }
  EXPECT_EQ(count_of(err, "free of a retired block"), 64u) << err;
  EXPECT_EQ(count_of(err, "double free"), 0u) << err;  // (reclamation freed each one once)
  expect_all_reclaimed("after the owner's leaves");
  EXPECT_EQ(wfmm_test::fresh_blocks_check(wfmm_malloc, wfmm_free, 4000, 64), "");
}

TEST(ReclaimSafetyDeath, FreeOfARetiredBlockAborts) {
  EXPECT_DEATH(
      {
        void* keep = wfmm_malloc(64);
        void* p = wfmm_malloc(64);
        wfmm_retire(p);
        wfmm_free(p);
        wfmm_free(keep);
      },
      "wfmm: free: free of a retired block");
  // A large block fills a batch by itself (128 KiB): a region must hold it, or it is freed at
  // once and the free below is a plain double free.
  EXPECT_DEATH(
      {
        std::atomic<void*> root{wfmm_malloc(1 << 20)};
        wfmm::region r;
        void* p = wfmm_protect(reinterpret_cast<void* const volatile*>(&root), 0);
        root.store(nullptr);
        wfmm_retire(p);
        wfmm_free(p);
      },
      "wfmm: free: free of a retired block");
}

// The forking thread sits in a region that holds a batch published before the fork. In the
// child a barrier must wait for that batch (the barrier's counts are inherited, not reset):
// it returns only after the region closed and the batch's deleter ran.
TEST(ReclaimSafety, BarrierInAForkChildWaitsForAnInheritedBatch) {
  static std::atomic<int> deleted{0};
  deleted = 0;
  std::atomic<void*> root{wfmm_malloc(64)};
  wfmm_enter();
  void* held = wfmm_protect(reinterpret_cast<void* const volatile*>(&root), 0);
  ASSERT_NE(held, nullptr);
  std::thread([&] {
    void* n = root.exchange(nullptr);
    wfmm_retire_with(n, [](void*, void*) { deleted.fetch_add(1); }, nullptr);
    wfmm_flush();  // published: our region's reservation holds it
  }).join();
  pid_t pid = fork();
  if (pid == 0) {
    std::atomic<int> returned{0};
    std::atomic<int> deleted_at_return{-1};
    std::thread t([&] {
      wfmm_barrier();
      deleted_at_return.store(deleted.load());
      returned.store(1);
    });
    usleep(200 * 1000);
    int early = returned.load();
    wfmm_leave();  // drops the batch: the deleter runs here or in the barrier
    t.join();
    if (early != 0) _exit(10);                  // returned while the batch was held
    if (deleted_at_return.load() != 1) _exit(11);  // returned before the batch was freed
    _exit(0);
  }
  ASSERT_GT(pid, 0);
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  wfmm_leave();
  wfmm_barrier();
  EXPECT_TRUE(WIFEXITED(st)) << "child died";
  EXPECT_EQ(WEXITSTATUS(st), 0) << "10: barrier returned while the batch was held; "
                                   "11: returned before it was freed";
  EXPECT_EQ(deleted.load(), 1);
}

// A reader stalled in its region holds many batches; when it leaves, the frees it owes are
// spread over its next calls: at most kFreeBudget (64) blocks per call, the rest later.
TEST(ReclaimSafety, FreesOwedAfterAStallAreSpreadOverCalls) {
  expect_all_reclaimed("before");
  const int n = 20000;
  std::vector<void*> blocks;
  for (int i = 0; i < n; ++i) blocks.push_back(wfmm_malloc(32));
  std::atomic<void*> root{wfmm_malloc(32)};
  std::atomic<int> phase{0};
  std::vector<uint64_t> per_call;
  std::thread reader([&] {
    wfmm_enter();
    wfmm_protect(reinterpret_cast<void* const volatile*>(&root), 0);  // era >= every birth
    phase.store(1);
    while (phase.load() != 2) {
    }
    uint64_t before = stats().reclaimed;
    wfmm_leave();  // every batch drops to zero here
    uint64_t now = stats().reclaimed;
    per_call.push_back(now - before);
    // Bound: n / 64 calls at 64 each, plus slack.
    for (int i = 0; i < n && stats().retired_pending != 1; ++i) {
      before = now;
      wfmm_flush();
      now = stats().reclaimed;
      per_call.push_back(now - before);
    }
  });
  while (phase.load() != 1) {
  }
  for (void* p : blocks) wfmm_retire(p);
  wfmm_flush();
  wfmm_retire(root.exchange(nullptr));  // the one block still pending when the reader stops
  phase.store(2);
  reader.join();
  ASSERT_GT(per_call.size(), size_t(n / 64 - 1)) << "the frees were not spread out";
  uint64_t most = *std::max_element(per_call.begin(), per_call.end());
  EXPECT_LE(most, 64u) << "one call freed more than kFreeBudget blocks";
  wfmm_barrier();
  expect_all_reclaimed("after");
}

// A writer retires nodes with deleters inside its regions and protects nothing (it holds the
// structure another way): each full batch reaches zero at its publish, inside the region,
// where no deleter may run. Those batches used to go to the global orphans, which only a
// leave with work of its own took back: this loop never had any, and nothing was ever
// reclaimed (the xenium hash map with WFMM_BATCH=1024 grew to a million pending nodes). Now
// the leave that ends the region frees them; pending stays within a few batches.
TEST(ReclaimSafety, DeletersOfBatchesThatReachZeroInsideTheRegionRunAtItsLeave) {
  expect_all_reclaimed("before");
  static std::atomic<uint64_t> deleted{0};
  deleted.store(0);
  uint64_t base = stats().reclaimed;
  const int n = 200000;
  uint64_t worst = 0;
  for (int i = 0; i < n; ++i) {
    wfmm_enter();
    auto* p = static_cast<uint64_t*>(wfmm_malloc(32));
    *p = uint64_t(i);
    wfmm_retire_with(p, [](void* q, void*) { deleted.fetch_add(1); (void)q; }, nullptr);
    wfmm_leave();
    uint64_t pending = uint64_t(i + 1) - (stats().reclaimed - base);
    if (pending > worst) worst = pending;
  }
  // Default batch (64): at most the partial batch and one being freed.
  EXPECT_LE(worst, 4u * 64) << "deleters waited: reclaimed " << stats().reclaimed - base
                            << " of " << n;
  wfmm_barrier();
  EXPECT_EQ(deleted.load(), uint64_t(n));
  expect_all_reclaimed("after");
}
