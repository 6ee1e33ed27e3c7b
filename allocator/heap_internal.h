// Shared by the heap's translation units only (heap.cpp, heap_free.cpp, heap_thread.cpp): the
// page queues and the page, segment and thread steps one of them defines and another calls.
// Never included outside allocator/heap*.cpp; the allocator's interface is heap.h.
#pragma once
#include "types.h"

namespace wfmm {

// ---- heap.cpp: page queues (owner only), remote-free collection, segment list
void queue_move(Heap* h, Page* pg, PageQueue q, bool front);
void set_cur_page(Heap* h, unsigned cls, Page* pg);
void set_cur(Heap* h, unsigned cls);
void collect_remote(Page* pg);
void page_collect(Page* pg);
void segment_link(Heap* h, Segment* s);

// ---- heap_free.cpp: free pages and segments, the list cut after corruption
// forced: wfmm_collect(1) / malloc_trim, not the purge delay (purge_regret ignores it).
void page_purge(Segment* s, Page* pg, bool forced = false);
void segment_unlink(Heap* h, Segment* s);
void segment_retire_if_empty(Heap* h, Segment* s);
void page_reset_free(Segment* s, Page* pg);
void page_free(Heap* h, Page* pg, bool may_release);
void page_recount_after_cut(Page* pg);

// ---- heap_thread.cpp: thread start, purging, adoption
Heap* thread_init();
void try_set_key(Heap* h);
void housekeeping(Heap* h);
void adopt(Heap* h, Segment* s);
bool try_adopt(Heap* h, unsigned cls, unsigned k);

}  // namespace wfmm
