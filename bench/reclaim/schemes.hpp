// The schemes the benchmark compares; each is compiled in its own translation unit
// (scheme_<name>.cpp) to keep compile time and memory per unit low.
#pragma once
#include "harness.hpp"

namespace rbench {
result run_wfmm(const config&);
result run_ebr(const config&);
result run_nebr(const config&);
result run_debra(const config&);
result run_qsbr(const config&);
result run_hp(const config&);
result run_he(const config&);
result run_stamp(const config&);
result run_leak(const config&);
#ifdef WFMM_BENCH_URCU
result run_urcu_qsbr(const config&);  // hash map only
result run_urcu_memb(const config&);  // hash map only
#endif
}  // namespace rbench
