// wfmm::std_compat RCU (P2545R4): the paper's example -- readers in
// std::scoped_lock(rcu_default_domain()) read a shared object while writers swap it and
// rcu_retire the old one -- with content checks under WFMM_POISON=1; the same with
// rcu_obj_base::retire; rcu_synchronize followed by a direct delete; rcu_barrier waiting for
// deleters; every kind of deleter (default, class operator delete, empty, function pointer,
// one-word state) run exactly once with its state; polymorphic objects retired through a
// base at an offset; lock/try_lock/unlock nesting; one domain for RCU and hazard pointers.
#include <gtest/gtest.h>
#include <stdint.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "reclaim_util.h"
#include "wfmm/std_compat.hpp"

using namespace rt;
namespace sc = wfmm::std_compat;

namespace {

std::atomic<uint64_t> g_name_dtors{0};

// The paper's std::string, with a payload to check: placed in wfmm blocks by rt::make.
struct Name {
  Payload pl;  // key = version
  std::string text;  // its buffer is glibc's (the test library); ~Name frees it
  explicit Name(uint64_t v) : pl(v, v * 3 + 1), text(expected_text(v)) {}
  ~Name() { g_name_dtors.fetch_add(1, std::memory_order_relaxed); }
  static std::string expected_text(uint64_t v) {
    return "name #" + std::to_string(v) + std::string(size_t(v % 40), char('a' + v % 26));
  }
  std::string problem() const {
    std::string why = pl.problem();
    if (!why.empty()) return why;
    if (text != expected_text(pl.key.load(std::memory_order_relaxed))) return "text changed";
    return {};
  }
};

std::atomic<uint64_t> g_item_dtors{0};

struct Item : sc::rcu_obj_base<Item> {
  Payload pl;
  uint64_t body[6];
  explicit Item(uint64_t v) : pl(v, v + 11) {
    for (int i = 0; i < 6; ++i) body[i] = wfmm_test::mix(v * 6 + uint64_t(i));
  }
  ~Item() { g_item_dtors.fetch_add(1, std::memory_order_relaxed); }
  std::string problem() const {
    std::string why = pl.problem();
    if (!why.empty()) return why;
    uint64_t v = pl.key.load(std::memory_order_relaxed);
    for (int i = 0; i < 6; ++i)
      if (body[i] != wfmm_test::mix(v * 6 + uint64_t(i))) return "body changed";
    return {};
  }
};

class Rcu : public ::testing::Test {
 protected:
  void SetUp() override {
    g_fail.reset();
    g_name_dtors = 0;
    g_item_dtors = 0;
    expect_all_reclaimed("test start");
  }
};

// Readers and writers around one shared pointer for `ms` milliseconds. read(p) checks an
// object inside a read-side section; replace() swaps in a new version and disposes of the
// old one its own way. Returns the number of replacements.
template <class T, class Replace>
uint64_t run_readers_and_writers(std::atomic<T*>& shared, int readers, int writers,
                                 Replace replace, std::atomic<uint64_t>* reads_out) {
  const auto duration = std::chrono::milliseconds(900) * g_scale;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, replaced{0};
  std::atomic<uint64_t> version{1};
  StartLine start(readers + writers);
  std::vector<std::thread> ts;
  for (int r = 0; r < readers; ++r)
    ts.emplace_back([&, r] {
      start.arrive_and_wait();
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed) && g_fail.count.load() == 0) {
        if ((n + uint64_t(r)) % 3 == 0) {
          std::scoped_lock lock(sc::rcu_default_domain());  // the paper's reader
          T* p = shared.load(std::memory_order_acquire);
          std::string why = p->problem();
          if (!why.empty()) g_fail.add("reader: " + why);
        } else {
          // Nested sections, and the object read twice: both reads must agree.
          sc::rcu_domain& dom = sc::rcu_default_domain();
          dom.lock();
          T* p = shared.load(std::memory_order_acquire);
          uint64_t v = p->pl.key.load(std::memory_order_relaxed);
          if (!dom.try_lock()) g_fail.add("try_lock returned false");
          std::this_thread::yield();  // let writers retire p meanwhile
          std::string why = p->problem();
          if (!why.empty()) g_fail.add("reader (nested): " + why);
          if (p->pl.key.load(std::memory_order_relaxed) != v) g_fail.add("version changed");
          dom.unlock();
          dom.unlock();
        }
        ++n;
      }
      reads += n;
    });
  for (int w = 0; w < writers; ++w)
    ts.emplace_back([&] {
      start.arrive_and_wait();
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        replace(version.fetch_add(1) + 1);
        // RCU is for read-mostly data: pace the writers a little. Unpaced, two writers
        // retire ~2M objects/s, and readers spend their time freeing them (the last
        // section to drop a batch frees it).
        if (++n % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      replaced += n;
    });
  std::this_thread::sleep_for(duration);
  stop.store(true);
  for (auto& t : ts) t.join();
  if (reads_out != nullptr) *reads_out = reads.load();
  return replaced.load();
}

}  // namespace

// ---------------------------------------------------------------- P2545R4's example

namespace {
std::atomic<Name*> g_name{nullptr};
std::atomic<Item*> g_item{nullptr};
}  // namespace

TEST_F(Rcu, ExampleRcuRetireWhileReadersRead) {
  g_name.store(make<Name>(1));
  std::atomic<uint64_t> reads{0};
  const uint64_t replaced = run_readers_and_writers(
      g_name, 4, 2,
      [](uint64_t v) {
        Name* old = g_name.exchange(make<Name>(v));
        old->pl.mark_unlinked();
        sc::rcu_retire(old);  // ~Name() and the free once no section can hold old
      },
      &reads);
  sc::rcu_retire(g_name.exchange(nullptr));
  expect_all_reclaimed("end");
  printf("reads=%llu replaced=%llu\n", (unsigned long long)reads.load(),
         (unsigned long long)replaced);
  EXPECT_EQ(g_name_dtors.load(), replaced + 1);
  EXPECT_GT(reads.load(), 200u);
  EXPECT_GT(replaced, 100u);
  RT_EXPECT_NO_FAILURES();
}

TEST_F(Rcu, ExampleRcuObjBaseRetire) {
  g_item.store(make<Item>(1));
  const uint64_t replaced = run_readers_and_writers(
      g_item, 4, 1,
      [](uint64_t v) {
        Item* old = g_item.exchange(make<Item>(v));
        old->pl.mark_unlinked();
        old->retire();
      },
      nullptr);
  g_item.exchange(nullptr)->retire();
  sc::rcu_barrier();
  EXPECT_EQ(g_item_dtors.load(), replaced + 1) << "rcu_barrier returned before the deleters ran";
  expect_all_reclaimed("end");
  RT_EXPECT_NO_FAILURES();
}

TEST_F(Rcu, ExampleSynchronizeThenDelete) {
  // The writer waits for the readers itself and frees directly (no poison: the destructor
  // marks the payload DEAD and the block goes back to wfmm at once, for reuse).
  g_name.store(make<Name>(1));
  std::atomic<uint64_t> reads{0};
  const uint64_t replaced = run_readers_and_writers(
      g_name, 4, 1,
      [](uint64_t v) {
        Name* old = g_name.exchange(make<Name>(v));
        old->pl.mark_unlinked();
        sc::rcu_synchronize();
        destroy_now(old);
      },
      &reads);
  destroy_now(g_name.exchange(nullptr));
  EXPECT_EQ(g_name_dtors.load(), replaced + 1);
  EXPECT_GT(replaced, 10u);
  RT_EXPECT_NO_FAILURES();
}

TEST_F(Rcu, SynchronizeWaitsForAnOpenSection) {
  Name* n = make<Name>(5);
  std::atomic<int> phase{0};
  std::atomic<bool> synchronized{false};
  std::thread reader([&] {
    std::scoped_lock lock(sc::rcu_default_domain());
    phase.store(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (synchronized.load()) g_fail.add("rcu_synchronize returned while a section was open");
  });
  while (phase.load() != 1) std::this_thread::yield();
  sc::rcu_synchronize();
  synchronized.store(true);
  reader.join();
  destroy_now(n);
  sc::rcu_synchronize();  // nothing open: returns
  RT_EXPECT_NO_FAILURES();
}

TEST_F(Rcu, BarrierWaitsForDeletersOfExitedAndCallingThreads) {
  static std::atomic<uint64_t> calls{0};
  calls = 0;
  struct Counting {
    void operator()(Item* p) const {
      calls.fetch_add(1);
      destroy_now(p);
    }
  };
  // Other threads retire and exit (their batches are published at exit).
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([] {
      for (int i = 0; i < 250; ++i) sc::rcu_retire(make<Item>(uint64_t(i)), Counting{});
    });
  for (auto& t : ts) t.join();
  // This thread retires a partial batch; rcu_barrier flushes it.
  for (int i = 0; i < 7; ++i) sc::rcu_retire(make<Item>(uint64_t(i)), Counting{});
  sc::rcu_barrier();
  EXPECT_EQ(calls.load(), 1007u);
  // A flushing, still-running thread is covered too.
  std::atomic<int> phase{0};
  std::thread live([&] {
    for (int i = 0; i < 10; ++i) sc::rcu_retire(make<Item>(uint64_t(i)), Counting{});
    wfmm_flush();  // see std_compat.hpp: rcu_barrier covers published batches
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
  });
  while (phase.load() != 1) std::this_thread::yield();
  sc::rcu_barrier();
  EXPECT_EQ(calls.load(), 1017u);
  phase.store(2);
  live.join();
}

// ---------------------------------------------------------------- deleters

namespace {
std::atomic<uint64_t> g_fn_calls{0};
void fn_deleter(Item* p) {
  g_fn_calls.fetch_add(1);
  if (p != nullptr) destroy_now(p);
}
struct Pool {
  std::atomic<uint64_t> returned{0};
};
struct PoolDeleter {  // one word of state: travels in the context word
  Pool* pool;
  void operator()(Item* p) const {
    pool->returned.fetch_add(1);
    destroy_now(p);
  }
};
static_assert(std::is_trivially_copyable_v<PoolDeleter> && sizeof(PoolDeleter) == sizeof(void*));

std::atomic<uint64_t> g_own_deletes{0};
struct OwnDelete : sc::rcu_obj_base<OwnDelete> {
  uint64_t v = 42;
  static void* operator new(size_t n) { return wfmm_malloc(n); }
  static void operator delete(void* p, size_t n) {
    g_own_deletes.fetch_add(n == sizeof(OwnDelete) ? 1 : 1000);
    wfmm_free(p);
  }
};

struct WithPool : sc::rcu_obj_base<WithPool, void (*)(WithPool*)> {
  uint64_t v = 1;
};
std::atomic<uint64_t> g_withpool_calls{0};
void withpool_free(WithPool* p) {
  g_withpool_calls.fetch_add(1);
  destroy_now(p);
}

// Polymorphic, with the retired base at an offset inside the object.
std::atomic<uint64_t> g_poly_dtors{0};
struct Front {
  virtual ~Front() = default;
  uint64_t f = 1;
};
struct Back {
  virtual ~Back() = default;
  uint64_t b = 2;
};
struct Both : Front, Back {
  uint64_t payload[4] = {3, 4, 5, 6};
  ~Both() override { g_poly_dtors.fetch_add(1); }
};
}  // namespace

TEST_F(Rcu, EveryKindOfDeleterRunsOnceWithItsState) {
  g_fn_calls = 0;
  g_own_deletes = 0;
  g_withpool_calls = 0;
  g_poly_dtors = 0;
  Pool pools[3];
  constexpr int kN = 100;
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < kN; ++i) {
        sc::rcu_retire(make<Item>(uint64_t(i)));                       // default_delete
        sc::rcu_retire(make<Item>(uint64_t(i)), &fn_deleter);          // function pointer
        sc::rcu_retire(make<Item>(uint64_t(i)), PoolDeleter{&pools[t]});  // one word
        sc::rcu_retire(make<Item>(uint64_t(i)), [](Item* p) { destroy_now(p); });  // lambda
        (new OwnDelete)->retire();                                     // operator delete
        make<WithPool>()->retire(&withpool_free);                      // base with a D
        Both* b = make<Both>();
        sc::rcu_retire(static_cast<Back*>(b));  // base at an offset: virtual ~Back, block start
      }
      sc::rcu_retire(static_cast<Item*>(nullptr));
      sc::rcu_retire(static_cast<Item*>(nullptr), &fn_deleter);  // d(nullptr) may run now
      g_fn_calls.fetch_sub(1);
    });
  for (auto& t : ts) t.join();
  expect_all_reclaimed("deleters");
  EXPECT_EQ(g_item_dtors.load(), uint64_t(4 * 3 * kN));
  EXPECT_EQ(g_fn_calls.load(), uint64_t(3 * kN));
  for (auto& p : pools) EXPECT_EQ(p.returned.load(), uint64_t(kN)) << "state travelled intact";
  EXPECT_EQ(g_own_deletes.load(), uint64_t(3 * kN)) << "T's operator delete (sized) ran";
  EXPECT_EQ(g_withpool_calls.load(), uint64_t(3 * kN));
  EXPECT_EQ(g_poly_dtors.load(), uint64_t(3 * kN)) << "the most-derived destructor ran";
}

namespace {
struct Plain256 {
  unsigned char bytes[256];
};
struct Marked256 : sc::rcu_obj_base<Marked256> {
  Payload pl{1, 2};
  unsigned char bytes[224];
};
}  // namespace

TEST_F(Rcu, DefaultDeleteLetsWfmmFreeAndPoisonTheBlock) {
  if (option("poison") != 1) GTEST_SKIP() << "needs WFMM_POISON=1";
  // White-box, as tests/reclaim/api_test.cpp: read a block right after wfmm reclaimed it
  // (its page stays mapped; nothing allocates in between). The allocator's free list may use
  // the first 16 bytes. Poison is wfmm's own free path, so its presence shows that
  // default_delete did not go through a deleter that frees the block itself.
  void* keep = wfmm_malloc(256);  // keeps the page in use
  auto* a = make<Plain256>();
  memset(a->bytes, 0x11, sizeof a->bytes);
  auto* b = make<Marked256>();
  memset(b->bytes, 0x22, sizeof b->bytes);
  const wfmm_stats s0 = stats();
  sc::rcu_retire(a);  // trivially destructible: wfmm_retire
  b->retire();        // ~Marked256() then wfmm frees: wfmm_retire_with
  sc::rcu_barrier();
  const wfmm_stats s1 = stats();
  EXPECT_EQ(s1.reclaimed - s0.reclaimed, 2u);
  const auto* pa = reinterpret_cast<const unsigned char*>(a);
  const auto* pb = reinterpret_cast<const unsigned char*>(b);
  size_t bad_a = 0, bad_b = 0;
  for (size_t i = 16; i < sizeof(Plain256); ++i) bad_a += pa[i] != 0xdb;
  for (size_t i = 16; i < sizeof(Marked256); ++i) bad_b += pb[i] != 0xdb;
  EXPECT_EQ(bad_a, 0u);
  EXPECT_EQ(bad_b, 0u);
  wfmm_free(keep);
}

// ---------------------------------------------------------------- one domain

TEST_F(Rcu, ASectionHoldsHazardPointerRetirementsAndViceVersa) {
  struct Obj : sc::hazard_pointer_obj_base<Obj> {
    Payload pl{77, 78};
  };
  std::atomic<Obj*> src{make<Obj>()};
  {
    std::scoped_lock lock(sc::rcu_default_domain());
    Obj* p = src.load(std::memory_order_acquire);
    std::thread([&] {
      src.exchange(nullptr)->retire();  // a hazard-pointer retirement
      for (int i = 0; i < 3000; ++i) wfmm_retire(wfmm_malloc(32));
      wfmm_flush();
    }).join();
    EXPECT_EQ(p->pl.problem(), "") << "freed under an open RCU section";
  }
  std::atomic<Item*> isrc{make<Item>(9)};
  {
    sc::hazard_pointer h = sc::make_hazard_pointer();
    Item* p = h.protect(isrc);
    std::thread([&] {
      sc::rcu_retire(isrc.exchange(nullptr));  // an RCU retirement
      for (int i = 0; i < 3000; ++i) wfmm_retire(wfmm_malloc(32));
      wfmm_flush();
    }).join();
    EXPECT_EQ(p->problem(), "") << "freed under a hazard pointer";
    EXPECT_EQ(g_item_dtors.load(), 0u);
  }
  expect_all_reclaimed("end");
  EXPECT_EQ(g_item_dtors.load(), 1u);
}

TEST(RcuDeathTest, MisuseDiesWithAMessage) {
  EXPECT_DEATH(
      {
        std::scoped_lock lock(sc::rcu_default_domain());
        sc::rcu_synchronize();
      },
      "wfmm: synchronize.*inside a region");
  EXPECT_DEATH(sc::rcu_default_domain().unlock(), "wfmm_read_unlock without a matching");
}
