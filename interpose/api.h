// The standard allocation semantics (errno, overflow, alignment checks, realloc edge
// cases) as inline functions, so both the wfmm_* API (api.cpp) and the standard names
// (shim.cpp) inline the allocator's fast paths with no extra call.
#pragma once
#include <errno.h>

#include "heap.h"
#include "options.h"

namespace wfmm::api {

WFMM_INLINE void* fail_nomem() {
  errno = ENOMEM;
  return nullptr;
}

// Out of line (api.cpp): size checks, the allocator's slow path, errno.
void* malloc_slow(size_t n);

WFMM_INLINE void* malloc_(size_t n) {
  void* p = heap_malloc_fast(n);
  if (WFMM_LIKELY(p != nullptr)) return p;
  return api::malloc_slow(n);
}

WFMM_INLINE void free_(void* p, const char* who) {
  if (WFMM_LIKELY(p != nullptr)) heap_free(p, who);
}

// Out of line (api.cpp): WFMM_DEFERRED_FREE's free and realloc.
void deferred_free(void* p, const char* who);
void* deferred_realloc(void* p, size_t n);

// The standard names' free (shim, operator delete): retires instead under deferred free.
// (wfmm_free and the pmr resource always free at once.)
WFMM_INLINE void release_(void* p, const char* who) {
  if (WFMM_LIKELY(p != nullptr)) {
    if (WFMM_UNLIKELY(option(Opt::kDeferredFree) != 0)) return deferred_free(p, who);
    heap_free(p, who);
  }
}

WFMM_INLINE void* calloc_(size_t count, size_t size) {
  size_t n;
  if (WFMM_UNLIKELY(__builtin_mul_overflow(count, size, &n) || n > kMaxAllocSize))
    return fail_nomem();
  void* p = alloc_zeroed(n);
  if (WFMM_UNLIKELY(p == nullptr)) return fail_nomem();
  return p;
}

inline void* realloc_(void* p, size_t n) {
  if (p == nullptr) return malloc_(n);
  if (n == 0) {
    heap_free(p, "realloc");
    return nullptr;
  }
  if (n > kMaxAllocSize) return fail_nomem();
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
  return p;
}

}  // namespace wfmm::api
