// Bad input to the reclamation API gets a "wfmm: <call>: ..." message and an abort (or,
// with WFMM_ON_ERROR=continue, a report and nothing else): retiring a pointer wfmm did not
// hand out, an interior pointer, a block twice or a freed block; protect with an index
// >= WFMM_PROTECT_SLOTS or outside a region (fatal even in continue mode), a stray leave,
// barrier inside a region.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "reclaim_util.h"

using namespace rt;
using wfmm_test::count_of;

namespace {

struct ContinueMode {
  ContinueMode() { wfmm_option_set("on_error", 1); }
  ~ContinueMode() { wfmm_option_set("on_error", 0); }
};

int g_static_word[4];
void noop_dtor(void*, void*) {}

std::atomic<void*> g_root_for_protect{nullptr};
void* const volatile* root_src() {
  return reinterpret_cast<void* const volatile*>(&g_root_for_protect);
}

}  // namespace

TEST(ReclaimBadInputDeath, RetireOfPointersNotFromWfmm) {
  EXPECT_DEATH(
      {
        int x = 0;
        wfmm_retire(&x);
      },
      "wfmm: retire.*(not allocated by wfmm|invalid)");
  EXPECT_DEATH(wfmm_retire(&g_static_word[0]), "wfmm: retire.*not allocated by wfmm");
  EXPECT_DEATH(
      {
        void* p = malloc(100);  // glibc's block
        wfmm_retire(p);
      },
      "wfmm: retire.*(not allocated by wfmm|invalid)");
  EXPECT_DEATH(
      {
        int x = 0;
        wfmm_retire_with(&x, noop_dtor, nullptr);
      },
      "wfmm: retire.*not allocated by wfmm");
}

TEST(ReclaimBadInputDeath, RetireOfAnInteriorPointer) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(wfmm_malloc(64));
        wfmm_retire(p + 16);
      },
      "wfmm: retire.*(inside a block|invalid)");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(wfmm_malloc(1 << 20));
        wfmm_retire(p + 4096);
      },
      "wfmm: retire.*invalid pointer");
}

TEST(ReclaimBadInputDeath, RetireTwice) {
  // Second retire while the first is still pending in this thread's batch.
  EXPECT_DEATH(
      {
        void* keep = wfmm_malloc(64);
        void* p = wfmm_malloc(64);
        wfmm_retire(p);
        wfmm_retire(p);
        wfmm_free(keep);
      },
      "wfmm: retire.*already retired");
  // Second retire from another thread while the first sits in this thread's batch.
  EXPECT_DEATH(
      {
        void* keep = wfmm_malloc(64);
        void* p = wfmm_malloc(64);
        wfmm_retire(p);
        std::thread([p] { wfmm_retire(p); }).join();
        wfmm_free(keep);
      },
      "wfmm: retire.*already retired");
}

TEST(ReclaimBadInputDeath, RetireOfAFreedOrReclaimedBlock) {
  EXPECT_DEATH(
      {
        void* keep = wfmm_malloc(64);
        void* p = wfmm_malloc(64);
        wfmm_free(p);
        wfmm_retire(p);
        wfmm_free(keep);
      },
      "wfmm: retire.*(freed|invalid)");
  EXPECT_DEATH(
      {
        void* keep = wfmm_malloc(64);
        void* p = wfmm_malloc(64);
        wfmm_retire(p);
        wfmm_barrier();  // reclaimed (freed) now
        wfmm_retire(p);
        wfmm_free(keep);
      },
      "wfmm: retire.*(freed|invalid)");
}

// protect misuse has no safe answer (an unprotected pointer would be a use-after-free
// waiting to happen), so it stops the program even with WFMM_ON_ERROR=continue.
TEST(ReclaimBadInputDeath, ProtectIndexOutOfRange) {
  EXPECT_DEATH(
      {
        wfmm_enter();
        wfmm_protect(root_src(), WFMM_PROTECT_SLOTS);
      },
      "wfmm: protect.*index out of range");
  EXPECT_DEATH(
      {
        wfmm::region r;
        wfmm_protect(root_src(), ~0u);
      },
      "wfmm: protect.*index out of range");
  EXPECT_DEATH(
      {
        ContinueMode on;
        wfmm::region r;
        wfmm_protect(root_src(), WFMM_PROTECT_SLOTS);
      },
      "wfmm: protect.*index out of range(.|\n)*cannot continue");
}

TEST(ReclaimBadInputDeath, ProtectOutsideARegion) {
  EXPECT_DEATH(wfmm_protect(root_src(), 0), "wfmm: protect.*outside a region");
  EXPECT_DEATH(
      {
        { wfmm::region r; }
        wfmm_protect(root_src(), 0);  // after the region closed
      },
      "wfmm: protect.*outside a region");
}

TEST(ReclaimBadInputDeath, BarrierInsideARegion) {
  EXPECT_DEATH(
      {
        wfmm::region r;
        wfmm_barrier();
      },
      "wfmm: barrier");
}

TEST(ReclaimBadInputDeath, LeaveWithoutEnter) {
  EXPECT_DEATH(wfmm_leave(), "wfmm: leave.*without a matching");
  EXPECT_DEATH(
      {
        wfmm_enter();
        wfmm_leave();
        wfmm_leave();
      },
      "wfmm: leave");
}

// Continue mode: each bad call is reported and ignored; counts stay exact and the heap
// intact (no block freed twice, nothing retired that should not be).
TEST(ReclaimBadInput, ContinueModeReportsIgnoresAndKeepsCountsExact) {
  expect_all_reclaimed("before");
  const wfmm_stats before = stats();
  std::vector<void*> live;
  for (int i = 0; i < 100; ++i) {
    void* p = wfmm_malloc(48);
    wfmm_test::fill(p, 48, uint64_t(i));
    live.push_back(p);
  }
  void* twice = wfmm_malloc(64);
  void* glibc = malloc(64);
  std::string err;
  {
    ContinueMode on;
    testing::internal::CaptureStderr();
    int x = 0;
    wfmm_retire(&x);                                // stack
    wfmm_retire(&g_static_word[1]);                 // static
    wfmm_retire(glibc);                             // glibc
    wfmm_retire(static_cast<char*>(live[5]) + 16);  // interior
    wfmm_retire_with(&x, noop_dtor, nullptr);       // foreign, with a destructor
    wfmm_retire(twice);                             // fine
    wfmm_retire(twice);                             // twice: ignored
    wfmm_leave();                                   // no region open: ignored
    {
      wfmm::region r;  // regions still work after the stray leave
    }
    err = testing::internal::GetCapturedStderr();
  }
  free(glibc);
  EXPECT_NE(err.find("wfmm: retire"), std::string::npos) << err;
  EXPECT_NE(err.find("already retired"), std::string::npos) << err;
  EXPECT_NE(err.find("wfmm: leave"), std::string::npos) << err;
  EXPECT_NE(err.find("continue"), std::string::npos) << err;
  // One report per bad call: 5 bad retires + 1 double retire + 1 stray leave.
  size_t lines = size_t(std::count(err.begin(), err.end(), '\n'));
  EXPECT_EQ(lines, 7u) << err;

  expect_all_reclaimed("after bad calls");
  const wfmm_stats after = stats();
  EXPECT_EQ(after.retired - before.retired, 1u) << "only the one valid retire counts";
  // The live blocks are untouched and nothing was freed twice.
  std::vector<void*> fresh;
  for (int i = 0; i < 300; ++i) fresh.push_back(wfmm_malloc(48));
  std::vector<void*> sorted = fresh;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end())
      << "a block was handed out twice";
  for (size_t i = 0; i < live.size(); ++i) {
    EXPECT_TRUE(wfmm_test::check(live[i], 48, uint64_t(i))) << "live block " << i << " changed";
    EXPECT_EQ(std::find(fresh.begin(), fresh.end(), live[i]), fresh.end());
  }
  for (void* p : fresh) wfmm_free(p);
  for (void* p : live) wfmm_free(p);
}

// Two threads retire the same blocks at the same moment, each inside a region and holding
// the block under one of its own reservations (a program's double retire: two erasers of
// one node): exactly one report per block, and no block is handed out twice. A retire that
// its own reservation covers marks the block with a plain store (mark_retired), so both may
// add it to their batches; the batch the side word does not name reports at reclamation.
TEST(ReclaimBadInput, RacingDoubleRetireInRegionsIsReportedExactlyOncePerBlock) {
  expect_all_reclaimed("before");
  const wfmm_stats before = stats();
  // Each block under its own protect index, so each racer holds every block it retires
  // until its leave (the program's bug is the second retire, not a use after it).
  constexpr int kRounds = 2000, kPerRound = WFMM_PROTECT_SLOTS;
  const size_t blocks = size_t(kRounds) * kPerRound;
  std::atomic<void*> slots[kPerRound];
  size_t found = 0, attempts = 0;
  // Rounds in which the other racer retired something while this one was retiring: the two
  // ran at once (on a loaded machine they may not, and then no race can happen).
  std::atomic<uint64_t> overlapped{0};
  // Until both retires of some block loaded its birth before either stored its mark (the
  // race the plain store allows; with the CAS the loser always reports at once): at most
  // 10 attempts of kRounds rounds; on an idle machine most find hundreds.
  while (found == 0 && attempts < 10) {
    ++attempts;
    std::atomic<int> go{0}, inside{0}, done{0};
    std::atomic<uint64_t> progress[2] = {{0}, {0}};
    std::atomic<uint64_t> unprotected{0};
    std::string err;
    {
      ContinueMode on;
      testing::internal::CaptureStderr();
      auto racer = [&](int me) {
        for (int r = 1; r <= kRounds; ++r) {
          // Spin briefly (the race needs both threads running), then let the other in.
          for (int spin = 0; go.load(std::memory_order_acquire) != r; ++spin)
            if (spin > 200) std::this_thread::yield();
          {
            wfmm::region g;
            void* held[kPerRound];
            for (unsigned i = 0; i < kPerRound; ++i) {
              held[i] = wfmm_protect(reinterpret_cast<void* const volatile*>(&slots[i]), i);
              if (held[i] == nullptr) unprotected.fetch_add(1, std::memory_order_relaxed);
            }
            // Both hold every block before either retires: the race needs both running.
            inside.fetch_add(1, std::memory_order_acq_rel);
            for (int spin = 0; inside.load(std::memory_order_acquire) != 2 * r; ++spin)
              if (spin > 200) std::this_thread::yield();
            uint64_t other = progress[1 - me].load(std::memory_order_acquire);
            for (void* p : held) {
              wfmm_retire(p);
              progress[me].fetch_add(1, std::memory_order_release);
            }
            if (progress[1 - me].load(std::memory_order_acquire) != other)
              overlapped.fetch_add(1, std::memory_order_relaxed);
          }
          done.fetch_add(1, std::memory_order_acq_rel);
        }
      };
      std::thread a(racer, 0), b(racer, 1);
      for (int r = 1; r <= kRounds; ++r) {
        for (auto& s : slots) s.store(wfmm_malloc(48), std::memory_order_release);
        go.store(r, std::memory_order_release);
        while (done.load(std::memory_order_acquire) != 2 * r) std::this_thread::yield();
      }
      a.join();
      b.join();
      wfmm_barrier();  // every batch freed: reports found at reclamation are in by now
      err = testing::internal::GetCapturedStderr();
    }
    ASSERT_EQ(unprotected.load(), 0u);
    // Exactly one report per block, at once or at reclamation.
    ASSERT_EQ(count_of(err, "already retired"), blocks) << err.substr(0, 2000);
    ASSERT_EQ(count_of(err, "wfmm:"), blocks) << err.substr(0, 2000);
    // The block went back once, through the batch its side word names: the heap never saw
    // a second free of it.
    ASSERT_EQ(count_of(err, "double free"), 0u) << err.substr(0, 2000);
    found = count_of(err, "retire (raced with another retire of it; found at reclamation)");
  }
  printf("double retires found at reclamation: %zu (attempt %zu, %zu blocks each, %llu "
         "rounds overlapped)\n",
         found, attempts, blocks, (unsigned long long)overlapped.load());
  // Idle, about 1 overlapping round in 20-50 races on some block: 5000 of them without one
  // mean covered retires no longer take the plain store.
  if (overlapped.load() >= 5000)
    EXPECT_GT(found, 0u) << "no race reached reclamation in " << overlapped.load()
                         << " overlapping rounds: covered retires did not take the plain store";
  else if (found == 0)
    printf("(too little overlap on this machine now to check the plain store path)\n");
  expect_all_reclaimed("after the races");
  const wfmm_stats after = stats();
  // Reported at once: not retired; reported at reclamation: retired and reclaimed twice.
  EXPECT_GE(after.retired - before.retired, blocks * attempts);
  EXPECT_EQ(wfmm_test::fresh_blocks_check(wfmm_malloc, wfmm_free, 8000, 48), "");
}
