#include "rng.h"

#include <cmath>
#include <numbers>

namespace strand {
namespace {
constexpr uint32_t kMul0 = 0xD2511F53u;
constexpr uint32_t kMul1 = 0xCD9E8D57u;
constexpr uint32_t kBump0 = 0x9E3779B9u;
constexpr uint32_t kBump1 = 0xBB67AE85u;
constexpr uint32_t kStream = 0x5354524Eu;  // "STRN": separates our noise from other Philox users

double uniform_open(uint32_t r) { return (static_cast<double>(r) + 0.5) / 4294967296.0; }
}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> c, std::array<uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key[0] += kBump0;
      key[1] += kBump1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c[2];
    const auto hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const auto hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ key[0], lo1, hi0 ^ c[3] ^ key[1], lo0};
  }
  return c;
}

void fill_noise(float* out, size_t count, uint64_t seed, uint32_t block, uint32_t step) {
  const std::array<uint32_t, 2> key = {static_cast<uint32_t>(seed & 0xffffffffu),
                                       static_cast<uint32_t>(seed >> 32)};
  for (size_t base = 0; base < count; base += 4) {
    const auto r = philox4x32_10({static_cast<uint32_t>(base / 4), block, step, kStream}, key);
    double z[4];
    for (int pair = 0; pair < 2; ++pair) {
      const double radius = std::sqrt(-2.0 * std::log(uniform_open(r[2 * pair])));
      const double angle = 2.0 * std::numbers::pi * uniform_open(r[2 * pair + 1]);
      z[2 * pair] = radius * std::cos(angle);
      z[2 * pair + 1] = radius * std::sin(angle);
    }
    for (size_t j = 0; j < 4 && base + j < count; ++j) out[base + j] = static_cast<float>(z[j]);
  }
}

}  // namespace strand
