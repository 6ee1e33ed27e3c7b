// Crystalline-W reclamation over the allocator's birth eras: thread records and their
// reservations, the protect slow path with helping, retire batches and their publication,
// list drops and batch frees. reclaim/README.md has the algorithm, the loop bounds (also
// written at each loop) and the happens-before edges (E1.., R1.., H1..) cited here.
#include "reclaim.h"

#include <stddef.h>

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <new>

#include "error.h"
#include "handoff.h"
#include "heap.h"
#include "meta.h"
#include "options.h"
#include "os/os.h"
#define WFMM_FAST_NO_DECLS
#include "wfmm/fast.h"

namespace wfmm::reclaim {

__thread Local t_local __attribute__((tls_model("initial-exec")));

// include/wfmm/fast.h reads these fields from callers' code: its view must match.
static_assert(offsetof(Local, rec) == offsetof(wfmm_thread_view_v1, rec));
static_assert(offsetof(Local, in_region) == offsetof(wfmm_thread_view_v1, in_region));
static_assert(offsetof(Local, head) == offsetof(wfmm_thread_view_v1, head));
static_assert(offsetof(Local, depth) == offsetof(wfmm_thread_view_v1, depth));
static_assert(offsetof(Local, active) == offsetof(wfmm_thread_view_v1, active));
static_assert(offsetof(Local, freeq) == offsetof(wfmm_thread_view_v1, freeq));
static_assert(offsetof(Local, era) == offsetof(wfmm_thread_view_v1, era));
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
static_assert(sizeof(g_era) == sizeof(uint64_t));

namespace {

// ---------------------------------------------------------------- structures

// Slot head values; anything else is the address of the newest Cell of its list.
constexpr uintptr_t kInactive = 0;     // no reservation: retirers skip the slot
constexpr uintptr_t kActiveEmpty = 1;  // reservation, empty list
// Cell::next values besides a cell address or kEnd.
constexpr uintptr_t kEnd = 0;
constexpr uintptr_t kPendingNext = 2;  // the inserter has not linked it yet
constexpr uintptr_t kVisited = 3;      // the owner walked past it
// A slow-path request's result while nobody has completed it (never a useful pointer).
constexpr uint64_t kPendingResult = ~uint64_t(0) - 0xfe;
// Batch count bias (Crystalline-W): keeps the count above zero while insertions into
// reservation lists are still being counted. A parent hand-off biases by the number of
// records it scans instead (Crystalline's 2^62 could wrap when several helpees hand off the
// same unpublished batch at once).
constexpr uint64_t kBias = uint64_t(1) << 63;

struct Cell {
  std::atomic<uintptr_t> next;
  Batch* batch;
};

constexpr unsigned kInlineCells = 16;
// A batch is published once it holds 128 KiB: the cost of a publish (one pass over the
// reservations) is small beside that much memory, and a small program should not keep
// megabytes of freed blocks waiting in partial batches.
constexpr uint64_t kBatchBytes = uint64_t(128) << 10;
constexpr unsigned kChunkCells = 127;
struct CellChunk {
  CellChunk* next;
  uint64_t pad;
  Cell cells[kChunkCells];
};

struct Item {
  void* p;
  void (*fn)(void*, void*);  // null: plain free
  void* ctx;
  uint64_t size_kind;          // usable size << 1 | 1 when fn disposes of the block itself
  std::atomic<uint64_t>* side;  // the block's side word
};

}  // namespace

struct Batch {
  std::atomic<uint64_t> refs;
  uint64_t min_birth;
  uint32_t count;
  uint32_t cap;
  uint32_t cells_used;
  uint32_t freed;         // items freed so far (frees are spread over calls: kFreeBudget)
  uint16_t gen;           // barrier parity it is counted under; kGenNone until counted
  uint8_t counted;        // publish finished its barrier accounting (fork_child reads it)
  uint8_t user_fn;        // some item has a deleter (user code)
  uint8_t skip_implicit;  // not inserted in implicit (deferred free) reservations
  uint8_t explicit_items;  // some item came from wfmm_retire (not a deferred free)
  uint64_t bytes;           // usable bytes of its blocks
  uint64_t deferred_bytes;  // of those, from deferred frees
  uint64_t published_era;
  CellChunk* chunks;
  Batch* qnext;
  Batch* mnext;  // the retirer's list of batches it holds a reference on (deferred free)
  std::atomic<Batch*> handoff_next{nullptr};
  Batch* handoff_link = nullptr;
  Cell cells[kInlineCells];
  Item items[1];  // cap of them
};

namespace {

size_t batch_bytes(uint32_t cap) { return sizeof(Batch) + (cap - 1) * sizeof(Item); }

}  // namespace

// One reservation: the list head, the {era, tag} pair, and the slow-path request.
struct alignas(64) Slot {
  std::atomic<uintptr_t> head;
  uint64_t pad;
  Pair era;     // {reserved era, tag}
  Pair result;  // {kPendingResult / value / 0, tag}
  std::atomic<void* const volatile*> src;
  std::atomic<void*> parent;  // block containing src, or null for a root
};

struct Record {
  Slot slots[kSlots];
  alignas(64) std::atomic<void*> help_parent;  // parent this thread dereferences as helper
  // 1 while nobody owns the record and its state is clean: a claimer takes it with a CAS to
  // 0. A fresh index reads 0 (zero memory), so scanners never take one being handed out.
  std::atomic<uint32_t> pooled;
  // The batch the owner is publishing (null otherwise) and the owner's thread state: a fork
  // child settles the barrier accounting of threads that died in the middle (fork_child).
  std::atomic<Batch*> publishing;
  Local* owner;
  // 1 while the owner is inside a region: retirers skip the user reservations of a record
  // whose owner is outside (E6), so they can stay published between regions.
  alignas(64) std::atomic<uint32_t> in_region;
  // Statistics: written by the owner with relaxed load+store, summed by readers.
  std::atomic<int64_t> retired, retired_bytes, reclaimed, reclaimed_bytes, protect_slow;
};

namespace {

// ---------------------------------------------------------------- globals

// The record registry: chunk i holds kFirstChunk << i records; g_nrec indices handed out.
// Every loop over all records walks g_nrec of them, so a claim reuses a pooled record
// whenever it can see one (claim_pooled) and takes a new index only otherwise.
constexpr unsigned kDirChunks = 40;
constexpr uint64_t kFirstChunk = 16;
std::atomic<Record*> g_dir[kDirChunks];
std::atomic<uint64_t> g_nrec{0};
// Records pooled now, as a hint: counted after the pooled flag is set and uncounted after a
// claim, so a reading <= 0 means every pooled record is one being given back right now.
std::atomic<int64_t> g_npooled{0};
std::atomic<uint64_t> g_in_use{0};  // records owned by threads now
// Deferred free may free at once while one thread alone has a record (E7: needs membarrier).
std::atomic<bool> g_alone_ok{false};

alignas(64) std::atomic<int64_t> g_slow_count{0};  // open slow-path requests
HandoffStack<Batch> g_orphans;         // freed inside malloc (helping): freed later

// wfmm_barrier's accounting in one word, so that a publisher learns the current parity and is
// counted under it in one atomic step (E8): bit 63 is the parity new batches count under;
// bits 0..30 count the unfreed batches published under parity 0, bits 32..62 under parity 1.
// (Own line: written at every publish and batch free; the registry above is read by every
// publish.)
alignas(64) std::atomic<uint64_t> g_live{0};
constexpr uint64_t kParityBit = uint64_t(1) << 63;
constexpr uint16_t kGenNone = 0xffff;
constexpr uint64_t live_unit(unsigned parity) { return uint64_t(1) << (32 * parity); }
constexpr uint64_t live_count(uint64_t w, unsigned parity) {
  return (w >> (32 * parity)) & 0x7fffffff;
}
// Blocks freed per allocator or reclamation call at most (amortized free): the rest of the
// queue waits for the thread's next calls, its exit or wfmm_barrier.
constexpr uint32_t kFreeBudget = 64;
// The library's one lock: only wfmm_barrier takes it (blocking by contract, never on a
// malloc/free/retire/protect/enter/leave path), to serialise concurrent barriers.
pthread_mutex_t g_barrier_lock = PTHREAD_MUTEX_INITIALIZER;

alignas(64) std::atomic<int> g_init{0};

// Deferred free statistics (updated per batch, not per free).
alignas(64) std::atomic<int64_t> g_deferred_now{0};
std::atomic<int64_t> g_deferred_peak{0};
std::atomic<uint64_t> g_deferral_max{0};
pthread_key_t g_key;

struct Progress {
  std::atomic<uint64_t> fast, slow, help, tag, publish, threads;
} g_prog;

void note_max(std::atomic<uint64_t>& m, uint64_t v) {
  if (option(Opt::kCountSteps) == 0) return;
  uint64_t cur = m.load(std::memory_order_relaxed);
  // Bound: each failure means m grew; it grows at most to v.
  while (cur < v && !m.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

void stat_add(std::atomic<int64_t>& c, int64_t v) {
  c.store(c.load(std::memory_order_relaxed) + v, std::memory_order_relaxed);
}

unsigned chunk_of(uint64_t idx, uint64_t* base) {
  // chunk i covers [kFirstChunk * (2^i - 1), kFirstChunk * (2^(i+1) - 1))
  unsigned i = 63 - unsigned(__builtin_clzll(idx / kFirstChunk + 1));
  *base = kFirstChunk * ((uint64_t(1) << i) - 1);
  return i;
}

// Calls f(record) for the first n records (those that may be in use when n = g_nrec).
// Bound: n records.
template <class F>
void for_each_record_n(uint64_t n, F f) {
  for (unsigned i = 0; i < kDirChunks; ++i) {
    uint64_t base = kFirstChunk * ((uint64_t(1) << i) - 1);
    if (base >= n) break;
    Record* c = g_dir[i].load(std::memory_order_acquire);
    if (c == nullptr) continue;  // nobody uses a record of it yet
    uint64_t len = kFirstChunk << i;
    if (base + len > n) len = n - base;
    for (uint64_t j = 0; j < len; ++j) f(&c[j]);
  }
}

template <class F>
void for_each_record(F f) {
  for_each_record_n(g_nrec.load(std::memory_order_seq_cst), f);
}

// ---------------------------------------------------------------- batches and lists

void queue_free(Batch* b) {
  Local& t = t_local;
  b->qnext = t.freeq;
  t.freeq = b;
}

// (R4) acq_rel: every drop happens-before the free by the thread that reaches zero.
void unref(Batch* b, uint64_t n) {
  if (b->refs.fetch_sub(n, std::memory_order_acq_rel) == n) queue_free(b);
}

void refs_add(Batch* b, uint64_t delta) {
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
    // (R3) acq_rel: pairs with the inserter's link CAS (R2).
    uintptr_t nx = c->next.exchange(kVisited, std::memory_order_acq_rel);
    unref(b, 1);
    if (nx == kPendingNext) break;
    l = nx;
  }
}

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
    // The owner already walked to c and stopped: the older cells are ours to drop.
    drop_list(nv);
  }
  return true;
}

Record* own_record(bool implicit = false);

// Frees up to `budget` more items of b; returns how many it freed. The batch itself is
// released once its last item is freed (*done). Bound: budget items + its cell chunks.
uint32_t free_some(Batch* b, uint32_t budget, bool* done) {
  Local& t = t_local;
  if (t.rec == nullptr) own_record();  // counts go to the freeing thread's record
  bool poison = option(Opt::kPoison) != 0;
  int64_t bytes = 0;
  uint32_t n = 0;
  // Bound: budget (kFreeBudget) items.
  for (; b->freed < b->count && n < budget; ++n) {
    Item& it = b->items[b->freed++];
    size_t size = size_t(it.size_kind >> 1);
    bytes += int64_t(size);
    // The block is no longer retired: a later malloc of it records a new era over the mark.
    it.side->store(kFreedMark, std::memory_order_relaxed);
    if (it.size_kind & 1) {
      it.fn(it.p, it.ctx);  // disposes of the block itself
      continue;
    }
    if (it.fn != nullptr) it.fn(it.p, it.ctx);
    if (poison) memset(it.p, 0xdb, size);
    heap_free(it.p, "retire");
  }
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
  g_live.fetch_sub(live_unit(b->gen & 1), std::memory_order_release);
  // Bound: the batch's cell chunks (eligible reservations / kChunkCells).
  while (CellChunk* ch = b->chunks) {
    b->chunks = ch->next;
    meta::release(ch, sizeof(CellChunk));
  }
  meta::release(b, batch_bytes(b->cap));
  return n;
}

// Frees blocks of the batches this thread brought to zero, at most `budget` of them per call
// (amortized free: a thread that drops a million old blocks at once frees them over its next
// calls, not inside one malloc). Deleters are user code: they run only outside regions
// (inside one, a deleter's protect would replace the caller's reservations), so batches with
// deleters wait for the outermost leave; the others are freed at once. Deleters may retire,
// protect or free: the queue is a loop, not a recursion.
// Bound: budget blocks, plus one hand-over per batch with deleters met where none may run,
// plus one drain of 16 orphans.
void run_frees(uint32_t budget = kFreeBudget) {
  Local& t = t_local;
  if (t.freeq == nullptr && !g_orphans.has_work()) return;
  if (t.draining != 0) return;
  t.draining = 1;
  bool orphans = false;
  bool user_ok = t.depth == 0 && t.in_alloc == 0;
  for (;;) {
    if (Batch* b = t.freeq) {
      if (b->user_fn != 0 && !user_ok) {
        // Inside malloc (helping, an implicit region's end) or inside a region: no user
        // code here. Any thread's next reclamation call outside a region runs it (a thread
        // that stays in one region must not collect them: they would pile up).
        t.freeq = b->qnext;
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
  b->skip_implicit = 0;
  b->explicit_items = 0;
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
  uint64_t k = 0, inspected = 0, oldest = ~uint64_t(0);
  bool oom = false;
  // A batch of deferred frees only: the retirer's own implicit region ended at each of those
  // frees (they were allocator calls), so its own implicit reservation cannot hold them.
  Record* self = b->explicit_items == 0 && b->deferred_bytes != 0 ? t.rec : nullptr;
  for_each_record([&](Record* r) {
    // (E6) seq_cst: pairs with the owner's seq_cst store at enter.
    unsigned first = r->in_region.load(std::memory_order_seq_cst) != 0 ? 0 : kUserSlots;
    // Bound: kSlots.
    unsigned end = b->skip_implicit || r == self ? kImplicitSlot : kSlots;
    for (unsigned j = first; j < end; ++j) {
      ++inspected;
      Slot& s = r->slots[j];
      if (s.head.load(std::memory_order_seq_cst) == kInactive) continue;
      uint64_t era = dload_lo(&s.era);
      if (era < oldest) oldest = era;
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
  if (oom) {
    report_error("retire", "out of memory for reclamation metadata: batch kept forever at",
                 b);
  } else if (k != 0 && b->deferred_bytes != 0 && t.exited == 0 && t.rec != nullptr) {
    // Deferred free: the retirer keeps one reference and frees the batch itself once it is
    // the last holder (reap_held), so its own blocks go back to its own heap as local frees,
    // as they would with immediate free. Left alone, the last thread to pass through the
    // allocator would free them: remote frees, most of deferred free's cost.
    refs_add(b, k + 1 - kBias);
    b->mnext = t.mine;
    t.mine = b;
  } else {
    refs_add(b, k - kBias);
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (t.rec != nullptr) t.rec->publishing.store(nullptr, std::memory_order_relaxed);
}

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

// Drops every held reference (thread exit, barrier): the last holder frees, as usual.
// Bound: the held batches.
void release_held(Local& t) {
  while (Batch* b = t.mine) {
    t.mine = b->mnext;
    unref(b, 1);
  }
  t.mine_cur = nullptr;
}

// ---------------------------------------------------------------- records

void thread_exit(void* arg);
void publish_held(Local& t);
void publish_partial(Local& t);

// Gives r back (thread exit, fork child): its state is clean. (R6) release: the cleared
// reservations, lists and request precede the next owner's claiming CAS (acquire).
void pool_record(Record* r) {
  // No owner any more: a fork child must not read a dead thread's state through it (a record
  // claimed but not yet set up by its new owner is settled with nothing to settle).
  r->owner = nullptr;
  r->publishing.store(nullptr, std::memory_order_relaxed);
  r->pooled.store(1, std::memory_order_release);
  g_npooled.fetch_add(1, std::memory_order_relaxed);  // a hint: the flag carries the edge
}

// One pass over the registry in index order, taking the first pooled record with a CAS.
// Bound: g_nrec records, one load each and at most one CAS; a failed CAS means another
// claimer took that record. Null if the pass found none.
Record* claim_pooled() {
  uint64_t n = g_nrec.load(std::memory_order_acquire);
  for (unsigned i = 0; i < kDirChunks; ++i) {
    uint64_t base = kFirstChunk * ((uint64_t(1) << i) - 1);
    if (base >= n) break;
    Record* c = g_dir[i].load(std::memory_order_acquire);
    if (c == nullptr) continue;  // its mapping failed: no record of it exists
    uint64_t len = kFirstChunk << i;
    if (base + len > n) len = n - base;
    for (uint64_t j = 0; j < len; ++j) {
      Record* r = &c[j];
      uint32_t exp = 1;
      if (r->pooled.load(std::memory_order_relaxed) == 1 &&
          r->pooled.compare_exchange_strong(exp, 0, std::memory_order_acquire)) {  // (R6)
        g_npooled.fetch_sub(1, std::memory_order_relaxed);
        return r;
      }
    }
  }
  return nullptr;
}

// A record for a new owner: a pooled one if any is visible, else the next index. A new index
// is taken only when the counter says none is pooled (every record is owned, being claimed
// or being given back at that instant) or when the pass lost each pooled record it saw to
// another claimer; so g_nrec stays at the most records owned, given back or claimed at once
// (see reclaim/README.md, "Record registry"). Bound: claim_pooled's pass, then one fetch_add
// and at most two chunk mappings.
Record* new_record() {
  if (g_npooled.load(std::memory_order_relaxed) > 0) {
    if (Record* r = claim_pooled()) return r;
  }
  uint64_t idx = g_nrec.load(std::memory_order_relaxed);
  uint64_t base;
  unsigned ci = chunk_of(idx, &base);
  if (ci >= kDirChunks) return nullptr;
  // Map the chunk first, so a scanner that counts the index finds its records.
  if (g_dir[ci].load(std::memory_order_acquire) == nullptr) {
    size_t bytes = size_t(kFirstChunk << ci) * sizeof(Record);
    bytes = (bytes + os::kPageSize - 1) & ~(os::kPageSize - 1);
    void* m = os::map_aligned(bytes, os::kPageSize);
    if (m == nullptr) return nullptr;
    auto* recs = static_cast<Record*>(m);  // zero memory: heads kInactive, eras 0
    Record* exp = nullptr;
    if (!g_dir[ci].compare_exchange_strong(exp, recs, std::memory_order_acq_rel))
      os::unmap(m, bytes);
  }
  idx = g_nrec.fetch_add(1, std::memory_order_seq_cst);
  ci = chunk_of(idx, &base);
  if (ci >= kDirChunks) return nullptr;
  if (g_dir[ci].load(std::memory_order_acquire) == nullptr) {
    // Another thread took the last index of the chunk we mapped: map this one too.
    size_t bytes = size_t(kFirstChunk << ci) * sizeof(Record);
    bytes = (bytes + os::kPageSize - 1) & ~(os::kPageSize - 1);
    void* m = os::map_aligned(bytes, os::kPageSize);
    if (m == nullptr) return nullptr;  // the index stays unused: its records read inactive
    Record* exp = nullptr;
    if (!g_dir[ci].compare_exchange_strong(exp, static_cast<Record*>(m),
                                           std::memory_order_acq_rel))
      os::unmap(m, bytes);
  }
  return &g_dir[ci].load(std::memory_order_acquire)[idx - base];
}

void stats_fill(::wfmm_stats* out) {
  int64_t ret = 0, retb = 0, rec = 0, recb = 0, slow = 0;
  for_each_record([&](Record* r) {
    ret += r->retired.load(std::memory_order_relaxed);
    retb += r->retired_bytes.load(std::memory_order_relaxed);
    rec += r->reclaimed.load(std::memory_order_relaxed);
    recb += r->reclaimed_bytes.load(std::memory_order_relaxed);
    slow += r->protect_slow.load(std::memory_order_relaxed);
  });
  out->retired = uint64_t(ret);
  out->reclaimed = uint64_t(rec);
  out->retired_pending = ret > rec ? uint64_t(ret - rec) : 0;
  out->retired_pending_bytes = retb > recb ? uint64_t(retb - recb) : 0;
  out->protect_slow = uint64_t(slow);
  int64_t dn = g_deferred_now.load(std::memory_order_relaxed);
  out->deferred_bytes = dn > 0 ? uint64_t(dn) : 0;
  out->deferred_peak_bytes = uint64_t(g_deferred_peak.load(std::memory_order_relaxed));
  out->deferral_max_eras = g_deferral_max.load(std::memory_order_relaxed);
  out->era = g_era.load(std::memory_order_relaxed);
}

void help_pending();
void fork_prepare();
void fork_parent();
void fork_child();

void init() {
  int st = g_init.load(std::memory_order_acquire);
  if (WFMM_LIKELY(st == 2)) return;
  process_init();
  int exp = 0;
  if (g_init.compare_exchange_strong(exp, 1, std::memory_order_acq_rel)) {
    pthread_key_create(&g_key, &thread_exit);
    g_stats_hook.store(&stats_fill, std::memory_order_release);
    g_fork_prepare_hook.store(&fork_prepare, std::memory_order_release);
    g_fork_parent_hook.store(&fork_parent, std::memory_order_release);
    g_fork_child_hook.store(&fork_child, std::memory_order_release);
    g_era_hook.store(&help_pending, std::memory_order_release);
    // (Deferred free, alone: the first record's claim decides; see own_record.)
    if (!g_alone_ok.load(std::memory_order_relaxed)) birth_tracking_on();
    g_init.store(2, std::memory_order_release);
    return;
  }
  // Another thread is initialising: a bounded number of its steps (it runs; we yield).
  // Bound: the initialiser's few stores above. Happens once per process.
  while (g_init.load(std::memory_order_acquire) != 2) sched_yield();
}

// The calling thread's record, claimed on first use. Null only when the OS refuses memory.
// implicit: claimed for deferred free's implicit region only (quiesce), not the explicit API.
Record* own_record(bool implicit) {
  Local& t = t_local;
  if (WFMM_LIKELY(t.rec != nullptr)) return t.rec;
  init();
  Record* r = new_record();
  if (r == nullptr) return nullptr;
  t.rec = r;
  r->owner = &t;
  t.in_region = &r->in_region;
  for (unsigned j = 0; j < kUserSlots; ++j) t.head[j] = &r->slots[j].head;
  for (unsigned j = 0; j < kSlots; ++j) {
    t.era[j] = 0;
    t.pub[j] = dload_lo(&r->slots[j].era);
    t.tag[j] = dload_hi(&r->slots[j].era);
  }
  t.active = 0;
  uint64_t n = g_in_use.fetch_add(1, std::memory_order_seq_cst) + 1;
  // Deferred free alone frees at once and needs no birth eras; the second thread switches
  // them on (blocks born before count as era 0: the oldest, the safe side).
  if (!implicit || n >= 2 || !g_alone_ok.load(std::memory_order_relaxed)) birth_tracking_on();
  // (E7) A thread that frees alone (deferred_free's shortcut) reads g_in_use with no fence
  // after its unlinking stores; this process-wide barrier stands in for that fence: either
  // its unlinks are visible to our later loads, or its later load of g_in_use sees us.
  // If the kernel refuses now, nobody may free alone from here on (best effort: a thread
  // that read g_alone_ok just before still frees alone once).
  if (g_alone_ok.load(std::memory_order_seq_cst) && !os::membarrier())
    g_alone_ok.store(false, std::memory_order_seq_cst);
  uint64_t seen = g_prog.threads.load(std::memory_order_relaxed);
  // Bound: each failure means the maximum grew; it grows at most to n.
  while (seen < n && !g_prog.threads.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  pthread_setspecific(g_key, r);
  return r;
}

Record* need_record(const char* who) {
  Record* r = own_record();
  if (r == nullptr) {
    report_error(who, "out of memory for a thread record", nullptr);
  }
  return r;
}

// ---------------------------------------------------------------- reservations

// Publishes era e in slot j (owner; no request open, so no other writer can succeed).
void publish_era(Local& t, Slot& s, unsigned j, uint64_t e) {
  Pair exp{t.pub[j], t.tag[j]};
  // (E1) the locked CAS is a full barrier: the reservation is visible before the pointer
  // is read again (pairs with E4 at retirers). Bound: 2 (a stale helper cannot match the
  // tag; the retry only corrects a stale local copy of the pair).
  for (int i = 0; i < 2 && !dcas(&s.era, &exp, Pair{e, t.tag[j]}); ++i) {
  }
  t.pub[j] = e;
}

// Makes slot j active with an empty list, dropping whatever it held.
// Returns the era to reserve (read after the list was emptied).
uint64_t reset_slot(Local& t, unsigned j) {
  Slot& s = t.rec->slots[j];
  uintptr_t old = s.head.exchange(kInactive, std::memory_order_acq_rel);
  drop_list(old);
  // Inserters that found the slot inactive and raced may have left cells: take them too.
  old = s.head.exchange(kActiveEmpty, std::memory_order_seq_cst);
  drop_list(old);
  t.active |= 1u << j;
  return g_era.load(std::memory_order_seq_cst);
}

uint64_t refresh(Local& t, unsigned j, uint64_t e) {
  Slot& s = t.rec->slots[j];
  if (!(t.active & (1u << j)) ||
      s.head.load(std::memory_order_relaxed) != kActiveEmpty) {
    e = reset_slot(t, j);
  }
  publish_era(t, s, j, e);
  return e;
}

void deactivate(Local& t, unsigned j) {
  Slot& s = t.rec->slots[j];
  drop_list(s.head.exchange(kInactive, std::memory_order_acq_rel));
  t.era[j] = 0;
  t.active &= ~(1u << j);
}

// Raises slot s's era to at least e while its tag is `tag`. False if the request closed.
// Bound: each failed CAS means another thread raised the era (or closed the request); the
// era only takes values of the global clock, which moves at most n times while a request
// is open (n = records in use), so at most n + 1 iterations.
bool raise(Slot& s, uint64_t tag, uint64_t e) {
  Pair cur{dload_lo(&s.era), dload_hi(&s.era)};
  for (;;) {
    if (cur.hi != tag) return false;
    if (cur.lo >= e) return true;
    if (dcas(&s.era, &cur, Pair{e, tag})) return true;
  }
}

// ---------------------------------------------------------------- helping

// The attempts of the helpee and of its helpers alike: raise the slot's era to the global
// one, read *src, and if the era did not move install the value as the request's result.
// Returns the attempts made. Bound: n + 1 (each failed attempt is an era change; while the
// request is open the era changes at most n times, because every thread that ticks it
// helps first).
uint64_t complete(Slot& s, void* const volatile* src, uint64_t tag) {
  for (uint64_t i = 1;; ++i) {
    Pair cur = dload(&s.result);
    if (cur.lo != kPendingResult || cur.hi != tag) return i;
    uint64_t e = g_era.load(std::memory_order_seq_cst);
    if (!raise(s, tag, e)) return i;
    // (E5) the reservation (raised above, locked) precedes this read.
    void* p = __atomic_load_n(const_cast<void**>(src), __ATOMIC_ACQUIRE);
    if (g_era.load(std::memory_order_seq_cst) == e) {
      Pair exp{kPendingResult, tag};
      dcas(&s.result, &exp, Pair{reinterpret_cast<uint64_t>(p), tag});
      return i;
    }
  }
}

// A helper stops using a parent: if the helpee handed it a reference meanwhile (nulled our
// help_parent), that reference is ours to drop.
void release_parent(Record* me, void* parent) {
  void* exp = parent;
  if (me->help_parent.compare_exchange_strong(exp, nullptr, std::memory_order_acq_rel)) return;
  void* start;
  std::atomic<uint64_t>* w = side_word_containing(parent, &start);
  uint64_t v = w != nullptr ? w->load(std::memory_order_acquire) : 0;
  if (side_retired(v)) unref(reinterpret_cast<Batch*>(v & ~kRetiredBit), 1);
}

// Completes (or sees completed) the request of slot s with tag `tag` (bounded by complete()).
void help_one(Record* me, Slot& s, uint64_t tag) {
  void* const volatile* src = s.src.load(std::memory_order_acquire);
  void* parent = s.parent.load(std::memory_order_acquire);
  Pair cur = dload(&s.result);
  if (cur.lo != kPendingResult || cur.hi != tag) return;
  Local& t = t_local;
  if (parent != nullptr) {
    // (H1) seq_cst: announce the parent, then protect it, then re-check the request; the
    // helpee reads help_parent after the request closed (H2).
    me->help_parent.store(parent, std::memory_order_seq_cst);
    uint64_t e = reset_slot(t, kHelpSlot);
    publish_era(t, me->slots[kHelpSlot], kHelpSlot, e);
    cur = dload(&s.result);
    if (cur.lo != kPendingResult || cur.hi != tag) {
      deactivate(t, kHelpSlot);
      release_parent(me, parent);
      return;
    }
  }
  note_max(g_prog.help, complete(s, src, tag));
  if (parent != nullptr) {
    deactivate(t, kHelpSlot);
    release_parent(me, parent);
  }
}

// Era hook: before a thread ticks the era it completes every open request.
// Bound: records x kUserSlots requests, each help_one bounded as above.
void help_pending() {
  if (g_slow_count.load(std::memory_order_seq_cst) == 0) return;
  Local& t = t_local;
  Record* me = own_record();
  if (me == nullptr) return;
  t.in_alloc = 1;
  for_each_record([&](Record* r) {
    if (r == me) return;
    for (unsigned j = 0; j < kUserSlots; ++j) {
      Slot& s = r->slots[j];
      if (dload_lo(&s.result) != kPendingResult) continue;
      Pair cur = dload(&s.result);
      if (cur.lo == kPendingResult) help_one(me, s, cur.hi);
    }
  });
  run_frees();  // plain batches only: we are inside malloc
  t.in_alloc = 0;
}

// The helpee, after its request closed: helpers still dereferencing its parent get a
// reference on the parent's batch if the parent was retired (Crystalline-W's hand-off).
// Bound: records.
void handoff_parent(void* parent) {
  void* start;
  std::atomic<uint64_t>* w = side_word_containing(parent, &start);
  if (w == nullptr) return;
  // seq_cst: a retire that published before a helper's reservation existed (its fence
  // precedes that reservation, which precedes our request's close) is visible here.
  uint64_t v = w->load(std::memory_order_seq_cst);
  if (!side_retired(v)) return;  // a later retire will find the helpers' reservations
  auto* b = reinterpret_cast<Batch*>(v & ~kRetiredBit);
  // At most one reference per record scanned can be handed out: that many keep the count
  // above zero meanwhile.
  uint64_t n = g_nrec.load(std::memory_order_seq_cst);
  b->refs.fetch_add(n, std::memory_order_acq_rel);
  uint64_t handed = 0;
  for_each_record_n(n, [&](Record* r) {
    void* exp = parent;
    // (H2) seq_cst: pairs with (H1).
    if (r->help_parent.load(std::memory_order_seq_cst) == parent &&
        r->help_parent.compare_exchange_strong(exp, nullptr, std::memory_order_acq_rel))
      ++handed;
  });
  refs_add(b, handed - n);
}

void* protect_slow(Local& t, void* const volatile* src, unsigned j) {
  Record* r = t.rec;
  Slot& s = r->slots[j];
  stat_add(r->protect_slow, 1);
  if (!(t.active & (1u << j))) publish_era(t, s, j, reset_slot(t, j));
  // The block holding src (a root in static or stack memory has none): helpers protect it
  // while they read src on our behalf.
  void* parent = nullptr;
  size_t parent_size;
  if (!block_lookup(const_cast<void**>(src), &parent, &parent_size)) parent = nullptr;
  uint64_t tag = t.tag[j] + 1;  // odd: a request is open
  // Counted before it opens: a thread that ticks the era without helping must have read
  // the count before this (the n + 1 bound).
  g_slow_count.fetch_add(1, std::memory_order_seq_cst);
  s.src.store(src, std::memory_order_relaxed);
  s.parent.store(parent, std::memory_order_relaxed);
  // Open: tag the era pair, then the result (both locked: src/parent are visible first).
  Pair exp{t.pub[j], t.tag[j]};
  // Bound: 2 (only the owner writes a pair whose tag is even).
  for (int i = 0; i < 2 && !dcas(&s.era, &exp, Pair{exp.lo, tag}); ++i) {
  }
  Pair res = dload(&s.result);
  dcas(&s.result, &res, Pair{kPendingResult, tag});
  note_max(g_prog.slow, complete(s, src, tag));
  res = dload(&s.result);
  void* value = reinterpret_cast<void*>(res.lo);
  if (parent != nullptr) handoff_parent(parent);
  // Close: even tag again. Helpers that saw the request open may still raise the era once
  // each. Bound: n + 1.
  Pair cur = dload(&s.era);
  uint64_t c = 0;
  while (!dcas(&s.era, &cur, Pair{cur.lo, tag + 1})) ++c;
  note_max(g_prog.tag, c + 1);
  Pair rc = res;
  dcas(&s.result, &rc, Pair{0, tag + 1});  // only the owner writes a closed request
  g_slow_count.fetch_sub(1, std::memory_order_seq_cst);
  t.tag[j] = tag + 1;
  t.pub[j] = cur.lo;
  // The fast path may trust this slot only if it is allowed to try at all.
  t.era[j] = option(Opt::kProtectAttempts) != 0 ? cur.lo : 0;
  return value;
}

// ---------------------------------------------------------------- thread lifecycle

// Ends every reservation. An inactive slot can still hold cells: two inserters that raced
// with its deactivation (insert's CAS back failed because a later inserter linked onto the
// cell); they are dropped here. Bound: kSlots.
void clear_all(Local& t) {
  // The allocator's inline check for deferred free's implicit region must look again.
  if (t_heap != &g_empty_heap) t_heap->hook_era_ = 0;
  for (unsigned j = 0; j < kSlots; ++j) {
    if (t.active & (1u << j)) {
      deactivate(t, j);
    } else if (t.rec->slots[j].head.load(std::memory_order_relaxed) != kInactive) {
      drop_list(t.rec->slots[j].head.exchange(kInactive, std::memory_order_acq_rel));
    }
  }
}

void thread_exit(void* arg) {
  Local& t = t_local;
  Record* r = static_cast<Record*>(arg);
  if (r == nullptr || t.rec != r) return;
  // Later frees of this thread (glibc's own, after the last destructor round) must not
  // claim a record that nobody would give back: see deferred_free and retire_impl.
  t.exited = 1;
  t.depth = 0;
  t.in_region->store(0, std::memory_order_release);
  clear_all(t);
  publish_partial(t);
  publish_held(t);
  release_held(t);
  drain_frees();
  t.rec = nullptr;
  g_in_use.fetch_sub(1, std::memory_order_release);
  pool_record(r);  // the last touch of r: a claimer may own it from here on
  meta::thread_flush();
}

// Fork child, for the record of a thread that does not exist in the child: what it was
// freeing is freed by this thread, the deferred-free batches it held a reference on are
// released, and a batch it was in the middle of publishing (never to be freed: its count
// keeps the bias) is taken out of the barrier's count. Its partial batches are lost: those
// blocks stay allocated. (The child's copy of the dead thread's state is read as fork left
// it; fork takes no snapshot of other threads at a consistent point, so this is best effort
// for batches in flight: at worst a batch stays counted and a barrier in the child waits.)
void settle_dead(Record* r) {
  Local& t = t_local;
  if (Local* d = r->owner) {
    // Bound: the batches queued or held by the dead thread.
    while (Batch* b = d->freeq) {
      d->freeq = b->qnext;
      queue_free(b);
    }
    while (Batch* b = d->mine) {
      d->mine = b->mnext;
      unref(b, 1);
    }
    d->mine_cur = nullptr;
  }
  if (Batch* b = r->publishing.load(std::memory_order_relaxed)) {
    r->publishing.store(nullptr, std::memory_order_relaxed);
    if (b->gen != kGenNone) {
      if (b->counted == 0) g_live.fetch_sub(live_unit((b->gen & 1) ^ 1), std::memory_order_relaxed);
      // Still biased: its publisher never finished counting references, nobody frees it.
      if (b->refs.load(std::memory_order_relaxed) >= kBias / 2)
        g_live.fetch_sub(live_unit(b->gen & 1), std::memory_order_relaxed);
    }
  }
  (void)t;
}

void fork_prepare() {
  g_orphans.acquire_for_fork();
  meta::fork_prepare();
}

void fork_parent() {
  meta::fork_release();
  g_orphans.end();
}

// Child of fork: only the forking thread lives. Every other record's reservations are
// dropped and its open request closed; the records go back to the pool. Other threads'
// partial batches are lost with them (their blocks stay retired, never freed).
void fork_child() {
  meta::fork_release();
  g_orphans.end();
  // The child is a new address space: make sure it is registered for membarrier (E7; Linux
  // 6.x keeps the parent's registration, registering again is harmless).
  if (g_alone_ok.load(std::memory_order_relaxed) && !os::membarrier_register())
    g_alone_ok.store(false, std::memory_order_relaxed);
  Local& t = t_local;
  uint32_t saved = t.in_alloc;
  t.in_alloc = 1;  // no deleters inside fork(): batches brought to zero become orphans
  // Every record but ours that is not pooled belonged to a thread that is gone, including one
  // caught between its claim and its first use: all go back to the pool. Bound: g_nrec.
  for_each_record([&](Record* r) {
    if (r == t.rec || r->pooled.load(std::memory_order_relaxed) != 0) return;
    for (unsigned j = 0; j < kSlots; ++j) {
      Slot& s = r->slots[j];
      drop_list(s.head.exchange(kInactive, std::memory_order_acq_rel));
      Pair res = dload(&s.result);
      // A request open (or half opened / half closed): close both halves.
      if (res.hi & 1) dcas(&s.result, &res, Pair{0, res.hi + 1});
      Pair e = dload(&s.era);
      if (e.hi & 1) dcas(&s.era, &e, Pair{e.lo, e.hi + 1});
    }
    settle_dead(r);
    r->help_parent.store(nullptr, std::memory_order_relaxed);
    r->in_region.store(0, std::memory_order_relaxed);
    pool_record(r);
  });
  // Counted afresh: dead threads may have stopped between a flag and its count. Bound: g_nrec.
  g_in_use.store(t.rec != nullptr ? 1 : 0, std::memory_order_relaxed);
  int64_t pooled = 0;
  for_each_record([&](Record* r) { pooled += r->pooled.load(std::memory_order_relaxed); });
  g_npooled.store(pooled, std::memory_order_relaxed);
  t.in_alloc = saved;
  // The forking thread is not inside protect: no request is open any more. The barrier's
  // counts stay: batches inherited from the parent are still freed in the child (by the
  // lists dropped above, by this thread), and settle_dead took back those nobody will free.
  g_slow_count.store(0, std::memory_order_relaxed);
  // The barrier's lock (wfmm_barrier only, never a wait-free path) may have been held by a
  // thread that does not exist in the child: start it afresh.
  pthread_mutex_init(&g_barrier_lock, nullptr);
}

}  // namespace

// ---------------------------------------------------------------- API

void misuse(const char* who, const char* what) {
  report_error(who, what, nullptr);
  // on_error=continue reaches here: there is no safe answer to give (an unprotected
  // pointer would be a use-after-free waiting to happen).
  const char m[] = "wfmm: cannot continue after this misuse of protect\n";
  os::write_stderr(m, sizeof m - 1);
  __builtin_trap();
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

void* protect_slow_entry(void* const volatile* src, unsigned j) {
  Local& t = t_local;
  if (j >= kUserSlots) misuse("protect", "index out of range (>= WFMM_PROTECT_SLOTS)");
  if (t.depth == 0 || t.rec == nullptr) misuse("protect", "called outside a region");
  unsigned attempts = unsigned(option(Opt::kProtectAttempts));
  uint64_t e0 = t.era[j];
  void* p = nullptr;
  // The inline fast path made the first attempt. Bound: protect_attempts.
  for (unsigned k = 1; k < attempts; ++k) {
    e0 = refresh(t, j, g_era.load(std::memory_order_seq_cst));
    p = __atomic_load_n(const_cast<void**>(src), __ATOMIC_ACQUIRE);
    uint64_t e = g_era.load(std::memory_order_acquire);
    if (e == e0) {
      t.era[j] = e;
      note_max(g_prog.fast, k + 1);
      run_frees();
      return p;
    }
  }
  note_max(g_prog.fast, attempts);
  p = protect_slow(t, src, j);
  run_frees();
  return p;
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

void publish_partial(Local& t) {
  for (Batch** slot : {&t.batch, &t.old_batch}) {
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

void retire_impl(void* p, void (*fn)(void*, void*), void* ctx, bool dispose, const char* who,
                 bool deferred) {
  if (p == nullptr) return;
  Local& t = t_local;
  Record* r = need_record(who);
  if (r == nullptr) return;
  std::atomic<uint64_t>* w;
  size_t size;
  if (const char* why = block_for_retire(p, &w, &size)) {
    // A free of a block freed already (deferred mode) is a double free, like free's own.
    if (deferred && why[0] == 'u') why = "double free of";
    return report_error(who, why, p);
  }
  const char* twice = deferred ? "double free of" : "block already retired:";
  birth_tracking_on();  // frees check for retired blocks only while tracking is on
  uint64_t birth = w->load(std::memory_order_relaxed);
  // Reclaimed and freed since block_for_retire looked at it: a use of a freed block.
  if (birth == kFreedMark)
    return report_error(who, deferred ? "double free of" : "use of a freed block", p);
  if (birth & kRetiredBit) return report_error(who, twice, p);
  // Old blocks go to a batch of their own: a batch is held by every reservation as old as
  // its oldest block, so one old block among young ones would pin them all behind a stalled
  // thread (or, under deferred free, behind a thread that has not called the allocator
  // since it started: a server's main thread waiting in pthread_join).
  // "Old": born no later than the oldest reservation our last publish saw.
  Batch** slot = birth <= t.oldest_seen ? &t.old_batch : &t.batch;
  Batch* b = *slot;
  if (b == nullptr) {
    b = new_batch();
    if (b == nullptr) {
      return report_error(who, "out of memory for reclamation metadata; not retired:", p);
    }
    *slot = b;
  }
  // A CAS from the birth just read: of two threads retiring (or, under deferred free,
  // freeing) the block at the same moment exactly one wins; the other reports and adds
  // nothing, so the block never lands in two batches. release: a helpee that finds the
  // batch through this word (parent hand-off) sees the batch initialised.
  if (!w->compare_exchange_strong(birth, kRetiredBit | reinterpret_cast<uint64_t>(b),
                                  std::memory_order_release, std::memory_order_relaxed))
    return report_error(who, twice, p);
  Item& it = b->items[b->count++];
  it.side = w;
  it.p = p;
  it.fn = fn;
  it.ctx = ctx;
  it.size_kind = uint64_t(size) << 1 | (dispose ? 1 : 0);
  if (fn != nullptr) b->user_fn = 1;
  b->bytes += size;
  if (deferred)
    b->deferred_bytes += size;
  else
    b->explicit_items = 1;
  if (birth < b->min_birth) b->min_birth = birth;
  stat_add(r->retired, 1);
  stat_add(r->retired_bytes, int64_t(size));
  // Full by count, or by bytes: a batch of large blocks would otherwise hold back up to
  // WFMM_BATCH of them (gigabytes) before anyone may reuse them.
  if (b->count == b->cap || b->bytes >= kBatchBytes) {
    *slot = nullptr;
    batch_full(t, b);
  }
  run_frees();
}

// The end of the calling thread's implicit region (deferred free): every allocator call
// moves its implicit reservation to the current era, dropping what the old one held.
uint64_t quiesce() {
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

void retire(void* p, void (*fn)(void*, void*), void* ctx, bool dispose) {
  Local& t = t_local;
  bool late = t.exited != 0 && t.rec == nullptr;
  retire_impl(p, fn, ctx, dispose, "retire", false);
  // A retire after the thread's teardown (a late TLS destructor): publish and give the
  // record back now, in case no destructor round is left to do it.
  if (WFMM_UNLIKELY(late) && t.rec != nullptr) thread_exit(t.rec);
}

// (E7) acquire on g_in_use: an exited thread's published batches (g_live) are seen with its
// record's release.
bool alone(Local& t) {
  return g_in_use.load(std::memory_order_acquire) == 1 && t.rec != nullptr &&
         g_alone_ok.load(std::memory_order_relaxed) && t.batch == nullptr &&
         t.old_batch == nullptr && t.held == nullptr && t.mine == nullptr &&
         (g_live.load(std::memory_order_relaxed) & ~kParityBit) == 0 &&
         option(Opt::kDeferMinBytes) == 0;
}

bool deferred_alone() {
  Local& t = t_local;
  if (t.exited != 0 || g_alloc_hook.load(std::memory_order_relaxed) == nullptr) return false;
  quiesce();
  return alone(t);
}

void deferred_free(void* p, const char* who) {
  Local& t = t_local;
  // After the thread's reclamation teardown (frees from glibc's own thread-exit cleanup):
  // freed at once; nobody would release a record claimed now.
  if (WFMM_UNLIKELY(t.exited != 0 && t.rec == nullptr)) return heap_free(p, who);
  if (WFMM_UNLIKELY(g_alloc_hook.load(std::memory_order_relaxed) == nullptr))
    enable_deferred(false);
  quiesce();
  // Alone: no other thread has a record (so none has an implicit region that could have
  // loaded p) and no block anywhere is retired and unfreed (so p is not one: a double free
  // is then heap_free's to report). Free now, as immediate mode would; the batches resume
  // once a second thread makes an allocator call.
  if (alone(t)) return heap_free(p, who);
  // One check per 8 frees (a check reads a line other threads write): held batches are
  // still found faster than they are made (one per WFMM_BATCH frees, 64 by default), so the
  // list stays at the batches other threads still hold.
  if (t.mine != nullptr && (++t.reap_tick & 7) == 0) reap_held(t, 1);
  retire_impl(p, nullptr, nullptr, false, who, true);
}

void flush() {
  Local& t = t_local;
  if (need_record("flush") == nullptr) return;
  publish_partial(t);
  publish_held(t);
  run_frees();
}

// nanosleep is a cancellation point: a barrier cancelled while it holds the mutex would leave
// it locked, a synchronize cancelled while its marker waits would leave the marker's deleter
// writing into a dead frame. Both run with cancellation disabled (restored on return).
struct NoCancel {
  int old;
  NoCancel() { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old); }
  ~NoCancel() { pthread_setcancelstate(old, nullptr); }
};

void barrier() {
  Local& t = t_local;
  if (t.depth != 0) misuse("barrier", "wfmm_barrier inside a region would wait for itself");
  NoCancel no_cancel;
  init();
  flush();
  // Our own reservations, kept between regions, and our implicit region (deferred free)
  // would hold what we wait for: end them.
  if (t.rec != nullptr) clear_all(t);
  release_held(t);  // (other threads' held batches wait for their next free or era tick)
  drain_frees();
  // The one lock of the library: wfmm_barrier is blocking by contract (it waits for other
  // threads' regions), never on a malloc/free/retire/protect/enter/leave path; the mutex only
  // serialises concurrent barriers over the generation flip.
  pthread_mutex_lock(&g_barrier_lock);
  // (E8) The flip: every batch counted before it counts under the old parity.
  unsigned g = unsigned(g_live.fetch_xor(kParityBit, std::memory_order_seq_cst) >> 63);
  // Blocking by contract: until the regions that hold those batches close.
  while (live_count(g_live.load(std::memory_order_acquire), g) > 0) {
    drain_frees();
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, nullptr);
  }
  // (The barrier's lock, see above: released once our generation drained; off every
  // malloc/free/retire/protect/enter/leave path.)
  pthread_mutex_unlock(&g_barrier_lock);
}

void read_lock() {
  enter();
  Local& t = t_local;
  if (t.rec == nullptr || t.read_depth++ != 0) return;
  // Era "infinity": every batch published while the section is open is inserted here, so
  // whatever the reader finds stays (RCU's guarantee; not robust, by definition).
  reset_slot(t, kReadSlot);
  publish_era(t, t.rec->slots[kReadSlot], kReadSlot, ~uint64_t(0) >> 1);
}

void read_unlock() {
  Local& t = t_local;
  if (t.read_depth == 0) {
    report_error("read_unlock", "wfmm_read_unlock without a matching wfmm_read_lock", nullptr);
    return;
  }
  if (--t.read_depth == 0) deactivate(t, kReadSlot);
  leave();
}

// Waits until every region and read-side section open at the call has closed: a marker
// block born now, retired alone, reaches every open reservation (its birth is the newest);
// its batch is freed once the last of them drops it.
void synchronize() {
  Local& t = t_local;
  if (t.depth != 0) misuse("synchronize", "wfmm_synchronize inside a region would wait for itself");
  NoCancel no_cancel;
  if (need_record("synchronize") == nullptr) return;
  void* marker = heap_malloc(16);  // (its malloc may end our implicit region: first)
  Batch* b = marker != nullptr ? new_batch() : nullptr;
  std::atomic<uint64_t>* w;
  size_t size;
  if (b == nullptr || block_for_retire(marker, &w, &size) != nullptr) {
    report_error("synchronize", "out of memory", nullptr);
    return;
  }
  clear_all(t);  // our own lingering reservations would hold the marker
  std::atomic<int> done{0};
  uint64_t birth = w->load(std::memory_order_relaxed);
  w->store(kRetiredBit | reinterpret_cast<uint64_t>(b), std::memory_order_release);
  Item& it = b->items[0];
  it.p = marker;
  it.fn = [](void*, void* ctx) {
    static_cast<std::atomic<int>*>(ctx)->store(1, std::memory_order_release);
  };
  it.ctx = &done;
  it.size_kind = uint64_t(size) << 1;
  it.side = w;
  b->count = 1;
  // Born "at era 0": the marker reaches every reservation of every open region and read
  // section, whatever its era (a region that protected before the era moved must be
  // waited for too). Implicit regions (deferred free) are not regions: skipped.
  (void)birth;
  b->min_birth = 0;
  b->skip_implicit = 1;
  stat_add(t.rec->retired, 1);
  stat_add(t.rec->retired_bytes, int64_t(size));
  publish(b);  // user_fn stays 0: the marker's deleter is ours and may run anywhere
  run_frees();
  // Blocking by contract (like synchronize_rcu).
  while (done.load(std::memory_order_acquire) == 0) {
    struct timespec ts = {0, 50 * 1000};
    nanosleep(&ts, nullptr);
    run_frees();
  }
}

void progress(wfmm_progress* out) {
  out->threads = g_prog.threads.load(std::memory_order_relaxed);
  out->protect_fast_max = g_prog.fast.load(std::memory_order_relaxed);
  out->protect_slow_max = g_prog.slow.load(std::memory_order_relaxed);
  out->help_max = g_prog.help.load(std::memory_order_relaxed);
  out->tag_cas_max = g_prog.tag.load(std::memory_order_relaxed);
  out->publish_max = g_prog.publish.load(std::memory_order_relaxed);
  out->slots_per_record = kSlots;
  out->records = g_nrec.load(std::memory_order_relaxed);
}

}  // namespace wfmm::reclaim
