// libFuzzer target: safe memory reclamation (wfmm_enter/leave, protect, retire, retire_with,
// retire_dispose, flush, barrier, read_lock/unlock, synchronize) with deferred free
// (wfmm_shim_free and wfmm_shim_realloc retire) and WFMM_POISON=1, driven by the fuzzer's
// bytes over three worker threads and checked against a shadow of what each thread may
// still read:
//   - a node protected by index i stays intact until the next protect on i or the end of
//     the region (regions nest; only the outermost counts);
//   - a node loaded inside a read-side section stays intact until its outermost unlock;
//   - deferred free (README "Deferred free", Guarantee): a node born before thread T's last
//     allocator call and freed by another thread after it stays intact until T makes
//     another call. A node born after that call may be reused under T: that is the
//     documented contract (what keeps memory bounded when T stops calling the allocator),
//     so the shadow claims nothing for it;
//   - a deleter (retire_with, retire_dispose) runs once, on intact contents, and never while
//     the shadow says some thread may still read the node;
//   - wfmm_barrier returns (other threads are nudged through the allocator, since their
//     implicit regions hold deferred frees), and afterwards every node the caller retired
//     with a deleter has had it run.
// "Intact" is the byte pattern written when the node was made; poison (0xdb) or a reuse by
// another node breaks it. One operation at a time: the main thread hands each to a worker
// and waits, so every run of an input is the same interleaving. A violation prints the
// reason and traps, so libFuzzer saves the input.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "input.h"
#include "wfmm/wfmm.h"

#include "../shim_names.h"

namespace {

constexpr unsigned kWorkers = 3;
constexpr unsigned kRoots = 6;
constexpr unsigned kSlots = WFMM_PROTECT_SLOTS;

[[noreturn]] void fail(const char* what, long a = 0, long b = 0) {
  fprintf(stderr, "reclaim_fuzz: %s (%ld, %ld)\n", what, a, b);
  __builtin_trap();
}

// ---- Nodes and the shadow ----

enum class State { kLive, kRetired, kReclaimed };
struct Node {
  unsigned char* p;
  size_t size;      // bytes checked (the pattern covers them)
  uint8_t seed;     // byte i is seed + i*13
  uint64_t born;    // operation number of its allocation
  State state = State::kLive;
  int retirer = -1;  // worker that retired it
  bool has_dtor = false;
  bool dtor_ran = false;
};

// Roots: static storage, so wfmm_protect needs no enclosing block.
void* volatile g_root[kRoots];
Node* g_root_node[kRoots];
unsigned g_last_root = 0;
// A root from a byte: half of the values name the root the previous root operation used,
// so short inputs chain operations on one node (publish, load, retire, read).
unsigned pick_root(uint8_t b) {
  if (b & 0x80) return g_last_root;
  return g_last_root = (b & 0x7f) % kRoots;
}

uint64_t g_op = 0;  // operation counter (the shadow's clock)
std::vector<Node*> g_nodes;  // this input's nodes, freed at its end
// The shadow's lock: deleters read it on a worker while main, waiting out a barrier
// (nudged), changes other workers' shadows. Elsewhere main changes it only while no worker
// runs.
std::mutex g_shadow_m;

struct Shadow {
  unsigned depth = 0, read_depth = 0;
  bool is_read[8] = {};  // per nesting level: opened by read_lock (closed by read_unlock)
  Node* prot[kSlots] = {};
  std::set<Node*> read_held;
  // Implicit region: clean = no call of uncertain effect since the last allocator call
  // (at operation last_call); held = nodes loaded since, born before it.
  bool clean = false;
  uint64_t last_call = 0;
  std::set<Node*> implicit_held;
};
Shadow g_sh[kWorkers];

bool may_read(const Node* n) {
  for (const Shadow& s : g_sh) {
    if (s.depth > 0)
      for (Node* q : s.prot)
        if (q == n) return true;
    if (s.read_depth > 0 && s.read_held.count(const_cast<Node*>(n))) return true;
    if (s.implicit_held.count(const_cast<Node*>(n))) return true;
  }
  return false;
}

// How a thread may read n (0: it may not): 1 protected, 2 in a read section, 3 implicitly.
unsigned read_kind(const Node* n) {
  unsigned k = 0;
  for (const Shadow& s : g_sh) {
    if (s.depth > 0)
      for (Node* q : s.prot)
        if (q == n) k = 1;
    if (s.read_depth > 0 && s.read_held.count(const_cast<Node*>(n))) k = 2;
    if (s.implicit_held.count(const_cast<Node*>(n))) k = 3;
  }
  return k;
}

// Coverage for the shadow's states: libFuzzer sees the harness's edges, so an input that
// reaches a new state (a node retired while a thread may read it, by each method) is kept
// and mutated further, though the library's own code ran no new edge. Each value is its own
// branch.
volatile unsigned g_hint_sink;
void hint(unsigned v) {
  switch (v) {
#define H(n) \
  case n:    \
    g_hint_sink = n; \
    break;
    H(0) H(1) H(2) H(3) H(4) H(5) H(6) H(7) H(8) H(9) H(10) H(11) H(12) H(13) H(14) H(15)
    H(16) H(17) H(18) H(19) H(20) H(21) H(22) H(23) H(24) H(25) H(26) H(27) H(28) H(29)
    H(30) H(31)
#undef H
    default:
      break;
  }
}

unsigned char pattern(uint8_t seed, size_t i) { return uint8_t(seed + i * 13); }

void fill(Node* n) {
  for (size_t i = 0; i < n->size; ++i) n->p[i] = pattern(n->seed, i);
}

// all = false: the first and last 64 bytes only (checked after every operation).
void check_intact(const Node* n, const char* why, bool all = true) {
  // Bound: the node's size.
  for (size_t i = 0; i < n->size; ++i) {
    if (!all && i == 64 && n->size > 128) i = n->size - 64;
    if (n->p[i] != pattern(n->seed, i)) fail(why, long(i), n->p[i]);
  }
}

// Deleters (retire_with, retire_dispose): run when no region can reach the node.
void on_reclaim(Node* n) {
  std::lock_guard<std::mutex> l(g_shadow_m);
  if (n->dtor_ran) fail("deleter ran twice");
  if (n->state != State::kRetired) fail("deleter of a node not retired");
  if (may_read(n)) fail("deleter ran while a thread may still read the node", long(n->born));
  check_intact(n, "deleter found the node modified");
  n->dtor_ran = true;
  n->state = State::kReclaimed;
}
void dtor_fn(void* p, void* ctx) {
  Node* n = static_cast<Node*>(ctx);
  if (p != n->p) fail("deleter got another pointer");
  on_reclaim(n);
}
void dispose_fn(void* p, void* ctx) {
  dtor_fn(p, ctx);
  wfmm_free(p);  // retire_dispose: the deleter takes the block over
}

// ---- Workers ----

class Worker {
 public:
  Worker() : t_([this] { run(); }) {}
  // Runs job on the worker and waits for it.
  void call(std::function<void()> job) {
    post(std::move(job));
    wait();
  }
  void post(std::function<void()> job) {
    std::lock_guard<std::mutex> l(m_);
    job_ = std::move(job);
    busy_ = true;
    cv_.notify_all();
  }
  bool done() {
    std::lock_guard<std::mutex> l(m_);
    return !busy_;
  }
  void wait() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !busy_; });
  }

 private:
  void run() {
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      cv_.wait(l, [&] { return busy_; });
      std::function<void()> job = std::move(job_);
      l.unlock();
      job();
      l.lock();
      busy_ = false;
      cv_.notify_all();
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool busy_ = false;
  std::thread t_;  // never joined: the workers live as long as the process
};

Worker* g_w[kWorkers];

// Before worker w makes a call that may end its implicit region: the shadow forgets what
// that region held (first, since deleters may run inside the call), and claims nothing new
// until a call that surely ends it.
void before_call(unsigned w) {
  std::lock_guard<std::mutex> l(g_shadow_m);
  g_sh[w].implicit_held.clear();
  g_sh[w].clean = false;
}
// After a call by worker w; definite: it surely ended the implicit region (a malloc-family
// call or a deferred free: the reservation moved to the era of that call), which restarts
// there.
void after_call(unsigned w, bool definite) {
  std::lock_guard<std::mutex> l(g_shadow_m);
  if (definite) {
    g_sh[w].clean = true;
    g_sh[w].last_call = g_op;
  }
}

// ---- Operations ----

using Reader = wfmm_fuzz::Input;

size_t node_size(uint8_t k, uint16_t v) {
  switch (k % 8) {
    case 0:
    case 1:
    case 2:
    case 3:
      return 16 + v % 241;
    case 4:
    case 5:
      return 16 + v % 4081;
    case 6:
      return 16 + v * size_t(2);  // to 128 KiB: medium pages
    default:
      return 64 * 1024 + size_t(v % 64) * 4096;  // large blocks
  }
}

// A new node made by worker w (an allocator call: definite).
Node* make_node(unsigned w, uint8_t how, size_t size) {
  Node* n = new Node;
  n->size = size;
  n->seed = uint8_t(g_op * 31 + how);
  before_call(w);
  g_w[w]->call([&] {
    switch (how % 4) {
      case 0: n->p = static_cast<unsigned char*>(wfmm_shim_malloc(size)); break;
      case 1: n->p = static_cast<unsigned char*>(wfmm_malloc(size)); break;
      case 2: n->p = static_cast<unsigned char*>(wfmm_shim_calloc(1, size)); break;
      default: n->p = static_cast<unsigned char*>(wfmm_aligned_alloc(64, size)); break;
    }
    if (n->p == nullptr) fail("allocation failed", long(size));
    if (how % 4 == 2)
      for (size_t i = 0; i < size; ++i)
        if (n->p[i] != 0) fail("calloc gave a dirty byte", long(i));
    fill(n);
  });
  after_call(w, true);
  n->born = g_op;
  g_nodes.push_back(n);
  return n;
}

// Worker w retires node n (already unlinked) by method m.
void dispose(unsigned w, Node* n, uint8_t m) {
  hint(read_kind(n) * 4 + m % 4);
  n->state = State::kRetired;
  n->retirer = int(w);
  switch (m % 4) {
    case 0:
      before_call(w);
      g_w[w]->call([&] { wfmm_retire(n->p); });
      break;
    case 1:
      n->has_dtor = true;
      before_call(w);
      g_w[w]->call([&] { wfmm_retire_with(n->p, dtor_fn, n); });
      break;
    case 2:
      n->has_dtor = true;
      before_call(w);
      g_w[w]->call([&] { wfmm_retire_dispose(n->p, dispose_fn, n); });
      break;
    default:
      before_call(w);
      g_w[w]->call([&] { wfmm_shim_free(n->p); });  // deferred free
      after_call(w, true);
      break;
  }
}

void unlink(unsigned w, unsigned r, uint8_t m) {
  Node* n = g_root_node[r];
  if (n == nullptr) return;
  g_root[r] = nullptr;
  g_root_node[r] = nullptr;
  dispose(w, n, m);
}

// Worker w's region ends (outermost leave or unlock): its protections go first.
void leave(unsigned w, bool read) {
  Shadow& s = g_sh[w];
  // Sections close in the order they opened (leave closes an enter, unlock a read_lock).
  if (s.depth == 0 || s.is_read[s.depth - 1] != read) return;
  if (read && --s.read_depth == 0) s.read_held.clear();
  if (--s.depth == 0)
    for (Node*& q : s.prot) q = nullptr;
  before_call(w);
  g_w[w]->call([&] { read ? wfmm_read_unlock() : wfmm_leave(); });
}

// Waits for call on worker w, nudging the others (and main) through the allocator: their
// implicit regions (deferred free) hold what a barrier waits for. Bound: 50000 nudges
// (seconds); beyond, the call is taken to hang.
void nudged(unsigned w, std::function<void()> call) {
  before_call(w);
  g_w[w]->post(std::move(call));
  // Bound: 50000 rounds.
  for (unsigned round = 0; !g_w[w]->done(); ++round) {
    if (round == 50000) fail("barrier or synchronize does not return", long(w));
    for (unsigned o = 0; o < kWorkers; ++o) {
      if (o == w) continue;
      before_call(o);
      g_w[o]->call([] { wfmm_shim_free(wfmm_shim_malloc(16)); });
      after_call(o, true);
    }
    wfmm_shim_free(wfmm_shim_malloc(16));
    if (round > 8) {
      struct timespec ts = {0, 50 * 1000};
      nanosleep(&ts, nullptr);
    }
  }
  g_w[w]->wait();
}

void check_reads(unsigned w, bool all) {
  const Shadow& s = g_sh[w];
  if (s.depth > 0)
    for (Node* q : s.prot)
      if (q != nullptr) check_intact(q, "protected node modified (reclaimed under a reader?)", all);
  if (s.read_depth > 0)
    for (Node* q : s.read_held) check_intact(q, "node read under read_lock modified", all);
  for (Node* q : s.implicit_held)
    check_intact(q, "node held by an implicit region modified (deferred free reused it?)", all);
}

void barrier_check(unsigned w) {
  for (Node* n : g_nodes)
    if (n->retirer == int(w) && n->has_dtor && !n->dtor_ran)
      fail("after wfmm_barrier a node its caller retired was not reclaimed", long(n->born));
}

bool any_region() {
  for (const Shadow& s : g_sh)
    if (s.depth > 0) return true;
  return false;
}

void init() {
  wfmm_option_set("poison", 1);
  wfmm_option_set("deferred_free", 1);
  // The first deferred free installs the implicit-region hook (and birth recording).
  wfmm_shim_free(wfmm_shim_malloc(16));
  void* p = wfmm_malloc(16);
  wfmm_retire(p);
  wfmm_flush();
  for (unsigned w = 0; w < kWorkers; ++w) {
    g_w[w] = new Worker;
    g_w[w]->call([] { wfmm_shim_free(wfmm_shim_malloc(16)); });
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bool once = (init(), true);
  (void)once;
  Reader r{data, size};
  // Knobs for this input: small batches and frequent era ticks reach the slow paths.
  uint8_t knobs = r.byte();
  const long freqs[] = {1, 2, 7, 110};
  const long batches[] = {1, 2, 5, 64};
  const long attempts[] = {0, 1, 16, 16};
  wfmm_option_set("era_freq", freqs[knobs & 3]);
  wfmm_option_set("batch", batches[knobs >> 2 & 3]);
  wfmm_option_set("protect_attempts", attempts[knobs >> 4 & 3]);
  wfmm_option_set("defer_min_bytes", (knobs & 0x40) ? 4096 : 0);
  for (Shadow& s : g_sh) s.clean = false;  // start each input with nothing claimed

  // Bound: one operation per 1-5 input bytes; at most 2048 operations per input.
  for (unsigned ops = 0; r.n > 0 && ops < 2048; ++ops) {
    ++g_op;
    uint8_t op = r.byte();
    unsigned w = (op >> 4) % kWorkers;
    Shadow& s = g_sh[w];
    switch (op % 16) {
      case 0:
      case 1: {  // publish a new node in a root; the old one is unlinked and retired
        uint8_t b = r.byte();
        unsigned root = pick_root(b);
        Node* n = make_node(w, b >> 3, node_size(r.byte(), r.word()));
        Node* old = g_root_node[root];
        g_root[root] = n->p;
        g_root_node[root] = n;
        if (old != nullptr) dispose(w, old, b >> 5);
        break;
      }
      case 2: {  // unlink and retire (any worker: blocks handed over between threads)
        uint8_t b = r.byte();
        unlink(w, pick_root(b), b >> 3);
        break;
      }
      case 3:
        if (s.depth < 6) {
          s.is_read[s.depth++] = false;
          before_call(w);
          g_w[w]->call([] { wfmm_enter(); });
        }
        break;
      case 4:
        leave(w, false);
        break;
      case 5: {  // protect a root's node on an index
        uint8_t b = r.byte();
        unsigned root = pick_root(b), i = (b >> 3) % kSlots;
        if (s.depth == 0) break;
        s.prot[i] = nullptr;  // the old protection ends with the call
        before_call(w);
        void* got = nullptr;
        g_w[w]->call([&] { got = wfmm_protect(&g_root[root], i); });
        if (got != g_root[root]) fail("protect returned another pointer");
        s.prot[i] = g_root_node[root];
        if (s.prot[i] != nullptr) hint(22 + (s.depth > 1) + 2 * (s.read_depth > 0));
        if (s.prot[i] != nullptr) check_intact(s.prot[i], "protected node modified at once");
        break;
      }
      case 6: {  // plain load of a root (no call): what the implicit region covers
        Node* n = g_root_node[pick_root(r.byte())];
        if (n == nullptr) break;
        if (s.clean && n->born < s.last_call) {
          hint(20);
          s.implicit_held.insert(n);
        }
        if (s.read_depth > 0) {
          hint(21);
          s.read_held.insert(n);
        }
        break;
      }
      case 7:
      case 8:  // an explicit read: all of every node w may read
        check_reads(w, true);
        break;
      case 9:
        before_call(w);
        g_w[w]->call([] { wfmm_flush(); });
        break;
      case 10:  // churn: allocator calls that reuse memory and tick the era
      {
        uint8_t b = r.byte();
        size_t n = node_size(b, r.word()), count = 1 + (b >> 3) % 8;
        if (b & 0x40) n = size_t(1) << 21, count = 1;  // a large block ticks the era at once
        bool shim = b & 0x80;
        before_call(w);
        g_w[w]->call([&] {
          // Bound: 8 blocks.
          for (size_t k = 0; k < count; ++k) {
            void* v = shim ? wfmm_shim_malloc(n) : wfmm_malloc(n);
            unsigned char* q = static_cast<unsigned char*>(v);
            if (q == nullptr) fail("churn allocation failed");
            memset(q, 0x5a, n < 256 ? n : 256);
            shim ? wfmm_shim_free(q) : wfmm_free(q);
          }
        });
        after_call(w, true);
        break;
      }
      case 11:
        if (s.read_depth < 3 && s.depth < 6) {
          ++s.read_depth;
          s.is_read[s.depth++] = true;
          before_call(w);
          g_w[w]->call([] { wfmm_read_lock(); });
        }
        break;
      case 12:
        leave(w, true);
        break;
      case 13: {  // deferred realloc of a root's node: a moved block is retired
        uint8_t b = r.byte();
        unsigned root = pick_root(b);
        Node* n = g_root_node[root];
        size_t to = node_size(r.byte(), r.word());
        if (n == nullptr) break;
        void* q = nullptr;
        before_call(w);
        g_w[w]->call([&] { q = wfmm_shim_realloc(n->p, to); });
        after_call(w, true);
        if (q == nullptr) fail("realloc failed");
        if (q == n->p) {  // in place: the same node, its checked prefix kept
          if (to < n->size) n->size = to;
          check_intact(n, "realloc in place changed the prefix");
          break;
        }
        n->state = State::kRetired;
        n->retirer = int(w);
        Node* m = new Node;
        m->p = static_cast<unsigned char*>(q);
        m->size = to;
        m->seed = n->seed;
        m->born = g_op;
        size_t keep = n->size < to ? n->size : to;
        for (size_t i = 0; i < keep; ++i)
          if (m->p[i] != pattern(n->seed, i)) fail("realloc lost the prefix", long(i));
        fill(m);
        g_nodes.push_back(m);
        g_root[root] = q;
        g_root_node[root] = m;
        break;
      }
      case 14:  // barrier: not in a region; every region elsewhere closed (it would wait)
        if (any_region()) break;
        nudged(w, [] { wfmm_barrier(); });
        barrier_check(w);
        break;
      default:  // synchronize: not in a region; the others have none open either
        if (any_region()) break;
        nudged(w, [] { wfmm_synchronize(); });
        break;
    }
    // Every thread's readable nodes, after every operation (their ends; all of them on an
    // explicit read).
    for (unsigned o = 0; o < kWorkers; ++o) check_reads(o, false);
  }

  // End of input: close every region, retire every root, and drain with a barrier.
  for (unsigned w = 0; w < kWorkers; ++w) {
    // Bound: 6 nesting levels.
    while (g_sh[w].depth > 0) leave(w, g_sh[w].is_read[g_sh[w].depth - 1]);
  }
  for (unsigned root = 0; root < kRoots; ++root) unlink(root % kWorkers, root, 1);
  for (unsigned w = 0; w < kWorkers; ++w) {
    before_call(w);
    g_w[w]->call([] { wfmm_flush(); });
  }
  // Every batch is published now: one barrier frees them all (the deleters included).
  nudged(0, [] { wfmm_barrier(); });
  for (Node* n : g_nodes)
    if (n->has_dtor && !n->dtor_ran)
      fail("after flushes and a barrier a deleter has not run", long(n->born));
  // Nodes with deleters are all reclaimed now (checked above); the others' records go.
  for (Node* n : g_nodes) delete n;
  g_nodes.clear();
  return 0;
}
