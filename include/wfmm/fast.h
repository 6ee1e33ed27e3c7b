/* Inline fast paths of wfmm_enter, wfmm_leave and wfmm_protect for code that makes many short
 * regions (lock-free containers, xenium's guards): the common cases compile to a few
 * instructions in the caller instead of a call into libwfmm; everything else calls the
 * functions of wfmm.h, so the behaviour is theirs exactly.
 *
 * Requirements: libwfmm is linked into the program or preloaded (it is loaded at start-up:
 * the per-thread state is initial-exec TLS, as in libwfmm itself), and this header comes
 * from the same wfmm as the library: the symbols carry the layout's version
 * (wfmm_thread_v1, wfmm_era_v1), so a mismatch fails to link instead of misreading memory.
 * The C++ headers (reclaim.hpp, xenium.hpp, std_compat.hpp) use these; define WFMM_NO_FAST
 * before including them to make plain calls instead. C and C++ (GCC or Clang). */
#ifndef WFMM_FAST_H
#define WFMM_FAST_H

#include <stdint.h>

#include "wfmm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The first fields of libwfmm's per-thread reclamation state (reclaim/reclaim.h, Local; the
 * library asserts the offsets). Read-only here except depth, which only its thread writes. */
struct wfmm_thread_view_v1 {
  void* rec;                             /* this thread's record, NULL before its first use */
  uint32_t* in_region;                   /* the record's in-region flag */
  uintptr_t* head[WFMM_PROTECT_SLOTS];   /* per index: its reservation's list head */
  uint32_t depth;                        /* region nesting */
  uint32_t active;                       /* bit i: index i holds a reservation */
  void* freeq;                           /* batches this thread must free, or NULL */
  uint64_t era[WFMM_PROTECT_SLOTS];      /* era reserved per index, 0 = none */
};
/* The outermost leave's work beyond the common case (drop collected lists, free batches). */
void wfmm_leave_lists_v1(void) WFMM_NOEXCEPT;

#if defined(WFMM_NO_FAST) && !defined(WFMM_FAST_NO_DECLS)
/* Opted out (e.g. libwfmm is dlopen'ed late): the same names, plain calls. */
static inline void wfmm_enter_fast(void) { wfmm_enter(); }
static inline void wfmm_leave_fast(void) { wfmm_leave(); }
static inline void* wfmm_protect_fast(void* const volatile* src, unsigned index) {
  return wfmm_protect(src, index);
}
static inline int wfmm_era_reserved_fast(unsigned index) {
  (void)index;
  return 0;
}
#elif !defined(WFMM_FAST_NO_DECLS)
extern __thread struct wfmm_thread_view_v1 wfmm_thread_v1
    __attribute__((tls_model("initial-exec")));
/* The global era clock. */
extern uint64_t wfmm_era_v1;

/* As wfmm_enter: the outermost enter of a thread with a record is one seq_cst store. */
static inline __attribute__((always_inline)) void wfmm_enter_fast(void) {
  struct wfmm_thread_view_v1* t = &wfmm_thread_v1;
  if (__builtin_expect(t->rec != 0, 1)) {
    if (t->depth++ == 0) __atomic_store_n(t->in_region, 1u, __ATOMIC_SEQ_CST);
    return;
  }
  wfmm_enter();
}

/* As wfmm_leave: a nested leave is a decrement; the outermost one clears the in-region flag
 * (release) and calls into the library only if a retirer left a list on one of this
 * thread's reservations (a head other than 1, "reserved, empty") or batches wait to be
 * freed. A leave without an enter goes to wfmm_leave, which reports it. */
static inline __attribute__((always_inline)) void wfmm_leave_fast(void) {
  struct wfmm_thread_view_v1* t = &wfmm_thread_v1;
  if (__builtin_expect(t->depth > 1, 1)) {
    --t->depth;
    return;
  }
  if (__builtin_expect(t->depth == 0, 0)) {
    wfmm_leave();
    return;
  }
  t->depth = 0;
  __atomic_store_n(t->in_region, 0u, __ATOMIC_RELEASE);
  int work = t->freeq != 0;
  /* Bound: WFMM_PROTECT_SLOTS. */
  for (uint32_t m = t->active & ((1u << WFMM_PROTECT_SLOTS) - 1); m != 0 && !work; m &= m - 1)
    work = __atomic_load_n(t->head[__builtin_ctz(m)], __ATOMIC_RELAXED) != 1;
  if (__builtin_expect(work, 0)) wfmm_leave_lists_v1();
}

/* As wfmm_protect: while the era this index reserves is still the global era, the pointer
 * just loaded is covered (the pointer load, then the era load, both acquire: the library's
 * edge E3); otherwise wfmm_protect. */
static inline __attribute__((always_inline)) void* wfmm_protect_fast(void* const volatile* src,
                                                                     unsigned index) {
  struct wfmm_thread_view_v1* t = &wfmm_thread_v1;
  if (__builtin_expect(index < WFMM_PROTECT_SLOTS && t->depth != 0, 1)) {
    void* p = __atomic_load_n((void* const*)src, __ATOMIC_ACQUIRE);
    if (__builtin_expect(__atomic_load_n(&wfmm_era_v1, __ATOMIC_ACQUIRE) == t->era[index], 1))
      return p;
  }
  return wfmm_protect(src, index);
}

/* For adapters that keep their own pointer loads (xenium.hpp): nonzero while the caller is
 * in a region and the era index reserves is still the global era. A pointer the caller
 * loaded (acquire) from a live link after its region opened and after index's last
 * wfmm_protect is then covered, as wfmm_protect_fast's own load would be, without loading
 * it again. The caller knows index < WFMM_PROTECT_SLOTS (not checked); 0 means: call
 * wfmm_protect (which reports a protect outside a region). */
static inline __attribute__((always_inline)) int wfmm_era_reserved_fast(unsigned index) {
  struct wfmm_thread_view_v1* t = &wfmm_thread_v1;
  return t->depth != 0 && __atomic_load_n(&wfmm_era_v1, __ATOMIC_ACQUIRE) == t->era[index];
}
#endif /* WFMM_NO_FAST / WFMM_FAST_NO_DECLS */

#ifdef __cplusplus
}
#endif

#endif /* WFMM_FAST_H */
