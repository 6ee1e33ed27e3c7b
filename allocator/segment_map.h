// Address -> segment in O(1) for any address: one 16-bit entry per possible 4 MiB-aligned
// chunk of the 47-bit user address space (64 MiB of zero-page-backed .bss; only entries near
// our segments are ever touched). The entry also tells the free fast path the page size,
// so it never reads the segment header:
//   0                  not ours
//   kMapSmall (1)      a small-page segment starts here
//   kMapMedium (2)     a medium-page segment starts here
//   kMapLarge (3)      a large or huge segment starts here
//   d >= kMapHugeTail  d - kMapLarge chunks after the start of a huge segment
#pragma once
#include <atomic>

#include "config.h"

namespace wfmm {

struct Segment;

inline constexpr uint16_t kMapSmall = 1;
inline constexpr uint16_t kMapMedium = 2;
inline constexpr uint16_t kMapLarge = 3;
inline constexpr uint16_t kMapHugeTail = 4;

inline constexpr size_t kSegmentMapEntries = size_t(1) << (kAddressBits - kSegmentShift);
extern std::atomic<uint16_t> g_segment_map[kSegmentMapEntries];

// The map entry for address a (0 for addresses outside the user address space).
WFMM_INLINE uint16_t segment_map_entry(uintptr_t a) {
  uintptr_t i = a >> kSegmentShift;
  if (WFMM_UNLIKELY(i >= kSegmentMapEntries)) return 0;
  // relaxed: entries change only when a segment is mapped or unmapped, which happens-before
  // any pointer into it is handed out (through malloc's return) or after its last block died.
  return g_segment_map[i].load(std::memory_order_relaxed);
}

// The segment containing a (interior pointers of huge blocks included), or null.
// Callers must still check the address is below the segment's end.
inline Segment* segment_containing(uintptr_t a) {
  uint16_t e = segment_map_entry(a);
  if (e == 0) return nullptr;
  uintptr_t chunk = (a >> kSegmentShift) - (e >= kMapHugeTail ? e - kMapLarge : 0);
  return reinterpret_cast<Segment*>(chunk << kSegmentShift);
}

// Mark [seg, seg+size) as ours (first chunk gets `code`, one of kMapSmall/Medium/Large) /
// not ours. Pre: seg is kSegmentSize-aligned and size spans at most kMaxMappingSegments
// chunks.
void segment_map_set(void* seg, size_t size, uint16_t code);
void segment_map_clear(void* seg, size_t size);

}  // namespace wfmm
