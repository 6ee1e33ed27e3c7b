// Prints every option's effective value after start-up, so tests can check how the
// environment was parsed (including the warnings on stderr).
#include <stdio.h>

#include <initializer_list>

#include "wfmm/wfmm.h"

int main() {
  void* p = wfmm_malloc(10);
  wfmm_free(p);
  for (const char* n : {"verbose", "show_stats", "on_error", "purge_delay_ms", "segment_cache"})
    printf("%s=%ld\n", n, wfmm_option_get(n));
  return 0;
}
