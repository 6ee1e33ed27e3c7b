// Prints every option's effective value after start-up, so tests can check how the
// environment was parsed (including the warnings on stderr). With PROBE_WORKING_SET_MB=N it
// first allocates and frees an N MiB working set in 1000-byte blocks, with no statistics
// read in between, then prints the statistics (numbers, then wfmm_stats_print): a fresh
// process, so the growth sets new committed peaks whatever ran before.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>
#include <vector>

#include "wfmm/wfmm.h"

int main() {
  if (const char* mb = getenv("PROBE_WORKING_SET_MB")) {
    const size_t n = size_t(atol(mb)) * (size_t(1) << 20) / 1000;
    std::vector<void*> ps(n);
    for (void*& p : ps) {
      p = wfmm_malloc(1000);
      memset(p, 1, 1000);
    }
    const unsigned long long set = (unsigned long long)n * wfmm_usable_size(ps[0]);
    for (void* p : ps) wfmm_free(p);
    wfmm_stats s;
    wfmm_stats_get(&s);
    printf("set=%llu in_use=%llu in_use_peak=%llu committed_peak=%llu\n", set,
           (unsigned long long)s.bytes_in_use, (unsigned long long)s.bytes_in_use_peak,
           (unsigned long long)s.bytes_committed_peak);
    wfmm_stats_print(stdout);
  }
  void* p = wfmm_malloc(10);
  wfmm_free(p);
  for (const char* n :
       {"verbose", "show_stats", "on_error", "purge_delay_ms", "segment_cache", "huge_pages"})
    printf("%s=%ld\n", n, wfmm_option_get(n));
  return 0;
}
