// epoch_based<>: Fraser-style EBR (scan all threads every 100 critical-region entries, region_guard is a no-op).
#include <cassert>
#include <xenium/reclamation/generic_epoch_based.hpp>

#include "schemes.hpp"

rbench::result rbench::run_ebr(const config& cfg) { return run<xenium::reclamation::epoch_based<>>(cfg); }
