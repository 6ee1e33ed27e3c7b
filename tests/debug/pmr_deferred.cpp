// wfmm::pmr::deferred_resource (deallocate retires) for ASan, TSan and valgrind: its blocks
// are wfmm's own (wfmm_malloc), so the tools learn of them from libwfmm (ASan poisoning,
// TSan edges, memcheck client requests in a WFMM_VALGRIND build). `clean`: readers traverse a
// published std::pmr::vector snapshot while a writer replaces and deallocates it, contents
// checked, no report; `uar`: a deallocated block read after wfmm_barrier; `race`: the writer
// changes a published snapshot. The tool must report each.
#include <wfmm/pmr.hpp>
#include <wfmm/reclaim.hpp>
#include <wfmm/wfmm.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory_resource>
#include <thread>
#include <vector>

namespace {

wfmm::pmr::deferred_resource g_res;

struct snapshot {
  long gen;
  long values[14];  // values[i] == gen * 14 + i while published
};

std::atomic<snapshot*> g_cur{nullptr};
std::atomic<bool> g_stop{false};
std::atomic<long> g_bad{0};
bool g_race = false;
std::atomic<int> g_reading{0};  // readers that made their first read
// The newest generation a reader has read (relaxed on both sides: no happens-before edge
// for ThreadSanitizer, so the planted race stays a race).
std::atomic<long> g_seen{0};

snapshot* make(long gen) {
  auto* s = static_cast<snapshot*>(g_res.allocate(sizeof(snapshot), alignof(snapshot)));
  s->gen = gen;
  for (int i = 0; i < 14; ++i) s->values[i] = gen * 14 + i;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "clean";
  if (std::strcmp(mode, "uar") == 0) {
    snapshot* s = make(3);
    snapshot* stale = s;
    g_res.deallocate(s, sizeof(snapshot), alignof(snapshot));  // retired
    wfmm_barrier();                                             // and freed
    std::printf("read after reclaim: %ld\n", stale->values[5]);
    return 0;
  }
  g_race = std::strcmp(mode, "race") == 0;
  long rounds = argc > 2 ? std::atol(argv[2]) : 20000;
  g_cur.store(make(0));
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([] {
      long reads = 0;
      // Bound: until the writer stops (at least 2000 reads, so a planted race has readers).
      while (!g_stop.load() || reads < 2000) {
        wfmm::region reg;
        snapshot* s = wfmm::protect(g_cur, 0);
        for (int i = 0; i < 14; ++i)
          if (s->values[i] != s->gen * 14 + i && !g_race) g_bad.fetch_add(1);
        if (s->gen > g_seen.load(std::memory_order_relaxed))
          g_seen.store(s->gen, std::memory_order_relaxed);
        if (++reads == 1) g_reading.fetch_add(1);
      }
    });
  // The writer waits for every reader's first read: a reader that started only after the
  // last round saw each write ordered before its reads (through g_stop), and in race mode
  // TSan, rightly, reported nothing (under ctest -j2, now and then).
  while (g_reading.load() < int(readers.size())) std::this_thread::yield();
  for (long g = 1; g <= rounds; ++g) {
    snapshot* s = make(g);
    snapshot* old = g_cur.exchange(s);
    if (g_race) s->values[4] = -1;  // planted: a write after publication
    // The first planted write waits until a reader has read that snapshot: readers that were
    // preempted through every round read only after g_stop, which orders every write before
    // their reads (TSan then rightly reports nothing: 1 run in ~50 under ctest -j2).
    // Bound: a reader's next read (readers loop until g_stop).
    if (g_race && g == 1)
      while (g_seen.load(std::memory_order_relaxed) < 1) std::this_thread::yield();
    g_res.deallocate(old, sizeof(snapshot), alignof(snapshot));
  }
  g_stop.store(true);
  for (auto& t : readers) t.join();
  g_res.deallocate(g_cur.load(), sizeof(snapshot), alignof(snapshot));
  wfmm_barrier();
  std::printf("%s: %ld rounds, %ld bad reads\n", mode, rounds, g_bad.load());
  return g_bad.load() == 0 ? 0 : 1;
}
