// libFuzzer target: the option parser (allocator/options.cpp) against a model of it written
// from README.md's Options section. Each input becomes an environment (WFMM_* entries built
// from option names, misspellings, words and raw bytes), parsed by options_load with stderr
// captured; then the effective values and every warning line must be the model's, byte for
// byte. Then a few wfmm_option_set/get calls by name (any case, WFMM_ prefix or not) against
// the model's ranges. A mismatch prints both sides and traps, so libFuzzer saves the input.
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "input.h"
#include "options.h"
#include "wfmm/wfmm.h"

extern char** environ;

namespace {

// The model's table, written from README.md (not read from kOptionDesc: a wrong range or
// default in the library's table is a finding too). kind: 0 number, 1 switch, 2 on_error,
// 3 show_stats, 4 foreign_blocks, 5 huge_pages.
struct ModelOpt {
  const char* name;
  long def, min, max;
  int kind;
};
const ModelOpt kModel[] = {
    {"verbose", 0, 0, 1, 1},
    {"show_stats", 0, 0, 2, 3},
    {"on_error", 0, 0, 1, 2},
    {"purge_delay_ms", 50, 0, 3600000, 0},
    {"segment_cache", 16, 0, 1024, 0},
    {"era_freq", 110, 1, 1000000, 0},
    {"batch", 64, 1, 4096, 0},
    {"protect_attempts", 16, 0, 1024, 0},
    {"poison", 0, 0, 1, 1},
    {"count_steps", 0, 0, 1, 1},
    {"deferred_free", 0, 0, 1, 1},
    {"defer_min_bytes", 0, 0, 1L << 40, 0},
    {"foreign_blocks", 2, 0, 2, 4},
    {"huge_pages", 2, 0, 2, 5},
};
constexpr unsigned kN = sizeof kModel / sizeof kModel[0];
static_assert(kN == unsigned(wfmm::Opt::kCount), "the model lists every option");

[[noreturn]] void fail(const std::string& what, const std::string& got, const std::string& want) {
  fprintf(stderr, "options_fuzz: %s\n--- got:\n%s\n--- expected:\n%s\n", what.c_str(), got.c_str(),
          want.c_str());
  __builtin_trap();
}

std::string upper(const std::string& s) {
  std::string r = s;
  for (char& c : r)
    if (c >= 'a' && c <= 'z') c = char(c - 'a' + 'A');
  return r;
}
std::string lower(const std::string& s) {
  std::string r = s;
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return r;
}

// Decimal with an optional sign, nothing else. More than 15 significant digits is beyond
// every range (the largest, 2^40, has 13), so the model need not parse it.
bool model_number(const std::string& s, long* out) {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (i == s.size()) return false;
  for (size_t j = i; j < s.size(); ++j)
    if (s[j] < '0' || s[j] > '9') return false;
  while (i + 1 < s.size() && s[i] == '0') ++i;
  if (s.size() - i > 15) return false;
  long v = 0;
  for (; i < s.size(); ++i) v = v * 10 + (s[i] - '0');
  *out = neg ? -v : v;
  return true;
}

bool model_value(const ModelOpt& o, const std::string& text, long* out) {
  std::string w = lower(text);
  if (o.kind == 2 && w == "abort") return *out = 0, true;
  if (o.kind == 2 && w == "continue") return *out = 1, true;
  if (o.kind == 3 && w == "text") return *out = 1, true;
  if (o.kind == 3 && w == "json") return *out = 2, true;
  if (o.kind == 4 && w == "off") return *out = 0, true;
  if (o.kind == 4 && w == "on") return *out = 1, true;
  if (o.kind == 4 && w == "auto") return *out = 2, true;
  if (o.kind == 5 && w == "off") return *out = 0, true;
  if (o.kind == 5 && w == "huge") return *out = 1, true;
  if (o.kind == 5 && w == "auto") return *out = 2, true;
  if (o.kind == 1 || o.kind == 3) {
    if (w == "on" || w == "yes" || w == "true") return *out = 1, true;
    if (w == "off" || w == "no" || w == "false") return *out = 0, true;
  }
  return model_number(text, out) && *out >= o.min && *out <= o.max;
}

// As shown in a warning: control bytes as '?', cut at max with "...".
std::string shown(const std::string& s, size_t max) {
  std::string r;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    r += c < 0x20 || c == 0x7f ? '?' : char(c);
  }
  if (s.size() > max) r += "...";
  return r;
}

size_t levenshtein(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j)
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (toupper(a[i - 1]) == toupper(b[j - 1]) ? 0 : 1)});
  return d[a.size()][b.size()];
}

// The warning for a WFMM_ entry that names no option (name: the text after WFMM_ up to '=').
std::string model_unknown(const std::string& name) {
  if (name == "CMAKE_FLAGS") return "";
  std::string cut = name.substr(0, 48);  // longer names are compared by their first 48 bytes
  unsigned best = 0;
  size_t best_d = 0, best_len = 0;
  for (unsigned i = 0; i < kN; ++i) {
    size_t d = levenshtein(cut, kModel[i].name);
    size_t len = std::max(strlen(kModel[i].name), cut.size());
    // Fewest edits per letter of the longer name; the first option wins a tie.
    if (i == 0 || d * best_len < best_d * len) best = i, best_d = d, best_len = len;
  }
  std::string m = "wfmm: unknown option WFMM_" + shown(name, 48);
  if (2 * best_d <= best_len)
    m += " (did you mean WFMM_" + upper(kModel[best].name) + "?)";
  else
    m += " (ignored; WFMM_VERBOSE=1 lists the options)";
  return m + "\n";
}

std::string model_bad(const ModelOpt& o, const std::string& text, bool earlier, long kept) {
  std::string m = "wfmm: WFMM_" + upper(o.name) + "='" + shown(text, 64) +
                  "' is invalid: accepted " + std::to_string(o.min) + ".." + std::to_string(o.max);
  if (o.kind == 2) m += " or abort/continue";
  if (o.kind == 1 || o.kind == 3) m += " or on/off, true/false, yes/no";
  if (o.kind == 3) m += ", text/json";
  if (o.kind == 4) m += " or off/on/auto";
  if (o.kind == 5) m += " or off/huge/auto";
  if (earlier)
    m += "; keeping " + std::to_string(kept) + " from the earlier WFMM_" + upper(o.name);
  else
    m += "; using the default " + std::to_string(o.def);
  return m + "\n";
}

std::string model_print(const long* v) {
  std::string m;
  for (unsigned i = 0; i < kN; ++i) {
    std::string val = std::to_string(v[i]);
    if (kModel[i].kind == 2) val = v[i] == 0 ? "abort" : "continue";
    if (kModel[i].kind == 3) val = v[i] == 0 ? "off" : v[i] == 1 ? "text" : "json";
    if (kModel[i].kind == 4) val = v[i] == 0 ? "off" : v[i] == 1 ? "on" : "auto";
    if (kModel[i].kind == 5) val = v[i] == 0 ? "off" : v[i] == 1 ? "huge" : "auto";
    m += "wfmm: option " + std::string(kModel[i].name) + " = " + val + "  (" +
         wfmm::kOptionDesc[i].help + ")\n";
  }
  return m;
}

struct Reader : wfmm_fuzz::Input {
  std::string text(size_t max) {
    size_t len = byte();
    if (len >= 200) len = 64 + size_t(len - 200) * 16;  // now and then a long one (to 1 KiB)
    std::string s;
    for (size_t i = 0; i < len && i < max && n > 0; ++i) {
      char c = char(byte());
      if (c == '\0') c = '0';  // an entry ends at NUL
      s += c;
    }
    return s;
  }
};

const char* const kWords[] = {"on",  "off",   "yes",  "no",       "true", "false", "abort",
                              "continue", "text", "json", "auto", "huge", "ON", "Yes", "maybe", "", "-", "+"};

// A value text: raw bytes, a word (any case), or a number at or around a range's edges.
std::string value_text(Reader& r, const ModelOpt& o) {
  uint8_t k = r.byte();
  switch (k % 4) {
    case 0:
      return r.text(1100);
    case 1: {
      std::string w = kWords[(k >> 2) % (sizeof kWords / sizeof kWords[0])];
      uint8_t flips = r.byte();
      for (size_t i = 0; i < w.size() && i < 8; ++i)
        if (flips >> i & 1) w[i] = (w[i] >= 'a' && w[i] <= 'z') ? char(w[i] - 32) : w[i];
      return w;
    }
    case 2: {
      const long edges[] = {o.min, o.max, o.def, o.min - 1, o.max + 1, 0, -1, LONG_MAX};
      long v = edges[(k >> 2) % 8];
      std::string s = std::to_string(v);
      if (k & 0x40) s = "+" + s;
      if (k & 0x80) s = "00" + s;
      return s;
    }
    default:
      return std::to_string(long(r.byte()) | long(r.byte()) << 8);
  }
}

// An environment entry: a correct WFMM_ name, a misspelt one, another case, or raw bytes.
std::string entry(Reader& r) {
  uint8_t k = r.byte();
  unsigned i = (k >> 3) % kN;
  std::string name = upper(kModel[i].name);
  switch (k % 8) {
    case 0:
    case 1:
    case 2:
      return "WFMM_" + name + "=" + value_text(r, kModel[i]);
    case 3: {  // one edit: drop, double, replace or swap a letter
      size_t at = r.byte() % name.size();
      uint8_t e = r.byte();
      if (e % 4 == 0) name.erase(at, 1);
      else if (e % 4 == 1) name.insert(at, 1, name[at]);
      else if (e % 4 == 2) name[at] = char('A' + (e >> 2) % 26);
      else if (at + 1 < name.size()) std::swap(name[at], name[at + 1]);
      return "WFMM_" + name + "=" + value_text(r, kModel[i]);
    }
    case 4:
      return "WFMM_" + lower(name) + "=" + value_text(r, kModel[i]);
    case 5:
      return "WFMM_" + name;  // no '=' (only execve makes such an entry)
    case 6:
      return "WFMM_" + r.text(300);
    default:
      return r.text(300);
  }
}

// The model of options_load over one environment: effective values and stderr.
void model_load(const std::vector<std::string>& env, long* v, std::string* err) {
  bool set[kN] = {};
  for (unsigned i = 0; i < kN; ++i) v[i] = kModel[i].def;
  for (const std::string& e : env) {
    if (e.compare(0, 5, "WFMM_") != 0) continue;
    size_t eq = e.find('=');
    std::string name = e.substr(5, eq == std::string::npos ? std::string::npos : eq - 5);
    int known = -1;
    for (unsigned i = 0; i < kN; ++i)
      if (eq != std::string::npos && name == upper(kModel[i].name)) known = int(i);
    if (known < 0) {
      *err += model_unknown(name);
      continue;
    }
    std::string text = e.substr(eq + 1);
    long x;
    if (model_value(kModel[known], text, &x)) {
      v[known] = x;
      set[known] = true;
    } else {
      *err += model_bad(kModel[known], text, set[known], v[known]);
    }
  }
  if (v[0] != 0) *err += model_print(v);
}

// Runs options_load on env with stderr (fd 2) captured.
std::string real_load(const std::vector<std::string>& env) {
  std::vector<char*> ptrs;
  for (const std::string& e : env) ptrs.push_back(const_cast<char*>(e.c_str()));
  ptrs.push_back(nullptr);
  static int mem = memfd_create("options_fuzz", 0);
  if (mem < 0 || ftruncate(mem, 0) != 0 || lseek(mem, 0, SEEK_SET) != 0) abort();
  int saved = dup(2);
  dup2(mem, 2);
  char** old = environ;
  environ = ptrs.data();
  wfmm::options_reset_for_test();
  wfmm::options_load();
  environ = old;
  dup2(saved, 2);
  close(saved);
  std::string out;
  off_t len = lseek(mem, 0, SEEK_CUR);
  out.resize(size_t(len));
  if (len > 0 && pread(mem, &out[0], size_t(len), 0) != len) abort();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader r{{data, size}};
  std::vector<std::string> env;
  unsigned count = r.byte() % 17;
  // Bound: 16 entries.
  for (unsigned k = 0; k < count && r.n > 0; ++k) {
    env.push_back(entry(r));
  }
  long want[kN];
  std::string want_err;
  model_load(env, want, &want_err);
  std::string got_err = real_load(env);
  std::string env_text;
  for (const std::string& e : env) env_text += "  [" + e + "]\n";
  if (got_err != want_err) fail("stderr differs for environment\n" + env_text, got_err, want_err);
  for (unsigned i = 0; i < kN; ++i)
    if (wfmm::option(wfmm::Opt(i)) != want[i])
      fail(std::string("value of ") + kModel[i].name + " for\n" + env_text,
           std::to_string(wfmm::option(wfmm::Opt(i))), std::to_string(want[i]));
  // Run-time set/get by name: any case, with or without WFMM_, range-checked.
  // Bound: 8 calls.
  for (unsigned k = 0; k < 8 && r.n > 0; ++k) {
    uint8_t b = r.byte();
    unsigned i = b % kN;
    std::string name = kModel[i].name;
    if (b & 0x10) name = upper(name);
    if (b & 0x20) name = "WFMM_" + name;
    if (b & 0x40) name += "x";
    if (b & 0x80) name = (b & 1) ? "WFMM_" : "";
    bool named = (b & 0x40) == 0 && (b & 0x80) == 0;
    long v;
    switch (r.byte() % 4) {
      case 0: v = kModel[i].min - 1; break;
      case 1: v = kModel[i].max + 1; break;
      case 2: v = kModel[i].def; break;
      default: v = kModel[i].min + long(r.byte()) % (kModel[i].max - kModel[i].min + 1);
    }
    // show_stats and verbose stay 0: nothing prints at exit or on the next load.
    if (i <= 1) v = 0;
    bool ok = named && v >= kModel[i].min && v <= kModel[i].max;
    errno = 0;
    int rc = wfmm_option_set(name.c_str(), v);
    if (rc != (ok ? 0 : -1) || (!ok && errno != EINVAL))
      fail("wfmm_option_set(" + name + ", " + std::to_string(v) + ")", std::to_string(rc),
           ok ? "0" : "-1, EINVAL");
    if (ok) want[i] = v;
    errno = 0;
    long got = wfmm_option_get(name.c_str());
    long expect = named ? want[i] : -1;
    if (got != expect || (!named && errno != EINVAL))
      fail("wfmm_option_get(" + name + ")", std::to_string(got), std::to_string(expect));
  }
  // Back to the defaults, marked as read (an empty environment): no later malloc parses
  // the fuzzer's own environment.
  if (!real_load({}).empty()) fail("an empty environment printed", "", "");
  return 0;
}
