// A concurrent sorted set whose nodes come from a wfmm::pmr::deferred_resource: writers
// (serialised by a mutex) insert and unlink nodes and give unlinked nodes straight back
// through polymorphic_allocator::deallocate, while 6 reader threads traverse the list
// inside regions with protect. Run with WFMM_POISON=1 (and once with every slow path
// forced): a reader that ever sees a poisoned (0xdb) word, a wrong magic, a node whose
// state is not LIVE/UNLINKED, or keys out of order has followed freed memory.
//
// Protocol (the Harris-Michael mark, with writers under a lock):
//  * unlink n: set the mark (low bit) of n->next, then point n's predecessor at n's
//    successor, then deallocate n (retire). A marked next is frozen for good.
//  * reader: cur was protected from a link that was unmarked when it was loaded, so cur was
//    in the list then; next = protect(cur->next) (src inside cur, held under the other
//    index). If that value is unmarked, cur was not yet being unlinked when it was loaded,
//    so next was cur's successor in the list and not retired: safe. If marked, next may be
//    retired already: restart from the head.
// Nodes are trivially destructible and never destroyed before deallocate, as pmr.hpp's
// guide asks: readers holding an unlinked node still see its fields until wfmm frees it.
#include <gtest/gtest.h>
#include <stdint.h>

#include <atomic>
#include <chrono>
#include <memory_resource>
#include <mutex>
#include <thread>
#include <vector>

#include "reclaim_util.h"
#include "wfmm/pmr.hpp"

using namespace rt;

namespace {

struct PNode {
  std::atomic<uint64_t> key;
  std::atomic<uint64_t> uid;
  std::atomic<uint64_t> magic;
  std::atomic<uint64_t> state;
  std::atomic<uintptr_t> next;  // PNode*, low bit = this node is being unlinked
  uint64_t body[4];             // immutable payload, checked by readers

  PNode(uint64_t k, uint64_t u, uintptr_t nx)
      : key(k), uid(u), magic(magic_for(k, u)), state(kLive), next(nx) {
    for (int i = 0; i < 4; ++i) body[i] = wfmm_test::mix(u * 4 + uint64_t(i));
  }

  // Empty when intact; otherwise what is wrong.
  std::string problem() const {
    uint64_t k = key.load(std::memory_order_relaxed);
    uint64_t u = uid.load(std::memory_order_relaxed);
    uint64_t m = magic.load(std::memory_order_relaxed);
    uint64_t s = state.load(std::memory_order_relaxed);
    if (k == kPoisonWord || u == kPoisonWord || m == kPoisonWord || s == kPoisonWord)
      return "node is poisoned (0xdb...): freed while a reader could reach it";
    if (s != kLive && s != kUnlinked) return "state word is garbage " + hex(s);
    if (m != magic_for(k, u)) return "magic does not match (reused or freed)";
    for (int i = 0; i < 4; ++i)
      if (body[i] != wfmm_test::mix(u * 4 + uint64_t(i))) return "body changed (reused or freed)";
    return {};
  }
};
static_assert(std::is_trivially_destructible_v<PNode>);

constexpr uintptr_t kMark = 1;

inline uintptr_t protect_word(const std::atomic<uintptr_t>& src, unsigned index) {
  static_assert(sizeof(std::atomic<uintptr_t>) == sizeof(void*));
  return reinterpret_cast<uintptr_t>(wfmm_protect(
      reinterpret_cast<void* const volatile*>(const_cast<std::atomic<uintptr_t>*>(&src)), index));
}

class DeferredList {
 public:
  explicit DeferredList(std::pmr::memory_resource* r) : alloc_(r) {}
  ~DeferredList() { drain(); }

  // Single-threaded teardown: the rest goes back the same way.
  void drain() {
    uintptr_t w = head_.exchange(0);
    while (w != 0) {
      PNode* n = reinterpret_cast<PNode*>(w);
      w = n->next.load() & ~kMark;
      n->state.store(kUnlinked);
      alloc_.deallocate(n, 1);
      ++freed_;
    }
  }

  // Writers: toggles key (inserts if absent, unlinks and deallocates if present).
  void toggle(uint64_t key) {
    std::lock_guard<std::mutex> g(m_);
    std::atomic<uintptr_t>* link = &head_;
    uintptr_t w = link->load(std::memory_order_relaxed);
    while (w != 0 && reinterpret_cast<PNode*>(w)->key.load(std::memory_order_relaxed) < key) {
      link = &reinterpret_cast<PNode*>(w)->next;
      w = link->load(std::memory_order_relaxed);
    }
    PNode* n = reinterpret_cast<PNode*>(w);
    if (n != nullptr && n->key.load(std::memory_order_relaxed) == key) {
      uintptr_t succ = n->next.load(std::memory_order_relaxed);
      n->next.store(succ | kMark, std::memory_order_release);  // frozen from here on
      n->state.store(kUnlinked, std::memory_order_relaxed);
      link->store(succ, std::memory_order_release);             // unlinked
      alloc_.deallocate(n, 1);                                  // retired
      ++freed_;
      return;
    }
    PNode* fresh = alloc_.allocate(1);
    new (fresh) PNode(key, ++uid_, w);
    ++made_;
    link->store(reinterpret_cast<uintptr_t>(fresh), std::memory_order_release);
  }

  // Readers: walks the whole list; returns the number of nodes seen (restarts counted).
  uint64_t traverse(uint64_t* restarts) {
    wfmm::region r;
  restart:
    uint64_t seen = 0;
    unsigned a = 0, b = 1;
    uintptr_t w = protect_word(head_, a);
    uint64_t last_key = 0;
    bool first = true;
    while (w != 0) {
      const PNode* cur = reinterpret_cast<const PNode*>(w);
      std::string why = cur->problem();
      if (!why.empty()) {
        g_fail.add("reader: " + why + " at " + hex(w));
        return seen;
      }
      uint64_t k = cur->key.load(std::memory_order_relaxed);
      if (!first && k <= last_key) {
        g_fail.add("reader: keys out of order (" + std::to_string(last_key) + " then " +
                   std::to_string(k) + ")");
        return seen;
      }
      first = false;
      last_key = k;
      ++seen;
      uintptr_t nw = protect_word(cur->next, b);  // src inside cur (held under index a)
      if (nw & kMark) {
        ++*restarts;
        goto restart;
      }
      w = nw;
      std::swap(a, b);
    }
    return seen;
  }

  uint64_t made() const { return made_; }
  uint64_t freed() const { return freed_; }

 private:
  std::pmr::polymorphic_allocator<PNode> alloc_;
  std::atomic<uintptr_t> head_{0};  // root: a member of the list object
  std::mutex m_;
  uint64_t uid_ = 0;
  uint64_t made_ = 0;
  uint64_t freed_ = 0;
};

}  // namespace

TEST(PmrConcurrent, ReadersNeverSeeDeallocatedNodes) {
  g_fail.reset();
  expect_all_reclaimed("start");
  const wfmm_stats s0 = stats();
  constexpr int kReaders = 6, kWriters = 2;
  constexpr uint64_t kKeys = 256;
  const auto duration = std::chrono::milliseconds(forced_slow() ? 1000 : 1500) * g_scale;
  uint64_t made = 0, freed = 0;
  std::atomic<uint64_t> traversals{0}, nodes_seen{0}, restarts{0}, toggles{0};
  {
    wfmm::pmr::deferred_resource dres;
    {
      DeferredList list(&dres);
      for (uint64_t k = 0; k < kKeys; k += 2) list.toggle(k);  // half full
      std::atomic<bool> stop{false};
      StartLine start(kReaders + kWriters);
      std::vector<std::thread> ts;
      for (int i = 0; i < kReaders; ++i)
        ts.emplace_back([&] {
          start.arrive_and_wait();
          uint64_t n = 0, seen = 0, rs = 0;
          while (!stop.load(std::memory_order_relaxed) && g_fail.count.load() == 0) {
            seen += list.traverse(&rs);
            ++n;
          }
          traversals += n;
          nodes_seen += seen;
          restarts += rs;
        });
      for (int i = 0; i < kWriters; ++i)
        ts.emplace_back([&, i] {
          wfmm_test::Rng rng(g_seed * 131 + uint64_t(i));
          start.arrive_and_wait();
          uint64_t n = 0;
          while (!stop.load(std::memory_order_relaxed)) {
            list.toggle(rng.below(kKeys));
            ++n;
          }
          toggles += n;
        });
      std::this_thread::sleep_for(duration);
      stop.store(true);
      for (auto& t : ts) t.join();
      list.drain();
      made = list.made();
      freed = list.freed();
    }
    // drain() deallocated the rest; ~deferred_resource waits for all of it.
    const wfmm_stats s1 = stats();
    EXPECT_EQ(made, freed);
    EXPECT_GE(s1.retired - s0.retired, freed) << "every deallocate retires";
  }
  const wfmm_stats s2 = stats();
  EXPECT_EQ(s2.retired, s2.reclaimed) << "~deferred_resource returned before all was freed";
  EXPECT_EQ(s2.retired_pending, 0u);
  printf("traversals=%llu nodes_seen=%llu restarts=%llu toggles=%llu nodes=%llu\n",
         (unsigned long long)traversals.load(), (unsigned long long)nodes_seen.load(),
         (unsigned long long)restarts.load(), (unsigned long long)toggles.load(),
         (unsigned long long)made);
  EXPECT_GT(traversals.load(), 100u);
  EXPECT_GT(toggles.load(), 1000u);
  RT_EXPECT_NO_FAILURES();
}

// Writers only, from 4 threads: the nodes left are exactly the ones a traversal counts, and
// release() then finds every deallocated node freed.
TEST(PmrConcurrent, ContainerOfDeferredNodesDrainsCompletely) {
  g_fail.reset();
  expect_all_reclaimed("start");
  wfmm::pmr::deferred_resource dres;
  {
    DeferredList list(&dres);
    std::vector<std::thread> ts;
    for (int i = 0; i < 4; ++i)
      ts.emplace_back([&, i] {
        wfmm_test::Rng rng(g_seed * 7 + uint64_t(i));
        for (int j = 0; j < 20000 * g_scale; ++j) list.toggle(rng.below(512));
      });
    for (auto& t : ts) t.join();
    EXPECT_EQ(list.made() - list.freed(), [&] {
      uint64_t rs = 0;
      return list.traverse(&rs);
    }());
  }
  dres.release();
  const wfmm_stats s = stats();
  EXPECT_EQ(s.retired, s.reclaimed);
  RT_EXPECT_NO_FAILURES();
}
