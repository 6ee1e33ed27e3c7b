/* sh6bench: batches of blocks freed in mixed orders, in the spirit of MicroQuill's sh6bench
 * (our own implementation). Threads work independently.
 *
 * Each of `threads` threads, `iterations` times: allocates `batch` blocks whose sizes sweep
 * [min, max] (block i of iteration j: min + (7*i + 13*j) mod (max-min+1)), frees the
 * odd-numbered blocks last-first, allocates them again with the sweep reversed, then frees
 * the whole batch first-first. Every block is filled and checked before it is freed.
 *
 * Parameters (name=value):
 *   threads     threads                        default 2
 *   iterations  batches per thread             default 6000
 *   batch       blocks per batch               default 1000
 *   min,max     block size range in bytes      default 1, 1000
 *   seed        seed for the content tags      default 19
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 2, "threads"},
    {"iterations", 6000, "batches per thread"},
    {"batch", 1000, "blocks per batch"},
    {"min", 1, "smallest block (bytes)"},
    {"max", 1000, "largest block (bytes)"},
    {"seed", 19, "seed for the content tags"},
    {0, 0, 0},
};

static long iterations, batch, min, max;
static uint64_t seed;

static uint64_t work(long id) {
  rng_t r = rng_make(seed, (uint64_t)id, 8);
  obj_t *b = (obj_t *)CALLOC((size_t)batch, sizeof(obj_t));
  uint64_t span = (uint64_t)(max - min + 1), sum = 0;
  for (long j = 0; j < iterations; j++) {
    for (long i = 0; i < batch; i++)
      b[i] = obj_new((size_t)min + (7 * (uint64_t)i + 13 * (uint64_t)j) % span, &r);
    for (long i = (batch - 1) | 1; i >= 1; i -= 2)
      if (i < batch) sum += obj_free(&b[i]);
    for (long i = 1; i < batch; i += 2)
      b[i] = obj_new((size_t)min + (7 * (uint64_t)(batch - i) + 13 * (uint64_t)j) % span, &r);
    for (long i = 0; i < batch; i++) sum += obj_free(&b[i]);
  }
  free(b);
  return sum;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "sh6bench-style batches freed in mixed orders, per thread.");
  long threads = param_in(P, "threads", 1, 64);
  iterations = param_in(P, "iterations", 0, 1L << 40);
  batch = param_in(P, "batch", 1, 1L << 24);
  min = param_in(P, "min", 1, 1L << 30);
  max = param_in(P, "max", min, 1L << 30);
  seed = (uint64_t)param(P, "seed");
  uint64_t sum = run_workers(threads, work);
  print_result("sh6bench", P, sum);
  return 0;
}
