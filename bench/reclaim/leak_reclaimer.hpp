// leak_reclaimer: a xenium-compatible reclamation scheme that never reclaims. A guard is a
// plain load, region_guard is empty, reclaim() forgets the node. It is the upper bound of
// the benchmark (no reclamation work at all, no reuse of memory either): its memory grows
// with every retired node for the whole run, which is fine for a few seconds.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <utility>

#include <xenium/reclamation/detail/concurrent_ptr.hpp>
#include <xenium/reclamation/detail/guard_ptr.hpp>

namespace rbench {

class leak_reclaimer {
  template <class T, class MarkedPtr>
  class guard_ptr;

 public:
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

  struct region_guard {
    region_guard() noexcept {}  // user-provided: no unused-variable warning at the call sites
    region_guard(const region_guard&) = delete;
    region_guard& operator=(const region_guard&) = delete;
  };

  template <class T, std::size_t N = T::number_of_mark_bits>
  using concurrent_ptr = xenium::reclamation::detail::concurrent_ptr<T, N, guard_ptr>;
};

template <class T, class MarkedPtr>
class leak_reclaimer::guard_ptr
    : public xenium::reclamation::detail::guard_ptr<T, MarkedPtr, guard_ptr<T, MarkedPtr>> {
  using base = xenium::reclamation::detail::guard_ptr<T, MarkedPtr, guard_ptr>;
  using Deleter = typename T::Deleter;
  using cptr = concurrent_ptr<T, MarkedPtr::number_of_mark_bits>;
  friend base;

 public:
  guard_ptr() noexcept = default;
  explicit guard_ptr(const MarkedPtr& p) noexcept : base(p) {}
  guard_ptr(const guard_ptr& g) noexcept : base(g.ptr) {}
  guard_ptr(guard_ptr&& g) noexcept : base(g.ptr) { g.ptr.reset(); }
  guard_ptr& operator=(const guard_ptr& g) noexcept {
    this->ptr = g.ptr;
    return *this;
  }
  guard_ptr& operator=(guard_ptr&& g) noexcept {
    if (&g != this) {
      this->ptr = g.ptr;
      g.ptr.reset();
    }
    return *this;
  }
  ~guard_ptr() = default;  // base's destructor calls reset()

  void acquire(const cptr& p, std::memory_order order = std::memory_order_seq_cst) noexcept {
    // Nothing is ever freed, so a plain load is a safe snapshot; acquire at least, as the
    // containers read through it.
    this->ptr = p.load(order == std::memory_order_relaxed ? std::memory_order_acquire : order);
  }
  bool acquire_if_equal(const cptr& p, const MarkedPtr& expected,
                        std::memory_order order = std::memory_order_seq_cst) noexcept {
    auto v = p.load(order == std::memory_order_relaxed ? std::memory_order_acquire : order);
    if (v != expected) {
      reset();
      return false;
    }
    this->ptr = v;
    return true;
  }
  void reset() noexcept { this->ptr.reset(); }
  // Retires the node: it is never freed. The deleter argument is constructed (the
  // benchmark's counting deleter counts the retirement) and dropped.
  void reclaim(Deleter d = Deleter()) noexcept {
    (void)d;
    reset();
  }

 private:
  void do_swap(guard_ptr&) noexcept {}
};

}  // namespace rbench
