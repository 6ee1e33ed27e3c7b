// wfmm::xenium_reclaimer: Crystalline-W inside the wfmm heaps.
#include <cassert>
#include <wfmm/xenium.hpp>

#include "schemes.hpp"

rbench::result rbench::run_wfmm(const config& cfg) { return run<wfmm::xenium_reclaimer>(cfg); }
