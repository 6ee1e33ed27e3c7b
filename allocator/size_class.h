// Size classes: multiples of 16 up to 128 bytes, then eight classes per power of two up to
// kMediumMax, so a block exceeds its request by less than 16 bytes or by at most 12.5%.
// One table, computed at compile time; the malloc fast path reads it for sizes <= 1 KiB.
#pragma once
#include <array>

#include "config.h"

namespace wfmm {

inline constexpr unsigned kClassesPerDoubling = 8;
inline constexpr unsigned kLinearClasses = 8;  // 16, 32, ..., 128

constexpr unsigned log2_floor(size_t n) { return 63u - unsigned(__builtin_clzll(n)); }

// Class index of a request (n >= 1, n <= kMediumMax); 0 is treated as 1.
constexpr unsigned size_class_compute(size_t n) {
  if (n <= 128) return n == 0 ? 0 : unsigned((n + 15) / 16 - 1);
  unsigned k = log2_floor(n - 1);  // n in (2^k, 2^(k+1)]
  size_t step = size_t(1) << (k - 3);
  unsigned i = unsigned((n - (size_t(1) << k) + step - 1) / step);  // 1..8
  return kLinearClasses + (k - 7) * kClassesPerDoubling + (i - 1);
}

inline constexpr unsigned kNumClasses = size_class_compute(kMediumMax) + 1;

constexpr size_t class_size_compute(unsigned c) {
  if (c < kLinearClasses) return size_t(c + 1) * 16;
  unsigned k = 7 + (c - kLinearClasses) / kClassesPerDoubling;
  unsigned i = 1 + (c - kLinearClasses) % kClassesPerDoubling;
  return (size_t(1) << k) + i * (size_t(1) << (k - 3));
}

inline constexpr auto kClassSize = [] {
  std::array<uint32_t, kNumClasses> t{};
  for (unsigned c = 0; c < kNumClasses; ++c) t[c] = uint32_t(class_size_compute(c));
  return t;
}();

inline constexpr size_t kDirectMax = 1024;
inline constexpr auto kDirectClass = [] {
  std::array<uint8_t, kDirectMax / 16 + 1> t{};
  for (size_t w = 0; w < t.size(); ++w) t[w] = uint8_t(size_class_compute(w == 0 ? 1 : w * 16));
  return t;
}();

WFMM_INLINE unsigned size_class(size_t n) {
  if (WFMM_LIKELY(n <= kDirectMax)) return kDirectClass[(n + 15) >> 4];
  return size_class_compute(n);
}

inline size_t class_size(unsigned c) { return kClassSize[c]; }

static_assert(class_size_compute(kNumClasses - 1) == kMediumMax);
static_assert(kNumClasses < 255);

}  // namespace wfmm
