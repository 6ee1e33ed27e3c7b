// Protect's slow path and helping: the bounded refresh loop, the wait-free request
// (raise, complete), helpers completing open requests before an era tick (help_pending) and
// the parent hand-off. Owns E5 (helper's read under the raised era) and H1/H2.
#include "internal.h"

#include "error.h"
#include "heap.h"
#include "options.h"
#include "os/os.h"

namespace wfmm::reclaim {

alignas(64) std::atomic<int64_t> g_slow_count{0};  // open slow-path requests

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace wfmm::reclaim
