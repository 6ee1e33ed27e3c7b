// A wait-free handoff stack: any thread pushes with one exchange; one consumer at a time
// (whoever wins a try-flag; losers simply go without) drains and takes entries. Used for
// abandoned segments, cached segments and recycled heaps.
//
// push (any thread, wait-free, 3 steps):  x.next = kPending; prev = inbox.exchange(x);
//                                          x.next = prev
// A consumer that meets a link still kPending keeps that node as the head of an unfinished
// chain and resumes it on a later drain, so nobody ever waits for a stalled pusher.
#pragma once
#include <sched.h>

#include <atomic>

#include "config.h"

namespace wfmm {

// T provides: std::atomic<T*> handoff_next (written by pushers), T* handoff_link (consumer).
// kFifo: drains append to the owned list instead of prepending, and consumers take from its
// front with take_front() only. Entries then come out roughly oldest first (in drain order),
// so none stays behind newer ones forever (abandoned segments: an old one is the likeliest
// to have emptied, and only a consumer that takes it can give it back to the OS).
template <class T, bool kFifo = false>
class HandoffStack {
 public:
  static T* pending() { return reinterpret_cast<T*>(uintptr_t(1)); }

  void push(T* x) {
    x->handoff_next.store(pending(), std::memory_order_relaxed);
    // (H1) release: the pusher's writes to *x happen-before the consumer that takes x;
    // pairs with (H2).
    T* prev = inbox_.exchange(x, std::memory_order_acq_rel);
    // (H3) release: pairs with (H4); publishes the link to the older entries.
    x->handoff_next.store(prev, std::memory_order_release);
  }

  // A hint for any thread: false when nothing was pushed since the last drain and the last
  // consumer left nothing behind (no unfinished chain, nothing drained but not taken).
  bool has_work() const {
    return inbox_.load(std::memory_order_relaxed) != nullptr ||
           leftover_.load(std::memory_order_relaxed);
  }

  // Non-blocking: returns false if another thread is consuming right now.
  bool try_begin() {
    return !busy_.load(std::memory_order_relaxed) &&
           !busy_.exchange(true, std::memory_order_acquire);
  }
  // try_begin, tried again while another consumer holds the flag (for a bounded scan): for
  // callers to whom a miss costs fresh memory (a segment mapped and faulted in, a heap).
  // Bound: `tries` tries, 32 pauses apart.
  bool try_begin_patient(unsigned tries) {
    bool got = try_begin();
    for (unsigned i = 1; !got && i < tries; ++i) {
      for (unsigned k = 0; k < 32; ++k) cpu_pause();
      got = try_begin();
    }
    return got;
  }
  void end() {
    leftover_.store(chains_ != nullptr || owned_ != nullptr, std::memory_order_relaxed);
    busy_.store(false, std::memory_order_release);
  }

  // Pre: try_begin() succeeded. Moves up to `budget` finished entries to the owned list.
  // Bound: each iteration moves one node (at most `budget`) or skips one unfinished chain
  // (at most one per pusher that is stalled between its exchange and its link store).
  void drain(unsigned budget) {
    // (H2) acquire: pairs with (H1).
    T* l = inbox_.exchange(nullptr, std::memory_order_acquire);
    if (l != nullptr) {
      l->handoff_link = chains_;
      chains_ = l;
    }
    T** pp = &chains_;
    while (*pp != nullptr) {
      T* x = *pp;
      T* n = x->handoff_next.load(std::memory_order_acquire);  // (H4) pairs with (H3)
      if (n == pending()) {
        pp = &x->handoff_link;
        continue;
      }
      if (budget == 0) break;
      --budget;
      T* after = x->handoff_link;
      if (n != nullptr) {
        n->handoff_link = after;
        *pp = n;
      } else {
        *pp = after;
      }
      if constexpr (kFifo) {
        x->handoff_link = nullptr;
        if (owned_tail_ != nullptr)
          owned_tail_->handoff_link = x;
        else
          owned_ = x;
        owned_tail_ = x;
      } else {
        x->handoff_link = owned_;
        owned_ = x;
      }
      ++owned_count_;
    }
  }

  // Pre: try_begin() succeeded. The first owned entry (null if none), removed from the list.
  T* take_front() {
    T* x = owned_;
    if (x == nullptr) return nullptr;
    owned_ = x->handoff_link;
    if (owned_ == nullptr) owned_tail_ = nullptr;
    --owned_count_;
    return x;
  }

  // Pre: try_begin() succeeded. The owned list, linked through handoff_link.
  T*& owned() { return owned_; }
  unsigned& owned_count() { return owned_count_; }

  // fork() only: waits until no consumer is inside (a consumer holds the flag for a bounded
  // number of steps), so the child never inherits a half-updated owned list. Not on any
  // allocation path; consumers never hold two flags, so taking several in a fixed order
  // cannot deadlock.
  void acquire_for_fork() {
    // Bound: the current holder's remaining steps (it runs; we yield to it).
    while (!try_begin()) sched_yield();
  }

 private:
  std::atomic<T*> inbox_{nullptr};
  std::atomic<bool> busy_{false};
  std::atomic<bool> leftover_{false};
  T* chains_ = nullptr;      // unfinished chains, consumer-owned
  T* owned_ = nullptr;       // drained entries, consumer-owned
  T* owned_tail_ = nullptr;  // kFifo only: the last owned entry
  unsigned owned_count_ = 0;
};

}  // namespace wfmm
