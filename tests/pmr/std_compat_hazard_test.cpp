// wfmm::std_compat hazard pointers (P2530R3): the paper's example -- readers protect a
// shared configuration that writers replace and retire -- with 4 reader styles (a hazard
// pointer per read, a long-lived one, try_protect loops, reset_protection hand-over) and
// content checks under WFMM_POISON=1; empty bases add no bytes; hazard_pointer's empty,
// move, swap and destruction semantics; protection holds against other threads' retire;
// the 9th hazard pointer in a thread throws hazard_pointer_exhausted (a bad_alloc), and
// misuse (empty, other thread, uncaught exhaustion) dies with a clear message. Batches
// (P3428R4): make_hazard_pointer_batch fills only the empty elements, all or nothing;
// clear_hazard_pointer_batch empties them and leaves the region with the thread's last
// hazard pointer; a batch holds its objects against retire; 3 readers reuse one batch each
// per traversal while a writer replaces and retires the objects they read.
#include <gtest/gtest.h>
#include <stdint.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "reclaim_util.h"
#include "wfmm/std_compat.hpp"

using namespace rt;
namespace sc = wfmm::std_compat;

namespace {

// ---------------------------------------------------------------- objects

std::atomic<uint64_t> g_config_dtors{0};

// Placed in wfmm blocks by rt::make; no operator delete of its own, so retire() lets wfmm
// run ~Config() and free (and poison) the block.
struct Config : sc::hazard_pointer_obj_base<Config> {
  Payload pl;  // key = version
  uint64_t table[12];
  explicit Config(uint64_t version) : pl(version, version ^ 0xc0f1) {
    for (int i = 0; i < 12; ++i) table[i] = wfmm_test::mix(version * 12 + uint64_t(i));
  }
  ~Config() { g_config_dtors.fetch_add(1, std::memory_order_relaxed); }
  std::string problem() const {
    std::string why = pl.problem();
    if (!why.empty()) return why;
    uint64_t v = pl.key.load(std::memory_order_relaxed);
    for (int i = 0; i < 12; ++i)
      if (table[i] != wfmm_test::mix(v * 12 + uint64_t(i))) return "table changed";
    return {};
  }
};

std::atomic<uint64_t> g_counted_deletes{0};

// Brings its own operator new/delete (wfmm's): retire() must call `delete p`.
struct Counted : sc::hazard_pointer_obj_base<Counted> {
  Payload pl;
  explicit Counted(uint64_t v) : pl(v, v + 7) {}
  static void* operator new(size_t n) {
    void* p = wfmm_malloc(n);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  static void operator delete(void* p) {
    g_counted_deletes.fetch_add(1, std::memory_order_relaxed);
    wfmm_free(p);
  }
};

// Checks a protected object; records and returns false when it is bad.
template <class T>
bool intact(const T* p, const char* where) {
  if (p == nullptr) {
    g_fail.add(std::string(where) + ": null");
    return false;
  }
  std::string why;
  if constexpr (std::is_same_v<T, Config>)
    why = p->problem();
  else
    why = p->pl.problem();
  if (why.empty()) return true;
  g_fail.add(std::string(where) + ": " + why + " at " + hex(uint64_t(uintptr_t(p))));
  return false;
}

class Hazard : public ::testing::Test {
 protected:
  void SetUp() override {
    g_fail.reset();
    expect_all_reclaimed("test start");
  }
};

}  // namespace

// ---------------------------------------------------------------- empty bases

namespace {
struct TwoWords {
  uint64_t a, b;
};
struct HpTwo : sc::hazard_pointer_obj_base<HpTwo> {
  uint64_t a, b;
};
struct RcuTwo : sc::rcu_obj_base<RcuTwo> {
  uint64_t a, b;
};
struct FreeFn;
void free_fn(FreeFn* p);
struct FreeFn : sc::hazard_pointer_obj_base<FreeFn, void (*)(FreeFn*)> {
  uint64_t a, b;
};
void free_fn(FreeFn* p) { destroy_now(p); }
struct OneChar : sc::rcu_obj_base<OneChar> {
  char c;
};
}  // namespace

TEST(StdCompatBase, EmptyBasesAddNoBytes) {
  static_assert(std::is_empty_v<sc::hazard_pointer_obj_base<HpTwo>>);
  static_assert(std::is_empty_v<sc::rcu_obj_base<RcuTwo>>);
  static_assert(sizeof(HpTwo) == sizeof(TwoWords));
  static_assert(sizeof(RcuTwo) == sizeof(TwoWords));
  static_assert(sizeof(FreeFn) == sizeof(TwoWords), "a stateful deleter adds no bytes either");
  static_assert(sizeof(OneChar) == 1);
  static_assert(sizeof(Config) == sizeof(Payload) + 12 * sizeof(uint64_t));
  static_assert(std::is_trivially_copyable_v<HpTwo> && std::is_trivially_copyable_v<RcuTwo>);
  EXPECT_EQ(sizeof(HpTwo), 16u);
  // And the stateful deleter still runs, with its state.
  expect_all_reclaimed("start");
  FreeFn* f = make<FreeFn>();
  f->retire(&free_fn);
  expect_all_reclaimed("function-pointer deleter");
}

// ---------------------------------------------------------------- hazard_pointer object

TEST_F(Hazard, EmptyMoveSwapAndDestruction) {
  sc::hazard_pointer e;
  EXPECT_TRUE(e.empty());
  sc::hazard_pointer h = sc::make_hazard_pointer();
  EXPECT_FALSE(h.empty());

  sc::hazard_pointer m(std::move(h));  // move construction empties the source
  EXPECT_TRUE(h.empty());
  EXPECT_FALSE(m.empty());

  e = std::move(m);  // move assignment into an empty one
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(e.empty());

  auto& self = e;
  e = std::move(self);  // self-move: no effect
  EXPECT_FALSE(e.empty());

  sc::hazard_pointer f;
  e.swap(f);
  EXPECT_TRUE(e.empty());
  EXPECT_FALSE(f.empty());
  swap(e, f);  // the non-member swap (ADL)
  EXPECT_FALSE(e.empty());
  EXPECT_TRUE(f.empty());

  {
    sc::hazard_pointer g = sc::make_hazard_pointer();
    e = std::move(g);  // the old index of e is given back
    EXPECT_TRUE(g.empty());
  }
  // 1 index in use (e): 7 more may be made, then the 9th fails.
  std::vector<sc::hazard_pointer> more;
  for (int i = 0; i < 7; ++i) more.push_back(sc::make_hazard_pointer());
  EXPECT_THROW((void)sc::make_hazard_pointer(), sc::hazard_pointer_exhausted);
  more.clear();
  e = sc::hazard_pointer();  // moving an empty one in gives e's index back
  EXPECT_TRUE(e.empty());
  // With no hazard pointer left the thread is outside any region: a barrier may run.
  wfmm_barrier();
}

TEST_F(Hazard, NinthThrowsBadAllocWithAClearMessage) {
  std::vector<sc::hazard_pointer> hs;
  for (int i = 0; i < WFMM_PROTECT_SLOTS; ++i) hs.push_back(sc::make_hazard_pointer());
  try {
    sc::hazard_pointer extra = sc::make_hazard_pointer();
    ADD_FAILURE() << "the 9th make_hazard_pointer() succeeded";
  } catch (const std::bad_alloc& e) {  // what std::make_hazard_pointer may throw
    EXPECT_NE(std::strstr(e.what(), "WFMM_PROTECT_SLOTS (8)"), nullptr) << e.what();
    EXPECT_NE(dynamic_cast<const sc::hazard_pointer_exhausted*>(&e), nullptr);
  }
  hs.pop_back();
  EXPECT_NO_THROW(hs.push_back(sc::make_hazard_pointer()));
  // Each thread has its own 8.
  std::thread([] {
    std::vector<sc::hazard_pointer> mine;
    for (int i = 0; i < WFMM_PROTECT_SLOTS; ++i) mine.push_back(sc::make_hazard_pointer());
    for (auto& h : mine)
      if (h.empty()) g_fail.add("another thread's hazard pointers are separate");
  }).join();
  RT_EXPECT_NO_FAILURES();
}

TEST(HazardDeathTest, MisuseDiesWithAMessage) {
  // Uncaught (gtest would catch it inside EXPECT_DEATH itself, hence the noexcept lambda):
  // std::terminate prints the type and what().
  EXPECT_DEATH(([]() noexcept {
                 std::vector<sc::hazard_pointer> hs;
                 for (int i = 0; i < WFMM_PROTECT_SLOTS + 1; ++i)
                   hs.push_back(sc::make_hazard_pointer());
               }()),
               "hazard_pointer_exhausted(.|\n)*WFMM_PROTECT_SLOTS \\(8\\)");
  std::atomic<Config*> src{nullptr};
  EXPECT_DEATH(
      {
        sc::hazard_pointer h;
        (void)h.protect(src);
      },
      "protect on an empty hazard_pointer");
  EXPECT_DEATH(
      {
        sc::hazard_pointer h = sc::make_hazard_pointer();
        std::thread([&] { (void)h.protect(src); }).join();
      },
      "made by another thread");
  EXPECT_DEATH(
      {
        auto* h = new sc::hazard_pointer(sc::make_hazard_pointer());
        std::thread([h] { delete h; }).join();
      },
      "destruction on a hazard_pointer made by another thread");
  // A live hazard pointer keeps the thread in a region: blocking calls are refused.
  EXPECT_DEATH(
      {
        sc::hazard_pointer h = sc::make_hazard_pointer();
        sc::rcu_barrier();
      },
      "wfmm: barrier.*inside a region");
}

// ---------------------------------------------------------------- protection semantics

TEST_F(Hazard, ProtectAndTryProtectReturnTheSource) {
  Config* a = make<Config>(1);
  Config* b = make<Config>(2);
  std::atomic<Config*> src{a};
  std::atomic<Config*> nul{nullptr};
  {
    sc::hazard_pointer h = sc::make_hazard_pointer();
    EXPECT_EQ(h.protect(src), a);
    EXPECT_EQ(h.protect(nul), nullptr);
    Config* p = a;
    EXPECT_TRUE(h.try_protect(p, src));
    EXPECT_EQ(p, a);
    p = b;
    EXPECT_FALSE(h.try_protect(p, src));
    EXPECT_EQ(p, a) << "a failed try_protect stores src's value in ptr";
    src.store(nullptr);
    EXPECT_FALSE(h.try_protect(p, src));
    EXPECT_EQ(p, nullptr);
    h.reset_protection(b);
    h.reset_protection(static_cast<const Config*>(nullptr));
    h.reset_protection();
  }
  destroy_now(a);
  destroy_now(b);
}

namespace {
// Retires p from another thread, churns retirements there so batches move, and checks that
// p survives while the caller holds it.
void retire_elsewhere_and_check(Config* p, const char* how) {
  const uint64_t d0 = g_config_dtors.load();
  std::thread([p] {
    p->pl.mark_unlinked();
    p->retire();
    for (int i = 0; i < 3000; ++i) wfmm_retire(wfmm_malloc(40));
    wfmm_flush();
  }).join();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(g_config_dtors.load(), d0) << how << ": reclaimed while held";
  EXPECT_EQ(p->problem(), "") << how;
}
}  // namespace

TEST_F(Hazard, ProtectionHoldsAgainstRetire) {
  g_config_dtors = 0;
  std::atomic<Config*> src{make<Config>(10)};
  {
    sc::hazard_pointer h = sc::make_hazard_pointer();
    Config* p = h.protect(src);
    src.store(nullptr);
    retire_elsewhere_and_check(p, "protect");
  }
  expect_all_reclaimed("after the hazard pointer went");
  EXPECT_EQ(g_config_dtors.load(), 1u);
}

TEST_F(Hazard, ProtectionHoldsAcrossMovesAndSwaps) {
  g_config_dtors = 0;
  std::atomic<Config*> src{make<Config>(11)};
  {
    sc::hazard_pointer h = sc::make_hazard_pointer();
    Config* p = h.protect(src);
    sc::hazard_pointer moved(std::move(h));
    sc::hazard_pointer swapped;
    swapped.swap(moved);
    src.store(nullptr);
    retire_elsewhere_and_check(p, "moved and swapped");
  }
  expect_all_reclaimed("after");
  EXPECT_EQ(g_config_dtors.load(), 1u);
}

TEST_F(Hazard, ResetProtectionHoldsALivePointer) {
  g_config_dtors = 0;
  Config* x = make<Config>(12);  // live, not yet retired: reset_protection(x) is enough
  {
    sc::hazard_pointer h = sc::make_hazard_pointer();
    h.reset_protection(x);
    retire_elsewhere_and_check(x, "reset_protection(ptr)");
  }
  expect_all_reclaimed("after");
  EXPECT_EQ(g_config_dtors.load(), 1u);
}

TEST_F(Hazard, ResetProtectionHandsOverAProtectedPointer) {
  g_config_dtors = 0;
  std::atomic<Config*> src{make<Config>(13)};
  sc::hazard_pointer keeper = sc::make_hazard_pointer();
  {
    sc::hazard_pointer first = sc::make_hazard_pointer();
    Config* p = first.protect(src);
    keeper.reset_protection(p);  // p is protected by `first` while `keeper` takes it over
    first.reset_protection();
    src.store(nullptr);
    retire_elsewhere_and_check(p, "hand-over");
  }
  keeper = sc::hazard_pointer();
  expect_all_reclaimed("after");
  EXPECT_EQ(g_config_dtors.load(), 1u);
}

TEST_F(Hazard, EightHazardPointersHoldEightObjects) {
  g_config_dtors = 0;
  std::atomic<Config*> srcs[WFMM_PROTECT_SLOTS];
  for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) srcs[i].store(make<Config>(100 + i));
  {
    std::vector<sc::hazard_pointer> hs;
    std::vector<Config*> held;
    for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) {
      hs.push_back(sc::make_hazard_pointer());
      held.push_back(hs.back().protect(srcs[i]));
    }
    std::thread([&] {
      for (auto& s : srcs) s.exchange(nullptr)->retire();
      for (int i = 0; i < 3000; ++i) wfmm_retire(wfmm_malloc(24));
      wfmm_flush();
    }).join();
    EXPECT_EQ(g_config_dtors.load(), 0u);
    for (unsigned i = 0; i < WFMM_PROTECT_SLOTS; ++i) EXPECT_EQ(held[i]->problem(), "") << i;
  }
  expect_all_reclaimed("after");
  EXPECT_EQ(g_config_dtors.load(), uint64_t(WFMM_PROTECT_SLOTS));
}

// ---------------------------------------------------------------- P2530R3's example

namespace {
std::atomic<Config*> g_config{nullptr};
std::atomic<Counted*> g_counted{nullptr};

// Four ways to read; all must see an intact object with a version no older than the last
// one this reader saw (one writer per object publishes versions in order).
void read_once(int style, sc::hazard_pointer& lived, sc::hazard_pointer& other,
               uint64_t* last_config, uint64_t* last_counted) {
  // Checks, then (every other read) lets the writers run and checks the same object again:
  // it must not change while held. Now and then the reader holds on for a millisecond,
  // longer than a retired object takes to fill a batch and be freed.
  static thread_local uint64_t reads = 0;
  auto check_version = [](uint64_t v, uint64_t* last, const char* what) {
    if (v < *last) g_fail.add(std::string(what) + ": version went backwards");
    *last = v;
  };
  auto linger = [](const auto* p, const char* where) {
    if (++reads % 2 != 0) return;
    if (reads % 256 == 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    else
      std::this_thread::yield();
    intact(p, where);
  };
  switch (style) {
    case 0: {  // a hazard pointer per read, as in the paper
      sc::hazard_pointer h = sc::make_hazard_pointer();
      Config* c = h.protect(g_config);
      if (intact(c, "reader (fresh hazard pointer)"))
        check_version(c->pl.key.load(std::memory_order_relaxed), last_config, "config");
      linger(c, "reader (fresh hazard pointer, again)");
      sc::hazard_pointer h2 = sc::make_hazard_pointer();
      Counted* k = h2.protect(g_counted);
      if (intact(k, "reader (fresh hazard pointer, counted)"))
        check_version(k->pl.key.load(std::memory_order_relaxed), last_counted, "counted");
      linger(k, "reader (fresh hazard pointer, counted, again)");
      break;
    }
    case 1: {  // long-lived hazard pointers, protect again each time
      Config* c = lived.protect(g_config);
      if (intact(c, "reader (long-lived)"))
        check_version(c->pl.key.load(std::memory_order_relaxed), last_config, "config");
      linger(c, "reader (long-lived, again)");
      Counted* k = other.protect(g_counted);
      if (intact(k, "reader (long-lived, counted)"))
        check_version(k->pl.key.load(std::memory_order_relaxed), last_counted, "counted");
      linger(k, "reader (long-lived, counted, again)");
      break;
    }
    case 2: {  // try_protect loop (what std::hazard_pointer::protect is specified as)
      Config* c = g_config.load(std::memory_order_relaxed);
      while (!lived.try_protect(c, g_config)) {
      }
      if (intact(c, "reader (try_protect)"))
        check_version(c->pl.key.load(std::memory_order_relaxed), last_config, "config");
      linger(c, "reader (try_protect, again)");
      break;
    }
    default: {  // protect, then hand over to another hazard pointer and drop the first
      Config* c = other.protect(g_config);
      lived.reset_protection(c);
      other.reset_protection();
      if (intact(c, "reader (hand-over)"))
        check_version(c->pl.key.load(std::memory_order_relaxed), last_config, "config");
      linger(c, "reader (hand-over, again)");
      break;
    }
  }
}
}  // namespace

TEST_F(Hazard, ExampleConfigSwappedWhileReadersRead) {
  g_config_dtors = 0;
  g_counted_deletes = 0;
  g_config.store(make<Config>(1));
  g_counted.store(new Counted(1));
  constexpr int kReaders = 4;
  const auto duration = std::chrono::milliseconds(1200) * g_scale;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, configs{1}, counteds{1};
  StartLine start(kReaders + 2);
  std::vector<std::thread> ts;
  for (int r = 0; r < kReaders; ++r)
    ts.emplace_back([&, r] {
      start.arrive_and_wait();
      sc::hazard_pointer lived = sc::make_hazard_pointer();
      sc::hazard_pointer other = sc::make_hazard_pointer();
      uint64_t last_config = 0, last_counted = 0, n = 0;
      while (!stop.load(std::memory_order_relaxed) && g_fail.count.load() == 0) {
        read_once(int((n + uint64_t(r)) % 4), lived, other, &last_config, &last_counted);
        ++n;
      }
      reads += n;
    });
  ts.emplace_back([&] {  // replaces the configuration (objects from rt::make)
    start.arrive_and_wait();
    uint64_t v = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      Config* old = g_config.exchange(make<Config>(++v));
      old->pl.mark_unlinked();
      old->retire();
      if (v % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    configs += v - 1;
  });
  ts.emplace_back([&] {  // replaces the counted object (class operator new/delete)
    start.arrive_and_wait();
    uint64_t v = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      Counted* old = g_counted.exchange(new Counted(++v));
      old->pl.mark_unlinked();
      old->retire();
      if (v % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    counteds += v - 1;
  });
  std::this_thread::sleep_for(duration);
  stop.store(true);
  for (auto& t : ts) t.join();
  g_config.exchange(nullptr)->retire();
  g_counted.exchange(nullptr)->retire();
  expect_all_reclaimed("example end");
  printf("reads=%llu configs=%llu counted=%llu\n", (unsigned long long)reads.load(),
         (unsigned long long)configs.load(), (unsigned long long)counteds.load());
  EXPECT_EQ(g_config_dtors.load(), configs.load()) << "every retired Config destroyed once";
  EXPECT_EQ(g_counted_deletes.load(), counteds.load())
      << "Counted's own operator delete ran once per object";
  EXPECT_GT(reads.load(), 200u);
  RT_EXPECT_NO_FAILURES();
}

// ---------------------------------------------------------------- batches (P3428R4)

namespace {
using hp_pair = std::array<sc::hazard_pointer, 2>;  // (no comma inside EXPECT_DEATH)

// The calling thread's region nesting (fast.h's view of libwfmm's thread state).
uint32_t region_depth() { return wfmm_thread_v1.depth; }

bool all_empty(std::span<const sc::hazard_pointer> hs) {
  for (const auto& h : hs)
    if (!h.empty()) return false;
  return true;
}
bool none_empty(std::span<const sc::hazard_pointer> hs) {
  for (const auto& h : hs)
    if (h.empty()) return false;
  return true;
}
}  // namespace

TEST_F(Hazard, BatchFillsOnlyEmptyElementsAndClearEmptiesThem) {
  ASSERT_EQ(region_depth(), 0u);
  std::array<sc::hazard_pointer, 4> hp;
  hp[1] = sc::make_hazard_pointer();
  EXPECT_EQ(region_depth(), 1u);
  std::atomic<Config*> src{make<Config>(20)};
  Config* held = hp[1].protect(src);
  sc::make_hazard_pointer_batch(hp);
  EXPECT_TRUE(none_empty(hp));
  EXPECT_EQ(region_depth(), 1u) << "one region level for all of a thread's hazard pointers";
  // hp[1] is unchanged: it still protects what it protected (its index was not handed out
  // again, or the object would be reclaimed below).
  src.store(nullptr);
  retire_elsewhere_and_check(held, "a non-empty element of a batch");
  // Four indexes are held: four more can be made, the ninth cannot.
  std::array<sc::hazard_pointer, 4> more;
  sc::make_hazard_pointer_batch(more);
  EXPECT_TRUE(none_empty(more));
  EXPECT_THROW((void)sc::make_hazard_pointer(), sc::hazard_pointer_exhausted);
  sc::clear_hazard_pointer_batch(more);
  EXPECT_TRUE(all_empty(more));
  sc::make_hazard_pointer_batch(std::span(more).first(2));  // a batch is any span
  EXPECT_TRUE(none_empty(std::span(more).first(2)));
  EXPECT_TRUE(all_empty(std::span(more).last(2)));
  sc::clear_hazard_pointer_batch(more);  // empty elements are skipped
  EXPECT_TRUE(all_empty(more));
  EXPECT_EQ(region_depth(), 1u);
  sc::clear_hazard_pointer_batch(hp);
  EXPECT_TRUE(all_empty(hp));
  EXPECT_EQ(region_depth(), 0u) << "the last hazard pointer cleared leaves the region";
  sc::clear_hazard_pointer_batch(hp);  // clearing an empty batch: no effect
  EXPECT_EQ(region_depth(), 0u);
  sc::make_hazard_pointer_batch(std::span<sc::hazard_pointer>());  // an empty span
  EXPECT_EQ(region_depth(), 0u);
  expect_all_reclaimed("after the batch went");
}

TEST_F(Hazard, BatchIsAllOrNothing) {
  std::vector<sc::hazard_pointer> six;
  for (int i = 0; i < 6; ++i) six.push_back(sc::make_hazard_pointer());
  std::array<sc::hazard_pointer, 3> hp;
  try {
    sc::make_hazard_pointer_batch(hp);
    ADD_FAILURE() << "a batch of 3 was made with 2 indexes free";
  } catch (const std::bad_alloc& e) {
    EXPECT_NE(dynamic_cast<const sc::hazard_pointer_exhausted*>(&e), nullptr);
    EXPECT_NE(std::strstr(e.what(), "make_hazard_pointer(_batch)"), nullptr) << e.what();
  }
  EXPECT_TRUE(all_empty(hp)) << "a failed batch changed its elements";
  // The two free indexes are still free.
  sc::make_hazard_pointer_batch(std::span(hp).first(2));
  EXPECT_TRUE(none_empty(std::span(hp).first(2)));
  EXPECT_THROW((void)sc::make_hazard_pointer(), sc::hazard_pointer_exhausted);
  // Two empty and one non-empty element with no index free: nothing changes either.
  std::array<sc::hazard_pointer, 3> mixed;
  mixed[0] = std::move(six.back());
  six.pop_back();
  EXPECT_THROW(sc::make_hazard_pointer_batch(mixed), sc::hazard_pointer_exhausted);
  EXPECT_FALSE(mixed[0].empty());
  EXPECT_TRUE(mixed[1].empty() && mixed[2].empty());
  sc::clear_hazard_pointer_batch(hp);
  sc::make_hazard_pointer_batch(mixed);  // now 2 are free: exactly enough
  EXPECT_TRUE(none_empty(mixed));
}

TEST(HazardDeathTest, BatchMisuseDiesWithAMessage) {
  EXPECT_DEATH(
      {
        hp_pair hp;
        sc::make_hazard_pointer_batch(hp);
        std::thread([&] { sc::clear_hazard_pointer_batch(hp); }).join();
      },
      "clear_hazard_pointer_batch on a hazard_pointer made by another thread");
  EXPECT_DEATH(
      {
        hp_pair hp;
        sc::make_hazard_pointer_batch(hp);
        sc::rcu_barrier();  // a batch keeps the thread in a region too
      },
      "wfmm: barrier.*inside a region");
}

// Each element protects its object, which another thread then retires (and churns the era
// on) before the next element protects: the elements must hold separate reservations.
TEST_F(Hazard, BatchHoldsItsObjects) {
  g_config_dtors = 0;
  constexpr unsigned kN = 5;
  std::atomic<Config*> srcs[kN];
  for (unsigned i = 0; i < kN; ++i) srcs[i].store(make<Config>(200 + i));
  {
    std::array<sc::hazard_pointer, kN> hp;
    sc::make_hazard_pointer_batch(hp);
    Config* held[kN];
    for (unsigned i = 0; i < kN; ++i) {
      held[i] = hp[i].protect(srcs[i]);
      srcs[i].store(nullptr);
      retire_elsewhere_and_check(held[i], "an element of a batch");
    }
    std::thread([] {
      for (int i = 0; i < 3000; ++i) wfmm_retire(wfmm_malloc(24));
      wfmm_flush();
    }).join();
    EXPECT_EQ(g_config_dtors.load(), 0u) << "an object held by a batch was reclaimed";
    for (unsigned i = 0; i < kN; ++i) EXPECT_EQ(held[i]->problem(), "") << i;
    sc::clear_hazard_pointer_batch(hp);
    expect_all_reclaimed("after the clear");
    EXPECT_EQ(g_config_dtors.load(), uint64_t(kN)) << "cleared: the objects are reclaimed";
  }
}

// 3 readers, each with one batch of 3 made and cleared around every read of 3 shared
// objects (the batch is reused); 1 writer replaces and retires the objects. Every read
// must see intact objects with versions that never go backwards.
TEST_F(Hazard, BatchReusedByReadersWhileAWriterRetires) {
  g_config_dtors = 0;
  constexpr int kSlots = 3, kReaders = 3;
  static std::atomic<Config*> slots[kSlots];
  for (int i = 0; i < kSlots; ++i) slots[i].store(make<Config>(uint64_t(i) << 40));
  const auto duration = std::chrono::milliseconds(600) * g_scale;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> reads{0}, replaced{0};
  StartLine start(kReaders + 1);
  std::vector<std::thread> ts;
  for (int r = 0; r < kReaders; ++r)
    ts.emplace_back([&] {
      start.arrive_and_wait();
      std::array<sc::hazard_pointer, kSlots> hp;
      uint64_t last[kSlots] = {}, n = 0;
      while (!stop.load(std::memory_order_relaxed) && g_fail.count.load() == 0) {
        sc::make_hazard_pointer_batch(hp);
        if (!none_empty(hp)) g_fail.add("a batch left an element empty");
        Config* c[kSlots];
        for (int i = 0; i < kSlots; ++i) {
          c[i] = hp[size_t(i)].protect(slots[i]);
          if (!intact(c[i], "batch reader")) continue;
          const uint64_t v = c[i]->pl.key.load(std::memory_order_relaxed);
          if (v >> 40 != uint64_t(i)) g_fail.add("batch reader: an object of another slot");
          if (v < last[i]) g_fail.add("batch reader: version went backwards");
          last[i] = v;
        }
        if (++n % 4 == 0) std::this_thread::yield();  // let the writer retire what we hold
        for (int i = 0; i < kSlots; ++i) intact(c[i], "batch reader, again");
        sc::clear_hazard_pointer_batch(hp);
        if (!all_empty(hp)) g_fail.add("a cleared batch kept an element");
      }
      reads += n;
    });
  ts.emplace_back([&] {
    start.arrive_and_wait();
    uint64_t v = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const int i = int(++v % kSlots);
      Config* old = slots[i].exchange(make<Config>((uint64_t(i) << 40) | v));
      old->pl.mark_unlinked();
      old->retire();
      if (v % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    replaced += v;
  });
  std::this_thread::sleep_for(duration);
  stop.store(true);
  for (auto& t : ts) t.join();
  for (auto& s : slots) s.exchange(nullptr)->retire();
  expect_all_reclaimed("batch readers end");
  printf("batch reads=%llu replaced=%llu\n", (unsigned long long)reads.load(),
         (unsigned long long)replaced.load());
  EXPECT_EQ(g_config_dtors.load(), replaced.load() + kSlots) << "every Config destroyed once";
  EXPECT_GT(reads.load(), 100u);
  RT_EXPECT_NO_FAILURES();
}
