// Address -> segment in O(1) for any address: one 16-bit entry per possible 4 MiB-aligned
// chunk of the 47-bit user address space, in two levels: 512 leaf pointers (4 KiB of .bss)
// to leaves of 65536 entries (128 KiB, each covering 256 GiB of address space) mapped when a
// segment first lands in their range. Unmapped leaves point at one shared zero leaf, so a
// lookup is two loads and no test. (A flat table would be 64 MiB of address space, which
// makes small programs fail under RLIMIT_AS.) The entry also tells the free fast path the
// page size, so it never reads the segment header:
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
inline constexpr unsigned kLeafBits = 16;
inline constexpr size_t kLeafEntries = size_t(1) << kLeafBits;
inline constexpr size_t kLeafCount = kSegmentMapEntries >> kLeafBits;

using SegmentMapLeaf = std::atomic<uint16_t>[kLeafEntries];
struct SegmentMapTop {
  std::atomic<std::atomic<uint16_t>*> leaf[kLeafCount];
};
extern SegmentMapTop g_segment_map WFMM_HIDDEN;

// The map entry for address a (0 for addresses outside the user address space).
WFMM_INLINE uint16_t segment_map_entry(uintptr_t a) {
  uintptr_t i = a >> kSegmentShift;
  if (WFMM_UNLIKELY(i >= kSegmentMapEntries)) return 0;
  // acquire: pairs with the release that publishes a new (zeroed) leaf (M1).
  std::atomic<uint16_t>* leaf = g_segment_map.leaf[i >> kLeafBits].load(std::memory_order_acquire);
  // relaxed: entries change only when a segment is mapped or unmapped, which happens-before
  // any pointer into it is handed out (through malloc's return) or after its last block died.
  return leaf[i & (kLeafEntries - 1)].load(std::memory_order_relaxed);
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
// chunks. set returns false (and marks nothing) if a leaf could not be mapped.
bool segment_map_set(void* seg, size_t size, uint16_t code);
void segment_map_clear(void* seg, size_t size);

}  // namespace wfmm
