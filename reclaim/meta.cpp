// Metadata chunks (meta.h). Size classes 2^7 .. 2^20 bytes; bigger requests are mapped
// directly. Each thread caches up to kLocalMax chunks per class; beyond that a freed chunk
// goes to the class's global HandoffStack (one exchange), where allocating threads look
// first when their cache is empty. Carving uses a per-thread 1 MiB bump region.
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
};

HandoffStack<Chunk> g_pool[kClasses];
__thread Cache t_cache __attribute__((tls_model("initial-exec")));

unsigned class_of(size_t bytes) {
  unsigned k = kMinShift;
  while ((size_t(1) << k) < bytes) ++k;  // bound: kMaxShift - kMinShift steps
  return k - kMinShift;
}

void* map(size_t bytes) {
  void* p = os::map_aligned(bytes, os::kPageSize);
  if (p != nullptr) g_bytes_mapped.fetch_add(int64_t(bytes), std::memory_order_relaxed);
  return p;
}

}  // namespace

void* alloc(size_t bytes) {
  if (bytes > (size_t(1) << kMaxShift)) return map((bytes + os::kPageSize - 1) & ~(os::kPageSize - 1));
  unsigned c = class_of(bytes);
  Cache& t = t_cache;
  if (t.head[c] == nullptr && g_pool[c].try_begin()) {
    // Bound: kDrainBudget entries drained, at most kLocalMax moved to the cache.
    g_pool[c].drain(kDrainBudget);
    Chunk*& owned = g_pool[c].owned();
    for (unsigned i = 0; i < kLocalMax && owned != nullptr; ++i) {
      Chunk* x = owned;
      owned = x->handoff_link;
      --g_pool[c].owned_count();
      x->local_next = t.head[c];
      t.head[c] = x;
      ++t.count[c];
    }
    g_pool[c].end();
  }
  if (Chunk* x = t.head[c]) {
    t.head[c] = x->local_next;
    --t.count[c];
    return x;
  }
  size_t size = size_t(1) << (c + kMinShift);
  if (size >= kRegion / 4) return map(size);
  if (t.bump == nullptr || size_t(t.bump_end - t.bump) < size) {
    char* r = static_cast<char*>(map(kRegion));  // the old region's tail stays unused
    if (r == nullptr) return nullptr;
    t.bump = r;
    t.bump_end = r + kRegion;
  }
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
    g_pool[c].push(x);
  }
}

void thread_flush() {
  Cache& t = t_cache;
  for (unsigned c = 0; c < kClasses; ++c) {
    // Bound: kLocalMax chunks per class.
    while (Chunk* x = t.head[c]) {
      t.head[c] = x->local_next;
      g_pool[c].push(x);
    }
    t.count[c] = 0;
  }
}

void fork_prepare() {
  for (auto& p : g_pool) p.acquire_for_fork();
}

void fork_release() {
  for (auto& p : g_pool) p.end();
}

}  // namespace wfmm::meta
