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

/* The version of this header; CMakeLists.txt reads these three lines for project(VERSION),
 * so they are the one place a release number is written. The library's SONAME carries the
 * major number (libwfmm.so.0). */
#define WFMM_VERSION_MAJOR 0
#define WFMM_VERSION_MINOR 1
#define WFMM_VERSION_PATCH 0
#define WFMM_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#define WFMM_NOEXCEPT noexcept
#else
#define WFMM_NOEXCEPT
#endif

/* The version of the library actually loaded ("0.1.0"), which may be newer than the
 * WFMM_VERSION a program was compiled with. */
const char* wfmm_version(void) WFMM_NOEXCEPT;

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
 * force != 0 ignores the purge delay and adopts exited threads' segments into the calling
 * thread, giving back those whose blocks were all freed. Returns 1 if memory was given back. */
int wfmm_collect(int force) WFMM_NOEXCEPT;

/* Statistics, summed over per-thread counters when read. Reclamation fields stay 0 until
 * a program uses wfmm's safe memory reclamation. The calling thread's own small-block
 * mallocs and frees are counted exactly (and an exited thread's); another running thread's
 * may lag: its pages keep their counts until a page's free list runs out, the page empties
 * or 65,536 mallocs gathered on it (so malloc/free fast paths write no counter line).
 * "Committed" bytes are those wfmm has mapped from the OS (segments, large blocks, its own
 * metadata) less those it has purged (madvise: handed back while still mapped): the memory
 * wfmm may have made resident. It is an upper bound on wfmm's share of the process's RSS
 * (pages committed but never touched are not resident) and does not count memory that is
 * not wfmm's (code, stacks, other allocators); RSS, the kernel's count for the whole
 * process, is in the wfmm_stats_print output. */
struct wfmm_stats {
  uint64_t bytes_in_use;    /* usable bytes of live blocks */
  uint64_t bytes_mapped;    /* address space mapped from the OS */
  uint64_t bytes_committed; /* mapped and not purged (see above) */
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
  uint64_t deferred_bytes;      /* deferred free: bytes freed, not yet reusable */
  uint64_t deferred_peak_bytes; /* deferred free: the most at once */
  uint64_t deferral_max_eras;   /* deferred free: longest wait of a batch, in eras */
  uint64_t bytes_committed_peak; /* the most bytes_committed at once since start */
  /* The most bytes_in_use seen by a sample. Samples: every statistics read (wfmm_stats_get,
   * the prints), and every time bytes_committed reaches a new peak at least 1 MiB above
   * the one of the previous such sample (wfmm maps or recommits memory: segments of 4 MiB,
   * purged pages, large blocks). So sampled peak <= true peak <= bytes_committed_peak.
   * The shortfall is what was allocated after the last sample inside memory already
   * committed: while a program grows, about the unused part of its newest segments (a few
   * MiB); a peak reached by reusing freed memory between two reads is not seen. Costs
   * nothing on malloc and free: no counter beyond the per-thread ones. */
  uint64_t bytes_in_use_peak;
};

void wfmm_stats_get(struct wfmm_stats* out) WFMM_NOEXCEPT;
/* ---- Safe memory reclamation (Crystalline-W inside the heaps; reclaim/README.md) ----
 *
 * A thread reads shared nodes inside a region (wfmm_enter .. wfmm_leave; regions nest,
 * only the outermost counts). wfmm_protect(src, i) loads *src and keeps the node it points
 * to from being reclaimed until the next protect on index i or the end of the region. A
 * node unlinked from the shared structure is handed to wfmm_retire: it is freed (and its
 * destructor run) once no region can still hold it. Nothing is written into a retired block
 * before then. Retiring needs no region; protect must be called inside one.
 *
 * Every call is wait-free: protect tries WFMM_PROTECT_ATTEMPTS times, then publishes a
 * request that threads advancing the era complete for it; retire appends to a per-thread
 * batch and publishes a full batch with one exchange per reservation that can reach it.
 * A stalled thread pins only the batches that hold a block born before its reservations'
 * eras (at most WFMM_BATCH blocks per such block); newer garbage is freed around it.
 * protect returns the loaded value as it is and never dereferences it, so pointers may
 * carry marks in their low bits (wfmm blocks are 16-byte aligned).
 * Not async-signal-safe (like malloc). */
#define WFMM_PROTECT_SLOTS 8

void wfmm_enter(void) WFMM_NOEXCEPT;
void wfmm_leave(void) WFMM_NOEXCEPT;
/* Loads *src (acquire) and protects the block it points to. index < WFMM_PROTECT_SLOTS.
 * src must be a root (static storage, or a wfmm block that is only ever retired, never
 * plainly freed, while regions use it: threads helping a slow protect may still read *src
 * after the call returned) or lie inside a block this thread holds protected by another
 * index. As with hazard pointers and eras, a value read from a node that has itself been
 * unlinked may already be retired: structures validate that the node is still reachable
 * (e.g. Harris-Michael's marked links) before trusting what they read through it. */
void* wfmm_protect(void* const volatile* src, unsigned index) WFMM_NOEXCEPT;
/* p: a live block from wfmm (any allocation call), or NULL (ignored). Freed when safe.
 * Under ASan, TSan or valgrind, whose malloc replaces wfmm's, p may also be a block of that
 * malloc (WFMM_FOREIGN_BLOCKS, README "Debugging"): freed with free() once reclaimed. */
void wfmm_retire(void* p) WFMM_NOEXCEPT;
/* As wfmm_retire; dtor(p, ctx) runs when safe, then the block is freed. */
void wfmm_retire_with(void* p, void (*dtor)(void* p, void* ctx), void* ctx) WFMM_NOEXCEPT;
/* As wfmm_retire_with (dtor may be NULL), for an object made by operator new: when p is a
 * foreign block (WFMM_FOREIGN_BLOCKS: under ASan, TSan or valgrind their malloc made it),
 * operator delete frees it, so the tool sees new matched by delete. wfmm::retire uses it. */
void wfmm_retire_new(void* p, void (*dtor)(void* p, void* ctx), void* ctx) WFMM_NOEXCEPT;
/* As wfmm_retire; dispose(p, ctx) runs when safe and takes the block over (it must free
 * it, e.g. through operator delete). For C++ deleters. */
void wfmm_retire_dispose(void* p, void (*dispose)(void* p, void* ctx), void* ctx) WFMM_NOEXCEPT;
/* Publishes this thread's partial batch and frees what this thread can free now. */
void wfmm_flush(void) WFMM_NOEXCEPT;
/* Flushes, then blocks until every batch published before the call is freed (like
 * rcu_barrier: it returns once the regions holding them have closed). Not in a region. */
void wfmm_barrier(void) WFMM_NOEXCEPT;
/* RCU-style read-side section (a region whose reservation covers every era): everything
 * retired while it is open stays until it closes, with no protect calls. Not robust (a
 * reader stalled inside pins everything retired meanwhile), which is RCU's contract; nests
 * with regions. For std::rcu-like code (std_compat.hpp). */
void wfmm_read_lock(void) WFMM_NOEXCEPT;
void wfmm_read_unlock(void) WFMM_NOEXCEPT;
/* Blocks until every region and read-side section open at the call has closed (like
 * synchronize_rcu). Not in a region. */
void wfmm_synchronize(void) WFMM_NOEXCEPT;

/* Progress accounting (debug): with WFMM_COUNT_STEPS=1 every bounded loop on the
 * reclamation paths records its largest iteration count per call. Each field pairs the
 * maximum observed with the bound the code promises for the threads seen so far. */
struct wfmm_progress {
  uint64_t threads;           /* n: thread records ever in use at once (upper bound) */
  uint64_t protect_fast_max;  /* fast-path attempts in one protect; bound protect_attempts */
  uint64_t protect_slow_max;  /* self attempts in one slow protect; bound n + 1 */
  uint64_t help_max;          /* attempts by one helper on one request; bound n + 1 */
  uint64_t tag_cas_max;       /* CASes to close one request; bound n + 1 */
  uint64_t publish_max;       /* reservations one batch publish inspects; bound records*slots */
  uint64_t slots_per_record;  /* user + helper reservations per record */
  uint64_t records;           /* records in the registry (every loop over records walks them) */
};
void wfmm_progress_get(struct wfmm_progress* out) WFMM_NOEXCEPT;

/* Human-readable statistics, with units: a line about the process (name, pid, wall and CPU
 * time, peak RSS), then blocks each labelled with the program's name and pid: memory (in
 * use, committed and RSS, each now and at its peak; mapped), calls, and reclamation and
 * deferred free only once the program used them. RSS is the kernel's: now from
 * /proc/self/statm, the peak from getrusage (ru_maxrss). WFMM_SHOW_STATS=1 prints it at
 * exit. */
void wfmm_stats_print(FILE* out) WFMM_NOEXCEPT;
/* The same as one JSON object on one line: "wfmm" (version), "program", "pid", "wall_s",
 * "user_s", "sys_s", "rss_bytes", "peak_rss_bytes", then every field of struct wfmm_stats
 * by its name (bytes in bytes). WFMM_SHOW_STATS=json prints it at exit. */
void wfmm_stats_print_json(FILE* out) WFMM_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* WFMM_WFMM_H */
