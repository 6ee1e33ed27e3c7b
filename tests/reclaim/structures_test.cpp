// Lock-free structures under concurrent use on 2, 8 and 16 (oversubscribed) threads, run
// by ctest with WFMM_POISON=1 and again with every slow path forced (WFMM_ERA_FREQ=1,
// WFMM_PROTECT_ATTEMPTS=0, WFMM_BATCH=2). Every node a reader dereferences is checked
// (not poisoned, destructor not run, magic matches key); every value pushed/enqueued is
// taken exactly once; the list's per-key insert/remove counts match what is left. After the
// threads exit and wfmm::barrier(), everything retired is reclaimed.
#include "structures.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "reclaim_util.h"

using namespace rt;
using wfmm_test::Rng;

namespace {

// Total operations over all threads at --scale=1 (the slow-path mode does a quarter: every
// protect there goes through the helped slow path and every allocation ticks the era).
int total_ops() { return (forced_slow() ? 400000 : 1600000) * g_scale; }

class ReclaimStructures : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { g_fail.reset(); }
  void TearDown() override {
    // Runs after the structure's destructor retired what was left in it.
    expect_all_reclaimed(::testing::UnitTest::GetInstance()->current_test_info()->name());
    if (forced_slow()) {
      EXPECT_GT(stats().protect_slow, 0u)
          << "WFMM_PROTECT_ATTEMPTS=0: every protect must take the slow path";
    }
  }
  int threads() const { return GetParam(); }
  int ops_per_thread() const { return std::max(1000, total_ops() / threads()); }
};

// Every key (tid << 32 | seq) for seq < made[tid] must be in `taken` exactly once.
void expect_exactly_once(const std::vector<uint64_t>& taken, const std::vector<uint64_t>& made,
                         const char* what) {
  uint64_t total = 0;
  for (uint64_t m : made) total += m;
  EXPECT_EQ(taken.size(), total) << what << ": values taken vs values put";
  std::vector<std::vector<uint8_t>> seen(made.size());
  for (size_t t = 0; t < made.size(); ++t) seen[t].assign(made[t], 0);
  uint64_t bad = 0, dup = 0;
  for (uint64_t k : taken) {
    uint64_t t = k >> 32, s = k & 0xffffffffu;
    if (t >= made.size() || s >= made[t]) {
      ++bad;
      continue;
    }
    if (seen[t][s]++ != 0) ++dup;
  }
  uint64_t missing = 0;
  for (auto& v : seen)
    for (uint8_t c : v) missing += c == 0;
  EXPECT_EQ(bad, 0u) << what << ": values taken that were never put";
  EXPECT_EQ(dup, 0u) << what << ": values taken twice";
  EXPECT_EQ(missing, 0u) << what << ": values never taken (lost)";
}

}  // namespace

TEST_P(ReclaimStructures, TreiberStack) {
  const int n = threads();
  std::vector<uint64_t> pushed(n, 0);
  std::vector<std::vector<uint64_t>> popped(n);
  std::vector<uint64_t> all;
  {
    TreiberStack stack;
    StartLine start(n);
    std::vector<std::thread> ts;
    for (int t = 0; t < n; ++t) {
      ts.emplace_back([&, t] {
        Rng r(g_seed * 1000 + t);
        start.arrive_and_wait();
        const int ops = ops_per_thread();
        for (int i = 0; i < ops && g_fail.count.load() == 0; ++i) {
          unsigned op = unsigned(r.below(100));
          if (op < 48) {
            stack.push(uint64_t(t) << 32 | pushed[t]++);
          } else if (op < 92) {
            uint64_t k;
            if (stack.pop(&k)) popped[t].push_back(k);
          } else {
            stack.peek2();
          }
        }
      });
    }
    for (auto& th : ts) th.join();
    for (auto& v : popped) all.insert(all.end(), v.begin(), v.end());
    uint64_t k;
    while (stack.pop(&k)) all.push_back(k);
  }
  RT_EXPECT_NO_FAILURES();
  expect_exactly_once(all, pushed, "Treiber stack");
}

TEST_P(ReclaimStructures, MichaelScottQueue) {
  const int n = threads();
  std::vector<uint64_t> enqueued(n, 0);
  std::vector<std::vector<uint64_t>> dequeued(n);
  std::vector<uint64_t> all;
  {
    MsQueue queue;
    StartLine start(n);
    std::vector<std::thread> ts;
    for (int t = 0; t < n; ++t) {
      ts.emplace_back([&, t] {
        Rng r(g_seed * 2000 + t);
        // FIFO per producer: one consumer sees each producer's values in increasing order.
        std::vector<int64_t> last(n, -1);
        start.arrive_and_wait();
        const int ops = ops_per_thread();
        for (int i = 0; i < ops && g_fail.count.load() == 0; ++i) {
          if (r.below(100) < 50) {
            queue.enqueue(uint64_t(t) << 32 | enqueued[t]++);
          } else {
            uint64_t k;
            if (!queue.dequeue(&k)) continue;
            dequeued[t].push_back(k);
            uint64_t p = k >> 32;
            int64_t s = int64_t(k & 0xffffffffu);
            if (p < uint64_t(n)) {
              if (s <= last[p]) g_fail.add("queue: a producer's values dequeued out of order");
              last[p] = s;
            }
          }
        }
      });
    }
    for (auto& th : ts) th.join();
    for (auto& v : dequeued) all.insert(all.end(), v.begin(), v.end());
    uint64_t k;
    while (queue.dequeue(&k)) all.push_back(k);
  }
  RT_EXPECT_NO_FAILURES();
  expect_exactly_once(all, enqueued, "Michael-Scott queue");
}

TEST_P(ReclaimStructures, HarrisMichaelList) {
  const int n = threads();
  constexpr uint64_t kKeys = 128;  // small key range: many conflicts and unlinks
  std::vector<std::vector<int64_t>> net(n, std::vector<int64_t>(kKeys, 0));
  std::vector<int64_t> left(kKeys, 0);
  {
    HarrisMichaelList list;
    StartLine start(n);
    std::vector<std::thread> ts;
    for (int t = 0; t < n; ++t) {
      ts.emplace_back([&, t] {
        Rng r(g_seed * 3000 + t);
        uint64_t uid = uint64_t(t) << 32;
        start.arrive_and_wait();
        const int ops = ops_per_thread();
        for (int i = 0; i < ops && g_fail.count.load() == 0; ++i) {
          uint64_t key = r.below(kKeys);
          unsigned op = unsigned(r.below(100));
          if (op < 40) {
            if (list.insert(key, ++uid)) net[t][key]++;
          } else if (op < 80) {
            if (list.remove(key)) net[t][key]--;
          } else {
            list.contains(key);
          }
        }
      });
    }
    for (auto& th : ts) th.join();
    list.for_each_quiescent([&](uint64_t k) {
      if (k < kKeys)
        left[k]++;
      else
        g_fail.add("list: key out of range at rest");
    });
  }
  RT_EXPECT_NO_FAILURES();
  // Every key: successful inserts - successful removes == 1 if it is still in the list.
  int mismatched = 0;
  for (uint64_t k = 0; k < kKeys; ++k) {
    int64_t sum = 0;
    for (int t = 0; t < n; ++t) sum += net[t][k];
    if (sum != left[k]) {
      if (++mismatched <= 5)
        ADD_FAILURE() << "key " << k << ": inserts - removes = " << sum << " but " << left[k]
                      << " node(s) left in the list";
    }
  }
  EXPECT_EQ(mismatched, 0);
}

INSTANTIATE_TEST_SUITE_P(Threads, ReclaimStructures, ::testing::Values(2, 8, 16),
                         [](const ::testing::TestParamInfo<int>& i) {
                           std::string s = std::to_string(i.param);
                           s.insert(s.begin(), 't');
                           return s;
                         });

// The options the ctest entry asked for are the ones in force (else the run proves less
// than it claims).
TEST(ReclaimOptions, EnvironmentIsApplied) {
  const char* names[][2] = {{"WFMM_POISON", "poison"},
                            {"WFMM_ERA_FREQ", "era_freq"},
                            {"WFMM_PROTECT_ATTEMPTS", "protect_attempts"},
                            {"WFMM_BATCH", "batch"},
                            {"WFMM_COUNT_STEPS", "count_steps"}};
  for (auto& nm : names) {
    const char* env = getenv(nm[0]);
    if (env == nullptr) continue;
    EXPECT_EQ(option(nm[1]), strtol(env, nullptr, 10)) << nm[0] << "=" << env;
  }
}
