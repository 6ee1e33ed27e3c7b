/* A C program linked with -lwfmm (or libwfmm.a): the standard malloc is wfmm's, and the
 * wfmm_* API is available. Exits non-zero on any mismatch. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wfmm/wfmm.h"

#define CHECK(c)                                                     \
  do {                                                               \
    if (!(c)) {                                                      \
      fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__); \
      return 1;                                                      \
    }                                                                \
  } while (0)

int main(void) {
  struct wfmm_stats a, b;
  wfmm_stats_get(&a);
  void* ps[1000];
  for (int i = 0; i < 1000; ++i) {
    ps[i] = malloc(24);
    memset(ps[i], i & 0xff, 24);
  }
  wfmm_stats_get(&b);
  CHECK(b.malloc_count - a.malloc_count >= 1000); /* malloc went to wfmm */
  CHECK(malloc_usable_size(ps[0]) == wfmm_usable_size(ps[0]));
  for (int i = 0; i < 1000; ++i) free(ps[i]);
  char* s = strdup("a string from libc's strdup"); /* libc-internal allocation */
  CHECK(wfmm_usable_size(s) >= strlen(s) + 1);
  free(s);
  void* q = wfmm_malloc(100);
  q = wfmm_realloc(q, 100000);
  CHECK(q != NULL);
  wfmm_free(q);
  void* al = NULL;
  CHECK(posix_memalign(&al, 4096, 100) == 0 && ((unsigned long)al & 4095) == 0);
  free(al);
  CHECK(wfmm_option_set("purge_delay_ms", 10) == 0 && wfmm_option_get("purge_delay_ms") == 10);
  printf("ok\n");
  return 0;
}
