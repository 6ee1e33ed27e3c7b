// The segment map's storage and its writers (segment map/unmap, a slow path).
#include "segment_map.h"

#include <utility>

#include "os/os.h"

namespace wfmm {

namespace {

// Every leaf not mapped yet: all zero ("not ours"), never written.
SegmentMapLeaf g_zero_leaf;

template <size_t... I>
constexpr SegmentMapTop make_top(std::index_sequence<I...>) {
  return SegmentMapTop{{((void)I, &g_zero_leaf[0])...}};
}

// The leaf covering chunk i, mapped on first use. Wait-free: one CAS; a loser unmaps its
// own leaf and uses the winner's. Null if the OS refuses the memory.
std::atomic<uint16_t>* leaf_for(uintptr_t i) {
  auto& slot = g_segment_map.leaf[i >> kLeafBits];
  std::atomic<uint16_t>* leaf = slot.load(std::memory_order_acquire);
  if (leaf != &g_zero_leaf[0]) return leaf;
  void* mem = os::map_aligned(sizeof(SegmentMapLeaf), os::kPageSize);
  if (mem == nullptr) return nullptr;
  auto* fresh = static_cast<std::atomic<uint16_t>*>(mem);
  // (M1) release: the zeroed leaf is complete before readers can reach it.
  if (slot.compare_exchange_strong(leaf, fresh, std::memory_order_acq_rel)) return fresh;
  os::unmap(mem, sizeof(SegmentMapLeaf));
  return leaf;
}

}  // namespace

constinit SegmentMapTop g_segment_map = make_top(std::make_index_sequence<kLeafCount>{});

bool segment_map_set(void* seg, size_t size, uint16_t code) {
  uintptr_t first = reinterpret_cast<uintptr_t>(seg) >> kSegmentShift;
  size_t n = (size + kSegmentSize - 1) >> kSegmentShift;
  // Leaves first, so a failure leaves nothing half-marked. Bound: n / kLeafEntries + 2.
  for (uintptr_t i = first; i < first + n; i = (i | (kLeafEntries - 1)) + 1) {
    if (leaf_for(i) == nullptr) return false;
  }
  // Bound: n <= kMaxMappingSegments.
  for (size_t k = 0; k < n; ++k) {
    uintptr_t i = first + k;
    uint16_t v = k == 0 ? code : uint16_t(k + kMapLarge);
    g_segment_map.leaf[i >> kLeafBits].load(std::memory_order_relaxed)[i & (kLeafEntries - 1)].store(
        v, std::memory_order_release);
  }
  return true;
}

void segment_map_clear(void* seg, size_t size) {
  uintptr_t first = reinterpret_cast<uintptr_t>(seg) >> kSegmentShift;
  size_t n = (size + kSegmentSize - 1) >> kSegmentShift;
  // Bound: n <= kMaxMappingSegments. The leaves exist: set mapped them.
  for (size_t k = 0; k < n; ++k) {
    uintptr_t i = first + k;
    g_segment_map.leaf[i >> kLeafBits].load(std::memory_order_relaxed)[i & (kLeafEntries - 1)].store(
        0, std::memory_order_release);
  }
}

}  // namespace wfmm
