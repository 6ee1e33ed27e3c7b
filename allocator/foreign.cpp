// Foreign blocks: blocks that the process's malloc handed out while that malloc is not
// wfmm's (a sanitizer's or valgrind's replaced it). Retire accepts them (WFMM_FOREIGN_BLOCKS)
// as born in era 0 and frees them through that malloc's free once reclaimed. Only the
// decision and the calls into the other malloc live here; retire keeps no per-block state
// for them beyond the batch item (reclaim/README.md, "Foreign blocks").
#include "foreign.h"

#include <dlfcn.h>
#include <string.h>

#include "options.h"
#include "segment_map.h"

extern char** environ;

extern "C" {
// The sanitizers' allocator interface (sanitizer/allocator_interface.h), weak: present in
// ASan, TSan, MSan, LSan, HWASan programs; absent otherwise.
int __sanitizer_get_ownership(const volatile void* p) __attribute__((weak));
size_t __sanitizer_get_allocated_size(const volatile void* p) __attribute__((weak));
}

namespace wfmm {

namespace {

using MallocFn = void* (*)(size_t);
using FreeFn = void (*)(void*);
using UsableFn = size_t (*)(void*);

enum : int { kUnknown = 0, kNoTool, kSanitizer, kMemcheck };

// The process's malloc family as a program call reaches it (RTLD_DEFAULT: the first
// definition in the global scope; valgrind redirects calls to it at a lower level).
// Written once, by whichever thread decides first; every thread computes the same values.
std::atomic<FreeFn> g_free{nullptr};
std::atomic<FreeFn> g_delete{nullptr};  // operator delete(void*), _ZdlPv
std::atomic<UsableFn> g_usable{nullptr};
std::atomic<int> g_tool{kUnknown};

// valgrind runs a client with its preload library in LD_PRELOAD (memcheck's is
// vgpreload_memcheck-<arch>.so); read without allocating, like the options.
bool under_memcheck() {
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {  // Bound: the environment.
    if (strncmp(*e, "LD_PRELOAD=", 11) == 0) return strstr(*e, "vgpreload_memcheck") != nullptr;
  }
  return false;
}

// Decides once: is a checking tool's malloc the process's malloc? Calls that malloc once
// and looks whether the block is in a wfmm segment: that is true exactly when wfmm serves
// the program's malloc (linked or preloaded), whatever the symbol tables say.
int decide() {
  int tool = g_tool.load(std::memory_order_acquire);
  if (tool != kUnknown) return tool;
  auto m = reinterpret_cast<MallocFn>(dlsym(RTLD_DEFAULT, "malloc"));
  auto f = reinterpret_cast<FreeFn>(dlsym(RTLD_DEFAULT, "free"));
  auto u = reinterpret_cast<UsableFn>(dlsym(RTLD_DEFAULT, "malloc_usable_size"));
  tool = kNoTool;
  if (m != nullptr && f != nullptr) {
    void* probe = m(32);
    bool ours = probe != nullptr && segment_map_entry(reinterpret_cast<uintptr_t>(probe)) != 0;
    if (probe != nullptr) f(probe);
    if (!ours) {
      if (&__sanitizer_get_ownership != nullptr)
        tool = kSanitizer;
      else if (u != nullptr && under_memcheck())
        tool = kMemcheck;
    }
  }
  g_free.store(f, std::memory_order_relaxed);
  g_delete.store(reinterpret_cast<FreeFn>(dlsym(RTLD_DEFAULT, "_ZdlPv")), std::memory_order_relaxed);
  g_usable.store(u, std::memory_order_relaxed);
  g_tool.store(tool, std::memory_order_release);
  return tool;
}

}  // namespace

const char* foreign_block_check(void* p, size_t* size) {
  long mode = option(Opt::kForeignBlocks);
  if (mode == 0) return "invalid pointer (not allocated by wfmm)";
  int tool = decide();
  if (tool == kNoTool && mode == 2)
    return "invalid pointer (not allocated by wfmm; WFMM_FOREIGN_BLOCKS=auto accepts "
           "another malloc's blocks only under ASan, TSan or valgrind)";
  if (g_free.load(std::memory_order_relaxed) == nullptr)
    return "invalid pointer (not allocated by wfmm; no other malloc found)";
  // The tool can tell its own blocks: a stack or static address stays an error.
  if (tool == kSanitizer) {
    if (!__sanitizer_get_ownership(p))
      return "invalid pointer (allocated neither by wfmm nor by the sanitizer's malloc)";
    *size = __sanitizer_get_allocated_size(p);
    return nullptr;
  }
  UsableFn u = g_usable.load(std::memory_order_relaxed);
  if (tool == kMemcheck) {
    // memcheck's malloc_usable_size is 0 for anything it did not hand out.
    *size = u(p);
    if (*size == 0) return "invalid pointer (allocated neither by wfmm nor by valgrind's malloc)";
    return nullptr;
  }
  // WFMM_FOREIGN_BLOCKS=on with no tool: trusted as the process's malloc's block.
  *size = u != nullptr ? u(p) : 0;
  return nullptr;
}

void foreign_free(void* p, bool by_new) {
  FreeFn f = by_new ? g_delete.load(std::memory_order_relaxed) : nullptr;
  (f != nullptr ? f : g_free.load(std::memory_order_relaxed))(p);
}

}  // namespace wfmm
