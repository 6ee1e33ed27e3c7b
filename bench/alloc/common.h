/* Shared helpers for the allocation workloads in bench/alloc/ (written for wfmm; no code
 * from other benchmark suites).
 *
 *  - Parameters: every program declares a table of `name=value` integer parameters with
 *    defaults; `prog name=value ...` overrides them, `prog --help` lists them. An unknown
 *    name or a malformed value prints the list and exits with status 2.
 *  - Random numbers: splitmix64, one independent stream per thread and purpose, so every
 *    thread's sequence of requests is the same under every allocator and every schedule.
 *  - Content: fill() writes a tag-derived 64-bit pattern into a block (the first 64 bytes,
 *    one word per 4 KiB so every page is touched, and the last word); check() verifies it
 *    and returns a hash of what it read. On a mismatch the program prints what it found and
 *    exits with status 3. Every block is checked before it is freed.
 *  - Output: one line, `NAME: params ... checksum=0x...`. The checksum is a sum (mod 2^64)
 *    of the hashes of every block checked, so it does not depend on thread scheduling, only
 *    on the data: the suite runner compares it with glibc's.
 *
 * Only malloc, calloc, realloc and free are called (the programs are compiled with
 * -fno-builtin-malloc and friends, so no call is elided or merged).
 */
#ifndef WFMM_BENCH_ALLOC_COMMON_H
#define WFMM_BENCH_ALLOC_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- parameters ---------------------------------------------------------------------- */

typedef struct {
  const char *name;
  long value;
  const char *help;
} param_t;

static inline void params_usage(const char *prog, const char *what, const param_t *p) {
  fprintf(stderr, "usage: %s [name=value ...]\n%s\nparameters (default):\n", prog, what);
  for (; p->name; p++) fprintf(stderr, "  %-12s %-10ld %s\n", p->name, p->value, p->help);
}

/* Parses argv into the table (terminated by a {0} entry); exits 2 on bad input. */
static inline void params_parse(int argc, char **argv, param_t *p, const char *what) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      params_usage(argv[0], what, p);
      exit(0);
    }
    const char *eq = strchr(a, '=');
    param_t *q = p;
    if (eq)
      for (; q->name; q++)
        if (strlen(q->name) == (size_t)(eq - a) && !strncmp(q->name, a, (size_t)(eq - a))) break;
    char *end = NULL;
    errno = 0;
    long v = eq ? strtol(eq + 1, &end, 0) : 0;
    if (!eq || !q->name || errno || end == eq + 1 || *end || v < 0) {
      fprintf(stderr, "%s: bad argument '%s'\n", argv[0], a);
      params_usage(argv[0], what, p);
      exit(2);
    }
    q->value = v;
  }
}

static inline long param(const param_t *p, const char *name) {
  for (; p->name; p++)
    if (!strcmp(p->name, name)) return p->value;
  fprintf(stderr, "internal error: no parameter %s\n", name);
  abort();
}

/* Requires lo <= param <= hi; exits 2 otherwise. */
static inline long param_in(const param_t *p, const char *name, long lo, long hi) {
  long v = param(p, name);
  if (v < lo || v > hi) {
    fprintf(stderr, "parameter %s=%ld out of range %ld..%ld\n", name, v, lo, hi);
    exit(2);
  }
  return v;
}

/* Prints `NAME: a=1 b=2 ... checksum=0x...` on stdout. */
static inline void print_result(const char *name, const param_t *p, uint64_t checksum) {
  printf("%s:", name);
  for (; p->name; p++) printf(" %s=%ld", p->name, p->value);
  printf(" checksum=0x%016" PRIx64 "\n", checksum);
  fflush(stdout);
}

/* ---- random numbers ------------------------------------------------------------------ */

typedef struct {
  uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* A stream for (seed, a, b): e.g. (seed, thread index, purpose). */
static inline rng_t rng_make(uint64_t seed, uint64_t a, uint64_t b) {
  rng_t r = {seed * 0xD1B54A32D192ED03ull + a * 0xABC98388FB8FAC03ull + b * 0x8CB92BA72F3D8DD7ull};
  rng_next(&r);
  return r;
}

/* Uniform in [lo, hi] (hi >= lo). */
static inline uint64_t rng_range(rng_t *r, uint64_t lo, uint64_t hi) {
  return lo + rng_next(r) % (hi - lo + 1);
}

/* ---- content ------------------------------------------------------------------------- */

static inline uint64_t pat(uint64_t tag, size_t off) {
  uint64_t x = tag ^ ((uint64_t)off * 0x9E3779B97F4A7C15ull);
  return x ^ (x >> 29);
}

static inline void put64(unsigned char *b, uint64_t v) { memcpy(b, &v, 8); }
static inline uint64_t get64(const unsigned char *b) {
  uint64_t v;
  memcpy(&v, b, 8);
  return v;
}

/* The offsets fill() writes for a block of n >= 8 bytes: 0, 8, ..., 56 (those inside the
 * block), every multiple of 4096, and the last 8-aligned word; all offsets are multiples of
 * 8, so two words either coincide or do not overlap. Runs body for each; `off + 8 <= n`. */
#define FOR_EACH_WORD(n, off, body)                                        \
  do {                                                                     \
    size_t off;                                                            \
    for (off = 0; off + 8 <= (n) && off < 64; off += 8) { body; }          \
    for (off = 4096; off + 8 <= (n); off += 4096) { body; }                \
    off = ((n) - 8) & ~(size_t)7;                                          \
    { body; }                                                              \
  } while (0)

static inline void fill(void *p, size_t n, uint64_t tag) {
  unsigned char *b = (unsigned char *)p;
  if (n < 8) {
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(pat(tag, i) >> 7);
    return;
  }
  FOR_EACH_WORD(n, off, put64(b + off, pat(tag, off)));
}

static inline void fail_block(const char *what, const void *p, size_t n, size_t off, uint64_t got,
                       uint64_t want) {
  fprintf(stderr,
          "CONTENT MISMATCH (%s): block %p of %zu bytes, offset %zu: found 0x%016" PRIx64
          ", wrote 0x%016" PRIx64 "\n",
          what, p, n, off, got, want);
  fflush(stderr);
  _exit(3);
}

/* Verifies the pattern fill(p, n, tag) wrote at offsets below `limit` (use limit = n for the
 * whole block, the new size after a shrinking realloc); returns a hash of the content. */
static inline uint64_t check_upto(const void *p, size_t n, uint64_t tag, size_t limit, const char *what) {
  const unsigned char *b = (const unsigned char *)p;
  uint64_t h = (uint64_t)n * 0x100000001B3ull;
  if (n < 8) {
    for (size_t i = 0; i < n && i < limit; i++) {
      unsigned char want = (unsigned char)(pat(tag, i) >> 7);
      if (b[i] != want) fail_block(what, p, n, i, b[i], want);
      h = (h ^ b[i]) * 0x100000001B3ull;
    }
    return h;
  }
  FOR_EACH_WORD(n, off, {
    if (off + 8 <= limit) {
      uint64_t v = get64(b + off);
      if (v != pat(tag, off)) fail_block(what, p, n, off, v, pat(tag, off));
      h = (h ^ v) * 0x100000001B3ull;
    }
  });
  return h;
}

static inline uint64_t check(const void *p, size_t n, uint64_t tag) {
  return check_upto(p, n, tag, n, "before free");
}

/* calloc'ed memory must read as zero (checked at the words fill() would write). */
static inline void check_zero(const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  if (n < 8) {
    for (size_t i = 0; i < n; i++)
      if (b[i]) fail_block("calloc not zero", p, n, i, b[i], 0);
    return;
  }
  FOR_EACH_WORD(n, off, {
    uint64_t v = get64(b + off);
    if (v) fail_block("calloc not zero", p, n, off, v, 0);
  });
}

/* ---- allocation wrappers ------------------------------------------------------------- */

static inline void *xmalloc_or_die(size_t n) {
  void *p = malloc(n);
  if (!p && n) {
    fprintf(stderr, "malloc(%zu) returned NULL\n", n);
    _exit(4);
  }
  return p;
}
#define MALLOC(n) xmalloc_or_die(n)

static inline void *xcalloc_or_die(size_t k, size_t n) {
  void *p = calloc(k, n);
  if (!p && k && n) {
    fprintf(stderr, "calloc(%zu, %zu) returned NULL\n", k, n);
    _exit(4);
  }
  return p;
}
#define CALLOC(k, n) xcalloc_or_die(k, n)

static inline void *xrealloc_or_die(void *q, size_t n) {
  void *p = realloc(q, n);
  if (!p && n) {
    fprintf(stderr, "realloc(%p, %zu) returned NULL\n", q, n);
    _exit(4);
  }
  return p;
}
#define REALLOC(q, n) xrealloc_or_die(q, n)

/* A block with what was written into it. */
typedef struct {
  void *p;
  size_t n;
  uint64_t tag;
} obj_t;

/* Allocates n bytes, fills them with a fresh tag from r. */
static inline obj_t obj_new(size_t n, rng_t *r) {
  obj_t o;
  o.p = MALLOC(n);
  o.n = n;
  o.tag = rng_next(r);
  fill(o.p, n, o.tag);
  return o;
}

/* Checks and frees; returns the content hash (0 for an empty slot). */
static inline uint64_t obj_free(obj_t *o) {
  if (!o->p) return 0;
  uint64_t h = check(o->p, o->n, o->tag);
  free(o->p);
  o->p = NULL;
  return h;
}

/* ---- threads ------------------------------------------------------------------------- */

static inline void xpthread_create(pthread_t *t, void *(*fn)(void *), void *arg) {
  int e = pthread_create(t, NULL, fn, arg);
  if (e) {
    fprintf(stderr, "pthread_create: %s\n", strerror(e));
    _exit(5);
  }
}

static inline void xpthread_join(pthread_t t) {
  int e = pthread_join(t, NULL);
  if (e) {
    fprintf(stderr, "pthread_join: %s\n", strerror(e));
    _exit(5);
  }
}

/* The common shape of a workload: `threads` threads each run body(id), which returns the
 * checksum of the blocks it handled; the result is their sum (independent of scheduling). */
typedef struct {
  long id;
  uint64_t (*body)(long id);
  uint64_t sum;
} run_slot_t;

static void *worker_main(void *arg) {
  run_slot_t *w = (run_slot_t *)arg;
  w->sum = w->body(w->id);
  return NULL;
}

static inline uint64_t run_workers(long threads, uint64_t (*body)(long id)) {
  pthread_t *th = (pthread_t *)MALLOC((size_t)threads * sizeof(pthread_t));
  run_slot_t *w = (run_slot_t *)CALLOC((size_t)threads, sizeof(run_slot_t));
  for (long t = 0; t < threads; t++) {
    w[t].id = t;
    w[t].body = body;
    xpthread_create(&th[t], worker_main, &w[t]);
  }
  uint64_t sum = 0;
  for (long t = 0; t < threads; t++) {
    xpthread_join(th[t]);
    sum += w[t].sum;
  }
  free(th);
  free(w);
  return sum;
}

#endif
