// The export shim: the standard allocation names, each a one-line forward to the wfmm_*
// API (api.cpp), which holds the semantics. WFMM_NAME can prefix every exported name for a
// build that links beside the system allocator.
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "options.h"
#include "wfmm/wfmm.h"

#ifndef WFMM_NAME
#define WFMM_NAME(n) n
#endif

namespace {

size_t page_size() { return size_t(sysconf(_SC_PAGESIZE)); }

__attribute__((destructor)) void wfmm_at_exit() {
  if (wfmm::option(wfmm::Opt::kShowStats) != 0) wfmm_stats_print(stderr);
}

}  // namespace

extern "C" {

WFMM_EXPORT void* WFMM_NAME(malloc)(size_t n) noexcept { return wfmm::api::malloc_(n); }
WFMM_EXPORT void WFMM_NAME(free)(void* p) noexcept { wfmm::api::free_(p, "free"); }
WFMM_EXPORT void* WFMM_NAME(calloc)(size_t c, size_t n) noexcept { return wfmm::api::calloc_(c, n); }
WFMM_EXPORT void* WFMM_NAME(realloc)(void* p, size_t n) noexcept { return wfmm::api::realloc_(p, n); }
WFMM_EXPORT size_t WFMM_NAME(malloc_usable_size)(void* p) noexcept { return wfmm_usable_size(p); }
WFMM_EXPORT void* WFMM_NAME(aligned_alloc)(size_t a, size_t n) noexcept { return wfmm::api::aligned_alloc_(a, n); }

// posix_memalign reports through its return value and leaves errno alone.
WFMM_EXPORT int WFMM_NAME(posix_memalign)(void** out, size_t a, size_t n) noexcept {
  if (a < sizeof(void*) || (a & (a - 1)) != 0) return EINVAL;
  int saved = errno;
  void* p = wfmm::api::aligned_alloc_(a, n);
  errno = saved;
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

// memalign rounds a bad alignment up to the next power of two, like glibc.
WFMM_EXPORT void* WFMM_NAME(memalign)(size_t a, size_t n) noexcept {
  if (a < 16) a = 16;
  if ((a & (a - 1)) != 0) {
    if (a > (size_t(1) << 62)) {
      errno = EINVAL;
      return nullptr;
    }
    a = size_t(1) << (64 - __builtin_clzll(a));
  }
  return wfmm::api::aligned_alloc_(a, n);
}

WFMM_EXPORT void* WFMM_NAME(valloc)(size_t n) noexcept { return wfmm::api::aligned_alloc_(page_size(), n); }

WFMM_EXPORT void* WFMM_NAME(pvalloc)(size_t n) noexcept {
  size_t ps = page_size();
  size_t r = (n + ps - 1) & ~(ps - 1);
  if (r < n) {
    errno = ENOMEM;
    return nullptr;
  }
  return wfmm::api::aligned_alloc_(ps, r == 0 ? ps : r);
}

}  // extern "C"
