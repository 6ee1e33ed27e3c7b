// Out-of-memory behaviour: run under LD_PRELOAD=libwfmm.so with mmap made to fail for a
// window of calls (strace fault injection, see oom_test.sh). Every entry point must return
// NULL with errno = ENOMEM (operator new: throw std::bad_alloc) while the OS refuses, never
// crash, never hand out a broken block; once the OS gives memory again, everything works and
// all surviving blocks still hold their contents.
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <atomic>
#include <new>
#include <thread>
#include <vector>

namespace {

struct Held {
  unsigned char* p;
  size_t n;
  unsigned char tag;
};

int bad = 0;
std::atomic<int> refused{0};

void keep(std::vector<Held>& v, void* p, size_t n, unsigned char tag, const char* what) {
  if (p == nullptr || v.size() == v.capacity()) {
    if (p != nullptr) {
      free(p);
      return;
    }
    ++refused;
    if (errno != ENOMEM) {
      fprintf(stderr, "FAIL %s(%zu): NULL with errno %d\n", what, n, errno);
      ++bad;
    }
    return;
  }
  memset(p, tag, n);
  v.push_back({static_cast<unsigned char*>(p), n, tag});
}

void work(std::vector<Held>& v, unsigned seed) {
  const size_t sizes[] = {16, 100, 1000, 9000, 70000, 200000, 3u << 20, 9u << 20};
  for (int round = 0; round < 12; ++round) {
    for (size_t n : sizes) {
      unsigned char tag = static_cast<unsigned char>(seed + round + n);
      errno = 0;
      keep(v, malloc(n), n, tag, "malloc");
      errno = 0;
      keep(v, calloc(1, n), n, tag, "calloc");
      errno = 0;
      keep(v, aligned_alloc(4096, n), n, tag, "aligned_alloc");
      void* pm = nullptr;
      int rc = posix_memalign(&pm, 64, n);
      if (rc != 0 && rc != ENOMEM) {
        fprintf(stderr, "FAIL posix_memalign rc %d\n", rc);
        ++bad;
      }
      if (rc == 0) keep(v, pm, n, tag, "posix_memalign");
      try {
        char* c = new char[n];
        keep(v, c, n, tag, "new");
      } catch (const std::bad_alloc&) {
        ++refused;
      }
      if (!v.empty()) {
        // realloc: failure leaves the block intact.
        Held& h = v[v.size() / 2];
        errno = 0;
        size_t grow = h.n > (4u << 20) ? 4096 : h.n + 4096;
        void* q = realloc(h.p, h.n + grow);
        if (q == nullptr) {
          if (errno != ENOMEM) ++bad;
        } else {
          h.p = static_cast<unsigned char*>(q);
          memset(h.p + h.n, h.tag, grow);
          h.n += grow;
        }
      }
    }
    // Free all but a few, checking contents first.
    while (v.size() > 8) {
      size_t i = v.size() - 1;
      for (size_t k = 0; k < v[i].n; k += 97) {
        if (v[i].p[k] != v[i].tag) {
          fprintf(stderr, "FAIL: block %p lost its contents\n", static_cast<void*>(v[i].p));
          ++bad;
          break;
        }
      }
      free(v[i].p);
      v.pop_back();
    }
  }
}

}  // namespace

int main() {
  // A marker mapping (3 pages, PROT_NONE) tells oom_test.sh where main starts: refusals
  // before it would hit the C++ runtime's own start-up (its emergency exception pool), which
  // then cannot throw std::bad_alloc at all: not wfmm's behaviour to test.
  munmap(mmap(nullptr, 3 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), 3 * 4096);
  // The probe's own bookkeeping must not depend on the allocator while it is refused.
  std::vector<Held> a, b;
  a.reserve(4096);
  b.reserve(4096);
  std::thread t;
  try {
    t = std::thread([&] { work(b, 7); });
  } catch (const std::exception&) {  // no memory for a thread stack: run it here instead
    work(b, 7);
  }
  work(a, 3);
  if (t.joinable()) t.join();
  for (auto* v : {&a, &b}) {
    for (Held& h : *v) {
      if (h.p[0] != h.tag || h.p[h.n - 1] != h.tag) ++bad;
      free(h.p);
    }
  }
  // The OS gives memory again (the refusal window is 40 calls; each failed attempt uses at
  // least one): every path must work again.
  for (size_t n : {size_t(16), size_t(5000), size_t(300000), size_t(20u << 20)}) {
    void* p = nullptr;
    for (int attempt = 0; attempt < 100 && p == nullptr; ++attempt) p = malloc(n);
    if (p == nullptr) {
      fprintf(stderr, "FAIL: malloc(%zu) never recovered\n", n);
      ++bad;
    } else {
      memset(p, 1, n);
      free(p);
    }
  }
  malloc_trim(0);
  if (bad != 0) {
    fprintf(stderr, "%d failures\n", bad);
    return 1;
  }
  printf("oom ok: %d allocations refused\n", refused.load());
  return 0;
}
