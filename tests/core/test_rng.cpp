// Philox4x32-10 against the Random123 known-answer vectors, and noise properties.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "rng.h"

using strand::philox4x32_10;

TEST(Philox, KnownAnswerZero) {
  const auto r = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(r[0], 0x6627e8d5u);
  EXPECT_EQ(r[1], 0xe169c58du);
  EXPECT_EQ(r[2], 0xbc57ac4cu);
  EXPECT_EQ(r[3], 0x9b00dbd8u);
}

TEST(Philox, KnownAnswerOnes) {
  const auto r = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                               {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(r[0], 0x408f276du);
  EXPECT_EQ(r[1], 0x41c83b0eu);
  EXPECT_EQ(r[2], 0xa20bc7c6u);
  EXPECT_EQ(r[3], 0x6d5451fdu);
}

TEST(Philox, KnownAnswerPi) {
  const auto r = philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                               {0xa4093822u, 0x299f31d0u});
  EXPECT_EQ(r[0], 0xd16cfe09u);
  EXPECT_EQ(r[1], 0x94fdccebu);
  EXPECT_EQ(r[2], 0x5001e420u);
  EXPECT_EQ(r[3], 0x24126ea1u);
}

TEST(Noise, DependsOnlyOnSeedBlockStep) {
  std::vector<float> a(1001), b(1001), c(1001), d(1001);
  strand::fill_noise(a.data(), a.size(), 42, 7, 1);
  strand::fill_noise(b.data(), b.size(), 42, 7, 1);
  strand::fill_noise(c.data(), c.size(), 42, 7, 2);
  strand::fill_noise(d.data(), d.size(), 43, 7, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  // A prefix of a longer request equals a shorter request (counter-based, no hidden state).
  std::vector<float> shorter(10);
  strand::fill_noise(shorter.data(), shorter.size(), 42, 7, 1);
  EXPECT_TRUE(std::equal(shorter.begin(), shorter.end(), a.begin()));
}

TEST(Noise, IsStandardNormal) {
  std::vector<float> z(200000);
  strand::fill_noise(z.data(), z.size(), 1234, 3, 0);
  double sum = 0, sq = 0;
  size_t beyond3 = 0;
  for (float v : z) {
    sum += v;
    sq += static_cast<double>(v) * v;
    beyond3 += std::fabs(v) > 3.0f ? 1 : 0;
  }
  const double mean = sum / z.size(), var = sq / z.size() - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 1.0, 0.02);
  EXPECT_NEAR(static_cast<double>(beyond3) / z.size(), 0.0027, 0.001);
}
