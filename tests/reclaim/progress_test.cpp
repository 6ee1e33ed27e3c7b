// Progress: with WFMM_COUNT_STEPS=1 every bounded loop on the reclamation paths records its
// largest per-call iteration count. 16 oversubscribed threads (2 cores) hammer a Treiber
// stack and a Michael-Scott queue; afterwards each maximum must be within the bound wfmm.h
// documents for the threads seen (n = p.threads):
//   protect_fast_max <= protect_attempts option
//   protect_slow_max, help_max, tag_cas_max <= n + 1
//   publish_max <= n * slots_per_record
// ctest runs it with default options and with every slow path forced.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "reclaim_util.h"
#include "structures.h"

using namespace rt;
using wfmm_test::Rng;

namespace {

void print(const wfmm_progress& p) {
  printf(
      "  progress: threads %llu slots/record %llu | protect_fast_max %llu protect_slow_max "
      "%llu help_max %llu tag_cas_max %llu publish_max %llu\n",
      (unsigned long long)p.threads, (unsigned long long)p.slots_per_record,
      (unsigned long long)p.protect_fast_max, (unsigned long long)p.protect_slow_max,
      (unsigned long long)p.help_max, (unsigned long long)p.tag_cas_max,
      (unsigned long long)p.publish_max);
}

}  // namespace

TEST(ReclaimProgress, StepMaximaWithinDocumentedBoundsOn16Threads) {
  if (option("count_steps") != 1) GTEST_SKIP() << "needs WFMM_COUNT_STEPS=1";
  g_fail.reset();
  constexpr int kThreads = 16;
  const int ops = (forced_slow() ? 100000 : 400000) * g_scale;
  std::vector<uint64_t> pushed(kThreads, 0), enqueued(kThreads, 0);
  std::atomic<uint64_t> popped{0}, dequeued{0};
  {
    TreiberStack stack;
    MsQueue queue;
    StartLine start(kThreads);
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t) {
      ts.emplace_back([&, t] {
        Rng r(g_seed * 5000 + t);
        // Claim a thread record before the start line, so all 16 are in use at once.
        wfmm_enter();
        wfmm_leave();
        start.arrive_and_wait();
        uint64_t mine_popped = 0, mine_dequeued = 0;
        for (int i = 0; i < ops && g_fail.count.load() == 0; ++i) {
          uint64_t k;
          switch (r.below(5)) {
            case 0:
              stack.push(uint64_t(t) << 32 | pushed[t]++);
              break;
            case 1:
              mine_popped += stack.pop(&k);
              break;
            case 2:
              queue.enqueue(uint64_t(t) << 32 | enqueued[t]++);
              break;
            case 3:
              mine_dequeued += queue.dequeue(&k);
              break;
            default:
              stack.peek2();
              break;
          }
        }
        popped += mine_popped;
        dequeued += mine_dequeued;
      });
    }
    for (auto& th : ts) th.join();
    uint64_t k;
    while (stack.pop(&k)) popped++;
    while (queue.dequeue(&k)) dequeued++;
  }
  RT_EXPECT_NO_FAILURES();
  uint64_t total_pushed = 0, total_enqueued = 0;
  for (int t = 0; t < kThreads; ++t) {
    total_pushed += pushed[t];
    total_enqueued += enqueued[t];
  }
  EXPECT_EQ(popped.load(), total_pushed);
  EXPECT_EQ(dequeued.load(), total_enqueued);
  expect_all_reclaimed("progress run");

  wfmm_progress p{};
  wfmm_progress_get(&p);
  print(p);
  const uint64_t n = p.threads;
  const long attempts = option("protect_attempts");
  ASSERT_GE(attempts, 0);
  EXPECT_GE(n, uint64_t(kThreads)) << "16 threads held records at once";
  EXPECT_GE(p.slots_per_record, uint64_t(WFMM_PROTECT_SLOTS));
  EXPECT_LE(p.protect_fast_max, uint64_t(attempts));
  EXPECT_LE(p.protect_slow_max, n + 1);
  EXPECT_LE(p.help_max, n + 1);
  EXPECT_LE(p.tag_cas_max, n + 1);
  EXPECT_LE(p.publish_max, n * p.slots_per_record);
  // What the mode guarantees happened at least once.
  EXPECT_GT(p.publish_max, 0u) << "batches were published while records were in use";
  if (forced_slow()) {
    EXPECT_EQ(p.protect_fast_max, 0u) << "WFMM_PROTECT_ATTEMPTS=0 allows no fast attempt";
    EXPECT_GT(p.protect_slow_max, 0u) << "every protect takes the slow path in this mode";
    EXPECT_GT(p.tag_cas_max, 0u) << "every slow-path request is closed by a tag CAS";
    EXPECT_GT(stats().protect_slow, 0u);
  } else {
    EXPECT_GT(p.protect_fast_max, 0u) << "every protect makes at least one fast attempt";
  }
}
