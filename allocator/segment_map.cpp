// The segment map's storage and its writers (segment map/unmap, a slow path).
#include "segment_map.h"

namespace wfmm {

std::atomic<uint16_t> g_segment_map[kSegmentMapEntries];

void segment_map_set(void* seg, size_t size, uint16_t code) {
  uintptr_t first = reinterpret_cast<uintptr_t>(seg) >> kSegmentShift;
  size_t n = (size + kSegmentSize - 1) >> kSegmentShift;
  g_segment_map[first].store(code, std::memory_order_release);
  // Bound: n <= kMaxMappingSegments.
  for (size_t i = 1; i < n; ++i)
    g_segment_map[first + i].store(uint16_t(i + kMapLarge), std::memory_order_release);
}

void segment_map_clear(void* seg, size_t size) {
  uintptr_t first = reinterpret_cast<uintptr_t>(seg) >> kSegmentShift;
  size_t n = (size + kSegmentSize - 1) >> kSegmentShift;
  // Bound: n <= kMaxMappingSegments.
  for (size_t i = 0; i < n; ++i) g_segment_map[first + i].store(0, std::memory_order_release);
}

}  // namespace wfmm
