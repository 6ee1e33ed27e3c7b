// Heap slow paths: finding or making a page for a size class, collecting remote frees,
// freeing empty pages (and purging them after the delay), double-free confirmation, and the
// thread lifecycle (heap creation, abandonment at exit, adoption by live threads).
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

#include <pthread.h>
#include <string.h>

#include <new>

#include "large.h"
#include "options.h"
#include "os/os.h"
#include "segment.h"

namespace wfmm {

constinit Page g_empty_page;
constinit Heap g_empty_heap(&g_empty_page);
__thread Heap* t_heap __attribute__((tls_model("initial-exec"))) = &g_empty_heap;

namespace {

pthread_key_t g_key;
std::atomic<int> g_init_state{0};  // 0 not started, 1 running, 2 done
HandoffStack<Heap> g_heap_pool;
std::atomic<Heap*> g_all_heaps{nullptr};
std::atomic<uint64_t> g_heap_ids{0};

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

Segment* segment_of(Page* pg) {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(pg) & ~kSegmentMask);
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

// Carves up to kExtendBytes of untouched blocks onto free_. Bound: 256 blocks.
// Pre: free_ is empty (every caller extends only a page with no free block), so the list
// is exactly the carved blocks: zero but for their links when the area was zero (zero_).
void page_extend(Page* pg) {
  WFMM_ASSERT(pg->free_ == nullptr);
  pg->free_is_zero_ = pg->zero_;
  uint32_t count = uint32_t(kExtendBytes / pg->block_size_);
  if (count == 0) count = 1;
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
  pg->capacity_ = 0;
  pg->used_ = 0;
  pg->class_ = uint8_t(cls);
  pg->free_ = nullptr;
  pg->free_is_zero_ = false;
  pg->local_free_ = nullptr;
  pg->parked_ = nullptr;
  // xorshift; the high bit makes key ^ 0 fall outside every page.
  h->rng_ ^= h->rng_ << 13;
  h->rng_ ^= h->rng_ >> 7;
  h->rng_ ^= h->rng_ << 17;
  pg->key_ = h->rng_ | (uintptr_t(1) << 63);
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

void page_purge(Segment* s, Page* pg) {
  size_t area = page_area(s, pg);
  uintptr_t page_base = reinterpret_cast<uintptr_t>(s) + (uintptr_t(pg->index_) << s->page_shift_);
  uintptr_t from =
      page_base + ((s->kind_ == SegmentKind::kMedium && pg->index_ == 0) ? kHeaderSize : 0);
  if (os::purge(reinterpret_cast<void*>(from), area)) {
    pg->purged_ = true;
    pg->zero_ = true;  // private anonymous memory reads zero after MADV_DONTNEED
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
}

void segment_link(Heap* h, Segment* s) {
  s->prev_ = nullptr;
  s->next_ = h->segments_;
  if (h->segments_ != nullptr) h->segments_->prev_ = s;
  h->segments_ = s;
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
  pg->xheap_.store(nullptr, std::memory_order_relaxed);
  pg->block_size_ = 0;
  pg->xspan_.store(0, std::memory_order_relaxed);
  pg->free_ = pg->local_free_ = nullptr;
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

// Purges empty pages whose delay has passed; releases segments left with no used page.
// Bound: kPurgeLimit pages.
void housekeeping(Heap* h) {
  if (h->large_stash_ != nullptr &&
      os::now_ms() - h->large_stash_ms_ >= uint64_t(option(Opt::kPurgeDelayMs))) {
    segment_release(h->large_stash_);
    h->large_stash_ = nullptr;
  }
  if (h->free_dirty_[0].head == nullptr && h->free_dirty_[1].head == nullptr) {
    segment_cache_expire(false);
    return;
  }
  uint64_t now = os::now_ms();
  uint64_t delay = uint64_t(option(Opt::kPurgeDelayMs));
  unsigned done = 0;
  for (unsigned k = 0; k < 2; ++k) {
    while (done < kPurgeLimit) {
      Page* pg = h->free_dirty_[k].head;
      if (pg == nullptr || now - pg->freed_at_ms_ < delay) break;
      Segment* s = segment_of(pg);
      ++done;
      if (s->used_pages_ == 0) {
        segment_retire_if_empty(h, s);  // the cache purges or unmaps it
        continue;
      }
      page_purge(s, pg);
      queue_move(h, pg, PageQueue::kFreeClean, false);
    }
  }
  segment_cache_expire(false);
}

// ---------------------------------------------------------------- adoption

// Takes over an abandoned segment: every page gets this heap as owner and goes to the
// queue its state calls for. Bound: 64 pages, each collected once (bounded by its blocks).
// The purge delay of its free dirty pages starts again here: they sat unowned (nobody
// purges an abandoned segment) and, counted from the abandonment, were purged by the
// adopter's first housekeeping, just as it needed pages and faulted them back in
// (thread-churn: 5.5k madvise calls, most of its page faults).
void adopt(Heap* h, Segment* s) {
  s->xowner_.store(h, std::memory_order_relaxed);
  segment_link(h, s);
  uint64_t now = os::now_ms();
  for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
    Page* pg = &s->pages_[i];
    pg->queue_ = PageQueue::kNone;
    pg->next_ = pg->prev_ = nullptr;
    if (pg->block_size_ == 0) {
      pg->freed_at_ms_ = now;
      queue_move(h, pg, pg->purged_ ? PageQueue::kFreeClean : PageQueue::kFreeDirty, false);
      continue;
    }
    pg->xheap_.store(h, std::memory_order_release);  // (P4)
    page_collect(pg);
    if (pg->used_ == 0) {
      page_free(h, pg, false);
      continue;
    }
    bool has_room = pg->free_ != nullptr || pg->capacity_ < pg->reserved_;
    queue_move(h, pg, has_room ? PageQueue::kAvail : PageQueue::kFull, false);
    if (has_room && h->cur_[pg->class_] == &g_empty_page) set_cur(h, pg->class_);
  }
  if (s->used_pages_ == 0) segment_retire_if_empty(h, s);
}

// Adopts abandoned segments one at a time until the heap has a page for class cls (a free
// page of its kind k, or a page of cls with room), at most kAdoptLimit. True if any came.
// Only what is needed: a thread that took four segments for one page spread its blocks
// (some long-lived) over all four, so few of them ever emptied, and while live threads held
// them the abandoned lists ran dry and fresh segments were mapped: 8 threads replaced
// continuously held 170-280 MB for 0.3 MB of live blocks.
bool try_adopt(Heap* h, unsigned cls, unsigned k) {
  bool any = false;
  // Bound: kAdoptLimit segments, each adopted in 64 page steps.
  for (unsigned i = 0; i < kAdoptLimit; ++i) {
    Segment* s = segment_take_abandoned(unsigned(h->id_) + i);
    if (s == nullptr) break;
    adopt(h, s);
    any = true;
    if (h->free_dirty_[k].head != nullptr || h->free_clean_[k].head != nullptr ||
        h->avail_[cls].head != nullptr)
      break;
  }
  return any;
}

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
    for (unsigned i = 0; i < kFullScanLimit; ++i) {
      Page* f = h->full_[cls].head;
      if (f == nullptr) break;
      if (f->xthread_free_.load(std::memory_order_relaxed) != 0 || f->parked_ != nullptr ||
          f->local_free_ != nullptr) {
        page_collect(f);
        if (f->free_ != nullptr) {
          queue_move(h, f, PageQueue::kAvail, true);
          set_cur_page(h, cls, f);
          return f;
        }
      }
      queue_move(h, f, PageQueue::kFull, false);  // rotate to the back
    }
    if (h->avail_[cls].head == nullptr || round > 0) housekeeping(h);
    pg = page_alloc(h, cls, &adopted);
    if (pg != nullptr) {
      page_extend(pg);
      queue_move(h, pg, PageQueue::kAvail, true);
      set_cur_page(h, cls, pg);
      return pg;
    }
    if (!adopted) return nullptr;  // out of memory
  }
  return nullptr;
}

// ---------------------------------------------------------------- thread lifecycle

Heap* heap_new() {
  Heap* h = nullptr;
  if (g_heap_pool.try_begin()) {
    g_heap_pool.drain(kDrainBudget);
    h = g_heap_pool.owned();
    if (h != nullptr) {
      g_heap_pool.owned() = h->handoff_link;
      --g_heap_pool.owned_count();
    }
    g_heap_pool.end();
  }
  if (h != nullptr) return h;
  size_t size = (sizeof(Heap) + os::kPageSize - 1) & ~(os::kPageSize - 1);
  void* mem = os::map_aligned(size, os::kPageSize);
  if (mem == nullptr) return nullptr;
  g_bytes_mapped.fetch_add(int64_t(size), std::memory_order_relaxed);
  note_committed_peak();
  h = new (mem) Heap(&g_empty_page);
  h->id_ = g_heap_ids.fetch_add(1, std::memory_order_relaxed) + 1;
  // Registry of all heaps (never shrinks; heaps are recycled): wait-free push as in
  // HandoffStack; readers (statistics) wait out a pending link.
  h->xall_next_.store(reinterpret_cast<Heap*>(uintptr_t(1)), std::memory_order_relaxed);
  Heap* prev = g_all_heaps.exchange(h, std::memory_order_acq_rel);
  h->xall_next_.store(prev, std::memory_order_release);
  return h;
}

void thread_done(void* arg);

// Registers the thread-exit destructor; retried from the slow path until process init has
// created the key (a thread that starts while another finishes process init).
void try_set_key(Heap* h) {
  if (g_init_state.load(std::memory_order_acquire) != 2) return;
  h->key_set_ = pthread_setspecific(g_key, h) == 0;
}

Heap* thread_init() {
  process_init();
  Heap* h = heap_new();
  if (h == nullptr) return nullptr;
  h->rng_ = os::random64() | 1;
  h->xlive_.store(true, std::memory_order_relaxed);
  h->key_set_ = false;
  t_heap = h;
  try_set_key(h);
  // A recycled heap carries its last thread's implicit-region era: this thread has none yet.
  h->hook_era_ = 0;
  // Deferred free: the thread's first allocator call, whatever it is, opens its implicit
  // region (claims its reclamation record), so a thread that only ever mallocs is known to
  // every freer and holds what it reads from here on.
  if (auto hook = g_alloc_hook.load(std::memory_order_acquire)) h->hook_era_ = hook();
  return h;
}

// Thread exit: every page is collected; empty ones are freed; segments with no used page
// go to the cache; the rest are abandoned for another thread to adopt. Bound: segments
// owned x 64 pages, each collected once.
void heap_abandon(Heap* h) {
  if (h->large_stash_ != nullptr) {
    segment_release(h->large_stash_);
    h->large_stash_ = nullptr;
  }
  Segment* s = h->segments_;
  while (s != nullptr) {
    Segment* next = s->next_;
    for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
      Page* pg = &s->pages_[i];
      if (pg->block_size_ != 0) {
        page_collect(pg);
        if (pg->used_ == 0) page_reset_free(s, pg);
      }
    }
    for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
      Page* pg = &s->pages_[i];
      queue_move(h, pg, PageQueue::kNone, false);
      pg->xheap_.store(nullptr, std::memory_order_release);
    }
    segment_unlink(h, s);
    if (s->used_pages_ == 0)
      segment_release(s);
    else
      segment_abandon(s);
    s = next;
  }
  for (unsigned c = 0; c < kNumClasses; ++c) {
    set_cur_page(h, c, &g_empty_page);
    h->avail_[c] = PageList{};
    h->full_[c] = PageList{};
  }
  for (unsigned k = 0; k < 2; ++k) h->free_dirty_[k] = h->free_clean_[k] = PageList{};
}

void thread_done(void* arg) {
  Heap* h = static_cast<Heap*>(arg);
  if (h == nullptr || h == &g_empty_heap) return;
  heap_abandon(h);
  if (t_heap == h) t_heap = &g_empty_heap;
  h->xlive_.store(false, std::memory_order_relaxed);
  g_heap_pool.push(h);  // (H1): the abandonment above happens-before the next owner
}

void fork_prepare() {
  if (auto hook = g_fork_prepare_hook.load(std::memory_order_acquire)) hook();
  segment_fork_prepare();
  g_heap_pool.acquire_for_fork();
}

void fork_parent() {
  g_heap_pool.end();
  segment_fork_release();
  if (auto hook = g_fork_parent_hook.load(std::memory_order_acquire)) hook();
}

__attribute__((constructor)) void wfmm_early_init() { process_init(); }

}  // namespace

void process_init() {
  int st = g_init_state.load(std::memory_order_acquire);
  if (WFMM_LIKELY(st == 2)) {
    options_load();  // no-op once loaded; retries if environ was not ready before
    return;
  }
  int expected = 0;
  if (!g_init_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) return;
  options_load();
  pthread_key_create(&g_key, &thread_done);
  pthread_atfork(&fork_prepare, &fork_parent, &fork_child_reset);
  g_init_state.store(2, std::memory_order_release);
}

void fork_child_reset() {
  g_heap_pool.end();
  segment_fork_release();
  // Only the forking thread lives on: the other heaps' threads are gone. Their segments stay
  // as they are (a remote free into them still works; their memory is not reused).
  for (Heap* h = g_all_heaps.load(std::memory_order_acquire);
       h != nullptr && reinterpret_cast<uintptr_t>(h) != 1;
       h = h->xall_next_.load(std::memory_order_acquire)) {
    if (h != t_heap) h->xlive_.store(false, std::memory_order_relaxed);
  }
  if (auto hook = g_fork_child_hook.load(std::memory_order_acquire)) hook();
}

void heap_thread_start() {
  if (t_heap == &g_empty_heap) thread_init();
}

Heap* heap_registry_first() { return g_all_heaps.load(std::memory_order_acquire); }

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
  pg->used_++;
  stat_add(h->stats_.malloc_class[cls], 1);
  birth_note(h, pg, b);
  return b;
}

// Continue mode, after a cut in free_ or local_free_: the blocks behind the cut are
// neither free nor live any more, so count them as in use for good (leaked), which keeps
// the identity used_ = capacity_ - |free_| - |local_free_| (types.h) and keeps the page
// from ever looking empty while a stray pointer may still write into it. Walks both lists,
// cutting any other bad link it meets the same way. Bound: reserved_ steps per list.
static void page_recount_after_cut(Page* pg) {
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
  pg->used_ = nfree <= pg->capacity_ ? pg->capacity_ - nfree : 0;
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

// The end of the malloc fast path's pop of b when the link it moved to free_ is neither a
// block start of the page nor null, or when birth eras are being recorded. A bad link is a
// freed block written to: report; in continue mode drop the rest of the list (b, already
// counted out, is handed out).
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
  b->next.store(pg->encode(pg->local_free_), std::memory_order_relaxed);
  pg->local_free_ = b;
  stat_add(h->stats_.free_class[pg->class_], 1);
  if (--pg->used_ == 0) page_became_empty(h, pg);
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
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint16_t e = segment_map_entry(a);
  if (e == 0) return report_unmapped(who, "double free of", p);
  if (WFMM_UNLIKELY(block_retired(p))) return report_error(who, kFreeOfRetired, p);
  Segment* s = segment_containing(a);
  if (s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge)
    return large_free(s, p, who);
  Page* pg = s->page_of(a);
  if (!pg->is_block_start(a)) {
    return report_error(who,
                        pg->block_size_ == 0 ? "invalid pointer (no block there)"
                                             : "invalid pointer (inside a block, not its start)",
                        p);
  }
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

bool collect(bool force) {
  Heap* h = t_heap;
  bool released = false;
  if (force && h != &g_empty_heap) {
    // An abandoned segment whose blocks were all freed since is given back only by an
    // adopter, and adopters take one at a time, only when they need a page: a forced collect
    // adopts them now (those still holding blocks stay with this thread, as any adoption).
    // Bound: kCollectAdopt segments x 64 pages (not a malloc/free path).
    for (unsigned i = 0; i < kCollectAdopt; ++i) {
      Segment* s = segment_take_abandoned(unsigned(h->id_) + i);
      if (s == nullptr) break;
      adopt(h, s);
      released = true;
    }
  }
  if (h != &g_empty_heap && h->large_stash_ != nullptr) {
    segment_release(h->large_stash_);
    h->large_stash_ = nullptr;
    released = true;
  }
  if (h != &g_empty_heap) {
    // Bound: the pages of this heap, each collected and possibly purged once.
    for (Segment* s = h->segments_; s != nullptr;) {
      Segment* next = s->next_;
      for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
        Page* pg = &s->pages_[i];
        if (pg->block_size_ != 0) {
          page_collect(pg);
          if (pg->used_ == 0 && (force || h->cur_[pg->class_] != pg)) page_free(h, pg, false);
        }
      }
      for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
        Page* pg = &s->pages_[i];
        if (pg->queue_ == PageQueue::kFreeDirty &&
            (force || os::now_ms() - pg->freed_at_ms_ >= uint64_t(option(Opt::kPurgeDelayMs)))) {
          page_purge(s, pg);
          queue_move(h, pg, PageQueue::kFreeClean, false);
          released = true;
        }
      }
      if (s->used_pages_ == 0) {
        segment_retire_if_empty(h, s);
        released = true;
      }
      s = next;
    }
  }
  released |= segment_cache_expire(force);
  return released;
}

}  // namespace wfmm

namespace wfmm {

// Checks the calling thread's heap against the invariants in types.h. Returns null if all
// hold, else a description of the first violation. For tests; walks everything.
const char* heap_validate() {
  Heap* h = t_heap;
  if (h == &g_empty_heap) return nullptr;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    Page* cur = h->cur_[c];
    if (cur == nullptr) return "cur_ is null";
    if (cur != &g_empty_page && cur != h->avail_[c].head) return "cur_ is not the head of avail_";
    if (cur == &g_empty_page && h->avail_[c].head != nullptr)
      return "avail_ pages but cur_ is empty";
  }
  for (size_t w = 0; w <= kDirectMax / 16; ++w) {
    if (h->direct_[w] != h->cur_[kDirectClass[w]]) return "direct_ disagrees with cur_";
  }
  for (Segment* s = h->segments_; s != nullptr; s = s->next_) {
    if (s->xowner_.load(std::memory_order_relaxed) != h) return "segment owned by another heap";
    if (s->cookie_ != (kSegmentCookie ^ reinterpret_cast<uintptr_t>(s))) return "segment cookie";
    unsigned used_pages = 0;
    for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
      Page* pg = &s->pages_[i];
      if (pg->block_size_ == 0) {
        if (pg->queue_ != PageQueue::kFreeDirty && pg->queue_ != PageQueue::kFreeClean)
          return "free page not queued as free";
        continue;
      }
      ++used_pages;
      if (pg->xheap_.load(std::memory_order_relaxed) != h) return "page owner";
      if (pg->queue_ != PageQueue::kAvail && pg->queue_ != PageQueue::kFull)
        return "used page queue";
      if (pg->block_size_ != class_size(pg->class_)) return "block size / class";
      if (pg->capacity_ > pg->reserved_) return "capacity > reserved";
      uint32_t nfree = 0;
      for (Block* l : {pg->free_, pg->local_free_}) {
        // Bound: reserved_ + 1 steps, so a cycle is reported, not followed forever.
        for (; l != nullptr; l = pg->decode(l->next.load(std::memory_order_relaxed))) {
          uintptr_t a = reinterpret_cast<uintptr_t>(l);
          if (!pg->is_block_start(a)) return "free-list entry is not a block of its page";
          if (a >= pg->start_ + uintptr_t(pg->capacity_) * pg->block_size_)
            return "free-list entry beyond capacity";
          if (++nfree > pg->reserved_) return "free list longer than the page (cycle?)";
        }
      }
      if (pg->used_ + nfree != pg->capacity_) return "used + free + local_free != capacity";
    }
    if (used_pages != s->used_pages_) return "segment used page count";
  }
  return nullptr;
}

}  // namespace wfmm
