// MemoryState: everything a Session needs to continue a video from a block boundary. It is the
// "past" of the video: per hybrid layer a fixed-size gated-delta-rule state, per softmax_kv layer
// its cache of clean K/V blocks, plus the position in the video. Snapshots are plain copies.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strand {

struct KvBlock {
  int64_t block_index = 0;
  std::vector<float> k;  // [T, d], RMS-normalised, not yet rotated
  std::vector<float> v;  // [T, d]
  // Identity of k and v for an engine's device-resident copy (0: none yet). Copies of a block
  // share it, since k and v never change once made; code that changes k or v in place must set
  // it back to 0. Not saved in snapshots and not compared.
  uint64_t device_id = 0;
  // True while k and v are empty because the values live only in an engine's device copy (a
  // clean pass on a GPU leaves its new block so). Only a Session's own memory holds such blocks:
  // Session::snapshot() fills them in before it copies the memory out.
  [[nodiscard]] bool host_copy_pending() const { return k.empty() && v.empty() && device_id != 0; }
  bool operator==(const KvBlock& other) const {
    return block_index == other.block_index && k == other.k && v == other.v;
  }
};

struct LayerMemory {
  // kind "hybrid": state [heads, dh, dh] (key dim rows). Empty for softmax_kv.
  std::vector<float> state;
  // kind "softmax_kv": cached clean blocks, oldest first. Empty for hybrid.
  std::vector<KvBlock> kv_blocks;
  bool operator==(const LayerMemory&) const = default;
};

struct MemoryState {
  std::vector<LayerMemory> layers;   // one per DiT layer, in order
  int64_t next_block = 0;            // index of the next block to generate
  uint64_t seed = 0;                 // noise seed of the run this state belongs to
  std::string prompt;                // prompt active for the next block
  std::string model_id;              // identity (weights hash) of the model that produced it

  [[nodiscard]] size_t size_bytes() const;  // payload bytes (states + caches)
  bool operator==(const MemoryState&) const = default;
};

// Snapshot files: magic "STRNSNAP", format version, header JSON (model id, layout, block index,
// seed, prompt), payload length, XXH64 checksums of header and payload; verified on load and read
// back after write. Writes are atomic. Errors: Error(invalid_file) for corruption (the message
// says what failed), Error(model_mismatch) when expected_model_id is non-empty and differs,
// Error(io) for I/O failures.
void save_snapshot(const std::string& path, const MemoryState& state);
MemoryState load_snapshot(const std::string& path, const std::string& expected_model_id = {});
std::vector<uint8_t> serialize_snapshot(const MemoryState& state);
MemoryState deserialize_snapshot(std::span<const uint8_t> bytes,
                                 const std::string& expected_model_id = {});

}  // namespace strand
