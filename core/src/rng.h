// Counter-based noise (Philox4x32-10, docs/model-spec.md section 5): the noise of a block depends
// only on (seed, block, step), so any block can be regenerated without replaying the ones before.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace strand {

// One Philox4x32-10 evaluation.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// Fills out[0..count) with standard normal noise for (seed, block, step).
void fill_noise(float* out, size_t count, uint64_t seed, uint32_t block, uint32_t step);

}  // namespace strand
