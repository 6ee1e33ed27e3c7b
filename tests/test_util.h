// Helpers shared by the tests: deterministic fill patterns that tie a block's contents to
// its address and a seed, so a check finds any overlap or premature reuse.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <string>
#include <vector>

namespace wfmm_test {

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

inline void fill(void* p, size_t n, uint64_t tag) {
  auto* b = static_cast<unsigned char*>(p);
  uint64_t k = mix(tag);
  for (size_t i = 0; i < n; ++i)
    b[i] = static_cast<unsigned char>(k >> ((i & 7) * 8)) ^ static_cast<unsigned char>(i);
}

inline bool check(const void* p, size_t n, uint64_t tag) {
  auto* b = static_cast<const unsigned char*>(p);
  uint64_t k = mix(tag);
  for (size_t i = 0; i < n; ++i)
    if (b[i] != (static_cast<unsigned char>(k >> ((i & 7) * 8)) ^ static_cast<unsigned char>(i)))
      return false;
  return true;
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(mix(seed) | 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  size_t below(size_t n) { return n == 0 ? 0 : size_t(next() % n); }
};

// Allocates n blocks of `size` bytes with alloc, fills each, then checks them and gives them
// back with release: "" if no block was handed out twice and every one kept its contents
// (after a reclamation race: no block went back twice), else what went wrong.
inline std::string fresh_blocks_check(void* (*alloc)(size_t), void (*release)(void*), size_t n,
                                      size_t size) {
  std::vector<void*> v;
  for (size_t i = 0; i < n; ++i) {
    void* p = alloc(size);
    fill(p, size, i);
    v.push_back(p);
  }
  std::vector<void*> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  std::string why;
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    why = "a block was handed out twice";
  for (size_t i = 0; i < v.size() && why.empty(); ++i)
    if (!check(v[i], size, i)) why = "block " + std::to_string(i) + " changed";
  for (void* p : v) release(p);
  return why;
}

// Occurrences of `what` in s (reports counted in captured stderr).
inline size_t count_of(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

}  // namespace wfmm_test
