/* malloc-large: large blocks of 2 to 20 MiB, in the spirit of mimalloc-bench's malloc-large
 * (our own implementation).
 *
 * One thread keeps `window` live blocks and, `ops` times, replaces a random one: check and
 * free the old block, allocate a new one of a random size in [min_kib, max_kib] KiB (plus a
 * random 0..4095 bytes, so sizes are not page multiples) and write one word in every 4 KiB
 * page of it (so every page is touched and counts in RSS). This measures how an allocator
 * maps, reuses and returns large blocks: fresh mappings cost a page fault per page.
 *
 * Parameters (name=value):
 *   ops              replacements                    default 800
 *   window           live blocks                     default 8
 *   min_kib,max_kib  size range in KiB               default 2048, 20480 (2 to 20 MiB)
 *   seed             random seed                     default 29
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"ops", 800, "block replacements"},
    {"window", 8, "live blocks"},
    {"min_kib", 2048, "smallest block (KiB)"},
    {"max_kib", 20480, "largest block (KiB)"},
    {"seed", 29, "random seed"},
    {0, 0, 0},
};

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "malloc-large: random replacement of 2-20 MiB blocks.");
  long ops = param_in(P, "ops", 0, 1L << 40), window = param_in(P, "window", 1, 1L << 20);
  long min = param_in(P, "min_kib", 1, 1L << 24), max = param_in(P, "max_kib", min, 1L << 24);
  rng_t r = rng_make((uint64_t)param(P, "seed"), 0, 10);
  obj_t *s = (obj_t *)CALLOC((size_t)window, sizeof(obj_t));
  uint64_t sum = 0;
  for (long i = 0; i < ops; i++) {
    obj_t *o = &s[rng_next(&r) % (uint64_t)window];
    sum += obj_free(o);
    size_t n = (size_t)rng_range(&r, (uint64_t)min, (uint64_t)max) * 1024 + rng_next(&r) % 4096;
    *o = obj_new(n, &r);
  }
  for (long i = 0; i < window; i++) sum += obj_free(&s[i]);
  free(s);
  print_result("malloc-large", P, sum);
  return 0;
}
