// wfmm::pmr::resource and deferred_resource under std::pmr containers (vector, list,
// unordered_map, string): contents checked after growth, erasure and rehashing; every block
// is a wfmm block; alignment honoured for every power of two up to 64 KiB and for
// over-aligned element types; is_equal semantics and what they do to container moves;
// bad_alloc; deferred deallocation really retires, and release() waits for it; release()
// inside a region is reported (death test).
#include <gtest/gtest.h>
#include <stdint.h>

#include <algorithm>
#include <list>
#include <memory_resource>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "reclaim_util.h"
#include "wfmm/pmr.hpp"

using namespace rt;

namespace {

// The typed suites run every check under both resources.
template <class R>
class PmrContainers : public ::testing::Test {
 protected:
  void SetUp() override { expect_all_reclaimed("test start"); }
  void TearDown() override {
    // Blocks the deferred resource retired are all freed once this thread flushes and
    // waits (no other thread retires here).
    expect_all_reclaimed("test end");
  }
  R res_;
};

using Resources = ::testing::Types<wfmm::pmr::resource, wfmm::pmr::deferred_resource>;
TYPED_TEST_SUITE(PmrContainers, Resources);

// A resource in front of another that records every pointer it hands out, so the tests can
// check each one is a wfmm block (wfmm_usable_size > 0 only for wfmm's blocks) and aligned.
class Recorder : public std::pmr::memory_resource {
 public:
  explicit Recorder(std::pmr::memory_resource* up) : up_(up) {}
  uint64_t allocations = 0;
  uint64_t deallocations = 0;
  uint64_t bad = 0;  // not a wfmm block, too small, or misaligned

 protected:
  void* do_allocate(size_t bytes, size_t align) override {
    void* p = up_->allocate(bytes, align);
    ++allocations;
    if (wfmm_usable_size(p) < (bytes == 0 ? 1 : bytes) || uintptr_t(p) % align != 0) ++bad;
    return p;
  }
  void do_deallocate(void* p, size_t bytes, size_t align) override {
    ++deallocations;
    up_->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }

 private:
  std::pmr::memory_resource* up_;
};

std::pmr::string make_text(uint64_t i) {
  // Long enough to leave the small-string buffer for most i.
  std::pmr::string s;
  s = "item-" + std::to_string(i) + "-" + std::string(size_t(i % 97), char('a' + i % 26));
  return s;
}

}  // namespace

TYPED_TEST(PmrContainers, VectorGrowsAndKeepsItsContents) {
  Recorder rec(&this->res_);
  {
    std::pmr::vector<uint64_t> v(&rec);
    for (uint64_t i = 0; i < 100000; ++i) v.push_back(wfmm_test::mix(i));
    for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], wfmm_test::mix(i)) << i;
    v.resize(10);
    v.shrink_to_fit();
    for (uint64_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], wfmm_test::mix(i)) << i;
    std::pmr::vector<uint64_t> copy(v, &rec);
    EXPECT_EQ(copy, v);
  }
  EXPECT_GT(rec.allocations, 10u);
  EXPECT_EQ(rec.allocations, rec.deallocations);
  EXPECT_EQ(rec.bad, 0u) << "a block that is not wfmm's, too small or misaligned";
}

TYPED_TEST(PmrContainers, ListOfStringsSortsAndErases) {
  Recorder rec(&this->res_);
  {
    std::pmr::list<std::pmr::string> l(&rec);
    for (uint64_t i = 0; i < 5000; ++i) l.push_back(make_text(wfmm_test::mix(i) % 100000));
    // The strings use the list's resource (uses-allocator construction).
    EXPECT_EQ(l.front().get_allocator().resource(), &rec);
    l.sort();
    const std::pmr::string* prev = nullptr;
    for (const auto& s : l) {
      if (prev != nullptr) {
        ASSERT_LE(*prev, s);
      }
      ASSERT_EQ(s.rfind("item-", 0), 0u) << s;
      prev = &s;
    }
    l.remove_if([](const std::pmr::string& s) { return s.size() % 2 == 0; });
    for (const auto& s : l) ASSERT_EQ(s.size() % 2, 1u);
  }
  EXPECT_EQ(rec.allocations, rec.deallocations);
  EXPECT_EQ(rec.bad, 0u);
}

TYPED_TEST(PmrContainers, UnorderedMapSurvivesRehashAndErase) {
  Recorder rec(&this->res_);
  {
    std::pmr::unordered_map<std::pmr::string, std::pmr::vector<uint64_t>> m(&rec);
    constexpr uint64_t kN = 4000;
    for (uint64_t i = 0; i < kN; ++i) {
      auto& v = m[make_text(i)];
      for (uint64_t j = 0; j <= i % 17; ++j) v.push_back(i * 1000 + j);
    }
    ASSERT_EQ(m.size(), kN);
    m.rehash(4 * kN);
    for (uint64_t i = 0; i < kN; i += 2) ASSERT_EQ(m.erase(make_text(i)), 1u);
    m.rehash(0);
    ASSERT_EQ(m.size(), kN / 2);
    for (uint64_t i = 1; i < kN; i += 2) {
      auto it = m.find(make_text(i));
      ASSERT_NE(it, m.end()) << i;
      ASSERT_EQ(it->second.size(), i % 17 + 1);
      for (uint64_t j = 0; j < it->second.size(); ++j) ASSERT_EQ(it->second[j], i * 1000 + j);
      EXPECT_EQ(it->second.get_allocator().resource(), &rec);
    }
  }
  EXPECT_EQ(rec.allocations, rec.deallocations);
  EXPECT_EQ(rec.bad, 0u);
}

TYPED_TEST(PmrContainers, StringGrowsThroughSizeClasses) {
  Recorder rec(&this->res_);
  {
    std::pmr::string s(&rec);
    for (size_t i = 0; i < 300000; ++i) s.push_back(char('A' + (i * 7) % 26));
    for (size_t i = 0; i < s.size(); ++i) ASSERT_EQ(s[i], char('A' + (i * 7) % 26)) << i;
    s.erase(100, 299000);
    ASSERT_EQ(s.size(), 1000u);
    s.shrink_to_fit();
    for (size_t i = 0; i < 100; ++i) ASSERT_EQ(s[i], char('A' + (i * 7) % 26));
    for (size_t i = 100; i < 1000; ++i) ASSERT_EQ(s[i], char('A' + ((i + 299000) * 7) % 26));
  }
  EXPECT_EQ(rec.allocations, rec.deallocations);
  EXPECT_EQ(rec.bad, 0u);
}

namespace {
template <size_t A>
struct alignas(A) Wide {
  uint64_t v[A >= 8 ? 3 : 1];
};
}  // namespace

TYPED_TEST(PmrContainers, OverAlignedElementsAreAligned) {
  auto check = [&](auto tag) {
    using W = decltype(tag);
    std::pmr::vector<W> v(&this->res_);
    for (int round = 0; round < 40; ++round) {
      v.emplace_back();
      v.back().v[0] = uint64_t(round);
      ASSERT_EQ(uintptr_t(v.data()) % alignof(W), 0u) << "alignof " << alignof(W);
    }
    for (int round = 0; round < 40; ++round) ASSERT_EQ(v[size_t(round)].v[0], uint64_t(round));
    std::pmr::list<W> l(&this->res_);
    for (int i = 0; i < 20; ++i) {
      l.emplace_back();
      ASSERT_EQ(uintptr_t(&l.back()) % alignof(W), 0u) << "list node, alignof " << alignof(W);
    }
  };
  check(Wide<32>{});
  check(Wide<64>{});
  check(Wide<256>{});
  check(Wide<4096>{});
}

TYPED_TEST(PmrContainers, EveryAlignmentAndSize) {
  std::pmr::memory_resource& r = this->res_;
  for (size_t align = 1; align <= 65536; align *= 2) {
    for (size_t size : {size_t(0), size_t(1), align - 1, align, align + 1, 3 * align + 5,
                        size_t(100000)}) {
      void* p = r.allocate(size, align);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(uintptr_t(p) % align, 0u) << "align " << align << " size " << size;
      ASSERT_GE(wfmm_usable_size(p), size) << "align " << align << " size " << size;
      wfmm_test::fill(p, size, uintptr_t(p) ^ size);
      ASSERT_TRUE(wfmm_test::check(p, size, uintptr_t(p) ^ size));
      r.deallocate(p, size, align);
    }
  }
}

TYPED_TEST(PmrContainers, OutOfMemoryThrowsBadAlloc) {
  std::pmr::memory_resource& r = this->res_;
  EXPECT_THROW((void)r.allocate(size_t(1) << 62, 16), std::bad_alloc);
  EXPECT_THROW((void)r.allocate(size_t(1) << 62, 4096), std::bad_alloc);
  std::pmr::vector<char> v(&this->res_);
  EXPECT_THROW(v.reserve(size_t(1) << 60), std::bad_alloc);
  // Still usable afterwards.
  v.assign(1000, 'x');
  EXPECT_EQ(std::count(v.begin(), v.end(), 'x'), 1000);
}

// ---------------------------------------------------------------- is_equal

TEST(PmrEquality, ResourcesAreEqualAmongThemselvesOnly) {
  wfmm::pmr::resource a, b;
  wfmm::pmr::deferred_resource c, d;
  EXPECT_TRUE(a.is_equal(b));
  EXPECT_TRUE(b.is_equal(a));
  EXPECT_TRUE(a == b);
  EXPECT_TRUE(c.is_equal(d));
  EXPECT_TRUE(d.is_equal(c));
  EXPECT_TRUE(c == c);
  EXPECT_FALSE(a.is_equal(c)) << "a resource would free at once what deferred retires";
  EXPECT_FALSE(c.is_equal(a));
  EXPECT_FALSE(a == *std::pmr::new_delete_resource());
  EXPECT_FALSE(c.is_equal(*std::pmr::new_delete_resource()));
  EXPECT_FALSE(std::pmr::new_delete_resource()->is_equal(a));
  std::pmr::monotonic_buffer_resource mono(&a);
  EXPECT_FALSE(a.is_equal(mono));
  EXPECT_FALSE(mono.is_equal(a));
  // Memory from one resource may go back through an equal one.
  void* p = a.allocate(100, 8);
  b.deallocate(p, 100, 8);
  void* q = c.allocate(100, 64);
  d.deallocate(q, 100, 64);
  expect_all_reclaimed("cross-instance deallocate");
}

TEST(PmrEquality, EqualResourcesLetContainersStealStorage) {
  wfmm::pmr::resource a, b;
  wfmm::pmr::deferred_resource c, d;
  {
    std::pmr::vector<int> v1({1, 2, 3, 4}, &a);
    const int* data = v1.data();
    std::pmr::vector<int> v2(std::move(v1), &b);  // equal: the buffer moves
    EXPECT_EQ(v2.data(), data);
    std::pmr::vector<int> v3(std::move(v2), &c);  // unequal: elements are copied
    EXPECT_NE(v3.data(), data);
    EXPECT_EQ(v3, (std::pmr::vector<int>{1, 2, 3, 4}));
    std::pmr::vector<int> v4(std::move(v3), &d);  // deferred to deferred: equal again
    EXPECT_EQ(v4, (std::pmr::vector<int>{1, 2, 3, 4}));
    std::pmr::list<int> l1({5, 6}, &a), l2({7}, &b);
    l1.splice(l1.end(), l2);  // splicing needs equal allocators
    EXPECT_EQ(l1, (std::pmr::list<int>{5, 6, 7}));
  }
  expect_all_reclaimed("moves");
}

// ---------------------------------------------------------------- deferred behaviour

TEST(PmrDeferred, DeallocateRetiresAndReleaseFreesEverything) {
  expect_all_reclaimed("start");
  wfmm::pmr::deferred_resource dres;
  Recorder rec(&dres);
  const wfmm_stats s0 = stats();
  {
    std::pmr::vector<std::pmr::string> v(&rec);
    for (uint64_t i = 0; i < 500; ++i) v.push_back(make_text(i + 100));
  }
  const wfmm_stats s1 = stats();
  EXPECT_GT(rec.deallocations, 400u);
  EXPECT_EQ(s1.retired - s0.retired, rec.deallocations) << "every deallocate retires";
  dres.release();
  const wfmm_stats s2 = stats();
  EXPECT_EQ(s2.retired, s2.reclaimed);
  EXPECT_EQ(s2.retired_pending, 0u);
}

TEST(PmrDeferred, ABlockHeldByAReaderOutlivesDeallocate) {
  expect_all_reclaimed("start");
  wfmm::pmr::deferred_resource dres;
  std::pmr::polymorphic_allocator<uint64_t> alloc(&dres);
  uint64_t* block = alloc.allocate(8);
  for (int i = 0; i < 8; ++i) block[i] = wfmm_test::mix(uint64_t(i));
  std::atomic<uint64_t*> root{block};
  std::atomic<int> phase{0};
  // A reader protects the block, then waits while the main thread unlinks, deallocates and
  // churns retirements from other threads; the block must keep its contents.
  std::thread reader([&] {
    wfmm::region r;
    uint64_t* p = wfmm::protect(root, 0);
    phase.store(1);
    while (phase.load() != 2) std::this_thread::yield();
    for (int i = 0; i < 8; ++i)
      if (p[i] != wfmm_test::mix(uint64_t(i))) g_fail.add("deferred block changed under a reader");
  });
  while (phase.load() != 1) std::this_thread::yield();
  root.store(nullptr);
  alloc.deallocate(block, 8);
  wfmm_flush();
  std::thread([&] {
    // Not a resource of its own: its destructor would wait for the reader.
    for (int i = 0; i < 5000; ++i) dres.deallocate(dres.allocate(48), 48);
    wfmm_flush();
  }).join();
  const wfmm_stats s = stats();
  EXPECT_GE(s.retired_pending, 1u) << "the protected block was freed";
  phase.store(2);
  reader.join();
  dres.release();
  const wfmm_stats s2 = stats();
  EXPECT_EQ(s2.retired, s2.reclaimed);
  RT_EXPECT_NO_FAILURES();
}

TEST(PmrDeferredDeathTest, ReleaseInsideARegionIsReported) {
  EXPECT_DEATH(
      {
        wfmm::pmr::deferred_resource dres;
        wfmm::region r;
        dres.release();
      },
      "wfmm: barrier.*inside a region");
}
