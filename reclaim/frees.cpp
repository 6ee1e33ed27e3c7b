// List drops and batch frees: reservation lists dropped one reference per cell, batch counts,
// the amortized free queue and its orphans, out-of-line enter/leave. Owns R3, R4, R5 (heap_free
// of reclaimed blocks), E8's uncount at a batch free and E6's owner store (enter_slow).
#include "internal.h"

#include <string.h>

#include "error.h"
#include "foreign.h"
#include "heap.h"
#include "meta.h"
#include "options.h"
#include "tools.h"

namespace wfmm::reclaim {

HandoffStack<Batch> g_orphans;         // freed inside malloc (helping): freed later

// ---------------------------------------------------------------- batches and lists

void queue_free(Batch* b) {
  Local& t = t_local;
  b->qnext = t.freeq;
  t.freeq = b;
}

// (R4) acq_rel: every drop happens-before the free by the thread that reaches zero.
void unref(Batch* b, uint64_t n) {
  tools::tsan_release(b);  // (T2) this holder's reads of the batch's blocks come first
  if (b->refs.fetch_sub(n, std::memory_order_acq_rel) == n) queue_free(b);
}

void refs_add(Batch* b, uint64_t delta) {
  tools::tsan_release(b);  // (T2) the publisher's scan (T1) and the retirer's writes
  if (b->refs.fetch_add(delta, std::memory_order_acq_rel) + delta == 0) queue_free(b);
}

// Walks a detached list, dropping one reference per cell. Stops at a cell whose inserter
// has not linked it yet: that inserter then drops the rest itself (Crystalline-W).
// Bound: the cells inserted into this slot since its last drop (one per batch published
// while it held a reservation those batches could reach).
void drop_list(uintptr_t l) {
  while (l != kEnd && l != kActiveEmpty && l != kInactive) {
    Cell* c = reinterpret_cast<Cell*>(l);
    Batch* b = c->batch;
    // (T2) an inserter that finds kVisited drops the cells after c for us: our reads of
    // their batches' blocks come first (insert's tsan_acquire).
    tools::tsan_release(c);
    // (R3) acq_rel: pairs with the inserter's link CAS (R2).
    uintptr_t nx = c->next.exchange(kVisited, std::memory_order_acq_rel);
    unref(b, 1);
    if (nx == kPendingNext) break;
    l = nx;
  }
}

namespace {

// free_some's loop over items. kPlain: no item has a function (Batch::any_fn: a deleter, a
// disposer, synchronize's marker), and neither poisoning nor a sanitizer's hooks are on
// (every deferred free's batch, and retires without deleters): their tests drop out of the
// loop (-8 instructions per item, callgrind).
// Bound: budget items. Returns how many it freed; adds their bytes to *bytes.
template <bool kPlain>
uint32_t free_items(Batch* b, uint32_t budget, bool poison, bool watched, int64_t* bytes) {
  uint32_t n = 0;
  // (A plain loop keeps its position in a register: nothing it calls can reach b, which
  // run_frees took off its queue. A deleter's run may, in principle: the other stores it.)
  uint32_t at = b->freed;
  for (; at < b->count && n < budget; ++n) {
    Item& it = b->items[at++];
    if (!kPlain) b->freed = at;
    size_t size = size_t(it.size_kind >> kItemShift);
    *bytes += int64_t(size);  // (counted as reclaimed either way: retired and reclaimed agree)
    // A double free or retire that raced with a plain store of the mark put the block in
    // two batches (mark_retired): the side word names the one that frees it; this one
    // reports.
    if (it.side != nullptr &&
        it.side->load(std::memory_order_relaxed) != (kRetiredBit | reinterpret_cast<uint64_t>(b))) {
      if (it.size_kind & kItemFree)
        report_error("free (raced with another free of it; found at reclamation)",
                     "double free of", it.p);
      else
        report_error("retire (raced with another retire of it; found at reclamation)",
                     "block already retired:", it.p);
      continue;
    }
    if (!kPlain) {
      if (it.size_kind & kItemDispose) {
        // The disposer takes the block over as a live one (it may free it, or under
        // deferred free retire it again): its side word reads as born in era 0, not as
        // freed.
        if (it.side != nullptr) it.side->store(0, std::memory_order_relaxed);
        it.fn(it.p, it.ctx);  // disposes of the block itself
        continue;
      }
      if (it.fn != nullptr) it.fn(it.p, it.ctx);
      if (poison) memset(it.p, 0xdb, size);
    }
    if (it.side == nullptr) {
      foreign_free(it.p, (it.size_kind & kItemNew) != 0);  // back to its malloc (foreign.h)
      continue;
    }
    // The block is no longer retired: a later malloc of it records a new era over the mark.
    it.side->store(kFreedMark, std::memory_order_relaxed);
    tools::vg_taken_back(it.p);
    if (!kPlain && watched) tools::san_taken_back(it.p, size);
    heap_free<true>(it.p, "retire");  // (ours: the side word named this batch)
  }
  b->freed = at;
  return n;
}

// Frees up to `budget` more items of b; returns how many it freed. The batch itself is
// released once its last item is freed (*done). Bound: budget items + its cell chunks.
uint32_t free_some(Batch* b, uint32_t budget, bool* done) {
  Local& t = t_local;
  if (t.rec == nullptr) own_record();  // counts go to the freeing thread's record
  bool poison = option(Opt::kPoison) != 0;
  // Once per call, not per block (the tools' hooks are weak symbols: a load and a test each).
  bool watched = tools::sanitizer_watches();
  int64_t bytes = 0;
  // (T2) Every reader's drop and the publish released the batch (tsan_release in unref,
  // refs_add); the deleters and the frees below are ordered after them for ThreadSanitizer.
  tools::tsan_acquire(b);
  uint32_t n = b->any_fn == 0 && !poison && !watched
                   ? free_items<true>(b, budget, poison, watched, &bytes)
                   : free_items<false>(b, budget, poison, watched, &bytes);
  if (Record* r = t.rec) {
    stat_add(r->reclaimed, n);
    stat_add(r->reclaimed_bytes, bytes);
  }
  *done = b->freed == b->count;
  if (!*done) return n;
  if (b->deferred_bytes != 0) {
    g_deferred_now.fetch_sub(int64_t(b->deferred_bytes), std::memory_order_relaxed);
    uint64_t eras = g_era.load(std::memory_order_relaxed) - b->published_era;
    uint64_t m = g_deferral_max.load(std::memory_order_relaxed);
    // Bound: each failure means the maximum grew; it grows at most to eras.
    while (m < eras && !g_deferral_max.compare_exchange_weak(m, eras, std::memory_order_relaxed)) {
    }
  }
  // (E8) release: the frees above happen-before a barrier that sees the count drop.
  tools::tsan_release(&g_live);  // (T2) the same for ThreadSanitizer
  g_live.fetch_sub(live_unit(b->gen & 1), std::memory_order_release);
  // Bound: the batch's cell chunks (eligible reservations / kChunkCells).
  while (CellChunk* ch = b->chunks) {
    b->chunks = ch->next;
    meta::release(ch, sizeof(CellChunk));
  }
  meta::release(b, batch_bytes(b->cap));
  return n;
}

}  // namespace

// Frees blocks of the batches this thread brought to zero, at most `budget` of them per call
// (amortized free: a thread that drops a million old blocks at once frees them over its next
// calls, not inside one malloc). Deleters are user code: they run only outside regions
// (inside one, a deleter's protect would replace the caller's reservations), so batches with
// deleters wait for the outermost leave; the others are freed at once. Deleters may retire,
// protect or free: the queue is a loop, not a recursion.
// Bound: budget blocks, plus one step per batch with deleters met where none may run (at
// most kKeepUser of them stay queued, the rest are handed over), plus one drain of 16 orphans.
void run_frees(uint32_t budget) {
  Local& t = t_local;
  if (!frees_due(t)) return;
  if (t.draining != 0) return;
  t.draining = 1;
  bool orphans = false;
  bool user_ok = t.depth == 0 && t.in_alloc == 0;
  // Batches with deleters met inside a region: they stay on this thread's queue, in front,
  // for its leave (the inline leave takes the slow path while the queue is not empty).
  Batch* kept = nullptr;
  Batch** kept_tail = &kept;
  uint32_t nkept = 0;
  for (;;) {
    if (Batch* b = t.freeq) {
      if (b->user_fn != 0 && !user_ok) {
        t.freeq = b->qnext;
        if (t.depth != 0 && nkept < kKeepUser) {
          b->qnext = nullptr;
          *kept_tail = b;
          kept_tail = &b->qnext;
          ++nkept;
          continue;
        }
        // Inside malloc outside a region (helping, an implicit region's end), or more than
        // kKeepUser of them: any thread's next reclamation call outside a region runs it (a
        // thread that stays in one region must not collect them all: they would pile up).
        // Handing every one over, as before, starved them: a retirer's own batches with
        // deleters mostly reach zero inside its region (at publish, or in insert's drop),
        // and orphans were taken back only by a leave that had work of its own; with
        // WFMM_BATCH=1024 (more than one call's budget) unreclaimed nodes grew without
        // bound (hash map 0/50/50, 1 thread: 1.1M, 5.9 against 16.5 Mops/s).
        g_orphans.push(b);
        continue;
      }
      if (budget == 0) break;
      t.freeq = b->qnext;  // (a deleter below may queue batches in front of it)
      bool done;
      budget -= free_some(b, budget, &done);
      if (!done) {
        b->qnext = t.freeq;
        t.freeq = b;
      }
      continue;
    }
    // Batches with deleters left by threads inside malloc: one bounded share per call.
    if (!orphans && user_ok && g_orphans.has_work() && g_orphans.try_begin()) {
      orphans = true;
      g_orphans.drain(16);
      Batch* o = g_orphans.owned();
      g_orphans.owned() = nullptr;
      g_orphans.owned_count() = 0;
      g_orphans.end();
      // Bound: 16 drained.
      while (o != nullptr) {
        Batch* n = o->handoff_link;
        o->qnext = t.freeq;
        t.freeq = o;
        o = n;
      }
      continue;
    }
    break;
  }
  *kept_tail = t.freeq;
  t.freeq = kept;
  t.draining = 0;
}

// Frees everything this thread has queued, and a share of the orphans (thread exit, barrier:
// not wait-free paths). Bound: the blocks queued (each call frees kFreeBudget of them or
// hands batches with deleters to the orphans).
void drain_frees() {
  Local& t = t_local;
  do {
    run_frees();
  } while (t.freeq != nullptr && t.draining == 0);
}

void enter_slow() {
  Local& t = t_local;
  if (need_record("enter") == nullptr) return;
  if (t.depth++ == 0) t.in_region->store(1, std::memory_order_seq_cst);
}

void leave_slow() {
  Local& t = t_local;
  if (t.depth == 0) {
    report_error("leave", "wfmm_leave without a matching wfmm_enter", nullptr);
    return;
  }
  t.depth = 0;
  tools::tsan_release(t.in_region);  // (T1)
  t.in_region->store(0, std::memory_order_release);
  leave_lists();
}

// The user reservations stay published (retirers skip us while we are outside): only the
// lists they collected are dropped now. Bound: kUserSlots (the active ones).
void leave_lists() {
  Local& t = t_local;
  for (uint32_t m = t.active & ((1u << kUserSlots) - 1); m != 0; m &= m - 1) {
    Slot& s = t.rec->slots[__builtin_ctz(m)];
    if (s.head.load(std::memory_order_relaxed) != kActiveEmpty)
      drop_list(s.head.exchange(kActiveEmpty, std::memory_order_acq_rel));
  }
  run_frees();
}

}  // namespace wfmm::reclaim
