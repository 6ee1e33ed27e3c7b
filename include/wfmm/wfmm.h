/* wfmm: a wait-free memory manager. The C API.
 *
 * Allocation: the wfmm_* functions behave like their standard counterparts (errno ENOMEM on
 * failure, EINVAL for bad alignments). libwfmm.so and libwfmm.a also export the standard
 * names (malloc, free, calloc, realloc, malloc_usable_size), so linking or preloading the
 * library replaces the program's allocator.
 *
 * Bad input: freeing a pointer wfmm did not hand out, an interior pointer, or a block twice
 * prints "wfmm: <call>: ..." on stderr and aborts; with WFMM_ON_ERROR=continue (or
 * wfmm_option_set("on_error", 1)) it reports and ignores the request. The heap is never
 * corrupted by such a call.
 */
#ifndef WFMM_WFMM_H
#define WFMM_WFMM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#define WFMM_NOEXCEPT noexcept
#else
#define WFMM_NOEXCEPT
#endif

void* wfmm_malloc(size_t size) WFMM_NOEXCEPT;
void* wfmm_calloc(size_t count, size_t size) WFMM_NOEXCEPT;
/* realloc(NULL, n) = malloc(n); realloc(p, 0) frees p and returns NULL (glibc's choice).
 * On failure returns NULL with errno = ENOMEM and leaves p intact. */
void* wfmm_realloc(void* p, size_t size) WFMM_NOEXCEPT;
void wfmm_free(void* p) WFMM_NOEXCEPT;
/* alignment: a power of two (any size is accepted); NULL with EINVAL otherwise. */
void* wfmm_aligned_alloc(size_t alignment, size_t size) WFMM_NOEXCEPT;
/* Bytes usable at p (>= the size asked for); 0 for NULL. */
size_t wfmm_usable_size(const void* p) WFMM_NOEXCEPT;

/* Options by name ("purge_delay_ms", "on_error", ... or "WFMM_PURGE_DELAY_MS").
 * set: 0 on success, -1 with errno = EINVAL for an unknown name or out-of-range value.
 * get: the value, or -1 with errno = EINVAL for an unknown name. */
int wfmm_option_set(const char* name, long value) WFMM_NOEXCEPT;
long wfmm_option_get(const char* name) WFMM_NOEXCEPT;

/* Releases what can be released now: purges empty pages, unmaps cached segments.
 * force != 0 ignores the purge delay. Returns 1 if memory was given back. */
int wfmm_collect(int force) WFMM_NOEXCEPT;

/* Statistics, summed over per-thread counters when read. Reclamation fields stay 0 until
 * a program uses wfmm's safe memory reclamation. */
struct wfmm_stats {
  uint64_t bytes_in_use;    /* usable bytes of live blocks */
  uint64_t bytes_mapped;    /* address space mapped from the OS */
  uint64_t bytes_committed; /* mapped and not purged: an upper bound on resident memory */
  uint64_t blocks_in_use;
  uint64_t retired;         /* blocks retired (reclamation) */
  uint64_t reclaimed;       /* retired blocks freed */
  uint64_t retired_pending; /* retired, not yet freed */
  uint64_t retired_pending_bytes;
  uint64_t era;             /* current global era */
  uint64_t protect_slow;    /* protects that took the wait-free slow path */
  uint64_t threads;         /* threads with a heap now */
  uint64_t malloc_count;    /* allocations since start */
  uint64_t free_count;      /* frees since start */
  uint64_t segments_cached; /* empty segments kept mapped for reuse */
};

void wfmm_stats_get(struct wfmm_stats* out) WFMM_NOEXCEPT;
/* Human-readable statistics, with units. */
void wfmm_stats_print(FILE* out) WFMM_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* WFMM_WFMM_H */
