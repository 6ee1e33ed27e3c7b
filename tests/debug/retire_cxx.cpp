// A C++ program on wfmm::region / wfmm::protect / wfmm::retire (a Treiber stack), for ASan,
// TSan and valgrind: `clean` pushes and pops on 4 threads with content checks and must draw
// no report; `uar` reads a popped node after its reclamation; `race` writes a pushed node's
// payload after publishing it while other threads read it. The tool must report each.
#include <wfmm/reclaim.hpp>
#include <wfmm/wfmm.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

struct node {
  long key;
  long payload[6];  // payload[i] == key * 6 + i while the node is reachable
  node* next;
  explicit node(long k) : key(k), next(nullptr) {
    for (int i = 0; i < 6; ++i) payload[i] = k * 6 + i;
  }
  ~node() { key = -1; }  // non-trivial: wfmm::retire runs it before the free
  bool ok() const {
    for (int i = 0; i < 6; ++i)
      if (payload[i] != key * 6 + i) return false;
    return true;
  }
};

std::atomic<node*> g_top{nullptr};
std::atomic<long> g_bad{0};
std::atomic<long> g_sink{0};
bool g_race = false;

void push(node* n) {
  n->next = g_top.load(std::memory_order_relaxed);
  // Bound: none in the program (a lock-free stack); the test's threads are few.
  while (!g_top.compare_exchange_weak(n->next, n, std::memory_order_release,
                                      std::memory_order_relaxed)) {
  }
  if (g_race) n->payload[2] = -7;  // planted: a write after publication
}

node* pop() {
  wfmm::region r;
  for (;;) {
    node* n = wfmm::protect(g_top, 0);
    if (n == nullptr) return nullptr;
    if (!n->ok() && !g_race) g_bad.fetch_add(1);
    if (g_top.compare_exchange_weak(n, n->next, std::memory_order_acquire)) return n;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "clean";
  if (std::strcmp(mode, "uar") == 0) {
    push(new node(7));
    node* n = pop();
    node* stale = n;
    wfmm::retire(n);
    wfmm::barrier();  // every batch published before is freed now
    std::printf("read after reclaim: %ld\n", stale->payload[0]);
    return 0;
  }
  g_race = std::strcmp(mode, "race") == 0;
  long per = argc > 2 ? std::atol(argv[2]) : 20000;
  if (g_race) {
    // One pusher, one reader that only looks at the top node: every node the reader sees
    // was written after its publication, with no synchronisation in between.
    std::atomic<bool> done{false};
    std::atomic<bool> reading{false};
    // The reader has read a node (relaxed both sides: no happens-before for TSan).
    std::atomic<bool> read_node{false};
    std::thread reader([&] {
      long reads = 0, seen = 0;
      // Bound: until the pusher is done (at least 2000 reads).
      while (!done.load() || reads < 2000) {
        wfmm::region r;
        if (node* n = wfmm::protect(g_top, 0)) {
          seen += n->payload[2];
          read_node.store(true, std::memory_order_relaxed);
        }
        if (++reads == 1) reading.store(true);
      }
      g_sink.store(seen);  // keeps the reads
    });
    // The pushes wait for the reader's first read: a reader that started only after the last
    // push saw every write ordered before its reads (through `done`), and TSan, rightly,
    // reported nothing (1 run in 30 under ctest -j2).
    while (!reading.load()) std::this_thread::yield();
    // And the first push waits until the reader has read a node (the first, or a later one):
    // a reader preempted through every push read only after `done` (1 run in ~30 alone).
    // Bound: the reader's next read (it loops until `done`).
    for (long i = 0; i < per; ++i) {
      push(new node(i));
      if (i == 0)
        while (!read_node.load(std::memory_order_relaxed)) std::this_thread::yield();
    }
    done.store(true);
    reader.join();
    while (node* n = pop()) wfmm::retire(n);
    wfmm::barrier();
    std::printf("race: %ld pushes\n", per);
    return 0;
  }
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([t, per] {
      for (long i = 0; i < per; ++i) {
        push(new node(t * per + i));
        if (node* n = pop()) {
          if (!n->ok() && !g_race) g_bad.fetch_add(1);
          wfmm::retire(n);
        }
      }
    });
  for (auto& t : ts) t.join();
  while (node* n = pop()) wfmm::retire(n);
  wfmm::barrier();
  wfmm_stats st;
  wfmm_stats_get(&st);
  std::printf("%s: %ld ops per thread, %ld bad reads, pending retired %llu\n", mode, per,
              g_bad.load(), static_cast<unsigned long long>(st.retired_pending));
  return g_bad.load() == 0 ? 0 : 1;
}
