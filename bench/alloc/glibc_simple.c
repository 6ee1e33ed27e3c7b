/* glibc-simple: single-thread tight loops in the spirit of glibc's bench-malloc-simple (our
 * own implementation).
 *
 * For each size in {16, 64, 256, 1024, 4096} bytes and each batch length in {25, 100, 400,
 * 1600}: allocate the batch, write each block (first words and last word), then check and
 * free the blocks in allocation order. The whole sweep repeats `reps` times, so the live
 * set stays small and the allocator's fast paths dominate.
 *
 * Parameters (name=value):
 *   reps  repetitions of the sweep of 5 sizes x 4 batch lengths   default 350
 *   seed  seed for the content tags                                default 3
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"reps", 350, "repetitions of the size x batch-length sweep"},
    {"seed", 3, "seed for the content tags"},
    {0, 0, 0},
};

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "glibc-simple: single-thread batches of one size, allocate then free.");
  long reps = param_in(P, "reps", 0, 1L << 40);
  static const size_t sizes[] = {16, 64, 256, 1024, 4096};
  static const long lens[] = {25, 100, 400, 1600};
  rng_t r = rng_make((uint64_t)param(P, "seed"), 0, 4);
  obj_t *b = (obj_t *)MALLOC(1600 * sizeof(obj_t));
  uint64_t sum = 0;
  for (long rep = 0; rep < reps; rep++)
    for (int si = 0; si < 5; si++)
      for (int li = 0; li < 4; li++) {
        for (long i = 0; i < lens[li]; i++) b[i] = obj_new(sizes[si], &r);
        for (long i = 0; i < lens[li]; i++) sum += obj_free(&b[i]);
      }
  free(b);
  print_result("glibc-simple", P, sum);
  return 0;
}
