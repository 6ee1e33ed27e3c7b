/* deferred.pml: deferred free (WFMM_DEFERRED_FREE=1) in reclaim/reclaim.cpp: implicit
 * regions (quiesce), the alone shortcut of deferred_free (alone(): g_in_use == 1, E7) and
 * the claim with membarrier that ends it, held batches (reap_held), with store buffers. */

#define F 0              /* frees: allocates X, shares it, unlinks it, frees it (deferred) */
#define M 1              /* only mallocs: reads the shared X between two of its mallocs */
#define NSB 2
#define SRC  0           /* the shared pointer (program memory) */
#define MERA 1           /* M's implicit reservation era (Slot::era low half) */
#define NMEM 2
#include "sb.pml"

#define X 1
#define Y 2
#define NBLK 3
#define RETIRED 128
#define BIAS 64
#define INACTIVE 0
#define ACTIVE_EMPTY 1
#define END 0
#define PENDING 2
#define VISITED 3
#define CELL 4           /* the one batch's cell in M's implicit slot */
#define ETICKS 1

/* Coverage probes (scripts/verify --holes): -DPROBE=n turns probe n into an assertion that
 * fails when its point is reached, so SPIN shows the path exists (the model is not vacuous). */
#ifdef PROBE
#define REACH(n) assert(PROBE != (n));
#define REACHIF(n, c) assert(PROBE != (n) || !(c));
#else
#define REACH(n)
#define REACHIF(n, c)
#endif

byte g_era = 1;
byte ticks;
bit  g_track;            /* birth recording; the first record (alone) leaves it off */
byte g_in_use = 1;       /* F's record was claimed (alone) before the run */
byte live;               /* published, unfreed batches (g_live / the barrier word's counts) */
byte side[NBLK];
bit  freed[NBLK];
byte holdsM;             /* the block M's program dereferences */
bit  mrec;               /* M has a record */
byte mhead = INACTIVE;   /* M's implicit slot head (RMWs only) */
byte next0;              /* the cell's next */
byte refs;               /* the batch (BATCH = 1: X alone) */
byte minb;
bit  fbatch;             /* F's Local::batch is not empty (X retired, not published) */
bit  mine;               /* F holds a reference on its published batch (held batch) */
byte q[NSB];             /* bit 0: the batch reached zero in this thread's hands */

inline do_free(xx) {
  d_step { assert(freed[xx] == 0); assert(holdsM != xx); side[xx] = 0; freed[xx] = 1 }
}

/* free_batch: its block, then the barrier count (g_live) */
inline run_frees(t) {
  if :: q[t] != 0 -> do_free(X); d_step { live--; q[t] = 0 } :: else fi
}

inline unref(t, n) { d_step { refs = refs - n; if :: refs == 0 -> q[t] = 1 :: else fi } }

/* drop_list of M's implicit slot (one batch: at most one cell) */
inline drop_list(t, l) {
  if
  :: l == CELL -> REACH(25)
     d_step { nx = next0; next0 = VISITED };
     unref(t, 1)
  :: else
  fi;
  l = 0; nx = 0
}

/* birth_note/birth_record: the era if recording is on (else 0: older is safer); the
 * allocation may tick the era (seq_cst fetch_add, a fence) */
inline malloc_block(t, xx) {
  if :: g_track -> side[xx] = g_era :: else -> side[xx] = 0 fi;
  if
  :: ticks < ETICKS -> fence(t); d_step { g_era++; ticks++ }
  :: true
  fi
}

/* M's allocator call. First call: own_record(implicit) (g_in_use.fetch_add, seq_cst;
 * tracking on for the second record; membarrier = a full fence run in every other thread:
 * F's store buffer drains, E7). Then quiesce: the implicit reservation moves to the current
 * era (reset_slot: drops the list; publish_era: locked CAS, E1). */
inline m_alloc_call() {
#ifdef HOLE1
  /* hole 1: the hook runs only for tracked allocations; alone, tracking is off, so a
   * malloc-only thread never claims a record */
  if :: g_track -> skip :: else -> goto m_untracked fi;
#endif
  if
  :: !mrec ->
     fence(M); d_step { g_in_use++; mrec = 1 };
     g_track = 1;                         /* n >= 2: birth_tracking_on (seq_cst store) */
#ifndef NO_MEMBARRIER
     fence(F);                            /* membarrier(PRIVATE_EXPEDITED) (E7) */
#endif
     skip
  :: else
  fi;
  e = g_era;
  if
  :: mera != e ->                         /* quiesce: refresh only when the era moved */
     d_step { l = mhead; mhead = INACTIVE };
     drop_list(M, l);
     fence(M); d_step { l = mhead; mhead = ACTIVE_EMPTY };
     drop_list(M, l);
     e = g_era;
     st(M, MERA, e);
     fence(M);                            /* publish_era's locked CAS (E1) */
     mera = e;
     run_frees(M)                         /* plain batches: freed on the spot */
  :: else
  fi;
#ifdef HOLE1
m_untracked:
#endif
  e = 0
}

proctype mallocker() {
  byte e, l, nx, p, mera;
  m_alloc_call();                         /* malloc #1 */
  ld(M, SRC, p);                          /* the program reads the shared pointer ... */
  d_step { REACHIF(24, p == X) assert(p == 0 || freed[p] == 0); holdsM = p; p = 0 };
  holdsM = 0;                             /* ... and uses it until its next allocator call */
  m_alloc_call()                          /* malloc #2 ends the implicit region */
}

/* alone() (E7: g_in_use acquire, no fence after the unlinking store) */
inline alone(res) {
  res = (g_in_use == 1 && !fbatch && !mine && live == 0)
}

/* publish of a batch of deferred frees: g_live count, the E4 fence, M's implicit slot (the
 * publisher skips its own implicit reservation); k != 0: the retirer keeps a reference (held
 * batch, Local::mine), reaped when the count is 1. */
inline publish() {
  d_step { live++; fbatch = 0 };
  fence(F);                               /* (E4) */
  k = 0;
  if
  :: mhead != INACTIVE ->
     ld(F, MERA, e);
     if
     :: e >= minb ->
        next0 = PENDING;
        d_step { prev = mhead; mhead = CELL };          /* (R1) */
        if
        :: prev == INACTIVE ->
           d_step { if :: mhead == CELL -> mhead = INACTIVE :: else -> k = 1 fi }
        :: else ->
           d_step { if :: next0 == PENDING -> next0 = END :: else fi };   /* (R2) */
           k = 1
        fi
     :: else
     fi
  :: else
  fi;
  if
  :: k != 0 -> d_step { REACH(22) refs = refs + k + 1 - BIAS; mine = 1 }
  :: else -> d_step { refs = refs + k - BIAS; if :: refs == 0 -> q[F] = 1 :: else fi }
  fi;
  k = 0; e = 0; prev = 0
}

proctype freer() {
  byte e, k, prev, res;
  malloc_block(F, X);
  st(F, SRC, X);                          /* the program shares X */
  st(F, SRC, 0);                          /* ... and unlinks it later (plain store) */
  /* deferred_free(X): quiesce (F's own implicit slot: never a target of its own batch),
   * then the alone shortcut, else retire_impl (side CAS; BATCH = 1: publish at once) */
  alone(res);
  if
  :: res -> REACH(21) do_free(X)                    /* heap_free at once */
  :: else ->
     d_step { minb = side[X]; side[X] = RETIRED; refs = BIAS; fbatch = 1 };
     publish();
     run_frees(F)
  fi;
  /* F's next allocator calls: reap_held frees the held batch once F is its last holder */
  malloc_block(F, Y);
  if
  :: mine && refs == 1 -> REACH(23) mine = 0; unref(F, 1); run_frees(F)
  :: else
  fi
}

init {
  atomic {
    run flusher(F); run flusher(M);
    run freer(); run mallocker()
  }
}
