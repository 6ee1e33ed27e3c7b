// Metadata chunks (meta.h). Size classes 2^7 .. 2^20 bytes; bigger requests are mapped
// directly. Each thread caches up to kLocalMax chunks per class; beyond that a freed chunk
// goes to the class's global HandoffStack (one exchange), where allocating threads look
// first when their cache is empty. Carving uses a per-thread bump slice of 64 KiB cut from
// 1 MiB regions; unused slices and tails circulate in remnant lists.
#include "meta.h"

#include <stdint.h>

#include <new>

#include "handoff.h"
#include "os/os.h"
#include "segment.h"

namespace wfmm::meta {

namespace {

constexpr unsigned kMinShift = 7;
constexpr unsigned kMaxShift = 20;
constexpr unsigned kClasses = kMaxShift - kMinShift + 1;
constexpr unsigned kLocalMax = 32;
constexpr size_t kRegion = size_t(1) << 20;
constexpr size_t kSlice = size_t(64) << 10;  // the most of a region one thread keeps
// Pools per class: a thread that finds one pool's consumer flag taken tries the others
// before it carves fresh memory (one pool per class made 2 in 3 attempts fail under load).
constexpr unsigned kShards = 8;

struct Chunk {
  Chunk* local_next;
  std::atomic<Chunk*> handoff_next{nullptr};
  Chunk* handoff_link = nullptr;
};

struct Cache {
  Chunk* head[kClasses];
  unsigned count[kClasses];
  char* bump;
  char* bump_end;
  unsigned shard;  // this thread's home pool (1 + index; 0 = not chosen yet)
};

HandoffStack<Chunk> g_pool[kClasses][kShards];
__thread Cache t_cache __attribute__((tls_model("initial-exec")));
std::atomic<unsigned> g_next_shard{0};

unsigned home(Cache& t) {
  if (t.shard == 0) t.shard = 1 + g_next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  return t.shard - 1;
}

// The unused tail of an exited thread's bump region.
struct Remnant {
  std::atomic<Remnant*> handoff_next{nullptr};
  Remnant* handoff_link = nullptr;
  char* end = nullptr;
};
// As many lists as chunk pools: with one, a thread that found its consumer flag taken mapped a
// fresh region although remnants were plenty, and under thread churn those misses added up.
HandoffStack<Remnant> g_remnants[kShards];

// Returns [b, e) to the remnant pool if it is worth a chunk or more.
void give_back(char* b, char* e) {
  if (b == nullptr || size_t(e - b) < 4096) return;
  auto* r = new (b) Remnant();
  r->end = e;
  g_remnants[home(t_cache)].push(r);
}

// Makes [b, e) the thread's bump region, keeping only max(size, kSlice) of it: a thread holds
// its bump region until it exits, so with whole 1 MiB regions every thread alive at once held
// one while carving a few KiB, and thread churn mapped a region per thread alive at the peak
// (tests/reclaim churn: 1 -> 11 MB of metadata). The rest goes back to the pool at once.
void take_region(Cache& t, char* b, char* e, size_t size) {
  size_t keep = size > kSlice ? size : kSlice;
  if (size_t(e - b) >= keep + 4096) {
    give_back(b + keep, e);
    e = b + keep;
  }
  t.bump = b;
  t.bump_end = e;
}

// A bump region of at least `size` bytes: a remnant if one is free now, else a fresh
// mapping; the old region's tail goes back to the pool. Bound: the loop below, one mapping.
bool refill_region(Cache& t, size_t size) {
  char* old = t.bump;
  char* old_end = t.bump_end;
  t.bump = t.bump_end = nullptr;
  Remnant* r = nullptr;
  // Bound: kShards lists, each one drain of kDrainBudget and one look at its first remnant.
  for (unsigned k = 0, h = home(t); k < kShards && r == nullptr; ++k) {
    HandoffStack<Remnant>& l = g_remnants[(h + k) % kShards];
    if (!l.has_work() || !l.try_begin()) continue;
    l.drain(kDrainBudget);
    r = l.owned();
    if (r != nullptr && size_t(r->end - reinterpret_cast<char*>(r)) >= size) {
      l.owned() = r->handoff_link;
      --l.owned_count();
    } else {
      r = nullptr;
    }
    l.end();
  }
  give_back(old, old_end);  // after the take: a tail too small for `size` is not retaken
  if (r != nullptr) {
    take_region(t, reinterpret_cast<char*>(r), r->end, size);
    return true;
  }
  char* m = static_cast<char*>(os::map_aligned(kRegion, os::kPageSize));
  if (m == nullptr) return false;
  g_bytes_mapped.fetch_add(int64_t(kRegion), std::memory_order_relaxed);
  note_committed_peak();
  take_region(t, m, m + kRegion, size);
  return true;
}

unsigned class_of(size_t bytes) {
  unsigned k = kMinShift;
  while ((size_t(1) << k) < bytes) ++k;  // bound: kMaxShift - kMinShift steps
  return k - kMinShift;
}

void* map(size_t bytes) {
  void* p = os::map_aligned(bytes, os::kPageSize);
  if (p != nullptr) {
    g_bytes_mapped.fetch_add(int64_t(bytes), std::memory_order_relaxed);
    note_committed_peak();
  }
  return p;
}

}  // namespace

void* alloc(size_t bytes) {
  if (bytes > (size_t(1) << kMaxShift)) return map((bytes + os::kPageSize - 1) & ~(os::kPageSize - 1));
  unsigned c = class_of(bytes);
  Cache& t = t_cache;
  // Bound: kShards pools tried, each: kDrainBudget drained, at most kLocalMax taken.
  for (unsigned k = 0, h = home(t); k < kShards && t.head[c] == nullptr; ++k) {
    HandoffStack<Chunk>& pool = g_pool[c][(h + k) % kShards];
    if (!pool.try_begin()) continue;
    pool.drain(kDrainBudget);
    Chunk*& owned = pool.owned();
    for (unsigned i = 0; i < kLocalMax && owned != nullptr; ++i) {
      Chunk* x = owned;
      owned = x->handoff_link;
      --pool.owned_count();
      x->local_next = t.head[c];
      t.head[c] = x;
      ++t.count[c];
    }
    pool.end();
  }
  if (Chunk* x = t.head[c]) {
    t.head[c] = x->local_next;
    --t.count[c];
    return x;
  }
  size_t size = size_t(1) << (c + kMinShift);
  if (size >= kRegion / 4) return map(size);
  if ((t.bump == nullptr || size_t(t.bump_end - t.bump) < size) && !refill_region(t, size))
    return nullptr;
  void* p = t.bump;
  t.bump += size;
  return p;
}

void release(void* p, size_t bytes) {
  if (bytes > (size_t(1) << kMaxShift)) {
    size_t size = (bytes + os::kPageSize - 1) & ~(os::kPageSize - 1);
    os::unmap(p, size);
    g_bytes_mapped.fetch_sub(int64_t(size), std::memory_order_relaxed);
    return;
  }
  unsigned c = class_of(bytes);
  Chunk* x = new (p) Chunk();
  Cache& t = t_cache;
  if (t.count[c] < kLocalMax) {
    x->local_next = t.head[c];
    t.head[c] = x;
    ++t.count[c];
  } else {
    g_pool[c][home(t)].push(x);
  }
}

void thread_flush() {
  Cache& t = t_cache;
  // The unused tail of the bump region goes to the remnant pool for the next thread that
  // needs one, so short-lived threads leave nothing behind.
  give_back(t.bump, t.bump_end);
  t.bump = t.bump_end = nullptr;
  for (unsigned c = 0; c < kClasses; ++c) {
    // Bound: kLocalMax chunks per class.
    while (Chunk* x = t.head[c]) {
      t.head[c] = x->local_next;
      g_pool[c][home(t)].push(x);
    }
    t.count[c] = 0;
  }
}

void fork_prepare() {
  for (auto& cls : g_pool)
    for (auto& p : cls) p.acquire_for_fork();
  for (auto& l : g_remnants) l.acquire_for_fork();
}

void fork_release() {
  for (auto& l : g_remnants) l.end();
  for (auto& cls : g_pool)
    for (auto& p : cls) p.end();
}

}  // namespace wfmm::meta
