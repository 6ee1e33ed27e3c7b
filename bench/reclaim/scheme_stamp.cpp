// stamp_it: Poeter and Traff's Stamp-it.
#include <cassert>
#include <xenium/reclamation/stamp_it.hpp>

#include "schemes.hpp"

rbench::result rbench::run_stamp(const config& cfg) { return run<xenium::reclamation::stamp_it>(cfg); }
