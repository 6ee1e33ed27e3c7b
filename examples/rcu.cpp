// P2545R4's RCU example on wfmm::std_compat (C++20): readers print a shared name inside a
// read-side section; writers replace it with rcu_retire, or with rcu_synchronize + delete.
// Build: g++ -std=c++20 rcu.cpp -lwfmm -pthread
#include <wfmm/std_compat.hpp>

#include <atomic>
#include <cstdio>
#include <mutex>  // std::scoped_lock
#include <string>
#include <thread>

namespace sc = wfmm::std_compat;

std::atomic<std::string*> name{new std::string("name 0, long enough to be on the heap")};

bool read_name() {  // often, from many threads
  std::scoped_lock lock(sc::rcu_default_domain());
  const std::string* n = name.load(std::memory_order_acquire);
  return n->compare(0, 5, "name ") == 0;
}

void update_name(std::string* fresh) {  // ~string() and free once readers are done
  sc::rcu_retire(name.exchange(fresh));
}

void update_name_sync(std::string* fresh) {
  std::string* old = name.exchange(fresh);
  sc::rcu_synchronize();  // every reader that could see old has left its section
  delete old;
}

int main() {
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, reads{0};
  std::thread reader([&] {
    for (; !stop.load(); ++reads) bad += read_name() ? 0 : 1;
  });
  // 5000 updates, and on until the reader has read 1000 times.
  for (int i = 1; i <= 5000 || reads.load() < 1000; ++i) {
    auto* fresh = new std::string("name " + std::to_string(i) + ", long enough to be on the heap");
    if (i % 100 == 0)
      update_name_sync(fresh);
    else
      update_name(fresh);
  }
  stop = true;
  reader.join();
  sc::rcu_retire(name.exchange(nullptr));
  sc::rcu_barrier();
  std::printf("rcu example: %ld reads, %ld bad\n", reads.load(), bad.load());
  return bad.load() == 0 ? 0 : 1;
}
