/* mstress: random malloc/calloc/realloc/free with blocks moving between threads, in the
 * spirit of mimalloc-bench's mstress (our own implementation; the transfers happen at
 * barriers, so the work and the checksum do not depend on the schedule).
 *
 * `threads` threads each own `slots` slots. A round is `ops` operations per thread on a
 * random slot: an empty slot gets a new block (1 in 8 by calloc, checked to be zero);
 * a full slot's block is freed (2/8), reallocated to a new random size with its surviving
 * content checked (2/8), or freed and replaced (4/8). Sizes: 89% 16..256 B, 10%
 * 256 B..8 KiB, 1% 8..256 KiB. After each round, at a barrier, every thread passes the
 * first half of its slots to the previous thread and takes the next thread's half, so
 * frees and reallocs often act on blocks another (live) thread allocated.
 *
 * Parameters (name=value):
 *   threads  threads                          default 2
 *   rounds   rounds                           default 80
 *   ops      operations per thread per round  default 40000
 *   slots    slots per thread                 default 2000
 *   seed     random seed                      default 11
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 2, "threads"},
    {"rounds", 80, "rounds (a transfer after each)"},
    {"ops", 40000, "operations per thread per round"},
    {"slots", 2000, "slots per thread"},
    {"seed", 11, "random seed"},
    {0, 0, 0},
};

static long threads, rounds, ops, nslots;
static uint64_t seed;
static pthread_barrier_t bar;
static obj_t **slots;   /* slots[t]: thread t's slots */
static obj_t **xfer;    /* xfer[t]: half a slot array in transit from thread t */

static size_t pick_size(rng_t *r) {
  uint64_t k = rng_next(r) % 100;
  if (k < 89) return (size_t)rng_range(r, 16, 256);
  if (k < 99) return (size_t)rng_range(r, 257, 8192);
  return (size_t)rng_range(r, 8193, 256 * 1024);
}

static uint64_t work(long id) {
  rng_t r = rng_make(seed, (uint64_t)id, 3);
  uint64_t sum = 0;
  long half = nslots / 2;
  for (long round = 0; round < rounds; round++) {
    obj_t *s = slots[id];
    for (long i = 0; i < ops; i++) {
      obj_t *o = &s[rng_next(&r) % (uint64_t)nslots];
      uint64_t action = rng_next(&r) % 8;
      if (!o->p) {
        size_t n = pick_size(&r);
        if (action == 0) {
          o->p = CALLOC(1, n);
          check_zero(o->p, n);
          o->n = n;
          o->tag = rng_next(&r);
          fill(o->p, n, o->tag);
        } else {
          *o = obj_new(n, &r);
        }
      } else if (action < 2) {
        sum += obj_free(o);
      } else if (action < 4) {
        size_t n = pick_size(&r);
        sum += check_upto(o->p, o->n, o->tag, n, "before realloc");
        o->p = REALLOC(o->p, n);
        sum += check_upto(o->p, o->n, o->tag, n, "after realloc");
        o->n = n;
        o->tag = rng_next(&r);
        fill(o->p, n, o->tag);
      } else {
        sum += obj_free(o);
        *o = obj_new(pick_size(&r), &r);
      }
    }
    /* Transfer: my first half goes to the previous thread; I take the next thread's. */
    memcpy(xfer[id], s, (size_t)half * sizeof(obj_t));
    pthread_barrier_wait(&bar);
    memcpy(s, xfer[(id + 1) % threads], (size_t)half * sizeof(obj_t));
    pthread_barrier_wait(&bar);
  }
  for (long i = 0; i < nslots; i++) sum += obj_free(&slots[id][i]);
  return sum;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P,
               "mstress-style random malloc/calloc/realloc/free with transfers between "
               "threads.");
  threads = param_in(P, "threads", 1, 64);
  rounds = param_in(P, "rounds", 0, 1L << 30);
  ops = param_in(P, "ops", 0, 1L << 40);
  nslots = param_in(P, "slots", 2, 1L << 24);
  seed = (uint64_t)param(P, "seed");
  pthread_barrier_init(&bar, NULL, (unsigned)threads);
  slots = (obj_t **)MALLOC((size_t)threads * sizeof(obj_t *));
  xfer = (obj_t **)MALLOC((size_t)threads * sizeof(obj_t *));
  for (long t = 0; t < threads; t++) {
    slots[t] = (obj_t *)CALLOC((size_t)nslots, sizeof(obj_t));
    xfer[t] = (obj_t *)MALLOC((size_t)(nslots / 2) * sizeof(obj_t));
  }
  uint64_t sum = run_workers(threads, work);
  for (long t = 0; t < threads; t++) {
    free(slots[t]);
    free(xfer[t]);
  }
  free(slots);
  free(xfer);
  pthread_barrier_destroy(&bar);
  print_result("mstress", P, sum);
  return 0;
}
