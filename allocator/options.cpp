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
    {"show_stats", 0, 0, 2, "print statistics to stderr at exit: 1 or 'text', 2 or 'json'"},
    {"on_error", 0, 0, 1,
     "bad free/realloc: 0 or 'abort' aborts, 1 or 'continue' reports and goes on"},
    {"purge_delay_ms", 50, 0, 3600000, "ms an empty page stays committed before it is purged, and an exited thread's heap keeps its segments for the next thread"},
    {"segment_cache", 16, 0, 1024,
     "empty segments kept for reuse: this many 4 MiB segments' worth of resident memory"},
    {"era_freq", 110, 1, 1000000, "tracked allocations of a thread between era ticks"},
    {"batch", 64, 1, 4096, "retired blocks per batch (published when full)"},
    {"protect_attempts", 16, 0, 1024, "protect fast-path attempts before the slow path"},
    {"poison", 0, 0, 1, "fill reclaimed blocks with 0xdb bytes (tests)"},
    {"count_steps", 0, 0, 1, "record loop iteration maxima (wfmm_progress_get)"},
    {"deferred_free", 0, 0, 1, "free/delete retire the block: reused only after other threads pass through the allocator"},
    {"defer_min_bytes", 0, 0, 1L << 40, "deferred free: bytes a thread holds back before they may be reused"},
    {"foreign_blocks", 2, 0, 2,
     "retire accepts blocks of another malloc: 0 or 'off', 1 or 'on', 2 or 'auto' (only when "
     "wfmm is not the process's malloc: ASan, TSan, valgrind)"},
    {"huge_pages", 2, 0, 2,
     "transparent huge pages: 0 or 'off', 1 or 'huge' (huge blocks only), 2 or 'auto' (small "
     "and medium segments once 32 MiB of small and medium blocks have been in use at once)"},
};

std::atomic<long> g_option_value[unsigned(Opt::kCount)] = {
    {0}, {0}, {0}, {50}, {16}, {110}, {64}, {16}, {0}, {0}, {0}, {0}, {2}, {2},
};
std::atomic<uint32_t> g_purge_delay_sets{0};

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

// Options whose range is 0..1 are switches; on_error is 0..1 too but takes names.
// show_stats is a switch with a third value, json.
bool is_bool(Opt o) {
  const OptionDesc& d = kOptionDesc[unsigned(o)];
  return (o != Opt::kOnError && d.min == 0 && d.max == 1) || o == Opt::kShowStats;
}

// ASCII case-insensitive equality; "ON" and "On" are as good as "on" in a shell.
bool same_word(const char* s, const char* word) {
  // Bound: the length of word.
  for (; *word != '\0'; ++s, ++word) {
    char c = (*s >= 'A' && *s <= 'Z') ? char(*s - 'A' + 'a') : *s;
    if (c != *word) return false;
  }
  return *s == '\0';
}

bool parse_value(Opt o, const char* s, long* out) {
  if (o == Opt::kOnError) {
    if (same_word(s, "abort")) return *out = 0, true;
    if (same_word(s, "continue")) return *out = 1, true;
  }
  if (o == Opt::kForeignBlocks) {
    if (same_word(s, "off")) return *out = 0, true;
    if (same_word(s, "on")) return *out = 1, true;
    if (same_word(s, "auto")) return *out = 2, true;
  }
  if (o == Opt::kHugePages) {
    if (same_word(s, "off")) return *out = 0, true;
    if (same_word(s, "huge")) return *out = 1, true;
    if (same_word(s, "auto")) return *out = 2, true;
  }
  if (o == Opt::kShowStats) {
    if (same_word(s, "text")) return *out = 1, true;
    if (same_word(s, "json")) return *out = 2, true;
  }
  if (is_bool(o)) {
    if (same_word(s, "yes") || same_word(s, "true") || same_word(s, "on")) return *out = 1, true;
    if (same_word(s, "no") || same_word(s, "false") || same_word(s, "off")) return *out = 0, true;
  }
  return parse_long(s, out);
}

// Longest value text quoted in a warning: a longer one is cut with "...", so the range and
// the value kept always fit the message (a 500-byte value used to push them out of it).
constexpr size_t kMaxValueShown = 64;

// earlier: an earlier entry of the same variable set the value now in effect (an
// environment built with execve can name a variable twice); the bad entry keeps it.
void warn_bad(const OptionDesc& d, const char* text, bool earlier) {
  Msg m;
  m.add("WFMM_");
  char up[40];
  size_t i = 0;
  for (const char* n = d.name; *n != '\0' && i < sizeof up - 1; ++n) up[i++] = upper(*n);
  up[i] = '\0';
  m.add(up).add("='").text(text, kMaxValueShown).add("' is invalid: accepted ").dec(d.min)
      .add("..").dec(d.max);
  if (&d == &kOptionDesc[unsigned(Opt::kOnError)]) m.add(" or abort/continue");
  if (is_bool(Opt(unsigned(&d - kOptionDesc)))) m.add(" or on/off, true/false, yes/no");
  if (&d == &kOptionDesc[unsigned(Opt::kShowStats)]) m.add(", text/json");
  if (&d == &kOptionDesc[unsigned(Opt::kForeignBlocks)]) m.add(" or off/on/auto");
  if (&d == &kOptionDesc[unsigned(Opt::kHugePages)]) m.add(" or off/huge/auto");
  if (earlier)
    m.add("; keeping ").dec(option(Opt(unsigned(&d - kOptionDesc))))
        .add(" from the earlier WFMM_").add(up).emit();
  else
    m.add("; using the default ").dec(d.def).emit();
}

// WFMM_* variables that wfmm documents and that are not options, so they draw no warning:
// scripts/setup reads WFMM_CMAKE_FLAGS, and scripts/test exports it to every test process.
const char* const kNotOptions[] = {"CMAKE_FLAGS"};

// Longest name (after WFMM_) compared for a suggestion; longer ones are cut, which only
// makes the hint worse, never the parse.
constexpr size_t kMaxName = 48;

// Levenshtein distance between name[0..n) and an option name compared in upper case, with
// one row on the stack (no allocation: this runs inside the first malloc).
size_t edit_distance(const char* name, size_t n, const char* opt) {
  size_t row[kMaxName + 1];
  size_t m = 0;
  // Bound: kMaxName.
  while (opt[m] != '\0' && m < kMaxName) ++m;
  for (size_t j = 0; j <= m; ++j) row[j] = j;
  // Bound: n * m <= kMaxName^2 steps.
  for (size_t i = 1; i <= n; ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= m; ++j) {
      size_t up = row[j];
      // Case-insensitive: WFMM_verbose gets the hint WFMM_VERBOSE.
      size_t best = diag + (upper(name[i - 1]) == upper(opt[j - 1]) ? 0 : 1);
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[m];
}

// One line for a WFMM_ variable that names no option, with the closest option when it is
// close enough to be a typo (at most half the longer name's letters differ).
void warn_unknown(const char* entry) {
  const char* name = entry + 5;
  size_t n = 0;
  // Bound: the entry's length.
  while (name[n] != '\0' && name[n] != '=') ++n;
  for (const char* k : kNotOptions) {
    if (strlen(k) == n && strncmp(name, k, n) == 0) return;
  }
  size_t cut = n < kMaxName ? n : kMaxName;
  // Closest = fewest edits per letter of the longer name, so WFMM_STATS finds SHOW_STATS
  // (5 edits of 10) rather than BATCH (4 of 5).
  unsigned best = 0;
  size_t best_d = 0, best_len = 0;
  for (unsigned i = 0; i < unsigned(Opt::kCount); ++i) {
    size_t d = edit_distance(name, cut, kOptionDesc[i].name);
    size_t len = strlen(kOptionDesc[i].name);
    if (cut > len) len = cut;
    if (i == 0 || d * best_len < best_d * len) best = i, best_d = d, best_len = len;
  }
  Msg m;
  m.add("unknown option WFMM_").text(name, kMaxName, '=');
  if (2 * best_d <= best_len) {
    char up[kMaxName + 1];
    size_t i = 0;
    for (const char* c = kOptionDesc[best].name; *c != '\0' && i < kMaxName; ++c) up[i++] = upper(*c);
    up[i] = '\0';
    m.add(" (did you mean WFMM_").add(up).add("?)");
  } else {
    m.add(" (ignored; WFMM_VERBOSE=1 lists the options)");
  }
  m.emit();
}

}  // namespace

void options_reset_for_test() {
  for (unsigned i = 0; i < unsigned(Opt::kCount); ++i)
    g_option_value[i].store(kOptionDesc[i].def, std::memory_order_relaxed);
  g_loaded.store(false, std::memory_order_release);
}

void options_load() {
  if (g_loaded.load(std::memory_order_acquire)) return;
  char** env = environ;
  if (env == nullptr) return;  // too early in start-up; a later slow path tries again
  if (g_loaded.exchange(true, std::memory_order_acq_rel)) return;
  bool set[unsigned(Opt::kCount)] = {};  // by an earlier entry (see warn_bad)
  // Bound: the number of environment entries times the number of options.
  for (char** e = env; *e != nullptr; ++e) {
    if (strncmp(*e, "WFMM_", 5) != 0) continue;
    bool known = false;
    for (unsigned i = 0; i < unsigned(Opt::kCount); ++i) {
      const char* text = match_env(*e, kOptionDesc[i].name);
      if (text == nullptr) continue;
      known = true;
      long v = 0;
      if (!parse_value(Opt(i), text, &v) || v < kOptionDesc[i].min || v > kOptionDesc[i].max) {
        warn_bad(kOptionDesc[i], text, set[i]);
        continue;
      }
      g_option_value[i].store(v, std::memory_order_relaxed);
      set[i] = true;
    }
    if (!known) warn_unknown(*e);
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
  if (Opt(i) == Opt::kPurgeDelayMs) g_purge_delay_sets.fetch_add(1, std::memory_order_relaxed);
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
    Msg m;
    m.add("option ").add(kOptionDesc[i].name).add(" = ");
    long v = option(Opt(i));
    // Enumerations by name: the words WFMM_ON_ERROR and WFMM_SHOW_STATS take.
    if (Opt(i) == Opt::kOnError && (v == 0 || v == 1))
      m.add(v == 0 ? "abort" : "continue");
    else if (Opt(i) == Opt::kForeignBlocks && v >= 0 && v <= 2)
      m.add(v == 0 ? "off" : v == 1 ? "on" : "auto");
    else if (Opt(i) == Opt::kHugePages && v >= 0 && v <= 2)
      m.add(v == 0 ? "off" : v == 1 ? "huge" : "auto");
    else if (Opt(i) == Opt::kShowStats && v >= 0 && v <= 2)
      m.add(v == 0 ? "off" : v == 1 ? "text" : "json");
    else
      m.dec(v);
    m.add("  (").add(kOptionDesc[i].help).add(")").emit();
  }
}

}  // namespace wfmm
