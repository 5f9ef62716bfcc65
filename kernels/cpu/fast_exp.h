// A vectorisable exp for non-positive arguments, shared by softmax and the sigmoid-based
// activations (libm's expf is a scalar call and dominated those loops).
#pragma once
#include <bit>
#include <cstdint>

namespace strand::cpu {

// Lower bound for exp_clamped's argument: 2^n must stay a normal float. exp(-87) ~ 1.6e-38 is as
// good as zero next to a softmax row's largest term (1).
inline constexpr float kExpMin = -87.0f;

// exp(x) for kExpMin <= x <= 0, written so that the compiler vectorises it: libm's expf is a scalar
// call and took most of the time of a 432-token attention.
// x = n ln2 + r with |r| <= ln2 / 2; exp(r) by its degree-7 Taylor polynomial (truncation error
// r^8 / 8! < 6e-9 relative), times 2^n put together in the exponent bits. The clamp to kExpMin is
// the caller's, in a separate loop: inside this one GCC splits the paths and gives up vectorising.
inline float exp_clamped(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // ln 2 split in two so that n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer; floor() would do but blocks
  // vectorisation under strict IEEE flags.
  constexpr float kRoundMagic = 12582912.0f;
  const float n = (x * kLog2e + kRoundMagic) - kRoundMagic;
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const auto two_to_n = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
  return p * two_to_n;
}

}  // namespace strand::cpu
