// libFuzzer target: the allocation API (wfmm_malloc, calloc, realloc, aligned_alloc, free,
// usable_size, collect, frees from another thread) driven by the fuzzer's bytes and checked
// against a shadow model of the live blocks:
//   - every block is aligned (16 bytes, or the alignment asked for);
//   - its usable size is at least the request;
//   - no two live blocks overlap (usable extents);
//   - its contents are what the model last wrote (realloc keeps the common prefix,
//     calloc gives zeros), checked at every free and realloc.
// A violation calls __builtin_trap, so libFuzzer saves the input. Each input starts from an
// empty model and frees what it left live, so inputs are independent. Built only by
// scripts/fuzz (clang-14 with -fsanitize=fuzzer); the allocator itself is compiled with
// coverage instrumentation in that build.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "wfmm/wfmm.h"

namespace {

constexpr unsigned kSlots = 64;
// Large and huge blocks: only their ends and a few pages are written and checked, so an
// input of many 20 MiB blocks still runs at thousands of executions per second.
constexpr size_t kFullCheckMax = 64 * 1024;
constexpr size_t kEdge = 4096;

struct Slot {
  unsigned char* p = nullptr;
  size_t size = 0;    // requested
  size_t usable = 0;  // wfmm_usable_size at allocation
  uint8_t seed = 0;   // contents: byte i is seed + i*7 (mod 256)
  bool zero = false;  // calloc'd and not written since
};
Slot g_slots[kSlots];

void fail() { __builtin_trap(); }

unsigned char pattern(uint8_t seed, size_t i) { return uint8_t(seed + i * 7); }

// Calls f(offset, length) on the checked ranges of a block of n bytes: all of it when small;
// otherwise the first and last kEdge bytes and one page in the middle. Bound: 3 ranges.
template <class F>
void ranges(size_t n, F f) {
  if (n <= kFullCheckMax) {
    f(size_t(0), n);
    return;
  }
  f(size_t(0), kEdge);
  f(n / 2 & ~size_t(4095), kEdge);
  f(n - kEdge, kEdge);
}

void write(Slot& s) {
  ranges(s.size, [&](size_t off, size_t len) {
    for (size_t i = off; i < off + len; ++i) s.p[i] = pattern(s.seed, i);
  });
  s.zero = false;
}

// What write() stored for a block of `written` bytes still holds below `limit` (realloc
// keeps only the common prefix).
void verify(const Slot& s, size_t written, size_t limit) {
  ranges(written, [&](size_t off, size_t len) {
    size_t end = off + len < limit ? off + len : limit;
    for (size_t i = off; i < end; ++i)
      if (s.p[i] != (s.zero ? 0 : pattern(s.seed, i))) fail();
  });
}

// A new block at s (slot index self): aligned, big enough, overlapping no other live block.
// Bound: kSlots comparisons.
void admit(Slot& s, unsigned self, size_t align) {
  uintptr_t a = reinterpret_cast<uintptr_t>(s.p);
  if (a % (align < 16 ? 16 : align) != 0) fail();
  s.usable = wfmm_usable_size(s.p);
  if (s.usable < s.size) fail();
  for (unsigned j = 0; j < kSlots; ++j) {
    const Slot& o = g_slots[j];
    if (j == self || o.p == nullptr) continue;
    uintptr_t b = reinterpret_cast<uintptr_t>(o.p);
    if (a < b + o.usable && b < a + s.usable) fail();
  }
}

// A helper thread that frees what it is handed: the remote-free paths (push, collect).
class RemoteFreer {
 public:
  RemoteFreer() : t_([this] { run(); }) {}
  ~RemoteFreer() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    t_.join();
  }
  // Returns once the block is freed (so the model and the heap agree again).
  void free(void* p) {
    std::unique_lock<std::mutex> l(m_);
    job_ = p;
    cv_.notify_all();
    cv_.wait(l, [&] { return job_ == nullptr; });
  }

 private:
  void run() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || job_ != nullptr; });
      if (job_ != nullptr) {
        wfmm_free(job_);
        job_ = nullptr;
        cv_.notify_all();
      }
      if (stop_) return;
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  void* job_ = nullptr;
  bool stop_ = false;
  std::thread t_;
};

// Request sizes: mostly small, some medium, a few large and huge.
size_t size_from(uint8_t kind, uint16_t v) {
  switch (kind & 7) {
    case 0:
    case 1:
    case 2:
      return v % 257;  // 0..256 (malloc(0) included)
    case 3:
    case 4:
      return v % 8193;
    case 5:
      return v * size_t(2) + 1;  // up to 128 KiB: medium pages
    case 6:
      return size_t(v) * 64 + 1;  // up to 4 MiB: large blocks
    default:
      return (size_t(v % 24) + 1) << 20;  // 1..24 MiB: large and huge blocks
  }
}

struct Reader {
  const uint8_t* d;
  size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *d++;
  }
  uint16_t word() { return uint16_t(byte() | (byte() << 8)); }
};

void release(unsigned i) {
  Slot& s = g_slots[i];
  verify(s, s.size, s.size);
  wfmm_free(s.p);
  s = Slot{};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static RemoteFreer remote;
  Reader r{data, size};
  // Bound: one operation per 1-5 input bytes; at most 4096 operations per input.
  for (unsigned ops = 0; r.n > 0 && ops < 4096; ++ops) {
    uint8_t op = r.byte();
    unsigned i = r.byte() % kSlots;
    Slot& s = g_slots[i];
    switch (op % 8) {
      case 0:
      case 1: {  // malloc, or calloc; the slot's old block is freed first
        if (s.p != nullptr) release(i);
        uint8_t kind = r.byte();
        size_t n = size_from(kind, r.word());
        bool zeroed = op % 8 == 1;
        void* p = zeroed ? wfmm_calloc(1, n) : wfmm_malloc(n);
        if (p == nullptr) fail();  // every request here is far below any limit
        s.p = static_cast<unsigned char*>(p);
        s.size = n;
        s.seed = uint8_t(op ^ kind);
        s.zero = zeroed;
        admit(s, i, 16);
        if (zeroed) verify(s, n, n);
        if (!zeroed || (kind & 8) != 0) write(s);
        break;
      }
      case 2: {  // aligned_alloc with a power-of-two alignment 1..1 MiB
        if (s.p != nullptr) release(i);
        size_t align = size_t(1) << (r.byte() % 21);
        size_t n = size_from(r.byte(), r.word());
        void* p = wfmm_aligned_alloc(align, n);
        if (p == nullptr) fail();
        s.p = static_cast<unsigned char*>(p);
        s.size = n;
        s.seed = uint8_t(op + align);
        admit(s, i, align);
        write(s);
        break;
      }
      case 3: {  // realloc: the common prefix survives
        if (s.p == nullptr) break;
        size_t n = size_from(r.byte(), r.word());
        if (n == 0) n = 1;  // realloc(p, 0) frees: covered by free
        verify(s, s.size, s.size);
        void* p = wfmm_realloc(s.p, n);
        if (p == nullptr) fail();
        s.p = static_cast<unsigned char*>(p);
        verify(s, s.size, n);  // the common prefix moved with the block
        s.size = n;
        admit(s, i, 16);
        write(s);
        break;
      }
      case 4:
      case 5:  // free
        if (s.p != nullptr) release(i);
        break;
      case 6:  // free from another thread
        if (s.p != nullptr) {
          verify(s, s.size, s.size);
          remote.free(s.p);
          s = Slot{};
        }
        break;
      default:  // purge what is empty now (forced or not)
        wfmm_collect(op & 8);
        break;
    }
  }
  for (unsigned i = 0; i < kSlots; ++i)
    if (g_slots[i].p != nullptr) release(i);
  return 0;
}
