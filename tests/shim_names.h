// The test library's standard names (interpose/shim.cpp built with WFMM_SHIM_PREFIXED): the
// malloc family as a program reaches it, callable beside the host's own malloc.
#pragma once
#include <stddef.h>

extern "C" {
void* wfmm_shim_malloc(size_t n) noexcept;
void* wfmm_shim_calloc(size_t c, size_t n) noexcept;
void* wfmm_shim_realloc(void* p, size_t n) noexcept;
void* wfmm_shim_reallocarray(void* p, size_t c, size_t n) noexcept;
void* wfmm_shim_aligned_alloc(size_t a, size_t n) noexcept;
int wfmm_shim_posix_memalign(void** out, size_t a, size_t n) noexcept;
void* wfmm_shim_memalign(size_t a, size_t n) noexcept;
void* wfmm_shim_valloc(size_t n) noexcept;
void* wfmm_shim_pvalloc(size_t n) noexcept;
void wfmm_shim_free(void* p) noexcept;
void wfmm_shim_cfree(void* p) noexcept;
void wfmm_shim_free_sized(void* p, size_t n) noexcept;
void wfmm_shim_free_aligned_sized(void* p, size_t a, size_t n) noexcept;
size_t wfmm_shim_malloc_usable_size(void* p) noexcept;
}
