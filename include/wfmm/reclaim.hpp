// wfmm's safe memory reclamation for C++: regions, protect, retire. C++17 or later.
//
// Guide
// -----
// A lock-free structure unlinks a node while other threads may still be reading it. wfmm
// frees such a node only once no thread can reach it any more:
//
//  * region: a reader's window. Open one (wfmm::region r;) around each operation that
//    reads shared nodes. Regions nest; only the outermost enter/leave counts. Leaving ends
//    every protection the thread holds.
//  * protect(src, i): loads src and keeps the node it points to alive until the next
//    protect on the same index i (0 <= i < WFMM_PROTECT_SLOTS = 8) or the end of the region.
//    Use one index per pointer you hold at once (e.g. prev = 0, cur = 1, next = 2). src must
//    be a root (a member of the container object) or a field of a node protected by another
//    index. Cost when nothing changed: two loads and a compare. Wait-free always.
//  * retire(p): call once p is unlinked (no new reader can find it). ~T() runs and the block
//    is freed once every region that could hold p has moved on. Retiring needs no region and
//    never writes into *p. retire(p, deleter) runs deleter(p) instead, which takes the
//    memory over (std::default_delete<T>{} is typical). p must come from wfmm (new/malloc
//    while wfmm is the allocator, or wfmm_malloc) -- or, under ASan, TSan or valgrind, from
//    their new (WFMM_FOREIGN_BLOCKS; then deleted with operator delete once reclaimed).
//  * flush(): publishes the thread's partial batch now. barrier(): flush, then wait until
//    everything retired before the call is freed (outside any region; blocks like
//    rcu_barrier).
//
// Memory bound: blocks retired but not yet freed are at most one partial batch per thread
// (WFMM_BATCH, default 64) plus the batches that reservations can still reach; a thread
// stalled inside a region pins only the batches holding a block born before its
// reservations' eras (up to WFMM_BATCH blocks per such block), so retire-heavy threads keep
// reclaiming around it (robustness). reclaim/README.md derives it.
//
// Example: a Treiber stack.
//
//   struct node { int value; node* next; };
//   std::atomic<node*> top{nullptr};
//
//   void push(int v) {
//     node* n = new node{v, top.load(std::memory_order_relaxed)};
//     while (!top.compare_exchange_weak(n->next, n, std::memory_order_release,
//                                       std::memory_order_relaxed)) {}
//   }
//   bool pop(int* out) {
//     wfmm::region r;                                  // readers' window
//     for (;;) {
//       node* n = wfmm::protect(top, 0);               // n stays valid in this region
//       if (n == nullptr) return false;
//       if (top.compare_exchange_weak(n, n->next, std::memory_order_acquire)) {
//         *out = n->value;
//         wfmm::retire(n);                             // deleted once no reader holds it
//         return true;
//       }
//     }
//   }
#pragma once

#if __cplusplus < 201703L
#error "wfmm/reclaim.hpp needs C++17 or later"
#endif

#include <atomic>
#include <new>
#include <type_traits>
#include <utility>

#include "fast.h"

namespace wfmm {

// RAII region: enter on construction, leave on destruction. Not copyable or movable.
class region {
 public:
  region() noexcept { wfmm_enter_fast(); }
  ~region() { wfmm_leave_fast(); }
  region(const region&) = delete;
  region& operator=(const region&) = delete;
};

template <class T>
T* protect(const std::atomic<T*>& src, unsigned index) noexcept {
  static_assert(sizeof(std::atomic<T*>) == sizeof(void*) && std::atomic<T*>::is_always_lock_free);
  // std::atomic<T*> holds exactly one pointer; wfmm_protect loads it atomically (acquire).
  return static_cast<T*>(
      wfmm_protect_fast(reinterpret_cast<void* const volatile*>(const_cast<std::atomic<T*>*>(&src)),
                   index));
}

template <class T>
void retire(T* p) noexcept {
  if (p == nullptr) return;
  // wfmm_retire_new: a foreign block (WFMM_FOREIGN_BLOCKS, under a sanitizer or valgrind)
  // came from operator new and goes back through operator delete.
  if constexpr (std::is_trivially_destructible_v<T>) {
    wfmm_retire_new(const_cast<std::remove_cv_t<T>*>(p), nullptr, nullptr);
  } else {
    wfmm_retire_new(
        const_cast<std::remove_cv_t<T>*>(p), [](void* q, void*) { static_cast<T*>(q)->~T(); },
        nullptr);
  }
}

// deleter(p) runs when safe and takes the memory over. A stateless deleter costs nothing
// extra; a stateful one is copied into a small block of its own until it runs.
template <class T, class D>
void retire(T* p, D deleter) {
  if (p == nullptr) return;
  void* q = const_cast<std::remove_cv_t<T>*>(p);
  if constexpr (std::is_empty_v<D> && std::is_default_constructible_v<D>) {
    (void)deleter;
    wfmm_retire_dispose(q, [](void* x, void*) { D{}(static_cast<T*>(x)); }, nullptr);
  } else {
    D* d = new D(std::move(deleter));
    wfmm_retire_dispose(
        q,
        [](void* x, void* ctx) {
          D* dd = static_cast<D*>(ctx);
          (*dd)(static_cast<T*>(x));
          delete dd;
        },
        d);
  }
}

inline void flush() noexcept { wfmm_flush(); }
inline void barrier() noexcept { wfmm_barrier(); }

}  // namespace wfmm
