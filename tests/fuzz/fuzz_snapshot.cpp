// libFuzzer target for MemoryState snapshots. The first input byte picks a mode:
//   0: raw bytes into deserialize_snapshot (must throw Error or return a state that re-serializes
//      and loads back identically);
//   1: the same, after recomputing both XXH64 checksums where the input's own length fields put
//      them, so the fuzzer gets past the checksums into the JSON/layout validation;
//   2: a state built from the input, serialized and loaded back: it must be bit-identical, and a
//      different expected model id must give model_mismatch.
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>
#include <xxhash.h>

#include "strand/error.h"
#include "strand/memory_state.h"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Bitwise equality (MemoryState == compares floats by value: NaN != NaN).
bool identical(const strand::MemoryState& a, const strand::MemoryState& b) {
  if (a.model_id != b.model_id || a.next_block != b.next_block || a.seed != b.seed || a.prompt != b.prompt ||
      a.layers.size() != b.layers.size()) {
    return false;
  }
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const auto& la = a.layers[i];
    const auto& lb = b.layers[i];
    if (!same_floats(la.state, lb.state) || la.kv_blocks.size() != lb.kv_blocks.size()) return false;
    for (size_t j = 0; j < la.kv_blocks.size(); ++j) {
      if (la.kv_blocks[j].block_index != lb.kv_blocks[j].block_index ||
          !same_floats(la.kv_blocks[j].k, lb.kv_blocks[j].k) || !same_floats(la.kv_blocks[j].v, lb.kv_blocks[j].v)) {
        return false;
      }
    }
  }
  return true;
}

uint64_t read_le(const std::vector<uint8_t>& b, size_t at, size_t width) {
  uint64_t value = 0;
  for (size_t i = width; i-- > 0;) value = (value << 8) | b[at + i];
  return value;
}
void write_le64(std::vector<uint8_t>* b, size_t at, uint64_t value) {
  for (size_t i = 0; i < 8; ++i) (*b)[at + i] = static_cast<uint8_t>(value >> (8 * i));
}

void fix_checksums(std::vector<uint8_t>* b) {
  if (b->size() < 16) return;
  const uint64_t header_length = read_le(*b, 12, 4);
  const uint64_t middle = 16 + header_length;
  if (middle + 16 > b->size()) return;
  write_le64(b, middle + 8, XXH64(b->data() + 16, header_length, 0));
  const uint64_t payload_length = read_le(*b, middle, 8);
  const uint64_t payload_at = middle + 16;
  if (payload_length > b->size() - payload_at || b->size() - payload_at - payload_length < 8) return;
  write_le64(b, payload_at + payload_length, XXH64(b->data() + payload_at, payload_length, 0));
}

void load_and_recheck(const std::vector<uint8_t>& bytes) {
  strand::MemoryState state;
  try {
    state = strand::deserialize_snapshot(bytes);
  } catch (const strand::Error& e) {
    check(e.kind() == strand::ErrorKind::invalid_file);
    return;
  }
  const std::vector<uint8_t> again = strand::serialize_snapshot(state);
  check(identical(strand::deserialize_snapshot(again), state));
}

strand::MemoryState build_state(FuzzedDataProvider* in) {
  strand::MemoryState state;
  state.model_id = in->ConsumeRandomLengthString(40);
  state.prompt = in->ConsumeRandomLengthString(80);
  state.next_block = in->ConsumeIntegral<int64_t>();
  state.seed = in->ConsumeIntegral<uint64_t>();
  const auto floats = [in](size_t max) {
    std::vector<float> values(in->ConsumeIntegralInRange<size_t>(0, max));
    for (float& v : values) v = std::bit_cast<float>(in->ConsumeIntegral<uint32_t>());
    return values;
  };
  state.layers.resize(in->ConsumeIntegralInRange<size_t>(0, 6));
  for (strand::LayerMemory& layer : state.layers) {
    layer.state = floats(64);
    layer.kv_blocks.resize(in->ConsumeIntegralInRange<size_t>(0, 3));
    for (strand::KvBlock& block : layer.kv_blocks) {
      block.block_index = in->ConsumeIntegral<int64_t>();
      block.k = floats(16);
      block.v = floats(16);
    }
  }
  return state;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  std::vector<uint8_t> bytes(data + 1, data + size);
  if (mode == 0) {
    load_and_recheck(bytes);
  } else if (mode == 1) {
    fix_checksums(&bytes);
    load_and_recheck(bytes);
  } else {
    FuzzedDataProvider in(bytes.data(), bytes.size());
    const strand::MemoryState state = build_state(&in);
    std::vector<uint8_t> serialized;
    try {
      serialized = strand::serialize_snapshot(state);
    } catch (const strand::Error& e) {
      check(e.kind() == strand::ErrorKind::invalid_argument);  // e.g. prompt not UTF-8
      return 0;
    }
    check(identical(strand::deserialize_snapshot(serialized, state.model_id), state));
    try {
      (void)strand::deserialize_snapshot(serialized, state.model_id + "x");
      check(false);
    } catch (const strand::Error& e) {
      check(e.kind() == strand::ErrorKind::model_mismatch);
    }
  }
  return 0;
}
