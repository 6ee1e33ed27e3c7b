// The options table and its parser. Reads `environ` directly (getenv may not be usable
// before libc is up) and never allocates.
#include "options.h"

#include <errno.h>
#include <string.h>

#include "error.h"

extern char** environ;

namespace wfmm {

const OptionDesc kOptionDesc[unsigned(Opt::kCount)] = {
    {"verbose", 0, 0, 1, "print the effective options at start"},
    {"show_stats", 0, 0, 1, "print statistics to stderr at exit"},
    {"on_error", 0, 0, 1,
     "bad free/realloc: 0 or 'abort' aborts, 1 or 'continue' reports and goes on"},
    {"purge_delay_ms", 50, 0, 3600000, "ms an empty page stays committed before it is purged"},
    {"segment_cache", 16, 0, 1024, "empty 4 MiB segments kept mapped for reuse"},
    {"era_freq", 110, 1, 1000000, "tracked allocations of a thread between era ticks"},
    {"batch", 64, 1, 4096, "retired blocks per batch (published when full)"},
    {"protect_attempts", 16, 0, 1024, "protect fast-path attempts before the slow path"},
    {"poison", 0, 0, 1, "fill reclaimed blocks with 0xdb bytes (tests)"},
    {"count_steps", 0, 0, 1, "record loop iteration maxima (wfmm_progress_get)"},
    {"deferred_free", 0, 0, 1, "free/delete retire the block: reused only after other threads pass through the allocator"},
    {"defer_min_bytes", 0, 0, 1L << 40, "deferred free: bytes a thread holds back before they may be reused"},
};

std::atomic<long> g_option_value[unsigned(Opt::kCount)] = {
    {0}, {0}, {0}, {50}, {16}, {110}, {64}, {16}, {0}, {0}, {0}, {0},
};

namespace {

std::atomic<bool> g_loaded{false};

char upper(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }

// "WFMM_<NAME>=" prefix match against an option name; returns the value text or null.
const char* match_env(const char* entry, const char* name) {
  if (strncmp(entry, "WFMM_", 5) != 0) return nullptr;
  const char* e = entry + 5;
  // Bound: the option name's length.
  for (; *name != '\0'; ++name, ++e) {
    if (*e != upper(*name)) return nullptr;
  }
  return *e == '=' ? e + 1 : nullptr;
}

// Strict decimal parse; false on junk, overflow or empty text.
bool parse_long(const char* s, long* out) {
  if (*s == '\0') return false;
  bool neg = *s == '-';
  if (neg || *s == '+') ++s;
  if (*s == '\0') return false;
  unsigned long v = 0;
  // Bound: the length of the text (at most 20 digits accepted).
  for (; *s != '\0'; ++s) {
    if (*s < '0' || *s > '9') return false;
    if (v > (0x7fffffffffffffffull - 9) / 10) return false;
    v = v * 10 + unsigned(*s - '0');
  }
  *out = neg ? -long(v) : long(v);
  return true;
}

bool parse_value(Opt o, const char* s, long* out) {
  if (o == Opt::kOnError) {
    if (strcmp(s, "abort") == 0) return *out = 0, true;
    if (strcmp(s, "continue") == 0) return *out = 1, true;
  }
  if (o == Opt::kVerbose || o == Opt::kShowStats || o == Opt::kPoison || o == Opt::kCountSteps ||
      o == Opt::kDeferredFree) {
    if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0 || strcmp(s, "on") == 0)
      return *out = 1, true;
    if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0 || strcmp(s, "off") == 0)
      return *out = 0, true;
  }
  return parse_long(s, out);
}

void warn_bad(const OptionDesc& d, const char* text) {
  Msg m;
  m.add("WFMM_");
  char up[40];
  size_t i = 0;
  for (const char* n = d.name; *n != '\0' && i < sizeof up - 1; ++n) up[i++] = upper(*n);
  up[i] = '\0';
  m.add(up).add("='").add(text).add("' is invalid: accepted ").dec(d.min).add("..").dec(d.max);
  if (&d == &kOptionDesc[unsigned(Opt::kOnError)]) m.add(" or abort/continue");
  m.add("; using the default ").dec(d.def).emit();
}

}  // namespace

void options_load() {
  if (g_loaded.load(std::memory_order_acquire)) return;
  char** env = environ;
  if (env == nullptr) return;  // too early in start-up; a later slow path tries again
  if (g_loaded.exchange(true, std::memory_order_acq_rel)) return;
  // Bound: the number of environment entries times the number of options.
  for (char** e = env; *e != nullptr; ++e) {
    for (unsigned i = 0; i < unsigned(Opt::kCount); ++i) {
      const char* text = match_env(*e, kOptionDesc[i].name);
      if (text == nullptr) continue;
      long v = 0;
      if (!parse_value(Opt(i), text, &v) || v < kOptionDesc[i].min || v > kOptionDesc[i].max) {
        warn_bad(kOptionDesc[i], text);
        continue;
      }
      g_option_value[i].store(v, std::memory_order_relaxed);
    }
  }
  if (option(Opt::kVerbose) != 0) options_print();
}

static int find_option(const char* name) {
  if (name == nullptr) return -1;
  for (unsigned i = 0; i < unsigned(Opt::kCount); ++i) {
    const char* n = kOptionDesc[i].name;
    const char* s = name;
    if (strncmp(s, "WFMM_", 5) == 0) s += 5;
    bool eq = true;
    for (; *n != '\0' && *s != '\0'; ++n, ++s) {
      char c = *s >= 'A' && *s <= 'Z' ? char(*s - 'A' + 'a') : *s;
      if (c != *n) {
        eq = false;
        break;
      }
    }
    if (eq && *n == '\0' && *s == '\0') return int(i);
  }
  return -1;
}

int option_set(const char* name, long value) {
  int i = find_option(name);
  if (i < 0 || value < kOptionDesc[i].min || value > kOptionDesc[i].max) {
    errno = EINVAL;
    return -1;
  }
  g_option_value[i].store(value, std::memory_order_relaxed);
  return 0;
}

long option_get(const char* name) {
  int i = find_option(name);
  if (i < 0) {
    errno = EINVAL;
    return -1;
  }
  return g_option_value[i].load(std::memory_order_relaxed);
}

void options_print() {
  for (unsigned i = 0; i < unsigned(Opt::kCount); ++i) {
    Msg()
        .add("option ")
        .add(kOptionDesc[i].name)
        .add(" = ")
        .dec(option(Opt(i)))
        .add("  (")
        .add(kOptionDesc[i].help)
        .add(")")
        .emit();
  }
}

}  // namespace wfmm
