// main() of every reclamation test binary (tests/reclaim, tests/pmr): --seed=N, --scale=N
// (ctest runs --scale=1; larger values run proportionally longer), then the effective
// reclamation options.
#include <gtest/gtest.h>
#include <string.h>

#include "reclaim_util.h"

namespace rt {
uint64_t g_seed = 1;
int g_scale = 1;
}  // namespace rt

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--seed=", 7) == 0)
      rt::g_seed = strtoull(argv[i] + 7, nullptr, 10);
    else if (strncmp(argv[i], "--scale=", 8) == 0)
      rt::g_scale = atoi(argv[i] + 8);
  }
  if (rt::g_scale < 1) rt::g_scale = 1;
  printf(
      "reclaim: seed=%llu scale=%d era_freq=%ld batch=%ld protect_attempts=%ld poison=%ld "
      "count_steps=%ld\n",
      (unsigned long long)rt::g_seed, rt::g_scale, rt::option("era_freq"), rt::option("batch"),
      rt::option("protect_attempts"), rt::option("poison"), rt::option("count_steps"));
  return RUN_ALL_TESTS();
}
