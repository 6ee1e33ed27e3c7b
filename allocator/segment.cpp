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
std::atomic<int64_t> g_bytes_committed_peak{0};

void stats_sample_in_use(int64_t committed);  // stats.cpp

void note_committed_peak() {
  // relaxed: a statistic; the two counters are read apart, so the sum is approximate.
  int64_t now = g_bytes_mapped.load(std::memory_order_relaxed) -
                g_bytes_purged.load(std::memory_order_relaxed);
  int64_t peak = g_bytes_committed_peak.load(std::memory_order_relaxed);
  // One attempt (wait-free): a failure means another thread just raised the peak.
  if (now > peak) {
    g_bytes_committed_peak.compare_exchange_strong(peak, now, std::memory_order_relaxed);
    stats_sample_in_use(now);  // memory use grows: the in-use peak is sampled here
  }
}

// The purge delay's stretch. Purged pages taken back in the same scheduling swing (deferred
// free's batches, freed when a preempted thread runs again) were faulted in again:
// alloc-test-t4 under deferred free made 2.1k madvise calls (immediate free: 89) and 0.45-0.57
// s of system time per run; with the stretch 0.7k and 0.22-0.32 s (wall 1.41-1.47 -> 1.30-1.35
// s).
namespace {
// A shift of the option's delay, and when it last changed. Relaxed loads and stores, no
// read-modify-write: two threads changing it at once lose one change (a doubling or a
// halving the next regret or calm makes again); times are compared saturating, so a thread
// whose clock reading is older than the last change sees no time passed.
std::atomic<uint8_t> g_purge_stretch{0};
std::atomic<uint64_t> g_purge_changed_ms{0};
// The run-time setting of the option the stretch applies to (g_purge_delay_sets).
std::atomic<uint32_t> g_purge_setting{0};
// When segment_cache_expire last unmapped an idle standard segment: a fresh standard mapping
// within one delay of it is a regret.
std::atomic<uint64_t> g_cache_expired_ms{0};

uint64_t ms_since(uint64_t then, uint64_t now) { return now > then ? now - then : 0; }
}  // namespace

uint64_t purge_delay_ms(uint64_t now) {
  uint64_t base = uint64_t(option(Opt::kPurgeDelayMs));
  uint32_t setting = g_purge_delay_sets.load(std::memory_order_relaxed);
  if (WFMM_UNLIKELY(setting != g_purge_setting.load(std::memory_order_relaxed))) {
    // A new setting: unstretched, and no regret for one delay (memory purged under the old
    // one is not this one's to judge).
    g_purge_setting.store(setting, std::memory_order_relaxed);
    g_purge_stretch.store(0, std::memory_order_relaxed);
    g_purge_changed_ms.store(now, std::memory_order_relaxed);
    return base;
  }
  unsigned k = g_purge_stretch.load(std::memory_order_relaxed);
  if (k != 0 && base != 0) {
    // One halving per kPurgeCalmDelays option delays without a regret (a program that was
    // idle for long comes back unstretched).
    uint64_t calm = ms_since(g_purge_changed_ms.load(std::memory_order_relaxed), now) /
                    (base * kPurgeCalmDelays);
    if (calm != 0) {
      k = calm >= k ? 0 : k - unsigned(calm);
      g_purge_stretch.store(uint8_t(k), std::memory_order_relaxed);
      g_purge_changed_ms.store(now, std::memory_order_relaxed);
    }
  }
  return base << k;
}

void purge_regret(uint64_t given_ms, uint64_t now) {
  if (given_ms == 0) return;  // a forced purge (malloc_trim, wfmm_collect(1)): no judgement
  uint64_t delay = purge_delay_ms(now);
  // At most one doubling per delay: a hundred pages taken back together are one regret.
  if (ms_since(given_ms, now) >= delay ||
      ms_since(g_purge_changed_ms.load(std::memory_order_relaxed), now) < delay)
    return;
  unsigned k = g_purge_stretch.load(std::memory_order_relaxed);
  if (k < kPurgeStretchMax) g_purge_stretch.store(uint8_t(k + 1), std::memory_order_relaxed);
  g_purge_changed_ms.store(now, std::memory_order_relaxed);
}

std::atomic<int64_t> g_segments_cached{0};

namespace {

HandoffStack<Segment> g_cache;
// Resident bytes of the standard segments in the cache (Segment::cached_resident_): the
// cache is bounded by them (option segment_cache x 4 MiB) and by 16x segment_cache entries,
// not by its entry count alone. A segment that held one large block of 200 KiB keeps 264
// KiB resident, not 4 MiB: counting entries unmapped such segments as soon as 16 were
// cached, and the next large block faulted its pages in again (mstress: half its faults).
// 4x entries still did that whenever many large blocks were freed at once (deferred free
// publishing a scheduling quantum's frees: mstress-t4 1.2M faults, 7.0 s; at 16x 0.26M,
// 4.6 s, the resident bound unchanged).
std::atomic<int64_t> g_cache_resident{0};
// Bytes of huge segments in the cache: they stay resident (for the purge delay at most).
// 128 MiB: with 64, malloc-large (8 live blocks of 2-20 MiB, one replaced at a time) unmapped
// most freed blocks because the cache was full and faulted the next ones in fresh: 381
// transparent-huge-page faults per run (762 MiB zeroed by the kernel) against 85 at 128 MiB,
// wall 0.22 -> 0.15 s, peak RSS 186 -> 191 MiB (256 MiB: no fewer faults).
std::atomic<int64_t> g_huge_cached_bytes{0};
inline constexpr int64_t kHugeCacheBytes = int64_t(128) << 20;
// Cache entries allowed per unit of option segment_cache (see g_cache_resident).
inline constexpr long kCacheEntriesPerLimit = 16;

// Takes s's share out of the cache's counters (s left the cache, or was refused by it).
void cache_uncount(const Segment* s) {
  g_segments_cached.fetch_sub(1, std::memory_order_relaxed);
  g_cache_resident.fetch_sub(s->cached_resident_, std::memory_order_relaxed);
  if (s->size_ > kSegmentSize)
    g_huge_cached_bytes.fetch_sub(int64_t(s->size_), std::memory_order_relaxed);
}

// Abandoned segments (live blocks, no owner). Several lists: with one, an adopter that found
// its consumer flag taken mapped a fresh segment instead; under thread churn those took
// long-lived blocks too and seldom emptied, so mapped memory ratcheted up with every miss.
// FIFO (handoff.h): adopted newest first, the oldest abandoned segments, the likeliest to
// have emptied (and so to be unmapped by their adopter), stayed at the bottom for good.
constexpr unsigned kAbandonLists = 8;
HandoffStack<Segment, true> g_abandoned[kAbandonLists];
std::atomic<unsigned> g_abandon_next{0};

// Starts of large and huge blocks whose address range went back to the OS (unmapped, or
// left behind by a moving mremap): a second free of one finds no map entry, and this tells
// it from a pointer wfmm never handed out. A ring of the most recent kUnmappedRing: bounded
// memory (8 KiB of .bss), one fetch_add and one store per unmap (wait-free), scanned only
// when a free has already failed. An address wfmm maps again has a map entry, so a stale
// entry is never consulted for it.
inline constexpr unsigned kUnmappedRing = 1024;
std::atomic<uintptr_t> g_unmapped[kUnmappedRing];
std::atomic<uint64_t> g_unmapped_next{0};

void remember_unmapped(uintptr_t block) {
  uint64_t i = g_unmapped_next.fetch_add(1, std::memory_order_relaxed);
  // release: the entry is in place before the map entry is cleared (also release); a later
  // free that reads the cleared entry and this slot (acquire) sees the block.
  g_unmapped[i % kUnmappedRing].store(block, std::memory_order_release);
}

size_t chunks(size_t bytes) { return (bytes + kSegmentSize - 1) >> kSegmentShift; }

// Resizes a huge segment's mapping; returns its (possibly new) address, or null with the
// old mapping and its map entries intact. Map entries are removed before the kernel gets
// pages back and added only for pages that are ours: another thread may map a segment
// into freed address space at any moment.
Segment* huge_remap(Segment* s, size_t old_size, size_t new_size) {
  char* base = reinterpret_cast<char*>(s);
  WFMM_ASSERT(old_size > kSegmentSize || new_size > kSegmentSize);
  if (new_size < old_size) {
    if (chunks(old_size) > chunks(new_size))
      segment_map_clear(base + (chunks(new_size) << kSegmentShift),
                        (chunks(old_size) - chunks(new_size)) << kSegmentShift);
    bool ok = os::remap_in_place(s, old_size, new_size);  // shrinking never fails
    WFMM_ASSERT(ok);
    (void)ok;
    return s;
  }
  if (os::remap_in_place(s, old_size, new_size)) {
    if (segment_map_set(s, new_size, kMapLarge)) return s;
    os::remap_in_place(s, new_size, old_size);  // no leaf for the new range: undo
    return nullptr;
  }
  // Move: an aligned reservation, marked first, then the pages moved into it (no copy).
  void* dst = os::map_aligned(new_size, kSegmentSize);
  if (dst == nullptr) return nullptr;
  if (!segment_map_set(dst, new_size, kMapLarge)) {
    os::unmap(dst, new_size);
    return nullptr;
  }
  segment_map_clear(s, old_size);
  if (!os::move_mapping(s, old_size, new_size, dst)) {
    segment_map_clear(dst, new_size);
    os::unmap(dst, new_size);
    segment_map_set(s, old_size, kMapLarge);  // its leaves exist: cannot fail
    return nullptr;
  }
  return static_cast<Segment*>(dst);
}


// Resident units of a cached standard segment that a user of `units` leaves idle, and
// those it reuses (ranked: fewer idle first, then more reused). A unit that is not known
// zero counts as resident.
uint64_t standard_fit(const Segment* s, uint64_t units) {
  uint64_t dirty = ~s->zero_units_;
  return uint64_t(__builtin_popcountll(dirty & ~units)) << 8 |
         uint64_t(64 - __builtin_popcountll(dirty & units));
}

// The bytes of s's purged pages (committed again once touched) and, if asked, the latest of
// their purges' times (0: none, or forced ones only). Bound: 64 pages.
int64_t purged_bytes(const Segment* s, uint64_t* last_purge = nullptr) {
  int64_t purged = 0;
  uint64_t last = 0;
  for (unsigned i = 0; i < kMaxPagesPerSegment; ++i) {
    const Page& pg = s->pages_[i];
    if (!pg.purged_) continue;
    purged += int64_t(page_area(s, &pg));
    if (pg.freed_at_ms_ > last) last = pg.freed_at_ms_;
  }
  if (last_purge != nullptr) *last_purge = last;
  return purged;
}

// Takes the smallest cached segment of a size in [lo, hi]; failing that, if `grow_from` is
// non-zero, the largest one of at least that size below lo (the caller grows it). Null if
// none (also when the cache is busy). Among standard segments, the one whose resident units
// fit `units` best (standard_fit): segments cycle through the cache as small, medium and
// large ones, and the first one found made a 256 KiB large block hold a segment that small
// pages had left resident whole (mimalloc's test-stress, 8 threads, 60 rounds: 9 cached
// or large segments held 24 MiB resident for blocks of 256 KiB, and peak RSS grew with the
// rounds; with the choice 7 MiB; test-stress-t8 peak RSS 49.3 -> 39.0 MiB, mimalloc 36.1).
Segment* cache_take(size_t lo, size_t hi, size_t grow_from = 0, uint64_t units = ~uint64_t(0)) {
  if (g_segments_cached.load(std::memory_order_relaxed) <= 0) return nullptr;
  // Another thread holds the consumer flag for a bounded scan (no system call under it): a
  // miss here maps a fresh segment and faults it in page by page, so wait a moment. Giving
  // up at once, two threads that allocate large blocks found the cache busy ~170 times per
  // run of mstress-t2 (12.7k hits) and each time mapped and faulted a fresh 4 MiB segment.
  if (!g_cache.try_begin_patient(kCacheTries)) return nullptr;
  g_cache.drain(kDrainBudget);
  Segment** best = nullptr;
  Segment** below = nullptr;
  uint64_t best_fit = ~uint64_t(0);
  bool standard = lo == kSegmentSize && hi == kSegmentSize;
  // The best fit there can be: every unit it will write resident, no other one.
  const uint64_t perfect = uint64_t(64 - __builtin_popcountll(units));
  Segment** pp = &g_cache.owned();
  // Bound: the cache holds at most kCacheEntriesPerLimit x option(kSegmentCache) entries
  // plus in-flight pushes; we look at no more than 32 of them.
  for (unsigned i = 0; *pp != nullptr && i < 32; ++i, pp = &(*pp)->handoff_link) {
    Segment* s = *pp;
    if (standard && s->size_ == kSegmentSize) {
      uint64_t fit = standard_fit(s, units);
      if (fit < best_fit) {
        best = pp;
        best_fit = fit;
        if (fit == perfect) break;
      }
      continue;
    }
    if (s->size_ >= lo && s->size_ <= hi && (best == nullptr || s->size_ < (*best)->size_)) {
      best = pp;
      if (s->size_ == lo) break;
    }
    if (grow_from != 0 && s->size_ >= grow_from && s->size_ < lo &&
        (below == nullptr || s->size_ > (*below)->size_))
      below = pp;
  }
  if (best == nullptr) best = below;
  Segment* found = nullptr;
  if (best != nullptr) {
    found = *best;
    *best = found->handoff_link;
    --g_cache.owned_count();
  }
  g_cache.end();
  if (found != nullptr) {
    cache_uncount(found);
    // Its purged pages are committed again as soon as they are touched: count them back.
    uint64_t last_purge = 0;
    int64_t purged = purged_bytes(found, &last_purge);
    if (purged != 0) {
      g_bytes_purged.fetch_sub(purged, std::memory_order_relaxed);
      purge_regret(last_purge, os::now_ms());
    }
  }
  return found;
}

void unmap_segment(Segment* s) {
  size_t size = s->size_;
  int64_t purged = 0;
  // Its block (if it ever had one: start_ is set by large_alloc) is freed by now.
  if ((s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge) &&
      s->pages_[0].start_ != 0)
    remember_unmapped(s->pages_[0].start_);
  if (s->kind_ == SegmentKind::kSmall || s->kind_ == SegmentKind::kMedium)
    purged = purged_bytes(s);
  segment_map_clear(s, size);
  if (std::atomic<uint64_t>* side_map = s->xside_map_.load(std::memory_order_relaxed)) {
    os::unmap(side_map, kSideMapBytes);
    g_bytes_mapped.fetch_sub(int64_t(kSideMapBytes), std::memory_order_relaxed);
  }
  os::unmap(s, size);
  g_bytes_mapped.fetch_sub(int64_t(size), std::memory_order_relaxed);
  if (purged != 0) g_bytes_purged.fetch_sub(purged, std::memory_order_relaxed);
}

// The zero units (Segment::zero_units_) of a standard segment whose pages are all free,
// from its pages' zero_ flags. Large segments keep theirs current; huge ones have none.
// Bound: 64 pages.
uint64_t zero_units_of(const Segment* s) {
  if (s->size_ != kSegmentSize || s->kind_ == SegmentKind::kHuge) return 0;
  uint64_t z = 0;
  switch (s->kind_) {
    case SegmentKind::kSmall:
      for (unsigned i = 1; i < kMaxPagesPerSegment; ++i)
        if (s->pages_[i].zero_) z |= uint64_t(1) << i;
      return z;
    case SegmentKind::kMedium: {
      constexpr unsigned kPer = 1u << (kMediumPageShift - kSmallPageShift);  // 8 units
      for (unsigned i = 0; i < s->page_count_; ++i)
        if (s->pages_[i].zero_) z |= ((uint64_t(1) << kPer) - 1) << (i * kPer);
      return z & ~uint64_t(1);  // page 0's first unit is the header
    }
    default:
      return s->zero_units_;
  }
}

void init_header(Segment* s, SegmentKind kind, size_t size, bool fresh) {
  // The side map outlives reuse as another kind (a fresh mapping reads as null here); so
  // does the knowledge of which units read zero.
  std::atomic<uint64_t>* side_map = s->xside_map_.load(std::memory_order_relaxed);
  // Only a standard segment tracks its units. A huge mapping never does, not even a fresh
  // one: realloc may shrink it to exactly kSegmentSize bytes, and its freed segment then
  // comes back as a standard one (the large stash, the cache) with every unit written.
  uint64_t zero = kind == SegmentKind::kHuge || size != kSegmentSize ? 0
                  : fresh                                            ? ~uint64_t(1)
                                                                     : s->zero_units_;
  new (s) Segment();
  s->zero_units_ = zero;
  s->xside_map_.store(side_map, std::memory_order_relaxed);
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
    // A page reads zero when every unit it covers does (a fresh mapping: all of them).
    uint64_t units = 0;
    if (kind == SegmentKind::kSmall) {
      units = uint64_t(1) << i;
    } else if (kind == SegmentKind::kMedium) {
      constexpr unsigned kPer = 1u << (kMediumPageShift - kSmallPageShift);
      units = (((uint64_t(1) << kPer) - 1) << (i * kPer)) & ~uint64_t(1);
    }
    s->pages_[i].zero_ = units != 0 && (zero & units) == units;
  }
}

}  // namespace

Segment* segment_resize(Segment* s, size_t new_size) {
  size_t old_size = s->size_;
  Segment* old = s;
  uintptr_t old_block = s->pages_[0].start_;
  s = huge_remap(s, old_size, new_size);
  if (s == nullptr) return nullptr;
  // A move leaves the old block address unmapped: freeing it again is a double free.
  if (s != old && old_block != 0) remember_unmapped(old_block);
  // The header moved with the pages, side word included, but a cached pointer to it did
  // not: the next user re-attaches (birth.cpp computes it from the segment address).
  if (s != old) s->pages_[0].xside_.store(nullptr, std::memory_order_relaxed);
  s->size_ = new_size;
  s->cookie_ = kSegmentCookie ^ reinterpret_cast<uintptr_t>(s);
  g_bytes_mapped.fetch_add(int64_t(new_size) - int64_t(old_size), std::memory_order_relaxed);
  if (new_size > old_size) note_committed_peak();
  return s;
}

bool segment_block_was_unmapped(uintptr_t p) {
  if (p == 0) return false;  // an empty slot
  // Bound: kUnmappedRing entries.
  for (unsigned i = 0; i < kUnmappedRing; ++i)
    if (g_unmapped[i].load(std::memory_order_acquire) == p) return true;
  return false;
}

size_t page_area(const Segment* s, const Page* pg) {
  if (s->kind_ == SegmentKind::kSmall) return pg->index_ == 0 ? 0 : size_t(1) << kSmallPageShift;
  if (s->kind_ == SegmentKind::kMedium)
    return (size_t(1) << kMediumPageShift) - (pg->index_ == 0 ? kHeaderSize : 0);
  return s->size_ - kHeaderSize;
}

Segment* segment_alloc(SegmentKind kind, size_t size, uint64_t units) {
  bool fresh = false;
  // A standard segment: the cached one whose resident units fit the caller's best
  // (cache_take). A huge request reuses a cached huge segment's
  // resident pages: the smallest that fits (given back down to the request when it is more
  // than four times as big), else the largest smaller one, grown by mremap (its pages move
  // with it; only the extension is new memory).
  Segment* s = size == kSegmentSize ? cache_take(size, size, 0, units)
                                     : cache_take(size, ~size_t(0), kSegmentSize + 1);
  if (s != nullptr && s->size_ != size && (s->size_ < size || s->size_ > 4 * size)) {
    Segment* r = segment_resize(s, size);
    if (r == nullptr) {
      unmap_segment(s);
      s = nullptr;
    } else {
      s = r;
    }
  }
  if (s != nullptr) {
    size = s->size_;
  } else {
    if (size == kSegmentSize)
      purge_regret(g_cache_expired_ms.load(std::memory_order_relaxed), os::now_ms());
    void* p = os::map_aligned(size, kSegmentSize);
    if (p == nullptr) return nullptr;
    // Transparent huge pages (WFMM_HUGE_PAGES). Under 'auto' (the default) small and medium
    // segments get them once kThpAfterBytes of small and medium blocks have been in use at
    // once: a program that uses that much memory fills its segments, and on a VM whose page
    // faults are dear 4 KiB faults were a quarter of test-stress's and rptest's time. In use,
    // not mapped: many threads with a small live set each (test-stress-t16: 9 MiB in use, 180
    // MiB mapped) map many segments and fill none, and 2 MiB faults made their peak RSS 1.3x.
    // Purging a 64 KiB page splits its huge page (the rest stays resident). A small program
    // keeps 4 KiB pages and its RSS. Large and huge blocks keep 4 KiB pages under 'auto':
    // programs touch big buffers sparsely (GNU sort's output buffers, xz's match finders:
    // peak RSS 1.5-2x with 2 MiB faults; with huge pages mstress-t2's large blocks tripled
    // its RSS). 'huge' advises huge blocks (over 4 MiB), which malloc-large (written whole,
    // fresh mappings) faulted in 512 times less often, and which the segment cache now
    // mostly serves from resident pages instead (under 'auto': same time, 0.98x RSS).
    long thp = option(Opt::kHugePages);
    if ((thp == 1 && kind == SegmentKind::kHuge) ||
        (thp == 2 && (kind == SegmentKind::kSmall || kind == SegmentKind::kMedium) &&
         g_paged_in_use_peak.load(std::memory_order_relaxed) >= kThpAfterBytes))
      os::advise_huge_pages(p, size);
    s = static_cast<Segment*>(p);
    fresh = true;
    g_bytes_mapped.fetch_add(int64_t(size), std::memory_order_relaxed);
    note_committed_peak();
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

Segment* segment_reuse(Segment* s, SegmentKind kind) {
  uint16_t code = kind == SegmentKind::kSmall    ? kMapSmall
                  : kind == SegmentKind::kMedium ? kMapMedium
                                                 : kMapLarge;
  bool ok = segment_map_set(s, s->size_, code);  // its leaf exists: cannot fail
  WFMM_ASSERT(ok);
  (void)ok;
  init_header(s, kind, s->size_, false);
  return s;
}

void segment_clear_pages(Segment* s) {
  for (unsigned i = 0; i < s->page_count_; ++i) {
    Page& pg = s->pages_[i];
    pg.block_size_ = 0;
    pg.xspan_.store(0, std::memory_order_relaxed);
    pg.xheap_.store(nullptr, std::memory_order_relaxed);
  }
}

void segment_release(Segment* s) {
  s->xowner_.store(nullptr, std::memory_order_relaxed);
  s->zero_units_ = zero_units_of(s);  // before the page descriptors are cleared
  // A stale free into a cached segment must find no block: clear every page descriptor.
  segment_clear_pages(s);
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
  // Admitted while the entries stay below 16 x limit and the standard segments' resident
  // bytes within limit x 4 MiB (below `limit` entries that always holds: the old rule).
  // Both counters are raised first and lowered again on refusal (one RMW each, wait-free);
  // a concurrent release may be refused for a moment too many, never admitted beyond.
  s->cached_resident_ =
      huge ? 0 : int64_t(64 - __builtin_popcountll(s->zero_units_)) << kSmallPageShift;
  if (cacheable) {
    long n = g_segments_cached.fetch_add(1, std::memory_order_relaxed);
    int64_t r = g_cache_resident.fetch_add(s->cached_resident_, std::memory_order_relaxed) +
                s->cached_resident_;
    if (n < kCacheEntriesPerLimit * limit && r <= int64_t(limit) * int64_t(kSegmentSize)) {
      s->freed_at_ms_ = os::now_ms();
      g_cache.push(s);
      return;
    }
    cache_uncount(s);
  }
  unmap_segment(s);
}

namespace {
// Calls of segment_cache_expire that got the cache's consumer flag (written under it).
unsigned g_expire_calls = 0;
}  // namespace

bool segment_cache_expire(bool force) {
  if (g_segments_cached.load(std::memory_order_relaxed) <= 0 || !g_cache.try_begin()) return false;
  g_cache.drain(force ? ~0u : kDrainBudget);
  uint64_t now = os::now_ms();
  uint64_t delay = purge_delay_ms(now);
  unsigned done = 0;
  Segment* expired = nullptr;
  bool expired_standard = false;
  Segment** pp = &g_cache.owned();
  // Newest entries come first. Every 16th call looks past the first 64: with up to
  // kCacheEntriesPerLimit x segment_cache entries, older ones behind 64 fresh ones would
  // otherwise neither expire nor be taken (cache_take looks at 32) while a busy program
  // keeps the head fresh, and their resident bytes would keep new segments out.
  unsigned window = (++g_expire_calls & 15) == 0 ? ~0u : 64;
  // Bound: kPurgeLimit unmaps, and 64 inspections (every 16th call the whole cache: at most
  // kCacheEntriesPerLimit x segment_cache entries plus in-flight pushes), unless force
  // (then the whole cache).
  for (unsigned i = 0; *pp != nullptr && (force || (done < kPurgeLimit && i < window)); ++i) {
    Segment* s = *pp;
    // (Saturating: a segment released by another thread since `now` was read is young, not
    // ages old.)
    if (force || ms_since(s->freed_at_ms_, now) >= delay) {
      *pp = s->handoff_link;
      --g_cache.owned_count();
      cache_uncount(s);
      expired_standard |= s->size_ == kSegmentSize;
      s->handoff_link = expired;
      expired = s;
      ++done;
    } else {
      pp = &s->handoff_link;
    }
  }
  g_cache.end();
  if (expired_standard && !force) g_cache_expired_ms.store(now, std::memory_order_relaxed);
  // Unmapped after the flag is given back: cache_take waits for the flag (briefly), never
  // for a system call.
  while (Segment* s = expired) {
    expired = s->handoff_link;
    unmap_segment(s);
  }
  return done > 0;
}

void segment_abandon(Segment* s) {
  s->xowner_.store(nullptr, std::memory_order_relaxed);
  // Round robin: each list gets an even share, so trying them in turn finds one soon.
  unsigned i = g_abandon_next.fetch_add(1, std::memory_order_relaxed) % kAbandonLists;
  g_abandoned[i].push(s);  // (H1): everything the exiting thread wrote is visible to the adopter
}

Segment* segment_take_abandoned(unsigned start) {
  // Bound: kAbandonLists flags tried; per list one drain (kDrainBudget) and one take.
  for (unsigned k = 0; k < kAbandonLists; ++k) {
    auto& l = g_abandoned[(start + k) % kAbandonLists];
    if (!l.has_work() || !l.try_begin()) continue;
    l.drain(kDrainBudget);
    Segment* s = l.take_front();
    l.end();
    if (s != nullptr) return s;
  }
  return nullptr;
}

void segment_fork_prepare() {
  g_cache.acquire_for_fork();
  for (auto& l : g_abandoned) l.acquire_for_fork();
}

void segment_fork_release() {
  for (auto& l : g_abandoned) l.end();
  g_cache.end();
}

}  // namespace wfmm
