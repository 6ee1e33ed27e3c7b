// Statistics: per-thread counters summed over the registry of heaps, plus global byte
// counters kept by the segment layer. Reading is not on any wait-free path; the in-use peak
// is sampled on allocation slow paths (stats_sample_in_use), with a bounded walk.
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "birth.h"
#include "heap.h"
#include "options.h"
#include "segment.h"
#include "types.h"
#include "wfmm/wfmm.h"

namespace wfmm {

Heap* heap_registry_first();

// The most bytes in use seen by a sample.
std::atomic<int64_t> g_in_use_peak{0};
// The same for small and medium blocks alone: segment_alloc's huge-page rule. Those fill
// their pages densely; large and huge blocks are often touched sparsely (xz's 16 MiB match
// finders), so counting them gave xz's small segments huge pages at 1.3x its peak RSS.
std::atomic<int64_t> g_paged_in_use_peak{0};

namespace {

// The committed bytes at the last sample taken on an allocation path (samples there are
// 1 MiB of committed growth apart).
std::atomic<int64_t> g_in_use_sampled_at{0};
constexpr int64_t kInUseSampleStep = int64_t(1) << 20;

// One attempt (wait-free): a failure means another thread raised the peak meanwhile.
void raise_peak(std::atomic<int64_t>& to, int64_t v) {
  int64_t peak = to.load(std::memory_order_relaxed);
  if (v > peak) to.compare_exchange_strong(peak, v, std::memory_order_relaxed);
}

struct InUse {
  int64_t paged, large;  // bytes of live blocks in small and medium pages; large and huge
};

// Bytes of live blocks: the per-thread counters summed. Bound: the heaps ever created (the
// peak number of threads) times kNumClasses; a heap being registered right now ends the
// walk (its counters, and those of older heaps, are left out of this sample).
InUse in_use_bytes() {
  InUse bytes{0, 0};
  auto add = [&](const Heap* h) {
    const ThreadStats& st = h->stats_;
    for (unsigned c = 0; c < kNumClasses; ++c)
      bytes.paged += (st.malloc_class[c].load(std::memory_order_relaxed) -
                      st.free_class[c].load(std::memory_order_relaxed)) *
                     int64_t(class_size(c));
    bytes.large += st.malloc_large_bytes.load(std::memory_order_relaxed) -
                   st.free_large_bytes.load(std::memory_order_relaxed);
  };
  add(&g_empty_heap);
  for (Heap* h = heap_registry_first(); h != nullptr && reinterpret_cast<uintptr_t>(h) != 1;
       h = h->xall_next_.load(std::memory_order_acquire))
    add(h);
  return bytes;
}

}  // namespace

// Called when the committed bytes reach a new peak (note_committed_peak, on the slow paths
// that map or recommit memory): samples the bytes in use once per kInUseSampleStep of
// committed growth, so a process pays for at most bytes_committed_peak / 1 MiB walks.
void stats_sample_in_use(int64_t committed) {
  int64_t last = g_in_use_sampled_at.load(std::memory_order_relaxed);
  if (committed < last + kInUseSampleStep) return;
  // One attempt: a failure means another thread takes this sample.
  if (!g_in_use_sampled_at.compare_exchange_strong(last, committed, std::memory_order_relaxed))
    return;
  InUse u = in_use_bytes();
  raise_peak(g_in_use_peak, u.paged + u.large);
  raise_peak(g_paged_in_use_peak, u.paged);
}

void stats_collect(wfmm_stats* out) {
  // The calling thread's own counts are exact (its pages folded); other threads' lag by the
  // mallocs and frees since their pages' last folds (page_fold).
  if (t_heap != &g_empty_heap) heap_fold_counts(t_heap);
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
  raise_peak(g_in_use_peak, int64_t(out->bytes_in_use));
  int64_t in_use_peak = g_in_use_peak.load(std::memory_order_relaxed);
  out->bytes_in_use_peak = in_use_peak > 0 ? uint64_t(in_use_peak) : 0;
  // A racing raise may have failed: never report the peak below the present.
  if (out->bytes_in_use_peak < out->bytes_in_use) out->bytes_in_use_peak = out->bytes_in_use;
  int64_t mapped = g_bytes_mapped.load(std::memory_order_relaxed);
  int64_t purged = g_bytes_purged.load(std::memory_order_relaxed);
  out->bytes_mapped = mapped > 0 ? uint64_t(mapped) : 0;
  out->bytes_committed = mapped > purged ? uint64_t(mapped - purged) : 0;
  int64_t peak = g_bytes_committed_peak.load(std::memory_order_relaxed);
  out->bytes_committed_peak = peak > 0 ? uint64_t(peak) : 0;
  // The peak is raised after the counters move: never report it below the present.
  if (out->bytes_committed_peak < out->bytes_committed)
    out->bytes_committed_peak = out->bytes_committed;
  out->threads = threads;
  int64_t cached = g_segments_cached.load(std::memory_order_relaxed);
  out->segments_cached = cached > 0 ? uint64_t(cached) : 0;
  out->era = g_era.load(std::memory_order_relaxed);
  if (auto hook = g_stats_hook.load(std::memory_order_acquire)) hook(out);
}

namespace {

// When the library was loaded (for the process line's wall time): the constructor runs as
// the program starts, preloaded or linked.
struct timespec g_start;
__attribute__((constructor)) void stats_start() { clock_gettime(CLOCK_MONOTONIC, &g_start); }

// What the process line says: the OS's view of the whole process, beside wfmm's own counters.
struct ProcessFacts {
  long pid;
  const char* name;
  double wall_s, user_s, sys_s;
  uint64_t rss;       // bytes resident now (/proc/self/statm; 0 if unreadable)
  uint64_t peak_rss;  // bytes (getrusage's ru_maxrss: the most the process ever had resident)
};

// The kernel's resident set size now: statm's second field, in pages. Raw open/read, as
// stdio would allocate (this may run inside an exiting program's last free).
uint64_t rss_now() {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* q = buf;
  // Bound: the bytes read. Skip the first field (size) and the blank after it.
  while (*q != '\0' && *q != ' ') ++q;
  while (*q == ' ') ++q;
  uint64_t pages = 0;
  // Bound: the bytes read.
  for (; *q >= '0' && *q <= '9'; ++q) pages = pages * 10 + uint64_t(*q - '0');
  long page = sysconf(_SC_PAGESIZE);
  return pages * uint64_t(page > 0 ? page : 4096);
}

ProcessFacts process_facts() {
  ProcessFacts p{};
  p.pid = long(getpid());
  p.name = program_invocation_short_name;  // glibc's, set before main: no allocation
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  p.wall_s = double(now.tv_sec - g_start.tv_sec) + double(now.tv_nsec - g_start.tv_nsec) * 1e-9;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    p.user_s = double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) * 1e-6;
    p.sys_s = double(ru.ru_stime.tv_sec) + double(ru.ru_stime.tv_usec) * 1e-6;
    p.peak_rss = uint64_t(ru.ru_maxrss) * 1024;
  }
  p.rss = rss_now();
  if (p.peak_rss < p.rss) p.peak_rss = p.rss;  // (ru_maxrss is sampled by the kernel)
  return p;
}

// Reclamation rows mean nothing to a program that never retires: shown once it has.
bool reclamation_used(const wfmm_stats& s) {
  return s.retired != 0 || s.protect_slow != 0 || s.era > 1;
}
bool deferred_used(const wfmm_stats& s) {
  return option(Opt::kDeferredFree) != 0 || s.deferred_peak_bytes != 0;
}

const char* scaled(uint64_t b, double* v) {
  *v = double(b);
  if (b >= (uint64_t(1) << 30)) return *v /= double(uint64_t(1) << 30), "GiB";
  if (b >= (uint64_t(1) << 20)) return *v /= double(uint64_t(1) << 20), "MiB";
  if (b >= (uint64_t(1) << 10)) return *v /= 1024.0, "KiB";
  return "B";
}

void print_bytes(FILE* f, const char* label, uint64_t b) {
  double v;
  const char* unit = scaled(b, &v);
  fprintf(f, "wfmm:   %-22s %10.1f %s\n", label, v, unit);
}

void print_count(FILE* f, const char* label, uint64_t n, const char* unit) {
  fprintf(f, "wfmm:   %-22s %10llu%s%s\n", label, (unsigned long long)n, *unit ? " " : "", unit);
}

// A program name in a JSON string: quotes, backslashes and control bytes escaped.
void json_string(FILE* f, const char* s) {
  fputc('"', f);
  // Bound: the string's length.
  for (; *s != '\0'; ++s) {
    unsigned char c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

}  // namespace

// malloc_info's XML, in glibc's shape (malloc > heap > sizes/total/system/aspace) so tools
// that parse glibc's output read ours, with wfmm's meanings: one <heap> for the whole
// process (heaps are per thread and their counters are summed), <size> elements for the
// size classes with live blocks (glibc lists free chunks; wfmm keeps no free counts outside
// the owning thread), "rest" = small and medium blocks in use, "mmap" = large and huge
// blocks in use, "current"/"max" = committed bytes now / at their peak, "total" = mapped bytes.
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
  unsigned long long committed_peak = (unsigned long long)s.bytes_committed_peak;
  unsigned long long mapped = (unsigned long long)s.bytes_mapped;
  fprintf(f, "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(f, "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n", u(small_count),
          u(small_bytes));
  fprintf(f, "<system type=\"current\" size=\"%llu\"/>\n<system type=\"max\" size=\"%llu\"/>\n",
          committed, committed_peak);
  fprintf(f, "<aspace type=\"total\" size=\"%llu\"/>\n<aspace type=\"mprotect\" size=\"%llu\"/>\n",
          mapped, mapped);
  fprintf(f, "</heap>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n");
  fprintf(f, "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n", u(small_count),
          u(small_bytes));
  fprintf(f, "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n", u(large_count),
          u(large_bytes));
  fprintf(f, "<system type=\"current\" size=\"%llu\"/>\n<system type=\"max\" size=\"%llu\"/>\n",
          committed, committed_peak);
  fprintf(f, "<aspace type=\"total\" size=\"%llu\"/>\n<aspace type=\"mprotect\" size=\"%llu\"/>\n",
          mapped, mapped);
  fprintf(f, "</malloc>\n");
  fflush(f);
}


// Labelled blocks (memory, calls, then reclamation and deferred free only when the program
// used them), under one line about the process: what a user reading stderr at exit wants.
// Each block's heading names the program and pid, so the blocks of several processes
// writing to one stderr (a pipeline, a forking server) can be told apart.
void stats_print(FILE* f) {
  wfmm_stats s;
  stats_collect(&s);
  ProcessFacts p = process_facts();
  double rss;
  const char* rss_unit = scaled(p.peak_rss, &rss);
  fprintf(f,
          "wfmm: statistics of %s (pid %ld, wfmm %s): %.2f s, CPU %.2f s user + %.2f s sys, "
          "peak RSS %.1f %s\n",
          p.name, p.pid, WFMM_VERSION, p.wall_s, p.user_s, p.sys_s, rss, rss_unit);
  auto heading = [&](const char* what) {
    fprintf(f, "wfmm: %s (%s, pid %ld)\n", what, p.name, p.pid);
  };
  heading("memory");
  print_bytes(f, "in use", s.bytes_in_use);
  print_bytes(f, "in use, peak", s.bytes_in_use_peak);
  print_count(f, "live blocks", s.blocks_in_use, "");
  print_bytes(f, "committed", s.bytes_committed);
  print_bytes(f, "committed, peak", s.bytes_committed_peak);
  print_bytes(f, "mapped", s.bytes_mapped);
  if (p.rss != 0) print_bytes(f, "RSS (kernel)", p.rss);
  print_bytes(f, "RSS, peak (kernel)", p.peak_rss);
  if (s.segments_cached != 0) print_count(f, "cached", s.segments_cached, "empty segments");
  fprintf(f,
          "wfmm:   (committed: mapped by wfmm and not purged, at most wfmm's share of RSS;\n"
          "wfmm:    in use, peak: sampled as committed memory grows and at each report)\n");
  heading("calls");
  print_count(f, "malloc", s.malloc_count, "");
  print_count(f, "free", s.free_count, "");
  print_count(f, "threads now", s.threads, "");
  if (reclamation_used(s)) {
    heading("reclamation");
    print_count(f, "retired", s.retired, "blocks");
    print_count(f, "reclaimed", s.reclaimed, "blocks");
    print_count(f, "pending", s.retired_pending, "blocks");
    print_bytes(f, "pending", s.retired_pending_bytes);
    print_count(f, "era", s.era, "");
    print_count(f, "slow protects", s.protect_slow, "");
  }
  if (deferred_used(s)) {
    heading("deferred free");
    print_bytes(f, "held back now", s.deferred_bytes);
    print_bytes(f, "held back, peak", s.deferred_peak_bytes);
    print_count(f, "longest deferral", s.deferral_max_eras, "eras");
  }
  fflush(f);
}

void stats_print_json(FILE* f) {
  wfmm_stats s;
  stats_collect(&s);
  ProcessFacts p = process_facts();
  // One line: the process facts, then every field of struct wfmm_stats in struct order and
  // named as in wfmm.h, so a script maps them 1:1 (all of them, used or not).
  const struct {
    const char* name;
    uint64_t value;
  } fields[] = {
      {"bytes_in_use", s.bytes_in_use},
      {"bytes_mapped", s.bytes_mapped},
      {"bytes_committed", s.bytes_committed},
      {"blocks_in_use", s.blocks_in_use},
      {"retired", s.retired},
      {"reclaimed", s.reclaimed},
      {"retired_pending", s.retired_pending},
      {"retired_pending_bytes", s.retired_pending_bytes},
      {"era", s.era},
      {"protect_slow", s.protect_slow},
      {"threads", s.threads},
      {"malloc_count", s.malloc_count},
      {"free_count", s.free_count},
      {"segments_cached", s.segments_cached},
      {"deferred_bytes", s.deferred_bytes},
      {"deferred_peak_bytes", s.deferred_peak_bytes},
      {"deferral_max_eras", s.deferral_max_eras},
      {"bytes_committed_peak", s.bytes_committed_peak},
      {"bytes_in_use_peak", s.bytes_in_use_peak},
  };
  fprintf(f, "{\"wfmm\": \"%s\", \"program\": ", WFMM_VERSION);
  json_string(f, p.name);
  fprintf(f, ", \"pid\": %ld, \"wall_s\": %.3f, \"user_s\": %.3f, \"sys_s\": %.3f, "
          "\"rss_bytes\": %llu, \"peak_rss_bytes\": %llu", p.pid, p.wall_s, p.user_s, p.sys_s,
          (unsigned long long)p.rss, (unsigned long long)p.peak_rss);
  for (const auto& fl : fields) fprintf(f, ", \"%s\": %llu", fl.name, (unsigned long long)fl.value);
  fprintf(f, "}\n");
  fflush(f);
}

}  // namespace wfmm
