// new_epoch_based<>: Hart et al.'s NEBR (as EBR, but region_guard extends the critical region).
#include <cassert>
#include <xenium/reclamation/generic_epoch_based.hpp>

#include "schemes.hpp"

rbench::result rbench::run_nebr(const config& cfg) { return run<xenium::reclamation::new_epoch_based<>>(cfg); }
