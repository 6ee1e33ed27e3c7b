// The one contract between wfmm and the operating system. Only os.cpp calls mmap, munmap,
// mremap, madvise or getrandom. Every function preserves errno and returns null/false on
// failure instead of raising anything.
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace wfmm::os {

// Maps `size` bytes (a multiple of the OS page) aligned to `align` (a power of two, at least
// the OS page). Pre: size > 0. Returns null when the OS refuses. Fresh memory is zero.
void* map_aligned(size_t size, size_t align);
// Under ThreadSanitizer (weak hook; nothing otherwise) every new mapping releases this
// address: a thread that uses memory another thread mapped (a record, an adopted segment's
// block) acquires it first, so TSan orders the mapping before the use.
extern char g_map_sync;

// Unmaps a range obtained from map_aligned (or a page-aligned part of one).
void unmap(void* p, size_t size);

// Gives the physical memory of [p, p+size) back; the range stays mapped and reads as zero
// afterwards. Returns false if the OS refused (the memory is then simply kept).
bool purge(void* p, size_t size);

// Asks for transparent huge pages (2 MiB) on [p, p+size) where the kernel's policy is
// "madvise" (MADV_HUGEPAGE): one fault per 2 MiB instead of per 4 KiB. Best effort: false if
// the kernel refused (the range then stays on 4 KiB pages).
bool advise_huge_pages(void* p, size_t size);

// Resizes the mapping at p in place (mremap without moving). Shrinking always succeeds.
// False if the pages after it are taken; the mapping is then untouched.
bool remap_in_place(void* p, size_t old_size, size_t new_size);

// Moves the pages of [p, p+old_size) to dst (a mapping of new_size >= old_size from
// map_aligned, which it replaces) without copying (mremap). False on failure: both
// mappings are then untouched.
bool move_mapping(void* p, size_t old_size, size_t new_size, void* dst);

// 64 random bits (getrandom, falling back to a time/address mix if it is unavailable).
uint64_t random64();

// Monotonic milliseconds, from the coarse clock (the last timer tick: 1-4 ms behind, enough
// for purge delays of tens of milliseconds). CLOCK_MONOTONIC cost 22 ns a call on a VM (its
// vDSO reads and scales the TSC), the coarse clock 5.5: a batch of 1,000 16 KiB blocks read
// the clock at every fourth malloc and free (a page freed, a page needed), 12% of its time.
uint64_t now_ms();

// Process-wide memory barriers on demand (membarrier(2), private expedited): after
// membarrier_register() returned true, membarrier() makes every running thread of the
// process execute a full barrier before it returns. False where the kernel refuses.
bool membarrier_register();
bool membarrier();

// Writes to stderr with write(2): usable inside malloc, allocates nothing.
void write_stderr(const char* s, size_t n);

constexpr size_t kPageSize = 4096;

}  // namespace wfmm::os
