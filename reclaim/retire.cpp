// Retire, batches and their publication: items go into partial batches, a full batch is
// published (one pass over the reservations, a cell inserted into each that may reach it).
// Owns E4 (publish's fence), E6 (the retirer's in_region read), R1/R2 and E8's counting.
#include "internal.h"

#include <new>

#include "error.h"
#include "foreign.h"
#include "meta.h"
#include "segment_map.h"
#include "tools.h"
#include "options.h"

namespace wfmm::reclaim {

namespace {

Cell* next_cell(Batch* b) {
  uint32_t i = b->cells_used++;
  if (i < kInlineCells) return &b->cells[i];
  i -= kInlineCells;
  if (i % kChunkCells == 0) {
    auto* ch = static_cast<CellChunk*>(meta::alloc(sizeof(CellChunk)));
    if (ch == nullptr) {
      --b->cells_used;
      return nullptr;
    }
    ch->next = b->chunks;
    b->chunks = ch;
  }
  return &b->chunks->cells[i % kChunkCells];
}

// Inserts c (for batch b) into slot s's list with one exchange. True if the slot's owner
// now holds a reference (the count must include it).
bool insert(Slot& s, Cell* c) {
  c->next.store(kPendingNext, std::memory_order_relaxed);
  // (R1) acq_rel: the batch's contents happen-before the owner's walk; the exchange reads
  // the head after the batch's blocks were unlinked (seq_cst fence in publish).
  uintptr_t prev = s.head.exchange(reinterpret_cast<uintptr_t>(c), std::memory_order_seq_cst);
  if (prev == kInactive) {
    // The slot went inactive after the scan read it: take the cell back if nobody saw it.
    uintptr_t exp = reinterpret_cast<uintptr_t>(c);
    if (s.head.compare_exchange_strong(exp, kInactive, std::memory_order_acq_rel)) return false;
    return true;  // the owner or a later inserter has it now: c.next stays kPendingNext
  }
  uintptr_t nv = prev == kActiveEmpty ? kEnd : prev;
  uintptr_t exp = kPendingNext;
  // (R2) release: pairs with (R3).
  if (!c->next.compare_exchange_strong(exp, nv, std::memory_order_acq_rel)) {
    // The owner already walked to c and stopped: the older cells are ours to drop, after
    // the owner's reads of their blocks (T2: its drop_list released c).
    tools::tsan_acquire(c);
    drop_list(nv);
  }
  return true;
}

}  // namespace

Batch* new_batch() {
  uint32_t cap = uint32_t(option(Opt::kBatch));
  auto* b = static_cast<Batch*>(meta::alloc(batch_bytes(cap)));
  if (b == nullptr) return nullptr;
  new (b) Batch();
  b->refs.store(kBias, std::memory_order_relaxed);
  b->min_birth = ~uint64_t(0);
  b->count = 0;
  b->cap = cap;
  b->cells_used = 0;
  b->freed = 0;
  b->gen = kGenNone;
  b->counted = 0;
  b->user_fn = 0;
  b->any_fn = 0;
  b->skip_implicit = 0;
  b->explicit_items = 0;
  b->old = 0;
  b->bytes = 0;
  b->deferred_bytes = 0;
  b->chunks = nullptr;
  b->qnext = nullptr;
  return b;
}

// Publishes a batch: one pass over every reservation; each active one whose era is at least
// the batch's oldest birth gets a cell. Wait-free: one exchange (and at most one CAS) per
// reservation. Bound: records x kSlots reservations inspected.
void publish(Batch* b) {
  Local& t = t_local;
  // A fork child learns from this which batch a thread that died in here was publishing.
  if (t.rec != nullptr) t.rec->publishing.store(b, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  // (E8) Counted under both parities in one step: the returned word says which parity is
  // current at that instant (a barrier's flip is ordered before or after it), then the other
  // count is taken back. A barrier waiting on the other parity meanwhile waits a moment
  // longer; none can miss this batch.
  uint64_t w = g_live.fetch_add(live_unit(0) | live_unit(1), std::memory_order_seq_cst);
  unsigned parity = unsigned(w >> 63);
  b->gen = uint16_t(parity);
  g_live.fetch_sub(live_unit(parity ^ 1), std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  b->counted = 1;
  b->published_era = g_era.load(std::memory_order_relaxed);
  if (b->deferred_bytes != 0) {
    int64_t now = g_deferred_now.fetch_add(int64_t(b->deferred_bytes), std::memory_order_relaxed) +
                  int64_t(b->deferred_bytes);
    int64_t peak = g_deferred_peak.load(std::memory_order_relaxed);
    // Bound: each failure means the peak grew; it grows at most to now.
    while (peak < now &&
           !g_deferred_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
  }
  // (E4) seq_cst: the blocks were unlinked before they were retired; this fence orders
  // those unlinks before the reads of the reservations below (pairs with E1 at readers).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint64_t k = 0, inspected = 0, oldest = ~uint64_t(0), newest = 0;
  bool oom = false;
  // A batch of deferred frees only: the retirer's own implicit region ended at each of those
  // frees (they were allocator calls), so its own implicit reservation cannot hold them.
  Record* self = b->explicit_items == 0 && b->deferred_bytes != 0 ? t.rec : nullptr;
  for_each_record([&](Record* r) {
    // (E6) seq_cst: pairs with the owner's seq_cst store at enter.
    unsigned first = r->in_region.load(std::memory_order_seq_cst) != 0 ? 0 : kUserSlots;
    // (T1) Outside a region: its reads of these blocks ended at its leave's tsan_release.
    if (first != 0) tools::tsan_acquire(&r->in_region);
    // Bound: kSlots.
    unsigned end = b->skip_implicit || r == self ? kImplicitSlot : kSlots;
    for (unsigned j = first; j < end; ++j) {
      ++inspected;
      Slot& s = r->slots[j];
      if (s.head.load(std::memory_order_seq_cst) == kInactive) continue;
      uint64_t era = dload_lo(&s.era);
      if (era < oldest) oldest = era;
      if (era > newest) newest = era;
      if (era < b->min_birth) continue;  // cannot hold any of these blocks
      Cell* c = oom ? nullptr : next_cell(b);
      if (c == nullptr) {
        // No metadata left for a cell: this reservation could still reach the batch, so
        // the batch must never be freed. Leak it (reported) rather than free it early.
        oom = true;
        continue;
      }
      c->batch = b;
      if (insert(s, c)) ++k;
    }
  });
  note_max(g_prog.publish, inspected);
  t.oldest_seen = oldest == ~uint64_t(0) ? 0 : oldest;  // none seen: nothing is old
  t.newest_seen = newest;
  if (oom) {
    report_error("retire", "out of memory for reclamation metadata: batch kept forever at",
                 b);
  } else if (k != 0 && b->deferred_bytes != 0 && b->old == 0 && t.exited == 0 &&
             t.rec != nullptr) {
    // Deferred free: the retirer keeps one reference and frees the batch itself once it is
    // the last holder (reap_held), so its own blocks go back to its own heap as local frees,
    // as they would with immediate free. Left alone, the last thread to pass through the
    // allocator would free them: remote frees, most of deferred free's cost. Not for an old
    // batch: a thread idle since before its blocks were born (a main thread in pthread_join)
    // pins it, and held ones it pins would fill the list reap_held cycles through, delaying
    // the young batches behind them (mstress-t2 under deferred free: 1.2 s -> 3.2 s); its
    // last dropper frees it.
    refs_add(b, k + 1 - kBias);
    b->mnext = t.mine;
    t.mine = b;
  } else {
    refs_add(b, k - kBias);
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (t.rec != nullptr) t.rec->publishing.store(nullptr, std::memory_order_relaxed);
}

namespace {

// Full batches: published at once, or (deferred free with defer_min_bytes) held back in a
// FIFO until the bytes behind them reach the floor. Bound: the held batches.
void batch_full(Local& t, Batch* b) {
  uint64_t floor = b->deferred_bytes != 0 ? uint64_t(option(Opt::kDeferMinBytes)) : 0;
  if (floor == 0) return publish(b);
  b->qnext = nullptr;
  if (t.held_tail != nullptr)
    t.held_tail->qnext = b;
  else
    t.held = b;
  t.held_tail = b;
  t.held_bytes += b->bytes;
  while (t.held != nullptr && t.held_bytes - t.held->bytes >= floor) {
    Batch* h = t.held;
    t.held = h->qnext;
    if (t.held == nullptr) t.held_tail = nullptr;
    t.held_bytes -= h->bytes;
    publish(h);
  }
}

}  // namespace

void publish_partial(Local& t) {
  for (Batch** slot : {&t.batch, &t.old_batch, &t.fresh_batch}) {
    if (Batch* b = *slot) {
      *slot = nullptr;
      publish(b);
    }
  }
}

void publish_held(Local& t) {
  // Bound: the held batches.
  while (Batch* h = t.held) {
    t.held = h->qnext;
    publish(h);
  }
  t.held_tail = nullptr;
  t.held_bytes = 0;
}

namespace {

// Every block but the common small or medium one (block_side_fast): large and huge blocks,
// foreign ones, a page without its side array yet, and the errors, reported here. False:
// reported, nothing to retire.
// A foreign block (WFMM_FOREIGN_BLOCKS; another malloc's, under ASan, TSan or valgrind):
// no side word (*w null), born in era 0 (never unsafe, only pinned by every older
// reservation), freed through that malloc's free. A second retire of it is not detected
// here: the tool reports the second free.
// Returned by value (no out-parameters: a local whose address escaped kept retire_body's
// frame and its final call from being a tail call).
struct SideLookup {
  std::atomic<uint64_t>* w;
  size_t size;
  bool ok;
};

WFMM_NOINLINE SideLookup lookup_slow(void* p, bool deferred, const char* who) {
  SideLookup r{nullptr, 0, true};
  if (const char* why = block_for_retire(p, &r.w, &r.size)) {
    // A free of a block freed already (deferred mode) is a double free, like free's own.
    if (deferred && why[0] == 'u') why = "double free of";
    if (deferred || segment_map_entry(reinterpret_cast<uintptr_t>(p)) != 0 ||
        (why = foreign_block_check(p, &r.size)) != nullptr) {
      report_error(who, why, p);
      r.ok = false;
      return r;
    }
    r.w = nullptr;
  }
  return r;
}

// True if the caller is inside a region and one of its active user reservations covers a
// block born in era `birth` (the era cached in Local was published before it was cached).
// Bound: kUserSlots.
WFMM_INLINE bool reserved_in_region(const Local& t, uint64_t birth) {
  if (t.depth == 0) return false;
  for (uint32_t m = t.active & ((1u << kUserSlots) - 1); m != 0; m &= m - 1)
    if (t.era[__builtin_ctz(m)] >= birth) return true;
  return false;
}

// The report of a second retire (or deferred free) of a block.
constexpr const char* twice_msg(bool deferred) {
  return deferred ? "double free of" : "block already retired:";
}

// Which partial batch a block born in `birth` joins.
// Old blocks go to a batch of their own: a batch is held by every reservation as old as
// its oldest block, so one old block among young ones would pin them all behind a stalled
// thread (or, under deferred free, behind a thread that has not called the allocator
// since it started: a server's main thread waiting in pthread_join).
// "Old": born no later than the oldest reservation our last publish saw. "Fresh": born after
// the newest one: no reservation seen could reach it, so its batch is usually inserted
// nowhere and freed at its publish. Without that third batch, one idle thread's old
// reservation (a main thread in pthread_join since its first malloc) made every block
// "young", and young batches then waited for the busy threads too (mstress-t2 under
// deferred free: 1.2 s -> 3.2 s, 2.5x the page faults).
WFMM_INLINE Batch** batch_slot(Local& t, uint64_t birth) {
  return birth <= t.oldest_seen  ? &t.old_batch
         : birth > t.newest_seen ? &t.fresh_batch
                                 : &t.batch;
}

// Marks side word w (read as `birth`) retired into batch b. False: another retire or free
// of the block won the CAS (the caller reports). fast: a small or medium block, whose side
// word lives in a side map that stays mapped while its segment does (the plain store is for
// those only: a large block's side word goes with its segment, unmapped soon after its
// free, and the batch that loses a race reads the side word after the winner freed it).
WFMM_INLINE bool mark_retired(const Local& t, std::atomic<uint64_t>* w, uint64_t birth, Batch* b,
                              bool fast, bool deferred) {
  // release: a helpee that finds the batch through this word (parent hand-off) sees the
  // batch initialised.
  uint64_t mark = kRetiredBit | reinterpret_cast<uint64_t>(b);
  if (fast && (deferred ? t.era[kImplicitSlot] != 0 && birth <= t.era[kImplicitSlot]
                        : reserved_in_region(t, birth))) {
    // A deferred free the freer's own implicit reservation covers (published, with E1's
    // barrier, before the caller's load of the side word): a plain store. A second free
    // racing with this one may then put the block in a second batch too, but that batch is
    // published into our reservation and cannot be freed before our next allocator call,
    // after this store; so the block is freed by neither batch before both stores landed,
    // and free_some frees it only through the batch the side word names, reporting the
    // other (racefree.pml). The
    // locked CAS this replaces drained the store buffer on every free: sh6bench-t2 under
    // deferred free 0.79x time on an EPYC without it.
    // The same holds for a retire inside a region whose own reservation covers the block
    // (a container's erase retires the node its guard protects): that reservation is
    // inspected by every publish (E6) and dropped only at the outermost leave, the slot's
    // next reset or its deactivation, all locked exchanges after this store; a publish that
    // reads in_region 0 after our leave sees this store too (it precedes the leave's).
    w->store(mark, std::memory_order_release);
    return true;
  }
  // A CAS from the birth just read: of two threads retiring (or freeing) the block at the
  // same moment exactly one wins; the other reports and adds nothing.
  return w->compare_exchange_strong(birth, mark, std::memory_order_release,
                                    std::memory_order_relaxed);
}

// Appends the block's item to b and keeps b's and the record's counts.
WFMM_INLINE void add_item(Record* r, Batch* b, void* p, void (*fn)(void*, void*), void* ctx,
                          uint64_t kind, size_t size, std::atomic<uint64_t>* w, uint64_t birth,
                          bool deferred) {
  Item& it = b->items[b->count++];
  it.side = w;
  it.p = p;
  it.fn = fn;
  it.size_kind = uint64_t(size) << kItemShift | kind | (deferred ? kItemFree : 0);
  if (fn != nullptr) {  // (free_some reads ctx only for a deleter)
    it.ctx = ctx;
    b->user_fn = 1;
    b->any_fn = 1;
  }
  b->bytes += size;
  if (deferred)
    b->deferred_bytes += size;
  else
    b->explicit_items = 1;
  if (birth < b->min_birth) b->min_birth = birth;
  stat_add(r->retired, 1);
  stat_add(r->retired_bytes, int64_t(size));
}

// The retire of one block, every case: retire_slow and retire_deferred_slow, after
// retire_quick declined (fn, ctx and kind are constants in the deferred one).
WFMM_INLINE void retire_body(void* p, void (*fn)(void*, void*), void* ctx, uint64_t kind,
                             const char* who, bool deferred) {
  if (p == nullptr) return;
  Local& t = t_local;
  Record* r = need_record(who);
  if (r == nullptr) return;
  std::atomic<uint64_t>* w;
  size_t size;
  uint64_t birth = 0;
  bool fast = block_side_fast(p, &w, &size);
  if (WFMM_UNLIKELY(!fast)) {
    SideLookup l = lookup_slow(p, deferred, who);
    if (!l.ok) return;
    w = l.w;
    size = l.size;
  }
  const char* twice = twice_msg(deferred);
  birth_tracking_on();  // frees check for retired blocks only while tracking is on
  if (w != nullptr) birth = w->load(std::memory_order_relaxed);
  // Reclaimed and freed since block_for_retire looked at it: a use of a freed block.
  if (birth == kFreedMark)
    return report_error(who, deferred ? "double free of" : "use of a freed block", p);
  if (birth & kRetiredBit) return report_error(who, twice, p);
  Batch** slot = batch_slot(t, birth);
  Batch* b = *slot;
  if (b == nullptr) {
    b = new_batch();
    if (b == nullptr) {
      return report_error(who, "out of memory for reclamation metadata; not retired:", p);
    }
    b->old = slot == &t.old_batch;
    *slot = b;
  }
  // (A foreign block has no side word to mark.)
  if (w != nullptr && !mark_retired(t, w, birth, b, fast, deferred))
    return report_error(who, twice, p);
  add_item(r, b, p, fn, ctx, kind, size, w, birth, deferred);
  // Full by count, or by bytes: a batch of large blocks would otherwise hold back up to
  // WFMM_BATCH of them (gigabytes) before anyone may reuse them.
  if (b->count == b->cap || b->bytes >= kBatchBytes) {
    *slot = nullptr;
    batch_full(t, b);
  }
  run_frees();
}

// retire_body's common case, written so that nothing is called before its end and the
// compiler keeps it in caller-saved registers, with no frame (retire_body saved six and
// spilled more: 145 instructions per retire of a hash map node, callgrind): a thread with a
// record, tracking on, a small or medium block on a page with its side array, a live side
// word, and an open batch this item does not fill. False, with nothing changed, for every
// other case (retire_body then decides and reports).
WFMM_INLINE bool retire_quick(Local& t, void* p, void (*fn)(void*, void*), void* ctx,
                              uint64_t kind, const char* who, bool deferred) {
  Record* r = t.rec;
  std::atomic<uint64_t>* w;
  size_t size;
  if (WFMM_UNLIKELY(r == nullptr || !g_track.load(std::memory_order_relaxed) ||
                    !block_side_fast(p, &w, &size)))
    return false;
  uint64_t birth = w->load(std::memory_order_relaxed);
  if (WFMM_UNLIKELY(birth & kRetiredBit)) return false;  // freed or retired: reported there
  Batch* b = *batch_slot(t, birth);
  // (The item that fills its batch goes to retire_body, which publishes the batch.)
  if (WFMM_UNLIKELY(b == nullptr || b->count + 1 >= b->cap || b->bytes + size >= kBatchBytes))
    return false;
  if (WFMM_UNLIKELY(!mark_retired(t, w, birth, b, true, deferred))) {
    report_error(who, twice_msg(deferred), p);
    return true;  // (the caller's run_frees_if_due then runs: harmless)
  }
  add_item(r, b, p, fn, ctx, kind, size, w, birth, deferred);
  return true;
}

// run_frees' own first test inline (frees_due): the tail of every quick retire.
WFMM_INLINE void run_frees_if_due(const Local& t) {
  if (WFMM_UNLIKELY(frees_due(t))) run_frees();
}

WFMM_NOINLINE void retire_slow(void* p, void (*fn)(void*, void*), void* ctx, uint64_t kind) {
  Local& t = t_local;
  bool late = t.exited != 0 && t.rec == nullptr;
  retire_body(p, fn, ctx, kind, "retire", false);
  // A retire after the thread's teardown (a late TLS destructor): publish and give the
  // record back now, in case no destructor round is left to do it.
  if (WFMM_UNLIKELY(late) && t.rec != nullptr) thread_exit(t.rec);
}

WFMM_NOINLINE void retire_deferred_slow(void* p, const char* who) {
  retire_body(p, nullptr, nullptr, 0, who, true);
}

}  // namespace

void retire_deferred(void* p, const char* who) {
  Local& t = t_local;
  if (WFMM_LIKELY(retire_quick(t, p, nullptr, nullptr, 0, who, true))) return run_frees_if_due(t);
  retire_deferred_slow(p, who);
}

void retire(void* p, void (*fn)(void*, void*), void* ctx, uint64_t kind) {
  Local& t = t_local;
  // (A thread past its teardown takes retire_slow: a late retire may need to give its
  // record back.)
  if (WFMM_LIKELY(t.exited == 0 && retire_quick(t, p, fn, ctx, kind, "retire", false)))
    return run_frees_if_due(t);
  retire_slow(p, fn, ctx, kind);
}

void flush() {
  Local& t = t_local;
  if (need_record("flush") == nullptr) return;
  publish_partial(t);
  publish_held(t);
  run_frees();
}

}  // namespace wfmm::reclaim
