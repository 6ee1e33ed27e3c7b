// hazard_pointer: Michael's hazard pointers, 4 per thread (static strategy: a thread scans once
// it holds 2 * (hazard pointers in use) + 100 retired nodes).
#include <cassert>
#include <xenium/reclamation/hazard_pointer.hpp>

#include "schemes.hpp"

namespace {
using hp = xenium::reclamation::hazard_pointer<>::with<
    xenium::policy::allocation_strategy<xenium::reclamation::hp_allocation::static_strategy<4>>>;
}

rbench::result rbench::run_hp(const config& cfg) { return run<hp>(cfg); }
