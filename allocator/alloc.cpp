// The allocator's internal API beyond malloc/free: aligned and zeroed allocation, realloc,
// usable size and block lookup. The C API (interpose/api.cpp) adds errno and overflow
// semantics on top; this layer never touches errno.
#include <string.h>

#include "heap.h"
#include "large.h"
#include "os/os.h"
#include "segment.h"

namespace wfmm {

namespace {

// The live small/medium block at p, or null. Pre: segment map entry of p is 1.
Page* small_page_of(Segment* s, uintptr_t a) {
  if (s->kind_ != SegmentKind::kSmall && s->kind_ != SegmentKind::kMedium) return nullptr;
  Page* pg = s->page_of(a);
  return pg->is_block_start(a) ? pg : nullptr;
}

// calloc of a block (or its tail) that reads zero already: one store of zero into each of
// its 4 KiB pages. A program that reads calloc'd memory before it writes it (checks,
// counters, hash tables) otherwise takes two faults per page, one mapping the kernel's zero
// page and one copying it on the first write (test-stress: 30% of its page faults were such
// second faults). A store per page, not a memset: pages already resident cost a cached store
// each. Blocks over kPrefaultMax stay untouched: a sparse calloc'd table of megabytes keeps
// its untouched pages out of RSS. A partial first page is skipped: malloc's link store (or
// calloc's memset of the dirty part) wrote it. Bound: n / 4 KiB <= 256 stores.
inline constexpr size_t kPrefaultMax = size_t(1) << 20;
void prefault_zero(void* p, size_t n) {
  uintptr_t a = (reinterpret_cast<uintptr_t>(p) + os::kPageSize - 1) & ~(os::kPageSize - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
  for (; a < end; a += os::kPageSize)
    __atomic_store_n(reinterpret_cast<char*>(a), char(0), __ATOMIC_RELAXED);
}

}  // namespace

void* alloc_aligned(size_t n, size_t align) {
  if (align <= 16) return heap_malloc(n);
  size_t m = n < align ? align : n;
  if (m <= kMediumMax && align <= (size_t(1) << kSmallPageShift)) {
    // Page starts are 64 KiB aligned and blocks sit at multiples of their size from it,
    // so a class whose size is a multiple of `align` gives aligned blocks. Bound: at most
    // kClassesPerDoubling classes until a power of two, which every smaller align divides.
    for (unsigned c = size_class(m); c < kNumClasses; ++c) {
      if ((class_size(c) & (align - 1)) == 0) {
        void* p = heap_malloc(class_size(c));
        WFMM_ASSERT((reinterpret_cast<uintptr_t>(p) & (align - 1)) == 0);
        return p;
      }
    }
  }
  heap_thread_start();
  return large_alloc(m, align);
}

void* alloc_zeroed(size_t n) {
  if (n > kMediumMax) {
    heap_thread_start();
    void* p = large_alloc(n, 0);
    if (p == nullptr) return nullptr;
    // Only the part not known zero (Segment::block_dirty_; a fresh mapping: none), so the
    // pages that read zero are not written (faulted in) here.
    Segment* s = segment_containing(reinterpret_cast<uintptr_t>(p));
    size_t dirty = n < s->block_dirty_ ? n : s->block_dirty_;
    memset(p, 0, dirty);
    if (n <= kPrefaultMax) prefault_zero(static_cast<char*>(p) + dirty, n - dirty);
    return p;
  }
  void* p = heap_malloc(n);
  if (p == nullptr) return nullptr;
  // A block from a list of never-used blocks of zeroed memory (Page::free_is_zero_) reads
  // zero already (malloc cleared its link word): no memset, and its pages stay untouched
  // until the program writes them. The flag is read after the pop: a pop that ended the
  // list and swapped freed blocks in cleared it, which only costs a needless memset.
  // A malloc of at most kMediumMax bytes comes from a small or medium page.
  Segment* s = segment_of(p);
  if (!s->page_of(reinterpret_cast<uintptr_t>(p))->free_is_zero_) {
    memset(p, 0, n);
    return p;
  }
  prefault_zero(p, n);
  return p;
}

size_t usable_size(const void* p, const char* who) {
  if (p == nullptr) return 0;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint16_t e = segment_map_entry(a);
  if (e == 0) {
    report_unmapped(who, "use of a freed block", p);
    return 0;
  }
  Segment* s = segment_containing(a);
  if (e == kMapSmall || e == kMapMedium) {
    if (Page* pg = small_page_of(s, a)) return pg->block_size_;
  }
  if (s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge) {
    if (Page* pg = large_page_of(s, p)) {
      return pg->block_size_ != 0 ? pg->block_size_
                                  : s->size_ - (pg->start_ - reinterpret_cast<uintptr_t>(s));
    }
  }
  report_error(who, "invalid pointer (not the start of a live block)", p);
  return 0;
}

void* reallocate(void* p, size_t n, const char* who) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint16_t e = segment_map_entry(a);
  if (e == 0) {
    report_unmapped(who, "use of a freed block", p);
    return nullptr;
  }
  if (WFMM_UNLIKELY(block_retired(p))) {
    report_error(who, kFreeOfRetired, p);
    return nullptr;
  }
  Segment* s = segment_containing(a);
  size_t old;
  if (s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge) {
    Page* pg = large_page_of(s, p);
    if (pg == nullptr) {
      report_error(who, "invalid pointer (not the start of a live block)", p);
      return nullptr;
    }
    old = pg->block_size_ != 0 ? pg->block_size_
                               : s->size_ - (pg->start_ - reinterpret_cast<uintptr_t>(s));
    if (n > kMediumMax) {
      if (void* q = large_resize(s, p, n)) return q;
    }
  } else {
    Page* pg = small_page_of(s, a);
    if (pg == nullptr) {
      report_error(who, "invalid pointer (not the start of a block)", p);
      return nullptr;
    }
    old = pg->block_size_;
    Block* b = static_cast<Block*>(p);
    if (pg->link_looks_free(b->next.load(std::memory_order_relaxed)) &&
        (pg->xheap_.load(std::memory_order_relaxed) != t_heap || page_holds_free(pg, b))) {
      report_error(who, "use of a freed block", p);
      return nullptr;
    }
    // Stay in place while the block is at most twice the request.
    if (n <= old && n >= old / 2) return p;
  }
  void* q = heap_malloc(n);
  if (q == nullptr) return nullptr;  // the old block stays valid
  memcpy(q, p, n < old ? n : old);
  heap_free(p, who);
  return q;
}

bool block_lookup(const void* p, void** start, size_t* size) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  Segment* s = segment_containing(a);
  if (s == nullptr || a >= reinterpret_cast<uintptr_t>(s) + s->size_) return false;
  if (s->kind_ == SegmentKind::kLarge || s->kind_ == SegmentKind::kHuge) {
    Page* pg = &s->pages_[0];
    size_t usable = pg->block_size_ != 0 ? pg->block_size_
                                         : s->size_ - (pg->start_ - reinterpret_cast<uintptr_t>(s));
    if (pg->xlarge_live_.load(std::memory_order_acquire) != 1 || a < pg->start_ ||
        a - pg->start_ >= usable)
      return false;
    *start = reinterpret_cast<void*>(pg->start_);
    *size = usable;
    return true;
  }
  Page* pg = s->page_of(a);
  uintptr_t off = a - pg->start_;
  if (pg->block_size_ == 0 || off >= pg->span()) return false;
  uintptr_t idx = (off * pg->magic_) >> 40;
  *start = reinterpret_cast<void*>(pg->start_ + idx * pg->block_size_);
  *size = pg->block_size_;
  return true;
}

}  // namespace wfmm
