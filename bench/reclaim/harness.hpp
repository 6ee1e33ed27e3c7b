// The reclamation benchmark's harness: one configuration per process (see main.cpp).
// run<Reclaimer>(cfg) builds one xenium container on the reclaimer, prefills it, runs the
// workload on cfg.threads threads for cfg.duration seconds (optionally beside a stalled
// reader), samples the retired-but-unreclaimed node count every 10 ms (and a time series
// with cfg.series_ms), stops them all, measures, checks the content, and tears down.
// run_ds<R, DS> is generic: urcu_map.hpp drives liburcu's cds_lfht through it with a scheme
// type that supplies per-thread hooks (register/offline/unregister) and its own stall.
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
  int series_ms = 0;          // > 0: record a time series of unreclaimed nodes every series_ms
};

// One point of the time series (--series=MS).
struct sample {
  double t_ms;                 // since the workers started
  std::int64_t unreclaimed;    // retired - reclaimed, counted by the harness (every scheme)
  std::uint64_t wfmm_pending;  // wfmm_stats.retired_pending (allocator-wide)
  std::uint64_t ops;           // operations completed so far (published every 256 per worker)
  std::uint64_t bytes_in_use;  // wfmm_stats.bytes_in_use
};

struct result {
  std::uint64_t ops = 0;
  double seconds = 0;
  std::int64_t pending = 0;  // nodes retired and not yet destroyed when the workers stopped
  std::int64_t made = 0, gone = 0, chain = 0;
  // Counted at retire and at reclamation (see counting_deleter): exact for every container.
  std::int64_t retired = 0, reclaimed = 0;  // when the workers stopped
  // Unreclaimed nodes (retired - reclaimed) sampled every 10 ms while the workers ran.
  std::int64_t unreclaimed_peak = 0;
  std::uint64_t bad = 0;               // content check failures (must be 0)
  std::int64_t linked_expected = -1;   // prefill + adds - dels (-1: not checkable)
  double unreclaimed_mean = 0;
  std::uint64_t samples = 0;
  std::vector<sample> series;
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
  std::atomic<std::int64_t> retired{0}, reclaimed{0};
};
inline thread_count g_counts[512];
inline std::atomic<unsigned> g_count_threads{0};
inline thread_local thread_count* t_count = nullptr;
inline thread_local bool t_teardown = false;  // nodes the container's destructor deletes
// Content check: values read back that are not what was stored (a map value other than
// key * 3, a popped item outside the pushed range). Must stay 0.
inline thread_local std::uint64_t t_bad = 0;

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
inline void bump(std::atomic<std::int64_t>& c, std::int64_t by = 1) {
  c.store(c.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);  // owner only
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
// Nodes retired and not yet reclaimed, summed over the threads. Reclaimed is read first, so a
// concurrent reading can only overstate (by the reclamations in flight), never go negative.
inline std::int64_t sum_unreclaimed(std::int64_t* retired_out = nullptr,
                                    std::int64_t* reclaimed_out = nullptr) {
  unsigned n = std::min(g_count_threads.load(std::memory_order_acquire), 512u);
  std::int64_t rec = 0, ret = 0;
  for (unsigned i = 0; i < n; ++i) rec += g_counts[i].reclaimed.load(std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_acquire);
  for (unsigned i = 0; i < n; ++i) ret += g_counts[i].retired.load(std::memory_order_relaxed);
  if (retired_out) *retired_out = ret;
  if (reclaimed_out) *reclaimed_out = rec;
  return ret - rec;
}

// Counts retirements and reclamations through the node's deleter type, for every scheme
// alike. A container retires a node with guard_ptr::reclaim(Deleter d = Deleter()): the
// deleter is default-constructed at the retire (+1 retired on the retiring thread). Every
// scheme reclaims a node by default-constructing a deleter and calling it on the node (xenium's
// delete_self, wfmm::xenium_reclaimer's disposer): that construction counts +1 retired too,
// which the call takes back (-1 retired, +1 reclaimed, on the same thread). Nodes a container
// deletes itself (a lost insert race, the container's destructor) never go through the
// deleter. The deleter stays empty, so the node layout is unchanged.
template <class D>
struct counting_deleter {
  counting_deleter() noexcept { bump(my_count().retired); }
  counting_deleter(const counting_deleter&) noexcept = default;
  counting_deleter(counting_deleter&&) noexcept = default;
  counting_deleter& operator=(const counting_deleter&) noexcept = default;
  counting_deleter& operator=(counting_deleter&&) noexcept = default;
  template <class T>
  void operator()(T* p) const noexcept {
    thread_count& c = my_count();
    bump(c.retired, -1);
    bump(c.reclaimed);
    D{}(p);
  }
};

// A reclaimer with the same guards, whose node base counts constructions and destructions.
// Same cost for every scheme (two thread-local increments per node).
template <class R>
struct counted {
  template <class T, std::size_t N = 0, class D = std::default_delete<T>>
  class enable_concurrent_ptr : public R::template enable_concurrent_ptr<T, N, counting_deleter<D>> {
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
    if (it->first != k || it->second != k * 3) ++t_bad;
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
  std::uint64_t limit = ~0ull;  // items pushed are below this (the key range)
  static constexpr int extra_linked = 1;  // the dummy node
  void push(std::uint64_t v) { c.push(v); }
  bool pop(std::uint64_t& sink) {
    std::uint64_t v;
    if (!c.try_pop(v)) return false;
    if (v >= limit) ++t_bad;
    sink += v;
    return true;
  }
};

// Items are fake, never dereferenced pointers (the queue needs pointers; a real allocation per
// item would measure the allocator, not the reclamation of the queue's nodes).
template <class R>
struct rq_ds {
  xenium::ramalhete_queue<std::uint64_t*, xenium::policy::reclaimer<R>> c;
  std::uint64_t limit = ~0ull;
  static constexpr int extra_linked = -1;  // nodes hold 512 items: no exact count to check
  void push(std::uint64_t v) { c.push(reinterpret_cast<std::uint64_t*>((v + 1) << 4)); }
  bool pop(std::uint64_t& sink) {
    std::uint64_t* p;
    if (!c.try_pop(p)) return false;
    const std::uintptr_t w = reinterpret_cast<std::uintptr_t>(p);
    if ((w & 15) != 0 || (w >> 4) == 0 || (w >> 4) - 1 >= limit) ++t_bad;
    sink += w;
    return true;
  }
};

// A node outside the measured container that the stalled reader guards.
template <class R>
struct stall_node : R::template enable_concurrent_ptr<stall_node<R>> {
  std::uint64_t payload = 0;
};

// The stalled reader of a xenium scheme S: a region_guard (where S has regions) and a guard_ptr
// on a node outside the measured container, taken before the workers start and held until
// they have stopped.
template <class S>
struct xenium_stall {
  using sptr = typename S::template concurrent_ptr<stall_node<S>>;
  stall_node<S>* node = new stall_node<S>;
  sptr root{node};
  xenium_stall() = default;
  xenium_stall(const xenium_stall&) = delete;
  xenium_stall& operator=(const xenium_stall&) = delete;
  ~xenium_stall() {
    root.store(nullptr);
    delete node;
  }
  struct hold {
    typename S::region_guard region;  // constructed first, destroyed last
    typename sptr::guard_ptr g;
    explicit hold(xenium_stall& s) { g.acquire(s.root, std::memory_order_acquire); }
  };
};

// Per-thread hooks a scheme may define (liburcu: register, go offline, unregister); the xenium
// schemes need none.
template <class R>
void thread_begin() {
  if constexpr (requires { R::thread_begin(); }) R::thread_begin();
}
template <class R>
void thread_stopped() {
  if constexpr (requires { R::thread_stopped(); }) R::thread_stopped();
}
template <class R>
void thread_end() {
  if constexpr (requires { R::thread_end(); }) R::thread_end();
}

template <class DS>
constexpr bool is_queue = requires(DS d, std::uint64_t v) { d.push(v); };

struct alignas(64) padded_u64 {
  std::atomic<std::uint64_t> v{0};
};

template <class R, class DS>
result run_ds(const config& cfg) {
  result res;
  auto ds = std::make_unique<DS>();
  if constexpr (is_queue<DS>) ds->limit = cfg.keys;

  // Prefill half the key range (queues: keys/2 items), in a thread of its own: under QSBR a
  // thread that used the container and then idles would hold the epoch back.
  std::thread([&] {
    thread_begin<R>();
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
    thread_end<R>();
  }).join();

  // The stalled reader: holds what the scheme's stall::hold takes (a guard and a region; an
  // RCU read-side section) from before the workers start until after they stop.
  std::mutex mu;
  std::condition_variable cv;
  bool stall_ready = false, stall_release = false;
  std::thread staller;
  std::unique_ptr<typename R::stall> st;
  if (cfg.stall) {
    st = std::make_unique<typename R::stall>();
    staller = std::thread([&] {
      thread_begin<R>();
      {
        typename R::stall::hold h(*st);
        std::unique_lock<std::mutex> lk(mu);
        stall_ready = true;
        cv.notify_all();
        cv.wait(lk, [&] { return stall_release; });
      }
      thread_end<R>();
    });
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return stall_ready; });
  }

  std::atomic<bool> go{false}, stop{false}, exit_now{false};
  std::atomic<int> ready{0}, stopped{0};
  std::unique_ptr<padded_u64[]> ops(new padded_u64[static_cast<std::size_t>(cfg.threads)]);
  std::atomic<std::uint64_t> sink_all{0}, adds_all{0}, dels_all{0}, bad_all{0};
  const unsigned find_pct = cfg.mix == "read" ? 90 : 0;
  const unsigned insert_pct = cfg.mix == "read" ? 5 : 50;

  std::vector<std::thread> workers;
  for (int t = 0; t < cfg.threads; ++t) {
    workers.emplace_back([&, t] {
      thread_begin<R>();
      rng r(cfg.seed * 1000003 + static_cast<std::uint64_t>(t));
      std::uint64_t n = 0, sink = 0, adds = 0, dels = 0;
      std::atomic<std::uint64_t>& published = ops[t].v;
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      while (!stop.load(std::memory_order_relaxed)) {
        const std::uint64_t x = r.next();
        const std::uint64_t k = static_cast<std::uint64_t>((static_cast<unsigned __int128>(x) * cfg.keys) >> 64);
        const unsigned op = static_cast<unsigned>((x & 0xffff) % 100);
        // adds: successful inserts (pushes); dels: successful erases (pops).
        auto one = [&] {
          if constexpr (is_queue<DS>) {
            if (op < 50) {
              ds->push(k);
              ++adds;
            } else {
              dels += ds->pop(sink);
            }
          } else {
            if (op < find_pct) ds->find(k, sink);
            else if (op < find_pct + insert_pct) adds += ds->insert(k);
            else dels += ds->erase(k);
          }
        };
        if (cfg.region_per_op) {
          [[maybe_unused]] typename R::region_guard rg;
          one();
        } else {
          one();
        }
        ++n;
        if ((n & 255) == 0) published.store(n, std::memory_order_relaxed);
      }
      published.store(n, std::memory_order_relaxed);
      sink_all.fetch_add(sink, std::memory_order_relaxed);
      adds_all.fetch_add(adds, std::memory_order_relaxed);
      dels_all.fetch_add(dels, std::memory_order_relaxed);
      bad_all.fetch_add(t_bad, std::memory_order_relaxed);
      thread_stopped<R>();
      stopped.fetch_add(1, std::memory_order_acq_rel);
      while (!exit_now.load(std::memory_order_acquire)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      thread_end<R>();
    });
  }
  while (ready.load() != cfg.threads) std::this_thread::yield();
  auto t0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  // Sample every 10 ms while the workers run: the unreclaimed-node count (mean and peak), the
  // live-node count and wfmm's statistics (allocator-wide, so meaningful for every scheme);
  // every series_ms also a point of the time series.
  {
    const auto end = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(cfg.duration));
    const auto period = std::chrono::milliseconds(
        cfg.series_ms > 0 ? std::min(10, cfg.series_ms) : 10);
    double next_series = cfg.series_ms;
    double sum = 0;
    for (;;) {
      auto now = std::chrono::steady_clock::now();
      if (now >= end) break;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(end - now, period));
      const std::int64_t unrec = sum_unreclaimed();
      std::int64_t m, g, c;
      sum_counts(m, g, c);
      res.peak_live = std::max(res.peak_live, m - g);
      wfmm_stats ps;
      wfmm_stats_get(&ps);
      res.peak_wfmm_retired_pending = std::max(res.peak_wfmm_retired_pending, ps.retired_pending);
      res.peak_bytes_in_use = std::max(res.peak_bytes_in_use, ps.bytes_in_use);
      res.peak_bytes_mapped = std::max(res.peak_bytes_mapped, ps.bytes_mapped);
      res.unreclaimed_peak = std::max(res.unreclaimed_peak, unrec);
      sum += static_cast<double>(unrec);
      ++res.samples;
      if (cfg.series_ms > 0) {
        const double t_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (t_ms + 0.5 >= next_series) {
          std::uint64_t done = 0;
          for (int t = 0; t < cfg.threads; ++t) done += ops[t].v.load(std::memory_order_relaxed);
          res.series.push_back({t_ms, unrec, ps.retired_pending, done, ps.bytes_in_use});
          while (next_series <= t_ms + 0.5) next_series += cfg.series_ms;
        }
      }
    }
    res.unreclaimed_mean = res.samples ? sum / static_cast<double>(res.samples) : 0.0;
  }
  stop.store(true, std::memory_order_relaxed);
  while (stopped.load(std::memory_order_acquire) != cfg.threads) std::this_thread::yield();
  auto t1 = std::chrono::steady_clock::now();
  res.seconds = std::chrono::duration<double>(t1 - t0).count();
  for (int t = 0; t < cfg.threads; ++t) res.ops += ops[t].v.load(std::memory_order_relaxed);

  // Measure while every worker is stopped but alive and the stalled reader still holds on.
  // A scheme with its own reclaiming thread (liburcu's call_rcu worker) may still be running
  // deleters: take the counters only once two readings 1 ms apart agree (at most 200 tries),
  // so the accounting check compares one moment with itself.
  for (int tries = 0; tries < 200; ++tries) {
    std::int64_t m0, g0, c0, ret0, rec0;
    sum_counts(m0, g0, c0);
    std::int64_t p0 = sum_unreclaimed(&ret0, &rec0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    sum_counts(res.made, res.gone, res.chain);
    res.pending = sum_unreclaimed(&res.retired, &res.reclaimed);
    if (m0 == res.made && g0 == res.gone && c0 == res.chain && p0 == res.pending &&
        ret0 == res.retired)
      break;
  }
  wfmm_stats st_now;
  wfmm_stats_get(&st_now);
  res.wfmm_retired_pending = st_now.retired_pending;
  res.wfmm_retired = st_now.retired;
  res.wfmm_reclaimed = st_now.reclaimed;
  res.bytes_in_use = st_now.bytes_in_use;
  res.bytes_mapped = st_now.bytes_mapped;
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
  thread_begin<R>();
  t_teardown = true;
  ds.reset();
  t_teardown = false;
  thread_end<R>();
  sum_counts(m, g, c1);
  res.chain = c1 - c0;
  res.bad = bad_all.load();
  // The content check on the structure: nodes the container's destructor found linked.
  std::int64_t expect = -1;
  if constexpr (is_queue<DS>) {
    if (DS::extra_linked >= 0)
      expect = static_cast<std::int64_t>(cfg.keys / 2 + adds_all.load() - dels_all.load()) + DS::extra_linked;
  } else {
    expect = static_cast<std::int64_t>(cfg.keys / 2 + adds_all.load() - dels_all.load());
  }
  res.linked_expected = expect;
  st.reset();
  if constexpr (requires { R::drain(); }) R::drain();  // liburcu: rcu_barrier
  if (sink_all.load() == 42) std::fputs("", stderr);
  return res;
}

// R: the scheme as counted<S>; R::inner is S.
template <class S>
struct scheme : counted<S> {
  using inner = S;
  using stall = xenium_stall<S>;
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
