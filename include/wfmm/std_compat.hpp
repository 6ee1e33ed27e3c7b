// wfmm::std_compat: C++26's hazard pointers (P2530R3, <hazard_pointer>), C++29's hazard
// pointer batches (P3428R4) and RCU (P2545R4, <rcu>) under their standard names, on wfmm's
// reclamation (Crystalline-W, reclaim.hpp). Needs C++20 (concepts, std::span, constinit);
// reclaim.hpp, pmr.hpp and xenium.hpp need only C++17.
//
// Guide
// -----
// Code written against std::hazard_pointer / std::rcu_* compiles against these names with a
// namespace change, and runs on the same reclamation as wfmm::protect/retire:
//
//  * hazard_pointer_obj_base<T, D> / rcu_obj_base<T, D>: empty bases; x.retire(d) hands x to
//    wfmm, and d(&x) runs once no reader can hold x.
//  * make_hazard_pointer() owns one of the calling thread's WFMM_PROTECT_SLOTS (8) protect
//    indexes; while a thread holds any non-empty hazard_pointer it is inside a wfmm region
//    (the first one enters it, the last one destroyed leaves it); h.protect(src) is
//    wfmm_protect(src, index).
//  * make_hazard_pointer_batch(span) / clear_hazard_pointer_batch(span) (P3428R4) fill every
//    empty element of a span of hazard_pointers, and empty every element, in one step: one
//    look at the thread's free indexes and at most one region enter or leave for the whole
//    batch, instead of one make_hazard_pointer() or destructor per element.
//  * rcu_domain::lock/unlock are wfmm_read_lock/wfmm_read_unlock (a read-side section: all
//    that is retired while it is open stays until it closes); rcu_synchronize is
//    wfmm_synchronize, rcu_barrier is wfmm_barrier, rcu_retire is retire with a deleter.
//  Both families retire into one place, so a hazard pointer also protects against
//  rcu_retire and an RCU section also covers hazard-pointer retirements.
//
// Stronger than the standard asks:
//  * protect / try_protect are wait-free (one wfmm_protect; no retry loop), and after a
//    failed try_protect the new value of ptr is protected too (portable code must not rely
//    on that).
//  * Retiring never allocates and never throws (rcu_retire is noexcept): the deleter travels
//    in the context word of wfmm_retire_dispose, so D must be an empty default-constructible
//    class, or trivially copyable and at most sizeof(void*) bytes (a static_assert says so;
//    hold larger state through a pointer). std::default_delete<T> costs nothing: ~T() runs
//    and wfmm frees the block itself (WFMM_POISON=1 then poisons it).
//  * The bases add no bytes to T (the standard's exposition-only deleter member is gone).
//  * Hazard pointers are robust: a reader stalled while holding one pins only blocks born
//    before its reservation's era, and retiring threads keep reclaiming around it.
//
// Weaker or different:
//  * Objects must come from wfmm (wfmm_malloc/aligned_alloc, or new/malloc while wfmm is the
//    program's allocator): wfmm reports and aborts on a retire of anything else. With
//    std::default_delete<T> and no class-specific operator delete in T, the block is freed by
//    wfmm directly (for a polymorphic T, the block at dynamic_cast<void*>(p) after the
//    virtual ~T()); a T with its own operator delete gets `delete p`. A custom deleter gets
//    p, which must then be the start of its block.
//  * At most 8 non-empty hazard_pointers per thread (wfmm's protect indexes): the 9th
//    make_hazard_pointer() throws hazard_pointer_exhausted (a std::bad_alloc, which is what
//    std::make_hazard_pointer may throw; an abort with a message without exceptions). These
//    indexes are the thread's wfmm protect indexes: do not mix raw wfmm_protect /
//    wfmm::protect calls, or wfmm::xenium_reclaimer guards, with hazard_pointers in one thread.
//  * protect(src) has wfmm_protect's rule for src (wfmm.h): static storage, a field of an
//    object this thread holds under another hazard_pointer, or a wfmm block that is retired
//    rather than plainly freed while readers run -- a thread helping a slow protect may
//    still read src just after the call returned. (std::hazard_pointer reads src only
//    during the call.)
//  * A hazard_pointer belongs to the thread that made it: using or destroying it on another
//    thread is reported and aborts (moves and swaps within the thread are fine).
//  * Protection is by era, not by address. reset_protection(ptr) protects *ptr against
//    retirements that happen after it, as the standard says; if ptr may already have been
//    retired, validate afterwards (re-read the source, as try_protect does) or only pass a
//    pointer that is protected already (e.g. moving a protection from one hazard_pointer to
//    another). reset_protection() does not end protection early: the index keeps its last
//    reservation until it is protected again or the thread's last hazard_pointer goes
//    (that only delays reclamation, never shortens it).
//  * While a thread holds a non-empty hazard_pointer it is inside a wfmm region, so it must
//    not call rcu_synchronize, rcu_barrier, wfmm_barrier or deferred_resource::release()
//    (wfmm reports the misuse and aborts: the call would wait for itself). Deleters of
//    blocks this thread frees run once its outermost region closes, so destroying the
//    thread's last hazard_pointer may run deleters (as rcu_domain::unlock may): do not hold
//    a lock there that a deleter takes.
//  * rcu_barrier(): waits for what the calling thread retired and for every batch other
//    threads have published; another thread's retirements still in its partial batch are
//    covered once it calls wfmm_flush(), fills a batch (WFMM_BATCH) or exits. The standard
//    covers every retire that happens before the call: have retiring threads call
//    wfmm_flush() where that matters. rcu_barrier also waits for hazard-pointer and
//    wfmm_retire retirements (one domain).
//  * rcu_synchronize() / rcu_barrier() must not be called inside any wfmm region or RCU
//    section (the standard forbids only the latter; wfmm aborts with a message).
//    rcu_synchronize() also waits for every wfmm region open at the call, including the
//    region a live hazard_pointer keeps open in another thread: a thread that keeps a
//    hazard_pointer for a long time delays every rcu_synchronize() that long.
//    rcu_barrier() likewise waits for hazard pointers whose reservations cover the batches.
//  * RCU read-side sections are not robust (as in the standard): a reader stalled inside one
//    pins everything retired meanwhile.
//  * One rcu_domain exists: rcu_default_domain().
//
// Complete programs: examples/hazard_pointer.cpp, hazard_pointer_batch.cpp and rcu.cpp
// (built and run by ctest, example_*).
//
// Example: hazard pointers (P2530R3's example, on a shared configuration).
//
//   struct config : wfmm::std_compat::hazard_pointer_obj_base<config> {
//     int version; std::string text;
//     config(int v, std::string t) : version(v), text(std::move(t)) {}  // needed: the base's
//     // constructors are protected, so aggregate initialisation (new config{1, "x"}) fails
//     static void* operator new(std::size_t n) { ... wfmm_malloc ... }  // when wfmm is not
//     static void operator delete(void* p) { wfmm_free(p); }            // the global new
//   };
//   std::atomic<config*> current{new config(1, "first")};
//
//   int read_version() {                                  // often, from many threads
//     wfmm::std_compat::hazard_pointer h = wfmm::std_compat::make_hazard_pointer();
//     config* c = h.protect(current);                     // safe to read until h goes
//     return c->version;
//   }
//   void update(config* next) {                           // rarely, concurrently
//     current.exchange(next)->retire();                   // deleted once no reader holds it
//   }
//
// Example: a batch (P3428R4): two hazard pointers per traversal step, made and cleared
// together and reused.
//
//   std::array<wfmm::std_compat::hazard_pointer, 2> hp;
//   wfmm::std_compat::make_hazard_pointer_batch(hp);      // both non-empty now
//   node* prev = hp[0].protect(head);
//   node* cur = hp[1].protect(prev->next);
//   ...
//   wfmm::std_compat::clear_hazard_pointer_batch(hp);     // both empty; the array is reusable
//
// Example: RCU (P2545R4's example; std::scoped_lock is in <mutex>).
//
//   std::atomic<std::string*> name{...};
//   void print_name() {                                   // often, from many threads
//     std::scoped_lock lock(wfmm::std_compat::rcu_default_domain());
//     std::puts(name.load(std::memory_order_acquire)->c_str());
//   }
//   void update_name(std::string* fresh) {                // fresh: a wfmm block
//     wfmm::std_compat::rcu_retire(name.exchange(fresh)); // ~string() + free after readers
//   }
//   void update_name_sync(std::string* fresh) {
//     std::string* old = name.exchange(fresh);
//     wfmm::std_compat::rcu_synchronize();                // readers that could see old left
//     old->~basic_string(); wfmm_free(old);               // (or delete, if new is wfmm's)
//   }
#pragma once

#if __cplusplus < 202002L
#error "wfmm/std_compat.hpp needs C++20 (concepts, std::span, constinit); wfmm/reclaim.hpp, wfmm/pmr.hpp and wfmm/xenium.hpp work with C++17"
#endif

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <type_traits>
#include <utility>

#include "fast.h"

namespace wfmm::std_compat {

// ------------------------------------------------------------------ retiring with a deleter

namespace detail {

// A deleter rebuilt by default construction when it runs (it has no state to carry).
template <class D>
inline constexpr bool deleter_rebuilt_v =
    std::is_empty_v<D> && std::is_default_constructible_v<D>;
// A deleter whose bytes travel in the context word.
template <class D>
inline constexpr bool deleter_in_word_v =
    std::is_trivially_copyable_v<D> && sizeof(D) <= sizeof(void*);

template <class D>
inline constexpr bool deleter_transportable_v = deleter_rebuilt_v<D> || deleter_in_word_v<D>;

// T declares its own operator delete (any usual form): `delete p` must call it.
template <class T>
concept class_deletes =
    requires(void* v) { T::operator delete(v); } ||
    requires(void* v, std::size_t n) { T::operator delete(v, n); } ||
    requires(void* v, std::align_val_t a) { T::operator delete(v, a); } ||
    requires(void* v, std::size_t n, std::align_val_t a) { T::operator delete(v, n, a); } ||
    requires(T* p) { T::operator delete(p, std::destroying_delete); } ||
    requires(T* p, std::size_t n) { T::operator delete(p, std::destroying_delete, n); };

// The start of the wfmm block holding *p: the most-derived object for a polymorphic T.
template <class T>
void* block_of(T* p) noexcept {
  if constexpr (std::is_polymorphic_v<T>)
    return const_cast<void*>(dynamic_cast<const volatile void*>(p));
  else
    return const_cast<std::remove_cv_t<T>*>(p);
}

[[noreturn, gnu::cold, gnu::noinline]] inline void interior_retire(const void* p) noexcept {
  std::fprintf(stderr,
               "wfmm::std_compat: retire with a custom deleter needs the start of a wfmm block; "
               "%p is a base-class subobject at an offset\n",
               p);
  std::abort();
}

// Retires p: d(p) runs once no region, hazard pointer or RCU section can hold it. Never
// allocates. Pre: p is (the object at the start of) a live wfmm block, retired once.
template <class T, class D>
void retire(T* p, D d) noexcept {
  static_assert(deleter_transportable_v<D>,
                "wfmm::std_compat: the deleter must be an empty default-constructible class, or "
                "trivially copyable and at most sizeof(void*) bytes: it travels in the context "
                "word of wfmm_retire_dispose, so retiring never allocates. Hold larger state "
                "through a pointer (e.g. a deleter holding a Pool*).");
  using U = std::remove_cv_t<T>;
  U* obj = const_cast<U*>(p);
  if (obj == nullptr) {
    // Nothing can hold a null pointer: the deleter may run now.
    if constexpr (!std::is_same_v<D, std::default_delete<T>>) d(p);
    return;
  }
  if constexpr (std::is_same_v<D, std::default_delete<T>> && !class_deletes<U>) {
    // `delete p` = ~T() + free, and the free is wfmm's: let wfmm free (and poison) it.
    (void)d;
    if constexpr (std::is_trivially_destructible_v<U>)
      wfmm_retire(block_of(obj));
    else
      wfmm_retire_with(
          block_of(obj), [](void*, void* ctx) noexcept { static_cast<U*>(ctx)->~U(); }, obj);
  } else if constexpr (deleter_rebuilt_v<D>) {
    // The context word carries p itself (which may lie inside the block, for a base).
    (void)d;
    wfmm_retire_dispose(
        block_of(obj), [](void*, void* ctx) noexcept { D{}(static_cast<T*>(ctx)); }, obj);
  } else {
    // The context word carries the deleter; p is the block.
    if (block_of(obj) != static_cast<void*>(obj)) interior_retire(obj);
    void* word = nullptr;
    std::memcpy(&word, std::addressof(d), sizeof(D));
    wfmm_retire_dispose(
        obj,
        [](void* q, void* ctx) noexcept {
          // D is trivially copyable: copying its bytes into fresh storage makes a D.
          alignas(D) unsigned char bytes[sizeof(D)];
          std::memcpy(bytes, &ctx, sizeof(D));
          D& del = *std::launder(reinterpret_cast<D*>(bytes));
          del(static_cast<T*>(q));
        },
        word);
  }
}

}  // namespace detail

// ------------------------------------------------------------------ RCU (P2545R4)

class rcu_domain;
rcu_domain& rcu_default_domain() noexcept;

// The (only) RCU domain. lock/unlock open and close a read-side section (nesting); it meets
// Cpp17Lockable, so std::scoped_lock works. Wait-free.
class rcu_domain {
 public:
  rcu_domain(const rcu_domain&) = delete;
  rcu_domain& operator=(const rcu_domain&) = delete;

  void lock() noexcept { wfmm_read_lock(); }
  bool try_lock() noexcept {
    lock();
    return true;
  }
  // Pre: this thread opened a section that it has not closed.
  void unlock() noexcept { wfmm_read_unlock(); }

 private:
  constexpr rcu_domain() noexcept = default;
  friend rcu_domain& rcu_default_domain() noexcept;
};

inline rcu_domain& rcu_default_domain() noexcept {
  static constinit rcu_domain domain;
  return domain;
}

// Blocks until every region and read-side section open at the call has closed.
// Pre: outside any wfmm region, RCU section or live hazard_pointer of this thread.
inline void rcu_synchronize(rcu_domain& = rcu_default_domain()) noexcept { wfmm_synchronize(); }

// Blocks until what this thread retired, and every batch other threads have published, is
// freed (deleters run). Pre: as rcu_synchronize. See the guide for other threads' batches.
inline void rcu_barrier(rcu_domain& = rcu_default_domain()) noexcept { wfmm_barrier(); }

// d(p) runs once no RCU section (nor region) that could have seen p is still open.
// Never allocates, never throws. Pre: p is a live wfmm block (see the guide), retired once.
template <class T, class D = std::default_delete<T>>
void rcu_retire(T* p, D d = D(), rcu_domain& = rcu_default_domain()) noexcept {
  detail::retire(p, std::move(d));
}

// Empty base of objects retired through RCU: x.retire() = rcu_retire(&x, d).
template <class T, class D = std::default_delete<T>>
class rcu_obj_base {
 public:
  // Pre: *this is the base of an object x of type T, x is not retired yet.
  void retire(D d = D(), rcu_domain& = rcu_default_domain()) noexcept {
    static_assert(std::is_base_of_v<rcu_obj_base, T>, "T must derive from rcu_obj_base<T, D>");
    detail::retire(static_cast<T*>(this), std::move(d));
  }

 protected:
  rcu_obj_base() = default;
  rcu_obj_base(const rcu_obj_base&) = default;
  rcu_obj_base(rcu_obj_base&&) = default;
  rcu_obj_base& operator=(const rcu_obj_base&) = default;
  rcu_obj_base& operator=(rcu_obj_base&&) = default;
  ~rcu_obj_base() = default;
};

// ------------------------------------------------------------------ hazard pointers (P2530R3)

// Empty base of objects protected by hazard pointers: x.retire(d) runs d(&x) once no
// hazard_pointer (nor region, nor RCU section) can hold x. Never allocates.
template <class T, class D = std::default_delete<T>>
class hazard_pointer_obj_base {
 public:
  // Pre: *this is the base of an object x of type T, x is not retired yet.
  void retire(D d = D()) noexcept {
    static_assert(std::is_base_of_v<hazard_pointer_obj_base, T>,
                  "T must derive from hazard_pointer_obj_base<T, D>");
    detail::retire(static_cast<T*>(this), std::move(d));
  }

 protected:
  hazard_pointer_obj_base() = default;
  hazard_pointer_obj_base(const hazard_pointer_obj_base&) = default;
  hazard_pointer_obj_base(hazard_pointer_obj_base&&) = default;
  hazard_pointer_obj_base& operator=(const hazard_pointer_obj_base&) = default;
  hazard_pointer_obj_base& operator=(hazard_pointer_obj_base&&) = default;
  ~hazard_pointer_obj_base() = default;
};

// Thrown by the make_hazard_pointer() that would hold a 9th index in one thread, and by a
// make_hazard_pointer_batch() with more empty elements than the thread has free indexes.
class hazard_pointer_exhausted : public std::bad_alloc {
 public:
  const char* what() const noexcept override {
    return "wfmm::std_compat::make_hazard_pointer(_batch): this thread would hold more than "
           "WFMM_PROTECT_SLOTS (8) non-empty hazard_pointers";
  }
};

namespace detail {

// The calling thread's hazard-pointer state. Constant-initialised and trivially
// destructible: reachable without an init guard, and still there during thread exit.
//  used:  bit i set while a non-empty hazard_pointer owns protect index i. The thread is in
//         a wfmm region (one level of its nesting) exactly while used != 0.
//  roots: WFMM_PROTECT_SLOTS words, the sources reset_protection(ptr) protects from (root i
//         for index i). wfmm_protect's helpers may read a source after the call returned,
//         so the roots live in a wfmm block that is only ever retired (at thread exit),
//         never plainly freed. Allocated by the thread's first make_hazard_pointer().
struct hp_thread {
  std::uint32_t used = 0;
  std::atomic<void*>* roots = nullptr;
};

inline constinit thread_local hp_thread tls_hp{};

// Retires the roots block when the thread exits (constructed at the block's allocation).
struct hp_roots_keeper {
  ~hp_roots_keeper() {
    if (std::atomic<void*>* r = tls_hp.roots) {
      tls_hp.roots = nullptr;
      wfmm_retire(r);
    }
  }
};

// The source reset_protection() protects from: always null.
inline constinit std::atomic<void*> null_root{nullptr};

inline constexpr std::uint32_t kAllSlots = (1u << WFMM_PROTECT_SLOTS) - 1;

[[noreturn, gnu::cold, gnu::noinline]] inline void fail(const char* what) noexcept {
  std::fprintf(stderr, "wfmm::std_compat::hazard_pointer: %s\n", what);
  std::abort();
}

[[gnu::cold, gnu::noinline]] inline void roots_slow() {
  void* m = wfmm_malloc(sizeof(std::atomic<void*>) * WFMM_PROTECT_SLOTS);
  if (m == nullptr) {
#if defined(__cpp_exceptions)
    throw std::bad_alloc();
#else
    fail("make_hazard_pointer: out of memory for the thread's roots");
#endif
  }
  auto* r = static_cast<std::atomic<void*>*>(m);
  for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) new (&r[i]) std::atomic<void*>(nullptr);
  tls_hp.roots = r;
  thread_local hp_roots_keeper keeper;  // first use registers its destructor
  (void)keeper;
}

[[noreturn, gnu::cold, gnu::noinline]] inline void exhausted() {
#if defined(__cpp_exceptions)
  throw hazard_pointer_exhausted();
#else
  fail("make_hazard_pointer(_batch): this thread would hold more than WFMM_PROTECT_SLOTS (8) "
       "non-empty hazard_pointers");
#endif
}

// A hazard_pointer used while empty or on a thread other than its maker's.
[[noreturn, gnu::cold, gnu::noinline]] inline void bad_owner(const hp_thread* owner,
                                                             const char* op) noexcept {
  char msg[160];
  std::snprintf(msg, sizeof msg,
                owner == nullptr ? "%s on an empty hazard_pointer"
                                 : "%s on a hazard_pointer made by another thread",
                op);
  fail(msg);
}

}  // namespace detail

class hazard_pointer;
hazard_pointer make_hazard_pointer();

// Empty, or the owner of one protect index of the thread that made it (which is inside a
// wfmm region while it owns any). Move-only; 16 bytes.
class hazard_pointer {
 public:
  hazard_pointer() noexcept = default;
  hazard_pointer(hazard_pointer&& other) noexcept : owner_(other.owner_), index_(other.index_) {
    other.owner_ = nullptr;
  }
  hazard_pointer& operator=(hazard_pointer&& other) noexcept {
    if (this != &other) {
      release();
      owner_ = std::exchange(other.owner_, nullptr);
      index_ = other.index_;
    }
    return *this;
  }
  hazard_pointer(const hazard_pointer&) = delete;
  hazard_pointer& operator=(const hazard_pointer&) = delete;
  // Gives the index back and leaves the region (the thread's last one ends its protections).
  ~hazard_pointer() { release(); }

  [[nodiscard]] bool empty() const noexcept { return owner_ == nullptr; }

  // Loads src (acquire) and protects what it points to; wait-free. Pre: not empty.
  template <class T>
  T* protect(const std::atomic<T*>& src) noexcept {
    check("protect");
    return static_cast<T*>(wfmm_protect_fast(address(src), index_));
  }

  // Protects the value of src; returns whether it equals ptr, and stores it in ptr.
  // Pre: not empty.
  template <class T>
  bool try_protect(T*& ptr, const std::atomic<T*>& src) noexcept {
    check("try_protect");
    T* const old = ptr;
    ptr = static_cast<T*>(wfmm_protect_fast(address(src), index_));
    return old == ptr;
  }

  // Protects *ptr against retirements after this call (see the guide). Pre: not empty.
  template <class T>
  void reset_protection(const T* ptr) noexcept {
    if (ptr == nullptr) return reset_protection(nullptr);
    check("reset_protection");
    std::atomic<void*>& root = owner_->roots[index_];
    // release: a helper completing a slow protect reads the root on our behalf.
    root.store(const_cast<void*>(static_cast<const volatile void*>(ptr)),
               std::memory_order_release);
    (void)wfmm_protect_fast(reinterpret_cast<void* const volatile*>(&root), index_);
  }

  // Unassociates the hazard pointer. Pre: not empty.
  void reset_protection(std::nullptr_t = nullptr) noexcept {
    check("reset_protection");
    (void)wfmm_protect_fast(reinterpret_cast<void* const volatile*>(&detail::null_root), index_);
  }

  void swap(hazard_pointer& other) noexcept {
    std::swap(owner_, other.owner_);
    std::swap(index_, other.index_);
  }

 private:
  friend hazard_pointer make_hazard_pointer();
  friend void make_hazard_pointer_batch(std::span<hazard_pointer>);
  friend void clear_hazard_pointer_batch(std::span<hazard_pointer>) noexcept;
  hazard_pointer(detail::hp_thread* owner, unsigned index) noexcept
      : owner_(owner), index_(index) {}

  void check(const char* op) const noexcept {
    if (owner_ != &detail::tls_hp) [[unlikely]]
      detail::bad_owner(owner_, op);
  }

  void release() noexcept {
    if (owner_ == nullptr) return;
    check("destruction");
    detail::hp_thread* t = std::exchange(owner_, nullptr);
    t->used &= ~(1u << index_);
    if (t->used == 0) wfmm_leave_fast();  // the thread's last one
  }

  template <class T>
  static void* const volatile* address(const std::atomic<T*>& src) noexcept {
    static_assert(sizeof(std::atomic<T*>) == sizeof(void*) &&
                  std::atomic<T*>::is_always_lock_free);
    // std::atomic<T*> holds exactly one pointer; wfmm_protect loads it atomically.
    return reinterpret_cast<void* const volatile*>(const_cast<std::atomic<T*>*>(&src));
  }

  detail::hp_thread* owner_ = nullptr;  // the maker's thread state; null: empty
  unsigned index_ = 0;                  // protect index, < WFMM_PROTECT_SLOTS
};

// Takes one of the thread's protect indexes (the thread's first enters a wfmm region). Throws
// hazard_pointer_exhausted (a std::bad_alloc) past 8 per thread, std::bad_alloc if the
// thread's first call cannot allocate its 64-byte roots block.
inline hazard_pointer make_hazard_pointer() {
  detail::hp_thread& t = detail::tls_hp;
  const std::uint32_t free = ~t.used & detail::kAllSlots;
  if (free == 0) [[unlikely]]
    detail::exhausted();
  if (t.roots == nullptr) [[unlikely]]
    detail::roots_slow();
  const unsigned i = static_cast<unsigned>(std::countr_zero(free));
  if (t.used == 0) wfmm_enter_fast();  // the thread's first one
  t.used |= 1u << i;
  return hazard_pointer(&t, i);
}

// P3428R4: every empty element of batch gets a new hazard pointer of the calling thread;
// non-empty elements are left as they are. Strong guarantee: on a throw nothing changed.
// Throws hazard_pointer_exhausted (a std::bad_alloc) if the empty elements outnumber the
// thread's free indexes (8 less those its non-empty hazard_pointers hold), std::bad_alloc
// if the thread's first call cannot allocate its 64-byte roots block.
// Cost: one look at the thread's state and at most one region enter for the whole batch.
inline void make_hazard_pointer_batch(std::span<hazard_pointer> batch) {
  detail::hp_thread& t = detail::tls_hp;
  if (t.roots == nullptr) [[unlikely]]
    detail::roots_slow();  // may throw; nothing changed yet
  std::uint32_t free = ~t.used & detail::kAllSlots;
  std::size_t n = 0;
  // Bound: batch.size(). One pass: each empty element takes the lowest free index.
  for (; n < batch.size(); ++n) {
    hazard_pointer& h = batch[n];
    if (!h.empty()) continue;
    if (free == 0) [[unlikely]] {
      // Too few indexes: give back the ones taken (strong guarantee), then throw.
      // Bound: n.
      for (std::size_t j = 0; j < n; ++j)
        if (batch[j].owner_ == &t && (t.used & (1u << batch[j].index_)) == 0)
          batch[j].owner_ = nullptr;
      detail::exhausted();
    }
    h.owner_ = &t;
    h.index_ = static_cast<unsigned>(std::countr_zero(free));
    free &= free - 1;
  }
  const std::uint32_t used = ~free & detail::kAllSlots;
  if (used == t.used) return;  // no empty element
  if (t.used == 0) wfmm_enter_fast();
  t.used = used;
}

// P3428R4: every non-empty element of batch gives its hazard pointer back and becomes
// empty; empty elements are left as they are. At most one region leave for the whole
// batch (when the thread holds no other hazard_pointer), which may run deleters as
// destroying the thread's last hazard_pointer does. Every non-empty element must belong to
// the calling thread (reported and aborts otherwise, as for destruction).
inline void clear_hazard_pointer_batch(std::span<hazard_pointer> batch) noexcept {
  detail::hp_thread& t = detail::tls_hp;
  std::uint32_t given = 0;
  // Bound: batch.size().
  for (hazard_pointer& h : batch) {
    if (h.owner_ == nullptr) continue;
    if (h.owner_ != &t) [[unlikely]]
      detail::bad_owner(h.owner_, "clear_hazard_pointer_batch");
    given |= 1u << h.index_;
    h.owner_ = nullptr;
  }
  if (given == 0) return;
  t.used &= ~given;
  if (t.used == 0) wfmm_leave_fast();
}

inline void swap(hazard_pointer& a, hazard_pointer& b) noexcept { a.swap(b); }

}  // namespace wfmm::std_compat
