// Implicit regions and deferred free (WFMM_DEFERRED_FREE): every allocator call ends the
// thread's implicit region (quiesce), a thread alone frees at once, the retirer reaps the
// batches it holds. Owns E7 (the alone shortcut's side; membarrier at claims in records.cpp).
#include "internal.h"

#include "heap.h"
#include "options.h"
#include "os/os.h"

namespace wfmm::reclaim {

// Deferred free may free at once while one thread alone has a record (E7: needs membarrier).
std::atomic<bool> g_alone_ok{false};

// Deferred free statistics (updated per batch, not per free).
alignas(64) std::atomic<int64_t> g_deferred_now{0};
std::atomic<int64_t> g_deferred_peak{0};
std::atomic<uint64_t> g_deferral_max{0};

namespace {

// Frees the held batches whose other references are all gone. Checks at most `budget`
// batches, resuming where the last call stopped (a batch pinned by a stalled thread does not
// hide the ones behind it). Bound: budget.
void reap_held(Local& t, unsigned budget) {
  if (t.mine_cur == nullptr) t.mine_cur = &t.mine;
  for (; budget != 0; --budget) {
    Batch* b = *t.mine_cur;
    if (b == nullptr) {
      t.mine_cur = &t.mine;
      if (t.mine == nullptr) return;
      continue;
    }
    if (b->refs.load(std::memory_order_relaxed) == 1) {
      *t.mine_cur = b->mnext;
      unref(b, 1);  // (R4): acq_rel; a parent hand-off racing in makes another thread last
    } else {
      t.mine_cur = &b->mnext;
    }
  }
}
}  // namespace

// Drops every held reference (thread exit, barrier): the last holder frees, as usual.
// Bound: the held batches.
void release_held(Local& t) {
  while (Batch* b = t.mine) {
    t.mine = b->mnext;
    unref(b, 1);
  }
  t.mine_cur = nullptr;
}

namespace {

// The end of the calling thread's implicit region (deferred free): every allocator call
// moves its implicit reservation to the current era, dropping what the old one held.
WFMM_NOINLINE uint64_t quiesce() {
  Local& t = t_local;
  if (t.draining != 0 || t.exited != 0) return 0;  // inside our own frees / after teardown
  if (t.rec == nullptr && own_record(true) == nullptr) return 0;
  uint64_t e = g_era.load(std::memory_order_acquire);
  if (t.era[kImplicitSlot] == e) return e;
  ++t.in_alloc;
  t.era[kImplicitSlot] = refresh(t, kImplicitSlot, e);
  // Other threads' implicit regions end on the same ticks: our held batches free up now.
  if (t.mine != nullptr) reap_held(t, 4);
  run_frees();
  --t.in_alloc;
  return t.era[kImplicitSlot];
}

void enable_deferred(bool at_start) {
  if (g_alloc_hook.load(std::memory_order_acquire) == nullptr) {
    // At start only (before main: every later thread's first allocator call claims a record,
    // so "one record in use" means "one thread"): a process that only frees (deferred) on one
    // thread records no eras. Switched on at run time, threads that made their first
    // allocator call before are not counted: no alone mode then.
    if (at_start && g_init.load(std::memory_order_acquire) == 0 && os::membarrier_register())
      g_alone_ok.store(true, std::memory_order_seq_cst);
    init();
    g_alloc_hook.store(&quiesce, std::memory_order_release);
  }
}

// WFMM_DEFERRED_FREE=1 from the start: record birth eras from the first malloc on.
__attribute__((constructor)) void deferred_at_start() {
  process_init();
  if (option(Opt::kDeferredFree) != 0) enable_deferred(true);
}

}  // namespace

// (E7) acquire on g_in_use: an exited thread's published batches (g_live) are seen with its
// record's release. Inline: a single-threaded program under deferred free pays this on
// every free (as a call, with quiesce's, it doubled free's time; glibc-simple 1.12x -> 1.09x
// of immediate free).
WFMM_INLINE bool alone(Local& t) {
  return g_in_use.load(std::memory_order_acquire) == 1 && t.rec != nullptr &&
         g_alone_ok.load(std::memory_order_relaxed) && t.batch == nullptr &&
         t.old_batch == nullptr && t.fresh_batch == nullptr && t.held == nullptr && t.mine == nullptr &&
         (g_live.load(std::memory_order_relaxed) & ~kParityBit) == 0 &&
         option(Opt::kDeferMinBytes) == 0;
}

namespace {

// True if quiesce has nothing to do: the implicit reservation already holds the era.
WFMM_INLINE bool implicit_current(const Local& t) {
  return t.rec != nullptr && (t.draining | t.exited) == 0 &&
         t.era[kImplicitSlot] == g_era.load(std::memory_order_acquire);
}

// quiesce's common case inline.
WFMM_INLINE void quiesce_fast(Local& t) {
  if (WFMM_LIKELY(implicit_current(t))) return;
  quiesce();
}

// One check per 8 frees (a check reads a line other threads write): held batches are
// still found faster than they are made (one per WFMM_BATCH frees, 64 by default), so the
// list stays at the batches other threads still hold.
WFMM_INLINE bool reap_due(Local& t) { return t.mine != nullptr && (++t.reap_tick & 7) == 0; }

}  // namespace

bool deferred_alone() {
  Local& t = t_local;
  if (t.exited != 0 || g_alloc_hook.load(std::memory_order_relaxed) == nullptr) return false;
  quiesce_fast(t);
  return alone(t);
}

namespace {

// deferred_free's every case: teardown, first use, a region to move, alone, reaping.
WFMM_NOINLINE void deferred_free_slow(void* p, const char* who) {
  Local& t = t_local;
  // After the thread's reclamation teardown (frees from glibc's own thread-exit cleanup):
  // freed at once; nobody would release a record claimed now.
  if (WFMM_UNLIKELY(t.exited != 0 && t.rec == nullptr)) {
    tools::vg_taken_back(p);  // (WFMM_VALGRIND builds: memcheck hears of the free here)
    return heap_free(p, who);
  }
  if (WFMM_UNLIKELY(g_alloc_hook.load(std::memory_order_relaxed) == nullptr))
    enable_deferred(false);
  quiesce_fast(t);
  // Alone: no other thread has a record (so none has an implicit region that could have
  // loaded p) and no block anywhere is retired and unfreed (so p is not one: a double free
  // is then heap_free's to report). Free now, as immediate mode would; the batches resume
  // once a second thread makes an allocator call.
  if (alone(t)) {
    tools::vg_taken_back(p);
    return heap_free(p, who);
  }
  if (reap_due(t)) reap_held(t, 1);
  retire_deferred(p, who);
}

WFMM_NOINLINE void reap_then_retire(Local& t, void* p, const char* who) {
  reap_held(t, 1);
  retire_deferred(p, who);
}

}  // namespace

void deferred_free(void* p, const char* who) {
  Local& t = t_local;
  // The common case, with no frame of its own: a thread with a record whose implicit region
  // is at the current era (so deferred free is on and quiesce has nothing to do), among
  // other threads with records (not alone(): that needs g_in_use == 1). The rest, and one
  // free in 8 with held batches to look at, take deferred_free_slow's full sequence.
  if (WFMM_LIKELY(implicit_current(t) && g_in_use.load(std::memory_order_acquire) != 1)) {
    if (!reap_due(t)) return retire_deferred(p, who);
    return reap_then_retire(t, p, who);
  }
  deferred_free_slow(p, who);
}

}  // namespace wfmm::reclaim
