/* cache-thrash: active false sharing, in the style of the Hoard suite's cache-thrash (our
 * own implementation).
 *
 * Each of `threads` threads, `iterations` times: allocates an `objsize` block, writes every
 * byte `writes` times, checks the bytes and frees the block. The threads start together;
 * an allocator that carves the threads' small blocks from one shared cache line (one heap,
 * one free list) makes their writes contend for it.
 *
 * Parameters (name=value):
 *   threads     worker threads                        default 2
 *   iterations  allocate/write/free cycles per thread default 150000
 *   objsize     block size in bytes                   default 8
 *   writes      passes over the block per cycle       default 500
 * Output: one line with the parameters and the sum of every block's final bytes.
 */
#include "cache.h"

static param_t P[] = {
    {"threads", 2, "worker threads"},
    {"iterations", 150000, "allocate/write/free cycles per thread"},
    {"objsize", 8, "block size (bytes)"},
    {"writes", 500, "passes over the block per cycle"},
    {0, 0, 0},
};

static long iterations, objsize, writes;
static pthread_barrier_t start;

static void *worker(void *arg) {
  uint64_t sum = 0;
  pthread_barrier_wait(&start);
  for (long i = 0; i < iterations; i++) {
    void *p = MALLOC((size_t)objsize);
    sum += hammer(p, objsize, writes);
    free(p);
  }
  *(uint64_t *)arg = sum;
  return NULL;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "cache-thrash: active false sharing between threads' blocks.");
  long threads = param_in(P, "threads", 1, 64);
  iterations = param_in(P, "iterations", 0, 1L << 40);
  objsize = param_in(P, "objsize", 1, 1L << 20);
  writes = param_in(P, "writes", 1, 1L << 30);
  uint64_t *sums = (uint64_t *)CALLOC((size_t)threads, 64);
  pthread_t *th = (pthread_t *)MALLOC((size_t)threads * sizeof(pthread_t));
  pthread_barrier_init(&start, NULL, (unsigned)threads);
  for (long t = 0; t < threads; t++) xpthread_create(&th[t], worker, &sums[t * 8]);
  uint64_t sum = 0;
  for (long t = 0; t < threads; t++) {
    xpthread_join(th[t]);
    sum += sums[t * 8];
  }
  pthread_barrier_destroy(&start);
  free(th);
  free(sums);
  print_result("cache-thrash", P, sum);
  return 0;
}
