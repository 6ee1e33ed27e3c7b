// leak: never reclaims (leak_reclaimer.hpp); the upper bound on throughput.
#include <cassert>

#include "leak_reclaimer.hpp"
#include "schemes.hpp"

rbench::result rbench::run_leak(const config& cfg) { return run<leak_reclaimer>(cfg); }
