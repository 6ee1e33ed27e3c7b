// Segments: obtaining them (cache or OS), initialising their page descriptors, giving them
// back (cache, then OS after the purge delay), and the abandoned-segment handoff that lets
// live threads adopt what exited threads left behind.
#pragma once
#include "types.h"

namespace wfmm {

// Global byte counters (slow paths only; wait-free fetch_add).
extern std::atomic<int64_t> g_bytes_mapped;
// The most bytes in use sampled so far (stats.cpp; sampled as committed memory grows).
extern std::atomic<int64_t> g_in_use_peak;
// Of those, bytes in small and medium blocks (the huge-page rule of segment_alloc).
extern std::atomic<int64_t> g_paged_in_use_peak;
extern std::atomic<int64_t> g_bytes_purged;  // mapped bytes currently purged (not committed)
extern std::atomic<int64_t> g_segments_cached;
// The most bytes committed (mapped - purged) at once, for statistics. Raised by
// note_committed_peak() after each rise of the committed bytes (a mapping, a purged page
// reused); one CAS, so a rise racing another may go unrecorded by less than what that
// other thread recorded (the figure is a statistic, never a bound anything relies on).
extern std::atomic<int64_t> g_bytes_committed_peak;
void note_committed_peak();

// A mapping of `size` bytes (kSegmentSize for small/medium/large; larger for huge), aligned
// to kSegmentSize, registered in the segment map, header constructed for `kind`.
// `units`: the 64 KiB units of a standard segment the caller will write (a large block's;
// all of them for small and medium pages): a cached segment whose resident units fit them
// best is taken. Null on OOM.
Segment* segment_alloc(SegmentKind kind, size_t size, uint64_t units = ~uint64_t(0));
// Resizes a huge segment's mapping (mremap: in place, or moved without copying) and its
// map entries; returns its new address, or null with the segment untouched.
Segment* segment_resize(Segment* s, size_t new_size);
// Re-initialises a standard segment (from a thread's stash) as `kind`.
Segment* segment_reuse(Segment* s, SegmentKind kind);
// Clears every page descriptor so a stale free into the segment finds no block.
void segment_clear_pages(Segment* s);
// Gives an unowned segment with no live block back: to the cache if it is allowed, else OS.
void segment_release(Segment* s);
// Hands a segment with live blocks to whoever adopts it next. Pre: no page has an owner.
void segment_abandon(Segment* s);
// Takes one abandoned segment, oldest first, trying each list from `start` on (a list whose
// flag another adopter holds is skipped). Null if none could be taken.
Segment* segment_take_abandoned(unsigned start);
// The purge delay now, in ms: the option's, stretched while memory given back was soon
// needed again (purge_regret). Every purge of empty pages and cached segments waits this.
uint64_t purge_delay_ms(uint64_t now);
// Memory given back at given_ms (a page's purge, a cached segment's expiry) is needed again
// now: if that was within one delay, the delay doubles (at most once per delay).
void purge_regret(uint64_t given_ms, uint64_t now);
// Unmaps cached segments idle longer than the purge delay (all of them if force). Bound:
// kPurgeLimit unmaps per call unless force. True if anything was unmapped.
bool segment_cache_expire(bool force);
// fork: take the cache's and the abandoned list's consumer flags before, give them back
// after (in parent and child), so neither list is copied half-updated.
void segment_fork_prepare();
void segment_fork_release();

// True if p is the start of a large or huge block whose range was unmapped (or moved away
// by mremap) among the last 1024 such: a free of p is a double free. Error paths only.
bool segment_block_was_unmapped(uintptr_t p);

// Area of page `pg` usable for blocks.
size_t page_area(const Segment* s, const Page* pg);

}  // namespace wfmm
