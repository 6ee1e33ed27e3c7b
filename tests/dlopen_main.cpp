// dlopen/dlclose of a library that allocates: blocks cross the boundary both ways, and the
// library is loaded and unloaded repeatedly. Run under LD_PRELOAD=libwfmm.so.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wfmm/wfmm.h"

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  auto ours = reinterpret_cast<size_t (*)(const void*)>(dlsym(RTLD_DEFAULT, "wfmm_usable_size"));
  if (ours == nullptr) {
    fprintf(stderr, "FAIL: wfmm is not in the process\n");
    return 1;
  }
  void* kept = nullptr;
  for (int round = 0; round < 20; ++round) {
    void* h = dlopen(argv[1], RTLD_NOW | (round % 2 ? RTLD_LOCAL : RTLD_GLOBAL));
    if (h == nullptr) {
      fprintf(stderr, "FAIL: dlopen: %s\n", dlerror());
      return 1;
    }
    auto make = reinterpret_cast<void* (*)(size_t)>(dlsym(h, "lib_make"));
    auto lfree = reinterpret_cast<void (*)(void*)>(dlsym(h, "lib_free"));
    auto mks = reinterpret_cast<void* (*)(size_t)>(dlsym(h, "lib_make_string"));
    auto sz = reinterpret_cast<size_t (*)(void*)>(dlsym(h, "lib_string_size"));
    auto dels = reinterpret_cast<void (*)(void*)>(dlsym(h, "lib_delete_string"));
    auto ctor_ok = reinterpret_cast<int (*)()>(dlsym(h, "lib_constructor_block_ok"));
    if (!ctor_ok()) return 1;
    char* a = static_cast<char*>(make(1000));
    if (ours(a) < 1000 || a[999] != 'L') return 1;
    free(a);              // the library's block, freed by the program
    lfree(malloc(5000));  // the program's block, freed by the library
    void* s = mks(300);
    if (sz(s) != 300) return 1;
    dels(s);
    if (kept != nullptr) free(kept);  // allocated by an earlier, now unloaded, instance
    kept = make(100);
    dlclose(h);
  }
  free(kept);
  printf("dlopen ok\n");
  return 0;
}
