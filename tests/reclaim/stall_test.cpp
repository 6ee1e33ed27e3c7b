// Robustness: a reader stalled inside its region pins only blocks born before its
// reservation's era, so threads retiring millions of blocks around it keep reclaiming and
// the pending count stays under a bound computed from the options. Then the stall ends
// normally (leave), or the stalled thread dies inside its region (pthread_exit) and its
// thread-exit cleanup must release the reservation.
#include <gtest/gtest.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reclaim_util.h"

using namespace rt;

namespace {

struct RNode {
  Payload pl;
  uint64_t pad[4] = {};
  RNode(uint64_t k, uint64_t u) : pl(k, u) {}
};

constexpr int kRetirers = 4;
constexpr int kPreStallRetired = 10;  // the stalled thread's own retirements before it stalls
int per_retirer() { return 500000 * g_scale; }  // 2 million retires in all at --scale=1

std::atomic<RNode*> g_root{nullptr};
std::atomic<int> g_root_dtor_runs{0};

void root_dtor(void* p, void*) {
  static_cast<RNode*>(p)->~RNode();
  g_root_dtor_runs.fetch_add(1);
}

// Hand-over between the main thread and the stalled reader.
struct Stall {
  std::mutex m;
  std::condition_variable cv;
  bool stalled = false;
  bool release = false;
  std::string problem;

  void announce() {
    std::lock_guard<std::mutex> g(m);
    stalled = true;
    cv.notify_all();
  }
  void wait_stalled() {
    std::unique_lock<std::mutex> g(m);
    cv.wait(g, [&] { return stalled; });
  }
  void wait_release() {
    std::unique_lock<std::mutex> g(m);
    cv.wait(g, [&] { return release; });
  }
  void let_go() {
    std::lock_guard<std::mutex> g(m);
    release = true;
    cv.notify_all();
  }
};

Stall* g_stall = nullptr;
bool g_exit_inside = false;

// The stalled reader. Pre-stall: kPreStallRetired small blocks allocated and retired
// (known, born before the stall). Then it opens a region (nested twice when it will die in
// it), protects the root, announces the stall and sleeps until released. Released: either
// checks the node it still holds and leaves, or pthread_exits inside the region.
void* stalled_reader(void*) {
  for (int i = 0; i < kPreStallRetired; ++i) wfmm_retire(wfmm_malloc(32));
  wfmm_enter();
  if (g_exit_inside) wfmm_enter();  // depth 2: exit must drop the whole nest
  RNode* n = wfmm::protect(g_root, 0);
  if (n == nullptr || !n->pl.problem().empty())
    g_stall->problem =
        "stalled reader: root bad at protect: " + (n ? n->pl.problem() : std::string("null"));
  g_stall->announce();
  g_stall->wait_release();
  if (g_exit_inside) pthread_exit(nullptr);  // no leave: cleanup must release the records
  // Main retired the root while we slept; we still hold it.
  std::string why = n ? n->pl.problem() : "null";
  if (!why.empty()) g_stall->problem = "stalled reader: protected root after the stall: " + why;
  wfmm_leave();
  return nullptr;
}

void run_stall(bool exit_inside) {
  g_fail.reset();
  // A known start: nothing pending.
  expect_all_reclaimed("before the stall");
  const uint64_t batch = uint64_t(option("batch"));
  const uint64_t era_freq = uint64_t(option("era_freq"));
  ASSERT_GT(batch, 0u);
  ASSERT_GT(era_freq, 0u);

  Stall stall;
  g_stall = &stall;
  g_exit_inside = exit_inside;
  g_root_dtor_runs = 0;
  RNode* root = make<RNode>(77, 77);
  g_root.store(root);

  pthread_t reader;
  ASSERT_EQ(pthread_create(&reader, nullptr, stalled_reader, nullptr), 0);
  stall.wait_stalled();
  const wfmm_stats at_stall = stats();

  // The root: born before the stall, retired during it. The stalled reservation holds it.
  g_root.store(nullptr);
  root->pl.mark_unlinked();
  wfmm_retire_with(root, root_dtor, nullptr);
  wfmm_flush();

  // The bound on retired_pending while the reader is stalled (T = kRetirers, B = batch,
  // F = era_freq, e = the stalled reservation's era):
  //  * A published batch is pinned by the stalled reservation only if its minimum birth
  //    era is <= e, i.e. it holds a block born at or before e. Blocks born before the
  //    stall and retired since: the reader's kPreStallRetired and the root (pre_born).
  //  * Blocks the retirers allocate after the stall can still be born in era e until the
  //    era ticks; a thread ticks it after at most F of its own allocations, so each
  //    retirer has at most F such blocks. It retires them in allocation order, so they sit
  //    in at most ceil(F / B) consecutive batches: at most F + B - 1 pinned blocks each.
  //  * Everything else is unpinned: per retiring thread its partial batch (< B) plus a
  //    batch being published or freed (<= B); the reader's and the main thread's partial
  //    batches likewise. We allow 4 batches per thread for that (slack for the stats
  //    being summed over threads while they run).
  // bound = pre_born + T * (F + B) + (T + 1) * B * 4.
  const uint64_t pre_born = kPreStallRetired + 1;
  const uint64_t bound = pre_born + kRetirers * (era_freq + batch) + (kRetirers + 1) * batch * 4;
  const int n_each = per_retirer();

  std::atomic<int> running{kRetirers};
  std::vector<std::thread> ts;
  for (int t = 0; t < kRetirers; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < n_each; ++i) {
        auto* p = static_cast<uint64_t*>(wfmm_malloc(16 + size_t((i + t) & 3) * 16));
        p[0] = uint64_t(i);
        wfmm_retire(p);
      }
      running.fetch_sub(1);
    });
  }
  uint64_t max_pending = 0, samples = 0, wrapped = 0;
  auto sample = [&] {
    wfmm_stats s = stats();
    if (s.retired_pending > s.retired)
      ++wrapped;  // a negative count read as unsigned
    else
      max_pending = std::max(max_pending, s.retired_pending);
    ++samples;
  };
  while (running.load() > 0) {
    sample();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  for (auto& th : ts) th.join();
  sample();
  const wfmm_stats after = stats();

  EXPECT_LE(max_pending, bound)
      << "retired_pending grew past the bound while a reader was stalled (batch=" << batch
      << " era_freq=" << era_freq << ", " << samples << " samples, retired during the stall "
      << after.retired - at_stall.retired << ")";
  EXPECT_EQ(wrapped, 0u) << "retired_pending read as more than retired (a negative count)";
  // The retirers' blocks were reclaimed around the stall.
  EXPECT_GE(after.reclaimed - at_stall.reclaimed, uint64_t(kRetirers) * n_each - bound);
  // The era kept moving although a reader sat on an old one.
  EXPECT_GT(after.era, at_stall.era + 1) << "era did not advance during the stall";
  // The root is still held by the stalled reader: not destroyed, not poisoned.
  EXPECT_EQ(g_root_dtor_runs.load(), 0) << "root reclaimed while a reader held it";
  EXPECT_EQ(root->pl.problem(), "") << "root (held by the stalled reader) was touched";
  printf("  stall: max retired_pending %llu (bound %llu) over %llu samples; era %llu -> %llu\n",
         (unsigned long long)max_pending, (unsigned long long)bound, (unsigned long long)samples,
         (unsigned long long)at_stall.era, (unsigned long long)after.era);

  stall.let_go();
  ASSERT_EQ(pthread_join(reader, nullptr), 0);
  EXPECT_EQ(stall.problem, "");
  expect_all_reclaimed(exit_inside ? "after the stalled thread died in its region"
                                   : "after the stalled reader left");
  EXPECT_EQ(g_root_dtor_runs.load(), 1) << "root's destructor must run exactly once";
  g_stall = nullptr;
}

}  // namespace

TEST(ReclaimStall, PendingBoundedWhileReaderStalledThenReclaimedAfterLeave) { run_stall(false); }

TEST(ReclaimStall, ThreadExitInsideRegionReleasesItsReservation) { run_stall(true); }

// No stall at all: the retirers alone leave nothing pending once they have exited.
TEST(ReclaimStall, RetireOnlyThreadsLeaveNothingPending) {
  const int n_each = per_retirer() / 4;
  std::vector<std::thread> ts;
  for (int t = 0; t < kRetirers; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < n_each; ++i) wfmm_retire(wfmm_malloc(48));
    });
  for (auto& th : ts) th.join();
  expect_all_reclaimed("retire-only threads");
}
