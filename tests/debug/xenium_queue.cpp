// xenium's michael_scott_queue and concurrent_ptr/guard_ptr under wfmm::xenium_reclaimer, for
// ASan, TSan and valgrind: `clean` runs 2 producers and 2 consumers (every item popped once,
// intact) and must draw no report; `uar` reads a node through a raw pointer after its guard
// reclaimed it and wfmm_barrier freed it; `race` hands item pointers through the queue and
// writes an item after pushing it while its consumer reads it. The tool must report each.
#include <cassert>  // xenium 0.0.2's headers use assert without including it

#include <xenium/michael_scott_queue.hpp>

#include <wfmm/wfmm.h>
#include <wfmm/xenium.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using reclaimer = wfmm::xenium_reclaimer;
using queue = xenium::michael_scott_queue<long, xenium::policy::reclaimer<reclaimer>>;

struct item {
  long key;
  long check;
};
using item_queue = xenium::michael_scott_queue<item*, xenium::policy::reclaimer<reclaimer>>;

struct tnode : reclaimer::enable_concurrent_ptr<tnode> {
  long payload[8];
};
using tptr = reclaimer::concurrent_ptr<tnode>;

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "clean";
  long per = argc > 2 ? std::atol(argv[2]) : 20000;
  if (std::strcmp(mode, "uar") == 0) {
    tptr root(new tnode{});
    tnode* stale;
    {
      tptr::guard_ptr g;
      g.acquire(root);
      stale = g.get();
      root.store(nullptr);
      g.reclaim();  // default deleter: delete, once no region holds it
    }
    wfmm_barrier();
    std::printf("read after reclaim: %ld\n", stale->payload[3]);
    return 0;
  }
  std::atomic<long> bad{0}, popped{0};
  if (std::strcmp(mode, "race") == 0) {
    item_queue q;
    std::thread prod([&] {
      for (long i = 0; i < per; ++i) {
        item* it = new item{i, i * 3};
        q.push(it);
        it->check = -1;  // planted: a write after publication, the consumer reads it
        // Lockstep (relaxed: no happens-before for TSan): were the producer far ahead, the
        // consumer's reads of the queue's tail would order this write before its read, as
        // the C++ memory model says, and the race would go unseen. Bound: one pop.
        while (popped.load(std::memory_order_relaxed) <= i) std::this_thread::yield();
      }
    });
    std::vector<item*> got;
    long sink = 0;
    std::thread cons([&] {
      // Bound: until all per items were popped.
      for (long n = 0; n < per;) {
        item* it;
        if (q.try_pop(it)) {
          sink += it->check;
          popped.store(n + 1, std::memory_order_relaxed);
          got.push_back(it);  // deleted after the joins: the race is the only bug here
          ++n;
        }
      }
    });
    prod.join();
    cons.join();
    for (item* it : got) delete it;
    std::printf("race: %ld items (%ld)\n", per, sink);
    return 0;
  }
  queue q;
  std::vector<std::thread> ts;
  std::atomic<long> sum{0};
  for (int p = 0; p < 2; ++p)
    ts.emplace_back([&, p] {
      for (long i = 1; i <= per; ++i) q.push(p * per + i);
    });
  for (int c = 0; c < 2; ++c)
    ts.emplace_back([&] {
      long last[2] = {0, 0};
      // Bound: until all 2 * per items were popped by the two consumers.
      while (popped.load() < 2 * per) {
        long v;
        if (!q.try_pop(v)) continue;
        int p = int((v - 1) / per);
        if (p < 0 || p > 1 || v <= last[p]) bad.fetch_add(1);  // per-producer order
        last[p < 0 || p > 1 ? 0 : p] = v;
        sum.fetch_add(v);
        popped.fetch_add(1);
      }
    });
  for (auto& t : ts) t.join();
  long n = 2 * per;
  if (sum.load() != n * (n + 1) / 2) bad.fetch_add(1);
  wfmm_barrier();
  std::printf("clean: %ld items, %ld bad\n", n, bad.load());
  return bad.load() == 0 ? 0 : 1;
}
