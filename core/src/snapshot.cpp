// MemoryState snapshots (see strand/memory_state.h).
//
// Layout, all integers little-endian:
//   "STRNSNAP"            8 bytes magic
//   u32 version           kSnapshotVersion
//   u32 header_length     H
//   header JSON           H bytes, UTF-8:
//     {"model_id": str, "next_block": int, "seed": uint, "prompt": str,
//      "layers": [{"state_length": n, "kv_blocks": [{"block_index": int, "k_length": n,
//                                                     "v_length": n}, ...]}, ...]}
//     (lengths count float32 values)
//   u64 payload_length    P = 4 * (sum of all lengths)
//   u64 XXH64(header JSON bytes, seed 0)
//   payload               P bytes: per layer its state, then per kv block k then v; float32 LE
//   u64 XXH64(payload, seed 0)
// Every field is checked on load: the total size must match exactly, both checksums must match,
// and the layout in the header must account for exactly P bytes. Nothing is allocated from a size
// that has not been checked against the actual byte count.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <set>
#include <string_view>

#include <nlohmann/json.hpp>
#include <xxhash.h>

#include "strand/error.h"
#include "strand/file_io.h"
#include "strand/memory_state.h"

namespace strand {
namespace {

using nlohmann::json;

constexpr std::string_view kMagic = "STRNSNAP";
constexpr uint32_t kSnapshotVersion = 1;
constexpr size_t kPrefixBytes = 8 + 4 + 4;  // magic, version, header length
constexpr size_t kMiddleBytes = 8 + 8;      // payload length, header checksum
constexpr size_t kTrailerBytes = 8;         // payload checksum

void put_u32(std::vector<uint8_t>* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(value >> (8 * i)));
}
void put_u64(std::vector<uint8_t>* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(value >> (8 * i)));
}
uint32_t get_u32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

void put_floats(std::vector<uint8_t>* out, const std::vector<float>& values) {
  for (const float value : values) put_u32(out, std::bit_cast<uint32_t>(value));
}

uint64_t hash_bytes(std::span<const uint8_t> bytes) { return XXH64(bytes.data(), bytes.size(), 0); }

size_t checked_float_bytes(size_t count, size_t total) {
  size_t bytes = 0;
  if (__builtin_mul_overflow(count, sizeof(float), &bytes) || __builtin_add_overflow(total, bytes, &total)) {
    throw Error(ErrorKind::invalid_argument, "memory state is too large to snapshot");
  }
  return total;
}

// Reads one snapshot; every failure is Error(invalid_file) with `source` and the reason.
class SnapshotReader {
 public:
  SnapshotReader(std::span<const uint8_t> bytes, std::string source)
      : bytes_(bytes), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& reason) const {
    throw Error(ErrorKind::invalid_file, source_ + ": invalid snapshot: " + reason);
  }

  MemoryState read(const std::string& expected_model_id) {
    if (bytes_.size() < kPrefixBytes) {
      fail("file is " + std::to_string(bytes_.size()) + " bytes, too short for the snapshot prefix");
    }
    if (std::memcmp(bytes_.data(), kMagic.data(), kMagic.size()) != 0) fail("not a snapshot (bad magic)");
    const uint32_t version = get_u32(bytes_.data() + 8);
    if (version != kSnapshotVersion) {
      fail("unsupported format version " + std::to_string(version) + " (this build reads " +
           std::to_string(kSnapshotVersion) + ")");
    }
    const uint64_t header_length = get_u32(bytes_.data() + 12);
    // Sizes are u32/u64 from the file: every sum is overflow-checked before it is compared.
    uint64_t middle_end = 0;
    if (__builtin_add_overflow(uint64_t{kPrefixBytes} + kMiddleBytes, header_length, &middle_end) ||
        middle_end > bytes_.size()) {
      fail("header length " + std::to_string(header_length) + " does not fit in " +
           std::to_string(bytes_.size()) + " bytes");
    }
    const size_t header_end = kPrefixBytes + static_cast<size_t>(header_length);
    const uint64_t payload_length = get_u64(bytes_.data() + header_end);
    const uint64_t header_hash = get_u64(bytes_.data() + header_end + 8);
    uint64_t total = 0;
    if (__builtin_add_overflow(middle_end, payload_length, &total) ||
        __builtin_add_overflow(total, uint64_t{kTrailerBytes}, &total) || total != bytes_.size()) {
      fail("payload length " + std::to_string(payload_length) + " does not match the file size " +
           std::to_string(bytes_.size()));
    }
    payload_bytes_ = payload_length;
    const auto header = bytes_.subspan(kPrefixBytes, static_cast<size_t>(header_length));
    if (hash_bytes(header) != header_hash) fail("header checksum mismatch");
    const auto payload = bytes_.subspan(static_cast<size_t>(middle_end), static_cast<size_t>(payload_length));
    const uint64_t payload_hash = get_u64(bytes_.data() + middle_end + payload_length);
    if (hash_bytes(payload) != payload_hash) fail("payload checksum mismatch");

    json root;
    try {
      root = json::parse(header.begin(), header.end());
    } catch (const json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    MemoryState state;
    read_header(root, &state);
    if (!expected_model_id.empty() && state.model_id != expected_model_id) {
      throw Error(ErrorKind::model_mismatch, source_ + ": snapshot was made by model '" + state.model_id +
                                                 "', not by the loaded model '" + expected_model_id + "'");
    }
    fill_payload(payload, &state);
    return state;
  }

 private:
  void expect_keys(const json& object, const std::set<std::string_view>& keys, const std::string& where) const {
    if (!object.is_object()) fail(where + " is not a JSON object");
    for (const auto& [key, value] : object.items()) {
      if (!keys.contains(key)) fail(where + " has an unexpected field '" + key + "'");
    }
    for (const std::string_view key : keys) {
      if (!object.contains(key)) fail(where + " lacks the field '" + std::string(key) + "'");
    }
  }
  uint64_t unsigned_field(const json& object, const char* key, const std::string& where) const {
    const json& value = object.at(key);
    if (!value.is_number_unsigned()) fail(where + "." + key + " is not a non-negative integer");
    return value.get<uint64_t>();
  }
  int64_t signed_field(const json& object, const char* key, const std::string& where) const {
    const json& value = object.at(key);
    if (value.is_number_unsigned()) {
      const auto raw = value.get<uint64_t>();
      if (raw > static_cast<uint64_t>(INT64_MAX)) fail(where + "." + key + " is out of range");
      return static_cast<int64_t>(raw);
    }
    if (!value.is_number_integer()) fail(where + "." + key + " is not an integer");
    return value.get<int64_t>();
  }
  std::string string_field(const json& object, const char* key, const std::string& where) const {
    const json& value = object.at(key);
    if (!value.is_string()) fail(where + "." + key + " is not a string");
    return value.get<std::string>();
  }

  // Reads the header and sizes every vector, checking that the layout accounts for exactly the
  // payload; values are filled afterwards.
  void read_header(const json& root, MemoryState* state) {
    expect_keys(root, {"model_id", "next_block", "seed", "prompt", "layers"}, "header");
    state->model_id = string_field(root, "model_id", "header");
    state->next_block = signed_field(root, "next_block", "header");
    state->seed = unsigned_field(root, "seed", "header");
    state->prompt = string_field(root, "prompt", "header");
    const json& layers = root.at("layers");
    if (!layers.is_array()) fail("header.layers is not an array");

    const uint64_t payload_floats = payload_bytes_ / 4;
    uint64_t layout_floats = 0;
    // Adds a length from the header, refusing anything beyond the payload before it is allocated.
    const auto account = [&](uint64_t length, const std::string& where) {
      if (__builtin_add_overflow(layout_floats, length, &layout_floats) || layout_floats > payload_floats) {
        fail(where + ": layout needs more data than the payload holds");
      }
      return static_cast<size_t>(length);
    };
    state->layers.reserve(std::min<size_t>(layers.size(), payload_floats + 1));
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string where = "layers[" + std::to_string(i) + "]";
      const json& layer = layers[i];
      expect_keys(layer, {"state_length", "kv_blocks"}, where);
      LayerMemory memory;
      memory.state.resize(account(unsigned_field(layer, "state_length", where), where));
      const json& blocks = layer.at("kv_blocks");
      if (!blocks.is_array()) fail(where + ".kv_blocks is not an array");
      for (size_t b = 0; b < blocks.size(); ++b) {
        const std::string block_where = where + ".kv_blocks[" + std::to_string(b) + "]";
        const json& block = blocks[b];
        expect_keys(block, {"block_index", "k_length", "v_length"}, block_where);
        KvBlock kv;
        kv.block_index = signed_field(block, "block_index", block_where);
        kv.k.resize(account(unsigned_field(block, "k_length", block_where), block_where));
        kv.v.resize(account(unsigned_field(block, "v_length", block_where), block_where));
        memory.kv_blocks.push_back(std::move(kv));
      }
      state->layers.push_back(std::move(memory));
    }
    if (layout_floats * 4 != payload_bytes_) {
      fail("layout accounts for " + std::to_string(layout_floats * 4) + " bytes but the payload has " +
           std::to_string(payload_bytes_));
    }
  }

  void fill_payload(std::span<const uint8_t> payload, MemoryState* state) const {
    size_t offset = 0;
    const auto fill = [&](std::vector<float>* values) {
      for (float& value : *values) {
        value = std::bit_cast<float>(get_u32(payload.data() + offset));
        offset += 4;
      }
    };
    for (LayerMemory& layer : state->layers) {
      fill(&layer.state);
      for (KvBlock& block : layer.kv_blocks) {
        fill(&block.k);
        fill(&block.v);
      }
    }
  }

  std::span<const uint8_t> bytes_;
  std::string source_;
  uint64_t payload_bytes_ = 0;
};

}  // namespace

size_t MemoryState::size_bytes() const {
  size_t total = 0;
  for (const LayerMemory& layer : layers) {
    total += layer.state.size() * sizeof(float);
    for (const KvBlock& block : layer.kv_blocks) total += (block.k.size() + block.v.size()) * sizeof(float);
  }
  return total;
}

std::vector<uint8_t> serialize_snapshot(const MemoryState& state) {
  json layers = json::array();
  size_t payload_length = 0;
  for (const LayerMemory& layer : state.layers) {
    json blocks = json::array();
    for (const KvBlock& block : layer.kv_blocks) {
      blocks.push_back({{"block_index", block.block_index}, {"k_length", block.k.size()}, {"v_length", block.v.size()}});
      payload_length = checked_float_bytes(block.k.size(), payload_length);
      payload_length = checked_float_bytes(block.v.size(), payload_length);
    }
    layers.push_back({{"state_length", layer.state.size()}, {"kv_blocks", std::move(blocks)}});
    payload_length = checked_float_bytes(layer.state.size(), payload_length);
  }
  const json header = {{"model_id", state.model_id}, {"next_block", state.next_block}, {"seed", state.seed},
                       {"prompt", state.prompt},     {"layers", std::move(layers)}};
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const json::exception& e) {
    throw Error(ErrorKind::invalid_argument,
                std::string("snapshot: prompt and model id must be valid UTF-8: ") + e.what());
  }
  if (header_text.size() > UINT32_MAX) throw Error(ErrorKind::invalid_argument, "snapshot: header too large");

  std::vector<uint8_t> out;
  out.reserve(kPrefixBytes + header_text.size() + kMiddleBytes + payload_length + kTrailerBytes);
  for (const char c : kMagic) out.push_back(static_cast<uint8_t>(c));
  put_u32(&out, kSnapshotVersion);
  put_u32(&out, static_cast<uint32_t>(header_text.size()));
  out.insert(out.end(), header_text.begin(), header_text.end());
  put_u64(&out, payload_length);
  put_u64(&out, hash_bytes(std::span<const uint8_t>(out).subspan(kPrefixBytes, header_text.size())));
  const size_t payload_start = out.size();
  for (const LayerMemory& layer : state.layers) {
    put_floats(&out, layer.state);
    for (const KvBlock& block : layer.kv_blocks) {
      put_floats(&out, block.k);
      put_floats(&out, block.v);
    }
  }
  put_u64(&out, hash_bytes(std::span<const uint8_t>(out).subspan(payload_start)));
  return out;
}

MemoryState deserialize_snapshot(std::span<const uint8_t> bytes, const std::string& expected_model_id) {
  return SnapshotReader(bytes, "snapshot").read(expected_model_id);
}

void save_snapshot(const std::string& path, const MemoryState& state) {
  const std::vector<uint8_t> bytes = serialize_snapshot(state);
  write_file_atomic(path, bytes);
  // Read back and verify, as Krita does: a save is reported only once the file on disk is known
  // to load to the same state.
  const std::vector<uint8_t> written = read_file(path);
  if (written != bytes) throw Error(ErrorKind::io, path + ": snapshot read back differs from what was written");
  // Byte equality plus a full verifying read (checksums, layout). Not state == state: NaN values
  // would compare unequal although they round-trip bit for bit.
  try {
    (void)SnapshotReader(written, path).read({});
  } catch (const Error& e) {
    throw Error(ErrorKind::io, path + ": snapshot read back failed verification: " + e.what());
  }
}

MemoryState load_snapshot(const std::string& path, const std::string& expected_model_id) {
  const std::vector<uint8_t> bytes = read_file(path);
  return SnapshotReader(bytes, path).read(expected_model_id);
}

}  // namespace strand
