// Page and heap invariants (types.h): after local frees, remote frees, collection, page
// reuse, thread exit and adoption, the heap's lists agree with its counters.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "heap.h"
#include "test_util.h"
#include "wfmm/wfmm.h"

namespace wfmm {
const char* heap_validate();
}

using wfmm::heap_validate;
using wfmm_test::check;
using wfmm_test::fill;
using wfmm_test::Rng;

#define EXPECT_HEAP_VALID()            \
  do {                                 \
    const char* why = heap_validate(); \
    EXPECT_EQ(why, nullptr) << why;    \
  } while (0)

TEST(Page, LocalAllocFreeKeepsTheCountingIdentity) {
  Rng r(1);
  std::vector<void*> live;
  for (int i = 0; i < 50000; ++i) {
    if (live.empty() || r.below(3) != 0) {
      live.push_back(wfmm_malloc(1 + r.below(3000)));
    } else {
      size_t k = r.below(live.size());
      wfmm_free(live[k]);
      live[k] = live.back();
      live.pop_back();
    }
    if (i % 5000 == 0) EXPECT_HEAP_VALID();
  }
  EXPECT_HEAP_VALID();
  for (void* p : live) wfmm_free(p);
  EXPECT_HEAP_VALID();
}

TEST(Page, RemoteFreesAreCollectedByTheOwner) {
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) {
    void* p = wfmm_malloc(64);
    fill(p, 64, i);
    blocks.push_back(p);
  }
  wfmm_stats before;
  wfmm_stats_get(&before);
  std::thread t([&] {
    for (size_t i = 0; i < blocks.size(); i += 2) {
      ASSERT_TRUE(check(blocks[i], 64, i));
      wfmm_free(blocks[i]);
    }
  });
  t.join();
  EXPECT_HEAP_VALID();
  // The owner reuses the remotely freed blocks before mapping anything new.
  std::vector<void*> again;
  for (int i = 0; i < 10000; ++i) again.push_back(wfmm_malloc(64));
  wfmm_stats after;
  wfmm_stats_get(&after);
  EXPECT_LE(after.bytes_mapped, before.bytes_mapped);
  EXPECT_HEAP_VALID();
  for (size_t i = 1; i < blocks.size(); i += 2) {
    ASSERT_TRUE(check(blocks[i], 64, i));
    wfmm_free(blocks[i]);
  }
  for (void* p : again) wfmm_free(p);
  EXPECT_HEAP_VALID();
}

TEST(Page, AbandonedSegmentsAreAdoptedAndStayConsistent) {
  // A thread allocates and exits with live blocks; this thread frees some of them (remote,
  // into an abandoned segment) and then allocates enough to adopt the segment.
  std::vector<void*> left;
  std::thread([&] {
    for (int i = 0; i < 30000; ++i) {
      void* p = wfmm_malloc(32 + (i % 5) * 16);
      fill(p, 32, i);
      left.push_back(p);
    }
  }).join();
  for (size_t i = 0; i < left.size(); i += 3) {
    ASSERT_TRUE(check(left[i], 32, i));
    wfmm_free(left[i]);
  }
  std::vector<void*> mine;
  for (int i = 0; i < 30000; ++i) mine.push_back(wfmm_malloc(32 + (i % 5) * 16));
  EXPECT_HEAP_VALID();
  for (size_t i = 0; i < left.size(); ++i) {
    if (i % 3 == 0) continue;
    ASSERT_TRUE(check(left[i], 32, i)) << i;
    wfmm_free(left[i]);
  }
  for (void* p : mine) wfmm_free(p);
  EXPECT_HEAP_VALID();
}

TEST(Page, EmptyPagesArePurgedOnlyAfterTheDelay) {
  ASSERT_EQ(wfmm_option_set("purge_delay_ms", 200), 0);
  std::vector<void*> ps;
  for (int i = 0; i < 40000; ++i) {
    void* p = wfmm_malloc(200);
    memset(p, 7, 200);
    ps.push_back(p);
  }
  wfmm_stats full;
  wfmm_stats_get(&full);
  for (void* p : ps) wfmm_free(p);
  wfmm_collect(0);  // too early: nothing is purged yet
  wfmm_stats early;
  wfmm_stats_get(&early);
  EXPECT_GE(early.bytes_committed + (1u << 20), full.bytes_committed);
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  wfmm_collect(0);
  wfmm_stats later;
  wfmm_stats_get(&later);
  EXPECT_LT(later.bytes_committed + (6u << 20), full.bytes_committed);
  EXPECT_HEAP_VALID();
  wfmm_option_set("purge_delay_ms", 50);
}
