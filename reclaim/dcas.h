// 16-byte compare-and-swap on {value, tag} pairs (Crystalline-W's reservation eras and
// slow-path results). GCC never inlines 16-byte atomics (it calls libatomic, which may take
// a lock), so x86-64 gets lock cmpxchg16b in inline asm; other targets fail the build.
#pragma once
#include <stdint.h>

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer cannot see through inline asm: tell it the locked CAS is acq_rel.
#include <sanitizer/tsan_interface.h>
#define WFMM_TSAN_RELEASE(p) __tsan_release(p)
#define WFMM_TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define WFMM_TSAN_RELEASE(p) ((void)0)
#define WFMM_TSAN_ACQUIRE(p) ((void)0)
#endif

#if !defined(__x86_64__) || !defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
#error "wfmm's reclamation needs a 16-byte CAS: build for x86-64 with -mcx16"
#endif

namespace wfmm {

struct alignas(16) Pair {
  uint64_t lo;  // the value: an era, or a pointer / kPendingResult
  uint64_t hi;  // the tag (sequence number)
};

// Compares *p with *expected; if equal stores desired and returns true, else loads the
// current value into *expected and returns false. A full barrier either way (lock prefix).
inline bool dcas(Pair* p, Pair* expected, Pair desired) {
  bool ok;
  WFMM_TSAN_RELEASE(p);
  asm volatile("lock cmpxchg16b %1"
               : "=@ccz"(ok), "+m"(*p), "+a"(expected->lo), "+d"(expected->hi)
               : "b"(desired.lo), "c"(desired.hi)
               : "memory");
  WFMM_TSAN_ACQUIRE(p);
  return ok;
}

// An atomic 16-byte read: a CAS that stores what it finds (so it takes the line exclusive;
// used on the slow paths only). seq_cst.
inline Pair dload(Pair* p) {
  Pair e{0, 0};
  dcas(p, &e, Pair{0, 0});
  return e;
}

// The low word alone, for readers that only need the value (8-byte aligned loads are
// single-copy atomic; a concurrent cmpxchg16b writes both halves at once).
inline uint64_t dload_lo(const Pair* p, int order = __ATOMIC_SEQ_CST) {
  return __atomic_load_n(&p->lo, order);
}
inline uint64_t dload_hi(const Pair* p, int order = __ATOMIC_SEQ_CST) {
  return __atomic_load_n(&p->hi, order);
}

}  // namespace wfmm
