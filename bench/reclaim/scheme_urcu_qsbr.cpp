// urcu_qsbr: liburcu's cds_lfht on the QSBR flavour (liburcu-qsbr); see urcu_map.hpp.
#define _LGPL_SOURCE 1
#include <urcu/urcu-qsbr.h>

#include "urcu_map.hpp"
#include "schemes.hpp"

namespace {
struct qsbr {
  static void register_thread() { urcu_qsbr_register_thread(); }
  static void unregister_thread() { urcu_qsbr_unregister_thread(); }
  static void online() { urcu_qsbr_thread_online(); }
  static void offline() { urcu_qsbr_thread_offline(); }
  static void read_lock() { urcu_qsbr_read_lock(); }
  static void read_unlock() { urcu_qsbr_read_unlock(); }
  static void quiescent() { urcu_qsbr_quiescent_state(); }
  static void call_rcu(rcu_head* h, void (*f)(rcu_head*)) { urcu_qsbr_call_rcu(h, f); }
  static void barrier() { urcu_qsbr_barrier(); }
  static const rcu_flavor_struct* flavor() { return &urcu_qsbr_flavor; }
};
}  // namespace

rbench::result rbench::run_urcu_qsbr(const config& cfg) { return run_urcu<qsbr>(cfg); }
