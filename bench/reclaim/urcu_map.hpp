// The RCU anchor: liburcu's lock-free resizable hash table (cds_lfht, liburcu-cds) on one
// of liburcu's flavours, driven by the same harness (run_ds) as xenium's hash map: same key
// ranges, mixes, prefill, threads, stalled reader and counters.
//
// Include the flavour's header (<urcu/urcu-qsbr.h> or <urcu/urcu-memb.h>, with _LGPL_SOURCE
// for the inlined read side) before this one, and instantiate urcu_scheme<F> with a traits
// struct F naming the flavour's functions (scheme_urcu_qsbr.cpp, scheme_urcu_memb.cpp).
//
//  * Table: 65536 buckets allocated up front, no resizing (xenium's map has 65536 buckets).
//    Hash: a 64-bit mix of the key (split-ordered lists want well-spread bits).
//  * find: read-side section, cds_lfht_lookup. insert: the node is allocated first, then
//    cds_lfht_add_unique inside a read-side section; a lost insert frees its (never
//    published) node at once. erase: lookup + cds_lfht_del inside a read-side section; the
//    removed node goes to call_rcu, whose callback (on liburcu's call_rcu worker thread, one
//    per process by default) frees it.
//  * Region per operation: memb: read lock/unlock around the operation; QSBR: read lock/
//    unlock are no-ops and the thread announces a quiescent state after every operation
//    (as xenium's quiescent_state_based does when its region ends). --region is ignored.
//  * Threads register with the flavour; a stopped worker goes offline (QSBR).
//  * Stalled reader: a registered thread inside a read-side section (memb), or online and
//    never announcing a quiescent state (QSBR), for the whole run: no grace period ends,
//    so every call_rcu'd node stays.
//  * Counters: the node's constructor/destructor bump made/gone like xenium's nodes; call_rcu
//    counts +1 retired on the erasing thread, the callback +1 reclaimed.
#pragma once

#include <urcu/rculfhash.h>

#include "harness.hpp"

namespace rbench {

template <class F>
struct urcu_scheme {
  static void thread_begin() { F::register_thread(); }
  static void thread_stopped() { F::offline(); }
  static void thread_end() { F::unregister_thread(); }  // QSBR: goes offline first itself
  static void drain() { F::barrier(); }
  struct region_guard {
    region_guard() noexcept { F::read_lock(); }
    ~region_guard() {
      F::read_unlock();
      F::quiescent();  // QSBR only (a no-op for memb)
    }
    region_guard(const region_guard&) = delete;
    region_guard& operator=(const region_guard&) = delete;
  };
  struct stall {
    struct hold {
      explicit hold(stall&) { F::read_lock(); }  // QSBR: a no-op; online and silent is enough
      ~hold() { F::read_unlock(); }
      hold(const hold&) = delete;
      hold& operator=(const hold&) = delete;
    };
  };
};

template <class F>
struct urcu_map_ds {
  struct node {
    cds_lfht_node ht;  // first member: node* <-> cds_lfht_node*
    rcu_head rcu;
    std::uint64_t key, value;
    node(std::uint64_t k, std::uint64_t v) : key(k), value(v) {
      cds_lfht_node_init(&ht);
      bump(my_count().made);
    }
    ~node() {
      thread_count& c = my_count();
      bump(t_teardown ? c.chain : c.gone);
    }
  };

  cds_lfht* ht;

  urcu_map_ds() {
    ht = cds_lfht_new_flavor(65536, 65536, 65536, 0, F::flavor(), nullptr);
    if (ht == nullptr) {
      std::fprintf(stderr, "bench_reclaim: cds_lfht_new failed\n");
      std::abort();
    }
  }
  // Runs on a registered thread with no other thread using the table (the harness's teardown).
  ~urcu_map_ds() {
    cds_lfht_iter it;
    F::read_lock();
    cds_lfht_first(ht, &it);
    while (cds_lfht_node* n = cds_lfht_iter_get_node(&it)) {
      cds_lfht_next(ht, &it);
      if (cds_lfht_del(ht, n) == 0) delete reinterpret_cast<node*>(n);  // no reader left
    }
    F::read_unlock();
    if (cds_lfht_destroy(ht, nullptr) != 0) std::fprintf(stderr, "bench_reclaim: cds_lfht_destroy failed\n");
  }
  urcu_map_ds(const urcu_map_ds&) = delete;
  urcu_map_ds& operator=(const urcu_map_ds&) = delete;

  static unsigned long hash(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return static_cast<unsigned long>(k);
  }
  static int match(cds_lfht_node* n, const void* key) {
    return reinterpret_cast<node*>(n)->key == *static_cast<const std::uint64_t*>(key);
  }
  static void free_cb(rcu_head* h) {
    node* n = reinterpret_cast<node*>(reinterpret_cast<char*>(h) - offsetof(node, rcu));
    bump(my_count().reclaimed);
    delete n;
  }

  void prefill(std::uint64_t k) { insert(k); }
  bool find(std::uint64_t k, std::uint64_t& sink) {
    cds_lfht_iter it;
    F::read_lock();
    cds_lfht_lookup(ht, hash(k), match, &k, &it);
    cds_lfht_node* n = cds_lfht_iter_get_node(&it);
    if (n != nullptr) {
      const node* nd = reinterpret_cast<node*>(n);
      if (nd->key != k || nd->value != k * 3) ++t_bad;
      sink += nd->value;
    }
    F::read_unlock();
    return n != nullptr;
  }
  bool insert(std::uint64_t k) {
    node* nn = new node(k, k * 3);
    F::read_lock();
    cds_lfht_node* got = cds_lfht_add_unique(ht, hash(k), match, &k, &nn->ht);
    F::read_unlock();
    if (got != &nn->ht) {
      delete nn;  // never published
      return false;
    }
    return true;
  }
  bool erase(std::uint64_t k) {
    cds_lfht_iter it;
    bool done = false;
    F::read_lock();
    cds_lfht_lookup(ht, hash(k), match, &k, &it);
    if (cds_lfht_node* n = cds_lfht_iter_get_node(&it)) {
      if (cds_lfht_del(ht, n) == 0) {
        bump(my_count().retired);
        F::call_rcu(&reinterpret_cast<node*>(n)->rcu, free_cb);
        done = true;
      }
    }
    F::read_unlock();
    return done;
  }
};

template <class F>
result run_urcu(const config& cfg) {
  if (cfg.ds != "map") {
    std::fprintf(stderr, "bench_reclaim: the urcu schemes run the hash map only (--ds=map)\n");
    std::exit(2);
  }
  config c = cfg;
  c.region_per_op = true;
  return run_ds<urcu_scheme<F>, urcu_map_ds<F>>(c);
}

}  // namespace rbench
