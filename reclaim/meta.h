// Reclamation metadata memory (batch descriptors, link cells, thread records): chunks of
// 2^k bytes from the OS, recycled through per-thread caches and a wait-free global pool.
// Never malloc: the reclaim layer runs inside free() under WFMM_DEFERRED_FREE, and its
// bookkeeping must not show up in the program's statistics.
#pragma once
#include <stddef.h>

namespace wfmm::meta {

// At least `bytes` of 16-aligned memory, or null when the OS refuses. Not zeroed.
void* alloc(size_t bytes);
// p from alloc(bytes) with the same `bytes`; any thread.
void release(void* p, size_t bytes);
// Thread exit: the thread's cached chunks go to the global pool.
void thread_flush();
// fork(): hold / give back the global pools' consumer flags.
void fork_prepare();
void fork_release();

}  // namespace wfmm::meta
