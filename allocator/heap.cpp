// Heap slow path of malloc: finding or making a page for a size class (page queues, remote-
// free collection, carving), and the end of the fast path's pop when a link is bad or births
// are recorded. Frees are in heap_free.cpp, thread lifecycle and adoption in heap_thread.cpp.
//
// Call tree of the malloc slow path:
//   malloc_slow -> thread_init (first call of a thread)
//               -> large_alloc (n > kMediumMax)
//               -> find_page -> housekeeping (purge expired empty pages)
//                            -> scan avail pages: collect, extend
//                            -> scan full pages with remote frees
//                            -> page_alloc -> free page of an owned segment
//                                          -> adopt abandoned segments
//                                          -> segment_alloc (cache or OS)
#include "heap.h"

#include <string.h>

#include "heap_internal.h"
#include "large.h"
#include "options.h"
#include "os/os.h"
#include "segment.h"

namespace wfmm {

constinit Page g_empty_page;
constinit Heap g_empty_heap(&g_empty_page);
__thread Heap* t_heap __attribute__((tls_model("initial-exec"))) = &g_empty_heap;
__thread bool t_heap_done __attribute__((tls_model("initial-exec"))) = false;

namespace {

// ---------------------------------------------------------------- page lists (owner only)

void list_push_front(PageList& l, Page* pg) {
  pg->prev_ = nullptr;
  pg->next_ = l.head;
  if (l.head != nullptr)
    l.head->prev_ = pg;
  else
    l.tail = pg;
  l.head = pg;
}

void list_push_back(PageList& l, Page* pg) {
  pg->next_ = nullptr;
  pg->prev_ = l.tail;
  if (l.tail != nullptr)
    l.tail->next_ = pg;
  else
    l.head = pg;
  l.tail = pg;
}

void list_remove(PageList& l, Page* pg) {
  if (pg->prev_ != nullptr)
    pg->prev_->next_ = pg->next_;
  else
    l.head = pg->next_;
  if (pg->next_ != nullptr)
    pg->next_->prev_ = pg->prev_;
  else
    l.tail = pg->prev_;
  pg->next_ = pg->prev_ = nullptr;
}

unsigned kind_index(const Segment* s) { return s->kind_ == SegmentKind::kSmall ? 0 : 1; }

PageList& queue_of(Heap* h, Page* pg) {
  switch (pg->queue_) {
    case PageQueue::kAvail:
      return h->avail_[pg->class_];
    case PageQueue::kFull:
      return h->full_[pg->class_];
    case PageQueue::kFreeDirty:
      return h->free_dirty_[kind_index(segment_of(pg))];
    default:
      return h->free_clean_[kind_index(segment_of(pg))];
  }
}

}  // namespace

void queue_move(Heap* h, Page* pg, PageQueue q, bool front) {
  if (pg->queue_ != PageQueue::kNone) list_remove(queue_of(h, pg), pg);
  pg->queue_ = q;
  if (q == PageQueue::kNone) return;
  PageList& l = queue_of(h, pg);
  if (front)
    list_push_front(l, pg);
  else
    list_push_back(l, pg);
}

// The one writer of cur_ and direct_. Bound: the direct slots of one class (at most 8).
void set_cur_page(Heap* h, unsigned cls, Page* pg) {
  h->cur_[cls] = pg;
  if (class_size(cls) > kDirectMax) return;
  size_t lo = cls == 0 ? 0 : class_size(cls - 1) / 16 + 1;
  for (size_t w = lo; w <= class_size(cls) / 16; ++w) h->direct_[w] = pg;
}

void set_cur(Heap* h, unsigned cls) {
  Page* head = h->avail_[cls].head;
  set_cur_page(h, cls, head != nullptr ? head : &g_empty_page);
}

// ---------------------------------------------------------------- collecting remote frees

namespace {

// Moves the chain starting at x onto free_, parking the first block whose link is not
// written yet. Returns how many blocks moved. Bound: the blocks of the page.
uint32_t take_chain(Page* pg, Block* x) {
  uint32_t n = 0;
  if (x != nullptr) pg->free_is_zero_ = false;  // freed blocks join free_
  while (x != nullptr) {
    // (P2) acquire: pairs with (P1) in push_remote; the link and the block's contents are
    // visible once the link is.
    uintptr_t link = x->next.load(std::memory_order_acquire) ^ pg->key_;
    if (link == kPendingLink) {
      x->parked_next = pg->parked_;
      pg->parked_ = x;
      break;
    }
    // A bad link (the block was written to after its free) ends the chain: the rest is
    // dropped (leaked: still counted in use, as they were while on this list), never
    // followed. x itself is linked below as usual.
    Block* nx = reinterpret_cast<Block*>(link);
    if (WFMM_UNLIKELY(!free_link_ok(pg, link))) {
      report_corruption("remote free list", reinterpret_cast<void*>(pg->start_), pg->block_size_,
                        x, link);
      nx = nullptr;
    }
    x->next.store(pg->encode(pg->free_), std::memory_order_relaxed);
    pg->free_ = x;
    ++n;
    x = nx;
  }
  return n;
}

}  // namespace

// Owner: remote frees -> free_, with one exchange. Bound: the blocks of the page (each
// block is visited at most once: it is in exactly one list).
void collect_remote(Page* pg) {
  uint32_t n = 0;
  Block* parked = pg->parked_;
  pg->parked_ = nullptr;
  while (parked != nullptr) {
    // Word 0 of a parked block is ours too, so it is checked like a link (its first word is
    // where a use after free writes first).
    Block* next_parked = parked->parked_next;
    if (WFMM_UNLIKELY(!free_link_ok(pg, reinterpret_cast<uintptr_t>(next_parked)))) {
      report_corruption("parked remote frees", reinterpret_cast<void*>(pg->start_),
                        pg->block_size_, parked, reinterpret_cast<uintptr_t>(next_parked));
      next_parked = nullptr;  // continue mode: the blocks parked behind it leak
    }
    n += take_chain(pg, parked);
    parked = next_parked;
  }
  if (pg->xthread_free_.load(std::memory_order_relaxed) != 0) {
    // (P3) acquire: pairs with (P0); blocks pushed before are visible with their pending mark.
    uintptr_t l = pg->xthread_free_.exchange(0, std::memory_order_acquire);
    n += take_chain(pg, reinterpret_cast<Block*>(l));
  }
  WFMM_ASSERT(pg->used_ >= n);
  pg->used_ -= n;
  pg->used_fold_ -= n;  // remote frees: counted by their freers, not derived at a fold
}

void heap_fold_counts(Heap* h) {
  // Bound: the heap's segments x kMaxPagesPerSegment.
  for (Segment* s = h->segments_; s != nullptr; s = s->next_) {
    for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
      Page* pg = &s->pages_[i];
      if (pg->block_size_ != 0) page_fold(h, pg);
    }
  }
}

// Owner: local_free_ -> free_ (when free_ is empty), then remote frees.
void page_collect(Page* pg) {
  if (pg->free_ == nullptr && pg->local_free_ != nullptr) {
    pg->free_ = pg->local_free_;
    pg->local_free_ = nullptr;
    pg->free_is_zero_ = false;
  }
  collect_remote(pg);
}

namespace {

// Carves kExtendBytes of untouched blocks onto free_, at least kMinExtend (blocks of 1 KiB
// and up: with one 4 KiB block per carve every malloc of a new page's blocks took the slow
// path; glibc-simple's user time -4%). Bound: the page's blocks (4096).
// Pre: free_ is empty (every caller extends only a page with no free block), so the list
// is exactly the carved blocks: zero but for their links when the area was zero (zero_).
void page_extend(Page* pg) {
  WFMM_ASSERT(pg->free_ == nullptr);
  pg->free_is_zero_ = pg->zero_;
  uint32_t count = uint32_t(kExtendBytes / pg->block_size_);
  if (count < kMinExtend) count = kMinExtend;
  // The part of the page an earlier use wrote (touched_, not purged since) is resident
  // already: carve all of it at once. In 4 KiB steps a batch of 1,000 256-byte blocks, whose
  // pages empty and are taken again every round, took 64 slow calls per round instead of 4
  // (bench_alloc's MallocFreeBatch/256: 9.5 -> 8.7 ns). Beyond touched_ carving stays
  // gradual: it would fault in memory the page may never use.
  uintptr_t carved = uintptr_t(pg->capacity_) * pg->block_size_;
  if (pg->touched_ > carved) {
    uint32_t resident = uint32_t((pg->touched_ - carved) / pg->block_size_);
    if (resident > count) count = resident;
  }
  if (count > pg->reserved_ - pg->capacity_) count = pg->reserved_ - pg->capacity_;
  uintptr_t base = pg->start_ + uintptr_t(pg->capacity_) * pg->block_size_;
  for (uint32_t i = count; i-- > 0;) {
    Block* b = reinterpret_cast<Block*>(base + uintptr_t(i) * pg->block_size_);
    b->next.store(pg->encode(pg->free_), std::memory_order_relaxed);
    pg->free_ = b;
  }
  pg->capacity_ += count;
  pg->xspan_.store(pg->capacity_ * pg->block_size_, std::memory_order_relaxed);
}

}  // namespace

// Reached once per list end of a page with one block in use. free_ is empty (the pop took
// its last block). Carved blocks read zero, but b may not, and calloc reads the flag after
// the pop: it is false either way.
WFMM_NOINLINE void* malloc_list_cycle(Heap* h, Page* pg, Block* b) {
  if (pg->capacity_ < pg->reserved_ && pg->capacity_ < kCycleBlocks &&
      uintptr_t(pg->capacity_) * pg->block_size_ < kCycleBytes) {
    page_extend(pg);
  } else {
    pg->free_ = pg->local_free_;
    pg->local_free_ = nullptr;
  }
  pg->free_is_zero_ = false;
  if (WFMM_UNLIKELY(pg->pops_ >= kFoldPops)) page_fold(h, pg);
  if (WFMM_UNLIKELY(g_track.load(std::memory_order_relaxed))) return malloc_birth(h, pg, b);
  return b;
}

namespace {

// ---------------------------------------------------------------- pages

void page_init(Heap* h, Page* pg, unsigned cls) {
  Segment* s = segment_of(pg);
  uint32_t bs = uint32_t(class_size(cls));
  size_t area = page_area(s, pg);
  uintptr_t page_base = reinterpret_cast<uintptr_t>(s) + (uintptr_t(pg->index_) << s->page_shift_);
  pg->start_ =
      page_base + ((s->kind_ == SegmentKind::kMedium && pg->index_ == 0) ? kHeaderSize : 0);
  pg->block_size_ = bs;
  pg->reserved_ = uint32_t(area / bs);
  pg->xspan_.store(0, std::memory_order_relaxed);
  pg->magic_ = ((uint64_t(1) << 40) / bs) + 1;
  pg->magic_low_ = pg->magic_ << 24;
  // The same class again on a page whose blocks are all still on its lists: take them as
  // they are (key, capacity, lists), with no carving. A batch of 1,000 256-byte blocks
  // emptied and re-carved four pages per round: page_extend was 13% of its profile.
  // Small blocks only (kKeptListsMax: config.h says why).
  bool keep = pg->lists_kept_ && pg->class_ == cls && !pg->purged_ && bs <= kKeptListsMax;
  pg->lists_kept_ = false;
  WFMM_ASSERT(pg->used_ == 0 && pg->pops_ == 0 && pg->used_fold_ == 0);  // folded when freed
  pg->used_ = 0;
  pg->pops_ = 0;
  pg->used_fold_ = 0;
  pg->class_ = uint8_t(cls);
  pg->free_is_zero_ = false;
  pg->parked_ = nullptr;
  if (keep) {
    pg->xspan_.store(pg->capacity_ * bs, std::memory_order_relaxed);
    if (pg->free_ == nullptr) {
      pg->free_ = pg->local_free_;
      pg->local_free_ = nullptr;
    }
  } else {
    pg->capacity_ = 0;
    pg->free_ = nullptr;
    pg->local_free_ = nullptr;
    // xorshift; the high bit makes key ^ 0 fall outside every page.
    h->rng_ ^= h->rng_ << 13;
    h->rng_ ^= h->rng_ >> 7;
    h->rng_ ^= h->rng_ << 17;
    pg->key_ = h->rng_ | (uintptr_t(1) << 63);
  }
  if (pg->purged_) {
    pg->purged_ = false;
    g_bytes_purged.fetch_sub(int64_t(area), std::memory_order_relaxed);
    note_committed_peak();
  }
  s->used_pages_++;
  // (P4) release: the descriptor is complete before this thread's frees can take the local
  // path; other threads only compare against their own heap (see heap_free).
  pg->xheap_.store(h, std::memory_order_release);
}

}  // namespace

void segment_link(Heap* h, Segment* s) {
  s->prev_ = nullptr;
  s->next_ = h->segments_;
  if (h->segments_ != nullptr) h->segments_->prev_ = s;
  h->segments_ = s;
}

namespace {

// An empty page for a block of class cls: own free pages, then adoption, then a new
// segment. Bound: one adoption round (kAdoptLimit segments) and one segment_alloc.
Page* page_alloc(Heap* h, unsigned cls, bool* adopted) {
  SegmentKind kind = class_size(cls) <= kSmallMax ? SegmentKind::kSmall : SegmentKind::kMedium;
  unsigned k = kind == SegmentKind::kSmall ? 0 : 1;
  // Hottest dirty page first (no refault), else a purged one.
  Page* pg = h->free_dirty_[k].tail != nullptr ? h->free_dirty_[k].tail : h->free_clean_[k].head;
  if (pg == nullptr && !*adopted) {
    *adopted = true;
    if (try_adopt(h, cls, k)) return nullptr;  // the caller rescans: adoption brought pages
  }
  if (pg == nullptr) {
    Segment* s = segment_alloc(kind, kSegmentSize);
    if (s == nullptr) return nullptr;
    s->xowner_.store(h, std::memory_order_relaxed);
    segment_link(h, s);
    for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
      Page* p = &s->pages_[i];
      p->queue_ = PageQueue::kNone;
      queue_move(h, p, PageQueue::kFreeClean, false);
    }
    pg = h->free_clean_[k].head;
  } else if (pg->purged_) {
    purge_regret(pg->freed_at_ms_, os::now_ms());  // faulted in again: too early a purge?
  }
  queue_move(h, pg, PageQueue::kNone, false);
  page_init(h, pg, cls);
  return pg;
}

// A page of class cls with a free block on free_, made cur_. Null on OOM.
// Bound: kPageScanLimit avail pages + kFullScanLimit full pages + page_alloc, at most twice
// (once more after an adoption).
Page* find_page(Heap* h, unsigned cls) {
  // Purging needs the clock: look every 64th call (and whenever a new page is needed).
  if ((++h->slow_calls_ & 63) == 0) housekeeping(h);
  bool adopted = false;
  for (int round = 0; round < 2; ++round) {
    Page* pg = h->avail_[cls].head;
    for (unsigned i = 0; pg != nullptr && i < kPageScanLimit; ++i) {
      page_collect(pg);
      if (pg->free_ == nullptr && pg->capacity_ < pg->reserved_) page_extend(pg);
      Page* next = pg->next_;
      if (pg->free_ != nullptr) {
        queue_move(h, pg, PageQueue::kAvail, true);
        set_cur_page(h, cls, pg);
        return pg;
      }
      queue_move(h, pg, PageQueue::kFull, false);
      pg = next;
    }
    set_cur(h, cls);  // the old current page may have just moved to full_
    // A few full pages per call; before a fresh page is carved (the other way out of here),
    // kFullScanDeep of them: remote frees into full pages are otherwise found only 4 pages
    // per call, and a heap with hundreds of full pages carved fresh ones meanwhile.
    bool deep = h->avail_[cls].head == nullptr;
    unsigned full_scan = deep ? kFullScanDeep >> h->full_scan_shift_[cls] : kFullScanLimit;
    Page* first_rotated = nullptr;
    for (unsigned i = 0; i < full_scan; ++i) {
      Page* f = h->full_[cls].head;
      // A list shorter than the scan: every page was looked at once (a page goes to the back
      // only after its look, so meeting the first one again ends the round). Without this a
      // class with 4 full pages looked at each of them 16 times per call.
      if (f == nullptr || f == first_rotated) break;
      if (f->xthread_free_.load(std::memory_order_relaxed) != 0 || f->parked_ != nullptr ||
          f->local_free_ != nullptr) {
        page_collect(f);
        if (f->free_ != nullptr) {
          h->full_scan_shift_[cls] = 0;  // full pages do get frees: look deep again
          queue_move(h, f, PageQueue::kAvail, true);
          set_cur_page(h, cls, f);
          return f;
        }
      }
      queue_move(h, f, PageQueue::kFull, false);  // rotate to the back
      if (first_rotated == nullptr) first_rotated = f;
    }
    if (deep && h->full_scan_shift_[cls] < kFullScanMaxShift) ++h->full_scan_shift_[cls];
    if (h->avail_[cls].head == nullptr || round > 0) housekeeping(h);
    pg = page_alloc(h, cls, &adopted);
    if (pg != nullptr) {
      if (pg->free_ == nullptr) page_extend(pg);  // (a page taken back whole has its blocks)
      queue_move(h, pg, PageQueue::kAvail, true);
      set_cur_page(h, cls, pg);
      return pg;
    }
    if (!adopted) return nullptr;  // out of memory
  }
  return nullptr;
}

}  // namespace

void* malloc_slow(size_t n) {
  Heap* h = t_heap;
  if (WFMM_UNLIKELY(h == &g_empty_heap)) {
    h = thread_init();
    if (h == nullptr) return nullptr;
  }
  if (WFMM_UNLIKELY(!h->key_set_)) try_set_key(h);
  if (n > kMediumMax) return large_alloc(n, 0);
  unsigned cls = size_class(n);
  Page* pg = h->cur_[cls];
  if (pg->free_ == nullptr && pg != &g_empty_page) page_fold(h, pg);  // its list ran out
  if (pg->local_free_ != nullptr && pg->free_ == nullptr) {
    // The common refill: this thread's own frees, no atomics, no scan.
    pg->free_ = pg->local_free_;
    pg->local_free_ = nullptr;
    pg->free_is_zero_ = false;
  } else if (pg->free_ == nullptr) {
    pg = find_page(h, cls);
    if (pg == nullptr) return nullptr;
  }
  Block* b = pg->free_;
  pg->free_ = free_next(pg, b, "free list");
  b->next.store(0, std::memory_order_relaxed);
  page_count_malloc(pg);
  birth_note(h, pg, b);
  return b;
}

// The end of the malloc fast path's pop of b when birth eras are being recorded and the
// link passed its check (not repeated here: 47 -> 27 instructions per tracked malloc,
// cachegrind over the xenium hash map).
WFMM_NOINLINE void* malloc_birth(Heap* h, Page* pg, Block* b) {
  birth_note_tracked(h, pg, b);
  return b;
}

// The end of the malloc fast path's pop of b when the link it moved to free_ is neither a
// block start of the page nor null. A bad link is a freed block written to: report; in
// continue mode drop the rest of the list (b, already counted out, is handed out).
WFMM_NOINLINE void* malloc_link_slow(Heap* h, Page* pg, Block* b) {
  uintptr_t link = reinterpret_cast<uintptr_t>(pg->free_);
  if (WFMM_UNLIKELY(!free_link_ok(pg, link))) {
    report_corruption("free list", reinterpret_cast<void*>(pg->start_), pg->block_size_, b, link);
    pg->free_ = nullptr;
    pg->free_is_zero_ = false;  // b's page was written to after a free: zero it on calloc
    page_recount_after_cut(pg);
  }
  birth_note(h, pg, b);
  return b;
}

}  // namespace wfmm
