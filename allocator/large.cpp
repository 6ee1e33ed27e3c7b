// Large and huge blocks. The block's state word (xlarge_live_) is exchanged on free, which
// detects double frees exactly; the segment goes straight back to the cache or the OS.
#include "large.h"

#include "birth.h"
#include "error.h"
#include "os/os.h"
#include "segment.h"
#include "segment_map.h"

namespace wfmm {

namespace {

size_t round_page(size_t n) { return (n + os::kPageSize - 1) & ~(os::kPageSize - 1); }

constexpr size_t kHugePage = size_t(2) << 20;
size_t round_huge(size_t n) { return (n + kHugePage - 1) & ~(kHugePage - 1); }

// The 64 KiB units of a standard segment that its first `end` bytes touch.
uint64_t units_below(size_t end) {
  unsigned last = unsigned((end - 1) >> kSmallPageShift);
  return last >= 63 ? ~uint64_t(0) : (uint64_t(2) << last) - 1;
}

// Offset of the block inside its segment: after the header, at the requested alignment.
size_t block_offset(uintptr_t seg, size_t align) {
  if (align <= kHeaderSize) return kHeaderSize;
  uintptr_t b = (seg + kHeaderSize + align - 1) & ~(uintptr_t(align) - 1);
  return b - seg;
}

}  // namespace

void* large_alloc(size_t n, size_t align) {
  size_t usable = round_page(n);
  size_t slack = align > kHeaderSize ? align : 0;  // worst case to reach the alignment
  size_t need = kHeaderSize + slack + usable;
  if (need < usable || usable > kMaxAllocSize) return nullptr;
  SegmentKind kind = need <= kSegmentSize ? SegmentKind::kLarge : SegmentKind::kHuge;
  // Huge mappings end at a 2 MiB boundary: with huge pages (WFMM_HUGE_PAGES=huge) their tail
  // is a huge page too, instead of up to 511 small ones faulted one by one.
  size_t size = kind == SegmentKind::kLarge ? kSegmentSize : round_huge(need);
  if ((size >> kSegmentShift) >= kMaxMappingSegments) return nullptr;
  Heap* h = t_heap;
  Segment* s;
  if (kind == SegmentKind::kLarge && h->large_stash_ != nullptr) {
    s = segment_reuse(h->large_stash_, kind);
    h->large_stash_ = nullptr;
  } else {
    s = segment_alloc(kind, size, kind == SegmentKind::kLarge ? units_below(need) : ~uint64_t(0));
  }
  if (s == nullptr) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(s);
  size_t off = block_offset(base, align);
  Page* pg = &s->pages_[0];
  pg->start_ = base + off;
  pg->block_size_ = uint32_t(usable > 0xffffffffu ? 0 : usable);  // huge: see usable_of
  pg->reserved_ = 1;
  pg->xspan_.store(1, std::memory_order_relaxed);
  pg->xlarge_live_.store(1, std::memory_order_release);
  if (kind == SegmentKind::kLarge) {
    // What calloc must clear: up to the end of the last unit under the block that is not
    // known zero (unit 0, the header, never is). The block's units are dirty from now on.
    uint64_t covered = units_below(off + usable);
    uint64_t dirty = covered & ~s->zero_units_;
    size_t dirty_end = size_t(64 - __builtin_clzll(dirty)) << kSmallPageShift;  // dirty != 0
    s->block_dirty_ = dirty_end <= off ? 0 : dirty_end - off < usable ? dirty_end - off : usable;
    s->zero_units_ &= ~covered;
  } else {
    s->block_dirty_ = s->fresh_ ? 0 : usable;
  }
  count_malloc(usable);
  birth_note(h, pg, reinterpret_cast<void*>(pg->start_));
  return reinterpret_cast<void*>(pg->start_);
}

Page* large_page_of(Segment* s, const void* p) {
  Page* pg = &s->pages_[0];
  if (reinterpret_cast<uintptr_t>(p) != pg->start_ ||
      pg->xlarge_live_.load(std::memory_order_acquire) != 1)
    return nullptr;
  return pg;
}

// Usable bytes of a large/huge block: huge sizes do not fit the 32-bit block_size_.
size_t large_usable(Segment* s, Page* pg) {
  if (pg->block_size_ != 0) return pg->block_size_;
  return s->size_ - (pg->start_ - reinterpret_cast<uintptr_t>(s));
}

void large_free(Segment* s, void* p, const char* who) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a >= reinterpret_cast<uintptr_t>(s) + s->size_ ||
      (s->kind_ != SegmentKind::kLarge && s->kind_ != SegmentKind::kHuge)) {
    return report_error(who, "invalid pointer (not allocated by wfmm)", p);
  }
  Page* pg = &s->pages_[0];
  if (a != pg->start_)
    return report_error(who, "invalid pointer (inside a block, not its start)", p);
  // acq_rel: the block's last use happens-before the segment's reuse by another thread.
  if (pg->xlarge_live_.exchange(0, std::memory_order_acq_rel) != 1)
    return report_error(who, "double free of", p);
  count_free(large_usable(s, pg));
  Heap* h = t_heap;
  if (s->size_ == kSegmentSize && h != &g_empty_heap && h->large_stash_ == nullptr) {
    segment_clear_pages(s);  // a stale free now finds no live block
    h->large_stash_ = s;
    h->large_stash_ms_ = os::now_ms();
    return;
  }
  segment_release(s);
}

void* large_resize(Segment* s, void* /*p*/, size_t n) {
  Page* pg = &s->pages_[0];
  size_t off = pg->start_ - reinterpret_cast<uintptr_t>(s);
  size_t old_usable = large_usable(s, pg);
  size_t usable = round_page(n);
  if (s->kind_ == SegmentKind::kLarge) {
    if (off + usable > kSegmentSize || usable > 0xffffffffu) return nullptr;
    pg->block_size_ = uint32_t(usable);  // grows or shrinks inside its own segment
    s->zero_units_ &= ~units_below(off + usable);
  } else {
    if (n <= kLargeMax / 2) return nullptr;  // much smaller: move to a cheaper home
    size_t new_size = round_page(off + usable);
    if ((new_size >> kSegmentShift) >= kMaxMappingSegments) return nullptr;
    size_t old_size = s->size_;
    if (new_size != old_size) {
      s = segment_resize(s, new_size);
      if (s == nullptr) return nullptr;
    }
    pg = &s->pages_[0];
    pg->start_ = reinterpret_cast<uintptr_t>(s) + off;
    pg->block_size_ = usable > 0xffffffffu ? 0 : uint32_t(usable);
  }
  size_t new_usable = large_usable(s, pg);
  count_free(old_usable);
  count_malloc(new_usable);
  return reinterpret_cast<void*>(pg->start_);
}

}  // namespace wfmm
