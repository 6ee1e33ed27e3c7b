// Segment life: map or reuse, construct the header, cache, abandon, adopt, unmap.
// All shared structures here are HandoffStacks: wait-free pushes, try-flag consumers.
#include "segment.h"

#include <new>

#include "options.h"
#include "os/os.h"
#include "segment_map.h"

namespace wfmm {

std::atomic<int64_t> g_bytes_mapped{0};
std::atomic<int64_t> g_bytes_purged{0};
std::atomic<int64_t> g_segments_cached{0};

namespace {

HandoffStack<Segment> g_cache;
// Bytes of huge segments in the cache: they stay resident, so keep them few.
std::atomic<int64_t> g_huge_cached_bytes{0};
inline constexpr int64_t kHugeCacheBytes = int64_t(64) << 20;
HandoffStack<Segment> g_abandoned;

// Takes the smallest cached segment of a size in [lo, hi], or null (also when the cache is
// busy).
Segment* cache_take(size_t lo, size_t hi) {
  if (g_segments_cached.load(std::memory_order_relaxed) <= 0 || !g_cache.try_begin())
    return nullptr;
  g_cache.drain(kDrainBudget);
  Segment** best = nullptr;
  Segment** pp = &g_cache.owned();
  // Bound: the cache holds at most option(kSegmentCache) (<= 1024) entries plus in-flight
  // pushes; we look at no more than 32 of them.
  for (unsigned i = 0; *pp != nullptr && i < 32; ++i, pp = &(*pp)->handoff_link) {
    Segment* s = *pp;
    if (s->size_ >= lo && s->size_ <= hi && (best == nullptr || s->size_ < (*best)->size_)) {
      best = pp;
      if (s->size_ == lo) break;
    }
  }
  Segment* found = nullptr;
  if (best != nullptr) {
    found = *best;
    *best = found->handoff_link;
    --g_cache.owned_count();
  }
  g_cache.end();
  if (found != nullptr) {
    g_segments_cached.fetch_sub(1, std::memory_order_relaxed);
    if (found->size_ > kSegmentSize)
      g_huge_cached_bytes.fetch_sub(int64_t(found->size_), std::memory_order_relaxed);
    // Its purged pages are committed again as soon as they are touched: count them back.
    int64_t purged = 0;
    for (unsigned i = 0; i < kMaxPagesPerSegment; ++i)
      if (found->pages_[i].purged_) purged += int64_t(page_area(found, &found->pages_[i]));
    if (purged != 0) g_bytes_purged.fetch_sub(purged, std::memory_order_relaxed);
  }
  return found;
}

void unmap_segment(Segment* s) {
  size_t size = s->size_;
  int64_t purged = 0;
  if (s->kind_ == SegmentKind::kSmall || s->kind_ == SegmentKind::kMedium) {
    for (unsigned i = 0; i < kMaxPagesPerSegment; ++i)
      if (s->pages_[i].purged_) purged += int64_t(page_area(s, &s->pages_[i]));
  }
  segment_map_clear(s, size);
  os::unmap(s, size);
  g_bytes_mapped.fetch_sub(int64_t(size), std::memory_order_relaxed);
  if (purged != 0) g_bytes_purged.fetch_sub(purged, std::memory_order_relaxed);
}

void init_header(Segment* s, SegmentKind kind, size_t size, bool fresh) {
  new (s) Segment();
  s->cookie_ = kSegmentCookie ^ reinterpret_cast<uintptr_t>(s);
  s->kind_ = kind;
  s->size_ = size;
  s->fresh_ = fresh;
  switch (kind) {
    case SegmentKind::kSmall:
      s->page_shift_ = kSmallPageShift;
      s->first_page_ = 1;  // page 0 is the header
      s->page_count_ = uint8_t(kSegmentSize >> kSmallPageShift);
      break;
    case SegmentKind::kMedium:
      s->page_shift_ = kMediumPageShift;
      s->first_page_ = 0;
      s->page_count_ = uint8_t(kSegmentSize >> kMediumPageShift);
      break;
    default:
      s->page_shift_ = 63;  // every address maps to page 0
      s->first_page_ = 0;
      s->page_count_ = 1;
      break;
  }
  for (unsigned i = 0; i < s->page_count_; ++i) {
    s->pages_[i].index_ = uint8_t(i);
    s->pages_[i].page_shift_ = s->page_shift_;
  }
}

}  // namespace

size_t page_area(const Segment* s, const Page* pg) {
  if (s->kind_ == SegmentKind::kSmall) return pg->index_ == 0 ? 0 : size_t(1) << kSmallPageShift;
  if (s->kind_ == SegmentKind::kMedium)
    return (size_t(1) << kMediumPageShift) - (pg->index_ == 0 ? kHeaderSize : 0);
  return s->size_ - kHeaderSize;
}

Segment* segment_alloc(SegmentKind kind, size_t size) {
  bool fresh = false;
  // Standard segments are interchangeable; huge ones are reused within 25% of their size.
  // Standard segments are interchangeable; a huge request takes the smallest cached huge
  // segment that fits and gives the excess back (mremap shrinks in place), so its
  // resident pages are reused without a fault and nothing extra stays resident.
  Segment* s = size == kSegmentSize ? cache_take(size, size) : cache_take(size, ~size_t(0));
  if (s != nullptr && s->size_ > size) {
    size_t old = s->size_;
    // Unmark the chunks given back before the kernel can hand them to anyone else.
    size_t keep_chunks = (size + kSegmentSize - 1) >> kSegmentShift;
    size_t old_chunks = (old + kSegmentSize - 1) >> kSegmentShift;
    if (old_chunks > keep_chunks)
      segment_map_clear(reinterpret_cast<char*>(s) + (keep_chunks << kSegmentShift),
                        (old_chunks - keep_chunks) << kSegmentShift);
    bool shrunk = os::remap_in_place(s, old, size);  // shrinking never moves
    WFMM_ASSERT(shrunk);
    (void)shrunk;
    g_bytes_mapped.fetch_sub(int64_t(old - size), std::memory_order_relaxed);
    s->size_ = size;
  }
  if (s != nullptr) {
    size = s->size_;
  } else {
    void* p = os::map_aligned(size, kSegmentSize);
    if (p == nullptr) return nullptr;
    s = static_cast<Segment*>(p);
    fresh = true;
    g_bytes_mapped.fetch_add(int64_t(size), std::memory_order_relaxed);
  }
  // A cached standard segment may come back as another kind: (re)write its map entry.
  uint16_t code = kind == SegmentKind::kSmall    ? kMapSmall
                  : kind == SegmentKind::kMedium ? kMapMedium
                                                 : kMapLarge;
  if (!segment_map_set(s, size, code)) {  // only a fresh mapping can need a new leaf
    os::unmap(s, size);
    g_bytes_mapped.fetch_sub(int64_t(size), std::memory_order_relaxed);
    return nullptr;
  }
  init_header(s, kind, size, fresh);
  return s;
}

void segment_release(Segment* s) {
  s->xowner_.store(nullptr, std::memory_order_relaxed);
  // A stale free into a cached segment must find no block: clear every page descriptor.
  for (unsigned i = 0; i < s->page_count_; ++i) {
    Page& pg = s->pages_[i];
    pg.block_size_ = 0;
    pg.xspan_.store(0, std::memory_order_relaxed);
    pg.xheap_.store(nullptr, std::memory_order_relaxed);
  }
  long limit = option(Opt::kSegmentCache);
  bool cacheable = option(Opt::kPurgeDelayMs) > 0;
  bool huge = s->size_ > kSegmentSize;
  if (huge && cacheable) {
    if (g_huge_cached_bytes.fetch_add(int64_t(s->size_), std::memory_order_relaxed) +
            int64_t(s->size_) >
        kHugeCacheBytes) {
      g_huge_cached_bytes.fetch_sub(int64_t(s->size_), std::memory_order_relaxed);
      cacheable = false;
    }
  }
  if (cacheable && g_segments_cached.fetch_add(1, std::memory_order_relaxed) < limit) {
    s->freed_at_ms_ = os::now_ms();
    g_cache.push(s);
    return;
  }
  if (cacheable) {
    g_segments_cached.fetch_sub(1, std::memory_order_relaxed);
    if (huge) g_huge_cached_bytes.fetch_sub(int64_t(s->size_), std::memory_order_relaxed);
  }
  unmap_segment(s);
}

bool segment_cache_expire(bool force) {
  if (g_segments_cached.load(std::memory_order_relaxed) <= 0 || !g_cache.try_begin()) return false;
  g_cache.drain(force ? ~0u : kDrainBudget);
  uint64_t now = os::now_ms();
  uint64_t delay = uint64_t(option(Opt::kPurgeDelayMs));
  unsigned done = 0;
  Segment** pp = &g_cache.owned();
  // Bound: kPurgeLimit unmaps and 64 inspections, unless force (then the whole cache).
  for (unsigned i = 0; *pp != nullptr && (force || (done < kPurgeLimit && i < 64)); ++i) {
    Segment* s = *pp;
    if (force || now - s->freed_at_ms_ >= delay) {
      *pp = s->handoff_link;
      --g_cache.owned_count();
      g_segments_cached.fetch_sub(1, std::memory_order_relaxed);
      if (s->size_ > kSegmentSize)
        g_huge_cached_bytes.fetch_sub(int64_t(s->size_), std::memory_order_relaxed);
      unmap_segment(s);
      ++done;
    } else {
      pp = &s->handoff_link;
    }
  }
  g_cache.end();
  return done > 0;
}

void segment_abandon(Segment* s) {
  s->xowner_.store(nullptr, std::memory_order_relaxed);
  g_abandoned.push(s);  // (H1): everything the exiting thread wrote is visible to the adopter
}

unsigned segment_take_abandoned(Segment** out, unsigned max) {
  if (!g_abandoned.try_begin()) return 0;
  g_abandoned.drain(kDrainBudget);
  unsigned n = 0;
  // Bound: max.
  while (n < max && g_abandoned.owned() != nullptr) {
    Segment* s = g_abandoned.owned();
    g_abandoned.owned() = s->handoff_link;
    --g_abandoned.owned_count();
    out[n++] = s;
  }
  g_abandoned.end();
  return n;
}

void segment_fork_child() {
  g_cache.reset_after_fork();
  g_abandoned.reset_after_fork();
}

}  // namespace wfmm
