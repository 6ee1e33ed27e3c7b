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

namespace wfmm {
const char* heap_validate();  // heap_thread.cpp: the calling thread's heap against types.h
}

namespace {

struct ContinueMode {
  ContinueMode() { wfmm_option_set("on_error", 1); }
  ~ContinueMode() { wfmm_option_set("on_error", 0); }
};

// The program's bug, written so the compiler must emit it: bytes stored one at a time
// through a volatile pointer, in a function it cannot see into from the caller.
__attribute__((noinline)) void scribble(void* p, size_t n) {
  volatile unsigned char* c = static_cast<volatile unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) c[i] = static_cast<unsigned char>(0x41 + i % 26);
}

// Issue 12's first case: 16 blocks of 24 bytes freed, the first 16 bytes of one overwritten,
// then mallocs of 24 bytes. In a fresh thread, so the heap's state is known: the freed
// blocks sit on the page's local free list behind its untouched blocks (at most one
// kExtendBytes carve, 128 blocks of 32 bytes), and 512 mallocs reach them.
// (In continue mode the heap's invariants must still hold afterwards.)
void use_after_free_then_mallocs() {
  std::thread([] {
    void* b[16];
    for (auto& p : b) p = wfmm_malloc(24);
    for (auto p : b) wfmm_free(p);
    scribble(b[9], 16);
    for (int i = 0; i < 512; ++i) wfmm_malloc(24);
    const char* why = wfmm::heap_validate();
    EXPECT_EQ(why, nullptr) << why;
  }).join();
}

// Issue 12's second case: a 24-byte block written with 64 bytes while its two neighbours
// (32-byte blocks, carved in address order in a fresh page) are free.
void overflow_into_free_neighbours() {
  std::thread([] {
    char* a = static_cast<char*>(wfmm_malloc(24));
    char* n1 = static_cast<char*>(wfmm_malloc(24));
    char* n2 = static_cast<char*>(wfmm_malloc(24));
    if (n1 != a + 32 || n2 != a + 64) abort();  // the layout the test relies on
    wfmm_free(n2);
    wfmm_free(n1);
    scribble(a, 64);
    for (int i = 0; i < 512; ++i) wfmm_malloc(24);
    const char* why = wfmm::heap_validate();
    EXPECT_EQ(why, nullptr) << why;
  }).join();
}

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

// A page emptied and taken back for its class keeps its free blocks on their lists
// (page_init): a second free of one of them, not handed out since, is still a double free.
TEST(BadInputDeath, DoubleFreeOnAPageTakenBackWhole) {
  EXPECT_DEATH(
      {
        std::vector<void*> a;
        // 3 pages of 64 blocks (class 1024)
        for (int i = 0; i < 64 * 3; ++i) a.push_back(wfmm_malloc(1000));
        void* hold = wfmm_malloc(1000);
        for (void* p : a) wfmm_free(p);  // the three pages empty: lists kept
        // The hold page's 63, then the last page freed (the hottest) whole, then one block
        // of the page freed before it, which is taken back with 63 blocks on its list.
        std::vector<void*> b;
        for (int i = 0; i < 64 * 2; ++i) b.push_back(wfmm_malloc(1000));
        std::sort(b.begin(), b.end());
        for (size_t i = a.size(); i-- > 0;)
          if (!std::binary_search(b.begin(), b.end(), a[i])) {
            wfmm_free(a[i]);  // on that page's kept list
            break;
          }
        wfmm_free(hold);
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
      "wfmm: free: double free of 0x");
}

// Above the 128 MiB huge-segment cache a freed huge block is unmapped at once: its second
// free finds no map entry and is still named a double free.
TEST(BadInputDeath, DoubleFreeHugeUnmapped) {
  EXPECT_DEATH(
      {
        void* p = wfmm_malloc(size_t(200) << 20);
        wfmm_free(p);
        wfmm_free(p);
      },
      "wfmm: free: double free of 0x");
  EXPECT_DEATH(
      {
        void* p = wfmm_malloc(size_t(200) << 20);
        wfmm_free(p);
        wfmm_realloc(p, 10);
      },
      "wfmm: realloc: use of a freed block 0x");
  // A huge block moved by realloc (mremap) leaves its old address unmapped.
  EXPECT_DEATH(
      {
        void* p = wfmm_malloc(size_t(200) << 20);
        void* keep = wfmm_malloc(size_t(200) << 20);  // likely stops an in-place growth
        void* q = wfmm_realloc(p, size_t(500) << 20);
        if (q == p) {
          wfmm_free(q);
          q = nullptr;  // grew in place: free it twice instead
        }
        wfmm_free(p);
        wfmm_free(keep);
        if (q != nullptr) wfmm_free(q);
      },
      "wfmm: free: double free of 0x");
}

// A freed block written to is found when its free-list link is followed (here: the
// malloc fast path's pop), with the page and block named; before the link checks this was
// a SIGSEGV with no message.
TEST(BadInputDeath, UseAfterFreeCorruptsFreeList) {
  EXPECT_DEATH(use_after_free_then_mallocs(),
               "wfmm: heap corruption: free list of page 0x[0-9a-f]+ \\(32-byte blocks\\): "
               "freed block 0x[0-9a-f]+ was modified");
}

TEST(BadInputDeath, OverflowIntoFreeNeighbour) {
  EXPECT_DEATH(overflow_into_free_neighbours(), "wfmm: heap corruption: free list of page 0x");
}

// The same on the remote list: blocks freed by another thread, one written after its free,
// found when the owner collects them.
TEST(BadInputDeath, UseAfterRemoteFreeCorruptsRemoteList) {
  EXPECT_DEATH(
      {
        std::thread([] {
          void* b[16];
          for (auto& p : b) p = wfmm_malloc(200);
          std::thread([&b] {
            for (auto p : b) wfmm_free(p);
          }).join();
          scribble(b[5], 16);
          for (int i = 0; i < 4096; ++i) wfmm_malloc(200);
        }).join();
      },
      "wfmm: heap corruption: remote free list of page 0x");
}

// Continue mode: the report, then the rest of the list dropped; the heap stays usable and
// never hands out a block twice.
TEST(BadInput, ContinueModeDropsACorruptedList) {
  ContinueMode on;
  testing::internal::CaptureStderr();
  use_after_free_then_mallocs();
  overflow_into_free_neighbours();
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("wfmm: heap corruption: free list of page"), std::string::npos) << err;
  EXPECT_NE(err.find("rest of the list dropped"), std::string::npos) << err;
  std::thread([] {
    std::vector<void*> got;
    for (int i = 0; i < 4000; ++i) {
      void* p = wfmm_malloc(24);
      fill(p, 24, i);
      got.push_back(p);
    }
    std::vector<void*> sorted = got;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(check(got[i], 24, i));
    for (void* p : got) wfmm_free(p);
  }).join();
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

// The free fast path trusts a segment this thread's heap owns (its per-heap segment hint)
// and leaves the page owner test out there: an address in such a segment that is no block
// must still be reported. A free of a live block first puts the segment in the hint; then the
// small segment's header page (never holds blocks), a page past the ones in use, the
// segment's last bytes, and a segment that left the heap (its hint must go with it).
TEST(BadInputDeath, HintedSegmentHeaderAndFreePage) {
  EXPECT_DEATH(
      {
        std::thread([] {
          char* p = static_cast<char*>(wfmm_malloc(64));
          wfmm_free(wfmm_malloc(64));  // the segment is hinted from here on
          uintptr_t seg = reinterpret_cast<uintptr_t>(p) & ~((uintptr_t(1) << 22) - 1);
          wfmm_free(reinterpret_cast<void*>(seg + 4096));
        }).join();
      },
      "wfmm: free: invalid pointer \\(no block there\\) 0x");
  // A free page: the segment's last. "threadsafe" runs the child as a fresh process, so the
  // thread's heap maps a new segment (no abandoned segment of earlier tests to adopt) and
  // uses its first pages only.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::thread([] {
          char* p = static_cast<char*>(wfmm_malloc(64));
          wfmm_free(wfmm_malloc(64));
          uintptr_t seg = reinterpret_cast<uintptr_t>(p) & ~((uintptr_t(1) << 22) - 1);
          wfmm_free(reinterpret_cast<void*>(seg + (uintptr_t(63) << 16)));
        }).join();
      },
      "wfmm: free: invalid pointer \\(no block there\\) 0x");
  // The segment's last 8 bytes: the free path must not read the word after the address (the
  // next 4 MiB are usually not mapped) before it knows the address is a block start.
  EXPECT_DEATH(
      {
        std::thread([] {
          char* p = static_cast<char*>(wfmm_malloc(64));
          wfmm_free(wfmm_malloc(64));
          uintptr_t seg = reinterpret_cast<uintptr_t>(p) & ~((uintptr_t(1) << 22) - 1);
          wfmm_free(reinterpret_cast<void*>(seg + (uintptr_t(1) << 22) - 8));
        }).join();
      },
      "wfmm: free: invalid pointer");
  // A segment that left the heap must leave its hints too: the thread's only segment is
  // released (forced collect, no segment cache, so it is unmapped) after a local free put it
  // in the hints; a second free of the block must then be reported from the segment map, not
  // read through a stale hint into unmapped memory (a crash without a message).
  EXPECT_DEATH(
      {
        std::thread([] {
          wfmm_option_set("segment_cache", 0);
          void* p = wfmm_malloc(64);
          wfmm_free(p);  // hinted
          wfmm_collect(1);
          wfmm_free(p);
        }).join();
      },
      "wfmm: free: ");
  GTEST_FLAG_SET(death_test_style, "fast");
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
