// Birth eras and side words (see birth.h). Side words of small pages live in a separate
// mapping per segment (2 MiB of address space, touched only where tracked blocks are);
// medium, large and huge segments keep theirs in the unused tail of the segment header.
#include "birth.h"

#include "heap.h"
#include "large.h"
#include "options.h"
#include "os/os.h"
#include "segment.h"

namespace wfmm {

// Own cache lines: g_era is written every era_freq allocations of any thread, g_track is
// read by every malloc and written once.
alignas(64) std::atomic<uint64_t> g_era{1};
alignas(64) std::atomic<bool> g_track{false};
std::atomic<void (*)()> g_era_hook{nullptr};
std::atomic<uint64_t (*)()> g_alloc_hook{nullptr};
std::atomic<void (*)()> g_fork_child_hook{nullptr};
std::atomic<void (*)()> g_fork_prepare_hook{nullptr};
std::atomic<void (*)()> g_fork_parent_hook{nullptr};
std::atomic<void (*)(::wfmm_stats*)> g_stats_hook{nullptr};

namespace {

// The side array of pg, attached on first use. Any thread holding a block of pg may call
// it: every caller computes the same address, so racing stores agree. Null only when the
// OS refuses the small segment's side map.
WFMM_NOINLINE std::atomic<uint64_t>* side_attach(Page* pg) {
  Segment* s = segment_of(pg);
  std::atomic<uint64_t>* side;
  if (s->kind_ == SegmentKind::kSmall) {
    std::atomic<uint64_t>* map = s->xside_map_.load(std::memory_order_acquire);
    if (map == nullptr) {
      void* m = os::map_aligned(kSideMapBytes, os::kPageSize);
      if (m == nullptr) return nullptr;
      auto* fresh = static_cast<std::atomic<uint64_t>*>(m);
      // One CAS: the loser unmaps its copy and uses the winner's.
      if (s->xside_map_.compare_exchange_strong(map, fresh, std::memory_order_acq_rel)) {
        map = fresh;
        g_bytes_mapped.fetch_add(int64_t(kSideMapBytes), std::memory_order_relaxed);
        note_committed_peak();
      } else {
        os::unmap(m, kSideMapBytes);
      }
    }
    side = map + size_t(pg->index_) * kSmallSideWords;
  } else {
    auto* base = reinterpret_cast<std::atomic<uint64_t>*>(reinterpret_cast<uintptr_t>(s) +
                                                          kHeaderSideOffset);
    // Medium pages hold at most 64 blocks (512 KiB / more than kSmallMax: 28 at most).
    static_assert((size_t(1) << kMediumPageShift) / kSmallMax <= 64);
    side = s->kind_ == SegmentKind::kMedium ? base + size_t(pg->index_) * 64 : base;
  }
  pg->xside_.store(side, std::memory_order_release);
  return side;
}

WFMM_NOINLINE void era_tick(Heap* h) {
  h->era_countdown_ = option(Opt::kEraFreq);
  if (auto hook = g_era_hook.load(std::memory_order_acquire)) hook();
  // seq_cst: readers compare the era they reserved with this clock (reclaim/README, E1).
  g_era.fetch_add(1, std::memory_order_seq_cst);
}

}  // namespace

void birth_record(Heap* h, Page* pg, void* b) {
  std::atomic<uint64_t>* side = pg->xside_.load(std::memory_order_acquire);
  if (WFMM_UNLIKELY(side == nullptr)) {
    side = side_attach(pg);
    if (side == nullptr) return;  // no metadata: the block counts as era 0
  }
  // relaxed: the block is published by the program after this store (release/acquire on
  // its own pointer), so a reader that finds it reads this era or a later one (E2).
  side[side_index(pg, reinterpret_cast<uintptr_t>(b))].store(
      g_era.load(std::memory_order_relaxed), std::memory_order_relaxed);
  if (h != &g_empty_heap) {
    // A large or huge block ticks the era at once: each is worth many small ones, and under
    // deferred free their memory waits for the era to move.
    if (--h->era_countdown_ <= 0 || pg->page_shift_ > kMediumPageShift) era_tick(h);
  }
  if (auto hook = g_alloc_hook.load(std::memory_order_acquire)) {
    uint64_t e = hook();
    if (h != &g_empty_heap) h->hook_era_ = e;
  }
}

const char* block_for_retire(void* p, std::atomic<uint64_t>** side_out, size_t* size) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (segment_map_entry(a) == 0) return "invalid pointer (not allocated by wfmm)";
  Segment* s = segment_containing(a);
  Page* pg;
  if (s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge) {
    pg = large_page_of(s, p);
    if (pg == nullptr) return "invalid pointer (not the start of a live block)";
    *size = large_usable(s, pg);
  } else {
    pg = s->page_of(a);
    if (!pg->is_block_start(a))
      return pg->block_size_ == 0 ? "invalid pointer (no block there)"
                                  : "invalid pointer (inside a block, not its start)";
    Block* b = static_cast<Block*>(p);
    if (pg->link_looks_free(b->next.load(std::memory_order_relaxed)) &&
        (pg->xheap_.load(std::memory_order_relaxed) != t_heap || page_holds_free(pg, b)))
      return "use of a freed block";
    *size = pg->block_size_;
  }
  std::atomic<uint64_t>* side = pg->xside_.load(std::memory_order_acquire);
  if (side == nullptr) side = side_attach(pg);
  if (side == nullptr) return "out of memory for reclamation metadata";
  *side_out = side + side_index(pg, a);
  return nullptr;
}

bool block_retired(const void* p) {
  if (WFMM_LIKELY(!g_track.load(std::memory_order_relaxed))) return false;
  void* start;
  std::atomic<uint64_t>* w = side_word_containing(p, &start);
  return w != nullptr && start == p && side_retired(w->load(std::memory_order_relaxed));
}

std::atomic<uint64_t>* side_word_containing(const void* p, void** start) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (segment_map_entry(a) == 0) return nullptr;
  Segment* s = segment_containing(a);
  if (s == nullptr || a >= reinterpret_cast<uintptr_t>(s) + s->size_) return nullptr;
  if (s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge) {
    Page* pg = &s->pages_[0];
    std::atomic<uint64_t>* side = pg->xside_.load(std::memory_order_acquire);
    if (side == nullptr || a < pg->start_) return nullptr;
    *start = reinterpret_cast<void*>(pg->start_);
    return side;
  }
  Page* pg = s->page_of(a);
  std::atomic<uint64_t>* side = pg->xside_.load(std::memory_order_acquire);
  if (side == nullptr || pg->block_size_ == 0 || a - pg->start_ >= pg->span()) return nullptr;
  size_t idx = side_index(pg, a);
  *start = reinterpret_cast<void*>(pg->start_ + idx * pg->block_size_);
  return side + idx;
}

}  // namespace wfmm
