/* racefree.pml: two threads free the same block X at the same moment under deferred free
 * (a program's double free), with the side word taken by a plain store where the freer's
 * own implicit reservation covers X (retire.cpp retire_body), and the reconciliation at
 * reclamation (frees.cpp free_some: a block whose side word no longer names the batch is
 * reported, not freed). Store buffers as in sb.pml.
 * With -DEXPLICIT the two threads retire X with wfmm_retire inside regions instead (a
 * program's double retire), the plain store taken where one of the retirer's user
 * reservations covers X (reserved_in_region): enter's seq_cst in_region store (E6), the
 * protect that reserves X (E1), the outermost leave's release store of in_region = 0 and
 * its drop of a list found on the slot, and a later reset of the slot (protect's refresh:
 * an exchange); publishers read in_region after their fence and skip a thread outside.
 * Both ways of each: the covering reservation made in this region or kept published from
 * an earlier one, the batch published at once or (full later) after the leave. */

#define A 0
#define B 1
#define NSB 2
#define SIDE 0           /* X's side word */
#define ERA0 1           /* A's implicit reservation era (0: none) */
#define ERA1 2           /* B's */
#define INR0 3           /* A's in_region (EXPLICIT) */
#define INR1 4           /* B's */
#define NMEM 5
#include "sb.pml"

#define RETIRED 128      /* kRetiredBit | batch: RETIRED + t for thread t's batch */
#define FREED 255        /* kFreedMark */
#define BIAS 64          /* kBias, scaled */

/* Coverage probes (scripts/verify --holes): -DPROBE=n turns probe n into an assertion that
 * fails when its point is reached, so SPIN shows the path exists (the model is not vacuous). */
#ifdef PROBE
#define REACH(n) assert(PROBE != (n));
#define REACHIF(n, c) assert(PROBE != (n) || !(c));
#else
#define REACH(n)
#define REACHIF(n, c)
#endif

byte freed;              /* times X went back to the heap */
byte reported;           /* reports of the double free */
bit  act[2];          /* implicit slot active (head != kInactive) */
bit  cellin[4];          /* cellin[2 * s + b]: batch b has a cell in thread s's slot */
byte refs[2];            /* batch counts, from BIAS (Crystalline-W's bias, as in the code) */
bit  pubd[2];            /* thread t is past its free (published, or reported) */
byte fin;

/* free_some's item for X in batch bb, run by thread t: the side word must still name the
 * batch; the store of kFreedMark, then heap_free */
inline free_batch(t, bb) {
  ld(t, SIDE, v);
#ifdef HOLE_NORECON
  if :: true ->
#else
  if :: v == RETIRED + bb ->
#endif
       d_step { assert(freed == 0); freed++ };
       st(t, SIDE, FREED)
  :: else -> REACH(41) reported++             /* "double free of" (the other batch frees X) */
  fi;
  v = 0
}

inline unref(t, bb) {
  d_step { refs[bb]--; if :: refs[bb] == 0 -> ok = 1 :: else -> ok = 0 fi };
  if :: ok -> bt = bb; free_batch(t, bt) :: else fi;
  ok = 0
}

/* quiesce: the implicit reservation moves to the era (reset_slot, publish_era's locked
 * CAS: a full barrier, E1) */
inline quiesce(t) {
#ifndef HOLE_NORES
  act[t] = 1;
  st(t, ERA0 + t, 1);
  fence(t)
#else
  skip                                    /* hole: no reservation covers X */
#endif
}

/* publish (E4 fence, then the other thread's implicit slot: a cell if it is active and its
 * era reaches the batch's oldest birth, 1 here; EXPLICIT: its user slot, only while its
 * in_region reads 1) */
inline publish(t) {
  fence(t);
#ifdef EXPLICIT
  ld(t, INR0 + 1 - t, e);
  if :: e == 0 -> REACH(44) act_seen = 0 :: else -> act_seen = 1 fi;
#endif
  ld(t, ERA0 + 1 - t, e);
  d_step {
    if
    :: act[1 - t] && act_seen && e >= 1 -> cellin[2 * (1 - t) + t] = 1; k = 1
    :: else -> k = 0
    fi;
    e = 0; act_seen = 1
  };
  /* refs += cells - bias: whoever brings the count to zero frees (a drop may come first) */
  d_step { refs[t] = refs[t] + k - BIAS; if :: refs[t] == 0 -> ok = 1 :: else -> ok = 0 fi };
  if :: ok -> REACHIF(42, k == 0) bt = t; free_batch(t, bt) :: else fi;
  ok = 0; k = 0
}

/* The thread's next allocator call: the implicit reservation is refreshed, its list dropped
 * (an exchange: a full barrier), the cells' batches unreferenced. */
inline next_call(t) {
  fence(t);
  if :: cellin[2 * t + (1 - t)] -> cellin[2 * t + (1 - t)] = 0; bu = 1 - t; unref(t, bu) :: else fi
}

#ifdef EXPLICIT
/* The outermost leave (fast.h): in_region = 0 (release: a plain store), then, if the slot's
 * head shows a list, wfmm_leave_lists_v1 drops it (an exchange: a full barrier). A cell
 * inserted after the head was read stays until the slot's next reset (later_reset). */
inline leave(t) {
  st(t, INR0 + t, 0);
  if
  :: cellin[2 * t + (1 - t)] ->
     REACH(45) fence(t); cellin[2 * t + (1 - t)] = 0; bu = 1 - t; unref(t, bu)
  :: true
  fi
}
#endif

proctype freer(byte t) {
  byte v, e, k, birth, bt, bu;
  bit ok, act_seen = 1, late = 0, early = 0;
#ifdef EXPLICIT
  /* The reservation that covers X: made in this region, or kept published from an earlier
   * one (user reservations stay published between regions, E6) */
  if :: quiesce(t); early = 1 :: true fi;
  st(t, INR0 + t, 1);                     /* enter: in_region = 1, seq_cst (E6) */
  fence(t);
  if :: !early -> quiesce(t) :: else fi;
#else
  quiesce(t);
#endif
  ld(t, SIDE, birth);
  if
  :: birth >= RETIRED -> REACH(43) reported++            /* retired already: reported */
  :: else ->
#ifdef B_CAS
     if
     :: t == B ->                         /* B retires with the CAS (wfmm_retire, or a */
        fence(t);                         /* freer its reservation does not cover) */
        d_step { if :: mem[SIDE] == birth -> mem[SIDE] = RETIRED + t; ok = 1 :: else -> ok = 0 fi }
     :: else ->
        st(t, SIDE, RETIRED + t); ok = 1
     fi;
#else
     /* covered by our own reservation (era 1 >= birth 1): a plain store, not a CAS */
     st(t, SIDE, RETIRED + t);
     ok = 1;
#endif
     if
     :: ok -> ok = 0; refs[t] = BIAS;
#ifdef EXPLICIT
        /* the batch is published when full: at once, or after the leave */
        if :: publish(t) :: late = 1 fi
#else
        publish(t)
#endif
     :: else -> reported++                /* the CAS lost: reported, not added */
     fi
  fi;
#ifdef EXPLICIT
  leave(t);                               /* the outermost leave */
  if :: late -> REACH(46) publish(t) :: else fi;
  pubd[t] = 1;
  pubd[1 - t] == 1;                       /* later, after the other's retire: */
  next_call(t);                           /* the slot's next reset (its list dropped) */
#else
  pubd[t] = 1;
  next_call(t);                           /* its next allocator call, at any moment */
  pubd[1 - t] == 1;                       /* and one after the other's free (or its exit) */
  next_call(t);
#endif
  fence(t);
  fin++
}

init {
  atomic {
    mem[SIDE] = 1;                        /* X born in era 1, before both reservations */
    run flusher(A); run flusher(B);
    run freer(A); run freer(B)
  }
  fin == 2;
  /* every batch dropped and reclaimed: X went back once, the double free reported once */
  assert(freed == 1 && reported == 1)
}
