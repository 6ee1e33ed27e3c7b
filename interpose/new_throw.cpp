// The throwing operator new forms: the new-handler loop, then std::bad_alloc. This file
// alone is built with unwind tables (a handler may throw through it) and has no landing
// pad, so it needs no C++ personality routine: libwfmm.so depends on libc alone.
// std::__throw_bad_alloc and std::get_new_handler are weak references: only C++ programs
// call these operators, and they have libstdc++.
#include <new>

#include "api.h"
#include "error.h"

// Weak references under the mangled names: null when no C++ runtime is loaded.
extern "C" [[noreturn]] void wfmm_std_throw_bad_alloc() __asm__("_ZSt17__throw_bad_allocv")
    __attribute__((weak));
extern "C" std::new_handler wfmm_std_get_new_handler() noexcept __asm__("_ZSt15get_new_handlerv")
    __attribute__((weak));

namespace {

[[noreturn]] WFMM_COLD void throw_bad_alloc() {
  if (&wfmm_std_throw_bad_alloc != nullptr) wfmm_std_throw_bad_alloc();
  wfmm::Msg().add("operator new: out of memory and no C++ runtime to throw std::bad_alloc").emit();
  __builtin_trap();
}

// The new-handler loop: unbounded by the standard's design (the program's handler decides
// when to stop), and only taken once memory has run out: not part of wfmm's promise.
WFMM_COLD void* new_slow(size_t n, size_t align) {
  for (;;) {
    void* p = align == 0 ? wfmm::api::malloc_(n) : wfmm::api::aligned_alloc_(align, n);
    if (p != nullptr) return p;
    std::new_handler h =
        &wfmm_std_get_new_handler != nullptr ? wfmm_std_get_new_handler() : nullptr;
    if (h == nullptr) throw_bad_alloc();
    h();
  }
}

WFMM_INLINE void* new_impl(size_t n) {
  void* p = wfmm::heap_malloc_fast(n);
  if (WFMM_LIKELY(p != nullptr)) return wfmm::api::vg_out(p, false);  // (WFMM_VALGRIND only)
  return new_slow(n, 0);
}

WFMM_INLINE void* new_aligned(size_t n, std::align_val_t a) {
  size_t align = static_cast<size_t>(a);
  if ((align & (align - 1)) != 0 || align == 0) throw_bad_alloc();
  return new_slow(n, align);
}

}  // namespace

WFMM_EXPORT void* operator new(size_t n) { return new_impl(n); }
WFMM_EXPORT void* operator new[](size_t n) { return new_impl(n); }
WFMM_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_aligned(n, a); }
WFMM_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_aligned(n, a); }
