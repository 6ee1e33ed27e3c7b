// Read-side sections, synchronize and barrier: RCU-style read_lock (a reservation of every
// era), synchronize (a marker batch that reaches every open reservation) and wfmm_barrier's
// parity flip over g_live. Owns E8 (the flip and the wait; publish and free count in g_live).
#include "internal.h"

#include <pthread.h>
#include <time.h>

#include "error.h"
#include "heap.h"
#include "tools.h"

namespace wfmm::reclaim {

// wfmm_barrier's accounting in one word, so that a publisher learns the current parity and is
// counted under it in one atomic step (E8): bit 63 is the parity new batches count under;
// bits 0..30 count the unfreed batches published under parity 0, bits 32..62 under parity 1.
// (Own line: written at every publish and batch free; the registry (records.cpp) is read by every
// publish.)
alignas(64) std::atomic<uint64_t> g_live{0};
// The library's one lock: only wfmm_barrier takes it (blocking by contract, never on a
// malloc/free/retire/protect/enter/leave path), to serialise concurrent barriers.
pthread_mutex_t g_barrier_lock = PTHREAD_MUTEX_INITIALIZER;

namespace {

// nanosleep is a cancellation point: a barrier cancelled while it holds the mutex would leave
// it locked, a synchronize cancelled while its marker waits would leave the marker's deleter
// writing into a dead frame. Both run with cancellation disabled (restored on return).
struct NoCancel {
  int old;
  NoCancel() { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old); }
  ~NoCancel() { pthread_setcancelstate(old, nullptr); }
};

}  // namespace

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
  tools::tsan_acquire(&g_live);  // (T2) the frees counted under our parity
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
    tools::tsan_release(ctx);  // (T2) every reader's drop came before (free_some acquired)
    static_cast<std::atomic<int>*>(ctx)->store(1, std::memory_order_release);
  };
  it.ctx = &done;
  it.size_kind = uint64_t(size) << kItemShift;
  it.side = w;
  b->count = 1;
  b->any_fn = 1;
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
  tools::tsan_acquire(&done);
}

}  // namespace wfmm::reclaim
