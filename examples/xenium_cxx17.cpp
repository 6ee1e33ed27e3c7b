// xenium's michael_scott_queue on wfmm::xenium_reclaimer from a C++17 program.
// Build: g++ -std=c++17 xenium_cxx17.cpp -lwfmm -pthread  (Debian: apt install libxenium-dev)
#include <cassert>  // xenium 0.0.2's headers need it first
#include <xenium/michael_scott_queue.hpp>
#include <wfmm/xenium.hpp>

#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

using queue = xenium::michael_scott_queue<long, xenium::policy::reclaimer<wfmm::xenium_reclaimer>>;

int main() {
  queue q;
  constexpr long kPerThread = 50000;
  std::atomic<long> sum{0}, popped{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&, t] {
      for (long i = 1; i <= kPerThread; ++i) {
        q.push(t * kPerThread + i);  // unlinked nodes are retired to wfmm by try_pop
        long v;
        if (q.try_pop(v)) sum += v, ++popped;
      }
    });
  for (auto& th : ts) th.join();
  long v;
  while (q.try_pop(v)) sum += v, ++popped;
  const long n = 2 * kPerThread;
  std::printf("xenium C++17 example: %ld items popped\n", popped.load());
  return popped.load() == n && sum.load() == n * (n + 1) / 2 ? 0 : 1;
}
