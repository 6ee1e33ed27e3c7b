// wfmm::pmr (C++17): a std::pmr container on wfmm, and a lock-free list whose nodes come
// from a deferred_resource, so a writer can deallocate a node that readers may still read.
// Build: g++ -std=c++17 pmr.cpp -lwfmm -pthread
#include <wfmm/pmr.hpp>
#include <wfmm/reclaim.hpp>

#include <atomic>
#include <cstdio>
#include <memory_resource>
#include <string>
#include <thread>
#include <vector>

struct node {  // trivially destructible: deallocation alone may be deferred
  std::atomic<int> value;
  std::atomic<node*> next;
};

wfmm::pmr::deferred_resource dres;
std::pmr::polymorphic_allocator<node> alloc(&dres);
std::atomic<node*> head{nullptr};

int first() {  // any number of reader threads
  wfmm::region r;
  node* n = wfmm::protect(head, 0);  // n stays valid until ~region
  return n != nullptr ? n->value.load() : -1;
}

void push_front(int v) {  // one writer
  node* n = alloc.allocate(1);
  n->value.store(v);
  n->next.store(head.load());
  head.store(n);
}

void pop_front() {  // one writer
  node* n = head.load();
  if (n == nullptr) return;
  head.store(n->next.load());  // unlinked: no new reader can find n
  alloc.deallocate(n, 1);      // retired; freed once the readers have moved on
}

int main() {
  wfmm::pmr::resource res;
  std::pmr::vector<std::pmr::string> v(&res);  // every allocation is a wfmm block
  v.emplace_back("a string long enough to leave the small-string buffer");
  bool ok = v.back().size() > 40;

  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, reads{0};
  std::thread reader([&] {
    for (; !stop.load(); ++reads) {
      int x = first();
      if (x != -1 && (x < 0 || x >= 1000000)) ++bad;  // a freed node would show garbage
    }
  });
  // 100000 pushes, and on until the reader has read 1000 times (at most 1000000).
  for (int i = 0; i < 1000000 && (i < 100000 || reads.load() < 1000); ++i) {
    push_front(i);
    if (i % 2 == 1) pop_front();
  }
  stop = true;
  reader.join();
  while (head.load() != nullptr) pop_front();
  dres.release();  // every node deallocated so far is freed now (optional)
  std::printf("pmr example: %s, %ld reads, %ld bad\n", ok ? "vector ok" : "vector BAD",
              reads.load(), bad.load());
  return ok && bad.load() == 0 ? 0 : 1;
}
