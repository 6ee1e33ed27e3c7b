// The export shim: the standard allocation names, each a one-line forward to the wfmm_*
// API (api.cpp), which holds the semantics. WFMM_NAME can prefix every exported name for a
// build that links beside the system allocator.
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "options.h"
#include "wfmm/wfmm.h"

#if defined(WFMM_SHIM_PREFIXED)
#define WFMM_NAME(n) wfmm_shim_##n  // the test library's copy (CMakeLists: wfmm_shimp_*)
#elif !defined(WFMM_NAME)
#define WFMM_NAME(n) n
#endif

namespace wfmm {
void stats_print_xml(FILE* f);  // allocator/stats.cpp
}  // namespace wfmm

namespace {

size_t page_size() { return size_t(sysconf(_SC_PAGESIZE)); }

// WFMM_SHOW_STATS prints to stderr as it was at start: coreutils and others close stderr at
// exit (close_stdout) before this destructor runs, so a duplicate of fd 2 is taken first.
// Its device and inode are kept: a program that closed the duplicate and got the number back
// for a file of its own must not receive the statistics.
int g_stats_fd = -1;
struct stat g_stats_fd_stat;

__attribute__((constructor)) void wfmm_stats_fd_init() {
  if (wfmm_option_get("show_stats") <= 0) return;
  // A high number: programs that count on open() returning the lowest free descriptors
  // (3, 4, ...) see the same numbers as without wfmm; 3 and up if the limit is lower.
  g_stats_fd = fcntl(2, F_DUPFD_CLOEXEC, 200);
  if (g_stats_fd < 0) g_stats_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
  if (g_stats_fd >= 0 && fstat(g_stats_fd, &g_stats_fd_stat) != 0) g_stats_fd = -1;
}

__attribute__((destructor)) void wfmm_at_exit() {
  long show = wfmm::option(wfmm::Opt::kShowStats);
  if (show == 0) return;
  FILE* f = nullptr;
  struct stat now;
  if (g_stats_fd >= 0 && fstat(g_stats_fd, &now) == 0 && now.st_dev == g_stats_fd_stat.st_dev &&
      now.st_ino == g_stats_fd_stat.st_ino)
    f = fdopen(g_stats_fd, "w");
  FILE* out = f != nullptr ? f : stderr;
  if (show == 2) wfmm_stats_print_json(out);
  else wfmm_stats_print(out);
  if (f != nullptr) fclose(f);
}

}  // namespace

extern "C" {

WFMM_EXPORT void* WFMM_NAME(malloc)(size_t n) noexcept { return wfmm::api::malloc_(n); }
WFMM_EXPORT void WFMM_NAME(free)(void* p) noexcept { wfmm::api::release_(p, "free"); }
WFMM_EXPORT void* WFMM_NAME(calloc)(size_t c, size_t n) noexcept {
  return wfmm::api::calloc_(c, n);
}
WFMM_EXPORT void* WFMM_NAME(realloc)(void* p, size_t n) noexcept {
  if (WFMM_UNLIKELY(wfmm::option(wfmm::Opt::kDeferredFree) != 0))
    return wfmm::api::deferred_realloc(p, n);
  return wfmm::api::realloc_(p, n);
}
WFMM_EXPORT size_t WFMM_NAME(malloc_usable_size)(void* p) noexcept { return wfmm_usable_size(p); }
WFMM_EXPORT void* WFMM_NAME(aligned_alloc)(size_t a, size_t n) noexcept {
  return wfmm::api::aligned_alloc_(a, n);
}

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

WFMM_EXPORT void* WFMM_NAME(valloc)(size_t n) noexcept {
  return wfmm::api::aligned_alloc_(page_size(), n);
}

WFMM_EXPORT void* WFMM_NAME(pvalloc)(size_t n) noexcept {
  size_t ps = page_size();
  size_t r = (n + ps - 1) & ~(ps - 1);
  if (r < n) {
    errno = ENOMEM;
    return nullptr;
  }
  return wfmm::api::aligned_alloc_(ps, r == 0 ? ps : r);
}

WFMM_EXPORT void* WFMM_NAME(reallocarray)(void* p, size_t count, size_t size) noexcept {
  size_t n;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return nullptr;
  }
  return WFMM_NAME(realloc)(p, n);
}

WFMM_EXPORT void WFMM_NAME(cfree)(void* p) noexcept { wfmm::api::release_(p, "cfree"); }
WFMM_EXPORT void WFMM_NAME(free_sized)(void* p, size_t) noexcept {
  wfmm::api::release_(p, "free_sized");
}
WFMM_EXPORT void WFMM_NAME(free_aligned_sized)(void* p, size_t, size_t) noexcept {
  wfmm::api::release_(p, "free_aligned_sized");
}

// Really purges: empty pages and cached segments go back to the OS now.
WFMM_EXPORT int WFMM_NAME(malloc_trim)(size_t) noexcept { return wfmm_collect(1); }

// Plausible figures from wfmm's statistics (glibc's fields, our meanings).
WFMM_EXPORT struct mallinfo2 WFMM_NAME(mallinfo2)() noexcept {
  wfmm_stats s;
  wfmm_stats_get(&s);
  struct mallinfo2 m = {};
  m.arena = s.bytes_mapped;  // address space in use by the allocator
  m.ordblks = s.segments_cached;
  m.uordblks = s.bytes_in_use;  // live bytes
  m.fordblks = s.bytes_committed > s.bytes_in_use ? s.bytes_committed - s.bytes_in_use : 0;
  m.keepcost = 0;
  return m;
}

WFMM_EXPORT struct mallinfo WFMM_NAME(mallinfo)() noexcept {
  struct mallinfo2 m2 = WFMM_NAME(mallinfo2)();
  struct mallinfo m = {};
  // glibc's old struct has int fields: saturate rather than wrap.
  auto clamp = [](size_t v) { return v > 0x7fffffff ? 0x7fffffff : int(v); };
  m.arena = clamp(m2.arena);
  m.ordblks = clamp(m2.ordblks);
  m.uordblks = clamp(m2.uordblks);
  m.fordblks = clamp(m2.fordblks);
  return m;
}

// wfmm has no tunables behind mallopt's parameters: accept and ignore, as glibc asks.
WFMM_EXPORT int WFMM_NAME(mallopt)(int, int) noexcept { return 1; }

WFMM_EXPORT void WFMM_NAME(malloc_stats)() noexcept { wfmm_stats_print(stderr); }

// wfmm's statistics as XML in glibc's shape (stats.cpp says what each element means).
// Like glibc: options must be 0 (else EINVAL and -1); returns 0.
WFMM_EXPORT int WFMM_NAME(malloc_info)(int options, FILE* f) noexcept {
  if (options != 0) {
    errno = EINVAL;
    return -1;
  }
  wfmm::stats_print_xml(f);
  return 0;
}

}  // extern "C"

// glibc's internal names: some libraries and tools call them directly; without these
// their blocks would come from glibc and reach our free. (Not in the prefixed test build,
// which must not take glibc's names.)
#ifndef WFMM_SHIM_PREFIXED
#define WFMM_ALIAS(name, target) \
  extern "C" WFMM_EXPORT __typeof__(target) name __attribute__((alias(#target), copy(target)));
WFMM_ALIAS(__libc_malloc, malloc)
WFMM_ALIAS(__libc_free, free)
WFMM_ALIAS(__libc_calloc, calloc)
WFMM_ALIAS(__libc_realloc, realloc)
WFMM_ALIAS(__libc_memalign, memalign)
WFMM_ALIAS(__libc_valloc, valloc)
WFMM_ALIAS(__libc_pvalloc, pvalloc)
WFMM_ALIAS(__posix_memalign, posix_memalign)
#endif
