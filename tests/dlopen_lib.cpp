// A library loaded with dlopen: it allocates with malloc and new, and frees what the main
// program allocated.
#include <stdlib.h>
#include <string.h>

#include <string>

// Runs inside dlopen, with the loader's lock held: allocation must work there.
static void* g_from_constructor;
__attribute__((constructor)) static void lib_init() {
  g_from_constructor = malloc(777);
  memset(g_from_constructor, 'C', 777);
}
__attribute__((destructor)) static void lib_fini() { free(g_from_constructor); }

extern "C" int lib_constructor_block_ok() {
  return static_cast<char*>(g_from_constructor)[776] == 'C';
}

extern "C" void* lib_make(size_t n) {
  char* p = static_cast<char*>(malloc(n));
  memset(p, 'L', n);
  return p;
}

extern "C" void lib_free(void* p) { free(p); }

extern "C" void* lib_make_string(size_t n) { return new std::string(n, 'S'); }

extern "C" size_t lib_string_size(void* s) { return static_cast<std::string*>(s)->size(); }

extern "C" void lib_delete_string(void* s) { delete static_cast<std::string*>(s); }
