/* reclaim.pml: the core of reclaim/ (retire.cpp, frees.cpp, records.cpp). A reader's protect/refresh/leave over one
 * reservation (era + list head), a retirer's retire_impl/publish/insert, list drops and
 * the last-dropper batch free, with store buffers at E1, E4 and E6. See README.md here. */

/* ---- bounds ---- */
#ifndef REGIONS
#define REGIONS 2        /* reader regions: the second one hits the kept reservation (E6) */
#endif
#define ETICKS 2         /* era ticks in the whole run */
#define ATTEMPTS 4       /* WFMM_PROTECT_ATTEMPTS, scaled: > ETICKS + 1, so no slow path here */

/* Coverage probes (scripts/verify --holes): -DPROBE=n turns probe n into an assertion that
 * fails when its point is reached, so SPIN shows the path exists (the model is not vacuous). */
#ifdef PROBE
#define REACH(n) assert(PROBE != (n));
#define REACHIF(n, c) assert(PROBE != (n) || !(c));
#else
#define REACH(n)
#define REACHIF(n, c)
#endif

/* ---- threads (ids index the store buffers) ---- */
#define R 0              /* reader: enter, protect, use, leave */
#define W 1              /* writer: malloc, unlink, retire, publish (era ticks) */
#define D 2              /* a second thread retiring W's block X at the same time */
#define NSB 3

/* ---- buffered variables (mem[] indices) ---- */
#define SRC   0          /* the shared pointer the program reads: 0 = null, else a block */
#define INREG 1          /* R's Record::in_region */
#define SERA  2          /* R's slot 0 era (the low half of Slot::era) */
#define NMEM  3
#include "sb.pml"

/* ---- blocks, side words, batches, cells ---- */
#define X 1              /* reachable from SRC at the start */
#define Y 2              /* W's replacement for X */
#define Z 3              /* W's replacement for Y */
#define NBLK 4
#define RETIRED 128      /* kRetiredBit | batch: RETIRED + batch id */
#define FREED 255        /* kFreedMark: reclaimed and freed, until the next malloc's birth */
#define BIAS 64          /* kBias (2^63) scaled: counts here never reach it */
#define NBATCH 3         /* W's batches 0 (X) and 1 (Y), D's batch 2 (X again) */
/* Slot head values (kInactive, kActiveEmpty, else a cell); Cell::next values. Only R's slot
 * is ever active, so a batch has at most one cell: cell c belongs to batch c. */
#define INACTIVE 0
#define ACTIVE_EMPTY 1
#define END 0
#define PENDING 2        /* kPendingNext */
#define VISITED 3        /* kVisited */
#define CELL(c) ((c) + 4)

byte g_era = 1;
byte ticks;
byte side[NBLK];         /* birth era, or RETIRED + batch; FREED once reclaimed */
bit  freed[NBLK];
byte holds;              /* the block R dereferences now (0: none) */
byte head = INACTIVE;    /* R's slot 0 head; only RMWs write it, so never buffered */
byte next[NBATCH];       /* cell c's next */
byte refs[NBATCH];
byte item[NBATCH * 2];   /* batch b's blocks: item[2b], item[2b + 1] */
byte nitems[NBATCH];
byte minb[NBATCH];       /* Batch::min_birth */
byte q[NSB];             /* Local::freeq as a bit set of batches */
bit  reported;           /* D's double retire was reported (fixed protocol) */

/* unref: (R4) acq_rel fetch_sub; whoever brings the count to zero queues the batch. */
inline unref(t, bb, n) {
  d_step { refs[bb] = refs[bb] - n; if :: refs[bb] == 0 -> q[t] = q[t] | (1 << bb) :: else fi }
}

/* drop_list: walk a detached list; exchange each cell's next to kVisited (R3) and drop one
 * reference; stop at a cell whose inserter has not linked it (it drops the rest).
 * Bound: the cells inserted into this slot = batches published. */
inline drop_list(t, l) {
  steps = 0;
  do
  :: l >= CELL(0) ->
     c = l - CELL(0);
     d_step { nx = next[c]; next[c] = VISITED }
     unref(t, c, 1);
     steps++;
     assert(steps <= NBATCH);
     if :: nx == PENDING -> REACH(5) break :: else -> l = nx fi
  :: else -> break
  od;
  steps = 0
}

/* free_batch: the properties. The reader must not hold the block (it read it under a
 * reservation that still covers it, or protect would not have returned it); no block is
 * freed twice. side word reset as in the code. */
inline free_batch(t, bb) {
  d_step {
    REACHIF(8, t == R)
    x = 0;
    do
    :: x < nitems[bb] ->
       assert(freed[item[2 * bb + x]] == 0);
       assert(holds != item[2 * bb + x]);
#ifdef HOLE_F1
       side[item[2 * bb + x]] = 0;           /* F1 put back: reset to "born in era 0" */
#else
       side[item[2 * bb + x]] = FREED;       /* kFreedMark */
#endif
       freed[item[2 * bb + x]] = 1;
       x++
    :: else -> break
    od;
    q[t] = q[t] & ~(1 << bb);
    x = 0
  }
}

/* run_frees: frees what this thread brought to zero (a loop, not a recursion). */
inline run_frees(t) {
  do
  :: q[t] & 1 -> free_batch(t, 0)
  :: (q[t] & 3) == 2 -> free_batch(t, 1)
  :: (q[t] & 7) == 4 -> free_batch(t, 2)
  :: q[t] == 0 -> break
  od
}

/* insert: one exchange puts the cell in the list (R1, seq_cst: drains the buffer); if the
 * slot was inactive, CAS it back unless someone took it; else link the cell's next with a
 * CAS (R2); if the owner already walked to it (kVisited), drop the older cells ourselves. */
inline insert(t, cc) {
  next[cc] = PENDING;
  fence(t);
  d_step { prev = head; head = CELL(cc) }
  if
  :: prev == INACTIVE -> REACH(3)
     d_step { if :: head == CELL(cc) -> head = INACTIVE; ok = 1 :: else -> ok = 0 fi }
     if :: ok == 0 -> REACH(4) k++ :: else fi
  :: else ->
     if :: prev == ACTIVE_EMPTY -> nv = END :: else -> REACH(1) nv = prev fi;
     d_step { if :: next[cc] == PENDING -> next[cc] = nv; ok = 1 :: else -> ok = 0 fi }
     if :: ok == 0 -> REACH(2) drop_list(t, nv) :: else fi;
     k++
  fi;
  prev = 0; nv = 0; ok = 0
}

/* publish: the E4 fence, then one pass over the reservations (R's only: the other records'
 * slots are inactive, which the loop would skip); one cell per reservation whose owner is in
 * a region (E6) and whose era is at least the batch's oldest birth; then
 * refs += inserted - bias, zero = nobody holds it. Bound: records x slots inspections. */
inline publish(t, bb) {
#ifndef NO_E4
  fence(t);                           /* (E4) seq_cst fence */
#endif
  k = 0;
  ld(t, INREG, ir);                   /* (E6) seq_cst load */
  if
  :: ir != 0 && head != INACTIVE ->
     ld(t, SERA, e);
     if :: e >= minb[bb] -> insert(t, bb) :: else fi
  :: else
  fi;
  d_step { refs[bb] = refs[bb] + k - BIAS; if :: refs[bb] == 0 -> q[t] = q[t] | (1 << bb) :: else fi };
  k = 0; ir = 0; e = 0
}

/* retire_impl: block_for_retire (a freed block is reported), the side word check, then the
 * CAS from the birth read to RETIRED|batch (fix of hole 3); the item joins the batch and
 * its birth the batch's minimum; a full batch is published (pub = 1: the batch is full
 * after this item, or the thread flushes its partial batch next: wfmm_flush, exit). */
inline retire_impl(t, xx, bb, pub) {
  /* block_for_retire's freed check and the side word load are two steps, as in the code:
   * a second retire can pass the check while the block is live and load the side word after
   * the first retire's batch freed it (finding F1: it then reads FREED and reports) */
  if
  :: freed[xx] -> reported = 1               /* "use of a freed block" */
  :: else ->
     birth = side[xx];
     if
     :: birth >= RETIRED -> reported = 1     /* "already retired", or FREED: "use of a freed block" */
     :: else ->
#ifdef HOLE3
        side[xx] = RETIRED + bb;             /* hole 3: a store, not a CAS */
        ok = 1;
#else
        d_step { if :: side[xx] == birth -> side[xx] = RETIRED + bb; ok = 1 :: else -> ok = 0 fi };
#endif
        if
        :: ok == 0 -> reported = 1           /* lost the race: a double retire, not added */
        :: else ->
           d_step {
             REACHIF(9, holds == xx)
             if :: nitems[bb] == 0 -> refs[bb] = BIAS; minb[bb] = birth
                :: else -> if :: birth < minb[bb] -> minb[bb] = birth :: else fi
             fi;
             item[2 * bb + nitems[bb]] = xx; nitems[bb]++; ok = 0
           };
           if :: pub -> publish(t, bb) :: else fi
        fi
     fi;
     run_frees(t)
  fi;
  birth = 0; ok = 0
}

/* reset_slot: exchange the head to kInactive (acq_rel), drop the list, exchange it to
 * kActiveEmpty (seq_cst), drop what racing inserters left; the era to reserve is read after. */
inline reset_slot() {
  d_step { l = head; head = INACTIVE };
  drop_list(R, l);
  fence(R);
  d_step { l = head; head = ACTIVE_EMPTY };
  drop_list(R, l);
  act = 1;
  e = g_era
}

/* protect(src, 0): the inline fast path (E3: pointer load, then era load), else the
 * bounded refresh loop of protect_slow_entry: refresh (reset_slot if the list is not empty,
 * publish_era with the locked CAS = E1), then reload and check the era. */
inline protect() {
  ld(R, SRC, p);
  e = g_era;
  if
  :: e == t_era -> REACH(7) skip
  :: else ->
     k = 1;
     do
     :: true ->
        /* bound: each failed attempt is an era tick, at most ETICKS; the code's slow path
         * (helping.pml) starts after ATTEMPTS */
        assert(k < ATTEMPTS);
        e = g_era;
        if :: !act || head != ACTIVE_EMPTY -> reset_slot() :: else fi;
        st(R, SERA, e);                   /* publish_era: 16-byte locked CAS ... */
#ifndef NO_E1
        fence(R);                         /* ... which is a full barrier (E1) */
#endif
        ld(R, SRC, p);
        e2 = g_era;
        if :: e2 == e -> t_era = e; break :: else -> REACH(6) k++ fi
     od;
     k = 0
  fi;
  e = 0; e2 = 0
}

proctype reader() {
  byte p, e, e2, k, l, c, nx, steps, x, t_era, reg;
  bit act;
  do
  :: reg < REGIONS ->
     st(R, INREG, 1);                     /* enter: in_region = 1, seq_cst store (xchg) ... */
#ifndef NO_E6
     fence(R);                            /* ... a full barrier (E6) */
#endif
     protect();
     d_step { holds = p; assert(p == 0 || freed[p] == 0); p = 0 };
     holds = 0;                           /* the program's last use, before leave */
     st(R, INREG, 0);                     /* leave: in_region = 0 (release: no fence) */
     /* leave_lists: a list that is not empty is exchanged away (acq_rel) and dropped */
     if
     :: act && head != ACTIVE_EMPTY -> d_step { l = head; head = ACTIVE_EMPTY }; drop_list(R, l)
     :: else
     fi;
     run_frees(R);
     reg++
  :: else -> break
  od
}

/* malloc of a block: its birth is the current era (E2: read before the program publishes
 * it); the allocation may tick the era (seq_cst fetch_add: a locked RMW). */
inline alloc(t, xx) {
  side[xx] = g_era;
  if
  :: ticks < ETICKS -> fence(t); d_step { g_era++; ticks++ }
  :: true
  fi
}

proctype writer() {
  byte e, k, l, c, nx, steps, x, prev, nv, ok, ir, birth;
  alloc(W, Y);
  st(W, SRC, Y);                          /* the program unlinks X (release store) */
#ifdef BATCH2
  retire_impl(W, X, 0, 0);                /* batches of 2: X waits in the partial batch */
#else
  retire_impl(W, X, 0, 1);                /* BATCH = 1: published at once */
#endif
  alloc(W, Z);
  st(W, SRC, Z);                          /* unlinks Y */
#ifdef BATCH2
  retire_impl(W, Y, 0, 1)                 /* the batch {X, Y} is full: published */
#else
  retire_impl(W, Y, 1, 1)
#endif
}

/* A program error the code must survive: a second free/retire of X racing with W's, once
 * X is unreachable (a retire of a reachable block would be a different program error). */
proctype doubler() {
  byte e, k, l, c, nx, steps, x, prev, nv, ok, ir, birth;
  mem[SRC] != X;
  retire_impl(D, X, 2, 1)               /* (then flushes its partial batch) */
}

init {
  atomic {
    mem[SRC] = X; side[X] = 1;            /* X was born in era 1 and is reachable */
    run flusher(R); run flusher(W);
    run reader(); run writer(); run doubler()
  }
}
