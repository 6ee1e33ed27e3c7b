/* larson: a server simulation in the style of Larson and Krishnan's benchmark (our own
 * implementation).
 *
 * `threads` independent chains run at once. Each chain owns an array of `slots` live
 * blocks (sizes uniform in [min, max]), filled before the chains start. A chain runs
 * `rounds` rounds, each in a new thread: the thread performs `ops` replacements (pick a
 * random slot, check and free its block, allocate a new block of a random size and fill
 * it), then starts the chain's next thread, hands it the array and exits; the successor
 * joins it. So nearly every free releases a block that an earlier, already exited, thread
 * allocated (the blocks of the first round were allocated by the main thread), and the
 * chains' threads allocate and exit concurrently, like a server whose connections are
 * served by short-lived threads that inherit each other's objects.
 *
 * Parameters (name=value):
 *   threads  concurrent chains (threads alive at once)      default 2
 *   rounds   threads per chain (one round each)              default 60
 *   ops      replacements per round                          default 80000
 *   slots    live blocks per chain                           default 5000
 *   min,max  block size range in bytes                       default 8, 1000
 *   seed     random seed                                     default 4141
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 2, "concurrent chains of threads"},
    {"rounds", 60, "threads per chain (one round each)"},
    {"ops", 80000, "block replacements per round"},
    {"slots", 5000, "live blocks per chain"},
    {"min", 8, "smallest block (bytes)"},
    {"max", 1000, "largest block (bytes)"},
    {"seed", 4141, "random seed"},
    {0, 0, 0},
};

typedef struct chain {
  obj_t *slots;
  long nslots, ops, rounds, round, min, max;
  rng_t rng;
  pthread_t prev;   /* the thread to join (the chain's previous thread) */
  int has_prev;
  uint64_t sum;
  pthread_mutex_t *done_mu;
  pthread_cond_t *done_cv;
  int *done;
  char pad[64];  /* keep neighbouring records apart (the hot state is local anyway) */
} chain_t;

static void *round_thread(void *arg) {
  chain_t *c = (chain_t *)arg;
  if (c->has_prev) xpthread_join(c->prev);
  rng_t r = c->rng;
  uint64_t sum = 0;
  for (long i = 0; i < c->ops; i++) {
    obj_t *o = &c->slots[rng_next(&r) % (uint64_t)c->nslots];
    sum += obj_free(o);
    *o = obj_new(rng_range(&r, (uint64_t)c->min, (uint64_t)c->max), &r);
  }
  c->rng = r;
  c->sum += sum;
  if (++c->round < c->rounds) {
    c->prev = pthread_self();
    c->has_prev = 1;
    pthread_t next;
    xpthread_create(&next, round_thread, c);  /* the successor joins this thread */
  } else {
    /* Last round: detach ourselves by letting main know; main does not join us. */
    pthread_detach(pthread_self());
    pthread_mutex_lock(c->done_mu);
    (*c->done)++;
    pthread_cond_signal(c->done_cv);
    pthread_mutex_unlock(c->done_mu);
  }
  return NULL;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P,
               "larson-style server simulation: chains of short-lived threads inherit and "
               "replace each other's blocks.");
  long threads = param_in(P, "threads", 1, 64), rounds = param_in(P, "rounds", 1, 1L << 30);
  long ops = param_in(P, "ops", 0, 1L << 40), slots = param_in(P, "slots", 1, 1L << 26);
  long min = param_in(P, "min", 1, 1L << 30), max = param_in(P, "max", min, 1L << 30);
  uint64_t seed = (uint64_t)param(P, "seed");

  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  int done = 0;
  chain_t *ch = (chain_t *)CALLOC((size_t)threads, sizeof(chain_t));
  for (long t = 0; t < threads; t++) {
    chain_t *c = &ch[t];
    c->slots = (obj_t *)MALLOC((size_t)slots * sizeof(obj_t));
    c->nslots = slots;
    c->ops = ops;
    c->rounds = rounds;
    c->min = min;
    c->max = max;
    c->rng = rng_make(seed, (uint64_t)t, 1);
    for (long i = 0; i < slots; i++)
      c->slots[i] = obj_new(rng_range(&c->rng, (uint64_t)min, (uint64_t)max), &c->rng);
    c->done_mu = &mu;
    c->done_cv = &cv;
    c->done = &done;
  }
  for (long t = 0; t < threads; t++) {
    pthread_t th;
    xpthread_create(&th, round_thread, &ch[t]);
  }
  pthread_mutex_lock(&mu);
  while (done < threads) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);

  uint64_t sum = 0;
  for (long t = 0; t < threads; t++) {
    for (long i = 0; i < slots; i++) sum += obj_free(&ch[t].slots[i]);
    sum += ch[t].sum;
    free(ch[t].slots);
  }
  free(ch);
  print_result("larson", P, sum);
  return 0;
}
