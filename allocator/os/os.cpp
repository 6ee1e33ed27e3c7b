// Linux implementation of the OS contract (os.h): anonymous mappings with alignment,
// purging with MADV_DONTNEED, mremap for huge blocks, getrandom for keys.
#include "os.h"

#include <errno.h>
#include <sys/mman.h>
#include <linux/membarrier.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

extern "C" void __tsan_release(void* addr) __attribute__((weak));

namespace wfmm::os {

char g_map_sync;

namespace {

// Keeps errno as the caller left it: free() must not change errno, and a failed mmap
// that we recover from must not leak its errno into the program.
struct ErrnoGuard {
  int saved = errno;
  ~ErrnoGuard() { errno = saved; }
};

void* map_raw(void* hint, size_t size) {
  void* p =
      mmap(hint, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#if !defined(__SANITIZE_THREAD__)
  // ThreadSanitizer counts a new mapping as written by the thread that mapped it (T5 in
  // reclaim/README.md): released here, acquired where another thread first uses it.
  if (&__tsan_release != nullptr) __tsan_release(&g_map_sync);
#endif
  return p;
}

}  // namespace

void* map_aligned(size_t size, size_t align) {
  ErrnoGuard g;
  if (size == 0 || size + align < size) return nullptr;
  // Most mappings land aligned if we ask for exactly the size: try that first (one call).
  void* p = map_raw(nullptr, size);
  if (p == nullptr) return nullptr;
  if ((reinterpret_cast<uintptr_t>(p) & (align - 1)) == 0) return p;
  munmap(p, size);
  // Over-map by `align` and trim both ends: two extra syscalls, always succeeds.
  p = map_raw(nullptr, size + align);
  if (p == nullptr) return nullptr;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uintptr_t aligned = (a + align - 1) & ~(uintptr_t(align) - 1);
  if (aligned > a) munmap(p, aligned - a);
  uintptr_t end = a + size + align;
  if (end > aligned + size) munmap(reinterpret_cast<void*>(aligned + size), end - aligned - size);
  return reinterpret_cast<void*>(aligned);
}

void unmap(void* p, size_t size) {
  ErrnoGuard g;
  munmap(p, size);
}

bool purge(void* p, size_t size) {
  ErrnoGuard g;
  return madvise(p, size, MADV_DONTNEED) == 0;
}

bool advise_huge_pages(void* p, size_t size) {
  ErrnoGuard g;
  return madvise(p, size, MADV_HUGEPAGE) == 0;
}

bool remap_in_place(void* p, size_t old_size, size_t new_size) {
  ErrnoGuard g;
  return mremap(p, old_size, new_size, 0) != MAP_FAILED;
}

bool move_mapping(void* p, size_t old_size, size_t new_size, void* dst) {
  ErrnoGuard g;
  return mremap(p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dst) != MAP_FAILED;
}

uint64_t random64() {
  ErrnoGuard g;
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) == sizeof r) return r;
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  r = uint64_t(ts.tv_nsec) * 0x9E3779B97F4A7C15ull ^ uint64_t(ts.tv_sec) ^
      reinterpret_cast<uintptr_t>(&r);
  return r;
}

uint64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}

bool membarrier_register() {
  ErrnoGuard g;
  long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

bool membarrier() {
  ErrnoGuard g;
  return syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

void write_stderr(const char* s, size_t n) {
  ErrnoGuard g;
  // Bound: each iteration writes at least one byte or stops.
  while (n > 0) {
    ssize_t w = write(2, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return;
    }
    s += w;
    n -= size_t(w);
  }
}

}  // namespace wfmm::os
