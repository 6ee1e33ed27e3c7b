/* rptest: a mixed workload in the spirit of rpmalloc's rptest (our own implementation).
 *
 * Each of `threads` threads loops `iterations` times. An iteration allocates a burst of
 * `burst` blocks (sizes: 70% 16..128 B, 25% 129 B..4 KiB, 5% 4..64 KiB) into a FIFO ring
 * of up to `live` blocks, freeing the oldest when the ring is full; reallocates 1 in 16 of
 * the new blocks to a random size (content checked); every 4th iteration hands `handoff`
 * of its oldest blocks to the next thread's inbox (a mutex-protected list); and frees
 * everything in its own inbox (remote frees of blocks another live thread allocated). What
 * a thread allocates never depends on what it receives, so the checksum is fixed.
 *
 * Parameters (name=value):
 *   threads     threads                               default 2
 *   iterations  iterations per thread                 default 40000
 *   burst       blocks allocated per iteration        default 32
 *   live        ring capacity (live blocks per thread) default 4096
 *   handoff     blocks sent per handoff               default 32
 *   seed        random seed                           default 17
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 2, "threads"},
    {"iterations", 40000, "iterations per thread"},
    {"burst", 32, "blocks allocated per iteration"},
    {"live", 4096, "ring capacity: live blocks per thread"},
    {"handoff", 32, "blocks sent to the next thread every 4th iteration"},
    {"seed", 17, "random seed"},
    {0, 0, 0},
};

static long threads, iterations, burst, live, handoff;
static uint64_t seed;

typedef struct msg {
  struct msg *next;
  long n;
  obj_t o[];
} msg_t;

typedef struct {
  pthread_mutex_t mu;
  msg_t *head;
  char pad[64];
} inbox_t;

static inbox_t *inbox;

static size_t pick_size(rng_t *r) {
  uint64_t k = rng_next(r) % 100;
  if (k < 70) return (size_t)rng_range(r, 16, 128);
  if (k < 95) return (size_t)rng_range(r, 129, 4096);
  return (size_t)rng_range(r, 4097, 65536);
}

static uint64_t drain(inbox_t *in) {
  pthread_mutex_lock(&in->mu);
  msg_t *m = in->head;
  in->head = NULL;
  pthread_mutex_unlock(&in->mu);
  uint64_t sum = 0;
  while (m) {
    msg_t *next = m->next;
    for (long i = 0; i < m->n; i++) sum += obj_free(&m->o[i]);
    free(m);
    m = next;
  }
  return sum;
}

static uint64_t work(long id) {
  rng_t r = rng_make(seed, (uint64_t)id, 7);
  obj_t *ring = (obj_t *)CALLOC((size_t)live, sizeof(obj_t));
  long head = 0, count = 0;  /* oldest at ring[head] */
  uint64_t sum = 0;
  for (long it = 0; it < iterations; it++) {
    for (long b = 0; b < burst; b++) {
      if (count == live) {
        sum += obj_free(&ring[head]);
        head = (head + 1) % live;
        count--;
      }
      obj_t *o = &ring[(head + count) % live];
      *o = obj_new(pick_size(&r), &r);
      count++;
      if (rng_next(&r) % 16 == 0) {
        size_t n = pick_size(&r);
        sum += check_upto(o->p, o->n, o->tag, n, "before realloc");
        o->p = REALLOC(o->p, n);
        sum += check_upto(o->p, o->n, o->tag, n, "after realloc");
        o->n = n;
        o->tag = rng_next(&r);
        fill(o->p, n, o->tag);
      }
    }
    if (threads > 1 && it % 4 == 3) {
      long n = handoff < count ? handoff : count;
      msg_t *m = (msg_t *)MALLOC(sizeof(msg_t) + (size_t)n * sizeof(obj_t));
      m->n = n;
      for (long i = 0; i < n; i++) {
        m->o[i] = ring[head];
        ring[head].p = NULL;
        head = (head + 1) % live;
        count--;
      }
      inbox_t *to = &inbox[(id + 1) % threads];
      pthread_mutex_lock(&to->mu);
      m->next = to->head;
      to->head = m;
      pthread_mutex_unlock(&to->mu);
    }
    sum += drain(&inbox[id]);
  }
  for (long i = 0; i < live; i++) sum += obj_free(&ring[i]);
  free(ring);
  return sum;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "rptest-style mixed workload with handoffs between threads.");
  threads = param_in(P, "threads", 1, 64);
  iterations = param_in(P, "iterations", 0, 1L << 40);
  burst = param_in(P, "burst", 1, 1L << 20);
  live = param_in(P, "live", 1, 1L << 24);
  handoff = param_in(P, "handoff", 0, 1L << 20);
  seed = (uint64_t)param(P, "seed");
  inbox = (inbox_t *)CALLOC((size_t)threads, sizeof(inbox_t));
  for (long t = 0; t < threads; t++) pthread_mutex_init(&inbox[t].mu, NULL);
  uint64_t sum = run_workers(threads, work);
  for (long t = 0; t < threads; t++) sum += drain(&inbox[t]);  /* sent after the last drain */
  free(inbox);
  print_result("rptest", P, sum);
  return 0;
}
