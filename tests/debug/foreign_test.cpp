// WFMM_FOREIGN_BLOCKS beside glibc's malloc (the test flavour: wfmm_* API only, so glibc's
// malloc is the process's and no checking tool is present): `auto` rejects glibc's blocks
// (no tool can vouch for them), `off` rejects them, `on` accepts them as born in era 0 and
// frees them through glibc's free once reclaimed, also mixed with wfmm blocks in one batch
// and under concurrent readers. The ASan/TSan/valgrind side is tests/debug's programs.
#include <gtest/gtest.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

#include <wfmm/wfmm.h>

namespace {

struct Mode {
  long old;
  explicit Mode(long v) : old(wfmm_option_get("foreign_blocks")) {
    EXPECT_EQ(wfmm_option_set("foreign_blocks", v), 0);
  }
  ~Mode() { wfmm_option_set("foreign_blocks", old); }
};

std::atomic<int> g_dtors{0};
std::atomic<int> g_intact{0};

// The block must be intact when its destructor runs (nothing written into a retired block).
void check_dtor(void* p, void* ctx) {
  unsigned char want = static_cast<unsigned char>(reinterpret_cast<uintptr_t>(ctx));
  bool ok = true;
  for (int i = 0; i < 64; ++i) ok = ok && static_cast<unsigned char*>(p)[i] == want;
  if (ok) g_intact.fetch_add(1);
  g_dtors.fetch_add(1);
}

}  // namespace

TEST(ForeignBlocks, DefaultIsAuto) { EXPECT_EQ(wfmm_option_get("foreign_blocks"), 2); }

TEST(ForeignBlocksDeath, AutoWithoutToolRejects) {
  EXPECT_DEATH(
      {
        void* p = malloc(64);  // glibc's: no sanitizer or memcheck owns it
        wfmm_retire(p);
      },
      "wfmm: retire: invalid pointer \\(not allocated by wfmm; WFMM_FOREIGN_BLOCKS=auto");
}

TEST(ForeignBlocksDeath, OffRejects) {
  EXPECT_DEATH(
      {
        Mode m(0);
        void* p = malloc(64);
        wfmm_retire(p);
      },
      "wfmm: retire: invalid pointer \\(not allocated by wfmm\\)");
}

TEST(ForeignBlocksDeath, StillRejectsInteriorWfmmPointers) {
  EXPECT_DEATH(
      {
        Mode m(1);  // a pointer into a wfmm segment is never foreign
        char* p = static_cast<char*>(wfmm_malloc(64));
        wfmm_retire(p + 16);
      },
      "wfmm: retire: invalid pointer \\(inside a block");
}

TEST(ForeignBlocks, OnFreesThroughTheOtherMalloc) {
  Mode m(1);
  wfmm_barrier();
  struct wfmm_stats before;
  wfmm_stats_get(&before);
  size_t in_use0 = mallinfo2().uordblks;
  g_dtors = 0;
  g_intact = 0;
  constexpr int kBlocks = 200;
  // Our own region with a reservation holds every batch published meanwhile (era-0 births
  // reach every reservation), so nothing is freed before the check below.
  static std::atomic<void*> root{nullptr};
  wfmm_enter();
  wfmm_protect(reinterpret_cast<void* const volatile*>(&root), 0);
  for (int i = 0; i < kBlocks; ++i) {
    void* g = malloc(1000);  // glibc's
    memset(g, i & 0xff, 1000);
    void* w = wfmm_malloc(64);  // wfmm's, in the same batches
    memset(w, i & 0xff, 64);
    wfmm_retire_with(g, check_dtor, reinterpret_cast<void*>(uintptr_t(i & 0xff)));
    wfmm_retire_with(w, check_dtor, reinterpret_cast<void*>(uintptr_t(i & 0xff)));
  }
  wfmm_flush();
  EXPECT_GE(mallinfo2().uordblks, in_use0 + kBlocks * 1000);  // retired, not freed yet
  EXPECT_EQ(g_dtors.load(), 0);
  wfmm_leave();
  wfmm_barrier();
  EXPECT_EQ(g_dtors.load(), 2 * kBlocks);
  EXPECT_EQ(g_intact.load(), 2 * kBlocks);
  EXPECT_LT(mallinfo2().uordblks, in_use0 + kBlocks * 1000);  // glibc's free took them back
  struct wfmm_stats after;
  wfmm_stats_get(&after);
  EXPECT_EQ(after.retired - before.retired, uint64_t(2 * kBlocks));
  EXPECT_EQ(after.reclaimed - before.reclaimed, uint64_t(2 * kBlocks));
  EXPECT_EQ(after.retired_pending, 0u);
}

// Readers protect foreign nodes while a writer replaces and retires them: every node read
// is intact (era 0: every region holds the batch), and all are freed at the end.
TEST(ForeignBlocks, OnUnderConcurrentReaders) {
  Mode m(1);
  struct Node {
    long key;
    long copy[7];
  };
  static std::atomic<Node*> root{nullptr};
  auto make = [](long k) {
    Node* n = static_cast<Node*>(malloc(sizeof(Node)));
    n->key = k;
    for (long& c : n->copy) c = k;
    return n;
  };
  root.store(make(0));
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&] {
      // Bound: until the writer stops.
      while (!stop.load(std::memory_order_relaxed)) {
        wfmm_enter();
        Node* n = static_cast<Node*>(
            wfmm_protect(reinterpret_cast<void* const volatile*>(&root), 0));
        for (long c : n->copy)
          if (c != n->key) bad.fetch_add(1);
        wfmm_leave();
      }
    });
  for (long k = 1; k <= 20000; ++k) {
    Node* old = root.exchange(make(k));
    // Scribbled over just before glibc's free: a reader still holding it would see it.
    wfmm_retire_with(old, [](void* p, void*) { memset(p, 0xdb, sizeof(Node)); }, nullptr);
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  wfmm_retire(root.exchange(nullptr));
  wfmm_barrier();
  EXPECT_EQ(bad.load(), 0);
  struct wfmm_stats s;
  wfmm_stats_get(&s);
  EXPECT_EQ(s.retired_pending, 0u);
}
