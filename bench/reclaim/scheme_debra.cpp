// debra<>: Brown's DEBRA (scan one thread every 20 entries).
#include <cassert>
#include <xenium/reclamation/generic_epoch_based.hpp>

#include "schemes.hpp"

rbench::result rbench::run_debra(const config& cfg) { return run<xenium::reclamation::debra<>>(cfg); }
