// Large blocks (above kMediumMax, up to kLargeMax): one block in a standard segment, no
// owner, so any thread frees it directly. Huge blocks: a segment of their own size, grown
// and shrunk with mremap.
#pragma once
#include "types.h"

namespace wfmm {

// n > 0; align a power of two (0 = default). Null on OOM.
void* large_alloc(size_t n, size_t align);
void large_free(Segment* s, void* p, const char* who);
// The live large/huge block starting at p, or null (reports nothing).
Page* large_page_of(Segment* s, const void* p);
// Usable bytes of the large/huge block of s.
size_t large_usable(Segment* s, Page* pg);
// Resizes in place or by mremap when possible; null when the caller must move the block.
void* large_resize(Segment* s, void* p, size_t n);  // p: the block (start of page 0)

// Shared by heap_free.cpp and large.cpp: statistics for the calling thread.
void count_malloc(size_t bytes);
void count_free(size_t bytes);

}  // namespace wfmm
