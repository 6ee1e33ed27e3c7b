// The C API: sizes from 0 to huge, realloc across every path, alignments 1 B..2 MiB,
// usable size, calloc zeroing on recycled memory, overflow and errno.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "test_util.h"
#include "wfmm/wfmm.h"

using wfmm_test::check;
using wfmm_test::fill;

namespace {

bool aligned(const void* p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

}  // namespace

TEST(Api, MallocZeroIsUniqueAndFreeable) {
  void* a = wfmm_malloc(0);
  void* b = wfmm_malloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_GE(wfmm_usable_size(a), 1u);
  wfmm_free(a);
  wfmm_free(b);
  wfmm_free(nullptr);
}

TEST(Api, SizesAcrossAllPathsKeepContentsAndUsableSize) {
  std::vector<size_t> sizes;
  for (size_t n = 1; n <= 4096; n += 7) sizes.push_back(n);
  for (size_t n = 4096; n <= (64u << 20); n = n * 3 / 2) sizes.push_back(n);
  sizes.push_back(128 * 1024);
  sizes.push_back(128 * 1024 + 1);
  sizes.push_back((4u << 20) - 65536);
  sizes.push_back((4u << 20) - 65535);
  std::vector<void*> ps;
  for (size_t i = 0; i < sizes.size(); ++i) {
    void* p = wfmm_malloc(sizes[i]);
    ASSERT_NE(p, nullptr) << sizes[i];
    EXPECT_TRUE(aligned(p, 16)) << sizes[i];
    size_t u = wfmm_usable_size(p);
    EXPECT_GE(u, sizes[i]);
    fill(p, u, i);  // the whole usable range is writable
    ps.push_back(p);
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    ASSERT_TRUE(check(ps[i], wfmm_usable_size(ps[i]), i)) << sizes[i];
    wfmm_free(ps[i]);
  }
}

TEST(Api, ReallocGrowsAndShrinksThroughEveryClass) {
  // small -> medium -> large -> huge -> small, zig-zag; contents kept up to min(old, new).
  std::vector<size_t> path = {1,        24,       100,       1000,      9000,   70000, 200000,
                              3u << 20, 5u << 20, 40u << 20, 6u << 20,  300000, 5000,  33,
                              2,        77777,    16,        12u << 20, 1};
  void* p = wfmm_realloc(nullptr, path[0]);
  ASSERT_NE(p, nullptr);
  fill(p, path[0], 7);
  size_t cur = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    void* q = wfmm_realloc(p, path[i]);
    ASSERT_NE(q, nullptr) << path[i];
    size_t keep = cur < path[i] ? cur : path[i];
    ASSERT_TRUE(check(q, keep, 7 + i - 1)) << "from " << cur << " to " << path[i];
    fill(q, path[i], 7 + i);
    p = q;
    cur = path[i];
  }
  wfmm_free(p);
}

TEST(Api, ReallocGrowthOneByOneStaysCheap) {
  // Growing one byte at a time must not copy every step (in place within the block).
  char* p = nullptr;
  size_t moves = 0;
  for (size_t n = 1; n <= 1u << 20; n += 1 + n / 64) {
    char* q = static_cast<char*>(wfmm_realloc(p, n));
    ASSERT_NE(q, nullptr);
    if (q != p) ++moves;
    q[n - 1] = 'x';
    p = q;
  }
  EXPECT_LT(moves, 200u);
  wfmm_free(p);
}

TEST(Api, HugeReallocUsesRemapAndKeepsData) {
  size_t n = 32u << 20;
  auto* p = static_cast<unsigned char*>(wfmm_malloc(n));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < n; i += 4096) p[i] = static_cast<unsigned char>(i >> 12);
  auto* q = static_cast<unsigned char*>(wfmm_realloc(p, 4 * n));
  ASSERT_NE(q, nullptr);
  for (size_t i = 0; i < n; i += 4096) ASSERT_EQ(q[i], static_cast<unsigned char>(i >> 12));
  q[4 * n - 1] = 1;
  EXPECT_GE(wfmm_usable_size(q), 4 * n);
  auto* r = static_cast<unsigned char*>(wfmm_realloc(q, n + 1));
  ASSERT_NE(r, nullptr);
  for (size_t i = 0; i < n; i += 4096) ASSERT_EQ(r[i], static_cast<unsigned char>(i >> 12));
  wfmm_free(r);
}

TEST(Api, AlignmentsFromOneByteToTwoMiB) {
  for (size_t a = 1; a <= (2u << 20); a *= 2) {
    for (size_t n : {size_t(1), a - 1, a, a + 1, 3 * a + 5, size_t(100000)}) {
      if (n == 0) continue;
      void* p = wfmm_aligned_alloc(a, n);
      ASSERT_NE(p, nullptr) << a << " " << n;
      EXPECT_TRUE(aligned(p, a)) << "align " << a << " size " << n << " got " << p;
      EXPECT_TRUE(aligned(p, 16));
      size_t u = wfmm_usable_size(p);
      EXPECT_GE(u, n);
      fill(p, u, a ^ n);
      ASSERT_TRUE(check(p, u, a ^ n));
      wfmm_free(p);
    }
  }
}

TEST(Api, BadAlignmentIsEinval) {
  for (size_t a : {size_t(0), size_t(3), size_t(24), size_t(100), size_t(4097)}) {
    errno = 0;
    EXPECT_EQ(wfmm_aligned_alloc(a, 64), nullptr) << a;
    EXPECT_EQ(errno, EINVAL) << a;
  }
}

TEST(Api, OverflowingSizesFailWithEnomem) {
  errno = 0;
  EXPECT_EQ(wfmm_malloc(SIZE_MAX), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(wfmm_malloc(size_t(PTRDIFF_MAX) + 1), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(wfmm_calloc(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(wfmm_calloc(size_t(1) << 33, size_t(1) << 33), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(wfmm_aligned_alloc(64, SIZE_MAX - 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(wfmm_aligned_alloc(size_t(1) << 62, 64), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // A failed realloc leaves the block intact.
  void* p = wfmm_malloc(100);
  fill(p, 100, 99);
  errno = 0;
  EXPECT_EQ(wfmm_realloc(p, SIZE_MAX - 4096), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(check(p, 100, 99));
  wfmm_free(p);
  // The allocator is still usable afterwards.
  void* q = wfmm_malloc(1000);
  ASSERT_NE(q, nullptr);
  wfmm_free(q);
}

TEST(Api, ReallocToZeroFreesAndReturnsNull) {
  void* p = wfmm_malloc(50);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(wfmm_realloc(p, 0), nullptr);
  wfmm_stats s1;
  wfmm_stats_get(&s1);
  EXPECT_GE(s1.free_count, 1u);
}

TEST(Api, CallocZeroesRecycledMemory) {
  // Dirty blocks of every path, freed, then calloc must hand back zeros.
  std::vector<size_t> sizes = {8, 16, 48, 1000, 8192, 100000, 1u << 20, 6u << 20};
  for (int round = 0; round < 3; ++round) {
    std::vector<void*> ps;
    for (size_t n : sizes) {
      for (int k = 0; k < 20; ++k) {
        void* p = wfmm_malloc(n);
        memset(p, 0xab, n);
        ps.push_back(p);
      }
    }
    for (void* p : ps) wfmm_free(p);
    for (size_t n : sizes) {
      for (int k = 0; k < 20; ++k) {
        auto* p = static_cast<unsigned char*>(wfmm_calloc(1, n));
        ASSERT_NE(p, nullptr);
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(p[i], 0) << n << " at " << i;
        wfmm_free(p);
      }
    }
  }
}

TEST(Api, UsableSizeOfNullIsZero) { EXPECT_EQ(wfmm_usable_size(nullptr), 0u); }

TEST(Api, FreePreservesErrno) {
  void* p = wfmm_malloc(10 << 20);
  errno = 12345;
  wfmm_free(p);
  EXPECT_EQ(errno, 12345);
  void* q = wfmm_malloc(10);
  errno = 777;
  wfmm_free(q);
  EXPECT_EQ(errno, 777);
}

TEST(Api, StatsTrackLiveBytesAndBlocks) {
  wfmm_stats a, b, c;
  wfmm_stats_get(&a);
  std::vector<void*> ps;
  for (int i = 0; i < 1000; ++i) ps.push_back(wfmm_malloc(100));
  wfmm_stats_get(&b);
  EXPECT_EQ(b.blocks_in_use - a.blocks_in_use, 1000u);
  EXPECT_EQ(b.bytes_in_use - a.bytes_in_use, 1000u * wfmm_usable_size(ps[0]));
  EXPECT_GE(b.bytes_mapped, b.bytes_committed);
  EXPECT_GE(b.bytes_committed_peak, b.bytes_committed);
  EXPECT_GE(b.bytes_in_use_peak, b.bytes_in_use);
  EXPECT_GE(b.threads, 1u);
  for (void* p : ps) wfmm_free(p);
  wfmm_stats_get(&c);
  EXPECT_EQ(c.blocks_in_use, a.blocks_in_use);
  EXPECT_EQ(c.retired, 0u);
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  wfmm_stats_print(f);
  fclose(f);
  EXPECT_NE(strstr(buf, "wfmm: statistics"), nullptr);
  EXPECT_NE(strstr(buf, "MiB"), nullptr);
  free(buf);
}

// What a user reads at exit: the process line, labelled blocks, reclamation rows only once
// reclamation was used; the JSON form on one line with every field.
TEST(Api, StatsPrintTextAndJson) {
  void* p = wfmm_malloc(100);
  wfmm_stats s;
  wfmm_stats_get(&s);
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  wfmm_stats_print(f);
  fclose(f);
  std::string text(buf, len);
  free(buf);
  EXPECT_EQ(text.rfind("wfmm: statistics of wfmm_unit_", 0), 0u) << text;
  EXPECT_NE(text.find("(pid " + std::to_string(getpid()) + ", wfmm " WFMM_VERSION "): "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(" peak RSS "), std::string::npos) << text;
  // Every block's heading names the program and pid.
  const std::string label = std::string(" (") + program_invocation_short_name + ", pid " +
                            std::to_string(getpid()) + ")\n";
  EXPECT_NE(text.find("\nwfmm: memory" + label + "wfmm:   in use "), std::string::npos) << text;
  EXPECT_NE(text.find("\nwfmm: calls" + label + "wfmm:   malloc "), std::string::npos) << text;
  // Current and peak of in use, committed and RSS; what committed means.
  for (const char* row : {"\nwfmm:   in use, peak ", "\nwfmm:   committed ",
                          "\nwfmm:   committed, peak ", "\nwfmm:   RSS (kernel) ",
                          "\nwfmm:   RSS, peak (kernel) ",
                          "(committed: mapped by wfmm and not purged"})
    EXPECT_NE(text.find(row), std::string::npos) << row << text;
  bool reclaiming = s.retired != 0 || s.protect_slow != 0 || s.era > 1;
  EXPECT_EQ(text.find("\nwfmm: reclamation" + label) != std::string::npos, reclaiming) << text;

  f = open_memstream(&buf, &len);
  wfmm_stats_print_json(f);
  fclose(f);
  std::string json(buf, len);
  free(buf);
  EXPECT_EQ(json.rfind("{\"wfmm\": \"" WFMM_VERSION "\", \"program\": \"wfmm_unit_", 0), 0u)
      << json;
  EXPECT_EQ(json.find('\n'), json.size() - 1) << json;
  EXPECT_EQ(json.substr(json.size() - 2), "}\n") << json;
  for (const char* k : {"pid", "wall_s", "user_s", "sys_s", "rss_bytes", "peak_rss_bytes",
                        "bytes_in_use", "bytes_in_use_peak",
                        "bytes_mapped", "bytes_committed", "blocks_in_use", "retired",
                        "reclaimed", "retired_pending", "retired_pending_bytes", "era",
                        "protect_slow", "threads", "malloc_count", "free_count",
                        "segments_cached", "deferred_bytes", "deferred_peak_bytes",
                        "deferral_max_eras", "bytes_committed_peak"})
    EXPECT_NE(json.find(std::string(", \"") + k + "\": "), std::string::npos) << k << json;
  // RSS from the kernel: this process has some, and its peak is at least that.
  auto number = [&](const char* k) {
    size_t at = json.find(std::string("\"") + k + "\": ");
    return at == std::string::npos ? 0ull : strtoull(json.c_str() + at + strlen(k) + 4, nullptr, 10);
  };
  EXPECT_GT(number("rss_bytes"), 1u << 20) << json;
  EXPECT_GE(number("peak_rss_bytes"), number("rss_bytes")) << json;
  wfmm_free(p);
}

TEST(Api, CollectReturnsMemoryOfAFreedWorkingSet) {
  ASSERT_EQ(wfmm_option_set("purge_delay_ms", 0), 0);
  wfmm_collect(1);
  wfmm_stats before;
  wfmm_stats_get(&before);
  std::vector<void*> ps;
  for (int i = 0; i < 20000; ++i) {
    void* p = wfmm_malloc(1000);
    memset(p, 1, 1000);
    ps.push_back(p);
  }
  wfmm_stats peak;
  wfmm_stats_get(&peak);
  EXPECT_GE(peak.bytes_committed - before.bytes_committed, 15u << 20);
  for (void* p : ps) wfmm_free(p);
  wfmm_collect(1);
  wfmm_stats after;
  wfmm_stats_get(&after);
  EXPECT_LE(after.bytes_committed, before.bytes_committed + (1u << 20));
  wfmm_option_set("purge_delay_ms", 50);
}
