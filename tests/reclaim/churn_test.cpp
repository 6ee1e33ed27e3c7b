// Thread churn: 20000 short-lived threads (16 at a time) each enter a region, protect a
// shared node (and check it), sometimes replace and retire it, retire a few blocks of their
// own, leave and exit. Thread records and batches are recycled: mapped memory after the
// first 2000 threads is what it is at the end, the thread count stays small, pending
// retirements do not pile up across exits, and after barrier() everything is reclaimed.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "reclaim_util.h"

using namespace rt;
using wfmm_test::Rng;

namespace {

struct CNode {
  Payload pl;
  uint64_t body[6];
  CNode(uint64_t k, uint64_t u) : pl(k, u) {
    for (int i = 0; i < 6; ++i) body[i] = wfmm_test::mix(k + uint64_t(i));
  }
  bool body_ok() const {
    uint64_t k = pl.key.load(std::memory_order_relaxed);
    for (int i = 0; i < 6; ++i)
      if (body[i] != wfmm_test::mix(k + uint64_t(i))) return false;
    return true;
  }
};

std::atomic<CNode*> g_shared{nullptr};

void churn_thread(int i) {
  Rng r(g_seed * 7919 + uint64_t(i));
  wfmm::region reg;
  CNode* n = wfmm::protect(g_shared, 0);
  if (!valid(n, "churn: shared node at protect")) return;
  if (!n->body_ok()) g_fail.add("churn: shared node body corrupted");
  if (i % 4 == 0) {
    CNode* old =
        g_shared.exchange(make<CNode>(uint64_t(i), uint64_t(i)), std::memory_order_acq_rel);
    old->pl.mark_unlinked();
    wfmm::retire(old);
  }
  for (int k = 0; k < 3; ++k) {
    size_t sz = 16 + r.below(240);
    void* p = wfmm_malloc(sz);
    wfmm_test::fill(p, sz, uint64_t(i) * 8 + uint64_t(k));
    if (!wfmm_test::check(p, sz, uint64_t(i) * 8 + uint64_t(k)))
      g_fail.add("churn: fresh block lost its pattern");
    wfmm_retire(p);
  }
  // Still protected after the swap and our own retirements.
  if (valid(n, "churn: shared node before leave") && !n->body_ok())
    g_fail.add("churn: shared node body corrupted before leave");
}

// Mapped memory without the allocator's caches (up to WFMM_SEGMENT_CACHE empty segments and
// not-yet-purged pages, which make bytes_mapped swing by tens of MiB from one round of 16
// exits to the next): what is still held.
wfmm_stats settled_stats() {
  wfmm_collect(1);
  return stats();
}

}  // namespace

TEST(ReclaimChurn, ShortLivedThreadsDoNotGrowMemory) {
  g_fail.reset();
  const int kTotal = 20000 * g_scale;
  const int kAtOnce = 16;
  const int kMidPoint = 2000;
  const uint64_t batch = uint64_t(option("batch"));
  expect_all_reclaimed("before churn");
  g_shared.store(make<CNode>(1, 1));
  const wfmm_stats s0 = stats();
  wfmm_stats mid{};
  uint64_t max_threads = 0, max_pending = 0;
  // After a round is joined no region is open: what is pending is at most what the last
  // round's exits are still freeing. Allow 4 batches per thread of a round.
  const uint64_t pending_bound = uint64_t(kAtOnce + 1) * batch * 4 + 64;
  for (int base = 0; base < kTotal && g_fail.count.load() == 0; base += kAtOnce) {
    std::vector<std::thread> ts;
    ts.reserve(kAtOnce);
    for (int j = 0; j < kAtOnce; ++j) ts.emplace_back(churn_thread, base + j);
    for (auto& t : ts) t.join();
    wfmm_stats s = stats();
    max_threads = std::max(max_threads, s.threads);
    max_pending = std::max(max_pending, s.retired_pending);
    if (base + kAtOnce == kMidPoint) mid = settled_stats();
  }
  const wfmm_stats end = settled_stats();
  RT_EXPECT_NO_FAILURES();
  printf(
      "  churn: mapped after collect %llu -> %llu bytes (committed %llu -> %llu), max threads "
      "%llu, "
      "max pending after a round %llu, retired %llu\n",
      (unsigned long long)mid.bytes_mapped, (unsigned long long)end.bytes_mapped,
      (unsigned long long)mid.bytes_committed, (unsigned long long)end.bytes_committed,
      (unsigned long long)max_threads, (unsigned long long)max_pending,
      (unsigned long long)(end.retired - s0.retired));
  EXPECT_LE(end.bytes_mapped, mid.bytes_mapped + (8u << 20))
      << "mapped memory (after wfmm_collect(1)) grew with thread churn after the first "
      << kMidPoint << " threads";
  EXPECT_LE(max_threads, s0.threads + 2) << "exited threads still counted";
  EXPECT_LE(end.threads, s0.threads + 2);
  EXPECT_LE(max_pending, pending_bound) << "retirements pile up across thread exits";
  EXPECT_GE(end.retired - s0.retired, uint64_t(kTotal) * 3);
  // Thread records are reused: never more in use at once than threads alive at once.
  wfmm_progress p{};
  wfmm_progress_get(&p);
  EXPECT_LE(p.threads, uint64_t(kAtOnce) + 8) << "thread records are not recycled on exit";

  CNode* last = g_shared.exchange(nullptr);
  last->pl.mark_unlinked();
  wfmm::retire(last);
  expect_all_reclaimed("after churn");
}
