// MemoryState snapshots: the byte layout checked field by field against the documented format
// (with an independent XXH64), round trips, every single-bit flip and every truncation detected,
// crafted files with valid checksums but inconsistent layouts, model mismatch, atomic save.
#include <gtest/gtest.h>

#include "temp_dir.h"

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "strand/error.h"
#include "strand/memory_state.h"

namespace fs = std::filesystem;
using strand::ErrorKind;
using strand::MemoryState;

namespace {

MemoryState small_state() {
  MemoryState state;
  state.model_id = "sha256:0123abcd";
  state.next_block = 3;
  state.seed = 0xFEDCBA9876543210ull;  // above INT64_MAX: must survive JSON as unsigned
  state.prompt = "a red fox, caf\xc3\xa9";
  strand::LayerMemory hybrid;
  hybrid.state = {1.0f, -2.0f, 0.5f, -0.0f, std::numeric_limits<float>::denorm_min(), 3.25f};
  strand::LayerMemory softmax_kv;
  softmax_kv.kv_blocks.push_back({1, {0.25f, 0.75f}, {-1.5f, 2.5f}});
  softmax_kv.kv_blocks.push_back({2, {4.0f, 5.0f}, {6.0f, 7.0f}});
  state.layers = {hybrid, strand::LayerMemory{}, softmax_kv};
  return state;
}

// Bitwise comparison (== on floats would equate 0.0 and -0.0).
void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(std::bit_cast<uint32_t>(a[i]), std::bit_cast<uint32_t>(b[i])) << i;
}
void expect_identical(const MemoryState& a, const MemoryState& b) {
  EXPECT_EQ(a.model_id, b.model_id);
  EXPECT_EQ(a.next_block, b.next_block);
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.prompt, b.prompt);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    expect_same_bits(a.layers[i].state, b.layers[i].state);
    ASSERT_EQ(a.layers[i].kv_blocks.size(), b.layers[i].kv_blocks.size());
    for (size_t j = 0; j < a.layers[i].kv_blocks.size(); ++j) {
      EXPECT_EQ(a.layers[i].kv_blocks[j].block_index, b.layers[i].kv_blocks[j].block_index);
      expect_same_bits(a.layers[i].kv_blocks[j].k, b.layers[i].kv_blocks[j].k);
      expect_same_bits(a.layers[i].kv_blocks[j].v, b.layers[i].kv_blocks[j].v);
    }
  }
}

uint32_t u32_at(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t{b[at]} | (uint32_t{b[at + 1]} << 8) | (uint32_t{b[at + 2]} << 16) | (uint32_t{b[at + 3]} << 24);
}
uint64_t u64_at(const std::vector<uint8_t>& b, size_t at) {
  return uint64_t{u32_at(b, at)} | (uint64_t{u32_at(b, at + 4)} << 32);
}
void append_u32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void append_u64(std::vector<uint8_t>* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// Builds a snapshot from its parts per the documented format, with correct checksums, so the
// tests can reach the checks behind them. `payload_length` overrides the real length.
std::vector<uint8_t> craft(const std::string& header, const std::vector<uint8_t>& payload, uint32_t version = 1,
                           std::optional<uint64_t> payload_length = std::nullopt) {
  std::vector<uint8_t> out = {'S', 'T', 'R', 'N', 'S', 'N', 'A', 'P'};
  append_u32(&out, version);
  append_u32(&out, static_cast<uint32_t>(header.size()));
  out.insert(out.end(), header.begin(), header.end());
  append_u64(&out, payload_length.value_or(payload.size()));
  append_u64(&out, XXH64(header.data(), header.size(), 0));
  out.insert(out.end(), payload.begin(), payload.end());
  append_u64(&out, XXH64(payload.data(), payload.size(), 0));
  return out;
}

ErrorKind failure_kind(const std::function<void()>& action, std::string* message = nullptr) {
  try {
    action();
  } catch (const strand::Error& e) {
    if (message != nullptr) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "expected strand::Error";
  return ErrorKind::unsupported;
}

struct TempDir : strand::test::TempDir {
  TempDir() : strand::test::TempDir("strand-snap") {}
};

}  // namespace

TEST(Snapshot, SizeBytesCountsStatesAndCaches) {
  EXPECT_EQ(small_state().size_bytes(), (6 + 4 * 2) * sizeof(float));
  EXPECT_EQ(MemoryState{}.size_bytes(), 0u);
}

TEST(Snapshot, BytesFollowTheDocumentedLayout) {
  const MemoryState state = small_state();
  const std::vector<uint8_t> bytes = strand::serialize_snapshot(state);
  ASSERT_GE(bytes.size(), 16u);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 8), "STRNSNAP");
  EXPECT_EQ(u32_at(bytes, 8), 1u);
  const size_t header_length = u32_at(bytes, 12);
  ASSERT_LE(16 + header_length + 16, bytes.size());
  const std::string header(bytes.begin() + 16, bytes.begin() + 16 + static_cast<long>(header_length));
  const auto json = nlohmann::json::parse(header);
  EXPECT_EQ(json.at("model_id"), state.model_id);
  EXPECT_EQ(json.at("next_block"), 3);
  EXPECT_EQ(json.at("seed").get<uint64_t>(), state.seed);
  EXPECT_EQ(json.at("prompt"), state.prompt);
  ASSERT_EQ(json.at("layers").size(), 3u);
  EXPECT_EQ(json.at("layers")[0].at("state_length"), 6);
  EXPECT_TRUE(json.at("layers")[1].at("kv_blocks").empty());
  EXPECT_EQ(json.at("layers")[2].at("kv_blocks")[1].at("block_index"), 2);
  EXPECT_EQ(json.at("layers")[2].at("kv_blocks")[1].at("k_length"), 2);

  const size_t middle = 16 + header_length;
  const uint64_t payload_length = u64_at(bytes, middle);
  EXPECT_EQ(payload_length, state.size_bytes());
  EXPECT_EQ(u64_at(bytes, middle + 8), XXH64(header.data(), header.size(), 0));
  const size_t payload_at = middle + 16;
  ASSERT_EQ(bytes.size(), payload_at + payload_length + 8);
  // Payload order: layer 0 state, then layer 2's blocks (k then v); float32 little-endian.
  const std::vector<float> expected = {1.0f, -2.0f, 0.5f, -0.0f, std::numeric_limits<float>::denorm_min(), 3.25f,
                                       0.25f, 0.75f, -1.5f, 2.5f, 4.0f, 5.0f, 6.0f, 7.0f};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(u32_at(bytes, payload_at + 4 * i), std::bit_cast<uint32_t>(expected[i])) << "float " << i;
  }
  EXPECT_EQ(u64_at(bytes, payload_at + payload_length), XXH64(bytes.data() + payload_at, payload_length, 0));
}

TEST(Snapshot, RoundTripsBitExactly) {
  MemoryState state = small_state();
  state.layers[0].state.push_back(std::numeric_limits<float>::quiet_NaN());
  state.layers[0].state.push_back(-std::numeric_limits<float>::infinity());
  expect_identical(strand::deserialize_snapshot(strand::serialize_snapshot(state)), state);
  expect_identical(strand::deserialize_snapshot(strand::serialize_snapshot(MemoryState{})), MemoryState{});
  MemoryState extremes;
  extremes.next_block = std::numeric_limits<int64_t>::min();
  extremes.seed = std::numeric_limits<uint64_t>::max();
  extremes.layers.resize(1);
  extremes.layers[0].kv_blocks.push_back({std::numeric_limits<int64_t>::max(), {}, {}});
  expect_identical(strand::deserialize_snapshot(strand::serialize_snapshot(extremes)), extremes);
}

TEST(Snapshot, InvalidUtf8PromptIsRejectedOnSave) {
  MemoryState state = small_state();
  state.prompt = "bad \xff";
  EXPECT_EQ(failure_kind([&] { (void)strand::serialize_snapshot(state); }), ErrorKind::invalid_argument);
}

TEST(Snapshot, EverySingleBitFlipIsDetected) {
  const std::vector<uint8_t> good = strand::serialize_snapshot(small_state());
  size_t undetected = 0;
  size_t wrong_kind = 0;
  for (size_t byte = 0; byte < good.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> bad = good;
      bad[byte] = static_cast<uint8_t>(bad[byte] ^ (1u << bit));
      try {
        (void)strand::deserialize_snapshot(bad, "sha256:0123abcd");
        ++undetected;
      } catch (const strand::Error& e) {
        if (e.kind() != ErrorKind::invalid_file) ++wrong_kind;
      }
    }
  }
  EXPECT_EQ(undetected, 0u) << "of " << good.size() * 8 << " flips";
  EXPECT_EQ(wrong_kind, 0u);
}

TEST(Snapshot, EveryTruncationAndExtensionIsDetected) {
  const std::vector<uint8_t> good = strand::serialize_snapshot(small_state());
  size_t undetected = 0;
  for (size_t length = 0; length < good.size(); ++length) {
    const std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(length));
    if (failure_kind([&] { (void)strand::deserialize_snapshot(cut); }) != ErrorKind::invalid_file) ++undetected;
  }
  EXPECT_EQ(undetected, 0u);
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  EXPECT_EQ(failure_kind([&] { (void)strand::deserialize_snapshot(longer); }), ErrorKind::invalid_file);
}

TEST(Snapshot, ModelMismatch) {
  const std::vector<uint8_t> bytes = strand::serialize_snapshot(small_state());
  std::string message;
  EXPECT_EQ(failure_kind([&] { (void)strand::deserialize_snapshot(bytes, "sha256:other"); }, &message),
            ErrorKind::model_mismatch);
  EXPECT_NE(message.find("sha256:other"), std::string::npos) << message;
  EXPECT_NO_THROW((void)strand::deserialize_snapshot(bytes, "sha256:0123abcd"));
  EXPECT_NO_THROW((void)strand::deserialize_snapshot(bytes, ""));
}

TEST(Snapshot, CraftedFilesWithValidChecksums) {
  const std::vector<uint8_t> eight(8, 0);
  const auto header = [](const std::string& layers, const std::string& extra = "") {
    return R"({"model_id":"m","next_block":0,"seed":1,"prompt":"p","layers":)" + layers + extra + "}";
  };
  // The crafting helper itself produces loadable files.
  const MemoryState ok = strand::deserialize_snapshot(craft(header(R"([{"state_length":2,"kv_blocks":[]}])"), eight));
  ASSERT_EQ(ok.layers.size(), 1u);
  EXPECT_EQ(ok.layers[0].state.size(), 2u);

  const std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
      {"layout larger than payload", craft(header(R"([{"state_length":3,"kv_blocks":[]}])"), eight)},
      {"layout smaller than payload", craft(header(R"([{"state_length":1,"kv_blocks":[]}])"), eight)},
      {"payload not whole floats", craft(header(R"([{"state_length":2,"kv_blocks":[]}])"), std::vector<uint8_t>(9))},
      {"length overflows", craft(header(R"([{"state_length":18446744073709551615,"kv_blocks":[]},)"
                                        R"({"state_length":3,"kv_blocks":[]}])"),
                                 eight)},
      {"huge block lengths", craft(header(R"([{"state_length":0,"kv_blocks":[{"block_index":0,)"
                                          R"("k_length":4611686018427387904,"v_length":4611686018427387904}]}])"),
                                   eight)},
      {"negative length", craft(header(R"([{"state_length":-2,"kv_blocks":[]}])"), eight)},
      {"float length", craft(header(R"([{"state_length":2.0,"kv_blocks":[]}])"), eight)},
      {"missing field", craft(header(R"([{"kv_blocks":[]}])"), eight)},
      {"unexpected field", craft(header(R"([{"state_length":2,"kv_blocks":[]}])", R"(,"x":1)"), eight)},
      {"layers not array", craft(header(R"({"state_length":2})"), eight)},
      {"seed negative", craft(R"({"model_id":"m","next_block":0,"seed":-1,"prompt":"p","layers":[]})", {})},
      {"model_id not string", craft(R"({"model_id":5,"next_block":0,"seed":1,"prompt":"p","layers":[]})", {})},
      {"header not JSON", craft("{\"model_id\":", {})},
      {"header not object", craft("[]", {})},
      {"version 2", craft(header("[]"), {}, 2)},
      {"version 0", craft(header("[]"), {}, 0)},
      {"payload length field wrong", craft(header(R"([{"state_length":2,"kv_blocks":[]}])"), eight, 1, 4)},
      {"payload length huge", craft(header("[]"), {}, 1, std::numeric_limits<uint64_t>::max() - 20)},
  };
  for (const auto& test_case : cases) {
    std::string message;
    EXPECT_EQ(failure_kind([&] { (void)strand::deserialize_snapshot(test_case.second); }, &message),
              ErrorKind::invalid_file)
        << test_case.first;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(Snapshot, SaveAndLoadFiles) {
  TempDir dir;
  const std::string path = dir.file("block3.snap");
  const MemoryState state = small_state();
  strand::save_snapshot(path, state);
  EXPECT_EQ(dir.entry_count(), 1u);  // no temp file left
  expect_identical(strand::load_snapshot(path, state.model_id), state);
  EXPECT_EQ(failure_kind([&] { (void)strand::load_snapshot(path, "sha256:other"); }), ErrorKind::model_mismatch);

  // Corrupt one payload byte on disk: invalid_file, and the message names the file.
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-10, std::ios::end);
    file.put('\x55');
  }
  std::string message;
  EXPECT_EQ(failure_kind([&] { (void)strand::load_snapshot(path); }, &message), ErrorKind::invalid_file);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
}

TEST(Snapshot, IoErrors) {
  TempDir dir;
  EXPECT_EQ(failure_kind([&] { (void)strand::load_snapshot(dir.file("missing.snap")); }), ErrorKind::io);
  EXPECT_EQ(failure_kind([&] { strand::save_snapshot(dir.file("no/such/dir.snap"), small_state()); }), ErrorKind::io);
  EXPECT_EQ(dir.entry_count(), 0u);
}
