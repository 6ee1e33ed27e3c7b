// Private to reclaim/: the shared structures (slots, records, batches, cells, items), the
// constants, the globals each role's file defines (extern here) and the functions one file
// calls in another. Not installed, not exported (the library is built -fvisibility=hidden).
// reclaim/README.md has the algorithm, the loop bounds (also written at each loop) and the
// happens-before edges (E1.., R1.., H1..) cited in these files.
#pragma once
#include <pthread.h>
#include <stddef.h>

#include "handoff.h"
#include "heap.h"
#include "reclaim.h"

namespace wfmm::reclaim {

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
  // usable size << kItemShift | kItemFree | kItemNew | kItemDispose
  uint64_t size_kind;
  std::atomic<uint64_t>* side;  // the block's side word
};

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
  uint8_t any_fn;         // some item has a function (user_fn's, or synchronize's marker):
                          // free_some's plain loop is for batches without
  uint8_t skip_implicit;  // not inserted in implicit (deferred free) reservations
  uint8_t explicit_items;  // some item came from wfmm_retire (not a deferred free)
  uint8_t old;            // Local::old_batch: likely pinned by a stalled or idle thread
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

inline size_t batch_bytes(uint32_t cap) { return sizeof(Batch) + (cap - 1) * sizeof(Item); }

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
  // Statistics: written by the owner with relaxed load+store, summed by readers. A line of
  // their own: in_region's is read by every publisher's scan.
  alignas(64) std::atomic<int64_t> retired, retired_bytes, reclaimed, reclaimed_bytes, protect_slow;
};

// ---------------------------------------------------------------- globals

// The record registry (records.cpp): chunk i holds kFirstChunk << i records; g_nrec indices
// handed out.
constexpr unsigned kDirChunks = 40;
constexpr uint64_t kFirstChunk = 16;
extern std::atomic<Record*> g_dir[kDirChunks];
extern std::atomic<uint64_t> g_nrec;
extern std::atomic<uint64_t> g_in_use;  // records owned by threads now (records.cpp)
extern std::atomic<int> g_init;         // records.cpp
// Deferred free may free at once while one thread alone has a record (E7; deferred.cpp).
extern std::atomic<bool> g_alone_ok;

extern std::atomic<int64_t> g_slow_count;  // open slow-path requests (protect.cpp)
extern HandoffStack<Batch> g_orphans;       // freed inside malloc: freed later (frees.cpp)

// wfmm_barrier's accounting in one word (sync.cpp, E8): bit 63 is the parity new batches
// count under; bits 0..30 and 32..62 count the unfreed batches published under parity 0 and 1.
extern std::atomic<uint64_t> g_live;
constexpr uint64_t kParityBit = uint64_t(1) << 63;
constexpr uint16_t kGenNone = 0xffff;
constexpr uint64_t live_unit(unsigned parity) { return uint64_t(1) << (32 * parity); }
constexpr uint64_t live_count(uint64_t w, unsigned parity) {
  return (w >> (32 * parity)) & 0x7fffffff;
}
// Blocks freed per allocator or reclamation call at most (amortized free): the rest of the
// queue waits for the thread's next calls, its exit or wfmm_barrier.
constexpr uint32_t kFreeBudget = 64;
// Batches with deleters a thread keeps queued for its leave when they reach zero inside its
// region (run_frees); beyond that they go to the orphans.
constexpr uint32_t kKeepUser = 8;
// The library's one lock (sync.cpp): only wfmm_barrier takes it.
extern pthread_mutex_t g_barrier_lock;

// Deferred free statistics (deferred.cpp; updated per batch, not per free).
extern std::atomic<int64_t> g_deferred_now;
extern std::atomic<int64_t> g_deferred_peak;
extern std::atomic<uint64_t> g_deferral_max;

struct Progress {
  std::atomic<uint64_t> fast, slow, help, tag, publish, threads;
};
extern Progress g_prog;  // records.cpp

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

// ---------------------------------------------------------------- across files

// records.cpp: records, reservations, statistics, thread exit.
void note_max(std::atomic<uint64_t>& m, uint64_t v);
// Owner-written counters: the allocator's relaxed load and store (heap.h), inline.
using wfmm::stat_add;
void init();
Record* own_record(bool implicit = false);
Record* need_record_slow(const char* who);
// The caller's record, claimed on first use (reported when there is no memory for one).
inline Record* need_record(const char* who) {
  Record* r = t_local.rec;
  return WFMM_LIKELY(r != nullptr) ? r : need_record_slow(who);
}
void publish_era(Local& t, Slot& s, unsigned j, uint64_t e);
uint64_t reset_slot(Local& t, unsigned j);
uint64_t refresh(Local& t, unsigned j, uint64_t e);
void deactivate(Local& t, unsigned j);
void clear_all(Local& t);
void thread_exit(void* arg);

// protect.cpp: the era hook (helping before a tick).
void help_pending();

// retire.cpp: batches and their publication.
Batch* new_batch();
void publish(Batch* b);
void publish_partial(Local& t);
void publish_held(Local& t);
// A deferred free's retire: retire(p, nullptr, nullptr, 0) reported as `who`'s double free.
void retire_deferred(void* p, const char* who);

// frees.cpp: list drops and batch frees.
void queue_free(Batch* b);
void unref(Batch* b, uint64_t n);
void refs_add(Batch* b, uint64_t delta);
void drop_list(uintptr_t l);
void run_frees(uint32_t budget = kFreeBudget);
// run_frees' first test: batches queued on this thread, or orphans waiting for anyone.
WFMM_INLINE bool frees_due(const Local& t) { return t.freeq != nullptr || g_orphans.has_work(); }
void drain_frees();

// deferred.cpp: held batches of deferred free.
void release_held(Local& t);

}  // namespace wfmm::reclaim
