// libFuzzer target: the whole allocation API driven by the fuzzer's bytes and checked
// against a shadow model of the live blocks. Entries: wfmm_malloc/calloc/realloc/
// aligned_alloc/free/usable_size and the standard names of the test library's shim
// (wfmm_shim_malloc, calloc, realloc, reallocarray, aligned_alloc, posix_memalign, memalign,
// valloc, pvalloc, free, cfree, free_sized, free_aligned_sized, malloc_usable_size), frees
// and reallocs on another thread (blocks handed over), wfmm_collect, options switched at run
// time (purge_delay_ms, segment_cache, deferred_free, defer_min_bytes, poison), and the
// failing calls (bad alignments, overflowing sizes: NULL with errno, the old block intact).
// The model checks:
//   - every block is aligned (16 bytes, or the alignment asked for);
//   - its usable size is at least the request, and the same through both names;
//   - no two live blocks overlap (usable extents);
//   - its contents are what the model last wrote (realloc keeps the common prefix,
//     calloc gives zeros), checked at every free and realloc.
// A violation calls __builtin_trap, so libFuzzer saves the input. Each input starts from an
// empty model and the default options and frees what it left live, so inputs are
// independent. Built only by scripts/fuzz (clang-14 with -fsanitize=fuzzer, and ASan/UBSan
// on this harness); the allocator itself is compiled with coverage instrumentation there.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <errno.h>
#include <unistd.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "input.h"
#include "wfmm/wfmm.h"

#include "../shim_names.h"

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
  size_t align = 16;  // as asked (free_aligned_sized is given it back)
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
  if (s.usable < s.size || wfmm_shim_malloc_usable_size(s.p) != s.usable) fail();
  for (unsigned j = 0; j < kSlots; ++j) {
    const Slot& o = g_slots[j];
    if (j == self || o.p == nullptr) continue;
    uintptr_t b = reinterpret_cast<uintptr_t>(o.p);
    if (a < b + o.usable && b < a + s.usable) fail();
  }
}

// A helper thread that runs what it is handed (frees and reallocs of blocks this thread
// allocated: the remote-free paths, push and collect, and blocks changing hands).
class Remote {
 public:
  Remote() : t_([this] { run(); }) {}
  ~Remote() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    t_.join();
  }
  // Returns once the job ran (so the model and the heap agree again).
  void call(std::function<void()> job) {
    std::unique_lock<std::mutex> l(m_);
    job_ = std::move(job);
    cv_.notify_all();
    cv_.wait(l, [&] { return !job_; });
  }

 private:
  void run() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      cv_.wait(l, [&] { return stop_ || job_; });
      if (job_) {
        job_();
        job_ = nullptr;
        cv_.notify_all();
      }
      if (stop_) return;
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
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

using Reader = wfmm_fuzz::Input;

// Frees slot i's block by one of the free entries (k picks which).
void release(unsigned i, uint8_t k = 0) {
  Slot& s = g_slots[i];
  verify(s, s.size, s.size);
  switch (k % 5) {
    case 0: wfmm_free(s.p); break;
    case 1: wfmm_shim_free(s.p); break;
    case 2: wfmm_shim_cfree(s.p); break;
    case 3: wfmm_shim_free_sized(s.p, s.size); break;
    default: wfmm_shim_free_aligned_sized(s.p, s.align, s.size); break;
  }
  s = Slot{};
}

// A new block p of n bytes (alignment align) in slot i, checked and written.
void take(unsigned i, void* p, size_t n, size_t align, uint8_t seed, bool zeroed) {
  Slot& s = g_slots[i];
  if (p == nullptr) fail();  // every request here is far below any limit
  s.p = static_cast<unsigned char*>(p);
  s.size = n;
  s.align = align;
  s.seed = seed;
  s.zero = zeroed;
  admit(s, i, align);
  if (zeroed) verify(s, n, n);
  if (!zeroed || (seed & 1) != 0) write(s);
}

// realloc (through wfmm_realloc, the shim, or reallocarray) of slot i to n bytes (n > 0).
void resize(unsigned i, size_t n, uint8_t how) {
  Slot& s = g_slots[i];
  verify(s, s.size, s.size);
  void* p = how % 3 == 0   ? wfmm_realloc(s.p, n)
            : how % 3 == 1 ? wfmm_shim_realloc(s.p, n)
                           : wfmm_shim_reallocarray(s.p, n, 1);
  if (p == nullptr) fail();
  s.p = static_cast<unsigned char*>(p);
  verify(s, s.size, n);  // the common prefix moved with the block
  s.size = n;
  s.align = 16;
  admit(s, i, 16);
  write(s);
}

// Options a program may switch at run time; each input starts from the defaults.
void set_options(uint8_t k) {
  wfmm_option_set("purge_delay_ms", (k & 3) == 0 ? 0 : (k & 3) == 1 ? 1 : 50);
  wfmm_option_set("segment_cache", (k >> 2 & 3) == 0 ? 0 : (k >> 2 & 3) == 1 ? 1 : 16);
  wfmm_option_set("deferred_free", k >> 4 & 1);
  wfmm_option_set("poison", k >> 5 & 1);
  wfmm_option_set("defer_min_bytes", (k >> 6 & 1) ? 65536 : 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Remote remote;
  static const size_t kPage = size_t(sysconf(_SC_PAGESIZE));
  Reader r{data, size};
  set_options(0x0f);  // the defaults: purge 50 ms, 16 segments cached, immediate free
  // Bound: one operation per 1-5 input bytes; at most 4096 operations per input.
  for (unsigned ops = 0; r.n > 0 && ops < 4096; ++ops) {
    uint8_t op = r.byte();
    unsigned i = r.byte() % kSlots;
    Slot& s = g_slots[i];
    switch (op % 16) {
      case 0:
      case 1: {  // malloc or calloc (wfmm_ or shim); the slot's old block is freed first
        if (s.p != nullptr) release(i, op >> 4);
        uint8_t kind = r.byte();
        size_t n = size_from(kind, r.word());
        bool zeroed = op % 16 == 1, shim = op & 0x80;
        void* p = zeroed ? (shim ? wfmm_shim_calloc(1, n) : wfmm_calloc(1, n))
                         : (shim ? wfmm_shim_malloc(n) : wfmm_malloc(n));
        take(i, p, n, 16, uint8_t(op ^ kind), zeroed);
        break;
      }
      case 2: {  // aligned_alloc with a power-of-two alignment 1..1 MiB (wfmm_ or shim)
        if (s.p != nullptr) release(i, op >> 4);
        size_t align = size_t(1) << (r.byte() % 21);
        size_t n = size_from(r.byte(), r.word());
        void* p = (op & 0x80) ? wfmm_shim_aligned_alloc(align, n) : wfmm_aligned_alloc(align, n);
        take(i, p, n, align, uint8_t(op + align), false);
        break;
      }
      case 3: {  // posix_memalign: a bad alignment is EINVAL and leaves *out alone
        if (s.p != nullptr) release(i, op >> 4);
        uint8_t a = r.byte();
        size_t align = (a & 0x80) ? size_t(a & 0x7f) : size_t(1) << (a % 21);
        size_t n = size_from(r.byte(), r.word());
        void* out = &remote;  // a sentinel: must stay on failure
        int rc = wfmm_shim_posix_memalign(&out, align, n);
        bool bad = align < sizeof(void*) || (align & (align - 1)) != 0;
        if (bad) {
          if (rc != EINVAL || out != &remote) fail();
          break;
        }
        if (rc != 0) fail();
        take(i, out, n, align, uint8_t(op + a), false);
        break;
      }
      case 4: {  // memalign (any alignment: rounded up to a power of two), valloc, pvalloc
        if (s.p != nullptr) release(i, op >> 4);
        uint8_t a = r.byte();
        size_t n = size_from(r.byte(), r.word());
        if (a % 3 == 0) {
          size_t align = 1 + a / 3 * 97 % 70000;  // not always a power of two
          size_t want = 16;
          while (want < align) want <<= 1;  // bound: 17 doublings
          take(i, wfmm_shim_memalign(align, n), n, want, a, false);
        } else if (a % 3 == 1) {
          take(i, wfmm_shim_valloc(n), n, kPage, a, false);
        } else {
          size_t rounded = n == 0 ? kPage : (n + kPage - 1) / kPage * kPage;
          take(i, wfmm_shim_pvalloc(n), rounded, kPage, a, false);
        }
        break;
      }
      case 5:
      case 6: {  // realloc (wfmm_, shim, reallocarray): the common prefix survives
        if (s.p == nullptr) break;
        size_t n = size_from(r.byte(), r.word());
        if (n == 0) n = 1;  // realloc(p, 0) frees: case 12
        resize(i, n, op >> 4);
        break;
      }
      case 7:
      case 8:  // free, by each of the free entries
        if (s.p != nullptr) release(i, op >> 4);
        break;
      case 9:  // free or realloc on another thread
        if (s.p != nullptr) {
          if (op & 0x10) {
            size_t n = size_from(r.byte(), r.word()) + 1;
            remote.call([&] { resize(i, n, op >> 5); });
          } else {
            remote.call([&] { release(i, op >> 5); });
          }
        }
        break;
      case 10:  // purge what is empty now (forced or not)
        wfmm_collect(op & 0x10);
        break;
      case 11:  // options switched at run time (live blocks stay as they are)
        set_options(r.byte());
        break;
      case 12:  // realloc(p, 0) frees and returns NULL (wfmm_realloc; immediate free)
        if (s.p != nullptr && wfmm_option_get("deferred_free") == 0) {
          verify(s, s.size, s.size);
          if (wfmm_realloc(s.p, 0) != nullptr) fail();
          s = Slot{};
        }
        break;
      case 13: {  // failing calls: NULL with errno; a failed realloc keeps the block
        errno = 0;
        switch (r.byte() % 6) {
          case 0:
            if (wfmm_aligned_alloc(48, 64) != nullptr || errno != EINVAL) fail();
            break;
          case 1:
            if (wfmm_calloc(SIZE_MAX / 2, 3) != nullptr || errno != ENOMEM) fail();
            break;
          case 2:
            if (wfmm_shim_malloc(SIZE_MAX - 4096) != nullptr || errno != ENOMEM) fail();
            break;
          case 3:
            if (s.p != nullptr) {
              if (wfmm_realloc(s.p, SIZE_MAX / 2) != nullptr || errno != ENOMEM) fail();
              verify(s, s.size, s.size);
            }
            break;
          case 4:
            if (s.p != nullptr) {
              if (wfmm_shim_reallocarray(s.p, SIZE_MAX / 4, 8) != nullptr || errno != ENOMEM)
                fail();
              verify(s, s.size, s.size);
            }
            break;
          default:
            if (wfmm_shim_pvalloc(SIZE_MAX - 10) != nullptr || errno != ENOMEM) fail();
            break;
        }
        break;
      }
      default:  // usable size: the bytes past the request are the block's to write
        if (s.p != nullptr) {
          if (wfmm_usable_size(s.p) != s.usable) fail();
          size_t end = s.usable < kFullCheckMax ? s.usable : s.size;
          for (size_t k = s.size; k < end; ++k) s.p[k] = 0xa5;
        }
        break;
    }
  }
  for (unsigned i = 0; i < kSlots; ++i)
    if (g_slots[i].p != nullptr) release(i);
  wfmm_option_set("deferred_free", 0);
  wfmm_option_set("poison", 0);
  wfmm_option_set("defer_min_bytes", 0);
  return 0;
}
