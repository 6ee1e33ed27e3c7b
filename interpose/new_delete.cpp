// The nothrow operator new forms (null on failure) and the 12 operator delete forms.
// The throwing forms live in new_throw.cpp.
#include <new>

#include "api.h"

namespace {

WFMM_INLINE void* new_nothrow(size_t n) noexcept { return wfmm::api::malloc_(n); }

WFMM_INLINE void* new_aligned_nothrow(size_t n, std::align_val_t a) noexcept {
  return wfmm::api::aligned_alloc_(static_cast<size_t>(a), n);
}

WFMM_INLINE void delete_impl(void* p) noexcept { wfmm::api::release_(p, "operator delete"); }

}  // namespace

WFMM_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n); }
WFMM_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return new_nothrow(n);
}
WFMM_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned_nothrow(n, a);
}
WFMM_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned_nothrow(n, a);
}

WFMM_EXPORT void operator delete(void* p) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete[](void* p) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete(void* p, size_t) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete[](void* p, size_t) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete(void* p, std::align_val_t) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept { delete_impl(p); }
WFMM_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  delete_impl(p);
}
WFMM_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  delete_impl(p);
}
