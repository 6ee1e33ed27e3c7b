// Allocation micro benchmarks through the standard names (malloc/free), so LD_PRELOAD
// picks the allocator: malloc/free pairs, batches, and cross-thread frees, 16 B..64 KiB.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

namespace {

// One block allocated and freed at once: the fast paths and the hot-page case.
void BM_MallocFreePair(benchmark::State& state) {
  size_t n = size_t(state.range(0));
  for (auto _ : state) {
    void* p = malloc(n);
    benchmark::DoNotOptimize(p);
    *static_cast<volatile char*>(p) = 1;
    free(p);
  }
  state.SetItemsProcessed(state.iterations());
}

// 1000 blocks allocated, then freed in allocation order: free lists, page turnover.
void BM_MallocFreeBatch(benchmark::State& state) {
  size_t n = size_t(state.range(0));
  std::vector<void*> ps(1000);
  for (auto _ : state) {
    for (auto& p : ps) {
      p = malloc(n);
      *static_cast<volatile char*>(p) = 1;
    }
    for (auto& p : ps) free(p);
  }
  state.SetItemsProcessed(state.iterations() * int64_t(ps.size()));
}

// The benchmark thread allocates batches; a second thread frees them (all frees remote).
class Remote {
 public:
  static constexpr size_t kRing = 64;
  static constexpr size_t kBatch = 256;
  Remote() : consumer_([this] { run(); }) {}
  ~Remote() {
    stop_.store(true);
    consumer_.join();
  }
  void hand_over(void** batch) {
    size_t h = head_.load(std::memory_order_relaxed);
    while (h - tail_.load(std::memory_order_acquire) >= kRing) std::this_thread::yield();
    ring_[h % kRing] = batch;
    head_.store(h + 1, std::memory_order_release);
  }

 private:
  void run() {
    for (;;) {
      size_t t = tail_.load(std::memory_order_relaxed);
      if (t == head_.load(std::memory_order_acquire)) {
        if (stop_.load()) return;
        std::this_thread::yield();
        continue;
      }
      void** batch = ring_[t % kRing];
      for (size_t i = 0; i < kBatch; ++i) free(batch[i]);
      free(batch);
      tail_.store(t + 1, std::memory_order_release);
    }
  }
  void** ring_[kRing];
  std::atomic<size_t> head_{0}, tail_{0};
  std::atomic<bool> stop_{false};
  std::thread consumer_;
};

void BM_CrossThreadFree(benchmark::State& state) {
  size_t n = size_t(state.range(0));
  Remote remote;
  for (auto _ : state) {
    void** batch = static_cast<void**>(malloc(Remote::kBatch * sizeof(void*)));
    for (size_t i = 0; i < Remote::kBatch; ++i) {
      batch[i] = malloc(n);
      *static_cast<volatile char*>(batch[i]) = 1;
    }
    remote.hand_over(batch);
  }
  state.SetItemsProcessed(state.iterations() * int64_t(Remote::kBatch));
}

}  // namespace

BENCHMARK(BM_MallocFreePair)->RangeMultiplier(4)->Range(16, 64 << 10);
BENCHMARK(BM_MallocFreeBatch)->RangeMultiplier(4)->Range(16, 64 << 10);
BENCHMARK(BM_CrossThreadFree)->RangeMultiplier(4)->Range(16, 64 << 10)->UseRealTime();

BENCHMARK_MAIN();
