// quiescent_state_based: QSBR (leaving the outermost region is a quiescent state).
#include <cassert>
#include <xenium/reclamation/quiescent_state_based.hpp>

#include "schemes.hpp"

rbench::result rbench::run_qsbr(const config& cfg) { return run<xenium::reclamation::quiescent_state_based>(cfg); }
