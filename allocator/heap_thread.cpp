// Heap thread lifecycle: heap creation and recycling, abandonment at thread exit, adoption of
// abandoned segments by live threads, process init and fork hooks, and the periodic and forced
// purges (housekeeping, collect). Shares the page queues of heap.cpp through heap_internal.h.
#include <pthread.h>
#include <sched.h>

#include <new>

#include "heap.h"
#include "heap_internal.h"
#include "large.h"
#include "options.h"
#include "os/os.h"
#include "segment.h"

namespace wfmm {

namespace {

pthread_key_t g_key;
std::atomic<int> g_init_state{0};  // 0 not started, 1 running, 2 done
HandoffStack<Heap> g_heap_pool;  // heaps of exited threads that own no segment
// Heaps of exited threads that kept their segments (heap_park), roughly oldest first: the
// front is the one to take, and the one to strip once the purge delay has passed.
HandoffStack<Heap, true> g_parked_pool;
// Heaps in g_parked_pool (raised before the push, lowered after a take or strip). A bound,
// not an exact count: a fork child can inherit one too many (a thread of the parent was
// between the two steps), which only lowers the bound by one.
std::atomic<int> g_parked_count{0};
// Threads with a heap now (thread_init .. thread_done; a fork child: the forking thread).
std::atomic<int> g_live_heaps{0};
// The most threads with a heap at once lately, and when that was last seen (ms): exits park
// up to this many heaps, so a program whose threads all end together (a generation of
// workers joined, the next one started) hands every heap warm to the next generation; the
// peak falls back to the running threads once it is a purge delay old. A heuristic: racing
// updates may lose one (relaxed stores, no loop).
std::atomic<int> g_live_peak{0};
std::atomic<uint64_t> g_live_peak_ms{0};
std::atomic<Heap*> g_all_heaps{nullptr};
std::atomic<uint64_t> g_heap_ids{0};

void heap_abandon(Heap* h);
bool strip_parked(Heap* self, bool force);

// Collects every used page of s (its heap's, h) and frees those left with no live block;
// keep_cur spares the pages the fast path pops from. Bound: 64 pages, each collected once.
void free_empty_pages(Heap* h, Segment* s, bool keep_cur) {
  for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
    Page* pg = &s->pages_[i];
    if (pg->block_size_ != 0) {
      page_collect(pg);
      if (pg->used_ == 0 && (!keep_cur || h->cur_[pg->class_] != pg)) page_free(h, pg, false);
    }
  }
}

// Gives the heap's stashed large segment back (to the cache, or the OS). True if it had one.
bool release_large_stash(Heap* h) {
  if (h->large_stash_ == nullptr) return false;
  segment_release(h->large_stash_);
  h->large_stash_ = nullptr;
  return true;
}

}  // namespace

// Purges empty pages whose delay has passed; releases segments left with no used page.
// Bound: kPurgeLimit pages.
void housekeeping(Heap* h) {
  // Read on every call (one coarse clock read per 64 slow calls), not only when something is
  // to be timed: purge_delay_ms must see a new purge_delay_ms setting soon after it is made,
  // to start the stretch's one-delay grace then (read lazily, the grace started at the
  // first dirty page and a regret right after the setting went unjudged).
  uint64_t now = os::now_ms();
  uint64_t delay = purge_delay_ms(now);
  if (h->large_stash_ != nullptr && now - h->large_stash_ms_ >= delay) release_large_stash(h);
  if (h->free_dirty_[0].head == nullptr && h->free_dirty_[1].head == nullptr) {
    segment_cache_expire(false);
    return;
  }
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
      if (!pg->purged_) pg->freed_at_ms_ = now;  // (a purged page keeps its purge's time)
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
  bool stripped = false;
  // Bound: kAdoptLimit segments, each adopted in 64 page steps, and one strip_parked.
  for (unsigned i = 0; i < kAdoptLimit; ++i) {
    Segment* s = segment_take_abandoned(unsigned(h->id_) + i);
    if (s == nullptr && !stripped && g_parked_pool.has_work()) {
      // Nothing abandoned: segments of heaps parked longer than the purge delay are.
      stripped = true;
      if (strip_parked(h, false)) s = segment_take_abandoned(unsigned(h->id_) + i);
    }
    if (s == nullptr) break;
    adopt(h, s);
    any = true;
    if (h->free_dirty_[k].head != nullptr || h->free_clean_[k].head != nullptr ||
        h->avail_[cls].head != nullptr)
      break;
  }
  return any;
}

// ---------------------------------------------------------------- thread lifecycle

namespace {

// Abandons the segments of parked heaps nobody took (heap_park), so a heap no thread takes
// again does not keep memory from the threads that run: the oldest, if it has been parked
// longer than the purge delay, if more heaps are parked than threads run, or if `self`
// started on an empty heap lately (its credit; for a thread that needs a page and finds
// nothing abandoned), or every one (a forced collect). Their segments go to the abandoned
// lists, the heaps to the pool of empty ones. Not patient unless forced: a busy flag means
// another thread is taking a parked heap or stripping one. Bound: one drain (kDrainBudget)
// and one heap abandoned (its segments x 64 pages); forced (not a malloc/free path): every
// parked heap.
bool strip_parked(Heap* self, bool force) {
  if (force) {
    // Bound: the holder's remaining steps (a drain and at most one strip; it runs, we yield).
    while (!g_parked_pool.try_begin()) sched_yield();
  } else if (!g_parked_pool.try_begin()) {
    return false;
  }
  g_parked_pool.drain(force ? ~0u : kDrainBudget);
  uint64_t now = os::now_ms();
  uint64_t delay = uint64_t(option(Opt::kPurgeDelayMs));
  bool any = false;
  // More parked heaps than threads running: the excess is stripped without waiting (the
  // recent peak let them park; a thread that needs pages now should not map fresh ones).
  bool excess = g_parked_count.load(std::memory_order_relaxed) >
                g_live_heaps.load(std::memory_order_relaxed);
  // A thread that started on an empty heap while heaps were parked (their pool's flag was
  // busy), or just before a generation of threads exited and parked, strips one of them
  // for its pages: the counts alone let 8 parked heaps keep their segments while 8 new
  // threads mapped fresh ones (ReclaimThreadChurn.MappedMemoryLevelsOff, 57.7 -> 90.3 MB).
  bool credit = self != nullptr && now < self->strip_credit_until_ms_;
  // Bound: one heap unless forced; forced, the parked heaps drained.
  while (Heap* x = g_parked_pool.owned()) {
    if (!force && !excess && now - x->parked_ms_ < delay) {
      if (!credit) break;
      self->strip_credit_until_ms_ = 0;  // spent on this heap
    }
    g_parked_pool.take_front();
    g_parked_count.fetch_sub(1, std::memory_order_relaxed);
    // Not forced: the flag goes back before the strip (the heap is ours alone now). Held
    // through it, threads that started together missed the flag while one stripped and
    // mapped fresh segments (Page.ThreadsStartedBeforeOthersExitedStripTheParkedHeapsForPages:
    // 1 run in 3).
    if (!force) g_parked_pool.end();
    heap_abandon(x);
    x->parked_ms_ = 0;
    g_heap_pool.push(x);
    if (!force) return true;
    any = true;
  }
  g_parked_pool.end();
  return any;
}

// The end of a new thread's credit to strip one parked heap (Heap::strip_credit_until_ms_):
// a purge delay from now, after which parked heaps are stripped by age anyway.
uint64_t strip_credit_end() {
  uint64_t delay = uint64_t(option(Opt::kPurgeDelayMs));
  return delay != 0 ? os::now_ms() + delay : 0;
}

Heap* heap_new() {
  Heap* h = nullptr;
  // A parked heap first: its pages are warm. Patient: a miss takes an empty heap or makes
  // one, and the parked heap it would have taken keeps its segments until it is stripped
  // (thread-churn: 4 threads starting together missed whenever the flag was busy, and peak
  // RSS grew 4-6x). Bound: kCacheTries tries and one drain per pool.
  if (g_parked_pool.has_work() && g_parked_pool.try_begin_patient(kCacheTries)) {
    g_parked_pool.drain(kDrainBudget);
    h = g_parked_pool.take_front();
    g_parked_pool.end();
    if (h != nullptr) g_parked_count.fetch_sub(1, std::memory_order_relaxed);
  }
  if (h == nullptr && g_heap_pool.try_begin_patient(kCacheTries)) {
    g_heap_pool.drain(kDrainBudget);
    h = g_heap_pool.take_front();
    g_heap_pool.end();
  }
  if (h != nullptr) {
    if (h->parked_ms_ != 0) {
      // Its free dirty pages sat unpurged while it was parked (nobody runs a parked heap's
      // housekeeping): their delay starts again now, as at adoption, so the first
      // housekeeping does not purge them just as this thread needs pages (test-stress-t16:
      // 58 purges per run before, none after; its time did not move measurably on this VM,
      // whose faults are cheap). Bound: the heap's free pages.
      uint64_t now = os::now_ms();
      for (unsigned k = 0; k < 2; ++k)
        for (Page* pg = h->free_dirty_[k].head; pg != nullptr; pg = pg->next_)
          pg->freed_at_ms_ = now;
    }
    // A heap that comes from the parked pool is the warm one; an empty one may strip a
    // parked heap for pages (strip_parked) for one purge delay.
    h->strip_credit_until_ms_ = h->parked_ms_ != 0 ? 0 : strip_credit_end();
    h->parked_ms_ = 0;
    return h;
  }
  size_t size = (sizeof(Heap) + os::kPageSize - 1) & ~(os::kPageSize - 1);
  void* mem = os::map_aligned(size, os::kPageSize);
  if (mem == nullptr) return nullptr;
  g_bytes_mapped.fetch_add(int64_t(size), std::memory_order_relaxed);
  note_committed_peak();
  h = new (mem) Heap(&g_empty_page);
  h->id_ = g_heap_ids.fetch_add(1, std::memory_order_relaxed) + 1;
  h->strip_credit_until_ms_ = strip_credit_end();
  // Registry of all heaps (never shrinks; heaps are recycled): wait-free push as in
  // HandoffStack; readers (statistics) wait out a pending link.
  h->xall_next_.store(reinterpret_cast<Heap*>(uintptr_t(1)), std::memory_order_relaxed);
  Heap* prev = g_all_heaps.exchange(h, std::memory_order_acq_rel);
  h->xall_next_.store(prev, std::memory_order_release);
  return h;
}

void thread_done(void* arg);

}  // namespace

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
  int live = g_live_heaps.fetch_add(1, std::memory_order_relaxed) + 1;
  if (live >= g_live_peak.load(std::memory_order_relaxed)) {
    g_live_peak.store(live, std::memory_order_relaxed);
    g_live_peak_ms.store(os::now_ms(), std::memory_order_relaxed);
  }
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

namespace {

// Thread exit: every page is collected; empty ones are freed; segments with no used page
// go to the cache; the rest are abandoned for another thread to adopt. Bound: segments
// owned x 64 pages, each collected once.
void heap_abandon(Heap* h) {
  release_large_stash(h);
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

// Thread exit, when the purge delay is not 0: the heap keeps the segments that still hold
// blocks (their pages keep this heap as owner, so frees into them are remote frees, as into
// an abandoned segment) and goes to the pool whole; the next thread to start takes it with
// its pages warm: its free lists carved and faulted in, the blocks other threads freed
// collected where they were, and frees of blocks the last thread left (larson's arrays,
// thread-churn's leftovers) local again. Empty pages are freed and empty segments released
// as at abandonment. A heap left parked longer than the purge delay has its segments
// abandoned (strip_parked) by a thread that needs a page and finds nothing abandoned, and
// by a forced collect. Bound: segments owned x 64 pages.
void heap_park(Heap* h) {
  release_large_stash(h);
  for (Segment* s = h->segments_; s != nullptr;) {
    Segment* next = s->next_;
    free_empty_pages(h, s, false);
    segment_retire_if_empty(h, s);
    s = next;
  }
  if (h->segments_ != nullptr) {
    uint64_t now = os::now_ms();
    h->parked_ms_ = now != 0 ? now : 1;
  }
}

void thread_done(void* arg) {
  Heap* h = static_cast<Heap*>(arg);
  if (h == nullptr || h == &g_empty_heap) return;
  heap_fold_counts(h);  // an exited thread's counts are whole (parked or abandoned alike)
  // Parked heaps at most one per thread running lately (the recent peak, and kParkedMax): a
  // thread that started while the parked pool's flag was busy took an empty heap (or made
  // one), the parked heap it missed stayed, and with threads coming and going faster than
  // the purge delay none was ever stripped: each held its segments and their number only
  // grew (Stress.ThreadChurnLeavesBlocksForOthersAndDoesNotGrow: 9 parked heaps for 3
  // threads, 25 -> 118 MiB mapped at scale 3). Beyond the bound the exit abandons, as
  // before; parked heaps beyond the threads still running are stripped first when a thread
  // needs pages (strip_parked). The bound was the running threads alone until the peak:
  // then only the first half of a generation's exits parked (thread-churn-t4, 4 threads
  // joined together), and the rest went through abandonment and the segment cache.
  int live = g_live_heaps.fetch_sub(1, std::memory_order_relaxed) - 1;
  int parked = g_parked_count.load(std::memory_order_relaxed);
  uint64_t delay = uint64_t(option(Opt::kPurgeDelayMs));
  int peak = g_live_peak.load(std::memory_order_relaxed);
  if (os::now_ms() - g_live_peak_ms.load(std::memory_order_relaxed) > delay) {
    peak = live;  // a purge delay old: the threads running now are the measure again
    g_live_peak.store(live, std::memory_order_relaxed);
  }
  int bound = peak > live ? peak : live;
  if (delay != 0 && parked < bound && parked < int(kParkedMax))
    heap_park(h);
  else
    heap_abandon(h);
  if (t_heap == h) {
    t_heap = &g_empty_heap;
    t_heap_done = true;
  }
  h->xlive_.store(false, std::memory_order_relaxed);
  // (H1): the parking or abandonment above happens-before the next owner (or stripper).
  if (h->parked_ms_ != 0) {
    g_parked_count.fetch_add(1, std::memory_order_relaxed);
    g_parked_pool.push(h);
  } else {
    g_heap_pool.push(h);
  }
}

void fork_prepare() {
  if (auto hook = g_fork_prepare_hook.load(std::memory_order_acquire)) hook();
  segment_fork_prepare();
  g_heap_pool.acquire_for_fork();
  g_parked_pool.acquire_for_fork();
}

void fork_parent() {
  g_parked_pool.end();
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
  g_parked_pool.end();
  g_heap_pool.end();
  g_live_heaps.store(t_heap != &g_empty_heap ? 1 : 0, std::memory_order_relaxed);
  g_live_peak.store(g_live_heaps.load(std::memory_order_relaxed), std::memory_order_relaxed);
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

bool collect(bool force) {
  Heap* h = t_heap;
  bool released = false;
  // Parked heaps' segments first (heap_park): the adoption below may take them.
  if (force && strip_parked(nullptr, true)) released = true;
  if (force) {
    // An abandoned segment whose blocks were all freed since is given back only by an
    // adopter, and adopters take one at a time, only when they need a page: a forced collect
    // adopts them now (those still holding blocks stay with this thread, as any adoption).
    // Bound: kCollectAdopt segments x 64 pages (not a malloc/free path).
    for (unsigned i = 0; i < kCollectAdopt; ++i) {
      Segment* s = segment_take_abandoned(unsigned(h->id_) + i);
      if (s == nullptr) break;
      if (h == &g_empty_heap) {
        // A thread that never allocated has no heap to adopt into: it gets one now (before,
        // its collect gave back nothing abandoned: a main thread that only frees what its
        // exited workers left could not release their memory).
        heap_thread_start();
        h = t_heap;
        if (h == &g_empty_heap) {  // no memory for a heap: the segment waits for another
          segment_abandon(s);
          break;
        }
      }
      adopt(h, s);
      released = true;
    }
  }
  if (h != &g_empty_heap && release_large_stash(h)) released = true;
  if (h != &g_empty_heap) {
    // Bound: the pages of this heap, each collected and possibly purged once.
    uint64_t delay = purge_delay_ms(os::now_ms());
    for (Segment* s = h->segments_; s != nullptr;) {
      Segment* next = s->next_;
      free_empty_pages(h, s, !force);
      uint64_t now = os::now_ms();  // after free_empty_pages stamped the pages it freed
      for (unsigned i = s->first_page_; i < s->page_count_; ++i) {
        Page* pg = &s->pages_[i];
        if (pg->queue_ == PageQueue::kFreeDirty && (force || now - pg->freed_at_ms_ >= delay)) {
          page_purge(s, pg, force);
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
