/* The wfmm_* allocation API under ASan (linked to libwfmm.so; ASan's malloc serves the
 * standard names): blocks freed with wfmm_free are poisoned, and every way of getting one
 * back (malloc, calloc, realloc, aligned_alloc) must hand it out usable, with calloc's
 * zeroes and realloc's copy intact. `clean` must draw no report; `uaf` reads a block after
 * wfmm_free and ASan must report it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wfmm/wfmm.h>

static int check_zero(const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0) return 0;
  return 1;
}

int main(int argc, char** argv) {
  int uaf = argc > 1 && strcmp(argv[1], "uaf") == 0;
  static const size_t sizes[] = {16, 24, 100, 1000, 5000, 70000, 300000};
  /* Bound: 50 rounds over 7 sizes. */
  for (int round = 0; round < 50; ++round) {
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; ++k) {
      size_t n = sizes[k];
      unsigned char* p = wfmm_malloc(n);
      memset(p, 0xa5, n);
      wfmm_free(p);
      unsigned char* q = wfmm_calloc(1, n); /* likely p again: poisoned, then cleared */
      if (!check_zero(q, n)) { fprintf(stderr, "calloc not zero (%zu)\n", n); return 1; }
      for (size_t i = 0; i < n; ++i) q[i] = (unsigned char)(i * 7);
      q = wfmm_realloc(q, n * 2 + 1);
      for (size_t i = 0; i < n; ++i)
        if (q[i] != (unsigned char)(i * 7)) { fprintf(stderr, "realloc lost bytes\n"); return 1; }
      memset(q + n, 1, n + 1);
      wfmm_free(q);
      unsigned char* a = wfmm_aligned_alloc(64, n);
      memset(a, 2, n);
      wfmm_free(a);
    }
  }
  if (uaf) {
    volatile unsigned char* p = wfmm_malloc(64);
    p[0] = 1;
    wfmm_free((void*)p);
    printf("read %d\n", p[0]); /* ASan: use-after-poison here */
  }
  puts("api_cycle: ok");
  return 0;
}
