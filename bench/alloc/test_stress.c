/* test-stress: many short-lived threads, every block from calloc and written whole, blocks
 * swapped between threads through shared slots (the shape of mimalloc's test-stress; our own
 * program, written for wfmm).
 *
 * `rounds` times, the main thread starts `threads` threads and joins them. Each thread does
 * `ops` steps. A step allocates a block with calloc (sizes: 8..256 B, 1% of them 100x and a
 * tenth of those 1000x bigger, up to 250 KiB), checks that every byte reads zero and writes
 * every word; or it keeps the block for its whole life ("retained", up to 2 KiB, a quarter
 * of the steps until `retain` of them are kept). Then, two thirds of the time, it checks and
 * frees one of its blocks at random; a quarter of the time it swaps one of its blocks with
 * one of `slots` shared slots (an atomic exchange), so blocks are freed by threads other
 * than their allocator, often after that thread exited. At its end a thread checks and
 * frees everything it holds; the slots live on to the next round and are emptied at exit.
 * So the allocator sees fresh threads every round, calloc of memory that was just freed
 * (dirty) or is fresh from the kernel (zero already), and remote frees into the heaps of
 * threads that are gone.
 *
 * Every block holds its size in words (word 0), its tag (word 1) and a tag-derived pattern
 * in every other word; each is checked entirely before its free (exit status 3 on a
 * mismatch, as everywhere in bench/alloc).
 *
 * Parameters (name=value):
 *   threads   threads per round                 default 16
 *   rounds    rounds of thread creation         default 20
 *   ops       steps per thread per round        default 6000
 *   retain    blocks a thread keeps till exit   default 500
 *   slots     shared exchange slots             default 1000
 *   seed      random seed                       default 37
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 16, "threads per round"},
    {"rounds", 20, "rounds of thread creation"},
    {"ops", 6000, "steps per thread per round"},
    {"retain", 500, "blocks a thread keeps until it exits"},
    {"slots", 1000, "shared exchange slots"},
    {"seed", 37, "random seed"},
    {0, 0, 0},
};

static long ops, retain, nslots;
static uint64_t seed;
static uint64_t **slots; /* shared; accessed with atomic exchanges only */

/* A block of n >= 2 words: n, tag, then pat(tag, i). calloc'd memory must read zero. */
static uint64_t *block_new(size_t n, rng_t *r) {
  uint64_t *p = (uint64_t *)CALLOC(n, sizeof(uint64_t));
  for (size_t i = 0; i < n; i++)
    if (p[i] != 0) fail_block("calloc not zero", p, n * 8, i * 8, p[i], 0);
  uint64_t tag = rng_next(r);
  p[0] = n;
  p[1] = tag;
  for (size_t i = 2; i < n; i++) p[i] = pat(tag, i);
  return p;
}

/* Checks every word, frees; returns a hash of the content (0 for null). */
static uint64_t block_free(uint64_t *p) {
  if (p == NULL) return 0;
  size_t n = (size_t)p[0];
  uint64_t tag = p[1];
  if (n < 2 || n > (1u << 20)) fail_block("size word", p, 16, 0, n, 0);
  for (size_t i = 2; i < n; i++)
    if (p[i] != pat(tag, i)) fail_block("before free", p, n * 8, i * 8, p[i], pat(tag, i));
  free(p);
  return pat(tag ^ n, 1) * 0x100000001B3ull;
}

/* Words for a new block: 1..32 words (min 2), 1% of them x100, a tenth of those x1000. */
static size_t pick_words(rng_t *r, unsigned max_shift) {
  size_t n = (size_t)1 << (rng_next(r) % max_shift);
  if (rng_next(r) % 100 == 0) n *= (rng_next(r) % 10 == 0) ? 1000 : 100;
  return n < 2 ? 2 : n;
}

typedef struct {
  long id, round;
  uint64_t sum;
} worker_t;

static void *worker(void *arg) {
  worker_t *w = (worker_t *)arg;
  rng_t r = rng_make(seed, (uint64_t)w->id, 1000 + (uint64_t)w->round);
  uint64_t **data = (uint64_t **)MALLOC((size_t)(ops + 1) * sizeof(uint64_t *));
  uint64_t **kept = (uint64_t **)MALLOC((size_t)(retain + 1) * sizeof(uint64_t *));
  long top = 0, ktop = 0;
  uint64_t sum = 0;
  for (long i = 0; i < ops; i++) {
    if (ktop < retain && rng_next(&r) % 4 == 0)
      kept[ktop++] = block_new(pick_words(&r, 9), &r);
    else
      data[top++] = block_new(pick_words(&r, 6), &r);
    if (top > 0 && rng_next(&r) % 3 != 0) {
      long k = (long)(rng_next(&r) % (uint64_t)top);
      sum += block_free(data[k]);
      data[k] = NULL;
    }
    if (top > 0 && rng_next(&r) % 4 == 0) {
      long k = (long)(rng_next(&r) % (uint64_t)top);
      long s = (long)(rng_next(&r) % (uint64_t)nslots);
      data[k] = __atomic_exchange_n(&slots[s], data[k], __ATOMIC_ACQ_REL);
    }
  }
  for (long i = 0; i < top; i++) sum += block_free(data[i]);
  for (long i = 0; i < ktop; i++) sum += block_free(kept[i]);
  free(data);
  free(kept);
  w->sum += sum;
  return NULL;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P,
               "test-stress: short-lived threads, calloc, blocks swapped between threads.");
  long threads = param_in(P, "threads", 1, 1024), rounds = param_in(P, "rounds", 0, 1L << 30);
  ops = param_in(P, "ops", 1, 1L << 30);
  retain = param_in(P, "retain", 0, 1L << 30);
  nslots = param_in(P, "slots", 1, 1L << 24);
  seed = (uint64_t)param(P, "seed");
  slots = (uint64_t **)CALLOC((size_t)nslots, sizeof(uint64_t *));
  pthread_t *th = (pthread_t *)MALLOC((size_t)threads * sizeof(pthread_t));
  worker_t *w = (worker_t *)CALLOC((size_t)threads, sizeof(worker_t));
  for (long g = 0; g < rounds; g++) {
    for (long t = 0; t < threads; t++) {
      w[t].id = t;
      w[t].round = g;
      xpthread_create(&th[t], worker, &w[t]);
    }
    for (long t = 0; t < threads; t++) xpthread_join(th[t]);
  }
  uint64_t sum = 0;
  for (long t = 0; t < threads; t++) sum += w[t].sum;
  for (long s = 0; s < nslots; s++) sum += block_free(slots[s]);
  free(slots);
  free(th);
  free(w);
  print_result("test-stress", P, sum);
  return 0;
}
