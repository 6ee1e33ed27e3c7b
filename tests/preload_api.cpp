// Every exported entry point, C and C++, with glibc's edge-case semantics, checked in a
// process that runs with LD_PRELOAD=libwfmm.so (or linked with -lwfmm). Each pointer is
// also checked to be wfmm's: wfmm_usable_size aborts on a foreign pointer.
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <new>
#include <string>
#include <vector>

#include "wfmm/wfmm.h"

static int failures = 0;
#define CHECK(c)                                           \
  do {                                                     \
    if (!(c)) {                                            \
      fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #c); \
      ++failures;                                          \
    }                                                      \
  } while (0)

template <class F>
static F sym(const char* name) {
  void* p = dlsym(RTLD_DEFAULT, name);
  if (p == nullptr) {
    fprintf(stderr, "FAIL: %s is not resolvable (is libwfmm.so preloaded or linked?)\n", name);
    exit(2);
  }
  return reinterpret_cast<F>(p);
}

static size_t (*ours)(const void*);  // wfmm_usable_size
static bool aligned(const void* p, size_t a) {
  return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0;
}

static void c_entry_points() {
  size_t ps = size_t(sysconf(_SC_PAGESIZE));
  void* a = malloc(0);
  void* b = malloc(0);
  CHECK(a != nullptr && b != nullptr && a != b && ours(a) >= 1);
  free(a);
  free(b);
  free(nullptr);
  errno = 0;
  CHECK(malloc(SIZE_MAX) == nullptr && errno == ENOMEM);
  errno = 0;
  CHECK(calloc(SIZE_MAX / 2, 3) == nullptr && errno == ENOMEM);
  auto* z = static_cast<unsigned char*>(calloc(100, 10));
  bool zero = true;
  for (int i = 0; i < 1000; ++i) zero &= z[i] == 0;
  CHECK(zero && ours(z) >= 1000);
  // realloc: NULL -> malloc, 0 -> free + NULL, growth keeps data.
  char* r = static_cast<char*>(realloc(nullptr, 10));
  CHECK(r != nullptr && ours(r) >= 10);
  strcpy(r, "abcdefghi");
  r = static_cast<char*>(realloc(r, 100000));
  CHECK(r != nullptr && strcmp(r, "abcdefghi") == 0);
  CHECK(realloc(r, 0) == nullptr);
  errno = 0;
  void* keep = malloc(64);
  CHECK(realloc(keep, SIZE_MAX - 100) == nullptr && errno == ENOMEM);
  free(keep);
  // reallocarray
  errno = 0;
  CHECK(reallocarray(nullptr, SIZE_MAX / 2, 4) == nullptr && errno == ENOMEM);
  void* ra = reallocarray(nullptr, 10, 10);
  CHECK(ra != nullptr && ours(ra) >= 100);
  free(ra);
  // aligned_alloc / posix_memalign / memalign / valloc / pvalloc
  errno = 0;
  CHECK(aligned_alloc(3, 64) == nullptr && errno == EINVAL);
  void* al = aligned_alloc(4096, 4096);
  CHECK(al != nullptr && aligned(al, 4096) && ours(al) >= 4096);
  free(al);
  void* pm = reinterpret_cast<void*>(1);
  errno = 1234;
  CHECK(posix_memalign(&pm, 3, 16) == EINVAL && pm == reinterpret_cast<void*>(1));
  CHECK(posix_memalign(&pm, 4, 16) == EINVAL);  // smaller than sizeof(void*)
  CHECK(posix_memalign(&pm, 64, SIZE_MAX - 4096) == ENOMEM);
  CHECK(errno == 1234);  // posix_memalign reports by return value only
  CHECK(posix_memalign(&pm, 1 << 20, 1000) == 0 && aligned(pm, 1 << 20) && ours(pm) >= 1000);
  free(pm);
  void* ma = memalign(24, 100);  // not a power of two: rounded up to 32, like glibc
  CHECK(ma != nullptr && aligned(ma, 32));
  free(ma);
  void* va = valloc(100);
  CHECK(va != nullptr && aligned(va, ps));
  free(va);
  void* pv = pvalloc(0);
  CHECK(pv != nullptr && aligned(pv, ps) && ours(pv) >= ps);
  free(pv);
  pv = pvalloc(ps + 1);
  CHECK(pv != nullptr && ours(pv) >= 2 * ps);
  free(pv);
  // malloc_usable_size, cfree, C23 sized frees
  void* u = malloc(100);
  CHECK(malloc_usable_size(u) >= 100 && malloc_usable_size(u) == ours(u));
  CHECK(malloc_usable_size(nullptr) == 0);
  // C23 names; glibc 2.36 does not declare them, so reach wfmm's through dlsym.
  sym<void (*)(void*, size_t)>("free_sized")(u, 100);
  void* fa = aligned_alloc(256, 512);
  sym<void (*)(void*, size_t, size_t)>("free_aligned_sized")(fa, 256, 512);
  auto cfree_fn = sym<void (*)(void*)>("cfree");
  cfree_fn(malloc(10));
  // glibc's internal aliases hand out and take back wfmm blocks.
  auto lm = sym<void* (*)(size_t)>("__libc_malloc");
  auto lf = sym<void (*)(void*)>("__libc_free");
  auto lc = sym<void* (*)(size_t, size_t)>("__libc_calloc");
  auto lr = sym<void* (*)(void*, size_t)>("__libc_realloc");
  auto lma = sym<void* (*)(size_t, size_t)>("__libc_memalign");
  auto lv = sym<void* (*)(size_t)>("__libc_valloc");
  auto lpv = sym<void* (*)(size_t)>("__libc_pvalloc");
  auto lpm = sym<int (*)(void**, size_t, size_t)>("__posix_memalign");
  void* x = lm(50);
  CHECK(ours(x) >= 50);
  x = lr(x, 5000);
  CHECK(ours(x) >= 5000);
  lf(x);
  x = lc(10, 10);
  CHECK(ours(x) >= 100);
  free(x);
  x = lma(128, 10);
  CHECK(aligned(x, 128) && ours(x) >= 10);
  free(x);
  x = lv(10);
  CHECK(aligned(x, ps));
  free(x);
  x = lpv(10);
  CHECK(aligned(x, ps) && ours(x) >= ps);
  free(x);
  CHECK(lpm(&x, 64, 10) == 0 && aligned(x, 64));
  free(x);
  // Introspection: plausible figures, accepted options, a real trim.
  std::vector<void*> many;
  for (int i = 0; i < 10000; ++i) many.push_back(malloc(1000));
  struct mallinfo2 mi = mallinfo2();
  CHECK(mi.uordblks >= 10000u * 1000 && mi.arena >= mi.uordblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  struct mallinfo mo = mallinfo();
#pragma GCC diagnostic pop
  CHECK(mo.uordblks > 0);
  // malloc_info: wfmm's figures in glibc's XML shape (glibc's own would be an empty heap).
  {
    char* xml = nullptr;
    size_t xml_len = 0;
    FILE* xf = open_memstream(&xml, &xml_len);
    CHECK(malloc_info(0, xf) == 0);
    fclose(xf);
    std::string s(xml, xml_len);
    free(xml);
    CHECK(s.rfind("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n", 0) == 0);
    CHECK(s.size() > 10 && s.compare(s.size() - 10, 10, "</malloc>\n") == 0);
    // The 10000 live blocks of 1000 bytes (class 1024) show in their size element, and the
    // elements balance (every opened element is closed).
    CHECK(s.find("to=\"1024\"") != std::string::npos);
    CHECK(s.find("</heap>") != std::string::npos && s.find("</sizes>") != std::string::npos);
    size_t rest = s.rfind("<total type=\"rest\" count=\"");
    CHECK(rest != std::string::npos && strtoull(s.c_str() + rest + 26, nullptr, 10) >= 10000);
    CHECK(s.find("<total type=\"mmap\"") != std::string::npos);
    CHECK(s.find("<aspace type=\"total\" size=\"") != std::string::npos);
    errno = 0;
    CHECK(malloc_info(1, stderr) == -1 && errno == EINVAL);
  }
  for (void* p : many) free(p);
  CHECK(malloc_trim(0) == 1);
  CHECK(mallopt(M_ARENA_MAX, 2) == 1);
  // libc-internal allocations are freed by the program, and the reverse.
  char* sd = strdup("hello");
  CHECK(ours(sd) >= 6);
  free(sd);
  char* as = nullptr;
  CHECK(asprintf(&as, "%d-%s", 42, "x") > 0 && strcmp(as, "42-x") == 0);
  free(as);
  char* buf = nullptr;
  size_t len = 0;
  FILE* ms = open_memstream(&buf, &len);
  fprintf(ms, "%0500d", 1);
  fclose(ms);
  CHECK(len == 500 && ours(buf) >= 501);
  free(buf);
  char* rp = realpath("/usr/../usr/bin", nullptr);
  CHECK(rp != nullptr && strcmp(rp, "/usr/bin") == 0);
  free(rp);
  FILE* f = fopen("/proc/self/status", "r");
  char* line = nullptr;
  size_t cap = 0;
  CHECK(getline(&line, &cap, f) > 0);
  free(line);
  fclose(f);
}

static int handler_calls = 0;
static void handler() {
  if (++handler_calls == 3) std::set_new_handler(nullptr);  // give up: new must throw
}

struct alignas(256) Wide {
  char c[300];
};

static void cxx_entry_points() {
  int* i1 = new int(5);
  int* ia = new int[100];
  CHECK(ours(i1) >= sizeof(int) && ours(ia) >= 100 * sizeof(int));
  delete i1;
  delete[] ia;
  int* n1 = new (std::nothrow) int(1);
  int* na = new (std::nothrow) int[10];
  CHECK(n1 != nullptr && na != nullptr);
  operator delete(n1, std::nothrow);
  operator delete[](na, std::nothrow);
  // Aligned new/delete, with and without size, arrays, nothrow.
  Wide* w = new Wide;
  CHECK(aligned(w, 256) && ours(w) >= sizeof(Wide));
  delete w;
  Wide* wa = new Wide[5];
  CHECK(aligned(wa, 256));
  delete[] wa;
  void* p = operator new(1000, std::align_val_t(4096));
  CHECK(aligned(p, 4096) && ours(p) >= 1000);
  operator delete(p, 1000, std::align_val_t(4096));
  p = operator new[](1000, std::align_val_t(1 << 20));
  CHECK(aligned(p, 1 << 20));
  operator delete[](p, 1000, std::align_val_t(1 << 20));
  p = operator new(10, std::align_val_t(64), std::nothrow);
  CHECK(aligned(p, 64));
  operator delete(p, std::align_val_t(64), std::nothrow);
  p = operator new[](10, std::align_val_t(64), std::nothrow);
  operator delete[](p, std::align_val_t(64), std::nothrow);
  p = operator new(50);
  operator delete(p, size_t(50));
  p = operator new[](50);
  operator delete[](p, size_t(50));
  p = operator new(50, std::align_val_t(32));
  operator delete(p, std::align_val_t(32));
  p = operator new[](50, std::align_val_t(32));
  operator delete[](p, std::align_val_t(32));
  // Out of memory: nothrow forms return null; throwing forms call the handler, then throw.
  CHECK(operator new(SIZE_MAX / 2, std::nothrow) == nullptr);
  CHECK(operator new[](SIZE_MAX / 2, std::nothrow) == nullptr);
  CHECK(operator new(SIZE_MAX / 2, std::align_val_t(64), std::nothrow) == nullptr);
  bool threw = false;
  try {
    (void)operator new(SIZE_MAX / 2);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK(threw);
  std::set_new_handler(handler);
  threw = false;
  try {
    (void)operator new[](SIZE_MAX / 2);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK(threw && handler_calls == 3);
  threw = false;
  try {
    (void)operator new(SIZE_MAX / 2, std::align_val_t(128));
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHECK(threw);
  std::string s(100000, 'x');
  std::vector<std::string> v(1000, s.substr(0, 100));
  CHECK(ours(s.data()) >= 100000 && v[999].size() == 100);
}

// Allocation from static constructors (before main; possibly before wfmm's own
// constructor ran) and frees from exit handlers and static destructors (after main).
static void* g_early = malloc(333);
static std::vector<std::string> g_static_strings(100, std::string(200, 's'));
static void* g_exit_block;
static void at_exit_free() {
  free(g_exit_block);
  free(g_early);
  void* late = malloc(1000);  // allocating during exit works too
  free(late);
}

int main() {
  g_exit_block = malloc(4000);
  atexit(at_exit_free);
  ours = sym<size_t (*)(const void*)>("wfmm_usable_size");
  auto stats = sym<void (*)(wfmm_stats*)>("wfmm_stats_get");
  wfmm_stats before;
  stats(&before);
  c_entry_points();
  cxx_entry_points();
  wfmm_stats after;
  stats(&after);
  CHECK(after.malloc_count > before.malloc_count + 10000);
  malloc_stats();  // prints wfmm's statistics to stderr
  if (failures != 0) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("all entry points behave\n");
  return 0;
}
