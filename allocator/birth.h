// Birth eras: the allocator's side of safe memory reclamation. Every block has one side
// word (outside the block, in its segment's metadata): its birth era while live, a tagged
// link to its retire batch once retired. Recording starts process-wide at the first use of
// reclamation (g_track); until then malloc pays one predictable branch, and blocks from
// before count as born in era 0, which is safe (an older birth is more conservative).
#pragma once
#include <atomic>

#include "segment_map.h"
#include "types.h"

struct wfmm_stats;

namespace wfmm {

// The global era clock; starts at 1 (era 0 = "born before tracking"). Exported as
// wfmm_era_v1 for include/wfmm/fast.h's inline protect.
extern std::atomic<uint64_t> g_era __asm__("wfmm_era_v1") __attribute__((visibility("default")));
// True once any thread used reclamation: allocations record birth eras from then on.
extern std::atomic<bool> g_track WFMM_HIDDEN;
// Called (by the allocating thread) before each era tick: the reclamation layer helps
// pending slow-path protects there. Set once by reclaim at its initialisation.
extern std::atomic<void (*)()> g_era_hook;
// Called after every tracked allocation while deferred free is on: the allocation is one
// of the thread's allocator calls, which end its implicit region.
// Returns the era its implicit reservation now holds.
extern std::atomic<uint64_t (*)()> g_alloc_hook;
// Called in a fork child (after the allocator's own reset), before fork in the parent,
// and after it in the parent.
extern std::atomic<void (*)()> g_fork_child_hook;
extern std::atomic<void (*)()> g_fork_prepare_hook;
extern std::atomic<void (*)()> g_fork_parent_hook;
// Fills the reclamation fields of the statistics.
extern std::atomic<void (*)(::wfmm_stats*)> g_stats_hook;

// (The hooks are set once, with release, by reclaim's initialisation; read with acquire.)

// Side word values: an era (< 2^63), kRetiredBit | address of the block's batch, or
// kFreedMark once reclamation freed the block (until a malloc records a new birth over it:
// once anything was retired, every malloc records one). A retire that checked the block
// while it was live and reads its side word only after reclamation freed it then fails its
// CAS instead of retiring a free block a second time (found by reclaim/model, -DSTRADDLE).
inline constexpr uint64_t kRetiredBit = uint64_t(1) << 63;
inline constexpr uint64_t kFreedMark = kRetiredBit;
// True for a side word that links the block to its batch (retired, not reclaimed yet).
inline constexpr bool side_retired(uint64_t v) { return (v & kRetiredBit) != 0 && v != kFreedMark; }

// The index of the side word of the block at (or containing) address a of pg, or at offset
// off from its start: one multiply by the page's reciprocal of the block size.
WFMM_INLINE size_t side_index_at(const Page* pg, uintptr_t off) {
  return (off * pg->magic_) >> 40;
}
WFMM_INLINE size_t side_index(const Page* pg, uintptr_t a) {
  return side_index_at(pg, a - pg->start_);
}

// Out of line: records b's birth era in its page's side array (attaching one if needed)
// and ticks the era every era_freq tracked allocations of this heap.
void birth_record(Heap* h, Page* pg, void* b);

// birth_note once g_track was seen on (malloc_birth: the fast path tested it already).
WFMM_INLINE void birth_note_tracked(Heap* h, Page* pg, void* b) {
  std::atomic<uint64_t>* side = pg->xside_.load(std::memory_order_acquire);
  uint64_t era = g_era.load(std::memory_order_relaxed);
  // The hook (deferred free's end of the implicit region) has nothing to do while the
  // era is the one it last saw on this thread.
  if (WFMM_LIKELY(side != nullptr && h->era_countdown_ > 1 &&
                  (h->hook_era_ == era ||
                   g_alloc_hook.load(std::memory_order_relaxed) == nullptr))) {
    --h->era_countdown_;
    side[side_index(pg, reinterpret_cast<uintptr_t>(b))].store(era, std::memory_order_relaxed);
    return;
  }
  birth_record(h, pg, b);
}

// The malloc paths call this after taking a block from pg. With reclamation in use the
// common case is inline: one store of the era into the block's side word (E2 in
// reclaim/README.md); attaching a side array, ticking the era and deferred free's hook are
// out of line.
WFMM_INLINE void birth_note(Heap* h, Page* pg, void* b) {
  // relaxed: a thread that misses the switch-on records nothing; its block reads as era 0.
  if (WFMM_UNLIKELY(g_track.load(std::memory_order_relaxed))) birth_note_tracked(h, pg, b);
}

// Starts recording (idempotent; inline: every retire calls it).
WFMM_INLINE void birth_tracking_on() {
  if (WFMM_UNLIKELY(!g_track.load(std::memory_order_relaxed)))
    g_track.store(true, std::memory_order_seq_cst);
}

// True if the block starting at address a of pg is retired and not reclaimed yet: freeing or
// reallocating it now would hand it out again while readers may still hold it. The page's
// side array is null until a tracked block came from the page (g_track was on by then): a
// page without one holds no retired block, and the test is one predictable branch on a
// line the free path has read already.
WFMM_INLINE bool page_block_retired(const Page* pg, uintptr_t a) {
  std::atomic<uint64_t>* side = pg->xside_.load(std::memory_order_acquire);
  if (WFMM_LIKELY(side == nullptr)) return false;
  // relaxed: the retire and this free are ordered by the program (a free racing with a retire
  // of the same block is the program's double free; retire's CAS, or for a retire its own
  // reservation covers, the reconciliation at reclamation, catches retire/retire).
  return side_retired(side[side_index(pg, a)].load(std::memory_order_relaxed));
}
// block_for_retire's common case inline (every retire and deferred free): a small or
// medium block start whose link word does not look free, on a page with its side array.
// False for anything else, with nothing set: block_for_retire then decides and explains.
WFMM_INLINE bool block_side_fast(void* p, std::atomic<uint64_t>** side_out, size_t* size) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  unsigned e = segment_map_entry(a);
  if (WFMM_UNLIKELY(e - kMapSmall > kMapMedium - kMapSmall)) return false;
  // A small or medium segment is one map chunk: its header is at the masked address.
  Page* pg = segment_of(p)->page_of(a);
  // is_block_start's test, written out: the offset is reused below and span() is an atomic
  // load the compiler does not merge (as in free_local; +2 instructions per retire through
  // is_block_start, callgrind).
  uintptr_t off = a - pg->start_;
  if (WFMM_UNLIKELY(off >= pg->span() || ((off * pg->magic_low_) >> 43) != 0)) return false;
  uintptr_t link = static_cast<Block*>(p)->next.load(std::memory_order_relaxed);
  if (WFMM_UNLIKELY(pg->link_looks_free(link))) return false;
  std::atomic<uint64_t>* side = pg->xside_.load(std::memory_order_acquire);
  if (WFMM_UNLIKELY(side == nullptr)) return false;
  *side_out = side + side_index_at(pg, off);  // (start_ is not read again after the acquire)
  *size = pg->block_size_;
  return true;
}

// The same for any block wfmm handed out (small to huge); false for other addresses.
bool block_retired(const void* p);
inline constexpr const char* kFreeOfRetired =
    "free of a retired block (wfmm_retire'd, not reclaimed yet; readers may hold it):";

// For retire: p must be the start of a live block. On success returns null and sets *side
// to its side word (attached on demand) and *size to its usable size; otherwise returns the
// reason to report ("invalid pointer (not allocated by wfmm)", ...).
const char* block_for_retire(void* p, std::atomic<uint64_t>** side, size_t* size);
// The side word of the block starting at (or containing) p, or null if p's page has no
// side array yet (every block of it then counts as era 0, never retired). p must lie in a
// block wfmm handed out that is still allocated (live or retired).
std::atomic<uint64_t>* side_word_containing(const void* p, void** start);

}  // namespace wfmm
