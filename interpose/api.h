// The standard allocation semantics (errno, overflow, alignment checks, realloc edge
// cases) as inline functions, so both the wfmm_* API (api.cpp) and the standard names
// (shim.cpp) inline the allocator's fast paths with no extra call.
#pragma once
#include <errno.h>
#include <string.h>

#include "heap.h"
#include "options.h"
#include "tools.h"

namespace wfmm::api {

WFMM_INLINE void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// Out of line (api.cpp): size checks, the allocator's slow path, errno.
void* malloc_slow(size_t n);

// The usable size of a block starting at p, 0 if none (no report: the free path reports).
inline size_t usable_quiet(const void* p) {
  void* start;
  size_t size;
  return p != nullptr && block_lookup(p, &start, &size) && start == p ? size : 0;
}

// WFMM_VALGRIND builds announce every block handed out and taken back at these entry points
// to memcheck (allocator/tools.h); other builds compile to nothing here.
WFMM_INLINE void* vg_out(void* p, bool zeroed) {
#if WFMM_VALGRIND
  if (p != nullptr) tools::vg_handed_out(p, usable_quiet(p), zeroed);
#else
  (void)zeroed;
#endif
  return p;
}

WFMM_INLINE void* malloc_(size_t n) {
  void* p = heap_malloc_fast(n);
  if (WFMM_LIKELY(p != nullptr)) return vg_out(p, false);
  return vg_out(api::malloc_slow(n), false);
}

WFMM_INLINE void free_(void* p, const char* who) {
  if (WFMM_LIKELY(p != nullptr)) {
    tools::vg_taken_back(p);
    heap_free(p, who);
  }
}

// Out of line (api.cpp): WFMM_DEFERRED_FREE's free and realloc.
void deferred_free(void* p, const char* who);
void* deferred_realloc(void* p, size_t n);

// The standard names' free (shim, operator delete): retires instead under deferred free.
// (wfmm_free and the pmr resource always free at once.)
WFMM_INLINE void release_(void* p, const char* who) {
  if (WFMM_LIKELY(p != nullptr)) {
    // (Deferred: memcheck hears of the free when reclamation frees the block.)
    if (WFMM_UNLIKELY(option(Opt::kDeferredFree) != 0)) return deferred_free(p, who);
    tools::vg_taken_back(p);
    heap_free(p, who);
  }
}

WFMM_INLINE void* calloc_(size_t count, size_t size) {
  size_t n;
  if (WFMM_UNLIKELY(__builtin_mul_overflow(count, size, &n) || n > kMaxAllocSize))
    return fail_nomem();
  void* p = alloc_zeroed(n);
  if (WFMM_UNLIKELY(p == nullptr)) return fail_nomem();
  return vg_out(p, true);
}

inline void* realloc_(void* p, size_t n) {
  if (p == nullptr) return malloc_(n);
  if (n == 0) {
    tools::vg_taken_back(p);
    heap_free(p, "realloc");
    return nullptr;
  }
  if (n > kMaxAllocSize) return fail_nomem();
#if WFMM_VALGRIND
  // New block, copy, free: memcheck sees each step in order (reallocate's own free could hand
  // p to another thread before a FREELIKE after it, and its copy would be marked undefined).
  if (size_t old = usable_quiet(p)) {
    void* q = malloc_(n);
    if (q == nullptr) return nullptr;  // errno set; the old block stays valid
    size_t keep = n < old ? n : old;
    memcpy(q, p, keep);
    free_(p, "realloc");
    return q;
  }
#endif
  void* q = reallocate(p, n, "realloc");
  if (q == nullptr) return fail_nomem();
  return q;
}

inline void* aligned_alloc_(size_t alignment, size_t size) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  if (size > kMaxAllocSize || alignment > kMaxAllocSize / 2) return fail_nomem();
  void* p = alloc_aligned(size, alignment);
  if (p == nullptr) return fail_nomem();
  return vg_out(p, false);
}

}  // namespace wfmm::api
