// Heap free slow paths: frees the fast path leaves (checked local frees, double-free
// confirmation, remote pushes, large blocks), free pages (purge, segment retirement), and the
// list cut after a corrupt link. Shares the page queues of heap.cpp through heap_internal.h.
#include "heap.h"

#include "heap_internal.h"
#include "large.h"
#include "options.h"
#include "os/os.h"
#include "segment.h"

namespace wfmm {

// ---------------------------------------------------------------- pages

void page_purge(Segment* s, Page* pg, bool forced) {
  size_t area = page_area(s, pg);
  uintptr_t page_base = reinterpret_cast<uintptr_t>(s) + (uintptr_t(pg->index_) << s->page_shift_);
  uintptr_t from =
      page_base + ((s->kind_ == SegmentKind::kMedium && pg->index_ == 0) ? kHeaderSize : 0);
  pg->lists_kept_ = false;  // (a failed purge too: conservative)
  pg->free_ = pg->local_free_ = nullptr;
  if (os::purge(reinterpret_cast<void*>(from), area)) {
    pg->purged_ = true;
    // The purge's time, for purge_regret when the page is taken back (page_alloc, cache_take;
    // adopt keeps it); 0 for a forced purge, which no delay decided.
    pg->freed_at_ms_ = forced ? 0 : os::now_ms();
    pg->zero_ = true;  // private anonymous memory reads zero after MADV_DONTNEED
    pg->touched_ = 0;
    g_bytes_purged.fetch_add(int64_t(area), std::memory_order_relaxed);
  }
}

void segment_unlink(Heap* h, Segment* s) {
  if (s->prev_ != nullptr)
    s->prev_->next_ = s->next_;
  else
    h->segments_ = s->next_;
  if (s->next_ != nullptr) s->next_->prev_ = s->prev_;
  s->next_ = s->prev_ = nullptr;
  // The segment may be unmapped or owned by another thread from now on: free must ask the
  // segment map again.
  uintptr_t& hint = h->seg_hint_[(reinterpret_cast<uintptr_t>(s) >> kSegmentShift) % kSegmentHints];
  if (hint == reinterpret_cast<uintptr_t>(s)) hint = kNoSegmentHint;
  if (h->seg_last_ == reinterpret_cast<uintptr_t>(s)) h->seg_last_ = kNoSegmentHint;
}

// A segment all of whose pages are free leaves the heap. Bound: 64 pages.
void segment_retire_if_empty(Heap* h, Segment* s) {
  if (s->used_pages_ != 0) return;
  for (unsigned i = s->first_page_; i < s->page_count_; ++i)
    queue_move(h, &s->pages_[i], PageQueue::kNone, false);
  segment_unlink(h, s);
  segment_release(s);
}

// Resets a page that holds no live block to the free state (no queue change).
void page_reset_free(Segment* s, Page* pg) {
  // Folded, and no block in use.
  WFMM_ASSERT(pg->used_ == 0 && pg->pops_ == 0 && pg->used_fold_ == 0);
  uint32_t span = pg->span();  // its blocks were written: resident up to here
  if (span > pg->touched_) pg->touched_ = span;
  pg->xheap_.store(nullptr, std::memory_order_relaxed);
  pg->block_size_ = 0;
  pg->xspan_.store(0, std::memory_order_relaxed);
  // Its lists stay for a reuse in the same class (page_init): every carved block is on
  // them, since none is in use (no remote free is pending either: those count in used_).
  pg->lists_kept_ = pg->capacity_ != 0;
  pg->free_is_zero_ = false;
  pg->zero_ = false;  // its blocks were written
  WFMM_ASSERT(pg->parked_ == nullptr);
  s->used_pages_--;
  pg->freed_at_ms_ = os::now_ms();
}

// Page with no live block -> the heap's free pages (purged now if the delay is 0; then a
// segment left empty is released too, when the caller allows it).
void page_free(Heap* h, Page* pg, bool may_release) {
  Segment* s = segment_of(pg);
  unsigned cls = pg->class_;
  bool was_cur = h->cur_[cls] == pg;
  page_fold(h, pg);
  page_reset_free(s, pg);
  bool now = option(Opt::kPurgeDelayMs) == 0;
  if (now) {
    page_purge(s, pg);
    queue_move(h, pg, PageQueue::kFreeClean, true);
  } else {
    queue_move(h, pg, PageQueue::kFreeDirty, false);
  }
  if (was_cur) set_cur(h, cls);
  if (now && may_release) segment_retire_if_empty(h, s);
}

// Continue mode, after a cut in free_ or local_free_: the blocks behind the cut are
// neither free nor live any more, so count them as in use for good (leaked), which keeps
// the identity used_ = capacity_ - |free_| - |local_free_| (types.h) and keeps the page
// from ever looking empty while a stray pointer may still write into it. Walks both lists,
// cutting any other bad link it meets the same way. Bound: reserved_ steps per list.
void page_recount_after_cut(Page* pg) {
  uint32_t nfree = 0;
  static const char* const kNames[2] = {"free list", "local free list"};
  for (unsigned k = 0; k < 2; ++k) {
    Block* l = k == 0 ? pg->free_ : pg->local_free_;
    for (uint32_t i = 0; l != nullptr && i < pg->reserved_; ++i) {
      ++nfree;
      uintptr_t link = l->next.load(std::memory_order_relaxed) ^ pg->key_;
      if (WFMM_UNLIKELY(!free_link_ok(pg, link))) {
        report_corruption(kNames[k], reinterpret_cast<void*>(pg->start_), pg->block_size_, l,
                          link);
        l->next.store(pg->encode(nullptr), std::memory_order_relaxed);
        link = 0;
      }
      l = reinterpret_cast<Block*>(link);
    }
  }
  uint32_t used = nfree <= pg->capacity_ ? pg->capacity_ - nfree : 0;
  // The blocks cut off join used_ without a malloc: moved into used_fold_ too, so a fold
  // counts them as neither malloc nor free (they stay in use).
  pg->used_fold_ += used - pg->used_;
  pg->used_ = used;
}

// A link of b, on free_ or local_free_, that failed free_link_ok: report, and (continue
// mode) make b the end of its list, so that no later walk follows the bad link either, and
// count what was behind it as leaked. Owner only.
Block* free_link_bad(Page* pg, Block* b, uintptr_t link, const char* list) {
  report_corruption(list, reinterpret_cast<void*>(pg->start_), pg->block_size_, b, link);
  b->next.store(pg->encode(nullptr), std::memory_order_relaxed);
  page_recount_after_cut(pg);
  return nullptr;
}

void page_became_empty(Heap* h, Page* pg) {
  if (h->cur_[pg->class_] == pg) return;  // keep the hot page: malloc/free pairs reuse it
  page_free(h, pg, true);
}

// Owner: is b (whose link word looks free) on one of the page's free lists? Collects
// remote frees first. Bound: each list is walked at most reserved_ steps, every link
// checked before it is followed (free_next), so a list corrupted by a use-after-free write
// is reported and cut there instead of leading the walk astray. Blocks chained behind a
// parked block cannot be walked (their pusher has not linked them yet): with one present,
// the keyed link alone decides.
bool page_holds_free(Page* pg, Block* b) {
  collect_remote(pg);
  uint32_t limit = pg->reserved_ + 1;
  static const char* const kNames[2] = {"free list", "local free list"};
  for (unsigned k = 0; k < 2; ++k) {
    Block* l = k == 0 ? pg->free_ : pg->local_free_;
    for (uint32_t i = 0; l != nullptr && i < limit; ++i) {
      if (l == b) return true;
      l = free_next(pg, l, kNames[k]);
    }
  }
  if (pg->parked_ != nullptr) return true;
  return false;
}

// Frees by the owner that failed the fast check: interior pointer, or a first word that
// looks like a free-list link. Confirms a double free by scanning the page's lists.
void free_local_checked(Heap* h, Page* pg, Block* b, const char* who) {
  uintptr_t a = reinterpret_cast<uintptr_t>(b);
  if (!pg->is_block_start(a)) {
    report_error(who,
                 pg->block_size_ == 0 ? "invalid pointer (no block there)"
                                      : "invalid pointer (inside a block, not its start)",
                 b);
    return;
  }
  if (page_holds_free(pg, b)) return report_error(who, "double free of", b);
  if (page_block_retired(pg, a)) return report_error(who, kFreeOfRetired, b);
  push_local(h, pg, b);  // (the fold counts the free)
}

// Pushes b onto pg's remote list. Wait-free: three steps, no retry.
static void push_remote(Page* pg, Block* b) {
  b->next.store(pg->encode(reinterpret_cast<Block*>(kPendingLink)), std::memory_order_relaxed);
  // (P0) release: the pending mark and the program's writes to b precede the publication;
  // pairs with (P3).
  uintptr_t prev =
      pg->xthread_free_.exchange(reinterpret_cast<uintptr_t>(b), std::memory_order_acq_rel);
  // (P1) release: pairs with (P2).
  b->next.store(pg->encode(reinterpret_cast<Block*>(prev)), std::memory_order_release);
}

// Counters of the calling thread; a thread with no heap shares the empty heap's counters,
// and those need a real read-modify-write.
static void count(std::atomic<int64_t>& c, int64_t v) {
  if (t_heap == &g_empty_heap)
    c.fetch_add(v, std::memory_order_relaxed);
  else
    stat_add(c, v);
}

void count_free(size_t bytes) {
  ThreadStats& st = t_heap->stats_;
  count(st.free_large, 1);
  count(st.free_large_bytes, int64_t(bytes));
}

void count_malloc(size_t bytes) {
  ThreadStats& st = t_heap->stats_;
  count(st.malloc_large, 1);
  count(st.malloc_large_bytes, int64_t(bytes));
}

// A pointer with no map entry: a large/huge block freed before (its range is unmapped
// now), or never ours.
WFMM_COLD void report_unmapped(const char* who, const char* freed, const void* p) {
  report_error(who,
               segment_block_was_unmapped(reinterpret_cast<uintptr_t>(p))
                   ? freed
                   : "invalid pointer (not allocated by wfmm)",
               p);
}

void free_not_local(void* p, const char* who) {
  // A thread that frees before it ever allocates (a consumer) gets its heap here: without
  // one its counts went to the empty heap's with a locked add on a line all such threads
  // share (xmalloc-t4, 2 consumers: half of free_not_local's samples on that add).
  if (WFMM_UNLIKELY(t_heap == &g_empty_heap) && !t_heap_done) heap_thread_start();
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint16_t e = segment_map_entry(a);
  if (e == 0) return report_unmapped(who, "double free of", p);
  Segment* s = segment_containing(a);
  if (s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge) {
    if (WFMM_UNLIKELY(block_retired(p))) return report_error(who, kFreeOfRetired, p);
    return large_free(s, p, who);
  }
  Page* pg = s->page_of(a);
  if (!pg->is_block_start(a)) {
    return report_error(who,
                        pg->block_size_ == 0 ? "invalid pointer (no block there)"
                                             : "invalid pointer (inside a block, not its start)",
                        p);
  }
  // From the page found above (block_retired would look it up again: 3% of a remote-heavy
  // profile, the xenium hash map at 8 threads).
  if (WFMM_UNLIKELY(page_block_retired(pg, a))) return report_error(who, kFreeOfRetired, p);
  Block* b = static_cast<Block*>(p);
  if (pg->link_looks_free(b->next.load(std::memory_order_relaxed))) {
    // Its link word is a free-list link of this page: freed already. Only the owner could
    // confirm by scanning, and we are not the owner; the chance that live data equals a
    // keyed link is below 2^-40.
    return report_error(who, "double free of", p);
  }
  // Count first: once pushed, the block (and with it the page) may be collected, the page
  // emptied and the segment unmapped by its owner.
  count(t_heap->stats_.free_class[pg->class_], 1);
  push_remote(pg, b);
}

}  // namespace wfmm
