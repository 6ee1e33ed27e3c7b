// Runtime options: one table, read once from WFMM_<NAME> environment variables without
// allocating (it can run inside the first malloc), settable later with wfmm_option_set.
#pragma once
#include <atomic>

#include "config.h"

namespace wfmm {

enum class Opt : unsigned {
  kVerbose,       // 0..1: print effective options at start
  kShowStats,     // 0..2: print statistics at exit (1 text, 2 JSON)
  kOnError,       // 0 = abort (default), 1 = continue after reporting
  kPurgeDelayMs,  // empty pages are purged this long after they empty
  kSegmentCache,  // empty segments kept mapped for reuse
  kEraFreq,          // tracked allocations of a thread between era ticks
  kBatch,            // retired blocks per batch
  kProtectAttempts,  // protect fast-path attempts before the slow path (0: slow only)
  kPoison,           // 0..1: fill reclaimed blocks with 0xdb before freeing them
  kCountSteps,       // 0..1: record loop iteration maxima (wfmm_progress_get)
  kDeferredFree,     // 0..1: the shim's free/delete retire instead of freeing
  kDeferMinBytes,    // freed bytes a thread holds back before they may be reused
  kForeignBlocks,    // 0 off, 1 on, 2 auto: retire accepts blocks of the process's malloc
  kHugePages,        // 0 off, 1 huge blocks, 2 auto: where MADV_HUGEPAGE is asked for
  kCount
};

struct OptionDesc {
  const char* name;  // lower case, as given to wfmm_option_set; env var is WFMM_<UPPER>
  long def, min, max;
  const char* help;
};

extern const OptionDesc kOptionDesc[unsigned(Opt::kCount)];
extern std::atomic<long> g_option_value[unsigned(Opt::kCount)] WFMM_HIDDEN;

WFMM_INLINE long option(Opt o) {
  // relaxed: options are independent knobs; a reader may see a change a little late.
  return g_option_value[unsigned(o)].load(std::memory_order_relaxed);
}

// Reads the environment (once per process; a no-op afterwards). Warns on bad values.
void options_load();
// Tests only (tests/fuzz/options_fuzz.cpp): every option back to its default and the
// environment unread, so the next options_load parses `environ` again. Not thread-safe.
void options_reset_for_test();
// 0 on success; -1 for an unknown name or out-of-range value (errno = EINVAL).
int option_set(const char* name, long value);
// How many times purge_delay_ms was set at run time: a new setting starts the purge delay's
// stretch afresh (segment.cpp, purge_delay_ms).
extern std::atomic<uint32_t> g_purge_delay_sets WFMM_HIDDEN;
// -1 with errno = EINVAL for an unknown name.
long option_get(const char* name);
// Writes "wfmm: option <name> = <value>" lines to stderr.
void options_print();

}  // namespace wfmm
