// Statistics: per-thread counters summed over the registry of heaps, plus global byte
// counters kept by the segment layer. Reading is not on any wait-free path.
#include <sched.h>
#include <stdio.h>

#include "birth.h"
#include "segment.h"
#include "types.h"
#include "wfmm/wfmm.h"

namespace wfmm {

Heap* heap_registry_first();

void stats_collect(wfmm_stats* out) {
  int64_t mc = 0, mb = 0, fc = 0, fb = 0;
  uint64_t threads = 0;
  auto add = [&](Heap* h) {
    const ThreadStats& st = h->stats_;
    for (unsigned c = 0; c < kNumClasses; ++c) {
      int64_t m = st.malloc_class[c].load(std::memory_order_relaxed);
      int64_t f = st.free_class[c].load(std::memory_order_relaxed);
      mc += m;
      fc += f;
      mb += m * int64_t(class_size(c));
      fb += f * int64_t(class_size(c));
    }
    mc += st.malloc_large.load(std::memory_order_relaxed);
    mb += st.malloc_large_bytes.load(std::memory_order_relaxed);
    fc += st.free_large.load(std::memory_order_relaxed);
    fb += st.free_large_bytes.load(std::memory_order_relaxed);
  };
  add(&g_empty_heap);
  Heap* h = heap_registry_first();
  // Bound: the heaps ever created (heaps are recycled, so the peak number of threads).
  while (h != nullptr) {
    add(h);
    if (h->xlive_.load(std::memory_order_relaxed)) ++threads;
    Heap* next = h->xall_next_.load(std::memory_order_acquire);
    // A heap being registered right now: its link lands within a few instructions. Bound:
    // 10000 yields; a registrant that vanished (fork) leaves the older heaps uncounted.
    for (int i = 0; reinterpret_cast<uintptr_t>(next) == 1 && i < 10000; ++i) {
      sched_yield();
      next = h->xall_next_.load(std::memory_order_acquire);
    }
    if (reinterpret_cast<uintptr_t>(next) == 1) break;
    h = next;
  }
  *out = wfmm_stats{};
  out->malloc_count = uint64_t(mc);
  out->free_count = uint64_t(fc);
  out->blocks_in_use = mc > fc ? uint64_t(mc - fc) : 0;
  out->bytes_in_use = mb > fb ? uint64_t(mb - fb) : 0;
  int64_t mapped = g_bytes_mapped.load(std::memory_order_relaxed);
  int64_t purged = g_bytes_purged.load(std::memory_order_relaxed);
  out->bytes_mapped = mapped > 0 ? uint64_t(mapped) : 0;
  out->bytes_committed = mapped > purged ? uint64_t(mapped - purged) : 0;
  out->threads = threads;
  int64_t cached = g_segments_cached.load(std::memory_order_relaxed);
  out->segments_cached = cached > 0 ? uint64_t(cached) : 0;
  out->era = g_era.load(std::memory_order_relaxed);
  if (auto hook = g_stats_hook.load(std::memory_order_acquire)) hook(out);
}

namespace {

void print_bytes(FILE* f, const char* label, uint64_t b) {
  const char* unit = "B";
  double v = double(b);
  if (b >= (uint64_t(1) << 30)) {
    v /= double(uint64_t(1) << 30);
    unit = "GiB";
  } else if (b >= (uint64_t(1) << 20)) {
    v /= double(uint64_t(1) << 20);
    unit = "MiB";
  } else if (b >= (uint64_t(1) << 10)) {
    v /= 1024.0;
    unit = "KiB";
  }
  fprintf(f, "wfmm:   %-22s %10.1f %s\n", label, v, unit);
}

}  // namespace

// malloc_info's XML, in glibc's shape (malloc > heap > sizes/total/system/aspace) so tools
// that parse glibc's output read ours, with wfmm's meanings: one <heap> for the whole
// process (heaps are per thread and their counters are summed), <size> elements for the
// size classes with live blocks (glibc lists free chunks; wfmm keeps no free counts outside
// the owning thread), "rest" = small and medium blocks in use, "mmap" = large and huge
// blocks in use, "current"/"max" = committed bytes, "total" = mapped bytes.
void stats_print_xml(FILE* f) {
  int64_t live[kNumClasses] = {};
  int64_t large_count = 0, large_bytes = 0;
  auto add = [&](Heap* h) {
    const ThreadStats& st = h->stats_;
    for (unsigned c = 0; c < kNumClasses; ++c)
      live[c] += st.malloc_class[c].load(std::memory_order_relaxed) -
                 st.free_class[c].load(std::memory_order_relaxed);
    large_count += st.malloc_large.load(std::memory_order_relaxed) -
                   st.free_large.load(std::memory_order_relaxed);
    large_bytes += st.malloc_large_bytes.load(std::memory_order_relaxed) -
                   st.free_large_bytes.load(std::memory_order_relaxed);
  };
  add(&g_empty_heap);
  // Bound: the heaps ever created; a heap still being registered ends the walk (its
  // counters are counted next time).
  for (Heap* h = heap_registry_first(); h != nullptr && reinterpret_cast<uintptr_t>(h) != 1;
       h = h->xall_next_.load(std::memory_order_acquire))
    add(h);
  wfmm_stats s;
  stats_collect(&s);
  auto u = [](int64_t v) { return (unsigned long long)(v > 0 ? v : 0); };
  int64_t small_count = 0, small_bytes = 0;
  fprintf(f, "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
  for (unsigned c = 0; c < kNumClasses; ++c) {
    if (live[c] <= 0) continue;
    int64_t size = int64_t(class_size(c));
    small_count += live[c];
    small_bytes += live[c] * size;
    fprintf(f, "  <size from=\"%llu\" to=\"%llu\" total=\"%llu\" count=\"%llu\"/>\n",
            u(c == 0 ? 1 : int64_t(class_size(c - 1)) + 1), u(size), u(live[c] * size), u(live[c]));
  }
  unsigned long long committed = (unsigned long long)s.bytes_committed;
  unsigned long long mapped = (unsigned long long)s.bytes_mapped;
  fprintf(f, "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(f, "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n", u(small_count),
          u(small_bytes));
  fprintf(f, "<system type=\"current\" size=\"%llu\"/>\n<system type=\"max\" size=\"%llu\"/>\n",
          committed, committed);
  fprintf(f, "<aspace type=\"total\" size=\"%llu\"/>\n<aspace type=\"mprotect\" size=\"%llu\"/>\n",
          mapped, mapped);
  fprintf(f, "</heap>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(f, "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n", u(small_count),
          u(small_bytes));
  fprintf(f, "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n", u(large_count),
          u(large_bytes));
  fprintf(f, "<system type=\"current\" size=\"%llu\"/>\n<system type=\"max\" size=\"%llu\"/>\n",
          committed, committed);
  fprintf(f, "<aspace type=\"total\" size=\"%llu\"/>\n<aspace type=\"mprotect\" size=\"%llu\"/>\n",
          mapped, mapped);
  fprintf(f, "</malloc>\n");
  fflush(f);
}

void stats_print(FILE* f) {
  wfmm_stats s;
  stats_collect(&s);
  fprintf(f, "wfmm: statistics\n");
  print_bytes(f, "in use", s.bytes_in_use);
  print_bytes(f, "committed", s.bytes_committed);
  print_bytes(f, "mapped", s.bytes_mapped);
  fprintf(f, "wfmm:   %-22s %10llu blocks\n", "live", (unsigned long long)s.blocks_in_use);
  fprintf(f, "wfmm:   %-22s %10llu calls\n", "malloc", (unsigned long long)s.malloc_count);
  fprintf(f, "wfmm:   %-22s %10llu calls\n", "free", (unsigned long long)s.free_count);
  fprintf(f, "wfmm:   %-22s %10llu\n", "threads", (unsigned long long)s.threads);
  fprintf(f, "wfmm:   %-22s %10llu segments\n", "cached", (unsigned long long)s.segments_cached);
  fprintf(f, "wfmm:   %-22s %10llu blocks\n", "retired", (unsigned long long)s.retired);
  fprintf(f, "wfmm:   %-22s %10llu blocks\n", "reclaimed", (unsigned long long)s.reclaimed);
  fprintf(f, "wfmm:   %-22s %10llu blocks\n", "retired, pending",
          (unsigned long long)s.retired_pending);
  print_bytes(f, "retired, pending", s.retired_pending_bytes);
  fprintf(f, "wfmm:   %-22s %10llu\n", "era", (unsigned long long)s.era);
  fprintf(f, "wfmm:   %-22s %10llu\n", "slow protects", (unsigned long long)s.protect_slow);
  print_bytes(f, "deferred", s.deferred_bytes);
  print_bytes(f, "deferred, peak", s.deferred_peak_bytes);
  fprintf(f, "wfmm:   %-22s %10llu eras\n", "longest deferral",
          (unsigned long long)s.deferral_max_eras);
  fflush(f);
}

}  // namespace wfmm
