// Size classes: monotone, 16-byte aligned, waste bounds, and the direct table agrees with
// the computed classes.
#include "size_class.h"

#include <gtest/gtest.h>

using namespace wfmm;

TEST(SizeClass, EveryRequestFitsItsClassWithBoundedWaste) {
  for (size_t n = 1; n <= kMediumMax; ++n) {
    unsigned c = size_class(n);
    ASSERT_LT(c, kNumClasses);
    size_t bs = class_size(c);
    ASSERT_GE(bs, n) << n;
    if (c > 0) {
      ASSERT_LT(class_size(c - 1), n) << "class below also fits " << n;
    }
    if (n > 128) {
      ASSERT_LE(double(bs - n) / double(n), 0.125) << n;
    } else {
      ASSERT_LT(bs - n, 16u) << n;
    }
  }
}

TEST(SizeClass, SizesAreIncreasingAndAligned) {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    EXPECT_EQ(class_size(c) % 16, 0u) << c;
    if (c > 0) {
      EXPECT_GT(class_size(c), class_size(c - 1));
    }
  }
  EXPECT_EQ(class_size(kNumClasses - 1), kMediumMax);
  EXPECT_EQ(size_class(0), 0u);
  EXPECT_EQ(class_size(0), 16u);
}

TEST(SizeClass, DirectTableMatchesComputation) {
  for (size_t n = 1; n <= kDirectMax; ++n) EXPECT_EQ(size_class(n), size_class_compute(n)) << n;
}
