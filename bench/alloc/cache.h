/* The write loop shared by cache-scratch and cache-thrash: each of `writes` passes adds
 * (k + pass) to byte k of the block, through a volatile pointer so every write reaches
 * memory. If two threads' blocks share a cache line (false sharing), the line bounces
 * between the cores and the loop runs many times slower. */
#ifndef WFMM_BENCH_ALLOC_CACHE_H
#define WFMM_BENCH_ALLOC_CACHE_H
#include "common.h"

/* Writes the block; returns the sum of its final bytes after checking them. */
static uint64_t hammer(void *p, long size, long writes) {
  volatile unsigned char *a = (volatile unsigned char *)p;
  for (long k = 0; k < size; k++) a[k] = (unsigned char)k;
  for (long w = 0; w < writes; w++)
    for (long k = 0; k < size; k++) a[k] = (unsigned char)(a[k] + k + w);
  uint64_t sum = 0;
  /* byte k ends as k + writes*k + writes*(writes-1)/2 (mod 256) */
  unsigned long tri = (unsigned long)writes * (unsigned long)(writes - 1) / 2;
  for (long k = 0; k < size; k++) {
    unsigned char want = (unsigned char)((unsigned long)k + (unsigned long)writes * (unsigned long)k + tri);
    if (a[k] != want) fail_block("after writes", p, (size_t)size, (size_t)k, a[k], want);
    sum += a[k];
  }
  return sum;
}
#endif
