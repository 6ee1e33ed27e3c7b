/* A C program linked with -lwfmm (or libwfmm.a): the standard malloc is wfmm's, and the
 * wfmm_* API is available. Exits non-zero on any mismatch. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wfmm/fast.h"
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
  /* The inline fast paths (wfmm/fast.h) link against this library's exported state and
   * behave as the calls: nesting, protect of a root, a node retired while protected. */
  CHECK(wfmm_option_set("poison", 1) == 0); /* a freed block would read 0xdbdbdbdb */
  static void* volatile root;
  int* node = malloc(sizeof(int));
  *node = 42;
  root = node;
  wfmm_enter_fast(); /* the first use claims the record (a call), the second is inline */
  wfmm_leave_fast();
  wfmm_enter_fast();
  wfmm_enter_fast();
  int* seen = wfmm_protect_fast((void* const volatile*)&root, 0);
  CHECK(seen == node);
  root = NULL;
  wfmm_retire(node);
  wfmm_flush();
  CHECK(*seen == 42); /* protected: not freed (nor poisoned) while the region is open */
  CHECK(wfmm_protect_fast((void* const volatile*)&root, 1) == NULL);
  wfmm_leave_fast();
  wfmm_leave_fast();
  wfmm_barrier(); /* now it is freed */
  wfmm_stats_get(&b);
  CHECK(b.retired == b.reclaimed);
  printf("ok\n");
  return 0;
}
