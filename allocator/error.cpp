// Message formatting without allocation, and the abort-or-continue policy for bad input.
#include "error.h"

#include <stdlib.h>
#include <string.h>

#include "options.h"
#include "os/os.h"

namespace wfmm {

Msg& Msg::add(const char* s) {
  // Bound: the buffer size.
  while (*s != '\0' && n_ < sizeof buf_ - 1) buf_[n_++] = *s++;
  return *this;
}

Msg& Msg::text(const char* s, size_t max, char stop) {
  size_t i = 0;
  // Bound: max bytes (and the buffer size).
  for (; s[i] != '\0' && s[i] != stop && i < max && n_ < sizeof buf_ - 1; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    buf_[n_++] = c < 0x20 || c == 0x7f ? '?' : char(c);
  }
  if (s[i] != '\0' && s[i] != stop) add("...");
  return *this;
}

Msg& Msg::udec(unsigned long v) {
  char tmp[24];
  int i = 0;
  do {
    tmp[i++] = char('0' + v % 10);
    v /= 10;
  } while (v != 0);  // bound: 20 digits
  while (i > 0 && n_ < sizeof buf_ - 1) buf_[n_++] = tmp[--i];
  return *this;
}

Msg& Msg::dec(long v) {
  if (v < 0) {
    add("-");
    return udec(0ul - static_cast<unsigned long>(v));
  }
  return udec(static_cast<unsigned long>(v));
}

Msg& Msg::hex(uintptr_t v) {
  static const char kDigits[] = "0123456789abcdef";
  add("0x");
  char tmp[16];
  int i = 0;
  do {
    tmp[i++] = kDigits[v & 15];
    v >>= 4;
  } while (v != 0);  // bound: 16 digits
  while (i > 0 && n_ < sizeof buf_ - 1) buf_[n_++] = tmp[--i];
  return *this;
}

void Msg::emit() {
  buf_[n_++] = '\n';
  os::write_stderr(buf_, n_);
  n_ = 0;
}

void report_error(const char* who, const char* what, const void* p) {
  bool cont = option(Opt::kOnError) == 1;
  Msg m;
  m.add(who).add(": ").add(what);
  if (p != nullptr) m.add(" ").hex(reinterpret_cast<uintptr_t>(p));  // calls with no block
  m.add(cont ? " (ignored: WFMM_ON_ERROR=continue)" : " (aborting; WFMM_ON_ERROR=continue to go on)")
      .emit();
  if (!cont) abort();
}

void report_corruption(const char* list, const void* page, size_t block_size, const void* block,
                       uintptr_t link) {
  bool cont = option(Opt::kOnError) == 1;
  Msg m;
  m.add("heap corruption: ").add(list).add(" of page ").hex(reinterpret_cast<uintptr_t>(page));
  m.add(" (").udec(block_size).add("-byte blocks): freed block ");
  m.hex(reinterpret_cast<uintptr_t>(block)).add(" was modified (its link decodes to ").hex(link);
  m.add(", not a block of the page)");
  m.add(cont ? " (rest of the list dropped: WFMM_ON_ERROR=continue)"
             : " (aborting; WFMM_ON_ERROR=continue to go on)")
      .emit();
  if (!cont) abort();
}

void assert_fail(const char* cond, const char* file, int line) {
  Msg()
      .add("internal assertion failed: ")
      .add(cond)
      .add(" at ")
      .add(file)
      .add(":")
      .dec(line)
      .emit();
  abort();
}

}  // namespace wfmm
