/* thread-churn: threads that allocate, free and exit in a loop (written for wfmm).
 *
 * `generations` times, the main thread starts `threads` threads and joins them. Each
 * thread first checks and frees the blocks the previous generation's thread of the same
 * index left for it (their owner has exited), then allocates `objects` blocks (sizes: 90%
 * 16..512 B, 10% 513 B..16 KiB), frees three quarters of them in a random order and
 * leaves the rest for the next generation, and exits. So the allocator sees a steady
 * stream of thread starts and exits, with blocks outliving the thread that allocated them.
 *
 * Parameters (name=value):
 *   threads      threads per generation          default 4
 *   generations  generations                     default 600
 *   objects      blocks allocated per thread     default 2000
 *   seed         random seed                     default 31
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 4, "threads per generation"},
    {"generations", 600, "generations of threads"},
    {"objects", 2000, "blocks allocated per thread"},
    {"seed", 31, "random seed"},
    {0, 0, 0},
};

static long objects;
static uint64_t seed;

typedef struct {
  long id, gen;
  obj_t *left;   /* objects/4 blocks left by the previous generation (or empty) */
  obj_t *work;   /* scratch array of `objects` slots */
  uint64_t sum;
} worker_t;

static size_t pick_size(rng_t *r) {
  if (rng_next(r) % 10) return (size_t)rng_range(r, 16, 512);
  return (size_t)rng_range(r, 513, 16384);
}

static void *worker(void *arg) {
  worker_t *w = (worker_t *)arg;
  rng_t r = rng_make(seed, (uint64_t)w->id, 11 + 1000 * (uint64_t)w->gen);
  long keep = objects / 4;
  uint64_t sum = 0;
  for (long i = 0; i < keep; i++) sum += obj_free(&w->left[i]);
  for (long i = 0; i < objects; i++) w->work[i] = obj_new(pick_size(&r), &r);
  /* Shuffle, free the first objects - keep, leave the rest. */
  for (long i = objects - 1; i > 0; i--) {
    long j = (long)(rng_next(&r) % (uint64_t)(i + 1));
    obj_t t = w->work[i];
    w->work[i] = w->work[j];
    w->work[j] = t;
  }
  for (long i = 0; i < objects - keep; i++) sum += obj_free(&w->work[i]);
  for (long i = 0; i < keep; i++) w->left[i] = w->work[objects - keep + i];
  w->sum += sum;
  return NULL;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "thread-churn: generations of threads that allocate, free and exit.");
  long threads = param_in(P, "threads", 1, 256), gens = param_in(P, "generations", 0, 1L << 30);
  objects = param_in(P, "objects", 0, 1L << 24);
  seed = (uint64_t)param(P, "seed");
  long keep = objects / 4;
  pthread_t *th = (pthread_t *)MALLOC((size_t)threads * sizeof(pthread_t));
  worker_t *w = (worker_t *)CALLOC((size_t)threads, sizeof(worker_t));
  for (long t = 0; t < threads; t++) {
    w[t].id = t;
    w[t].left = (obj_t *)CALLOC((size_t)keep + 1, sizeof(obj_t));
    w[t].work = (obj_t *)CALLOC((size_t)objects + 1, sizeof(obj_t));
  }
  for (long g = 0; g < gens; g++) {
    for (long t = 0; t < threads; t++) {
      w[t].gen = g;
      xpthread_create(&th[t], worker, &w[t]);
    }
    for (long t = 0; t < threads; t++) xpthread_join(th[t]);
  }
  uint64_t sum = 0;
  for (long t = 0; t < threads; t++) {
    for (long i = 0; i < keep; i++) sum += obj_free(&w[t].left[i]);
    sum += w[t].sum;
    free(w[t].left);
    free(w[t].work);
  }
  free(th);
  free(w);
  print_result("thread-churn", P, sum);
  return 0;
}
