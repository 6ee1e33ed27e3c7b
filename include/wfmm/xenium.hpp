// wfmm::xenium_reclaimer: xenium's containers on wfmm's safe memory reclamation.
//
// Guide
// -----
// xenium (https://github.com/mpoeter/xenium) takes its reclamation scheme as a policy. This
// header supplies one more scheme, backed by the reclamation built into wfmm's heaps
// (Crystalline-W; wfmm.h, reclaim.hpp). Complete C++17 program: examples/xenium_cxx17.cpp.
//
//   #include <cassert>                      // xenium 0.0.2's headers need it first
//   #include <xenium/michael_scott_queue.hpp>
//   #include <wfmm/xenium.hpp>
//
//   using queue = xenium::michael_scott_queue<int, xenium::policy::reclaimer<wfmm::xenium_reclaimer>>;
//   queue q;
//   q.push(42);                             // any thread
//   int v;
//   if (q.try_pop(v)) { ... }               // the unlinked node is retired to wfmm
//
//   {
//     wfmm::xenium_reclaimer::region_guard r;  // optional: one region around many operations
//     for (...) q.try_pop(v);
//   }
//
// Requirements and behaviour:
//  * C++17 or later, as xenium itself (tests/xenium/xenium17_test.cpp is built as C++17).
//  * The program's operator new must be wfmm's (link libwfmm.so or libwfmm.a, or preload
//    it): containers allocate nodes with `new`, and wfmm_retire_dispose needs a wfmm block.
//    Exception: under ASan, TSan or valgrind their operator new serves the program and the
//    nodes are retired as foreign blocks (WFMM_FOREIGN_BLOCKS; docs/debugging.md).
//  * enable_concurrent_ptr adds no data member to a node (it is an empty base; a stateful
//    deleter is stored in a small block of its own when the node is retired).
//  * A guard_ptr that holds a node owns one of the thread's WFMM_PROTECT_SLOTS (8) protect
//    indexes and keeps a wfmm region open, so guards work with or without region_guard.
//    Copies of a guard share its index (see "Copies" below), so the limit is 8 *different*
//    nodes held at once per thread. xenium's map/set iterators hold two guards each and an
//    operation uses up to three more; exceeding 8 prints a message and aborts.
//  * The first guard to take an index enters a region, the last one to give it back leaves
//    it: a thread with no guard and no region_guard holds nothing. region_guard is
//    wfmm_enter/wfmm_leave, which nest; only the outermost leave ends the protections.
//  * An index given back keeps protecting its last node until it is reused or the region
//    ends (wfmm has no "unprotect"); that only delays that node's reclamation.
//  * guard_ptr::reclaim() retires the node with wfmm_retire_dispose; the node's deleter
//    (std::default_delete by default: `delete node`) runs once no region can hold it.
//  * acquire() on a guard whose own node contains the source pointer is not supported (the
//    new protection replaces the old one before the source is read) -- as with xenium's
//    hazard_pointer. xenium's containers always read a node's link into another guard.
//
// Copies. Copying a guard that holds p shares the source's protect index (a per-thread
// count of guards per index) instead of protecting p again on a new index. wfmm's contract
// is "protected until the next protect on that index or the outermost leave"; a shared index
// is protected again only after every guard sharing it has let it go (an acquire that needs a
// protect, the era having moved, on a guard whose index is shared first moves that guard to
// a fresh index; while the era stands the shared index covers the new load: covers()).
// Protecting p again on a new index through a private copy of the pointer would be justified
// only while p has not been retired: a fresh reservation's era is >= p's birth era, but if p
// was retired before that reservation (while the source guard held it), the new reservation
// alone need not cover p once the source lets go. Sharing has no such gap, costs no
// protect, and uses fewer indexes (tests/xenium: Guard.CopyOutlivesItsSourceAfterRetire
// fails with the re-protect scheme).
//
// Guards built from a raw pointer (explicit guard_ptr(p)), which xenium uses for a node the
// thread has just allocated, protect p through a per-thread root (one per index) holding p:
// the reservation's era is >= p's birth era, and p is not retired yet (the caller owns or
// holds it), so every later retire of p falls inside the reservation. As with hazard
// pointers, the caller must know that p is still live when it builds the guard. The roots
// sit in one wfmm block per thread, retired (never plainly freed) when the thread exits, as
// wfmm_protect's contract asks of roots outside static storage.
//
// Container roots: a container's head/bucket concurrent_ptrs are wfmm_protect roots too.
// Destroy a container only when no thread operates on it (xenium's rule anyway). wfmm's
// contract is stricter: a thread that was helping a slow protect on one of those roots may,
// late, read it once more (and then find the request closed). In static storage or on a
// stack that read is harmless; a container in heap memory makes it a stale read of freed
// memory, harmless unless that memory went back to the OS in between.
//
// Marks: xenium's marked_ptr keeps marks in the top bits of the pointer; wfmm_protect
// returns the loaded word unchanged and never dereferences it.
#pragma once

#if __cplusplus < 201703L
#error "wfmm/xenium.hpp needs C++17 or later (as xenium itself does)"
#endif

#include <cassert>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include <xenium/reclamation/detail/concurrent_ptr.hpp>
#include <xenium/reclamation/detail/guard_ptr.hpp>

#include "fast.h"

// constinit where the language has it; GCC >= 10 and Clang spell it otherwise in C++17.
// Only a check: the initialiser is a constant either way, so no TLS init guard is emitted.
#if defined(__cpp_constinit)
#define WFMM_XENIUM_CONSTINIT constinit
#elif defined(__clang__)
#define WFMM_XENIUM_CONSTINIT __attribute__((require_constant_initialization))
#elif defined(__GNUC__) && __GNUC__ >= 10
#define WFMM_XENIUM_CONSTINIT __constinit
#else
#define WFMM_XENIUM_CONSTINIT
#endif

namespace wfmm {

namespace xenium_detail {

// Per-thread protect-index bookkeeping. Constant-initialised, so thread_local access needs
// no init guard.
struct slot_state {
  std::uint32_t used = 0;                   // bit i: index i held by at least one guard
  std::uint32_t shares[WFMM_PROTECT_SLOTS] = {};  // guards sharing index i
};

inline WFMM_XENIUM_CONSTINIT thread_local slot_state tls_slots{};

// Roots for guards built from a raw pointer: wfmm_protect(&roots[i], i), one per index.
// wfmm_protect wants a root in static storage or in a wfmm block that is only ever retired
// (threads helping a slow protect may read *src after the call returned), so each thread's
// roots live in a wfmm block that is retired, not freed, when the thread exits.
struct root_block {
  std::atomic<void*> roots[WFMM_PROTECT_SLOTS];
};
struct root_owner {
  root_block* block = nullptr;
  ~root_owner() {
    if (block != nullptr) wfmm_retire(block);
  }
};
inline thread_local root_owner tls_roots;

[[gnu::cold, gnu::noinline]] inline root_block* make_roots() noexcept {
  void* m = wfmm_malloc(sizeof(root_block));
  if (m == nullptr) {
    std::fputs("wfmm::xenium_reclaimer: out of memory for a thread's protect roots\n", stderr);
    std::abort();
  }
  auto* b = ::new (m) root_block{};
  tls_roots.block = b;
  return b;
}

inline std::atomic<void*>& root(unsigned char i) noexcept {
  root_block* b = tls_roots.block;
  if (b == nullptr) b = make_roots();
  return b->roots[i];
}

[[noreturn, gnu::cold, gnu::noinline]] inline void too_many_guards() noexcept {
  std::fprintf(stderr,
               "wfmm::xenium_reclaimer: more than %d guard_ptrs hold different nodes at once "
               "in one thread (WFMM_PROTECT_SLOTS); note that every xenium iterator holds two\n",
               WFMM_PROTECT_SLOTS);
  std::abort();
}

inline constexpr unsigned char no_slot = 0xff;

// Takes a free index for one guard; the first index in use opens a region.
inline unsigned char slot_take() noexcept {
  slot_state& s = tls_slots;
  const std::uint32_t free = ~s.used & ((1u << WFMM_PROTECT_SLOTS) - 1);
  if (free == 0) too_many_guards();
  const unsigned i = static_cast<unsigned>(__builtin_ctz(free));  // free != 0
  if (s.used == 0) wfmm_enter_fast();
  s.used |= 1u << i;
  s.shares[i] = 1;
  return static_cast<unsigned char>(i);
}

inline void slot_share(unsigned char i) noexcept { ++tls_slots.shares[i]; }

inline bool slot_exclusive(unsigned char i) noexcept { return tls_slots.shares[i] == 1; }

// Gives one guard's share back; the last index given back closes the region.
inline void slot_drop(unsigned char i) noexcept {
  slot_state& s = tls_slots;
  if (--s.shares[i] != 0) return;
  s.used &= ~(1u << i);
  if (s.used == 0) wfmm_leave_fast();
}

// The raw word of a xenium concurrent_ptr: it holds exactly one std::atomic<marked_ptr>,
// and marked_ptr is exactly one pointer (mark bits included).
template <class CP>
void* const volatile* raw_address(const CP& p) noexcept {
  using mp = typename CP::marked_ptr;
  static_assert(sizeof(CP) == sizeof(void*) && std::is_standard_layout_v<CP>,
                "xenium::reclamation::detail::concurrent_ptr is expected to hold one atomic");
  static_assert(sizeof(mp) == sizeof(void*) && std::is_trivially_copyable_v<mp>);
  static_assert(std::atomic<mp>::is_always_lock_free);
  return reinterpret_cast<void* const volatile*>(&p);
}

// std::bit_cast for C++17: To and From are one pointer-sized trivially copyable word
// (a marked_ptr has constructors, hence the void* for -Wclass-memaccess).
template <class To, class From>
To word_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From) && std::is_trivially_copyable_v<To> &&
                std::is_trivially_copyable_v<From> && std::is_default_constructible_v<To>);
  To to;
  std::memcpy(static_cast<void*>(&to), static_cast<const void*>(&from), sizeof(To));
  return to;
}

template <class T, class D>
void retire_with_deleter(T* p, D d) noexcept {
  void* q = const_cast<std::remove_cv_t<T>*>(p);
  if constexpr (std::is_empty_v<D> && std::is_default_constructible_v<D>) {
    (void)d;
    wfmm_retire_dispose(q, [](void* x, void*) { D{}(static_cast<T*>(x)); }, nullptr);
  } else {
    D* dd = new D(std::move(d));  // freed when the node is disposed
    wfmm_retire_dispose(
        q,
        [](void* x, void* ctx) {
          D* del = static_cast<D*>(ctx);
          D local(std::move(*del));
          delete del;
          local(static_cast<T*>(x));
        },
        dd);
  }
}

}  // namespace xenium_detail

class xenium_reclaimer {
  template <class T, class MarkedPtr>
  class guard_ptr;

 public:
  // Base of every node a container manages. Empty: nodes keep their size.
  template <class T, std::size_t N = 0, class D = std::default_delete<T>>
  class enable_concurrent_ptr {
   public:
    static constexpr std::size_t number_of_mark_bits = N;
    using Deleter = D;

   protected:
    enable_concurrent_ptr() noexcept = default;
    enable_concurrent_ptr(const enable_concurrent_ptr&) noexcept = default;
    enable_concurrent_ptr(enable_concurrent_ptr&&) noexcept = default;
    enable_concurrent_ptr& operator=(const enable_concurrent_ptr&) noexcept = default;
    enable_concurrent_ptr& operator=(enable_concurrent_ptr&&) noexcept = default;
    ~enable_concurrent_ptr() noexcept = default;
  };

  // One region around any number of operations (wfmm_enter / wfmm_leave; nests).
  struct region_guard {
    region_guard() noexcept { wfmm_enter_fast(); }
    ~region_guard() { wfmm_leave_fast(); }
    region_guard(const region_guard&) = delete;
    region_guard(region_guard&&) = delete;
    region_guard& operator=(const region_guard&) = delete;
    region_guard& operator=(region_guard&&) = delete;
  };

  template <class T, std::size_t N = T::number_of_mark_bits>
  using concurrent_ptr = xenium::reclamation::detail::concurrent_ptr<T, N, guard_ptr>;
};

template <class T, class MarkedPtr>
class xenium_reclaimer::guard_ptr
    : public xenium::reclamation::detail::guard_ptr<T, MarkedPtr, guard_ptr<T, MarkedPtr>> {
  using base = xenium::reclamation::detail::guard_ptr<T, MarkedPtr, guard_ptr>;
  using Deleter = typename T::Deleter;
  using cptr = concurrent_ptr<T, MarkedPtr::number_of_mark_bits>;
  friend base;

 public:
  guard_ptr() noexcept = default;

  // Guards p, which the caller knows to be live (e.g. a node it just allocated).
  explicit guard_ptr(const MarkedPtr& p) noexcept : base(p) {
    if (p.get() != nullptr) {
      slot_ = xenium_detail::slot_take();
      std::atomic<void*>& root = xenium_detail::root(slot_);
      root.store(xenium_detail::word_cast<void*>(p), std::memory_order_relaxed);
      (void)wfmm_protect_fast(reinterpret_cast<void* const volatile*>(&root), slot_);
    }
  }

  guard_ptr(const guard_ptr& g) noexcept : base(g.ptr), slot_(g.slot_) {
    if (slot_ != xenium_detail::no_slot) xenium_detail::slot_share(slot_);
  }

  guard_ptr(guard_ptr&& g) noexcept : base(g.ptr), slot_(g.slot_) {
    g.ptr.reset();
    g.slot_ = xenium_detail::no_slot;
  }

  guard_ptr& operator=(const guard_ptr& g) noexcept {
    if (&g == this) return *this;
    if (g.slot_ != slot_) {
      if (g.slot_ != xenium_detail::no_slot) xenium_detail::slot_share(g.slot_);
      if (slot_ != xenium_detail::no_slot) xenium_detail::slot_drop(slot_);
      slot_ = g.slot_;
    }
    this->ptr = g.ptr;
    return *this;
  }

  guard_ptr& operator=(guard_ptr&& g) noexcept {
    if (&g == this) return *this;
    reset();
    this->ptr = g.ptr;
    slot_ = g.slot_;
    g.ptr.reset();
    g.slot_ = xenium_detail::no_slot;
    return *this;
  }

  ~guard_ptr() { reset(); }

  // Takes a snapshot of p and protects its target (if any) until reset.
  // (always_inline: the guard operations of every traversal step; left to GCC, covers()
  // pushed acquire and slot_take out of line in the MS queue: 402 -> 532 instructions per
  // operation, callgrind.)
  [[gnu::always_inline]] void acquire(
      const cptr& p, std::memory_order order = std::memory_order_seq_cst) noexcept {
    const MarkedPtr seen = p.load(order == std::memory_order_relaxed ? order
                                                                     : std::memory_order_acquire);
    if (seen == this->ptr) return;  // already held (it cannot have been reclaimed)
    if (seen.get() == nullptr) {
      reset();
      this->ptr = seen;  // keeps a mark on a null pointer, as xenium's guards do
      return;
    }
    if (covers(order)) {
      this->ptr = seen;
      return;
    }
    const MarkedPtr v = protect(p);
    if (v.get() == nullptr) {
      reset();
      this->ptr = v;
      return;
    }
    this->ptr = v;
  }

  // As acquire, but gives up (returns false, guard empty) if p does not hold `expected`.
  [[gnu::always_inline]] bool acquire_if_equal(
      const cptr& p, const MarkedPtr& expected,
      std::memory_order order = std::memory_order_seq_cst) noexcept {
    // (acquire, as asked: covers() may keep this load; wfmm_protect's own is acquire too)
    const MarkedPtr seen = p.load(order == std::memory_order_relaxed ? order
                                                                     : std::memory_order_acquire);
    if (seen != expected) {
      reset();
      return false;
    }
    if (seen.get() == nullptr) {
      reset();
      this->ptr = seen;
      return true;
    }
    if (covers(order)) {
      this->ptr = seen;
      return true;
    }
    const MarkedPtr v = protect(p);
    if (v != expected) {
      reset();
      return false;
    }
    this->ptr = v;
    return true;
  }

  // Gives the protection up. Postcondition: get() == nullptr.
  void reset() noexcept {
    if (slot_ != xenium_detail::no_slot) {
      xenium_detail::slot_drop(slot_);
      slot_ = xenium_detail::no_slot;
    }
    this->ptr.reset();
  }

  // Resets, and retires the node: d(node) runs once no region can hold it.
  void reclaim(Deleter d = Deleter()) noexcept {
    T* p = this->ptr.get();
    reset();
    if (p != nullptr) xenium_detail::retire_with_deleter(p, std::move(d));
  }

 private:
  void do_swap(guard_ptr& g) noexcept { std::swap(slot_, g.slot_); }

  // True if the pointer the caller just loaded (acquire) needs no protect: this guard holds
  // an index (so the region opened before that load, and the index's last reservation was
  // made before it too) that still reserves the global era. wfmm_protect_fast's test on the
  // caller's load instead of a second one: per hop of a list traversal 5 fewer
  // instructions (the index test, the reload). The index may be shared with a copy of this
  // guard: nothing is reserved anew, so the copy's node stays covered. The depth test stays:
  // a program that left the guard's region (an unmatched wfmm_leave) gets wfmm_protect's
  // report, not an unprotected pointer.
  [[gnu::always_inline]] bool covers(std::memory_order order) const noexcept {
    return order != std::memory_order_relaxed && slot_ != xenium_detail::no_slot &&
           wfmm_era_reserved_fast(slot_);
  }

  // Protects *p on this guard's own index (a fresh one if it has none or shares it).
  MarkedPtr protect(const cptr& p) noexcept {
    if (slot_ == xenium_detail::no_slot) {
      slot_ = xenium_detail::slot_take();
    } else if (!xenium_detail::slot_exclusive(slot_)) {
      xenium_detail::slot_drop(slot_);  // others still hold it: no leave here
      slot_ = xenium_detail::slot_take();
    }
    // wfmm_protect's load is an acquire load inside an opaque call; xenium's containers ask
    // for acquire (seq_cst only by default argument), and on x86-64 a seq_cst load is the
    // same instruction.
    return xenium_detail::word_cast<MarkedPtr>(wfmm_protect_fast(xenium_detail::raw_address(p), slot_));
  }

  unsigned char slot_ = xenium_detail::no_slot;
};

}  // namespace wfmm

#undef WFMM_XENIUM_CONSTINIT
