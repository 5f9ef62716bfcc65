#include <gtest/gtest.h>

#include "strand/error.h"

TEST(Smoke, ErrorCarriesKind) {
  strand::Error e(strand::ErrorKind::io, "disk full");
  EXPECT_EQ(e.kind(), strand::ErrorKind::io);
  EXPECT_STREQ(e.what(), "disk full");
}
