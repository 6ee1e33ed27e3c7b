// xenium's containers under wfmm::xenium_reclaimer, on libwfmm.so (wfmm is malloc and
// operator new for this program).
//
//  * Guard.*: the adapter's bookkeeping in one thread (index sharing, marks, deleters, the
//    8-guard limit).
//  * Map.*, Set.*: 8 threads; each owns a disjoint key range and keeps a sequential model of
//    it, so every insert/erase/find result on its own keys is checked exactly, while finds
//    and full iterations over the whole container check every value's key checksum (a value
//    read after reclamation fails it, and fails loudly with WFMM_POISON=1). The final
//    contents must equal the union of the models.
//  * MSQueue.*, RQueue.*: 8 threads push and pop at random; every item carries a checksum,
//    is popped exactly once (per-producer bitmaps), and each consumer sees every producer's
//    items in push order. MSQueue.ThreadChurn* does the same with threads that live for 2000
//    operations each (thread exit with partial batches and open reservations).
//  * After every stress test: threads joined, container destroyed, wfmm_barrier(); then
//    wfmm_stats.retired == reclaimed, retired grew, and no value object is left alive.
//
// usage: wfmm_xenium_test [gtest flags] [--ms=N]   (N: milliseconds per stress test; 1000)
#include <cassert>

#include <xenium/harris_michael_hash_map.hpp>
#include <xenium/harris_michael_list_based_set.hpp>
#include <xenium/michael_scott_queue.hpp>
#include <xenium/ramalhete_queue.hpp>

#include <gtest/gtest.h>
#include <wfmm/wfmm.h>
#include <wfmm/xenium.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using reclaimer = wfmm::xenium_reclaimer;
using rpolicy = xenium::policy::reclaimer<reclaimer>;

constexpr int kThreads = 8;
int g_ms = 1000;

std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) : s(mix64(seed) | 1) {}
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

// Objects of these types count themselves, so the tests can tell that every node's
// destructor ran (reclaimed nodes included).
std::atomic<long> g_live{0};

// Map value: a copy of the key and a checksum of it.
struct mval {
  std::uint64_t key;
  std::uint64_t check;
  explicit mval(std::uint64_t k) : key(k), check(mix64(k)) { g_live.fetch_add(1, std::memory_order_relaxed); }
  mval(const mval& o) : key(o.key), check(o.check) { g_live.fetch_add(1, std::memory_order_relaxed); }
  mval& operator=(const mval&) = default;
  ~mval() {
    key = ~std::uint64_t{0};  // a later read of a destroyed value fails its check
    g_live.fetch_sub(1, std::memory_order_relaxed);
  }
  bool ok(std::uint64_t k) const { return key == k && check == mix64(k); }
};

// Set key: the key and its checksum; ordered by key.
struct skey {
  std::uint64_t k;
  std::uint64_t check;
  explicit skey(std::uint64_t key) : k(key), check(mix64(key)) { g_live.fetch_add(1, std::memory_order_relaxed); }
  skey(const skey& o) : k(o.k), check(o.check) { g_live.fetch_add(1, std::memory_order_relaxed); }
  skey& operator=(const skey&) = default;
  ~skey() {
    check = 0;
    g_live.fetch_sub(1, std::memory_order_relaxed);
  }
  bool ok() const { return check == mix64(k); }
  friend bool operator<(const skey& a, const skey& b) { return a.k < b.k; }
  friend bool operator==(const skey& a, const skey& b) { return a.k == b.k; }
};

struct stats_snapshot {
  wfmm_stats s;
  stats_snapshot() { wfmm_stats_get(&s); }
};

// Runs body(thread_index) on kThreads threads started together.
template <class F>
void run_threads(F body) {
  std::latch start(kThreads + 1);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      start.arrive_and_wait();
      body(t);
    });
  }
  start.arrive_and_wait();
  for (auto& th : ts) th.join();
}

bool time_left(std::chrono::steady_clock::time_point end, std::uint64_t iter) {
  return (iter & 63) != 0 || std::chrono::steady_clock::now() < end;
}

std::chrono::steady_clock::time_point deadline() {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(g_ms);
}

// The end-of-test reclamation checks.
void expect_all_reclaimed(const stats_snapshot& before) {
  wfmm_barrier();
  stats_snapshot after;
  EXPECT_EQ(after.s.retired, after.s.reclaimed) << "retired blocks not freed after wfmm_barrier";
  EXPECT_EQ(after.s.retired_pending, 0u);
  EXPECT_GT(after.s.retired, before.s.retired) << "the test retired nothing through wfmm";
  EXPECT_EQ(g_live.load(), 0) << "value objects still alive: a node's deleter did not run";
  std::printf("wfmm: retired %llu, reclaimed %llu, era %llu, slow protects %llu\n",
              (unsigned long long)(after.s.retired - before.s.retired),
              (unsigned long long)(after.s.reclaimed - before.s.reclaimed),
              (unsigned long long)after.s.era,
              (unsigned long long)(after.s.protect_slow - before.s.protect_slow));
}

// ---------------------------------------------------------------- the adapter itself

struct tnode : reclaimer::enable_concurrent_ptr<tnode, 1> {
  std::uint64_t payload = 0;
  static inline std::atomic<int> destroyed{0};
  ~tnode() { destroyed.fetch_add(1); }
};
using tptr = reclaimer::concurrent_ptr<tnode>;
using tguard = tptr::guard_ptr;
using tmarked = tptr::marked_ptr;

unsigned slots_used() { return wfmm::xenium_detail::tls_slots.used; }

TEST(Guard, NodeHasNoExtraMembers) {
  static_assert(sizeof(tnode) == sizeof(std::uint64_t));
  struct big : reclaimer::enable_concurrent_ptr<big> {
    char c[40];
  };
  static_assert(sizeof(big) == 40);
  static_assert(tnode::number_of_mark_bits == 1);
}

void tick_era();

TEST(Guard, CopiesShareAnIndexAndResetGivesItBack) {
  auto* a = new tnode;
  auto* b = new tnode;
  tptr ra(a), rb(b);
  {
    tguard g1;
    EXPECT_EQ(slots_used(), 0u);
    g1.acquire(ra, std::memory_order_acquire);
    EXPECT_EQ(g1.get(), a);
    EXPECT_EQ(std::popcount(slots_used()), 1);
    tguard g2 = g1;  // shares
    EXPECT_EQ(std::popcount(slots_used()), 1);
    EXPECT_EQ(g2.get(), a);
    // Once the era moved, g1 needs a protect and must not move a shared index: a fresh one.
    // (While the era stands it keeps the shared one: SharedIndexCoversANewLoad below.)
    tick_era();
    g1.acquire(rb, std::memory_order_acquire);
    EXPECT_EQ(std::popcount(slots_used()), 2);
    EXPECT_EQ(g1.get(), b);
    EXPECT_EQ(g2.get(), a);
    tguard g3 = std::move(g2);
    EXPECT_EQ(g2.get(), nullptr);
    EXPECT_EQ(std::popcount(slots_used()), 2);
    g3 = g1;  // drops a's index, shares b's
    EXPECT_EQ(std::popcount(slots_used()), 1);
    g3.swap(g2);
    EXPECT_EQ(g2.get(), b);
    EXPECT_EQ(g3.get(), nullptr);
    g1.reset();
    EXPECT_EQ(std::popcount(slots_used()), 1);
    g2.reset();
    EXPECT_EQ(slots_used(), 0u);
    tguard g4(a);  // from a raw pointer
    EXPECT_EQ(std::popcount(slots_used()), 1);
    EXPECT_EQ(g4.get(), a);
  }
  EXPECT_EQ(slots_used(), 0u);
  delete a;
  delete b;
}

// A guard sharing its index with a copy loads a new node while the era stands: the index's
// reservation covers both (nothing is reserved anew), so it keeps the index.
TEST(Guard, SharedIndexCoversANewLoadWhileTheEraStands) {
  auto* a = new tnode;
  auto* b = new tnode;
  tptr ra(a), rb(b);
  {
    tguard g1;
    g1.acquire(ra, std::memory_order_acquire);
    tguard g2 = g1;
    // What covers() will find: false only with protect's slow path forced
    // (WFMM_PROTECT_ATTEMPTS=0 keeps no era for the fast test) or after an era tick.
    const bool covered = wfmm_era_reserved_fast(unsigned(std::countr_zero(slots_used()))) != 0;
    if (wfmm_option_get("protect_attempts") != 0) {
      EXPECT_TRUE(covered);
    }
    g1.acquire(rb, std::memory_order_acquire);
    EXPECT_EQ(std::popcount(slots_used()), covered ? 1 : 2);
    EXPECT_EQ(g1.get(), b);
    EXPECT_EQ(g2.get(), a);
  }
  EXPECT_EQ(slots_used(), 0u);
  delete a;
  delete b;
}

// Moves the global era on: wfmm ticks it in the allocation path.
void tick_era() {
  wfmm_stats s0, s1;
  wfmm_stats_get(&s0);
  for (int i = 0; i < 1000000; ++i) {
    wfmm_stats_get(&s1);
    if (s1.era >= s0.era + 2) return;
    for (int j = 0; j < 64; ++j) wfmm_free(wfmm_malloc(16));  // (new/delete pairs may be elided)
  }
  ADD_FAILURE() << "the era did not move";
}

// A copy must keep the node alive after its source lets go, even when the node was retired
// (and its batch published) before the copy was made and the source's index is then reused
// at a newer era (which drops that index's list of batches). A second thread holds a
// reservation the batch also reaches, and leaves last: if this thread's copy held no
// reference to the batch, that leave would free the node under the copy.
TEST(Guard, CopyOutlivesItsSourceAfterRetire) {
  const int destroyed0 = tnode::destroyed.load();
  auto* a = new tnode;
  a->payload = 0x1234;
  auto* b = new tnode;
  tptr ra(a), rb(b);
  std::atomic<int> step{0};
  std::thread other([&] {
    tptr root(b);
    tguard g;
    g.acquire(root, std::memory_order_acquire);  // a reservation at an era >= a's birth
    step.store(1);
    while (step.load() != 2) std::this_thread::yield();
    g.reset();  // leaves its region: drops its reference to a's batch
    step.store(3);
  });
  while (step.load() != 1) std::this_thread::yield();
  {
    tguard g1;
    g1.acquire(ra, std::memory_order_acquire);
    ra.store(tmarked());  // unlinked
    // Retired (by "another party": no guard copy involved) while g1 holds it.
    wfmm_retire_dispose(a, [](void* p, void*) { delete static_cast<tnode*>(p); }, nullptr);
    wfmm_flush();  // its batch is published now (reaching both threads), before the copy
    tguard g2 = g1;
    g1.reset();
    tick_era();
    g1.acquire(rb, std::memory_order_acquire);  // at the new era
    wfmm_flush();
    step.store(2);
    while (step.load() != 3) std::this_thread::yield();
    tick_era();
    EXPECT_EQ(tnode::destroyed.load(), destroyed0) << "a copy's node was reclaimed under it";
    EXPECT_EQ(g2->payload, 0x1234u);
  }
  other.join();
  wfmm_barrier();
  EXPECT_EQ(tnode::destroyed.load(), destroyed0 + 1);
  delete b;
}

TEST(Guard, MarksAndAcquireIfEqual) {
  auto* a = new tnode;
  tptr r(tmarked(a, 1));
  tguard g;
  g.acquire(r, std::memory_order_acquire);
  EXPECT_EQ(g.get(), a);
  EXPECT_EQ(g.mark(), 1u);
  EXPECT_FALSE(g.acquire_if_equal(r, tmarked(a, 0), std::memory_order_acquire));
  EXPECT_EQ(g.get(), nullptr);
  EXPECT_EQ(slots_used(), 0u);
  EXPECT_TRUE(g.acquire_if_equal(r, tmarked(a, 1), std::memory_order_acquire));
  EXPECT_EQ(g.get(), a);
  EXPECT_EQ(g.mark(), 1u);
  tptr empty;
  EXPECT_TRUE(g.acquire_if_equal(empty, tmarked(), std::memory_order_acquire));
  EXPECT_EQ(g.get(), nullptr);
  EXPECT_EQ(slots_used(), 0u);
  g.acquire(empty);
  EXPECT_FALSE(static_cast<bool>(g));
  delete a;
}

// A node whose destructor clears its payload: a reader that still holds it after its
// reclamation (or after its memory went to a later node) sees the payload change. (Atomic:
// a plain store in a destructor is dropped as dead, and plain re-reads may be merged.)
struct vnode : reclaimer::enable_concurrent_ptr<vnode, 1> {
  std::atomic<std::uint64_t> payload;
  explicit vnode(std::uint64_t v) : payload(v) {}
  ~vnode() { payload.store(0, std::memory_order_relaxed); }
};
using vptr = reclaimer::concurrent_ptr<vnode>;

// A guard that acquires again on its own index keeps the pointer it loaded, with no protect,
// while that index still reserves the global era (guard_ptr::covers); once the era moved it
// protects. A writer replaces and retires the node at the link and moves the era all the
// while: every node the reader holds stays intact until it lets it go, on both paths.
TEST(Guard, AcquireOnItsOwnIndexKeepsItsNodeWhileErasMove) {
  stats_snapshot before;
  vptr head(new vnode(1));
  std::atomic<bool> stop{false};
  std::atomic<long> held{0}, bad{0};
  std::thread reader([&] {
    using vguard = vptr::guard_ptr;
    vguard g;
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      const bool ok = (i & 1) != 0 ? g.acquire_if_equal(head, head.load(std::memory_order_relaxed),
                                                         std::memory_order_acquire)
                                   : (g.acquire(head, std::memory_order_acquire), true);
      if (!ok || !g) continue;
      const std::uint64_t v = g->payload.load(std::memory_order_relaxed);
      // Bound: 64 re-reads while the writer retires the node and frees what it can.
      for (int k = 0; k < 64; ++k) {
        if (g->payload.load(std::memory_order_relaxed) != v || v == 0)
          bad.fetch_add(1, std::memory_order_relaxed);
      }
      held.fetch_add(1, std::memory_order_relaxed);
    }
  });
  const auto end = deadline();
  std::uint64_t next = 2;
  for (std::uint64_t it = 0; time_left(end, it); ++it) {
    auto* n = new vnode(next++);
    vnode* old = head.load(std::memory_order_relaxed).get();
    head.store(vptr::marked_ptr(n), std::memory_order_release);
    wfmm_retire_dispose(old, [](void* p, void*) { delete static_cast<vnode*>(p); }, nullptr);
    if ((it & 1023) == 0) wfmm_flush();  // frees what no region holds now
  }
  stop.store(true);
  reader.join();
  EXPECT_EQ(bad.load(), 0) << "a node changed while a guard held it";
  EXPECT_GT(held.load(), 1000) << "the reader held too few nodes to tell";
  stats_snapshot after;
  EXPECT_GE(after.s.era, before.s.era + 8) << "the era did not move: the protect path went untried";
  delete head.load(std::memory_order_relaxed).get();
  wfmm_barrier();
}

TEST(Guard, ReclaimRunsTheDeleter) {
  stats_snapshot before;
  int destroyed0 = tnode::destroyed.load();
  {
    tptr r(new tnode);
    tguard g;
    g.acquire(r);
    r.store(tmarked());
    g.reclaim();  // default deleter: delete
    EXPECT_EQ(g.get(), nullptr);
  }
  wfmm_barrier();
  EXPECT_EQ(tnode::destroyed.load(), destroyed0 + 1);
  stats_snapshot after;
  EXPECT_EQ(after.s.retired, after.s.reclaimed);
  EXPECT_GT(after.s.retired, before.s.retired);
}

std::atomic<int> g_enode_deleted{0};
struct enode;
struct enode_deleter {
  int tag = 0;  // stateful: the adapter stores it beside the node until it runs
  void operator()(enode* p) const;
};
struct enode : reclaimer::enable_concurrent_ptr<enode, 0, enode_deleter> {
  int x = 7;
};
void enode_deleter::operator()(enode* p) const {
  if (tag == 42 && p->x == 7) g_enode_deleted.fetch_add(1);
  delete p;
}

TEST(Guard, StatefulDeleter) {
  static_assert(sizeof(enode) == sizeof(int));
  reclaimer::concurrent_ptr<enode> r(new enode);
  {
    reclaimer::concurrent_ptr<enode>::guard_ptr g;
    reclaimer::region_guard region;
    g.acquire(r);
    r.store(nullptr);
    g.reclaim(enode_deleter{42});
  }
  wfmm_barrier();
  EXPECT_EQ(g_enode_deleted.load(), 1);
}

TEST(GuardDeathTest, NineGuardsAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::vector<std::unique_ptr<tnode>> nodes;
        std::vector<std::unique_ptr<tptr>> roots;
        std::vector<tguard> guards(9);
        for (int i = 0; i < 9; ++i) {
          nodes.emplace_back(new tnode);
          roots.emplace_back(new tptr(nodes.back().get()));
          guards[i].acquire(*roots.back());
        }
      },
      "more than 8 guard_ptrs");
}

TEST(Guard, EightGuardsAndRegionGuardNesting) {
  std::vector<std::unique_ptr<tnode>> nodes;
  std::vector<std::unique_ptr<tptr>> roots;
  reclaimer::region_guard outer;
  {
    std::vector<tguard> guards(8);
    for (int i = 0; i < 8; ++i) {
      nodes.emplace_back(new tnode);
      roots.emplace_back(new tptr(nodes.back().get()));
      guards[i].acquire(*roots.back());
      nodes.back()->payload = static_cast<std::uint64_t>(i);
    }
    EXPECT_EQ(slots_used(), 0xffu);
    std::vector<tguard> copies = guards;  // copies take no index
    for (int i = 0; i < 8; ++i) EXPECT_EQ(copies[i]->payload, static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(slots_used(), 0u);
}

// ---------------------------------------------------------------- hash map

using map_t = xenium::harris_michael_hash_map<std::uint64_t, mval, rpolicy, xenium::policy::buckets<64>>;

TEST(Map, EightThreadsDisjointKeysWithModel) {
  constexpr std::uint64_t kKeys = 256;  // per thread
  stats_snapshot before;
  std::vector<std::vector<char>> models(kThreads, std::vector<char>(kKeys, 0));
  std::atomic<std::uint64_t> bad{0}, ops{0};
  {
    map_t map;
    auto end = deadline();
    run_threads([&](int t) {
      rng r(1000 + t);
      auto& model = models[t];
      std::uint64_t n = 0, local_bad = 0;
      for (; time_left(end, n); ++n) {
        const std::uint64_t i = r.below(kKeys);
        const std::uint64_t own = static_cast<std::uint64_t>(t) * kKeys + i;
        const unsigned op = static_cast<unsigned>(r.below(1000));
        if (op < 350) {  // find any key: its value must match
          const std::uint64_t k = r.below(kThreads * kKeys);
          auto it = map.find(k);
          if (it != map.end() && (it->first != k || !it->second.ok(k))) ++local_bad;
          if (k / kKeys == static_cast<std::uint64_t>(t) && (it != map.end()) != (model[k % kKeys] != 0))
            ++local_bad;
        } else if (op < 650) {
          const bool inserted = map.emplace(own, mval(own));
          if (inserted == (model[i] != 0)) ++local_bad;
          model[i] = 1;
        } else if (op < 900) {
          const bool erased = map.erase(own);
          if (erased != (model[i] != 0)) ++local_bad;
          model[i] = 0;
        } else if (op < 995) {  // erase through an iterator
          auto it = map.find(own);
          if ((it != map.end()) != (model[i] != 0)) ++local_bad;
          if (it != map.end()) {
            if (!it->second.ok(own)) ++local_bad;
            map.erase(std::move(it));
            model[i] = 0;
          }
        } else {  // walk the whole map
          for (auto it = map.begin(); it != map.end(); ++it)
            if (!it->second.ok(it->first)) ++local_bad;
        }
      }
      bad += local_bad;
      ops += n;
    });
    EXPECT_EQ(bad.load(), 0u);
    // Final contents = union of the models.
    std::set<std::uint64_t> expect, got;
    for (int t = 0; t < kThreads; ++t)
      for (std::uint64_t i = 0; i < kKeys; ++i)
        if (models[t][i]) expect.insert(static_cast<std::uint64_t>(t) * kKeys + i);
    for (auto it = map.begin(); it != map.end(); ++it) {
      EXPECT_TRUE(it->second.ok(it->first)) << "key " << it->first;
      EXPECT_TRUE(got.insert(it->first).second) << "duplicate key " << it->first;
    }
    EXPECT_EQ(got, expect);
    std::printf("map: %llu operations, %zu keys at the end\n", (unsigned long long)ops.load(),
                got.size());
  }
  expect_all_reclaimed(before);
}

// ---------------------------------------------------------------- list-based set

using set_t = xenium::harris_michael_list_based_set<skey, rpolicy>;

TEST(Set, EightThreadsDisjointKeysWithModel) {
  constexpr std::uint64_t kKeys = 32;  // per thread: one sorted list of 256 keys in all
  stats_snapshot before;
  std::vector<std::vector<char>> models(kThreads, std::vector<char>(kKeys, 0));
  std::atomic<std::uint64_t> bad{0}, ops{0};
  {
    set_t set;
    auto end = deadline();
    run_threads([&](int t) {
      rng r(2000 + t);
      auto& model = models[t];
      std::uint64_t n = 0, local_bad = 0;
      for (; time_left(end, n); ++n) {
        const std::uint64_t i = r.below(kKeys);
        // Interleave the threads' keys along the list.
        const std::uint64_t own = i * kThreads + static_cast<std::uint64_t>(t);
        const unsigned op = static_cast<unsigned>(r.below(1000));
        if (op < 350) {
          const std::uint64_t k = r.below(kThreads * kKeys);
          auto it = set.find(skey(k));
          if (it != set.end() && (it->k != k || !it->ok())) ++local_bad;
          if (k % kThreads == static_cast<std::uint64_t>(t) && (it != set.end()) != (model[k / kThreads] != 0))
            ++local_bad;
        } else if (op < 650) {
          const bool inserted = set.emplace(own);
          if (inserted == (model[i] != 0)) ++local_bad;
          model[i] = 1;
        } else if (op < 900) {
          const bool erased = set.erase(skey(own));
          if (erased != (model[i] != 0)) ++local_bad;
          model[i] = 0;
        } else if (op < 995) {
          auto it = set.find(skey(own));
          if ((it != set.end()) != (model[i] != 0)) ++local_bad;
          if (it != set.end()) {
            if (!it->ok()) ++local_bad;
            set.erase(std::move(it));
            model[i] = 0;
          }
        } else {
          std::uint64_t prev = 0;
          bool first = true;
          for (auto it = set.begin(); it != set.end(); ++it) {
            if (!it->ok() || (!first && it->k < prev)) ++local_bad;  // a re-inserted key may repeat
            prev = it->k;
            first = false;
          }
        }
      }
      bad += local_bad;
      ops += n;
    });
    EXPECT_EQ(bad.load(), 0u);
    std::vector<std::uint64_t> expect, got;
    for (std::uint64_t k = 0; k < kThreads * kKeys; ++k)
      if (models[k % kThreads][k / kThreads]) expect.push_back(k);
    for (auto it = set.begin(); it != set.end(); ++it) {
      EXPECT_TRUE(it->ok());
      got.push_back(it->k);
    }
    EXPECT_EQ(got, expect);
    std::printf("set: %llu operations, %zu keys at the end\n", (unsigned long long)ops.load(),
                got.size());
  }
  expect_all_reclaimed(before);
}

// ---------------------------------------------------------------- queues

struct qitem {
  std::uint32_t producer = 0;
  std::uint64_t seq = 0;
  std::uint64_t check = 0;
  static qitem make(std::uint32_t p, std::uint64_t s) {
    return qitem{p, s, mix64((std::uint64_t{p} << 40) ^ s)};
  }
  bool ok() const { return check == mix64((std::uint64_t{producer} << 40) ^ seq); }
};

// Exactly-once and per-producer order bookkeeping shared by both queue tests.
struct queue_checker {
  static constexpr std::uint64_t kMaxPush = 1u << 20;  // per producer
  std::vector<std::unique_ptr<std::atomic<std::uint8_t>[]>> popped;
  std::vector<std::uint64_t> pushed = std::vector<std::uint64_t>(kThreads, 0);
  std::atomic<std::uint64_t> bad{0};
  queue_checker() {
    for (int t = 0; t < kThreads; ++t) {
      popped.emplace_back(new std::atomic<std::uint8_t>[kMaxPush]);
      for (std::uint64_t i = 0; i < kMaxPush; ++i) popped.back()[i].store(0, std::memory_order_relaxed);
    }
  }
  // Per consumer: the last sequence number seen from each producer.
  struct consumer {
    std::int64_t last[kThreads];
    consumer() {
      for (auto& l : last) l = -1;
    }
  };
  void on_pop(consumer& c, const qitem& it) {
    if (!it.ok() || it.producer >= kThreads || it.seq >= kMaxPush) {
      ++bad;
      return;
    }
    if (static_cast<std::int64_t>(it.seq) <= c.last[it.producer]) ++bad;  // FIFO per producer
    c.last[it.producer] = static_cast<std::int64_t>(it.seq);
    if (popped[it.producer][it.seq].fetch_add(1, std::memory_order_relaxed) != 0) ++bad;  // twice
  }
  void expect_all_popped_once() {
    EXPECT_EQ(bad.load(), 0u);
    std::uint64_t total = 0;
    for (int p = 0; p < kThreads; ++p) {
      total += pushed[p];
      for (std::uint64_t s = 0; s < pushed[p]; ++s)
        if (popped[p][s].load() != 1) {
          ADD_FAILURE() << "item " << p << "/" << s << " popped " << int(popped[p][s].load()) << " times";
          return;
        }
    }
    std::printf("queue: %llu items pushed and popped\n", (unsigned long long)total);
  }
};

// churn: each of the 8 workers is a chain of short-lived threads (2000 operations each), so
// threads exit with partial batches and reservations while the others keep going.
template <class Push, class Pop>
void queue_stress(queue_checker& qc, Push push, Pop pop, bool churn = false) {
  auto end = deadline();
  run_threads([&](int t) {
    rng r(3000 + t);
    std::uint64_t seq = 0;
    auto work = [&](std::uint64_t max_ops) {
      queue_checker::consumer me;  // one consumer per thread
      for (std::uint64_t n = 0; n < max_ops && time_left(end, n); ++n) {
        if (r.below(2) == 0 && seq < queue_checker::kMaxPush) {
          push(qitem::make(static_cast<std::uint32_t>(t), seq++));
        } else {
          qitem it;
          if (pop(it)) qc.on_pop(me, it);
        }
      }
    };
    if (!churn) {
      work(~std::uint64_t{0});
    } else {
      while (std::chrono::steady_clock::now() < end) std::thread(work, 2000).join();
    }
    qc.pushed[t] = seq;
  });
  // Drain in this thread: one more consumer.
  queue_checker::consumer me;
  qitem it;
  while (pop(it)) qc.on_pop(me, it);
  qc.expect_all_popped_once();
}

TEST(MSQueue, EightThreadsExactlyOnceFifo) {
  stats_snapshot before;
  {
    queue_checker qc;
    xenium::michael_scott_queue<qitem, rpolicy> q;
    queue_stress(
        qc, [&](const qitem& it) { q.push(it); }, [&](qitem& out) { return q.try_pop(out); });
  }
  expect_all_reclaimed(before);
}

TEST(MSQueue, ThreadChurnExactlyOnceFifo) {
  stats_snapshot before;
  {
    queue_checker qc;
    xenium::michael_scott_queue<qitem, rpolicy> q;
    queue_stress(
        qc, [&](const qitem& it) { q.push(it); }, [&](qitem& out) { return q.try_pop(out); },
        /*churn=*/true);
  }
  expect_all_reclaimed(before);
}

TEST(RQueue, EightThreadsExactlyOnceFifo) {
  stats_snapshot before;
  {
    queue_checker qc;
    // Small nodes: a node is retired every 8 pops.
    xenium::ramalhete_queue<qitem*, rpolicy, xenium::policy::entries_per_node<8>> q;
    queue_stress(
        qc, [&](const qitem& it) { q.push(new qitem(it)); },
        [&](qitem& out) {
          qitem* p = nullptr;
          if (!q.try_pop(p)) return false;
          out = *p;
          delete p;
          return true;
        });
  }
  expect_all_reclaimed(before);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--ms=", 5) == 0) g_ms = std::atoi(argv[i] + 5);
  return RUN_ALL_TESTS();
}
