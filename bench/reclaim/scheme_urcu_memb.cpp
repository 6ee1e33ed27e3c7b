// urcu_memb: liburcu's cds_lfht on the membarrier flavour (liburcu-memb: read-side sections
// without fences; synchronize_rcu uses sys_membarrier); see urcu_map.hpp.
#define _LGPL_SOURCE 1
#include <urcu/urcu-memb.h>

#include "urcu_map.hpp"
#include "schemes.hpp"

namespace {
struct memb {
  static void register_thread() { urcu_memb_register_thread(); }
  static void unregister_thread() { urcu_memb_unregister_thread(); }
  static void online() {}
  static void offline() {}
  static void read_lock() { urcu_memb_read_lock(); }
  static void read_unlock() { urcu_memb_read_unlock(); }
  static void quiescent() {}
  static void call_rcu(rcu_head* h, void (*f)(rcu_head*)) { urcu_memb_call_rcu(h, f); }
  static void barrier() { urcu_memb_barrier(); }
  static const rcu_flavor_struct* flavor() { return &urcu_memb_flavor; }
};
}  // namespace

rbench::result rbench::run_urcu_memb(const config& cfg) { return run_urcu<memb>(cfg); }
