/* helping.pml: the wait-free protect slow path of reclaim/protect.cpp: protect_slow's
 * request, complete/raise, an era ticker that helps first (help_pending, help_one), and the
 * parent hand-off (handoff_parent, release_parent) while a retirer frees parent and child. */

/* Every step that orders anything here is a locked RMW (16-byte CAS, exchange, fetch_add)
 * or a seq_cst store (xchg): on x86 each drains the store buffer, so interleaving
 * (sequentially consistent) semantics are exact for this model. The buffered stores (E1,
 * E4, E6) are checked in reclaim.pml. */

#define H 0              /* helpee: inside a region, holds P, protects P->next (slow path) */
#define T 1              /* era ticker: each tick helps every open request first */
#define W 2              /* retirer: unlinks C from P and retires C and P */
#define NREC 3           /* records in use: the bounds are n + 1 */
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

/* reservations: H's slot 0 (holds P), H's slot 1 (the request), T's helper slot */
#define S0 0
#define S1 1
#define SH 2
#define NS 3
#define P 1              /* parent block, born in era 1, reachable from a root H read */
#define C 2              /* child, born in era 2, P->next */
#define NBLK 3
#define RETIRED 128
#define FREED 255        /* kFreedMark */
#define BIAS 64
#define NB 2             /* one batch per retired block (BATCH = 1) */
#define INACTIVE 0
#define ACTIVE_EMPTY 1
#define END 0
#define PENDING 2
#define VISITED 3
#define CELL(c) ((c) + 4)        /* cell c = batch * NS + slot */
#define PENDRES 255              /* kPendingResult */

byte g_era = 2;
byte ticks;
byte g_slow_count;
byte side[NBLK];
bit  freed[NBLK];
byte holdsH;             /* bit set of blocks H dereferences */
byte pnext = C;          /* P->next: the src of H's request */
byte head[NS];
byte sera[NS];           /* Slot::era low half */
byte stag[NS];           /* Slot::era high half (the tag; odd while a request is open) */
byte rval = 0;           /* slot 1's Slot::result {value, tag} */
byte rtag = 0;
byte help_parent;        /* T's Record::help_parent (H and W never help) */
byte next[NB * NS];
byte refs[NB];
byte item[NB];
byte minb[NB];
byte q[NREC];
byte nb;                 /* batches used */

inline queue_if_zero(t, bb) {
  if :: refs[bb] == 0 -> q[t] = q[t] | (1 << bb) :: else fi
}

/* unref / refs_add (R4: acq_rel RMWs) */
inline unref(t, bb, n) { d_step { refs[bb] = refs[bb] - n; queue_if_zero(t, bb) } }

/* drop_list (R3): bound = the cells inserted into the slot (at most one per batch) */
inline drop_list(t, l) {
  steps = 0;
  do
  :: l >= CELL(0) ->
     c = l - CELL(0);
     d_step { nx = next[c]; next[c] = VISITED };
     unref(t, c / NS, 1);
     steps++; assert(steps <= NB);
     if :: nx == PENDING -> break :: else -> l = nx fi
  :: else -> break
  od;
  steps = 0; c = 0; nx = 0
}

/* free_batch: nobody still dereferences the block (H's holds; T's reads assert on their
 * own), and no block is freed twice. */
inline free_batch(t, bb) {
  d_step {
    x = item[bb];
    assert(freed[x] == 0);
    assert((holdsH & (1 << x)) == 0);
    side[x] = FREED; freed[x] = 1;
    q[t] = q[t] & ~(1 << bb);
    x = 0
  }
}

inline run_frees(t) {
  do
  :: q[t] & 1 -> free_batch(t, 0)
  :: (q[t] & 3) == 2 -> free_batch(t, 1)
  :: q[t] == 0 -> break
  od
}

/* insert (R1 exchange, R2 link CAS; a failed link drops the older cells) */
inline insert(t, s, bb) {
  c2 = bb * NS + s;
  next[c2] = PENDING;
  d_step { prev = head[s]; head[s] = CELL(c2) };
  if
  :: prev == INACTIVE ->
     d_step { if :: head[s] == CELL(c2) -> head[s] = INACTIVE; ok = 1 :: else -> ok = 0 fi };
     if :: ok == 0 -> k++ :: else fi
  :: else ->
     if :: prev == ACTIVE_EMPTY -> nv = END :: else -> nv = prev fi;
     d_step { if :: next[c2] == PENDING -> next[c2] = nv; ok = 1 :: else -> ok = 0 fi };
     if :: ok == 0 -> drop_list(t, nv) :: else fi;
     k++
  fi;
  prev = 0; nv = 0; ok = 0; c2 = 0
}

/* publish: after the E4 fence (SC here), every active reservation whose era is at least the
 * batch's birth gets a cell (H is in a region; the helper slot is not a user slot, so it is
 * inspected whatever T's in_region). Bound: NS inspections. */
inline publish(t, bb) {
  k = 0;
  s = 0;
  do
  :: s < NS ->
     if :: head[s] != INACTIVE && sera[s] >= minb[bb] -> insert(t, s, bb) :: else fi;
     s++
  :: else -> break
  od;
  skip;                                   /* (a break may not land on a d_step) */
  d_step { refs[bb] = refs[bb] + k - BIAS; queue_if_zero(t, bb) };
  k = 0; s = 0
}

/* retire_impl with BATCH = 1: side word CAS from its birth to RETIRED|batch, publish */
inline retire_impl(t, xx) {
  d_step {
    bb = nb; nb++;
    REACHIF(17, (holdsH & (1 << xx)) != 0 && xx == C)
    assert(side[xx] < RETIRED);
    item[bb] = xx; minb[bb] = side[xx]; side[xx] = RETIRED + bb; refs[bb] = BIAS
  };
  publish(t, bb);
  run_frees(t)
}

/* reset_slot + publish_era for slot s (owner): exchange to kInactive, drop, exchange to
 * kActiveEmpty, drop, read the era, publish it (locked CAS, E1) */
inline reserve(t, s) {
  d_step { l = head[s]; head[s] = INACTIVE };
  drop_list(t, l);
  d_step { l = head[s]; head[s] = ACTIVE_EMPTY };
  drop_list(t, l);
  d_step { sera[s] = g_era }
}

/* deactivate: exchange the head to kInactive and drop the list */
inline deactivate(t, s) {
  d_step { l = head[s]; head[s] = INACTIVE };
  drop_list(t, l)
}

/* raise: the slot's era up to e while its tag is tg: load the pair, then a 16-byte CAS
 * from what was loaded; a failure reloads. Bound: n + 1 (each failure is another thread's
 * raise to a larger era, or the close). */
inline raise(tg, e, res) {
  i2 = 0;
  d_step { ct = stag[S1]; ce = sera[S1] };
  do
  :: true ->
     i2++; assert(i2 <= NREC + 1);
     if
     :: ct != tg -> res = 0; break
     :: ct == tg && ce >= e -> res = 1; break
     :: else ->
        d_step {
          if
          :: stag[S1] == ct && sera[S1] == ce -> sera[S1] = e; res = 2
          :: else -> REACH(15) ct = stag[S1]; ce = sera[S1]; res = 0
          fi
        };
        if :: res == 2 -> res = 1; break :: else fi
     fi
  od;
  i2 = 0; ct = 0; ce = 0
}

/* complete: the attempts of helpee and helpers alike. Bound: n + 1 attempts (each failure is
 * an era tick, and every ticker helps first). who = the thread reading *src. */
inline complete(who, tg) {
  i = 0;
  do
  :: true ->
     i++; assert(i <= NREC + 1);
     if
     :: rval != PENDRES || rtag != tg -> break
     :: else
     fi;
     e = g_era;
     raise(tg, e, ok);
     if :: ok == 0 -> break :: else fi;
     /* (E5) the reservation was raised (locked) before this read of *src, which is a read of
      * P's memory: P must still be allocated */
     d_step { assert(freed[P] == 0); v = pnext };
     if
     :: g_era == e ->
        d_step { if :: rval == PENDRES && rtag == tg -> REACHIF(11, who == T && v == C) rval = v :: else fi };
        break
     :: else -> REACHIF(14, who == H)
     fi
  od;
  i = 0; v = 0; ok = 0; e = 0
}

/* release_parent: CAS help_parent back to null; if the helpee nulled it (handed us a
 * reference on P's batch), drop that reference. */
inline release_parent(t) {
  d_step { if :: help_parent == P -> help_parent = 0; ok = 1 :: else -> ok = 0 fi };
  if
  :: ok == 0 -> REACH(13)
     assert(side[P] >= RETIRED);
     unref(t, side[P] - RETIRED, 1)
  :: else
  fi;
  ok = 0
}

/* help_one(T, H's slot 1, tag): announce the parent (H1, seq_cst store), protect it with the
 * helper slot, re-check the request, complete it, stop using the parent. */
inline help_one(t, tg) {
  if
  :: rval == PENDRES && rtag == tg ->
#ifndef NO_HANDOFF
     help_parent = P;
#endif
     reserve(t, SH);
     if
     :: rval != PENDRES || rtag != tg -> skip
     :: else -> complete(t, tg)
     fi;
     deactivate(t, SH);
#ifndef NO_HANDOFF
     release_parent(t)
#endif
  :: else
  fi
}

/* era_tick: help_pending (every open request, i.e. H's slot 1), then the seq_cst tick */
proctype ticker() {
  byte l, c, nx, steps, x, k, i, i2, e, v, ok, tg, ct, ce;
  do
  :: ticks < ETICKS ->
     if
     :: g_slow_count != 0 ->
        d_step { if :: rval == PENDRES -> tg = rtag :: else -> tg = 255 fi };
        if :: tg != 255 -> help_one(T, tg) :: else fi;
        tg = 0;
        run_frees(T)
     :: else
     fi;
     skip;
     d_step { g_era++; ticks++ }
  :: else -> break
  od
}

/* handoff_parent: if P was retired, keep its batch alive (+n), hand one reference to each
 * helper still announcing P (H2: seq_cst load + CAS), then add handed - n. Bound: records. */
inline handoff_parent(t) {
  if
  :: side[P] >= RETIRED && side[P] != FREED ->   /* side_retired() */
     bb = side[P] - RETIRED;
     d_step { refs[bb] = refs[bb] + NREC };
     k = 0;
#ifndef NO_HANDOFF
     d_step { if :: help_parent == P -> REACH(12) help_parent = 0; k++ :: else fi };
#endif
     d_step { refs[bb] = refs[bb] + k - NREC; queue_if_zero(t, bb) };
     k = 0; bb = 0
  :: else
  fi
}

proctype helpee() {
  byte l, c, nx, steps, x, k, i, i2, e, v, ok, bb, tg, value, ct, ce;
  /* protect_slow(src = &P->next, slot 1): the slot was never used: reserve it first */
  reserve(H, S1);
  tg = stag[S1] + 1;                      /* odd: a request is open */
  g_slow_count++;                         /* seq_cst, before the request opens */
  d_step { stag[S1] = tg };               /* open: tag the era pair (16-byte CAS) ... */
  d_step { rval = PENDRES; rtag = tg };   /* ... then the result */
  complete(H, tg);
  value = rval;
  handoff_parent(H);
  skip;
  /* close: even tag again: load the pair, 16-byte CAS; a failure means a helper that saw
   * the request open raised the era meanwhile (each at most once more). Bound: n + 1. */
  d_step { ct = stag[S1]; ce = sera[S1] };
  i = 0;
  do
  :: true ->
     i++; assert(i <= NREC + 1);
     d_step {
       if
       :: stag[S1] == ct && sera[S1] == ce -> stag[S1] = tg + 1; ok = 1
       :: else -> REACH(16) ct = stag[S1]; ce = sera[S1]; ok = 0
       fi
     };
     if :: ok -> break :: else fi
  od;
  i = 0; ok = 0; ct = 0; ce = 0;
  d_step { rval = 0; rtag = tg + 1 };
  g_slow_count--;
  /* protect returned value: H dereferences it (the program's use) */
  d_step { assert(value == 0 || freed[value] == 0); holdsH = holdsH | (1 << value) };
  /* leave: the program's uses end; lists dropped (in_region = 0 first) */
  holdsH = 0;
  d_step { l = head[S0]; head[S0] = ACTIVE_EMPTY };
  drop_list(H, l);
  d_step { l = head[S1]; head[S1] = ACTIVE_EMPTY };
  drop_list(H, l);
  run_frees(H)
}

proctype retirer() {
  byte l, c, c2, nx, steps, x, k, s, bb, prev, nv, ok;
  if
  :: pnext = 0; retire_impl(W, C); retire_impl(W, P)  /* unlink C, retire C, then P */
  :: retire_impl(W, P); pnext = 0; retire_impl(W, C)  /* P unlinked first (not modelled) */
  fi
}

init {
  atomic {
    side[P] = 1; side[C] = 2;
    /* H entered a region and protected P in slot 0 at era 1 (before C was born) */
    head[S0] = ACTIVE_EMPTY; sera[S0] = 1; holdsH = 1 << P;
    run helpee(); run ticker(); run retirer()
  }
}
