// Bad input gets a clear message and an abort (default) or a report and nothing else
// (WFMM_ON_ERROR=continue); never a corrupted heap.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"
#include "wfmm/wfmm.h"

using wfmm_test::check;
using wfmm_test::fill;

namespace {

struct ContinueMode {
  ContinueMode() { wfmm_option_set("on_error", 1); }
  ~ContinueMode() { wfmm_option_set("on_error", 0); }
};

}  // namespace

TEST(BadInputDeath, DoubleFreeSmallSameThread) {
  EXPECT_DEATH(
      {
        void* p = wfmm_malloc(32);
        void* keep = wfmm_malloc(32);  // keeps the page in use
        wfmm_free(p);
        wfmm_free(p);
        wfmm_free(keep);
      },
      "wfmm: free: double free of 0x");
}

TEST(BadInputDeath, DoubleFreeSmallCrossThread) {
  EXPECT_DEATH(
      {
        void* keep = wfmm_malloc(64);
        void* p = wfmm_malloc(64);
        std::thread([p] { wfmm_free(p); }).join();
        std::thread([p] { wfmm_free(p); }).join();
        wfmm_free(keep);
      },
      "wfmm: free: double free of 0x");
}

TEST(BadInputDeath, DoubleFreeLargeAndHuge) {
  EXPECT_DEATH(
      {
        void* p = wfmm_malloc(300000);
        wfmm_free(p);
        wfmm_free(p);
      },
      "double free");
  EXPECT_DEATH(
      {
        void* p = wfmm_malloc(20u << 20);
        void* keep = wfmm_malloc(20u << 20);
        wfmm_free(p);
        wfmm_free(p);
        wfmm_free(keep);
      },
      "wfmm: free: (double free|invalid pointer)");
}

TEST(BadInputDeath, InteriorPointer) {
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(wfmm_malloc(64));
        wfmm_free(p + 8);
      },
      "wfmm: free: invalid pointer \\(inside a block, not its start\\) 0x");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(wfmm_malloc(1 << 20));
        wfmm_free(p + 4096);
      },
      "wfmm: free: invalid pointer");
}

TEST(BadInputDeath, ForeignPointers) {
  EXPECT_DEATH(
      {
        int x = 0;
        wfmm_free(&x);
      },
      "wfmm: free: invalid pointer \\(not allocated by wfmm\\) 0x");
  EXPECT_DEATH(
      {
        void* p = malloc(100);  // the system allocator's block
        wfmm_free(p);
      },
      "not allocated by wfmm");
  EXPECT_DEATH(
      {
        void* m =
            mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        wfmm_free(m);
      },
      "not allocated by wfmm");
  EXPECT_DEATH({ wfmm_free(reinterpret_cast<void*>(uintptr_t(1) << 50)); },
               "not allocated by wfmm");
  EXPECT_DEATH(
      {
        int x = 0;
        wfmm_realloc(&x, 100);
      },
      "wfmm: realloc: invalid pointer");
}

TEST(BadInputDeath, SlotNeverHandedOut) {
  // A block-aligned address in the page beyond what was ever carved is not a block.
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(wfmm_malloc(16));
        wfmm_free(p + 16000);
      },
      "wfmm: free: invalid pointer");
  EXPECT_DEATH(
      {
        char* p = static_cast<char*>(wfmm_malloc(16));
        char* q = p + 16000;
        std::thread([q] { wfmm_free(q); }).join();
      },
      "wfmm: free: invalid pointer");
}

TEST(BadInputDeath, ReallocOfAFreedBlock) {
  EXPECT_DEATH(
      {
        void* keep = wfmm_malloc(128);
        void* a = wfmm_malloc(128);
        wfmm_free(a);
        wfmm_realloc(a, 100);
        wfmm_free(keep);
      },
      "wfmm: realloc: use of a freed block 0x");
}

TEST(BadInput, ContinueModeReportsAndLeavesTheHeapIntact) {
  ContinueMode on;
  std::vector<void*> live;
  for (int i = 0; i < 100; ++i) {
    void* p = wfmm_malloc(48);
    fill(p, 48, i);
    live.push_back(p);
  }
  void* victim = wfmm_malloc(48);
  wfmm_free(victim);
  testing::internal::CaptureStderr();
  wfmm_free(victim);                            // double free: ignored
  wfmm_free(static_cast<char*>(live[3]) + 16);  // interior: ignored
  int x;
  wfmm_free(&x);                             // foreign: ignored
  EXPECT_EQ(wfmm_realloc(&x, 10), nullptr);  // foreign realloc: ignored
  void* big = wfmm_malloc(500000);
  wfmm_free(big);
  wfmm_free(big);  // large double free: ignored
  void* gone = wfmm_malloc(48);
  wfmm_free(gone);
  EXPECT_EQ(wfmm_realloc(gone, 40), nullptr);         // realloc of a freed block: refused
  wfmm_free(static_cast<char*>(live[0]) + 48 * 200);  // slot never handed out: ignored
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("double free"), std::string::npos) << err;
  EXPECT_NE(err.find("inside a block"), std::string::npos) << err;
  EXPECT_NE(err.find("not allocated by wfmm"), std::string::npos) << err;
  EXPECT_NE(err.find("continue"), std::string::npos) << err;
  EXPECT_NE(err.find("use of a freed block"), std::string::npos) << err;
  // Nothing was freed twice: the next allocations are all distinct and the live data holds.
  std::vector<void*> fresh;
  for (int i = 0; i < 200; ++i) fresh.push_back(wfmm_malloc(48));
  std::sort(fresh.begin(), fresh.end());
  EXPECT_EQ(std::adjacent_find(fresh.begin(), fresh.end()), fresh.end());
  for (size_t i = 0; i < live.size(); ++i) {
    EXPECT_TRUE(check(live[i], 48, i));
    EXPECT_EQ(std::find(fresh.begin(), fresh.end(), live[i]), fresh.end());
  }
  for (void* p : fresh) wfmm_free(p);
  for (void* p : live) wfmm_free(p);
}
