/* barrier.pml: wfmm_barrier's generations in reclaim/sync.cpp and retire.cpp: publish counts a batch
 * in a parity, free_batch uncounts it, barrier (serialised by its mutex) flips the parity
 * and waits until the old parity's count drains. Fixed: one word (parity bit + two counts). */

#define NB 2             /* batches, published in this order by one publisher */

/* Coverage probes (scripts/verify --holes): -DPROBE=n turns probe n into an assertion that
 * fails when its point is reached, so SPIN shows the path exists (the model is not vacuous). */
#ifdef PROBE
#define REACH(n) assert(PROBE != (n));
#define REACHIF(n, c) assert(PROBE != (n) || !(c));
#else
#define REACH(n)
#define REACHIF(n, c)
#endif

/* Fixed protocol: the 64-bit word as its three fields, each RMW one atomic step.
 * bit 63 = the current parity, bits 0-30 = live count of parity 0, bits 32-62 of parity 1. */
bit  par;
byte wlive[2];
#ifdef HOLE4
/* hole 4: the generation counter and the two live counters as separate words */
byte gen;
byte glive[2];
#endif

bit  counted[NB];        /* publish has counted the batch: it may be freed from now on */
bit  published[NB];      /* publish of the batch returned */
bit  freed[NB];
byte bpar[NB];           /* Batch::gen: the parity the batch counts in */
bit  mutex;              /* g_barrier_lock */

/* publish(b): count the batch. Fixed: old = fetch_add(unit0 + unit1) (counted in both
 * parities), its parity = old's bit 63, then fetch_sub the unit of the other parity. */
inline count_batch(b) {
#ifdef HOLE4
  d_step { g = gen };                     /* g_gen.load ... */
  d_step { bpar[b] = g & 1; glive[g & 1]++; counted[b] = 1 };   /* ... then g_live[g & 1]++ */
#else
  d_step { bpar[b] = par; wlive[0]++; wlive[1]++ };
  d_step { wlive[1 - bpar[b]]--; counted[b] = 1 };
#endif
  g = 0
}

proctype publisher() {
  byte g;
  count_batch(0);
  published[0] = 1;                       /* (the reservation scan and refs_add follow) */
  count_batch(1);
  published[1] = 1
}

/* free_batch, by whoever drops a batch's last reference, at any time after it was counted:
 * fetch_sub the unit of the batch's parity. */
proctype dropper(byte b) {
  counted[b];
#ifdef HOLE4
  d_step { glive[bpar[b]]--; freed[b] = 1 }
#else
  d_step { wlive[bpar[b]]--; freed[b] = 1 }
#endif
}

/* barrier(): serialised by the mutex; flip the parity (fetch_xor of bit 63) and wait
 * (blocking by contract) until the old parity's count is 0. Property: every batch whose
 * publish returned before the call is freed when it returns. */
proctype barrier() {
  byte before, old, b;
  d_step { before = published[0] | (published[1] << 1) };
  atomic { mutex == 0 -> mutex = 1 };
#ifdef HOLE4
  d_step { old = gen & 1; gen++ };
  glive[old] == 0;
#else
  d_step { old = par; par = 1 - par; REACHIF(31, wlive[old] != 0) };
  wlive[old] == 0;
#endif
  d_step {
    b = 0;
    do
    :: b < NB -> assert(((before >> b) & 1) == 0 || freed[b]); b++
    :: else -> break
    od;
    b = 0
  };
  mutex = 0
}

init {
  atomic {
    run publisher(); run dropper(0); run dropper(1);
    run barrier(); run barrier()
  }
}
