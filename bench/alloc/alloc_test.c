/* alloc-test: the size spectrum from 16 B to 64 KiB, in the spirit of the alloc-test
 * benchmark (our own implementation).
 *
 * Each of `threads` threads keeps `slots` blocks and, `ops` times, replaces a random one
 * with a block whose size is log-uniform in [min, max] (every power-of-two octave equally
 * likely, uniform inside it), so every size class from tiny to the large-block range is
 * exercised about equally often per octave. Threads do not share blocks.
 *
 * Parameters (name=value):
 *   threads  threads                        default 2
 *   ops      replacements per thread        default 2000000
 *   slots    working-set blocks per thread  default 2048
 *   min,max  size range in bytes            default 16, 65536
 *   seed     random seed                    default 13
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 2, "threads"},
    {"ops", 2000000, "replacements per thread"},
    {"slots", 2048, "working-set blocks per thread"},
    {"min", 16, "smallest block (bytes)"},
    {"max", 65536, "largest block (bytes)"},
    {"seed", 13, "random seed"},
    {0, 0, 0},
};

static long ops, nslots, min, max;
static uint64_t seed;

/* Log-uniform: a random octave [2^k, 2^(k+1)) clipped to [min, max], then uniform in it. */
static size_t pick_size(rng_t *r) {
  int lo = 63 - __builtin_clzl((unsigned long)min), hi = 63 - __builtin_clzl((unsigned long)max);
  int k = lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
  uint64_t a = 1ull << k, b = (2ull << k) - 1;
  if (a < (uint64_t)min) a = (uint64_t)min;
  if (b > (uint64_t)max) b = (uint64_t)max;
  return (size_t)rng_range(r, a, b);
}

static uint64_t work(long id) {
  rng_t r = rng_make(seed, (uint64_t)id, 6);
  obj_t *s = (obj_t *)CALLOC((size_t)nslots, sizeof(obj_t));
  uint64_t sum = 0;
  for (long i = 0; i < ops; i++) {
    obj_t *o = &s[rng_next(&r) % (uint64_t)nslots];
    sum += obj_free(o);
    *o = obj_new(pick_size(&r), &r);
  }
  for (long i = 0; i < nslots; i++) sum += obj_free(&s[i]);
  free(s);
  return sum;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "alloc-test: log-uniform size spectrum, per-thread working sets.");
  long threads = param_in(P, "threads", 1, 64);
  ops = param_in(P, "ops", 0, 1L << 40);
  nslots = param_in(P, "slots", 1, 1L << 24);
  min = param_in(P, "min", 1, 1L << 30);
  max = param_in(P, "max", min, 1L << 30);
  seed = (uint64_t)param(P, "seed");
  uint64_t sum = run_workers(threads, work);
  print_result("alloc-test", P, sum);
  return 0;
}
