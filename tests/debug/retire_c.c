/* A C program on wfmm's reclamation API, for ASan, TSan and valgrind (tests/debug/README in
 * CMakeLists.txt): `clean` runs readers against a writer that replaces and retires nodes and
 * must draw no report; `uar` reads a node after its reclamation and `race` writes a
 * published node's payload without synchronisation: the tool must report each. `stack`
 * retires a stack address: wfmm must still reject it. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wfmm/wfmm.h>

struct node {
  long id;
  long payload[7]; /* payload[i] == id * 7 + i while the node is reachable */
};

static _Atomic(struct node*) g_slot;
static atomic_int g_stop;
static long g_bad;
static int g_race; /* plant a race: the writer changes a published node */
/* The newest node id a reader has read (relaxed both sides: no happens-before for TSan). */
static long g_seen;

static struct node* make(long id) {
  struct node* n = malloc(sizeof *n);
  if (n == NULL) abort();
  n->id = id;
  for (int i = 0; i < 7; ++i) n->payload[i] = id * 7 + i;
  return n;
}

static void* reader(void* arg) {
  long bad = 0, reads = 0;
  (void)arg;
  /* Bound: until the writer stops (and at least 2000 reads, so the race has readers). */
  while (!atomic_load(&g_stop) || reads < 2000) {
    wfmm_enter();
    struct node* n = wfmm_protect((void* const volatile*)&g_slot, 0);
    for (int i = 0; i < 7; ++i)
      if (n->payload[i] != n->id * 7 + i && !g_race) ++bad;
    if (n->id > __atomic_load_n(&g_seen, __ATOMIC_RELAXED))
      __atomic_store_n(&g_seen, n->id, __ATOMIC_RELAXED);
    wfmm_leave();
    ++reads;
  }
  __atomic_fetch_add(&g_bad, bad, __ATOMIC_RELAXED);
  return NULL;
}

static void* writer(void* arg) {
  long rounds = *(long*)arg;
  for (long r = 1; r <= rounds; ++r) {
    struct node* n = make(r);
    struct node* old = atomic_exchange(&g_slot, n);
    if (g_race) n->payload[3] = -1; /* planted: a write after publication, readers read it */
    /* The first planted write waits for a reader to read that node: readers preempted
     * through every round read only after g_stop, which orders each write before their reads
     * (TSan then rightly reports nothing: now and then under ctest -j2). Bound: a reader's
     * next read (readers loop until g_stop). */
    if (g_race && r == 1)
      while (__atomic_load_n(&g_seen, __ATOMIC_RELAXED) < 1) sched_yield();
    wfmm_retire(old);
  }
  atomic_store(&g_stop, 1);
  return NULL;
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "clean";
  if (strcmp(mode, "uar") == 0) {
    /* A node kept past its retire: once reclaimed, reading it is a use after free. */
    struct node* n = make(42);
    struct node* stale = n;
    wfmm_retire(n);
    wfmm_barrier(); /* every batch published before is freed now */
    printf("read after reclaim: %ld\n", stale->payload[0]);
    return 0;
  }
  if (strcmp(mode, "stack") == 0) {
    /* Not a block of any malloc: wfmm must still say so under a checker's malloc. */
    struct node on_stack;
    on_stack.id = 1;
    wfmm_retire(&on_stack);
    return 0;
  }
  g_race = strcmp(mode, "race") == 0;
  long rounds = argc > 2 ? atol(argv[2]) : 20000;
  atomic_store(&g_slot, make(0));
  pthread_t w, rd[3];
  for (int i = 0; i < 3; ++i) pthread_create(&rd[i], NULL, reader, NULL);
  pthread_create(&w, NULL, writer, &rounds);
  pthread_join(w, NULL);
  for (int i = 0; i < 3; ++i) pthread_join(rd[i], NULL);
  wfmm_retire(atomic_load(&g_slot));
  wfmm_barrier();
  struct wfmm_stats st;
  wfmm_stats_get(&st);
  printf("%s: %ld rounds, %ld bad reads, pending retired %llu\n", mode, rounds, g_bad,
         (unsigned long long)st.retired_pending);
  return g_bad == 0 ? 0 : 1;
}
