// The reclamation benchmark's harness: one configuration per process (see main.cpp).
// run<Reclaimer>(cfg) builds one xenium container on the reclaimer, prefills it, runs the
// workload on cfg.threads threads for cfg.duration seconds (optionally beside a stalled
// reader), stops them all, measures, and tears down.
#pragma once
#include <cassert>

#include <xenium/harris_michael_hash_map.hpp>
#include <xenium/harris_michael_list_based_set.hpp>
#include <xenium/michael_scott_queue.hpp>
#include <xenium/ramalhete_queue.hpp>

#include <wfmm/wfmm.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace rbench {

struct config {
  std::string ds = "map";     // map | set | msq | rq
  std::string scheme = "wfmm";
  std::string mix = "read";   // read: 90% find, 5% insert, 5% erase; write: 50% insert, 50% erase
  int threads = 1;
  std::uint64_t keys = 1000;  // key range (queues: prefill keys/2 items)
  double duration = 1.0;      // seconds
  bool stall = false;         // one extra thread holds a guard (and region) the whole run
  bool region_per_op = true;  // a region_guard around every operation (all schemes alike)
  std::uint64_t seed = 1;
};

struct result {
  std::uint64_t ops = 0;
  double seconds = 0;
  std::int64_t pending = 0;  // nodes retired and not yet destroyed when the workers stopped
  std::int64_t made = 0, gone = 0, chain = 0;
  std::uint64_t wfmm_retired_pending = 0;
  std::uint64_t wfmm_retired = 0, wfmm_reclaimed = 0;
  double peak_rss_mib = 0;
  // Sampled every 10 ms during the run.
  std::int64_t peak_live = 0;  // constructed - destroyed nodes (linked ones included)
  std::uint64_t peak_wfmm_retired_pending = 0, peak_bytes_in_use = 0, peak_bytes_mapped = 0;
  std::uint64_t bytes_in_use = 0, bytes_mapped = 0;  // when the workers stopped
};

// ---- node counting: every node's constructor and destructor, per thread, no sharing.

struct alignas(64) thread_count {
  std::atomic<std::int64_t> made{0}, gone{0}, chain{0};
};
inline thread_count g_counts[512];
inline std::atomic<unsigned> g_count_threads{0};
inline thread_local thread_count* t_count = nullptr;
inline thread_local bool t_teardown = false;  // nodes the container's destructor deletes

inline thread_count& my_count() {
  if (t_count == nullptr) {
    unsigned i = g_count_threads.fetch_add(1, std::memory_order_relaxed);
    if (i >= 512) {
      std::fprintf(stderr, "bench_reclaim: too many threads\n");
      std::abort();
    }
    t_count = &g_counts[i];
  }
  return *t_count;
}
inline void bump(std::atomic<std::int64_t>& c) {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // owner only
}
inline void sum_counts(std::int64_t& made, std::int64_t& gone, std::int64_t& chain) {
  made = gone = chain = 0;
  unsigned n = std::min(g_count_threads.load(), 512u);
  for (unsigned i = 0; i < n; ++i) {
    made += g_counts[i].made.load(std::memory_order_relaxed);
    gone += g_counts[i].gone.load(std::memory_order_relaxed);
    chain += g_counts[i].chain.load(std::memory_order_relaxed);
  }
}

// A reclaimer with the same guards, whose node base counts constructions and destructions.
// Same cost for every scheme (two thread-local increments per node).
template <class R>
struct counted {
  template <class T, std::size_t N = 0, class D = std::default_delete<T>>
  class enable_concurrent_ptr : public R::template enable_concurrent_ptr<T, N, D> {
   protected:
    enable_concurrent_ptr() noexcept { bump(my_count().made); }
    ~enable_concurrent_ptr() noexcept {
      thread_count& c = my_count();
      bump(t_teardown ? c.chain : c.gone);
    }
  };
  using region_guard = typename R::region_guard;
  template <class T, std::size_t N = T::number_of_mark_bits>
  using concurrent_ptr = typename R::template concurrent_ptr<T, N>;
};

inline double peak_rss_mib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  double kib = 0;
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "VmHWM:", 6) == 0) kib = std::atof(line + 6);
  std::fclose(f);
  return kib / 1024.0;
}

struct rng {
  std::uint64_t s;
  explicit rng(std::uint64_t seed) {
    s = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    if (s == 0) s = 1;
  }
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545f4914f6cdd1dull;
  }
  // Lemire's multiply-shift: uniform enough in [0, n) and cheap.
  std::uint64_t below(std::uint64_t n) {
    return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
};

// ---- the containers, each behind one interface the harness drives.

template <class R>
struct map_ds {
  using map_t = xenium::harris_michael_hash_map<std::uint64_t, std::uint64_t, xenium::policy::reclaimer<R>,
                                                xenium::policy::buckets<65536>>;
  map_t c;
  void prefill(std::uint64_t k) { c.emplace(k, k * 3); }
  bool find(std::uint64_t k, std::uint64_t& sink) {
    auto it = c.find(k);
    if (it == c.end()) return false;
    sink += it->second;
    return true;
  }
  bool insert(std::uint64_t k) { return c.emplace(k, k * 3); }
  bool erase(std::uint64_t k) { return c.erase(k); }
};

template <class R>
struct set_ds {
  using set_t = xenium::harris_michael_list_based_set<std::uint64_t, xenium::policy::reclaimer<R>>;
  set_t c;
  void prefill(std::uint64_t k) { c.emplace(k); }
  bool find(std::uint64_t k, std::uint64_t& sink) {
    bool f = c.contains(k);
    sink += f;
    return f;
  }
  bool insert(std::uint64_t k) { return c.emplace(k); }
  bool erase(std::uint64_t k) { return c.erase(k); }
};

template <class R>
struct msq_ds {
  xenium::michael_scott_queue<std::uint64_t, xenium::policy::reclaimer<R>> c;
  void push(std::uint64_t v) { c.push(v); }
  bool pop(std::uint64_t& sink) {
    std::uint64_t v;
    if (!c.try_pop(v)) return false;
    sink += v;
    return true;
  }
};

// Items are fake, never dereferenced pointers (the queue needs pointers; a real allocation per
// item would measure the allocator, not the reclamation of the queue's nodes).
template <class R>
struct rq_ds {
  xenium::ramalhete_queue<std::uint64_t*, xenium::policy::reclaimer<R>> c;
  void push(std::uint64_t v) { c.push(reinterpret_cast<std::uint64_t*>((v + 1) << 4)); }
  bool pop(std::uint64_t& sink) {
    std::uint64_t* p;
    if (!c.try_pop(p)) return false;
    sink += reinterpret_cast<std::uintptr_t>(p);
    return true;
  }
};

// A node outside the measured container that the stalled reader guards.
template <class R>
struct stall_node : R::template enable_concurrent_ptr<stall_node<R>> {
  std::uint64_t payload = 0;
};

template <class DS>
constexpr bool is_queue = requires(DS d, std::uint64_t v) { d.push(v); };

template <class R, class DS>
result run_ds(const config& cfg) {
  using inner = typename R::inner;
  result res;
  auto ds = std::make_unique<DS>();

  // Prefill half the key range (queues: keys/2 items), in a thread of its own: under QSBR a
  // thread that used the container and then idles would hold the epoch back.
  std::thread([&] {
    rng r(cfg.seed * 7919);
    if constexpr (is_queue<DS>) {
      for (std::uint64_t i = 0; i < cfg.keys / 2; ++i) ds->push(i);
    } else {
      std::vector<std::uint64_t> keys(cfg.keys);
      std::iota(keys.begin(), keys.end(), 0);
      for (std::uint64_t i = keys.size(); i > 1; --i) std::swap(keys[i - 1], keys[r.below(i)]);
      keys.resize(cfg.keys / 2);
      // Descending: the sorted list then takes every key at its head.
      std::sort(keys.begin(), keys.end(), std::greater<>());
      for (std::uint64_t k : keys) ds->prefill(k);
    }
  }).join();

  // The stalled reader: holds a guard (and a region where the scheme has them) from before
  // the workers start until after they stop.
  std::mutex mu;
  std::condition_variable cv;
  bool stall_ready = false, stall_release = false;
  std::thread staller;
  using sptr = typename inner::template concurrent_ptr<stall_node<inner>>;
  auto* snode = new stall_node<inner>;
  sptr sroot(snode);
  if (cfg.stall) {
    staller = std::thread([&] {
      [[maybe_unused]] typename inner::region_guard region;
      typename sptr::guard_ptr g;
      g.acquire(sroot, std::memory_order_acquire);
      std::unique_lock<std::mutex> lk(mu);
      stall_ready = true;
      cv.notify_all();
      cv.wait(lk, [&] { return stall_release; });
    });
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return stall_ready; });
  }

  std::atomic<bool> go{false}, stop{false}, exit_now{false};
  std::atomic<int> ready{0}, stopped{0};
  std::vector<std::uint64_t> ops(static_cast<std::size_t>(cfg.threads) * 8, 0);
  std::atomic<std::uint64_t> sink_all{0};
  const unsigned find_pct = cfg.mix == "read" ? 90 : 0;
  const unsigned insert_pct = cfg.mix == "read" ? 5 : 50;

  std::vector<std::thread> workers;
  for (int t = 0; t < cfg.threads; ++t) {
    workers.emplace_back([&, t] {
      rng r(cfg.seed * 1000003 + static_cast<std::uint64_t>(t));
      std::uint64_t n = 0, sink = 0;
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t x = r.next();
        const std::uint64_t k = static_cast<std::uint64_t>((static_cast<unsigned __int128>(x) * cfg.keys) >> 64);
        const unsigned op = static_cast<unsigned>((x & 0xffff) % 100);
        if (cfg.region_per_op) {
          [[maybe_unused]] typename R::region_guard rg;
          if constexpr (is_queue<DS>) {
            if (op < 50) ds->push(k); else ds->pop(sink);
          } else {
            if (op < find_pct) ds->find(k, sink);
            else if (op < find_pct + insert_pct) ds->insert(k);
            else ds->erase(k);
          }
        } else {
          if constexpr (is_queue<DS>) {
            if (op < 50) ds->push(k); else ds->pop(sink);
          } else {
            if (op < find_pct) ds->find(k, sink);
            else if (op < find_pct + insert_pct) ds->insert(k);
            else ds->erase(k);
          }
        }
        ++n;
      }
      ops[static_cast<std::size_t>(t) * 8] = n;
      sink_all.fetch_add(sink, std::memory_order_relaxed);
      stopped.fetch_add(1, std::memory_order_acq_rel);
      while (!exit_now.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
  }
  while (ready.load() != cfg.threads) std::this_thread::yield();
  auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  // Sample every 10 ms while the workers run: peaks of the live-node count and of wfmm's
  // statistics (allocator-wide, so meaningful for every scheme).
  {
    const auto end = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(cfg.duration));
    for (;;) {
      auto now = std::chrono::steady_clock::now();
      if (now >= end) break;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          end - now, std::chrono::milliseconds(10)));
      std::int64_t m, g, c;
      sum_counts(m, g, c);
      res.peak_live = std::max(res.peak_live, m - g);
      wfmm_stats ps;
      wfmm_stats_get(&ps);
      res.peak_wfmm_retired_pending = std::max(res.peak_wfmm_retired_pending, ps.retired_pending);
      res.peak_bytes_in_use = std::max(res.peak_bytes_in_use, ps.bytes_in_use);
      res.peak_bytes_mapped = std::max(res.peak_bytes_mapped, ps.bytes_mapped);
    }
  }
  stop.store(true, std::memory_order_relaxed);
  while (stopped.load(std::memory_order_acquire) != cfg.threads) std::this_thread::yield();
  auto t1 = std::chrono::steady_clock::now();
  res.seconds = std::chrono::duration<double>(t1 - t0).count();
  for (int t = 0; t < cfg.threads; ++t) res.ops += ops[static_cast<std::size_t>(t) * 8];

  // Measure while every worker is stopped but alive and the stalled reader still holds on.
  sum_counts(res.made, res.gone, res.chain);
  wfmm_stats st;
  wfmm_stats_get(&st);
  res.wfmm_retired_pending = st.retired_pending;
  res.wfmm_retired = st.retired;
  res.wfmm_reclaimed = st.reclaimed;
  res.bytes_in_use = st.bytes_in_use;
  res.bytes_mapped = st.bytes_mapped;
  res.peak_rss_mib = peak_rss_mib();

  if (cfg.stall) {
    {
      std::lock_guard<std::mutex> lk(mu);
      stall_release = true;
    }
    cv.notify_all();
    staller.join();
  }
  exit_now.store(true, std::memory_order_release);
  for (auto& w : workers) w.join();

  // The nodes still linked in the container: its destructor deletes them.
  std::int64_t m, g, c0, c1;
  sum_counts(m, g, c0);
  t_teardown = true;
  ds.reset();
  t_teardown = false;
  sum_counts(m, g, c1);
  res.chain = c1 - c0;
  res.pending = res.made - res.gone - res.chain;
  sroot.store(nullptr);
  delete snode;
  if (sink_all.load() == 42) std::fputs("", stderr);
  return res;
}

// R: the scheme as counted<S>; R::inner is S.
template <class S>
struct scheme : counted<S> {
  using inner = S;
};

template <class S>
result run(const config& cfg) {
  using R = scheme<S>;
  if (cfg.ds == "map") return run_ds<R, map_ds<R>>(cfg);
  if (cfg.ds == "set") return run_ds<R, set_ds<R>>(cfg);
  if (cfg.ds == "msq") return run_ds<R, msq_ds<R>>(cfg);
  if (cfg.ds == "rq") return run_ds<R, rq_ds<R>>(cfg);
  std::fprintf(stderr, "bench_reclaim: unknown --ds=%s\n", cfg.ds.c_str());
  std::exit(2);
}

}  // namespace rbench
