// Messages and bad-input policy. Every message starts with "wfmm: " and goes to stderr via
// write(2), built in a fixed buffer: reporting never allocates.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"

namespace wfmm {

class Msg {
 public:
  Msg() { add("wfmm: "); }
  Msg& add(const char* s);
  // Text from outside (an environment entry): at most max bytes, up to the first `stop`
  // byte; control bytes shown as '?' (a message stays one line); "..." where it was cut.
  Msg& text(const char* s, size_t max, char stop = '\0');
  Msg& dec(long v);
  Msg& udec(unsigned long v);
  Msg& hex(uintptr_t v);
  void emit();  // appends a newline and writes

 private:
  char buf_[480];
  size_t n_ = 0;
};

// Bad input from the program (invalid, interior, foreign or double free). Prints
// "wfmm: <who>: <what> <ptr>" then aborts, unless WFMM_ON_ERROR=continue, in which case it
// returns and the caller drops the request without touching the heap.
WFMM_COLD void report_error(const char* who, const char* what, const void* p);

// A free-list link that fails its check: the program wrote to a freed block (use after free
// or an overflow into a free neighbour). Prints "wfmm: heap corruption: <list> of page <page>
// (<size>-byte blocks): freed block <block> was modified (link <link>)" then aborts, unless
// WFMM_ON_ERROR=continue; then it returns and the caller drops the rest of that list.
WFMM_COLD void report_corruption(const char* list, const void* page, size_t block_size,
                                 const void* block, uintptr_t link);

}  // namespace wfmm
