// P3428R4's hazard pointer batches on wfmm::std_compat (C++20): a reader takes two hazard
// pointers in one step, reads two shared objects, and clears both in one step; the array is
// reused for the next read.
// Build: g++ -std=c++20 hazard_pointer_batch.cpp -lwfmm -pthread
#include <wfmm/std_compat.hpp>

#include <array>
#include <atomic>
#include <cstdio>
#include <thread>

namespace sc = wfmm::std_compat;

struct pair_half : sc::hazard_pointer_obj_base<pair_half> {
  long value, twice;  // twice == 2 * value while the object is live
  explicit pair_half(long v) : value(v), twice(2 * v) {}
};

std::atomic<pair_half*> left{new pair_half(0)}, right{new pair_half(0)};

int main() {
  std::atomic<bool> stop{false};
  std::atomic<long> bad{0}, reads{0};
  std::thread reader([&] {
    std::array<sc::hazard_pointer, 2> hp;  // empty
    while (!stop.load()) {
      sc::make_hazard_pointer_batch(hp);   // both own a hazard pointer now
      pair_half* l = hp[0].protect(left);
      pair_half* r = hp[1].protect(right);
      if (l->twice != 2 * l->value || r->twice != 2 * r->value) ++bad;
      sc::clear_hazard_pointer_batch(hp);  // both empty again
      ++reads;
    }
  });
  // 20000 updates, and on until the reader has read 1000 times.
  for (long v = 1; v <= 20000 || reads.load() < 1000; ++v) {
    left.exchange(new pair_half(v))->retire();
    right.exchange(new pair_half(-v))->retire();
  }
  stop = true;
  reader.join();
  left.exchange(nullptr)->retire();
  right.exchange(nullptr)->retire();
  std::printf("hazard_pointer_batch example: %ld reads, %ld bad\n", reads.load(), bad.load());
  return bad.load() == 0 ? 0 : 1;
}
