// The fuzz input read as a stream of bytes, shared by the three targets: past its end every
// read is 0, so any input, even empty, is a complete program of operations.
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace wfmm_fuzz {

struct Input {
  const uint8_t* d;
  size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *d++;
  }
  uint16_t word() { return uint16_t(byte() | (byte() << 8)); }
};

}  // namespace wfmm_fuzz
