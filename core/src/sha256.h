// SHA-256 (FIPS 180-4), internal to core. The desktop app's project files carry SHA-256 digests
// (Qt's QCryptographicHash), and core has no crypto library (the GPU machine has only what
// .deps/ brings), so the reader that must check them carries this small implementation. Checked
// against the FIPS 180-2 example vectors in tests/core/test_project.cpp.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace strand::detail {

using Sha256Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void update(std::span<const uint8_t> bytes);
  [[nodiscard]] Sha256Digest finish();  // the object is spent afterwards

 private:
  void compress(const uint8_t* block);
  std::array<uint32_t, 8> state_{};
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

[[nodiscard]] Sha256Digest sha256(std::span<const uint8_t> bytes);

}  // namespace strand::detail
