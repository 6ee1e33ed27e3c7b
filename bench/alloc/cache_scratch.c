/* cache-scratch: passive false sharing, in the style of the Hoard suite's cache-scratch
 * (our own implementation).
 *
 * The main thread allocates one small block per worker thread, back to back, so the blocks
 * are likely to share cache lines, and hands block i to thread i. Each thread frees the
 * block it was given (a remote free) and then, `iterations` times: allocates an `objsize`
 * block, writes every byte `writes` times, checks the bytes and frees the block. An
 * allocator that reuses the freed (main-owned) block, or otherwise hands neighbouring bytes
 * of one cache line to different threads, makes the threads' writes contend for the line.
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

typedef struct {
  void *given;
  uint64_t sum;
} worker_t;

static void *worker(void *arg) {
  worker_t *w = (worker_t *)arg;
  uint64_t sum = hammer(w->given, objsize, 1);  /* local: the worker_t records share lines */
  free(w->given);
  for (long i = 0; i < iterations; i++) {
    void *p = MALLOC((size_t)objsize);
    sum += hammer(p, objsize, writes);
    free(p);
  }
  w->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "cache-scratch: passive false sharing through freed blocks.");
  long threads = param_in(P, "threads", 1, 64);
  iterations = param_in(P, "iterations", 0, 1L << 40);
  objsize = param_in(P, "objsize", 1, 1L << 20);
  writes = param_in(P, "writes", 1, 1L << 30);
  worker_t *w = (worker_t *)CALLOC((size_t)threads, sizeof(worker_t));
  pthread_t *th = (pthread_t *)MALLOC((size_t)threads * sizeof(pthread_t));
  for (long t = 0; t < threads; t++) w[t].given = MALLOC((size_t)objsize);
  for (long t = 0; t < threads; t++) xpthread_create(&th[t], worker, &w[t]);
  uint64_t sum = 0;
  for (long t = 0; t < threads; t++) {
    xpthread_join(th[t]);
    sum += w[t].sum;
  }
  free(th);
  free(w);
  print_result("cache-scratch", P, sum);
  return 0;
}
