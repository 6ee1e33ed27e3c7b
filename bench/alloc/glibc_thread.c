/* glibc-thread: per-thread random replacement in the spirit of glibc's bench-malloc-thread
 * (our own implementation).
 *
 * Each of `threads` threads keeps a private working set of `slots` blocks and, `ops` times,
 * replaces a random one: check and free the old block, allocate a new one of a random size
 * (75% 16..128 B, 20% 129 B..1 KiB, 5% 1..32 KiB) and fill it. No block crosses threads;
 * this measures the per-thread fast paths and scaling.
 *
 * Parameters (name=value):
 *   threads  threads                        default 2
 *   ops      replacements per thread        default 9000000
 *   slots    working-set blocks per thread  default 1000
 *   seed     random seed                    default 5
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 2, "threads"},
    {"ops", 9000000, "replacements per thread"},
    {"slots", 1000, "working-set blocks per thread"},
    {"seed", 5, "random seed"},
    {0, 0, 0},
};

static long ops, nslots;
static uint64_t seed;

static size_t pick_size(rng_t *r) {
  uint64_t k = rng_next(r) % 100;
  if (k < 75) return (size_t)rng_range(r, 16, 128);
  if (k < 95) return (size_t)rng_range(r, 129, 1024);
  return (size_t)rng_range(r, 1025, 32768);
}

static uint64_t work(long id) {
  rng_t r = rng_make(seed, (uint64_t)id, 5);
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
  params_parse(argc, argv, P, "glibc-thread: per-thread random replacement in a working set.");
  long threads = param_in(P, "threads", 1, 64);
  ops = param_in(P, "ops", 0, 1L << 40);
  nslots = param_in(P, "slots", 1, 1L << 24);
  seed = (uint64_t)param(P, "seed");
  uint64_t sum = run_workers(threads, work);
  print_result("glibc-thread", P, sum);
  return 0;
}
