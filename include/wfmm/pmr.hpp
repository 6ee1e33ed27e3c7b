// wfmm as a std::pmr::memory_resource: immediate free, or free deferred through reclamation.
// C++17 or later (<memory_resource>), as reclaim.hpp, which the deferred example uses.
//
// Guide
// -----
// Two resources hand out wfmm blocks to anything written against std::pmr (containers,
// polymorphic_allocator, monotonic_buffer_resource upstreams):
//
//  * wfmm::pmr::resource: allocate = wfmm_malloc (alignment <= 16, which every wfmm block
//    has) or wfmm_aligned_alloc (larger alignments); deallocate = wfmm_free, at once. Throws
//    std::bad_alloc when wfmm is out of memory (without exceptions: a message and abort). Every instance is equal to every other one
//    (they share wfmm's heaps), so containers may swap or move storage between them.
//
//  * wfmm::pmr::deferred_resource: allocates the same way, but deallocate retires the block
//    (wfmm_retire) instead of freeing it: the block is freed once no wfmm region can still
//    hold it (reclaim.hpp). A container's nodes can then be unlinked and deallocated while
//    lock-free readers still traverse them, provided the readers protect what they follow
//    (wfmm::region + wfmm::protect). Deferred instances are equal to each other only: a
//    resource would free at once what a deferred one was asked to keep.
//
// What deallocate does not defer. A container destroys an element before it deallocates
// it, and deallocate never touches the memory, so what readers may still read after the
// unlink must stay meaningful after destruction: trivially destructible nodes, or nodes
// unlinked and deallocated without being destroyed first (std::atomic fields are trivially
// destructible). For destructors that must wait for the readers, use wfmm::retire(p)
// (reclaim.hpp) instead of a resource. With WFMM_POISON=1 a retired block is filled with
// 0xdb when it is finally freed, so a reader that outlives its protection sees it.
//
// Blocking calls. deferred_resource::release() and ~deferred_resource() call wfmm_barrier():
// they block until the blocks this thread deallocated through any deferred_resource, and
// every batch other threads have already published, are freed (like rcu_barrier). Other
// threads' partial batches are published when those threads call wfmm_flush(), fill a batch
// (WFMM_BATCH blocks) or exit. Both must be called outside any wfmm region (a region, an RCU
// read-side section or a live std_compat::hazard_pointer in this thread): wfmm reports the
// misuse and aborts, since the call would wait for itself. Neither is needed for safety --
// retired blocks never refer back to the resource -- they give "everything given back"
// a point in time, e.g. at the end of a phase or before measuring memory.
//
// Complete program: examples/pmr.cpp (C++17; built and run by ctest, example_pmr).
//
// Example: a std::pmr container on wfmm.
//
//   wfmm::pmr::resource res;
//   std::pmr::vector<std::pmr::string> v(&res);   // every allocation is a wfmm block
//   v.emplace_back("a string long enough to leave the small-string buffer");
//
// Example: a lock-free list whose nodes come from a deferred_resource.
//
//   struct node { std::atomic<int> value; std::atomic<node*> next; };  // trivially destructible
//   wfmm::pmr::deferred_resource dres;
//   std::pmr::polymorphic_allocator<node> alloc(&dres);
//   std::atomic<node*> head{nullptr};
//
//   int first() {                                 // any number of reader threads
//     wfmm::region r;
//     node* n = wfmm::protect(head, 0);           // n stays valid until ~region
//     return n != nullptr ? n->value.load() : -1;
//   }
//   void pop_front() {                            // one writer (or writers under a lock)
//     node* n = head.load();
//     if (n == nullptr) return;
//     head.store(n->next.load());                 // unlinked: no new reader can find n
//     alloc.deallocate(n, 1);                     // retired; freed once readers move on
//   }
#pragma once

#if __cplusplus < 201703L
#error "wfmm/pmr.hpp needs C++17 or later (std::pmr)"
#endif

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <memory_resource>
#include <new>

#include "wfmm.h"

namespace wfmm::pmr {

namespace detail {

// Every wfmm block is 16-byte aligned (wfmm.h); larger alignments need wfmm_aligned_alloc.
inline constexpr std::size_t kMallocAlignment = 16;

// std::bad_alloc; without exceptions, a message and abort (as libstdc++ does).
[[noreturn, gnu::cold, gnu::noinline]] inline void out_of_memory(std::size_t bytes,
                                                                 std::size_t alignment) {
#if defined(__cpp_exceptions)
  (void)bytes;
  (void)alignment;
  throw std::bad_alloc();
#else
  std::fprintf(stderr, "wfmm::pmr: out of memory (%zu bytes, alignment %zu)\n", bytes,
               alignment);
  std::abort();
#endif
}

inline void* allocate(std::size_t bytes, std::size_t alignment) {
  // A zero-byte request still needs a distinct, deallocatable pointer.
  if (bytes == 0) bytes = 1;
  void* p = alignment <= kMallocAlignment ? wfmm_malloc(bytes)
                                          : wfmm_aligned_alloc(alignment, bytes);
  if (__builtin_expect(p == nullptr, 0)) out_of_memory(bytes, alignment);
  return p;
}

template <class R>
bool same_kind([[maybe_unused]] const R* self, const std::pmr::memory_resource& other) noexcept {
#if defined(__GXX_RTTI) || defined(_CPPRTTI)
  return dynamic_cast<const R*>(&other) != nullptr;
#else
  return &other == self;  // without RTTI only an instance recognises itself
#endif
}

}  // namespace detail

// deallocate frees at once (wfmm_free). Thread-safe; holds no state.
class resource : public std::pmr::memory_resource {
 public:
  resource() noexcept = default;
  resource(const resource&) noexcept = default;
  resource& operator=(const resource&) noexcept = default;
  ~resource() override = default;

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    return detail::allocate(bytes, alignment);
  }
  void do_deallocate(void* p, std::size_t, std::size_t) override { wfmm_free(p); }
  // Equal to any wfmm::pmr::resource (one heap behind them all); not to deferred_resource.
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return detail::same_kind(this, other);
  }
};

// deallocate retires (wfmm_retire): the block is freed once no region can hold it.
// Thread-safe; holds no state. Not copyable: its destructor blocks (see the guide).
class deferred_resource : public std::pmr::memory_resource {
 public:
  deferred_resource() noexcept = default;
  deferred_resource(const deferred_resource&) = delete;
  deferred_resource& operator=(const deferred_resource&) = delete;
  // Blocks until the deallocated blocks are freed (release()). Pre: outside any region.
  ~deferred_resource() override { wfmm_barrier(); }

  // Blocks until every block this thread deallocated (through any deferred_resource), and
  // every batch already published by other threads, is freed. Pre: outside any region.
  void release() noexcept { wfmm_barrier(); }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    return detail::allocate(bytes, alignment);
  }
  void do_deallocate(void* p, std::size_t, std::size_t) override { wfmm_retire(p); }
  // Equal to any deferred_resource; not to wfmm::pmr::resource (it would free at once).
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return detail::same_kind(this, other);
  }
};

}  // namespace wfmm::pmr
