/* sh8bench: batches of blocks, half freed locally and half by another thread, in the
 * spirit of MicroQuill's sh8bench (our own implementation).
 *
 * Each of `threads` threads, `iterations` times: allocates `batch` blocks whose sizes sweep
 * [min, max], frees the even-numbered ones last-first, sends the odd-numbered ones to the
 * next thread (a mutex/condition-variable mailbox), then waits for the previous thread's
 * batch and frees it first-first. So half of all frees are remote, of blocks whose owner
 * is alive and allocating. With threads=1 the thread sends to itself.
 *
 * Parameters (name=value):
 *   threads     threads                        default 2
 *   iterations  batches per thread             default 4500
 *   batch       blocks per batch               default 1000
 *   min,max     block size range in bytes      default 1, 1000
 *   seed        seed for the content tags      default 23
 * Output: one line with the parameters and the checksum of every block freed.
 */
#include "common.h"

static param_t P[] = {
    {"threads", 2, "threads"},
    {"iterations", 4500, "batches per thread"},
    {"batch", 1000, "blocks per batch"},
    {"min", 1, "smallest block (bytes)"},
    {"max", 1000, "largest block (bytes)"},
    {"seed", 23, "seed for the content tags"},
    {0, 0, 0},
};

static long threads, iterations, batch, min, max;
static uint64_t seed;

typedef struct msg {
  struct msg *next;
  long n;
  obj_t o[];
} msg_t;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  msg_t *head, *tail;
  char pad[64];
} mailbox_t;

static mailbox_t *box;

static void send_msg(mailbox_t *mb, msg_t *m) {
  m->next = NULL;
  pthread_mutex_lock(&mb->mu);
  if (mb->tail)
    mb->tail->next = m;
  else
    mb->head = m;
  mb->tail = m;
  pthread_cond_signal(&mb->cv);
  pthread_mutex_unlock(&mb->mu);
}

static msg_t *recv_msg(mailbox_t *mb) {
  pthread_mutex_lock(&mb->mu);
  while (!mb->head) pthread_cond_wait(&mb->cv, &mb->mu);
  msg_t *m = mb->head;
  mb->head = m->next;
  if (!mb->head) mb->tail = NULL;
  pthread_mutex_unlock(&mb->mu);
  return m;
}

static uint64_t work(long id) {
  rng_t r = rng_make(seed, (uint64_t)id, 9);
  obj_t *b = (obj_t *)CALLOC((size_t)batch, sizeof(obj_t));
  uint64_t span = (uint64_t)(max - min + 1), sum = 0;
  long nodd = batch / 2;
  for (long j = 0; j < iterations; j++) {
    for (long i = 0; i < batch; i++)
      b[i] = obj_new((size_t)min + (7 * (uint64_t)i + 13 * (uint64_t)j) % span, &r);
    msg_t *m = (msg_t *)MALLOC(sizeof(msg_t) + (size_t)nodd * sizeof(obj_t));
    m->n = nodd;
    for (long i = 1, k = 0; i < batch; i += 2, k++) m->o[k] = b[i];
    for (long i = (batch - 1) & ~1L; i >= 0; i -= 2) sum += obj_free(&b[i]);
    send_msg(&box[(id + 1) % threads], m);
    msg_t *in = recv_msg(&box[id]);
    for (long k = 0; k < in->n; k++) sum += obj_free(&in->o[k]);
    free(in);
  }
  free(b);
  return sum;
}

int main(int argc, char **argv) {
  params_parse(argc, argv, P, "sh8bench-style batches, half of each freed by the next thread.");
  threads = param_in(P, "threads", 1, 64);
  iterations = param_in(P, "iterations", 0, 1L << 40);
  batch = param_in(P, "batch", 1, 1L << 24);
  min = param_in(P, "min", 1, 1L << 30);
  max = param_in(P, "max", min, 1L << 30);
  seed = (uint64_t)param(P, "seed");
  box = (mailbox_t *)CALLOC((size_t)threads, sizeof(mailbox_t));
  for (long t = 0; t < threads; t++) {
    pthread_mutex_init(&box[t].mu, NULL);
    pthread_cond_init(&box[t].cv, NULL);
  }
  uint64_t sum = run_workers(threads, work);
  free(box);
  print_result("sh8bench", P, sum);
  return 0;
}
