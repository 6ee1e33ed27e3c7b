// hazard_eras: Ramalhete and Correia's hazard eras, 4 per thread (static strategy, the same
// scan threshold as hazard_pointer).
#include <cassert>
#include <xenium/reclamation/hazard_eras.hpp>

#include "schemes.hpp"

namespace {
using he = xenium::reclamation::hazard_eras<>::with<
    xenium::policy::allocation_strategy<xenium::reclamation::he_allocation::static_strategy<4>>>;
}

rbench::result rbench::run_he(const config& cfg) { return run<he>(cfg); }
