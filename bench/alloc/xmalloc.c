/* xmalloc: producer/consumer in the style of Lever and Boreham's xmalloc-test (our own
 * implementation). Every free is remote.
 *
 * `producers` threads each allocate `objects` blocks (sizes uniform in [min, max]), fill
 * them and pass them in batches of `batch` pointers (the batch record itself is malloc'ed)
 * through one bounded queue (mutex and condition variables, `queue` batches deep) to
 * `consumers` threads, which check and free every block and the batch record. No thread
 * frees a block it allocated.
 *
 * Parameters (name=value):
 *   producers  allocating threads                  default 1
 *   consumers  freeing threads                     default 1
 *   objects    blocks per producer                 default 6000000
 *   batch      blocks per batch                    default 256
 *   queue      queue capacity in batches           default 64
 *   min,max    block size range in bytes           default 16, 512
 *   seed       random seed                         default 7
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"producers", 1, "allocating threads"},
    {"consumers", 1, "freeing threads"},
    {"objects", 6000000, "blocks per producer"},
    {"batch", 256, "blocks per batch"},
    {"queue", 64, "queue capacity (batches)"},
    {"min", 16, "smallest block (bytes)"},
    {"max", 512, "largest block (bytes)"},
    {"seed", 7, "random seed"},
    {0, 0, 0},
};

typedef struct {
  long n;
  obj_t o[];
} batch_t;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  batch_t **ring;
  long cap, head, count;
} Q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static void q_push(batch_t *b) {
  pthread_mutex_lock(&Q.mu);
  while (Q.count == Q.cap) pthread_cond_wait(&Q.not_full, &Q.mu);
  Q.ring[(Q.head + Q.count) % Q.cap] = b;
  Q.count++;
  pthread_cond_signal(&Q.not_empty);
  pthread_mutex_unlock(&Q.mu);
}

static batch_t *q_pop(void) {
  pthread_mutex_lock(&Q.mu);
  while (Q.count == 0) pthread_cond_wait(&Q.not_empty, &Q.mu);
  batch_t *b = Q.ring[Q.head];
  Q.head = (Q.head + 1) % Q.cap;
  Q.count--;
  pthread_cond_signal(&Q.not_full);
  pthread_mutex_unlock(&Q.mu);
  return b;
}

static long objects, batch, min, max;
static uint64_t seed;

typedef struct {
  long id;
  uint64_t sum;
} worker_t;

static void *producer(void *arg) {
  worker_t *w = (worker_t *)arg;
  rng_t r = rng_make(seed, (uint64_t)w->id, 2);
  for (long done = 0; done < objects;) {
    long n = objects - done < batch ? objects - done : batch;
    batch_t *b = (batch_t *)MALLOC(sizeof(batch_t) + (size_t)n * sizeof(obj_t));
    b->n = n;
    for (long i = 0; i < n; i++) b->o[i] = obj_new(rng_range(&r, (uint64_t)min, (uint64_t)max), &r);
    q_push(b);
    done += n;
  }
  return NULL;
}

static void *consumer(void *arg) {
  worker_t *w = (worker_t *)arg;
  uint64_t sum = 0;
  for (;;) {
    batch_t *b = q_pop();
    if (!b) break;  /* end marker */
    for (long i = 0; i < b->n; i++) sum += obj_free(&b->o[i]);
    free(b);
  }
  w->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "xmalloc-style producer/consumer: all frees are remote.");
  long np = param_in(P, "producers", 1, 64), nc = param_in(P, "consumers", 1, 64);
  objects = param_in(P, "objects", 0, 1L << 40);
  batch = param_in(P, "batch", 1, 1L << 20);
  Q.cap = param_in(P, "queue", 1, 1L << 20);
  min = param_in(P, "min", 1, 1L << 30);
  max = param_in(P, "max", min, 1L << 30);
  seed = (uint64_t)param(P, "seed");
  Q.ring = (batch_t **)MALLOC((size_t)Q.cap * sizeof(batch_t *));

  pthread_t *th = (pthread_t *)MALLOC((size_t)(np + nc) * sizeof(pthread_t));
  worker_t *w = (worker_t *)CALLOC((size_t)(np + nc), sizeof(worker_t));
  for (long i = 0; i < nc; i++) xpthread_create(&th[np + i], consumer, &w[np + i]);
  for (long i = 0; i < np; i++) {
    w[i].id = i;
    xpthread_create(&th[i], producer, &w[i]);
  }
  for (long i = 0; i < np; i++) xpthread_join(th[i]);
  for (long i = 0; i < nc; i++) q_push(NULL);
  uint64_t sum = 0;
  for (long i = 0; i < nc; i++) {
    xpthread_join(th[np + i]);
    sum += w[np + i].sum;
  }
  free(w);
  free(th);
  free(Q.ring);
  print_result("xmalloc", P, sum);
  return 0;
}
