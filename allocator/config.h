// Compile-time constants of the allocator and the few macros every file uses.
// Layout: 4 MiB segments aligned to their size; small pages 64 KiB, medium pages 512 KiB;
// the first 64 KiB of every segment hold its header and page descriptors.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define WFMM_LIKELY(x) __builtin_expect(!!(x), 1)
#define WFMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define WFMM_INLINE inline __attribute__((always_inline))
#define WFMM_NOINLINE __attribute__((noinline))
#define WFMM_COLD __attribute__((noinline, cold))
#define WFMM_EXPORT __attribute__((visibility("default")))
// For extern declarations of globals the fast paths read: -fvisibility=hidden covers only
// definitions, so without this each read went through the GOT (a relaxed lea plus the load).
#define WFMM_HIDDEN __attribute__((visibility("hidden")))

namespace wfmm {

[[noreturn]] void assert_fail(const char* cond, const char* file, int line);

}  // namespace wfmm

#if defined(WFMM_CHECKED) && WFMM_CHECKED
#define WFMM_ASSERT(c) (WFMM_LIKELY(c) ? (void)0 : ::wfmm::assert_fail(#c, __FILE__, __LINE__))
#else
#define WFMM_ASSERT(c) ((void)0)
#endif

namespace wfmm {

inline constexpr unsigned kSegmentShift = 22;
inline constexpr size_t kSegmentSize = size_t(1) << kSegmentShift;  // 4 MiB
inline constexpr uintptr_t kSegmentMask = kSegmentSize - 1;
inline constexpr size_t kHeaderSize = 64 * 1024;  // segment header + page descriptors

inline constexpr unsigned kSmallPageShift = 16;                                   // 64 KiB
inline constexpr unsigned kMediumPageShift = 19;                                  // 512 KiB
inline constexpr unsigned kMaxPagesPerSegment = kSegmentSize >> kSmallPageShift;  // 64

// Largest block in a small page. 16 KiB (four to a page), not 8: blocks of 8-16 KiB in
// medium pages gave most threads a medium segment besides their small one, and a
// thread-churn program then cycled twice the segments through the cache (peak RSS
// thread-churn-t4 30.0 -> 25.5 MiB, larson-t2 18.0 -> 15.9; time unchanged over the
// allocation workloads). mimalloc's small pages end at the same size.
inline constexpr size_t kSmallMax = 16 * 1024;
inline constexpr size_t kMediumMax = 128 * 1024;  // largest block in a medium page
// Large blocks take a whole standard segment; above that a block gets its own mapping.
inline constexpr size_t kLargeMax = kSegmentSize - kHeaderSize;
// The segment map stores a 16-bit distance (minus 3 codes), so one mapping spans at most this many
// segments.
inline constexpr size_t kMaxMappingSegments = 65532;
inline constexpr size_t kMaxAllocSize = (kMaxMappingSegments - 1) * kSegmentSize;

// User address space on x86-64 Linux (4-level paging; 5-level only on request via hints).
inline constexpr unsigned kAddressBits = 47;

// Blocks carved from a page's untouched area per slow-path call (keeps RSS to what is used).
inline constexpr size_t kExtendBytes = 4096;
inline constexpr uint32_t kMinExtend = 4;  // blocks carved at least (bounded by the page)
// A page whose list ends with only the block just taken in use (a malloc/free pair loop)
// gets kExtendBytes more carved while fewer than kCycleBlocks and kCycleBytes are (one carve
// may pass them), before its freed blocks are taken back: with 4 KiB in circulation,
// 256-byte blocks ended the list every 16 pops, and each end cost about 45 cycles
// (MallocFreePair/256 6.6 ns, 5.9 with 16 KiB; mimalloc 6.0). Carving 16 KiB for every
// page instead cost small programs 11% RSS (sh6bench, sh8bench); 16 KiB of 16- or 64-byte
// blocks in circulation made their pair loops slower (5.6 -> 5.9 ns: more lines cycled
// through).
inline constexpr uint32_t kCycleBlocks = 64;
inline constexpr size_t kCycleBytes = 16384;
// Largest block whose emptied page, taken again for its class, keeps its free lists instead
// of being carved afresh (page_init): 64 and more blocks to a page. Above, carving is a few
// stores, and a kept list made MallocFreeBatch/65536 slower (59 -> 66 ns).
inline constexpr uint32_t kKeptListsMax = 1024;
// How many pages of one size class the malloc slow path inspects before taking a new page.
inline constexpr unsigned kPageScanLimit = 8;
// How many full pages the slow path checks for remote frees per call.
inline constexpr unsigned kFullScanLimit = 4;
// How many full pages it checks when it would otherwise carve a fresh page; halved after
// each such scan that found no freed block, down to kFullScanLimit (Heap::full_scan_shift_).
inline constexpr unsigned kFullScanDeep = 64;
inline constexpr uint8_t kFullScanMaxShift = 4;  // kFullScanDeep >> 4 == kFullScanLimit
static_assert((kFullScanDeep >> kFullScanMaxShift) == kFullScanLimit);
// How many abandoned segments one slow-path call may adopt (one at a time, stopping at the
// first that brings a usable page).
inline constexpr unsigned kAdoptLimit = 4;
// How many abandoned segments wfmm_collect(1) adopts (to give back those that emptied).
inline constexpr unsigned kCollectAdopt = 1024;
// How many expired empty pages one slow-path call purges.
inline constexpr unsigned kPurgeLimit = 4;
// The purge delay doubles (up to 1 << kPurgeStretchMax times the option's) when memory is
// needed again within one delay of being given back, and halves again after
// kPurgeCalmDelays option delays without such a regret (segment.cpp, purge_delay_ms).
inline constexpr uint8_t kPurgeStretchMax = 3;
inline constexpr uint64_t kPurgeCalmDelays = 16;
// WFMM_HUGE_PAGES=auto: small and medium segments mapped once this much has been in use at
// once get transparent huge pages (segment.cpp, segment_alloc). 32 MiB: alloc-test (50 MiB
// in use) keeps them; test-stress, mstress, larson, thread-churn (4-10 MiB in use over
// 28-216 MiB mapped) do not.
inline constexpr int64_t kThpAfterBytes = int64_t(32) << 20;
// Tries at the segment cache's consumer flag before a segment allocation maps a fresh one.
inline constexpr unsigned kCacheTries = 8;
// One spin-wait hint between two bounded tries.
WFMM_INLINE void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
// Entries a handoff stack moves out of its inbox per drain.
inline constexpr unsigned kDrainBudget = 64;
// Exited threads' heaps kept whole for the next threads (heap_park) at most; beyond, a
// thread's exit abandons its segments.
inline constexpr unsigned kParkedMax = 16;

}  // namespace wfmm
