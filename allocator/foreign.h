// Foreign blocks for retire (WFMM_FOREIGN_BLOCKS): blocks of the process's malloc when that
// malloc is not wfmm's (ASan, TSan, valgrind replaced it). See foreign.cpp.
#pragma once
#include <stddef.h>

namespace wfmm {

// For retire, after block_for_retire said p is not in a wfmm segment: null if p may be
// retired as a foreign block (then *size is its usable size, for statistics), else the
// reason to report. Off: always the plain "not allocated by wfmm". On: accepted (checked by
// the tool's allocator when one is present). Auto (default): accepted only when the process's
// malloc is a sanitizer's or valgrind's and that allocator owns p. Decides once per process,
// by calling that malloc (not inside wfmm's own malloc: retire is a program call).
const char* foreign_block_check(void* p, size_t* size);

// Frees a reclaimed foreign block through the process's free or operator delete (the tool's: it then reports
// any later access). Only after foreign_block_check accepted a block.
// by_new: p came from operator new (wfmm_retire_new), so operator delete frees it and the
// tool sees matching calls.
void foreign_free(void* p, bool by_new);

}  // namespace wfmm
