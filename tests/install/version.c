/* The installed wfmm's three version numbers agree: the header a program compiles with
 * (WFMM_VERSION), the library it loads (wfmm_version()) and the CMake package that found
 * it (WFMM_PACKAGE_VERSION). Prints the version; exits non-zero on a mismatch. */
#include <stdio.h>
#include <string.h>

#include "wfmm/wfmm.h"

int main(void) {
  char composed[32];
  snprintf(composed, sizeof composed, "%d.%d.%d", WFMM_VERSION_MAJOR, WFMM_VERSION_MINOR,
           WFMM_VERSION_PATCH);
  if (strcmp(composed, WFMM_VERSION) != 0 || strcmp(wfmm_version(), WFMM_VERSION) != 0 ||
      strcmp(WFMM_PACKAGE_VERSION, WFMM_VERSION) != 0) {
    fprintf(stderr, "version mismatch: header %s (%s), library %s, package %s\n", WFMM_VERSION,
            composed, wfmm_version(), WFMM_PACKAGE_VERSION);
    return 1;
  }
  printf("wfmm %s\n", wfmm_version());
  return 0;
}
