// Compiled as C++17 by ctest (std_compat_needs_cxx20): std_compat.hpp must refuse with a
// message that says what it needs, not with a page of errors about concepts.
#include "wfmm/std_compat.hpp"

int main() { return 0; }
