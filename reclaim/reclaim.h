// Safe memory reclamation, Crystalline-W inside the heaps (reclaim/README.md). The fast
// paths (enter, leave of a nested region, protect when the era has not moved) are inline
// here; everything else is in the .cpp files of reclaim/ (README.md). Includes allocator
// headers only.
#pragma once
#include <atomic>

#include "birth.h"
#include "config.h"
#include "dcas.h"
#include "tools.h"
#include "wfmm/wfmm.h"

namespace wfmm::reclaim {

inline constexpr unsigned kUserSlots = WFMM_PROTECT_SLOTS;
inline constexpr unsigned kHelpSlot = kUserSlots;      // the helper's own reservation
inline constexpr unsigned kReadSlot = kUserSlots + 1;  // wfmm_read_lock: reserves every era
inline constexpr unsigned kImplicitSlot = kUserSlots + 2;  // deferred free's implicit region
inline constexpr unsigned kSlots = kUserSlots + 3;

struct Record;
struct Batch;

// Per-thread state (initial-exec TLS; plain fields, owner only).
struct Local {
  Record* rec;
  std::atomic<uint32_t>* in_region;  // &rec->in_region
  std::atomic<uintptr_t>* head[kUserSlots];  // &rec->slots[i].head
  uint32_t depth;                // region nesting
  uint32_t active;               // bit i: slot i's head is not kInactive
  Batch* freeq;                  // batches whose count reached zero, to free
  // The era reserved, 0 = none (g_era >= 1): the fast path's cache, and retire_body's proof
  // that its own reservation covers a block. Never above the slot's published era: set
  // after publish_era (or at a slow protect's close, to the era published then), 0 when
  // the slot goes inactive (deactivate, clear_all).
  uint64_t era[kSlots];
  uint64_t pub[kSlots];          // the era word as published in the slot's pair
  uint64_t tag[kSlots];          // the slot's tag (even; odd only inside a slow protect)
  Batch* batch;                  // partial batch being filled (young blocks)
  Batch* old_batch;              // partial batch of blocks born <= oldest_seen
  uint64_t oldest_seen;          // the oldest reservation our last publish saw
  uint32_t draining;             // inside run_frees: deleters may re-enter
  uint32_t in_alloc;             // helping from malloc: no deleters may run here
  uint32_t read_depth;           // wfmm_read_lock nesting
  uint32_t exited;               // reclaim's thread-exit destructor ran
  Batch* held;                   // deferred free: full batches held back (oldest first)
  Batch* held_tail;
  uint64_t held_bytes;
  Batch* mine;                   // deferred free: published batches this thread holds a
  Batch** mine_cur;              //   reference on (reap_held's cursor into that list)
  uint64_t reap_tick;            // deferred frees, for reap_held's pacing
  Batch* fresh_batch;            // partial batch of blocks born > newest_seen
  uint64_t newest_seen;          // the newest reservation our last publish saw
};
// Exported as wfmm_thread_v1: include/wfmm/fast.h inlines the fast paths of enter, leave and
// protect in callers over this struct's first fields (offsets asserted in records.cpp).
extern __thread Local t_local __asm__("wfmm_thread_v1")
    __attribute__((tls_model("initial-exec"), visibility("default")));

// Out of line (records, protect, retire, frees, deferred, sync .cpp).
void enter_slow();
void leave_slow();
// (Exported for include/wfmm/fast.h's inline leave.)
void leave_lists() __asm__("wfmm_leave_lists_v1") __attribute__((visibility("default")));
void* protect_slow_entry(void* const volatile* src, unsigned index);
// Item::size_kind's low bits (internal.h): fn disposes of the block itself; a foreign block
// (side == null) came from operator new, so it goes back through operator delete.
// kItemFree (internal): the item is a deferred free, not a retire (reports name it so).
inline constexpr uint64_t kItemDispose = 1, kItemNew = 2, kItemFree = 4;
inline constexpr unsigned kItemShift = 3;
// kind: kItemDispose (fn takes the block over), kItemNew (made by operator new: a foreign
// block is freed with operator delete); see internal.h.
void retire(void* p, void (*fn)(void*, void*), void* ctx, uint64_t kind);
void flush();
void barrier();
void progress(wfmm_progress* out);
void read_lock();
void read_unlock();
void synchronize();
void deferred_free(void* p, const char* who);
// Deferred free: true while the caller is the only thread with a record and nothing is
// retired anywhere, so a free (or an in-place realloc) may act at once.
bool deferred_alone();
[[noreturn]] void misuse(const char* who, const char* what);

// Outermost enter: one seq_cst store (an xchg) announces the region to retirers (E6); the
// reservations themselves stay published between regions, so protect's fast path usually
// hits at once.
WFMM_INLINE void enter() {
  Local& t = t_local;
  if (WFMM_LIKELY(t.rec != nullptr)) {
    if (t.depth++ == 0) t.in_region->store(1, std::memory_order_seq_cst);
    return;
  }
  enter_slow();
}

// Outermost leave: the reservations stay published (retirers skip us once in_region is 0);
// only lists they collected, and batches this thread brought to zero, need work (out of
// line). Bound: the active user reservations (at most kUserSlots).
WFMM_INLINE void leave() {
  Local& t = t_local;
  if (WFMM_LIKELY(t.depth > 1)) {
    --t.depth;
    return;
  }
  if (WFMM_UNLIKELY(t.depth == 0)) return leave_slow();
  t.depth = 0;
  tools::tsan_release(t.in_region);  // (T1) pairs with publish's tsan_acquire
  t.in_region->store(0, std::memory_order_release);
  bool work = t.freeq != nullptr;
  for (uint32_t m = t.active & ((1u << kUserSlots) - 1); m != 0 && !work; m &= m - 1)
    work = t.head[__builtin_ctz(m)]->load(std::memory_order_relaxed) != 1;  // 1: empty list
  if (WFMM_UNLIKELY(work)) leave_lists();
}

// The common case: the era this slot reserves is still the global era, so the pointer just
// loaded is covered (two loads and a compare; the reservation was published, with a full
// barrier, when the era last changed). Otherwise the bounded loop in protect_slow_entry.
WFMM_INLINE void* protect(void* const volatile* src, unsigned index) {
  Local& t = t_local;
  if (WFMM_LIKELY(index < kUserSlots && t.depth != 0)) {
    // (E3) acquire load of the pointer, then acquire load of the era: the era check happens
    // after the pointer was read.
    void* p = __atomic_load_n(const_cast<void**>(src), __ATOMIC_ACQUIRE);
    if (WFMM_LIKELY(g_era.load(std::memory_order_acquire) == t.era[index])) return p;
  }
  return protect_slow_entry(src, index);
}

}  // namespace wfmm::reclaim
