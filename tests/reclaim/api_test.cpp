// API basics: region nesting (only the outermost leave ends protection), every protect
// slot holds, protect returns marked values untouched, retire(p) runs ~T() once,
// retire(p, deleter) with stateful and stateless deleters, wfmm_retire_with's destructor
// runs exactly once with its context, wfmm_flush publishes a partial batch, and (with
// WFMM_POISON=1) reclaimed blocks really are poisoned.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "reclaim_util.h"

using namespace rt;

namespace {

struct ANode {
  Payload pl;
  uint64_t body[8];
  ANode(uint64_t k, uint64_t u) : pl(k, u) {
    for (int i = 0; i < 8; ++i) body[i] = wfmm_test::mix(k * 8 + uint64_t(i));
  }
  bool intact() const {
    if (!pl.problem().empty()) return false;
    uint64_t k = pl.key.load(std::memory_order_relaxed);
    for (int i = 0; i < 8; ++i)
      if (body[i] != wfmm_test::mix(k * 8 + uint64_t(i))) return false;
    return true;
  }
};

std::atomic<int> g_dtor_runs{0};
void counting_dtor(void* p, void* ctx) {
  static_cast<ANode*>(p)->~ANode();
  g_dtor_runs.fetch_add(1);
  if (ctx != nullptr) static_cast<std::atomic<int>*>(ctx)->fetch_add(1);
}

// Keeps the calling thread's batches from being published by others' barrier: runs a
// function on a fresh thread and waits for it to exit.
template <class F>
void on_other_thread(F f) {
  std::thread(f).join();
}

class ReclaimApi : public ::testing::Test {
 protected:
  void SetUp() override {
    g_fail.reset();
    g_dtor_runs = 0;
    expect_all_reclaimed("test start");
  }
};

}  // namespace

TEST_F(ReclaimApi, OnlyTheOutermostLeaveEndsProtectionSameThread) {
  std::atomic<ANode*> root{make<ANode>(1, 100)};
  wfmm_enter();  // outer
  ANode* n = nullptr;
  {
    wfmm::region mid;
    {
      wfmm::region inner;
      n = wfmm::protect(root, 0);  // protected in the innermost region
      EXPECT_TRUE(n->intact());
    }
  }
  // Unlink and retire while the outer region is still open.
  root.store(nullptr);
  n->pl.mark_unlinked();
  const wfmm_stats s0 = stats();
  wfmm_retire_with(n, counting_dtor, nullptr);
  wfmm_flush();
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  wfmm_flush();
  EXPECT_EQ(g_dtor_runs.load(), 0) << "reclaimed after an inner leave";
  EXPECT_TRUE(n->intact()) << "poisoned/destroyed while the outer region holds it";
  const wfmm_stats s1 = stats();
  EXPECT_EQ(s1.retired - s0.retired, 1u);
  EXPECT_EQ(s1.reclaimed, s0.reclaimed) << "the protected block was reclaimed";
  EXPECT_GE(s1.retired_pending, 1u);
  wfmm_leave();  // outermost: protection ends
  expect_all_reclaimed("after the outer leave");
  EXPECT_EQ(g_dtor_runs.load(), 1);
}

TEST_F(ReclaimApi, OnlyTheOutermostLeaveEndsProtectionCrossThread) {
  std::atomic<ANode*> root{make<ANode>(2, 200)};
  wfmm_enter();
  wfmm_enter();
  ANode* n = wfmm::protect(root, 3);
  wfmm_leave();  // inner: still protected
  // Another thread unlinks, retires and flushes, then exits (publishing everything).
  on_other_thread([&] {
    ANode* x = root.exchange(nullptr);
    x->pl.mark_unlinked();
    wfmm_retire_with(x, counting_dtor, nullptr);
    wfmm_flush();
  });
  // And a third thread retires and flushes a lot around it (drives the era and frees).
  on_other_thread([] {
    for (int i = 0; i < 5000; ++i) wfmm_retire(wfmm_malloc(32));
    wfmm_flush();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(g_dtor_runs.load(), 0) << "reclaimed although the outer region holds it";
  EXPECT_TRUE(n->intact());
  wfmm_leave();
  expect_all_reclaimed("after the outer leave");
  EXPECT_EQ(g_dtor_runs.load(), 1);
}

TEST_F(ReclaimApi, AllProtectSlotsHoldTheirNodes) {
  std::atomic<ANode*> roots[WFMM_PROTECT_SLOTS];
  for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) roots[i].store(make<ANode>(10 + i, i));
  wfmm::region* r = new wfmm::region;  // glibc new; ends explicitly below
  ANode* held[WFMM_PROTECT_SLOTS];
  for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) held[i] = wfmm::protect(roots[i], i);
  on_other_thread([&] {
    for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) {
      ANode* x = roots[i].exchange(nullptr);
      x->pl.mark_unlinked();
      wfmm_retire_with(x, counting_dtor, nullptr);
    }
    for (int i = 0; i < 2000; ++i) wfmm_retire(wfmm_malloc(16));
    wfmm_flush();
  });
  EXPECT_EQ(g_dtor_runs.load(), 0);
  for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) EXPECT_TRUE(held[i]->intact()) << "slot " << i;
  delete r;
  expect_all_reclaimed("after leave");
  EXPECT_EQ(g_dtor_runs.load(), int(WFMM_PROTECT_SLOTS));
}

TEST_F(ReclaimApi, ProtectReturnsTheRawValueWithMarks) {
  ANode* n = make<ANode>(3, 300);
  std::atomic<ANode*> root{reinterpret_cast<ANode*>(uintptr_t(n) | 1)};
  std::atomic<ANode*> nul{nullptr};
  std::atomic<ANode*> mark_only{reinterpret_cast<ANode*>(uintptr_t(1))};
  {
    wfmm::region r;
    EXPECT_EQ(wfmm::protect(root, 0), reinterpret_cast<ANode*>(uintptr_t(n) | 1));
    EXPECT_EQ(wfmm::protect(nul, 1), nullptr);
    EXPECT_EQ(wfmm::protect(mark_only, 2), reinterpret_cast<ANode*>(uintptr_t(1)));
    root.store(reinterpret_cast<ANode*>(uintptr_t(n) | 3));
    EXPECT_EQ(wfmm::protect(root, 0), reinterpret_cast<ANode*>(uintptr_t(n) | 3));
  }
  destroy_now(n);
}

namespace {
std::atomic<int> g_value_dtors{0};
struct WithDtor {
  uint64_t v[3] = {1, 2, 3};
  ~WithDtor() { g_value_dtors.fetch_add(1); }
};
struct Trivial {
  uint64_t v[5];
};
std::atomic<int> g_stateless_calls{0};
struct FreeDeleter {
  void operator()(ANode* p) const {
    g_stateless_calls.fetch_add(1);
    p->~ANode();
    wfmm_free(p);
  }
};
}  // namespace

TEST_F(ReclaimApi, RetireRunsTheDestructorExactlyOnce) {
  g_value_dtors = 0;
  const wfmm_stats s0 = stats();
  for (int i = 0; i < 100; ++i) wfmm::retire(make<WithDtor>());
  for (int i = 0; i < 100; ++i) wfmm::retire(make<Trivial>());
  wfmm::retire(static_cast<WithDtor*>(nullptr));  // ignored
  expect_all_reclaimed("retire(T*)");
  EXPECT_EQ(g_value_dtors.load(), 100);
  const wfmm_stats s1 = stats();
  EXPECT_EQ(s1.retired - s0.retired, 200u);
  EXPECT_EQ(s1.reclaimed - s0.reclaimed, 200u);
}

TEST_F(ReclaimApi, RetireWithStatefulAndStatelessDeleters) {
  struct Call {
    std::atomic<int> count{0};
    std::atomic<ANode*> seen{nullptr};
    std::atomic<uint64_t> tag{0};
  };
  constexpr int kN = 64;
  std::vector<Call> calls(kN);
  std::vector<ANode*> nodes(kN);
  for (int i = 0; i < kN; ++i) nodes[i] = make<ANode>(uint64_t(i), uint64_t(i) + 1000);
  // Retired from several threads; each deleter carries its own state.
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      for (int i = t; i < kN; i += 4) {
        Call* c = &calls[i];
        uint64_t tag = 0xabc000u + uint64_t(i);
        wfmm::retire(nodes[i], [c, tag](ANode* p) {
          if (!p->intact()) g_fail.add("stateful deleter: node not intact when deleted");
          c->count.fetch_add(1);
          c->seen.store(p);
          c->tag.store(tag);
          p->~ANode();
          wfmm_free(p);
        });
      }
    });
  }
  for (auto& th : ts) th.join();
  g_stateless_calls = 0;
  for (int i = 0; i < 10; ++i) wfmm::retire(make<ANode>(5000 + uint64_t(i), 1), FreeDeleter{});
  wfmm::retire(static_cast<ANode*>(nullptr), FreeDeleter{});  // ignored
  expect_all_reclaimed("deleters");
  RT_EXPECT_NO_FAILURES();
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(calls[i].count.load(), 1) << "deleter " << i;
    EXPECT_EQ(calls[i].seen.load(), nodes[i]) << "deleter " << i << " got another pointer";
    EXPECT_EQ(calls[i].tag.load(), 0xabc000u + uint64_t(i)) << "deleter " << i << " state";
  }
  EXPECT_EQ(g_stateless_calls.load(), 10);
}

TEST_F(ReclaimApi, RetireWithRunsTheCDestructorOnceWithItsContext) {
  constexpr int kN = 1000;
  std::vector<std::atomic<int>> per(kN);
  for (auto& c : per) c = 0;
  for (int i = 0; i < kN; ++i)
    wfmm_retire_with(make<ANode>(uint64_t(i), 7), counting_dtor, &per[i]);
  wfmm_retire_with(nullptr, counting_dtor, &per[0]);  // ignored
  expect_all_reclaimed("retire_with");
  EXPECT_EQ(g_dtor_runs.load(), kN);
  int wrong = 0;
  for (auto& c : per) wrong += c.load() != 1;
  EXPECT_EQ(wrong, 0) << "destructors not run exactly once with their own context";
}

// retire_dispose hands the block over: dispose must free it.
TEST_F(ReclaimApi, RetireDisposeHandsTheBlockOver) {
  std::atomic<int> disposed{0};
  void* p = wfmm_malloc(100);
  memset(p, 0x5a, 100);
  wfmm_retire_dispose(
      p,
      [](void* q, void* ctx) {
        auto* b = static_cast<unsigned char*>(q);
        bool ok = true;
        for (int i = 0; i < 100; ++i) ok &= b[i] == 0x5a;
        if (!ok) g_fail.add("retire_dispose: block changed before dispose");
        static_cast<std::atomic<int>*>(ctx)->fetch_add(1);
        wfmm_free(q);
      },
      &disposed);
  expect_all_reclaimed("retire_dispose");
  EXPECT_EQ(disposed.load(), 1);
  RT_EXPECT_NO_FAILURES();
}

TEST_F(ReclaimApi, FlushPublishesAPartialBatch) {
  const long batch = option("batch");
  if (batch <= 3) GTEST_SKIP() << "needs WFMM_BATCH > 3 (is " << batch << ")";
  // Same thread, no region anywhere: flush publishes the 3 and frees them at once.
  const wfmm_stats s0 = stats();
  for (int i = 0; i < 3; ++i) wfmm_retire(wfmm_malloc(40));
  EXPECT_EQ(stats().retired_pending, 3u) << "3 retires stay in the partial batch";
  wfmm_flush();
  wfmm_stats s1 = stats();
  EXPECT_EQ(s1.retired - s0.retired, 3u);
  EXPECT_EQ(s1.retired_pending, 0u) << "flush with no region open frees the partial batch";
  expect_all_reclaimed("flush, same thread");

  // Another, live thread's partial batch is its own: barrier does not publish it, flush does.
  std::mutex m;
  std::condition_variable cv;
  int step = 0;
  auto wait_for = [&](int s) {
    std::unique_lock<std::mutex> g(m);
    cv.wait(g, [&] { return step >= s; });
  };
  auto go = [&](int s) {
    std::lock_guard<std::mutex> g(m);
    step = s;
    cv.notify_all();
  };
  std::thread b([&] {
    for (int i = 0; i < 3; ++i) wfmm_retire(wfmm_malloc(40));
    go(1);
    wait_for(2);
    wfmm_flush();
    go(3);
    wait_for(4);
  });
  wait_for(1);
  wfmm::barrier();
  EXPECT_EQ(stats().retired_pending, 3u) << "the live thread's partial batch is not ours";
  go(2);
  wait_for(3);
  {
    Watchdog w("barrier after the other thread's flush", 30);
    wfmm::barrier();
  }
  wfmm_stats s2 = stats();
  EXPECT_EQ(s2.retired, s2.reclaimed) << "flush published the partial batch";
  EXPECT_EQ(s2.retired_pending, 0u);
  go(4);
  b.join();
}

TEST_F(ReclaimApi, RetireNeedsNoRegionAndWorksAcrossThreads) {
  // Allocated on a thread that exits; retired on another; freed through the remote path.
  std::vector<ANode*> nodes;
  on_other_thread([&] {
    for (int i = 0; i < 500; ++i) nodes.push_back(make<ANode>(uint64_t(i), 9));
  });
  on_other_thread([&] {
    for (ANode* n : nodes) {
      if (!n->intact()) g_fail.add("cross-thread: node changed before retire");
      wfmm_retire_with(n, counting_dtor, nullptr);
    }
  });
  expect_all_reclaimed("cross-thread retire");
  EXPECT_EQ(g_dtor_runs.load(), 500);
  RT_EXPECT_NO_FAILURES();
}

TEST_F(ReclaimApi, PoisonFillsReclaimedBlocks) {
  if (option("poison") != 1) GTEST_SKIP() << "needs WFMM_POISON=1";
  // White-box: read a block right after wfmm reclaimed it (its page stays mapped; nothing
  // allocates in between). The allocator's free list may use the first 16 bytes.
  constexpr size_t kSize = 256;
  auto* p = static_cast<unsigned char*>(wfmm_malloc(kSize));
  memset(p, 0x11, kSize);
  void* keep = wfmm_malloc(kSize);  // keeps the page in use
  wfmm_retire(p);
  expect_all_reclaimed("poison");
  size_t bad = 0;
  for (size_t i = 16; i < kSize; ++i) bad += p[i] != 0xdb;
  EXPECT_EQ(bad, 0u) << "bytes [16, " << kSize << ") of a reclaimed block are not 0xdb";
  wfmm_free(keep);
}
