// P2530R3's example on wfmm::std_compat (C++20): readers protect a shared configuration
// with a hazard pointer while a writer replaces it and retires the old one.
// Build: g++ -std=c++20 hazard_pointer.cpp -lwfmm -pthread  (wfmm is then operator new)
#include <wfmm/std_compat.hpp>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sc = wfmm::std_compat;

// hazard_pointer_obj_base's constructors are protected, so an aggregate `new config{1, "x"}`
// does not compile (aggregate initialisation of the base happens outside config): give
// the class a constructor.
struct config : sc::hazard_pointer_obj_base<config> {
  int version;
  std::string text;
  config(int v, std::string t) : version(v), text(std::move(t)) {}
};

std::atomic<config*> current{new config(1, "version 1")};

// Often, from many threads.
bool read_ok() {
  sc::hazard_pointer h = sc::make_hazard_pointer();
  config* c = h.protect(current);  // *c stays valid until h is destroyed
  return c->text == "version " + std::to_string(c->version);
}

// Rarely, concurrently: the old configuration is deleted once no reader holds it.
void update(int v) { current.exchange(new config(v, "version " + std::to_string(v)))->retire(); }

int main() {
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r)
    readers.emplace_back([&] {
      for (; !stop.load(); ++reads) bad += read_ok() ? 0 : 1;
    });
  // 20000 updates, and on until the readers have read 1000 times.
  for (int v = 2; v <= 20000 || reads.load() < 1000; ++v) update(v);
  stop = true;
  for (auto& t : readers) t.join();
  current.exchange(nullptr)->retire();
  sc::rcu_barrier();  // every retired configuration deleted (optional)
  std::printf("hazard_pointer example: %ld reads, %ld bad\n", reads.load(), bad.load());
  return bad.load() == 0 ? 0 : 1;
}
