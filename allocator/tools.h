// What the program's checking tools must be told: AddressSanitizer (poison freed wfmm blocks),
// ThreadSanitizer (the happens-before edges wfmm makes with atomics it cannot see: libwfmm is
// not instrumented) and valgrind's memcheck (client requests, build option WFMM_VALGRIND).
// The sanitizer hooks are weak references: resolved only when the program carries that
// runtime, so libwfmm depends on none of them and pays one predictable branch otherwise.
#pragma once
#include <stddef.h>

#include "config.h"
#include "os/os.h"

#if WFMM_VALGRIND
#include <valgrind/memcheck.h>
#endif

extern "C" {
// (sanitizer/asan_interface.h, sanitizer/tsan_interface.h: declared here, weak.)
void __asan_poison_memory_region(void const volatile* addr, size_t size) __attribute__((weak));
void __asan_unpoison_memory_region(void const volatile* addr, size_t size) __attribute__((weak));
void __tsan_acquire(void* addr) __attribute__((weak));
void __tsan_release(void* addr) __attribute__((weak));
}

namespace wfmm::tools {

// A build of wfmm that is itself compiled with a sanitizer (scripts/sanitize) shows the
// tool every access and atomic: annotating as well would add edges that hide wfmm's own
// races (TSan), or report wfmm's own link writes into poisoned blocks (ASan).
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsanHooks = false;
#else
inline constexpr bool kTsanHooks = true;
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(WFMM_NO_ASAN_HOOKS)
inline constexpr bool kAsanHooks = false;
#else
inline constexpr bool kAsanHooks = true;
#endif

// ThreadSanitizer: the program's accesses before release(a) happen-before its accesses after
// a later acquire(a) on another thread. The sync edges are listed in reclaim/README.md (T1-T4).
WFMM_INLINE void tsan_acquire(const void* a) {
  if (kTsanHooks && &__tsan_acquire != nullptr) __tsan_acquire(const_cast<void*>(a));
}
WFMM_INLINE void tsan_release(const void* a) {
  if (kTsanHooks && &__tsan_release != nullptr) __tsan_release(const_cast<void*>(a));
}

// memcheck (WFMM_VALGRIND builds only; no code otherwise): a block wfmm hands out or takes
// back at a program-visible entry point, so memcheck checks the program's accesses to wfmm's
// blocks as it checks its own malloc's. wfmm's own accesses to free blocks (list links) are
// suppressed by scripts/wfmm.supp.
WFMM_INLINE void vg_handed_out(void* p, size_t usable, bool zeroed) {
  (void)p, (void)usable, (void)zeroed;
#if WFMM_VALGRIND
  if (p != nullptr) VALGRIND_MALLOCLIKE_BLOCK(p, usable, 0, zeroed ? 1 : 0);
#endif
}
WFMM_INLINE void vg_taken_back(void* p) {
  (void)p;
#if WFMM_VALGRIND
  if (p != nullptr) VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
}
// Marks n bytes at p as holding defined values (realloc's copy, see interpose/api.h).
WFMM_INLINE void vg_defined(void* p, size_t n) {
  (void)p, (void)n;
#if WFMM_VALGRIND
  VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
}

// True when a sanitizer that wants the san_* calls below is in the process: callers compute
// a usable size only then.
WFMM_INLINE bool sanitizer_watches() {
  return (kAsanHooks && &__asan_poison_memory_region != nullptr) ||
         (kTsanHooks && &__tsan_release != nullptr);
}

// A wfmm block handed to the program through the wfmm_* API while a sanitizer runs (its own
// malloc serves the standard names): accessible again (ASan), and ordered after the frees
// of its earlier lives (TSan, T4).
WFMM_INLINE void san_handed_out(void* p, size_t usable) {
  if (p == nullptr) return;
  if (kAsanHooks && &__asan_unpoison_memory_region != nullptr)
    __asan_unpoison_memory_region(p, usable);
  tsan_acquire(p);
  tsan_acquire(&os::g_map_sync);  // (T5) its segment may have been mapped by another thread
}

// A wfmm block going back to its page (wfmm_free, a reclaimed block): a later access by the
// program is reported by ASan (use-after-poison); TSan orders this life before the next (T4).
WFMM_INLINE void san_taken_back(void* p, size_t usable) {
  tsan_release(p);
  if (kAsanHooks && &__asan_poison_memory_region != nullptr)
    __asan_poison_memory_region(p, usable);
}

}  // namespace wfmm::tools
