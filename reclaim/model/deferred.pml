/* deferred.pml: deferred free (WFMM_DEFERRED_FREE=1) in reclaim/deferred.cpp: implicit
 * regions (quiesce), the alone shortcut of deferred_free (alone(): g_in_use == 1, E7) and
 * the claim with membarrier that ends it, held batches (reap_held), with store buffers. */

#define F 0              /* frees: allocates X and Y in turn, shares, unlinks, frees each */
#define M 1              /* only mallocs: reads the shared pointer between its mallocs */
#define NSB 2
#define SRC  0           /* the shared pointer (program memory) */
#define MERA 1           /* M's implicit reservation era (Slot::era low half) */
#define NMEM 2
#include "sb.pml"

#define X 1
#define Y 2
#define NBLK 4
#define RETIRED 128
#define BIAS 64
#define INACTIVE 0
#define ACTIVE_EMPTY 1
#define END 0
#define PENDING 2
#define VISITED 3
#define CELL(b) ((b) + 4)        /* batch b's cell in M's implicit slot (batch b = block b+1) */
#define NB 2
#define ETICKS 2

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
byte live;               /* published, unfreed batches (the barrier word's counts) */
byte side[NBLK];         /* birth as recorded (0 while recording is off), RETIRED + batch */
byte gborn[NBLK];        /* ghost: the era at the block's malloc, recorded or not */
bit  freed[NBLK];
byte holdsM;             /* a block M's program dereferences under the guarantee */
bit  mrec;               /* M has a record */
byte mhead = INACTIVE;   /* M's implicit slot head (RMWs only) */
byte next[NB];
byte refs[NB];
byte minb[NB];
byte mine;               /* bit b: F holds a reference on its published batch b */
byte q[NSB];             /* bit b: batch b reached zero in this thread's hands */

inline do_free(xx) {
  d_step { assert(freed[xx] == 0); assert(holdsM != xx); side[xx] = 0; freed[xx] = 1 }
}

/* free_batch (BATCH = 1: batch b holds block b + 1), then g_live's count */
inline run_frees(t) {
  do
  :: q[t] & 1 -> do_free(X); d_step { live--; q[t] = q[t] & 2 }
  :: (q[t] & 3) == 2 -> do_free(Y); d_step { live--; q[t] = 0 }
  :: q[t] == 0 -> break
  od
}

inline unref(t, bb, n) {
  d_step { refs[bb] = refs[bb] - n; if :: refs[bb] == 0 -> q[t] = q[t] | (1 << bb) :: else fi }
}

/* drop_list of M's implicit slot (R3); bound: the batches published */
inline drop_list(t, l) {
  steps = 0;
  do
  :: l >= CELL(0) -> REACH(25)
     c = l - CELL(0);
     d_step { nx = next[c]; next[c] = VISITED };
     unref(t, c, 1);
     steps++; assert(steps <= NB);
     if :: nx == PENDING -> break :: else -> l = nx fi
  :: else -> break
  od;
  steps = 0; l = 0; nx = 0; c = 0
}

/* birth_note/birth_record: the era if recording is on (a relaxed load: a thread that misses
 * the switch records 0, the safe side); the allocation may tick the era (seq_cst). */
inline malloc_block(t, xx) {
  d_step { gborn[xx] = g_era; if :: g_track -> side[xx] = g_era :: else -> side[xx] = 0 fi };
  if
  :: ticks < ETICKS -> fence(t); d_step { g_era++; ticks++ }
  :: true
  fi
}

/* M's allocator call. First call: own_record(implicit) (g_in_use.fetch_add, seq_cst;
 * tracking on for the second record; membarrier = a full fence run in every other thread:
 * F's store buffer drains, E7). Then quiesce: if the era moved, the implicit reservation
 * moves to it (reset_slot drops the list; publish_era's locked CAS is E1). */
inline m_alloc_call() {
  holdsM = 0;                             /* the program's uses end at the call */
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
  :: mera != e ->
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

#ifdef HOLE1
/* with hole 1 M never reserves: every block it reads counts as covered (what the program
 * relies on: the hole is that nothing covers it) */
#define HOLE1_CLAIMS 1
#else
#define HOLE1_CLAIMS 0
#endif

/* The guarantee checked (README, deferred free): a block born at or before the era of M's
 * last allocator call and freed after it is not reused until M's next call. A block born
 * later is not covered (M reads it at its own risk), so M holds only covered blocks. */
inline m_read() {
  ld(M, SRC, p);
  d_step {
    if
    :: p != 0 && (mrec || HOLE1_CLAIMS) && gborn[p] <= mera ->
       REACHIF(24, p == Y) assert(freed[p] == 0); holdsM = p
    :: else
    fi;
    p = 0
  }
}

proctype mallocker() {
  byte e, l, c, nx, steps, p, mera;
#ifdef HOLE1
  mera = 255;
#endif
  m_alloc_call();                         /* malloc #1 */
  m_read();
  m_alloc_call();                         /* malloc #2: the first implicit region ends */
  m_read();
  m_alloc_call()                          /* malloc #3 */
}

/* alone() (E7: g_in_use acquire, no fence after the unlinking store); Local::batch is
 * always empty here (BATCH = 1) */
inline alone(res) {
  res = (g_in_use == 1 && mine == 0 && live == 0)
}

/* publish of a batch of deferred frees: count it (g_live), the E4 fence, M's implicit slot
 * (the publisher skips its own implicit reservation); k != 0: the retirer keeps a reference
 * (a held batch, Local::mine), reaped once the count is 1. */
inline publish(bb) {
  live++;
  fence(F);                               /* (E4) */
  k = 0;
  if
  :: mhead != INACTIVE ->
     ld(F, MERA, e);
     if
     :: e >= minb[bb] ->
        next[bb] = PENDING;
        d_step { prev = mhead; mhead = CELL(bb) };      /* (R1) */
        if
        :: prev == INACTIVE ->
           d_step { if :: mhead == CELL(bb) -> mhead = INACTIVE :: else -> k = 1 fi }
        :: else ->
           if :: prev == ACTIVE_EMPTY -> nv = END :: else -> nv = prev fi;
           d_step { if :: next[bb] == PENDING -> next[bb] = nv; ok = 1 :: else -> ok = 0 fi };
           if :: ok == 0 -> drop_list(F, nv) :: else fi;
           k = 1
        fi
     :: else -> REACH(26)                  /* born after M's era: M does not cover it */
     fi
  :: else
  fi;
  if
  :: k != 0 -> d_step { REACH(22) refs[bb] = refs[bb] + k + 1 - BIAS; mine = mine | (1 << bb) }
  :: else -> d_step { refs[bb] = refs[bb] - BIAS; if :: refs[bb] == 0 -> q[F] = q[F] | (1 << bb) :: else fi }
  fi;
  k = 0; e = 0; prev = 0; nv = 0; ok = 0
}

/* reap_held, at some of F's allocator calls (it may run at any of them: it only frees a
 * batch whose count is 1, i.e. F's own reference) */
inline reap_held() {
  if
  :: (mine & 1) && refs[0] == 1 -> REACH(23) mine = mine & 2; unref(F, 0, 1)
  :: (mine & 2) && refs[1] == 1 -> mine = mine & 1; unref(F, 1, 1)
  :: true
  fi;
  run_frees(F)
}

/* deferred_free(blk): quiesce (reap), the alone shortcut, else retire_impl (side-word CAS;
 * BATCH = 1: publish at once) */
inline deferred_free(blk) {
  reap_held();
  alone(res);
  if
  :: res -> REACH(21) do_free(blk)        /* heap_free at once */
  :: else ->
     d_step { minb[blk - 1] = side[blk]; side[blk] = RETIRED + blk - 1; refs[blk - 1] = BIAS };
     publish(blk - 1);
     run_frees(F)
  fi
}

proctype freer() {
  byte e, k, l, c, nx, steps, prev, nv, ok, res;
  malloc_block(F, X);
  st(F, SRC, X);                          /* the program shares X ... */
  st(F, SRC, 0);                          /* ... and unlinks it (plain store, no fence) */
  deferred_free(X);
  malloc_block(F, Y);
  reap_held();
  st(F, SRC, Y);
  st(F, SRC, 0);
  deferred_free(Y);
  malloc_block(F, X + 2);                 /* (a later allocator call: reap) */
  reap_held()
}

init {
  atomic {
    run flusher(F); run flusher(M);
    run freer(); run mallocker()
  }
}
