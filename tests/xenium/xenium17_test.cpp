// wfmm::xenium_reclaimer from a C++17 program (xenium is a C++17 library; this target is
// built with CXX_STANDARD 17 and no test framework). 4 threads run a michael_scott_queue
// (every item popped exactly once, intact, in each producer's order) and a
// harris_michael_hash_map (disjoint key ranges with a model; finds check values' checksums);
// then every retired node must be reclaimed and every value destroyed.
//
// usage: wfmm_xenium17_test [--ms=N]   (N: milliseconds for the map phase; 500)
#include <cassert>  // xenium 0.0.2's headers need it first

#include <xenium/harris_michael_hash_map.hpp>
#include <xenium/michael_scott_queue.hpp>

#include <wfmm/wfmm.h>
#include <wfmm/xenium.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

static_assert(__cplusplus == 201703L, "this test must be compiled as C++17");

namespace {

using rpolicy = xenium::policy::reclaimer<wfmm::xenium_reclaimer>;

constexpr int kThreads = 4;
int g_ms = 500;
std::atomic<long> g_failures{0};

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      g_failures.fetch_add(1);                                                       \
    }                                                                                \
  } while (0)

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

// Values count themselves (every node's deleter must run) and carry a checksum; a
// destroyed value is scribbled over, so a read after reclamation fails its check.
std::atomic<long> g_live{0};

struct value {
  std::uint64_t key;
  std::uint64_t check;
  explicit value(std::uint64_t k = 0) : key(k), check(mix64(k)) { g_live.fetch_add(1); }
  value(const value& o) : key(o.key), check(o.check) { g_live.fetch_add(1); }
  value& operator=(const value&) = default;
  ~value() {
    key = ~std::uint64_t{0};
    check = 0;
    g_live.fetch_sub(1);
  }
  bool ok(std::uint64_t k) const { return key == k && check == mix64(k); }
};

// Runs body(t) on kThreads threads released together.
template <class F>
void run_threads(F body) {
  std::atomic<int> ready{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      body(t);
    });
  for (auto& th : ts) th.join();
}

// Every thread pushes kItems items (id = producer << 32 | seq) and pops as many as it can;
// the rest is drained at the end. Each item is seen once, intact, and each consumer sees a
// producer's items in push order.
void queue_phase() {
  constexpr std::uint64_t kItems = 20000;
  using queue_t = xenium::michael_scott_queue<value, rpolicy>;
  std::vector<std::atomic<unsigned char>> seen(kThreads * kItems);
  for (auto& s : seen) s.store(0);
  auto record = [&](const value& v, std::vector<std::int64_t>& last) {
    const std::uint64_t producer = v.key >> 32, seq = v.key & 0xffffffffu;
    CHECK(v.ok(v.key));
    CHECK(producer < kThreads && seq < kItems);
    if (producer >= kThreads || seq >= kItems) return;
    CHECK(std::int64_t(seq) > last[producer]);  // FIFO per producer
    last[producer] = std::int64_t(seq);
    CHECK(seen[producer * kItems + seq].fetch_add(1) == 0);  // exactly once
  };
  {
    queue_t q;
    run_threads([&](int t) {
      rng r(7 + t);
      std::vector<std::int64_t> last(kThreads, -1);
      for (std::uint64_t i = 0; i < kItems; ++i) {
        q.push(value((std::uint64_t(t) << 32) | i));
        if (r.below(4) != 0) {  // pop three times in four: the queue stays short
          value v(0);
          if (q.try_pop(v)) record(v, last);
        }
      }
    });
    std::vector<std::int64_t> last(kThreads, -1);
    value v(0);
    // Bound: the items left, at most kThreads * kItems.
    while (q.try_pop(v)) record(v, last);
  }
  for (std::size_t i = 0; i < seen.size(); ++i)
    if (seen[i].load() != 1) {
      std::fprintf(stderr, "queue: item %zu seen %d times\n", i, int(seen[i].load()));
      g_failures.fetch_add(1);
      break;
    }
}

// Each thread owns a key range and models it exactly; finds over every range check values.
void map_phase() {
  constexpr std::uint64_t kKeys = 256;  // per thread
  using map_t = xenium::harris_michael_hash_map<std::uint64_t, value, rpolicy,
                                                xenium::policy::buckets<64>>;
  std::vector<std::vector<char>> models(kThreads, std::vector<char>(kKeys, 0));
  map_t map;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(g_ms);
  run_threads([&](int t) {
    rng r(1000 + t);
    std::vector<char>& model = models[t];
    for (std::uint64_t n = 0; (n & 63) != 0 || std::chrono::steady_clock::now() < end; ++n) {
      const std::uint64_t i = r.below(kKeys);
      const std::uint64_t own = std::uint64_t(t) * kKeys + i;
      const unsigned op = unsigned(r.below(100));
      if (op < 35) {
        const std::uint64_t k = r.below(kThreads * kKeys);
        auto it = map.find(k);
        if (it != map.end()) CHECK(it->first == k && it->second.ok(k));
        if (k / kKeys == std::uint64_t(t)) CHECK((it != map.end()) == (model[k % kKeys] != 0));
      } else if (op < 65) {
        CHECK(map.emplace(own, value(own)) == (model[i] == 0));
        model[i] = 1;
      } else if (op < 90) {
        CHECK(map.erase(own) == (model[i] != 0));
        model[i] = 0;
      } else {  // a short walk: iterators hold two guards each
        int steps = 0;
        // Bound: 16 steps.
        for (auto it = map.begin(); it != map.end() && steps < 16; ++it, ++steps)
          CHECK(it->second.ok(it->first));
      }
    }
  });
  std::size_t expected = 0, found = 0;
  for (int t = 0; t < kThreads; ++t)
    for (std::uint64_t i = 0; i < kKeys; ++i) {
      const std::uint64_t k = std::uint64_t(t) * kKeys + i;
      const bool present = map.find(k) != map.end();
      CHECK(present == (models[t][i] != 0));
      expected += models[t][i] != 0;
    }
  for (auto it = map.begin(); it != map.end(); ++it) ++found;
  CHECK(found == expected);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--ms=", 5) == 0) g_ms = std::atoi(argv[i] + 5);
  wfmm_stats before;
  wfmm_stats_get(&before);
  queue_phase();
  map_phase();
  wfmm_barrier();
  wfmm_stats after;
  wfmm_stats_get(&after);
  CHECK(after.retired > before.retired);  // the containers retired through wfmm
  CHECK(after.retired == after.reclaimed);
  CHECK(g_live.load() == 0);              // every node's value destroyed
  std::printf("C++%ld: retired %llu, reclaimed %llu, slow protects %llu, failures %ld\n",
              long(__cplusplus), (unsigned long long)(after.retired - before.retired),
              (unsigned long long)(after.reclaimed - before.reclaimed),
              (unsigned long long)(after.protect_slow - before.protect_slow), g_failures.load());
  return g_failures.load() == 0 ? 0 : 1;
}
