// Thread records and their reservations: the registry (claim, pool), a thread's own record,
// publishing and resetting its eras, thread exit and the fork hooks; also the exported TLS
// state and statistics. Owns E1 (publish_era), R6 (record hand-over) and E7's claiming side.
#include "internal.h"

#include <stddef.h>

#include <pthread.h>

#include "error.h"
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

// ---------------------------------------------------------------- globals

// The record registry: chunk i holds kFirstChunk << i records; g_nrec indices handed out.
// Every loop over all records walks g_nrec of them, so a claim reuses a pooled record
// whenever it can see one (claim_pooled) and takes a new index only otherwise.
std::atomic<Record*> g_dir[kDirChunks];
std::atomic<uint64_t> g_nrec{0};
std::atomic<uint64_t> g_in_use{0};  // records owned by threads now

alignas(64) std::atomic<int> g_init{0};

Progress g_prog;

namespace {

// Records pooled now, as a hint: counted after the pooled flag is set and uncounted after a
// claim, so a reading <= 0 means every pooled record is one being given back right now.
std::atomic<int64_t> g_npooled{0};
pthread_key_t g_key;

unsigned chunk_of(uint64_t idx, uint64_t* base) {
  // chunk i covers [kFirstChunk * (2^i - 1), kFirstChunk * (2^(i+1) - 1))
  unsigned i = 63 - unsigned(__builtin_clzll(idx / kFirstChunk + 1));
  *base = kFirstChunk * ((uint64_t(1) << i) - 1);
  return i;
}

}  // namespace

void note_max(std::atomic<uint64_t>& m, uint64_t v) {
  if (option(Opt::kCountSteps) == 0) return;
  uint64_t cur = m.load(std::memory_order_relaxed);
  // Bound: each failure means m grew; it grows at most to v.
  while (cur < v && !m.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// ---------------------------------------------------------------- records

namespace {

// Gives r back (thread exit, fork child): its state is clean. (R6) release: the cleared
// reservations, lists and request precede the next owner's claiming CAS (acquire).
void pool_record(Record* r) {
  // No owner any more: a fork child must not read a dead thread's state through it (a record
  // claimed but not yet set up by its new owner is settled with nothing to settle).
  r->owner = nullptr;
  r->publishing.store(nullptr, std::memory_order_relaxed);
  tools::tsan_release(r);  // (T5) with R6: the next owner's instrumented fast paths follow
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

void fork_prepare();
void fork_parent();
void fork_child();

}  // namespace

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
  // (T5) The registry chunk holding r may have been mapped by another thread; the program's
  // inline enter/leave/protect (fast.h) touch r, instrumented under ThreadSanitizer.
  tools::tsan_acquire(&os::g_map_sync);
  tools::tsan_acquire(r);  // (T5) a pooled record: its last owner's release
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

Record* need_record_slow(const char* who) {
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
  // claim a record that nobody would give back: see deferred_free and retire.
  t.exited = 1;
  t.depth = 0;
  tools::tsan_release(t.in_region);  // (T1)
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

namespace {

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
