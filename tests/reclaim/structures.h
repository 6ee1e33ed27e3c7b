// Lock-free structures on the C++ reclamation API, with every dereferenced node checked:
// a Treiber stack, a Michael-Scott queue and a Harris-Michael sorted list (deletion marks in
// the low bit of next pointers). Used by structures_test.cpp and progress_test.cpp.
//
// Protection discipline (hazard-pointer style, one index per pointer held at once):
//  * a pointer is dereferenced only after protect() returned it and the structure still
//    reached it at that moment (the validation each algorithm documents below);
//  * protect's src is a root (a member of the container) or a field of a node this thread
//    holds under another index.
#pragma once
#include <stdint.h>

#include <atomic>
#include <utility>

#include "reclaim_util.h"

namespace rt {

// ---------------------------------------------------------------- Treiber stack

struct SNode {
  Payload pl;
  std::atomic<SNode*> next{nullptr};  // written before the push publishes n, then immutable
  SNode(uint64_t key, uint64_t uid) : pl(key, uid) {}
};

class TreiberStack {
 public:
  ~TreiberStack() {
    // Single-threaded teardown: whatever is left goes through retire like the rest.
    SNode* n = top_.exchange(nullptr);
    while (n != nullptr) {
      SNode* next = n->next.load();
      n->pl.mark_unlinked();
      wfmm::retire(n);
      n = next;
    }
  }

  void push(uint64_t key) {
    SNode* n = make<SNode>(key, key);
    SNode* old = top_.load(std::memory_order_relaxed);
    do {
      n->next.store(old, std::memory_order_relaxed);
    } while (
        !top_.compare_exchange_weak(old, n, std::memory_order_release, std::memory_order_relaxed));
  }

  // Pops a key; false when empty.
  bool pop(uint64_t* out) {
    wfmm::region r;
    for (;;) {
      SNode* n = wfmm::protect(top_, 0);  // root: n was the top when protected
      if (n == nullptr) return false;
      if (!valid(n, "stack pop (top)")) return false;
      uint64_t key = n->pl.key.load(std::memory_order_relaxed);
      SNode* next = n->next.load(std::memory_order_relaxed);
      if (top_.compare_exchange_weak(n, next, std::memory_order_acquire,
                                     std::memory_order_relaxed)) {
        // Ours now; nobody else retires it. It must still hold what we read.
        if (!valid(n, "stack pop (after CAS)")) return false;
        if (n->pl.key.load(std::memory_order_relaxed) != key)
          g_fail.add("stack pop: key changed under a protected node (reused)");
        n->pl.mark_unlinked();
        wfmm::retire(n);
        *out = key;
        return true;
      }
    }
  }

  // Reads the top two nodes without popping. The second node is reached through the
  // first's next field (src inside a block protected by index 0); it is safe once top_ is
  // seen to still be the first node after the protect: a node that is still in the stack
  // keeps everything below it in the stack.
  void peek2() {
    wfmm::region r;
    for (;;) {
      SNode* n = wfmm::protect(top_, 0);
      if (n == nullptr) return;
      if (!valid(n, "stack peek (top)")) return;
      SNode* second = wfmm::protect(n->next, 1);                // src inside n (index 0)
      if (top_.load(std::memory_order_acquire) != n) continue;  // n left: retry
      if (second != nullptr) valid(second, "stack peek (second)");
      return;
    }
  }

 private:
  std::atomic<SNode*> top_{nullptr};
};

// ---------------------------------------------------------------- Michael-Scott queue

struct QNode {
  Payload pl;
  std::atomic<QNode*> next{nullptr};
  QNode(uint64_t key, uint64_t uid) : pl(key, uid) {}
};

class MsQueue {
 public:
  static constexpr uint64_t kDummyKey = ~uint64_t(0);

  MsQueue() {
    QNode* d = make<QNode>(kDummyKey, 0);
    head_.store(d);
    tail_.store(d);
  }
  ~MsQueue() {
    QNode* n = head_.exchange(nullptr);
    while (n != nullptr) {
      QNode* next = n->next.load();
      n->pl.mark_unlinked();
      wfmm::retire(n);
      n = next;
    }
  }

  void enqueue(uint64_t key) {
    QNode* n = make<QNode>(key, key);
    wfmm::region r;
    for (;;) {
      QNode* t = wfmm::protect(tail_, 0);
      // t may already be dequeued (tail lags head by one at most) but it is protected, so
      // its next field can be read; next is only used if tail_ is still t.
      if (!valid(t, "queue enqueue (tail)")) {
        destroy_now(n);
        return;
      }
      QNode* next = wfmm::protect(t->next, 1);
      if (tail_.load(std::memory_order_acquire) != t) continue;
      if (next != nullptr) {
        tail_.compare_exchange_weak(t, next, std::memory_order_release, std::memory_order_relaxed);
        continue;
      }
      QNode* expected = nullptr;
      if (t->next.compare_exchange_strong(expected, n, std::memory_order_release,
                                          std::memory_order_relaxed)) {
        tail_.compare_exchange_strong(t, n, std::memory_order_release, std::memory_order_relaxed);
        return;
      }
    }
  }

  // The head's successor is safe once head_ is seen to still be h after protecting it:
  // head_ moves forward only, so the successor was not yet dequeued when it was loaded.
  bool dequeue(uint64_t* out) {
    wfmm::region r;
    for (;;) {
      QNode* h = wfmm::protect(head_, 0);
      if (!valid(h, "queue dequeue (head)")) return false;
      QNode* t = tail_.load(std::memory_order_acquire);
      QNode* next = wfmm::protect(h->next, 1);
      if (head_.load(std::memory_order_acquire) != h) continue;
      if (next == nullptr) return false;
      if (h == t) {
        tail_.compare_exchange_weak(t, next, std::memory_order_release, std::memory_order_relaxed);
        continue;
      }
      if (!valid(next, "queue dequeue (next)")) return false;
      uint64_t key = next->pl.key.load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, next, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
        if (!valid(h, "queue dequeue (old head, after CAS)")) return false;
        h->pl.mark_unlinked();
        wfmm::retire(h);
        *out = key;
        return true;
      }
    }
  }

 private:
  std::atomic<QNode*> head_{nullptr};
  std::atomic<QNode*> tail_{nullptr};
};

// ---------------------------------------------------------------- Harris-Michael list

struct LNode {
  Payload pl;                // pl.key = the set's key, pl.uid = unique per insertion
  std::atomic<LNode*> next;  // low bit set = this node is logically deleted
  LNode(uint64_t key, uint64_t uid) : pl(key, uid), next(nullptr) {}
};

inline bool is_marked(LNode* p) { return (uintptr_t(p) & 1) != 0; }
inline LNode* marked(LNode* p) { return reinterpret_cast<LNode*>(uintptr_t(p) | 1); }
inline LNode* unmarked(LNode* p) { return reinterpret_cast<LNode*>(uintptr_t(p) & ~uintptr_t(1)); }

// Invariant checked by every traversal: a node's successor always has a larger key (insert
// and unlink both preserve it, and a deleted node's next is frozen), so the keys a
// traversal meets strictly increase.
class HarrisMichaelList {
 public:
  ~HarrisMichaelList() {
    LNode* n = head_.exchange(nullptr);
    while (n != nullptr) {
      LNode* next = unmarked(n->next.load());
      n->pl.mark_unlinked();
      wfmm::retire(n);
      n = next;
    }
  }

  bool insert(uint64_t key, uint64_t uid) {
    wfmm::region r;
    LNode* n = nullptr;
    for (;;) {
      Window w;
      if (find(key, &w)) {
        if (n != nullptr) destroy_now(n);  // never published
        return false;
      }
      if (n == nullptr) n = make<LNode>(key, uid);
      n->next.store(w.cur, std::memory_order_relaxed);
      LNode* expected = w.cur;
      if (w.prev->compare_exchange_strong(expected, n, std::memory_order_release,
                                          std::memory_order_relaxed))
        return true;
    }
  }

  bool remove(uint64_t key) {
    wfmm::region r;
    for (;;) {
      Window w;
      if (!find(key, &w)) return false;
      LNode* next = w.next;  // unmarked
      if (!w.cur->next.compare_exchange_strong(next, marked(next), std::memory_order_acq_rel,
                                               std::memory_order_relaxed))
        continue;  // changed under us (insert after cur, or someone else deleted cur)
      LNode* expected = w.cur;
      if (w.prev->compare_exchange_strong(expected, next, std::memory_order_acq_rel,
                                          std::memory_order_relaxed)) {
        w.cur->pl.mark_unlinked();
        wfmm::retire(w.cur);
      } else {
        Window again;
        find(key, &again);  // unlinks (and retires) the marked node for us
      }
      return true;
    }
  }

  bool contains(uint64_t key) {
    wfmm::region r;
    Window w;
    bool found = find(key, &w);
    if (found && w.cur->pl.key.load(std::memory_order_relaxed) != key)
      g_fail.add("list contains: found node holds another key");
    return found;
  }

  // Quiescent walk (no concurrent writers): keys, in order; checks order and marks.
  template <class F>
  void for_each_quiescent(F f) {
    wfmm::region r;
    LNode* n = head_.load();
    uint64_t last = 0;
    bool first = true;
    while (n != nullptr) {
      if (is_marked(n)) {
        g_fail.add("list: marked pointer left in a quiescent list");
        n = unmarked(n);
      }
      if (!valid(n, "list quiescent walk")) return;
      uint64_t k = n->pl.key.load(std::memory_order_relaxed);
      if (!first && k <= last) g_fail.add("list: keys not strictly increasing at rest");
      first = false;
      last = k;
      f(k);
      LNode* next = n->next.load();
      if (is_marked(next)) g_fail.add("list: a logically deleted node is still linked at rest");
      n = next;
    }
  }

 private:
  struct Window {
    std::atomic<LNode*>* prev;  // &head_ or &node->next of a node protected by ip
    LNode* cur;                 // protected by ic; null at the end
    LNode* next;                // protected by in; unmarked
  };

  // Michael's find: on return, prev/cur/next are protected (indices rotate among 0..2) and
  // cur is the first node with key >= `key`. Marked nodes met on the way are unlinked and
  // retired by whoever's CAS unlinks them.
  bool find(uint64_t key, Window* w) {
  retry:
    unsigned ip = 0, ic = 1, in = 2;
    (void)ip;
    std::atomic<LNode*>* prev = &head_;
    LNode* cur = wfmm::protect(head_, ic);
    uint64_t last_key = 0;
    bool have_last = false;
    for (;;) {
      if (cur == nullptr) {
        *w = {prev, nullptr, nullptr};
        return false;
      }
      if (is_marked(cur)) {
        g_fail.add("list find: marked pointer reached as a node");
        return false;
      }
      // cur came from an unmarked link of a live node (or the head): it was in the list
      // when protect loaded it, so it is safe to read now.
      LNode* raw = wfmm::protect(cur->next, in);
      if (prev->load(std::memory_order_acquire) != cur) goto retry;
      if (!valid(cur, "list find (cur)")) return false;
      LNode* next = unmarked(raw);
      if (!is_marked(raw)) {
        uint64_t ck = cur->pl.key.load(std::memory_order_relaxed);
        if (have_last && ck <= last_key) {
          g_fail.add("list find: keys not increasing along a traversal (" + hex(last_key) +
                     " then " + hex(ck) + ")");
          return false;
        }
        if (ck >= key) {
          *w = {prev, cur, next};
          return ck == key;
        }
        have_last = true;
        last_key = ck;
        prev = &cur->next;
        // cur becomes the prev node (keeps index ic), next becomes cur (keeps index in).
        unsigned old_ip = ip;
        ip = ic;
        ic = in;
        in = old_ip;
      } else {
        // cur is logically deleted: unlink it from prev. On success next is safe (it could
        // not be unlinked while cur, whose next is frozen, was still linked).
        LNode* expected = cur;
        if (!prev->compare_exchange_strong(expected, next, std::memory_order_acq_rel,
                                           std::memory_order_relaxed))
          goto retry;
        cur->pl.mark_unlinked();
        wfmm::retire(cur);
        std::swap(ic, in);  // next (under in) becomes cur; cur's index is free
      }
      cur = next;
    }
  }

  std::atomic<LNode*> head_{nullptr};
};

}  // namespace rt
