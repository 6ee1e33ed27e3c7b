// The wfmm_* C API: standard semantics (errno, overflow, alignment checks) over the
// allocator's internal interface. The export shim (shim.cpp) forwards the standard names
// here; tests link this without the shim so they run beside the system malloc.
#include "api.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "heap.h"
#include "options.h"
#include "reclaim.h"
#include "wfmm/wfmm.h"

namespace wfmm {
void stats_collect(wfmm_stats* out);
void stats_print(FILE* f);
void stats_print_json(FILE* f);
}  // namespace wfmm

using namespace wfmm;

void* api::malloc_slow(size_t n) {
  if (WFMM_UNLIKELY(n > kMaxAllocSize)) return fail_nomem();
  void* p = wfmm::malloc_slow(n);
  if (WFMM_UNLIKELY(p == nullptr)) return fail_nomem();
  return p;
}

void api::deferred_free(void* p, const char* who) { reclaim::deferred_free(p, who); }

// Deferred mode: the old block of a moving realloc is retired like any free. In place
// when the block is at most twice the request (as reallocate does).
void* api::deferred_realloc(void* p, size_t n) {
  if (p == nullptr) return malloc_(n);
  if (n == 0) {
    reclaim::deferred_free(p, "realloc");
    return nullptr;
  }
  if (n > kMaxAllocSize) return fail_nomem();
  // Freed already (retired, waiting for its readers): handing it back, in place or not,
  // would be a use after free the program cannot see.
  if (block_retired(p)) {
    report_error("realloc", "use of a freed block", p);
    return nullptr;
  }
  if (reclaim::deferred_alone()) return realloc_(p, n);  // nobody else could read p
  size_t old = usable_size(p, "realloc");
  if (old == 0) return nullptr;  // reported (continue mode)
  if (n <= old && n >= old / 2) return p;
  void* q = malloc_(n);
  if (q == nullptr) return nullptr;  // errno set; the old block stays valid
  memcpy(q, p, n < old ? n : old);
  reclaim::deferred_free(p, "realloc");
  return q;
}

extern "C" {

WFMM_EXPORT const char* wfmm_version(void) noexcept { return WFMM_VERSION; }

#if WFMM_VALGRIND
// Marks a libwfmm built with memcheck client requests (scripts/memcheck looks for it).
WFMM_EXPORT extern const int wfmm_valgrind_client_requests;
const int wfmm_valgrind_client_requests = 1;
#endif

// Under ASan or TSan (their malloc serves the standard names) the wfmm_* API's blocks are
// wfmm's own: they are unpoisoned when handed out and poisoned when freed, so the program's
// use of a freed or reclaimed one is reported (allocator/tools.h). Otherwise one branch.
WFMM_EXPORT void* wfmm_malloc(size_t n) noexcept {
  void* p = api::malloc_(n);
  if (WFMM_UNLIKELY(tools::sanitizer_watches())) tools::san_handed_out(p, api::usable_quiet(p));
  return p;
}
WFMM_EXPORT void wfmm_free(void* p) noexcept {
  if (WFMM_UNLIKELY(tools::sanitizer_watches()) && p != nullptr) {
    if (size_t n = api::usable_quiet(p)) tools::san_taken_back(p, n);
  }
  api::free_(p, "free");
}
WFMM_EXPORT void* wfmm_calloc(size_t count, size_t size) noexcept {
  size_t n;
  if (WFMM_UNLIKELY(tools::sanitizer_watches()) && !__builtin_mul_overflow(count, size, &n)) {
    // Unpoisoned before it is cleared: calloc's memset of a block freed earlier would be
    // ASan's use-after-poison inside wfmm (ASan intercepts memset).
    void* p = api::malloc_(n);
    if (p == nullptr) return nullptr;
    tools::san_handed_out(p, api::usable_quiet(p));
    memset(p, 0, n);
    return p;
  }
  return api::calloc_(count, size);
}
WFMM_EXPORT void* wfmm_realloc(void* p, size_t n) noexcept {
  if (WFMM_UNLIKELY(tools::sanitizer_watches()) && p != nullptr && n != 0) {
    // New block, copy, free, so each life is poisoned and ordered as with wfmm_free.
    size_t old = api::usable_quiet(p);
    if (old != 0) {
      void* q = wfmm_malloc(n);
      if (q == nullptr) return nullptr;  // errno set; the old block stays valid
      memcpy(q, p, n < old ? n : old);
      wfmm_free(p);
      return q;
    }
  }
  return api::realloc_(p, n);
}
WFMM_EXPORT void* wfmm_aligned_alloc(size_t alignment, size_t size) noexcept {
  void* p = api::aligned_alloc_(alignment, size);
  if (WFMM_UNLIKELY(tools::sanitizer_watches())) tools::san_handed_out(p, api::usable_quiet(p));
  return p;
}

WFMM_EXPORT size_t wfmm_usable_size(const void* p) noexcept {
  return usable_size(p, "malloc_usable_size");
}

WFMM_EXPORT int wfmm_option_set(const char* name, long value) noexcept {
  process_init();
  return option_set(name, value);
}

WFMM_EXPORT long wfmm_option_get(const char* name) noexcept {
  process_init();
  return option_get(name);
}

WFMM_EXPORT int wfmm_collect(int force) noexcept { return collect(force != 0) ? 1 : 0; }

WFMM_EXPORT void wfmm_stats_get(struct wfmm_stats* out) noexcept {
  if (out != nullptr) stats_collect(out);
}

WFMM_EXPORT void wfmm_enter(void) noexcept { reclaim::enter(); }
WFMM_EXPORT void wfmm_leave(void) noexcept { reclaim::leave(); }
WFMM_EXPORT void* wfmm_protect(void* const volatile* src, unsigned index) noexcept {
  void* p = reclaim::protect(src, index);
  // (T3) libwfmm's acquire load of *src is invisible to ThreadSanitizer: the program's
  // release store of the pointer must still order the node's initialisation before its reads.
  tools::tsan_acquire(const_cast<void**>(src));
  return p;
}
WFMM_EXPORT void wfmm_retire(void* p) noexcept { reclaim::retire(p, nullptr, nullptr, 0); }
WFMM_EXPORT void wfmm_retire_with(void* p, void (*dtor)(void*, void*), void* ctx) noexcept {
  reclaim::retire(p, dtor, ctx, 0);
}
WFMM_EXPORT void wfmm_retire_new(void* p, void (*dtor)(void*, void*), void* ctx) noexcept {
  reclaim::retire(p, dtor, ctx, reclaim::kItemNew);
}
WFMM_EXPORT void wfmm_retire_dispose(void* p, void (*dispose)(void*, void*), void* ctx) noexcept {
  if (dispose == nullptr) return reclaim::retire(p, nullptr, nullptr, 0);
  reclaim::retire(p, dispose, ctx, reclaim::kItemDispose);
}
WFMM_EXPORT void wfmm_flush(void) noexcept { reclaim::flush(); }
WFMM_EXPORT void wfmm_read_lock(void) noexcept { reclaim::read_lock(); }
WFMM_EXPORT void wfmm_read_unlock(void) noexcept { reclaim::read_unlock(); }
WFMM_EXPORT void wfmm_synchronize(void) noexcept { reclaim::synchronize(); }
WFMM_EXPORT void wfmm_barrier(void) noexcept { reclaim::barrier(); }
WFMM_EXPORT void wfmm_progress_get(struct wfmm_progress* out) noexcept {
  if (out != nullptr) reclaim::progress(out);
}

WFMM_EXPORT void wfmm_stats_print(FILE* out) noexcept {
  stats_print(out != nullptr ? out : stderr);
}

WFMM_EXPORT void wfmm_stats_print_json(FILE* out) noexcept {
  stats_print_json(out != nullptr ? out : stderr);
}

}  // extern "C"
