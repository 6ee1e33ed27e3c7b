// The malloc and free fast paths (inline) and the allocator's internal interface. Each fast
// path is a constant number of steps with no atomic read-modify-write; everything else is
// one unlikely branch to a named out-of-line function in heap.cpp, heap_free.cpp or large.cpp.
#pragma once
#include "birth.h"
#include "error.h"
#include "segment_map.h"
#include "types.h"

namespace wfmm {

// ---- slow paths (heap.cpp, heap_free.cpp, large.cpp) ----
void* malloc_slow(size_t n);
void page_became_empty(Heap* h, Page* pg);
void free_local_checked(Heap* h, Page* pg, Block* b, const char* who);
void free_not_local(void* p, const char* who);
// Reports a pointer with no segment-map entry: `freed` if it is a large/huge block whose
// range was unmapped after its free, else "invalid pointer (not allocated by wfmm)".
void report_unmapped(const char* who, const char* freed, const void* p);
bool page_holds_free(Page* pg, Block* b);
// A link of b, on free_ or local_free_, that failed free_link_ok: reports (heap
// corruption), then, in continue mode, makes b the end of its list, counts the blocks cut
// off as leaked (in use for good) and returns null. Owner only.
Block* free_link_bad(Page* pg, Block* b, uintptr_t link, const char* list);
// The rest of the malloc fast path's pop of b when the link it left in free_ is neither a
// block start nor null (corrupt: reported; in continue mode the rest of the list is
// dropped) or when b needs its birth era recorded. Returns b.
__attribute__((returns_nonnull)) void* malloc_link_slow(Heap* h, Page* pg, Block* b);
// The rest of the pop when only b's birth era is to be recorded (its link passed the check).
__attribute__((returns_nonnull)) void* malloc_birth(Heap* h, Page* pg, Block* b);
// The rest of the pop of b when it ended free_ with only b in use (a malloc/free pair
// loop) and freed blocks wait on local_free_: carves more blocks into free_ while the page
// has fewer than kCycleBlocks blocks and kCycleBytes carved, else takes the freed ones.
// Returns b.
__attribute__((returns_nonnull)) void* malloc_list_cycle(Heap* h, Page* pg, Block* b);

// ---- free-list links ----
// Every link is checked before it is followed (malloc's pop, the local list once it
// becomes free_, the remote chain on collect, the double-free scan): a decoded link must
// be null or the start of a carved block of the same page (is_block_start: one compare
// and one multiply). A freed block the program wrote to (use after free, an overflow into
// a free neighbour) decodes to a random value, which passes with chance capacity/2^64
// (< 2^-52); a write to its low bytes only lands off a block start unless it moves the
// link by whole blocks inside the page.
WFMM_INLINE bool free_link_ok(const Page* pg, uintptr_t link) {
  return WFMM_LIKELY(pg->is_block_start(link)) || link == 0;
}

// The next block after b on the page's list `list`, checked. A bad link is reported (abort,
// or with WFMM_ON_ERROR=continue b becomes the list's end and null is returned).
WFMM_INLINE Block* free_next(Page* pg, Block* b, const char* list) {
  uintptr_t link = b->next.load(std::memory_order_relaxed) ^ pg->key_;
  if (WFMM_UNLIKELY(!free_link_ok(pg, link))) return free_link_bad(pg, b, link, list);
  return reinterpret_cast<Block*>(link);
}

// ---- internal API used by the C API layer (interpose/api.cpp) and later by reclaim ----
// Pre for all: sizes are at most kMaxAllocSize (callers check overflow first).
void* alloc_aligned(size_t n, size_t align);  // align: power of two; returns null on OOM
void* alloc_zeroed(size_t n);
void* reallocate(void* p, size_t n, const char* who);  // p != null, n > 0
size_t usable_size(const void* p, const char* who);    // 0 for null or foreign
// Block containing an address (interior pointers included): start and usable size, or
// false if the address is in no live block wfmm knows. For reclaim's slow path.
bool block_lookup(const void* p, void** start, size_t* size);
// Gives the calling thread its heap if it has none yet (its first allocator call); under
// deferred free that also opens the thread's implicit region.
void heap_thread_start();
// Purges every empty page and cached segment it can reach now. True if memory was released.
bool collect(bool force);
// Process and thread lifecycle hooks (interpose calls them; heap_thread.cpp implements).
void process_init();
void fork_child_reset();

// Relaxed read-add-store: the owner is the only writer, readers tolerate staleness.
WFMM_INLINE void stat_add(std::atomic<int64_t>& c, int64_t v) {
  c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

// A malloc in the page's counts: one more block in use, one more malloc to fold. Written
// as asm: GCC merged the two 4-byte adds into one 8-byte vector add, whose load then waited
// on free's 4-byte store of used_ (a failed store forward: MallocFreePair 5.6 -> 8.8 ns).
WFMM_INLINE void page_count_malloc(Page* pg) {
  asm volatile("addl $1, %0\n\taddl $1, %1" : "+m"(pg->used_), "+m"(pg->pops_));
}

// Moves what the page counted since its last fold into its heap's per-class counters (the
// ones statistics read): its mallocs, and its local frees, derived from the change in use
// (a malloc raised used_ by one, a local free lowered it by one; collected remote frees,
// counted by their freers, were taken out of used_fold_ as they left used_). The fast paths
// thus touch no counter line: per malloc/free pair that was two adds to the heap's counters
// and two loads of class_ (bench_alloc on a Xeon: MallocFreePair/256 7.5 -> 6.6 ns,
// MallocFreeBatch/64 6.9 -> 6.1). A page is folded when malloc's slow path finds its list
// run out (the only way a page stops being current, but emptying), when the fast path ends
// a list after kFoldPops mallocs (a page that stays current: bounds pops_), when it empties
// (page_free), at thread exit, and when its thread reads statistics. So the thread reading
// its own counts sees them exact; another thread's lag by up to kFoldPops mallocs per
// current page and by the local frees into pages not folded since. Owner only.
inline constexpr uint32_t kFoldPops = 1u << 16;
WFMM_INLINE void page_fold(Heap* h, Page* pg) {
  uint32_t m = pg->pops_;
  uint32_t u = pg->used_;
  uint32_t f = m - (u - pg->used_fold_);
  stat_add(h->stats_.malloc_class[pg->class_], int64_t(m));
  stat_add(h->stats_.free_class[pg->class_], int64_t(f));
  pg->pops_ = 0;
  pg->used_fold_ = u;
}
// Folds every page of h (its thread's statistics become exact). Owner only; bound: the
// heap's segments x their pages.
void heap_fold_counts(Heap* h);

// The malloc fast path: a pop from the current page of the size class, or null when the
// caller must take the slow path (size above kMediumMax, or the page's free list is empty).
WFMM_INLINE void* heap_malloc_fast(size_t n) {
  Heap* h = t_heap;
  Page* pg;
  if (WFMM_LIKELY(n <= kDirectMax)) {
    pg = h->direct_[(n + 15) >> 4];
  } else if (n <= kMediumMax) {
    pg = h->cur_[size_class_compute(n)];
  } else {
    return nullptr;
  }
  Block* b = pg->free_;
  if (WFMM_UNLIKELY(b == nullptr)) {
    // The common refill: this thread's own frees, no atomics, no call. (The empty page
    // has none, so a thread's first malloc still reaches the slow path.)
    b = pg->local_free_;
    if (b == nullptr) return nullptr;
    pg->local_free_ = nullptr;
    pg->free_is_zero_ = false;  // freed blocks hold old data (same cache line: no cost)
  }
  uintptr_t link = b->next.load(std::memory_order_relaxed) ^ pg->key_;
  pg->free_ = reinterpret_cast<Block*>(link);
  b->next.store(0, std::memory_order_relaxed);  // a live block carries no valid link
  page_count_malloc(pg);
  // The link check, after the stores (which only park the unchecked link in free_; nothing
  // follows it before the check). A bad link and blocks that need a birth era (g_track,
  // birth.h) leave by one jump: with birth_note inline here the compiler kept b in a
  // callee-saved register across its call (a push and a pop on every malloc); as a tail
  // call the fast path has no frame.
  if (WFMM_UNLIKELY(!pg->is_block_start(link))) {
    if (link != 0) return malloc_link_slow(h, pg, b);
    // The list ran out: take this thread's frees now (what the next malloc would do
    // first), so the list's end costs one unusual branch here instead of one more there.
    // An empty local list leaves free_ empty, and its zero state stands (the next
    // page_extend sets it again): a page of 2 KiB blocks ends its list at every pop.
    // A pair loop (only b in use) leaves by a tail call (a call here would give every
    // malloc a stack frame).
    Block* l = pg->local_free_;
    if (WFMM_UNLIKELY(pg->used_ == 1) && l != nullptr) return malloc_list_cycle(h, pg, b);
    pg->free_ = l;
    pg->local_free_ = nullptr;
    if (l != nullptr) pg->free_is_zero_ = false;
    // A page that stays current (a pair loop) never reaches malloc's slow path: its counts
    // are folded here once kFoldPops mallocs gathered (pops_ stays below kFoldPops + one
    // list's blocks).
    if (WFMM_UNLIKELY(pg->pops_ >= kFoldPops)) page_fold(h, pg);
  }
  if (WFMM_UNLIKELY(g_track.load(std::memory_order_relaxed))) return malloc_birth(h, pg, b);
  return b;
}

WFMM_INLINE void* heap_malloc(size_t n) {
  void* p = heap_malloc_fast(n);
  if (WFMM_LIKELY(p != nullptr)) return p;
  return malloc_slow(n);
}

// The push of a checked block on its page's local list.
WFMM_INLINE void push_local(Heap* h, Page* pg, Block* b) {
  b->next.store(pg->encode(pg->local_free_), std::memory_order_relaxed);
  pg->local_free_ = b;
  // (Not counted: page_fold derives local frees.) An emptied page that is still this
  // class's current page stays put: a malloc/free pair loop reuses it without a call.
  if (WFMM_UNLIKELY(--pg->used_ == 0) && h->cur_[pg->class_] != pg) page_became_empty(h, pg);
}

// The owner's free of block b of its page pg: the interior, double-free and retired checks,
// then a push on the local list. Every check is one predicted branch; a failing one goes out
// of line (free_local_checked confirms, reports, or frees). The page's fields are read into
// locals once (atomic loads are not merged by the compiler: span() was read twice).
// kReclaimed: reclamation's free of a retired block. Its retire checked it as a block start
// and the side word names the batch freeing it (free_some): the interior and retired tests
// are moot. The link test stays: a free of the block racing with its retire (the program's
// double free) can have passed free's retired test and put it on a list meanwhile.
template <bool kReclaimed = false>
WFMM_INLINE void free_local(Heap* h, Page* pg, Block* b, const char* who) {
  // One register for the page: without this barrier GCC kept the segment and the page's
  // index apart and rebuilt the page's address three ways, spilling four registers.
  asm("" : "+r"(pg));
  uintptr_t a = reinterpret_cast<uintptr_t>(b);
  uintptr_t start = pg->start_;
  uintptr_t span = pg->span();
  uintptr_t off = a - start;
  // The link word is read only once a is known to be a block start: for any other address
  // a + 8 may lie past the segment's end, in memory that is not mapped (a free of the
  // segment's last bytes crashed instead of being reported: bad_input_test
  // HintedSegmentHeaderAndFreePage).
  if (WFMM_LIKELY(kReclaimed || (off < span && ((off * pg->magic_low_) >> 43) == 0))) {
    uintptr_t d = b->next.load(std::memory_order_relaxed) ^ pg->key_;
    if (WFMM_LIKELY(d > kPendingLink && d - start >= span &&
                    (kReclaimed || !page_block_retired(pg, a))))
      return push_local(h, pg, b);
  }
  free_local_checked(h, pg, b, who);
}

// Pre: p != null. kReclaimed: reclamation frees a block it owns (free_local); a remote free
// still checks everything.
template <bool kReclaimed = false>
WFMM_INLINE void heap_free(void* p, const char* who) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  Heap* h = t_heap;
  uintptr_t sa = a & ~kSegmentMask;
  Segment* s = reinterpret_cast<Segment*>(sa);
  // A segment of this heap (seg_last_, else the seg_hint_ table): mapped, header valid, and
  // each of its pages is this heap's or free. A free page (and a small segment's header
  // page) has span 0, so free_local's block-start test sends such an address to
  // free_local_checked, which reports it: no owner test needed then. (bad_input_test:
  // HintedSegmentHeaderAndFreePage.)
  if (WFMM_UNLIKELY(h->seg_last_ != sa)) {
    uintptr_t& hint = h->seg_hint_[(a >> kSegmentShift) % kSegmentHints];
    if (hint != sa) {
      // Small (64 KiB) or medium (512 KiB) pages only. The page size comes from the
      // segment's header, not from the entry: the header line is as hot, and the page's
      // address then waits for one load instead of the map's two in a row.
      unsigned e = segment_map_entry(a);
      // relaxed (xheap_): only this thread ever stores its own heap into xheap_, so
      // equality is decided by this thread's own earlier store.
      if (e - kMapSmall > kMapMedium - kMapSmall ||
          s->page_of(a)->xheap_.load(std::memory_order_relaxed) != h)
        return free_not_local(p, who);
      hint = sa;  // the page is this heap's, so is its segment (see seg_hint_)
    }
    h->seg_last_ = sa;
  }
  free_local<kReclaimed>(h, s->page_of(a), static_cast<Block*>(p), who);
}

}  // namespace wfmm
