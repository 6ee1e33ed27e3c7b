/* sb.pml: per-thread store buffers (x86-TSO, the one reordering that matters: a store
 * waits in its thread's FIFO while later loads of that thread go ahead). Included by the
 * models that check a fence (E1, E4, E6, E7); variables that never sit in a buffer are
 * plain Promela globals there. */

/* The including model defines NMEM (buffered variables, indices into mem[]) and NSB
 * (threads with a buffer; their ids are 0..NSB-1). */
#define SBD 2                       /* buffer depth: enough for the stores between fences */

byte mem[NMEM];                     /* what every other thread reads */
byte sba[NSB * SBD];                /* buffered (address, value), oldest first */
byte sbv[NSB * SBD];
byte sbn[NSB];
byte sbi;                           /* scratch, always 0 between steps (not hidden: BFS) */

/* A plain store (C++ relaxed/release, x86 mov): into the buffer; a full buffer stalls the
 * thread until the flusher makes room, as the hardware does. */
inline st(t, a, v) {
  d_step {
    sbn[t] < SBD ->
    sba[t * SBD + sbn[t]] = a;
    sbv[t * SBD + sbn[t]] = v;
    sbn[t]++
  }
}

/* A load: the thread's own newest buffered store to a wins (store forwarding), else memory. */
inline ld(t, a, r) {
  d_step {
    r = mem[a];
    sbi = 0;
    do
    :: sbi < sbn[t] -> if :: sba[t * SBD + sbi] == a -> r = sbv[t * SBD + sbi] :: else fi; sbi++
    :: else -> break
    od;
    sbi = 0
  }
}

/* A full fence (seq_cst fence, a locked RMW, an xchg store): the buffer drains to memory
 * before anything later in the thread. Draining in one step is equivalent to waiting for
 * the flusher: nobody can observe the difference but the thread itself, which is stopped. */
inline fence(t) {
  d_step {
    sbi = 0;
    do
    :: sbi < sbn[t] -> mem[sba[t * SBD + sbi]] = sbv[t * SBD + sbi];
                       sba[t * SBD + sbi] = 0; sbv[t * SBD + sbi] = 0; sbi++
    :: else -> break
    od;
    sbn[t] = 0;
    sbi = 0
  }
}

/* The memory system: moves the oldest buffered store of thread t to memory, at any time. */
proctype flusher(byte t) {
end:
  do
  :: d_step {
       sbn[t] > 0 ->
       mem[sba[t * SBD]] = sbv[t * SBD];
       sbi = 1;
       do
       :: sbi < sbn[t] -> sba[t * SBD + sbi - 1] = sba[t * SBD + sbi];
                          sbv[t * SBD + sbi - 1] = sbv[t * SBD + sbi]; sbi++
       :: else -> break
       od;
       sbn[t]--;
       sba[t * SBD + sbn[t]] = 0; sbv[t * SBD + sbn[t]] = 0;
       sbi = 0
     }
  od
}
