// Compile-fail probe (ctest std_compat_deleter_static_assert): a deleter with more state
// than one pointer cannot travel in wfmm_retire_dispose's context word, and rcu_retire
// never allocates, so this must be rejected with the header's static_assert message.
#include <wfmm/std_compat.hpp>

struct Widget {
  int v;
};

struct BigDeleter {
  void* pool;
  long generation;  // a second word: too large
  void operator()(Widget*) const {}
};

void retire_it(Widget* w) { wfmm::std_compat::rcu_retire(w, BigDeleter{nullptr, 1}); }
