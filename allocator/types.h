// The allocator's shared structures and their invariants: blocks, pages, segments, heaps.
// Read this before touching heap*.cpp or segment.cpp.
#pragma once
#include <atomic>

#include "config.h"
#include "handoff.h"
#include "size_class.h"

namespace wfmm {

struct Heap;
struct Segment;

// A free block's second word: the link of whichever list holds it, encoded as
// (next ^ page.key). Encoding makes a stale or forged link detectable: a live block whose
// first word decodes to 0, kPendingLink, or an address inside its own page is "suspicious"
// and free() checks it for a double free. malloc clears the word, so a live block never
// carries a valid encoded link unless the program wrote one. Word 0 of a block that a
// remote push left half-linked (see Page) chains it into the page's parked list.
// Why word 1 for the link: free() reads the link word before writing it, and programs
// often store to the first bytes of a block just before freeing it; a narrow store
// followed by a wider load of the same bytes cannot be forwarded and stalls the free.
struct Block {
  Block* parked_next;  // only while parked; only the owner writes it
  std::atomic<uintptr_t> next;
};
inline constexpr uintptr_t kPendingLink = 1;

enum class PageQueue : uint8_t { kNone, kAvail, kFull, kFreeDirty, kFreeClean };
enum class SegmentKind : uint8_t { kSmall, kMedium, kLarge, kHuge };

// A page: blocks of one size class, owned by one heap (the thread that allocates from it).
//
// Lists (mimalloc's free-list sharding):
//   free_        the owner pops here (malloc fast path)
//   local_free_  the owner pushes here (free fast path); swapped into free_ when it runs dry
//   xthread_free_ other threads push here with one exchange; the owner takes it with one
//                exchange (collect). A pusher links its block after the exchange; until
//                then the link reads kPendingLink and the owner parks the block (parked_,
//                linked through word 1) and resumes the chain on a later collect. A parked
//                block is never handed out: its pusher still has a write to make.
// Counting identity, true whenever the owner is outside malloc/free:
//   used_ = capacity_ - |free_| - |local_free_| ; blocks out = used_, of which some sit
//   in xthread_free_ or parked_ (freed but not yet collected).
// Who writes: the owner writes every plain field; other threads touch only xthread_free_
// and read xheap_. A page with used_ == 0 is empty and may be reused for any class.
struct Page {
  // Three cache lines by who writes them. A thread freeing a block of another thread's page
  // reads only the first (owner test, block-start and double-free checks) and writes only
  // the third (its remote list): the owner's mallocs and frees, which write the second line
  // on every call, no longer take the freer's copy of the line it reads. (With the owner's
  // list heads beside the shape fields, every remote free missed on the line the owner had
  // just written: xheap_ was a quarter of operator delete's samples on the xenium hash map,
  // 8 threads, write-heavy.)
  // --- first line: the page's shape and owner; written when the page is set up, extended
  // or changes hands, read by every free ---
  uintptr_t key_ = 0;  // link encoding; high bit set, so key ^ 0 is never in the page
  uintptr_t start_ = 0;  // first block
  uint64_t magic_ = 0;   // floor(2^40 / block_size) + 1: block index by multiply
  uint64_t magic_low_ = 0;  // magic_ << 24: the block-start test as multiply, shift, branch
  uint32_t block_size_ = 0;  // 0 while the page is free
  // capacity_ * block_size_: only carved slots are blocks. Written by the owner, read by
  // freeing threads (relaxed: a block handed out was carved before, and the handing out
  // happens-before its free).
  std::atomic<uint32_t> xspan_{0};
  std::atomic<Heap*> xheap_{nullptr};  // owner; null while free or abandoned
  // Reserved for reclamation: one word per block (birth era, or tagged link to its retire
  // batch once retired). Stays null until a tracked block comes from this page.
  std::atomic<std::atomic<uint64_t>*> xside_{nullptr};
  uint32_t page_shift_ = 0;
  uint8_t class_ = 0;
  uint8_t index_ = 0;  // position in the segment
  // --- second line: the owner's list heads, written by every malloc and local free ---
  alignas(64) Block* free_ = nullptr;
  Block* local_free_ = nullptr;
  // Blocks in use: handed out, not back on free_ or local_free_ (remote frees count until
  // collected).
  uint32_t used_ = 0;
  // Mallocs from this page since its last fold into the heap's per-class counters
  // (page_fold), so the fast paths touch no statistics line. Local frees are not counted at
  // all: a fold derives them from the change in use (frees = mallocs - (used_ - used_fold_)).
  uint32_t pops_ = 0;
  // used_ at the last fold, minus the remote frees collected since (those were counted by
  // their freers).
  uint32_t used_fold_ = 0;
  PageQueue queue_ = PageQueue::kNone;
  // Every block on free_ reads zero but for its link word (word 1, which malloc clears):
  // free_ holds only blocks carved from zeroed memory and never handed out since, so calloc
  // skips its memset. Set by page_extend (from zero_); cleared by anything else that puts
  // blocks on free_ (the local-list swaps, collected remote frees). Owner only.
  bool free_is_zero_ = false;
  // --- third line: shared and slow-path fields ---
  alignas(64) std::atomic<uintptr_t> xthread_free_{0};
  Block* parked_ = nullptr;
  uint32_t capacity_ = 0;  // blocks carved so far
  uint32_t reserved_ = 0;  // blocks that fit in the page
  Page* next_ = nullptr;   // queue links (owner)
  Page* prev_ = nullptr;
  uint64_t freed_at_ms_ = 0;  // a free page: since when it is empty, or purged once it is
  bool purged_ = false;
  // The page's area past capacity_ (all of it while the page is free) reads zero: set when
  // the segment is fresh from the kernel or the page was purged (MADV_DONTNEED), cleared
  // when a used page is freed (its blocks were written). Owner (or whoever holds the free
  // page's segment).
  bool zero_ = false;
  // Bytes from start_ that an earlier use of the page wrote since it was last fresh or
  // purged: resident, so page_extend carves them in one go. 0 when unknown. Owner.
  uint32_t touched_ = 0;
  // A free page whose last use left every carved block on free_ and local_free_ (they stay
  // there, keyed with key_): page_init for the same class takes them back as they are, with
  // no carving. Cleared by a purge (the memory then reads zero); a segment's reuse resets
  // its descriptors. Owner (or whoever holds the free page's segment).
  bool lists_kept_ = false;
  // Large/huge blocks: 1 while the block is live, 0 once freed (exchange = exact double-free
  // detection without an owner).
  std::atomic<uint32_t> xlarge_live_{0};

  uintptr_t encode(const Block* b) const { return reinterpret_cast<uintptr_t>(b) ^ key_; }
  Block* decode(uintptr_t v) const { return reinterpret_cast<Block*>(v ^ key_); }
  // True if `p` is the start of a block slot of this page (in use or not).
  // With off = q*bs + r and bs*magic = 2^40 + e (0 < e <= bs), the low 40 bits of
  // off*magic are q*e + r*magic: below 2^19 when r == 0 (q*e <= off < 2^19), at least
  // magic >= 2^23 otherwise (bs <= 2^17). One multiply, no division.
  uint32_t span() const { return xspan_.load(std::memory_order_relaxed); }
  // (With magic_low_ the low 40 bits of off * magic_ land in the top 40 bits of the 64-bit
  // product, so "below 2^19" is "nothing above bit 42": no 64-bit mask constant to load.)
  bool is_block_start(uintptr_t p) const {
    uintptr_t off = p - start_;
    return off < span() && ((off * magic_low_) >> 43) == 0;
  }
  // True if a block's link word decodes to something a free list could hold: the block
  // is (almost surely) free already. A live block's word is 0 or program data.
  bool link_looks_free(uintptr_t word) const {
    uintptr_t d = word ^ key_;
    return d <= kPendingLink || d - start_ < span();
  }
};

// A segment: kSegmentSize-aligned mapping. Small and medium segments hold pages of one
// kind and belong to one heap (or none, while abandoned or cached); large segments hold one
// block and belong to nobody; huge segments are large segments of their own size.
// The header lives in the first kHeaderSize bytes; pages[0] of a small segment is the
// header itself and never holds blocks.
struct Segment {
  uint64_t cookie_ = 0;  // kSegmentCookie ^ address: catches stray map entries in checks
  SegmentKind kind_ = SegmentKind::kSmall;
  uint8_t page_shift_ = 0;
  uint8_t page_count_ = 0;  // pages usable for blocks
  uint8_t first_page_ = 0;
  uint32_t used_pages_ = 0;  // pages holding a size class (owner)
  size_t size_ = 0;          // bytes mapped
  bool fresh_ = false;       // never used since mapped: memory reads as zero
  // Standard (kSegmentSize) segments: bit u set = the 64 KiB unit u reads zero (never
  // written since mapped, or purged). Kept across reuse from the cache or the large stash
  // (init_header preserves it): segment_release computes it from the pages' zero_ flags;
  // a large segment keeps it up to date itself (large_alloc clears its block's units). Bit 0
  // (the header) is never set. Huge segments (of any size, also one that realloc shrank to
  // kSegmentSize bytes): 0.
  uint64_t zero_units_ = 0;
  // Large and huge blocks: the bytes from the block's start that calloc must clear (the
  // rest of the block lies in zero units). Set by large_alloc.
  size_t block_dirty_ = 0;
  // While in the segment cache: its resident bytes counted in g_cache_resident (standard
  // segments: the units not known zero; huge ones: 0, they have their own byte cap).
  int64_t cached_resident_ = 0;
  uint64_t freed_at_ms_ = 0;
  std::atomic<Heap*> xowner_{nullptr};
  Segment* next_ = nullptr;  // the owning heap's segment list
  Segment* prev_ = nullptr;
  std::atomic<Segment*> handoff_next{nullptr};
  Segment* handoff_link = nullptr;
  // Small segments: the side words of all pages (birth.cpp), mapped at the first tracked
  // block and kept for the segment's life (init_header preserves it across reuse).
  std::atomic<std::atomic<uint64_t>*> xside_map_{nullptr};
  alignas(64) Page pages_[kMaxPagesPerSegment];

  Page* page_of(uintptr_t p) {
    return &pages_[(p - reinterpret_cast<uintptr_t>(this)) >> page_shift_];
  }
};

// The segment holding p: a page descriptor, or any address of a small or medium block
// (segments are kSegmentSize-aligned; huge blocks' tails need segment_containing).
WFMM_INLINE Segment* segment_of(const void* p) {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(p) & ~kSegmentMask);
}
static_assert(sizeof(Segment) <= kHeaderSize);
// Medium, large and huge segments keep their blocks' side words in the header, from here.
inline constexpr size_t kHeaderSideOffset = 32 * 1024;
static_assert(sizeof(Segment) <= kHeaderSideOffset);
// Side words per small page slot in a small segment's side map.
inline constexpr size_t kSmallSideWords = (size_t(1) << kSmallPageShift) / 16;
inline constexpr size_t kSideMapBytes = kMaxPagesPerSegment * kSmallSideWords * 8;

inline constexpr uint64_t kSegmentCookie = 0x77666d6d5345474dull;

static_assert(sizeof(Page) == 192, "three cache lines: shape, owner heads, shared (see Page)");

// Doubly linked page list (owner only).
struct PageList {
  Page* head = nullptr;
  Page* tail = nullptr;
};

// Per-thread statistics, written only by the owning thread with plain (relaxed, non-RMW)
// stores and summed by readers: no shared atomic on a fast path. Frees are counted by the
// freeing thread, so one thread's figures can be negative; the sums are right.
// Small and medium blocks are counted per size class (one increment, no size to load);
// bytes are derived from the class sizes when read.
struct ThreadStats {
  std::atomic<int64_t> malloc_class[kNumClasses] = {};
  std::atomic<int64_t> free_class[kNumClasses] = {};
  std::atomic<int64_t> malloc_large{0};
  std::atomic<int64_t> malloc_large_bytes{0};
  std::atomic<int64_t> free_large{0};
  std::atomic<int64_t> free_large_bytes{0};
};

inline constexpr size_t kSegmentHints = 64;
// Never a segment's address (those are kSegmentSize-aligned), so an empty slot matches no free.
inline constexpr uintptr_t kNoSegmentHint = 1;

// A heap: one per thread, reached through t_heap (initial-exec TLS). The static empty heap
// g_empty_heap has every cur_ entry at the empty page, so a thread's first malloc misses
// and the slow path sets the thread up; nothing on the fast path asks "initialised?".
struct Heap {
  // Page the fast path pops from, by request size in 16-byte words up to kDirectMax:
  // direct_[w] == cur_[kDirectClass[w]] always (set_cur keeps them equal).
  Page* direct_[kDirectMax / 16 + 1];
  Page* cur_[kNumClasses];  // page the fast path pops from, per class (never null)
  // Segments this heap owns, by the low bits of their number (direct-mapped): a free whose
  // segment is here skips the segment map (its two dependent loads and range checks), since
  // an owned segment is mapped and its header valid. Set by a local free that went through
  // the map; a slot is cleared (kNoSegmentHint) when its segment leaves the heap
  // (segment_unlink), so it never names a segment another thread could unmap. Owner only.
  uintptr_t seg_hint_[kSegmentHints];
  // The segment of this heap's last local free (or kNoSegmentHint), tested before the table:
  // one compare without the table's index arithmetic. Same rules as seg_hint_.
  uintptr_t seg_last_ = kNoSegmentHint;
  ThreadStats stats_;
  uint64_t id_ = 0;
  uint64_t rng_ = 0;
  std::atomic<bool> xlive_{false};  // a thread uses this heap now (read by statistics)
  bool key_set_ = false;            // the thread-exit destructor is registered
  uint32_t slow_calls_ = 0;
  int64_t era_countdown_ = 0;  // tracked allocations left before this thread ticks the era
  uint64_t hook_era_ = 0;      // the era at the last g_alloc_hook call (deferred free)
  PageList avail_[kNumClasses];  // pages that may have free blocks (cur_ is the head)
  PageList full_[kNumClasses];   // pages found full
  // The deep scan of full_ before a fresh page (find_page) looks at kFullScanDeep >> this
  // many pages: a scan that found no freed block halves the next one, one that found one
  // restores it. A batch of 1,000 16 KiB blocks (4 to a page, freed only locally, in
  // pages that then empty) looked at 64 full pages for every fourth malloc: 60% of its time.
  uint8_t full_scan_shift_[kNumClasses] = {};
  PageList free_dirty_[2];       // empty pages, not purged, oldest first (small, medium)
  PageList free_clean_[2];       // empty pages, purged
  Segment* segments_ = nullptr;  // small and medium segments this heap owns
  // One emptied large segment kept by the thread that freed it, for its next large block:
  // no trip through the shared cache (whose try-flag can be held by a preempted thread).
  Segment* large_stash_ = nullptr;
  uint64_t large_stash_ms_ = 0;
  // In the heap pool with its segments still linked (heap_park): since when. 0: not parked
  // (in use, or in the pool with no segments).
  uint64_t parked_ms_ = 0;
  // Until then (ms) this heap's thread, which started on an empty heap, may strip one parked
  // heap without waiting for its purge delay (strip_parked): the parked heap it could have
  // taken. 0: no such credit (it started on a parked heap, used it, or the time passed).
  uint64_t strip_credit_until_ms_ = 0;
  std::atomic<Heap*> handoff_next{nullptr};  // heap pool
  Heap* handoff_link = nullptr;
  std::atomic<Heap*> xall_next_{nullptr};  // registry of every heap ever made

  constexpr explicit Heap(Page* empty) {
    for (auto& c : cur_) c = empty;
    for (auto& d : direct_) d = empty;
    for (auto& x : seg_hint_) x = kNoSegmentHint;
  }
};

extern Page g_empty_page;
extern Heap g_empty_heap;
extern __thread Heap* t_heap __attribute__((tls_model("initial-exec")));
// Set when this thread's heap was given back at its exit (thread_done): a free from a later
// destructor must not make the thread a new heap that no exit would give back.
extern __thread bool t_heap_done __attribute__((tls_model("initial-exec")));

}  // namespace wfmm
