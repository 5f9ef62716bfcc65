// Strict safetensors reader/writer: hand-made files with known bytes, one crafted file per
// SafetensorsRule (each must be rejected with that rule), conversions against IEEE bit patterns,
// and writer round trips.
#include <gtest/gtest.h>

#include "temp_dir.h"

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "strand/safetensors.h"

namespace fs = std::filesystem;
using strand::DType;
using strand::SafetensorsError;
using strand::SafetensorsFile;
using strand::SafetensorsRule;

namespace {

// A file from its header text and data. The header is padded with spaces to a multiple of 8
// (as the reference writer does) unless `pad` is false.
std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data = {},
                               bool pad = true) {
  std::string text = header;
  if (pad) text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<uint8_t> out;
  const uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(length >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<uint8_t> with_length_field(uint64_t length, size_t extra_bytes) {
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(length >> (8 * i)));
  out.resize(8 + extra_bytes, '{');
  return out;
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// Parses `bytes`, expecting rejection with `rule`; returns the message.
std::string expect_rule(const std::vector<uint8_t>& bytes, SafetensorsRule rule) {
  try {
    (void)SafetensorsFile::parse(bytes);
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(strand::rule_name(e.rule()), strand::rule_name(rule)) << e.what();
    EXPECT_EQ(e.kind(), strand::ErrorKind::invalid_file);
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message must be one line: " << message;
    return message;
  }
  ADD_FAILURE() << "file accepted, expected rule " << strand::rule_name(rule);
  return {};
}

std::vector<uint8_t> zeros(size_t n) { return std::vector<uint8_t>(n, 0); }

struct TempDir : strand::test::TempDir {
  TempDir() : strand::test::TempDir("strand-st") {}
};

}  // namespace

TEST(Safetensors, DTypeNamesAndSizes) {
  DType d{};
  ASSERT_TRUE(strand::dtype_from_name("BF16", &d));
  EXPECT_EQ(d, DType::BF16);
  EXPECT_EQ(strand::dtype_size(DType::BF16), 2u);
  EXPECT_EQ(strand::dtype_size(DType::F64), 8u);
  EXPECT_EQ(strand::dtype_size(DType::BOOL), 1u);
  EXPECT_EQ(strand::dtype_size(DType::F8_E5M2), 1u);
  EXPECT_EQ(strand::dtype_name(DType::F8_E4M3), "F8_E4M3");
  EXPECT_FALSE(strand::dtype_from_name("f32", &d));
  EXPECT_FALSE(strand::dtype_from_name("", &d));
}

TEST(Safetensors, ParsesHandMadeFile) {
  // 1.0f = 00 00 80 3f, -2.5f = 00 00 20 c0 (IEEE 754, little-endian); then 2 bytes of U8.
  const std::vector<uint8_t> data = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc0, 7, 9};
  const auto bytes = make_file("{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"}," +
                               entry("w", "F32", "[2]", 0, 8) + "," + entry("b", "U8", "[1,2]", 8, 10) + "}",
                               data);
  const SafetensorsFile file = SafetensorsFile::parse(bytes);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"k", "v"}}));
  ASSERT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.tensors()[0].name, "w");  // file order kept
  EXPECT_EQ(file.tensors()[1].name, "b");
  const strand::TensorInfo* w = file.find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->dtype, DType::F32);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(w->element_count(), 2u);
  EXPECT_EQ(file.to_f32(*w), (std::vector<float>{1.0f, -2.5f}));
  const strand::TensorInfo* b = file.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(file.data(*b).begin(), file.data(*b).end()), (std::vector<uint8_t>{7, 9}));
  EXPECT_EQ(file.find("missing"), nullptr);
  EXPECT_EQ(file.data_buffer().size(), data.size());
  EXPECT_EQ(std::memcmp(file.data_buffer().data(), data.data(), data.size()), 0);
}

TEST(Safetensors, AcceptsEmptyScalarAndZeroSizeTensors) {
  EXPECT_TRUE(SafetensorsFile::parse(make_file("{}")).tensors().empty());
  // Scalar (shape []) has one element; zero-size tensors may sit anywhere in the order.
  const auto bytes = make_file("{" + entry("s", "F32", "[]", 0, 4) + "," + entry("z", "F16", "[0,3]", 4, 4) + "," +
                                   entry("e", "I64", "[2,0]", 4, 4) + "}",
                               {0, 0, 0x40, 0x40});
  const SafetensorsFile file = SafetensorsFile::parse(bytes);
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.to_f32(*file.find("s")), (std::vector<float>{3.0f}));
  EXPECT_TRUE(file.to_f32(*file.find("z")).empty());
  EXPECT_EQ(file.find("e")->element_count(), 0u);
}

TEST(Safetensors, F16AndBF16ConvertExactly) {
  // Bit patterns from IEEE 754 binary16 / bfloat16 definitions.
  const std::vector<std::pair<uint16_t, float>> half = {
      {0x3C00, 1.0f},       {0xC000, -2.0f},         {0x7BFF, 65504.0f}, {0x0001, std::ldexp(1.0f, -24)},
      {0x03FF, std::ldexp(1023.0f, -24)}, {0x0400, std::ldexp(1.0f, -14)}, {0x3555, 0.333251953125f},
      {0x8000, -0.0f},      {0x7C00, std::numeric_limits<float>::infinity()}};
  const std::vector<std::pair<uint16_t, float>> bf16 = {
      {0x3F80, 1.0f}, {0xC020, -2.5f}, {0x4049, 3.140625f}, {0x0001, std::ldexp(1.0f, -133)}, {0xFF80, -INFINITY}};
  std::vector<uint8_t> data;
  for (const auto& [bits, value] : half) data.insert(data.end(), {static_cast<uint8_t>(bits), static_cast<uint8_t>(bits >> 8)});
  for (const auto& [bits, value] : bf16) data.insert(data.end(), {static_cast<uint8_t>(bits), static_cast<uint8_t>(bits >> 8)});
  data.insert(data.end(), {0x00, 0x7E, 0xC1, 0x7F});  // F16 NaN, BF16 NaN
  const size_t h = half.size() * 2;
  const size_t b = h + bf16.size() * 2;
  const auto bytes = make_file("{" + entry("h", "F16", "[" + std::to_string(half.size()) + "]", 0, h) + "," +
                               entry("b", "BF16", "[" + std::to_string(bf16.size()) + "]", h, b) + "," +
                               entry("hn", "F16", "[1]", b, b + 2) + "," + entry("bn", "BF16", "[1]", b + 2, b + 4) + "}",
                               data);
  const SafetensorsFile file = SafetensorsFile::parse(bytes);
  const auto h32 = file.to_f32(*file.find("h"));
  for (size_t i = 0; i < half.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(h32[i]), std::bit_cast<uint32_t>(half[i].second)) << "half #" << i;
  }
  const auto b32 = file.to_f32(*file.find("b"));
  for (size_t i = 0; i < bf16.size(); ++i) {
    EXPECT_EQ(std::bit_cast<uint32_t>(b32[i]), std::bit_cast<uint32_t>(bf16[i].second)) << "bf16 #" << i;
  }
  EXPECT_TRUE(std::isnan(file.to_f32(*file.find("hn"))[0]));
  EXPECT_TRUE(std::isnan(file.to_f32(*file.find("bn"))[0]));
}

TEST(Safetensors, ToF32RejectsIntegerDTypes) {
  const SafetensorsFile file = SafetensorsFile::parse(make_file("{" + entry("i", "I32", "[1]", 0, 4) + "}", zeros(4)));
  try {
    (void)file.to_f32(file.tensors()[0]);
    ADD_FAILURE() << "expected an error";
  } catch (const strand::Error& e) {
    EXPECT_EQ(e.kind(), strand::ErrorKind::invalid_file);
    EXPECT_NE(std::string(e.what()).find("I32"), std::string::npos);
  }
}

// ---- one crafted file per rule ----------------------------------------------------------------

TEST(SafetensorsRules, Io) {
  try {
    (void)SafetensorsFile::load("/nonexistent-strand-dir/model.safetensors");
    ADD_FAILURE() << "expected an error";
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.rule(), SafetensorsRule::io);
    EXPECT_EQ(e.kind(), strand::ErrorKind::io);
  }
}

TEST(SafetensorsRules, TooSmall) {
  for (size_t n = 0; n < 8; ++n) expect_rule(zeros(n), SafetensorsRule::too_small);
}

TEST(SafetensorsRules, HeaderTooLarge) {
  expect_rule(with_length_field(100'000'001, 16), SafetensorsRule::header_too_large);
  expect_rule(with_length_field(std::numeric_limits<uint64_t>::max(), 16), SafetensorsRule::header_too_large);
  expect_rule(with_length_field(std::numeric_limits<uint64_t>::max() - 7, 16), SafetensorsRule::header_too_large);
  expect_rule(with_length_field(17, 16), SafetensorsRule::header_too_large);  // one past the end
}

TEST(SafetensorsRules, HeaderNotUtf8) {
  for (const std::string bad : {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    expect_rule(make_file("{\"__metadata__\":{\"a\":\"" + bad + "\"}}"), SafetensorsRule::header_not_utf8);
  }
}

TEST(SafetensorsRules, HeaderNotJson) {
  expect_rule(make_file("{\"a\":"), SafetensorsRule::header_not_json);
  expect_rule(make_file("[1,2]"), SafetensorsRule::header_not_json);
  expect_rule(make_file("{} x"), SafetensorsRule::header_not_json);
  expect_rule(make_file(""), SafetensorsRule::header_not_json);
  // nlohmann stops at a NUL as if the input ended there; the reader must not.
  expect_rule(make_file(std::string("{}\0\0\0\0\0\0", 8), {}, false), SafetensorsRule::header_not_json);
  expect_rule(make_file(std::string("{}\0 x", 5)), SafetensorsRule::header_not_json);
}

TEST(SafetensorsRules, BadMetadata) {
  expect_rule(make_file("{\"__metadata__\":[\"a\"]}"), SafetensorsRule::bad_metadata);
  expect_rule(make_file("{\"__metadata__\":{\"a\":1}}"), SafetensorsRule::bad_metadata);
  expect_rule(make_file("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}"), SafetensorsRule::bad_metadata);
}

TEST(SafetensorsRules, BadEntry) {
  expect_rule(make_file("{\"x\":3}"), SafetensorsRule::bad_entry);
  expect_rule(make_file("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", zeros(4)), SafetensorsRule::bad_entry);
  expect_rule(make_file("{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", zeros(4)), SafetensorsRule::bad_entry);
  expect_rule(make_file("{\"x\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", zeros(4)), SafetensorsRule::bad_entry);
  expect_rule(make_file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", zeros(4)), SafetensorsRule::bad_entry);
  expect_rule(make_file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", zeros(4)), SafetensorsRule::bad_entry);
  expect_rule(make_file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", zeros(4)), SafetensorsRule::bad_entry);
  expect_rule(make_file("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", zeros(4)),
              SafetensorsRule::bad_entry);
}

TEST(SafetensorsRules, UnknownDtype) {
  expect_rule(make_file("{" + entry("x", "F128", "[1]", 0, 16) + "}", zeros(16)), SafetensorsRule::unknown_dtype);
  expect_rule(make_file("{" + entry("x", "f32", "[1]", 0, 4) + "}", zeros(4)), SafetensorsRule::unknown_dtype);
}

TEST(SafetensorsRules, BadShape) {
  expect_rule(make_file("{" + entry("x", "F32", "[-1,2]", 0, 4) + "}", zeros(4)), SafetensorsRule::bad_shape);
  // Element count overflows uint64 (2^40 * 2^40).
  expect_rule(make_file("{" + entry("x", "U8", "[1099511627776,1099511627776]", 0, 0) + "}"), SafetensorsRule::bad_shape);
  // Byte size 2^62 * 4 and element count 2^62 * 16 both wrap to exactly 0 in 64-bit arithmetic:
  // with data_offsets [0, 0] they must not pass as zero-size tensors.
  expect_rule(make_file("{" + entry("x", "F32", "[4611686018427387904]", 0, 0) + "}"), SafetensorsRule::bad_shape);
  expect_rule(make_file("{" + entry("x", "U8", "[4611686018427387904,16]", 0, 0) + "}"), SafetensorsRule::bad_shape);
  expect_rule(make_file("{" + entry("x", "U8", "[9223372036854775808]", 0, 0) + "}"), SafetensorsRule::bad_shape);
}

TEST(SafetensorsRules, DuplicateKey) {
  // Zero-size duplicates occupy no bytes, so only key tracking can see them.
  const std::string message =
      expect_rule(make_file("{" + entry("a", "F32", "[0]", 0, 0) + "," + entry("a", "F32", "[0]", 0, 0) + "}"),
                  SafetensorsRule::duplicate_key);
  EXPECT_NE(message.find("'a'"), std::string::npos) << message;
  expect_rule(make_file("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("a", "F32", "[1]", 4, 8) + "}", zeros(8)),
              SafetensorsRule::duplicate_key);
  expect_rule(make_file("{\"__metadata__\":{},\"__metadata__\":{}}"), SafetensorsRule::duplicate_key);
  expect_rule(make_file("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"), SafetensorsRule::duplicate_key);
  expect_rule(make_file("{\"x\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros(4)),
              SafetensorsRule::duplicate_key);
}

TEST(SafetensorsRules, BadName) {
  for (const std::string name : {"", "a/b", "/abs", "a\\\\b", "..", "x..y", "a\\u0000b", "tab\\tname", "\\u007f",
                                 "\\u0085"}) {
    expect_rule(make_file("{" + entry(name, "F32", "[1]", 0, 4) + "}", zeros(4)), SafetensorsRule::bad_name);
  }
  // Ordinary names pass, including non-ASCII.
  EXPECT_NO_THROW(SafetensorsFile::parse(make_file("{" + entry("blocks.0.attn.q_proj.weight", "F32", "[1]", 0, 4) +
                                                       "," + entry("caf\xc3\xa9", "F32", "[1]", 4, 8) + "}",
                                                   zeros(8))));
}

TEST(SafetensorsRules, SizeMismatch) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const auto bytes = make_file("{" + entry("x", "F32", "[2,2]", 0, 12) + "}", zeros(12));
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
  try {
    (void)SafetensorsFile::load(path);
    ADD_FAILURE() << "expected an error";
  } catch (const SafetensorsError& e) {
    EXPECT_EQ(e.rule(), SafetensorsRule::size_mismatch);
    EXPECT_EQ(std::string(e.what()), path + ": tensor 'x': data_offsets [0, 12] but shape [2,2] F32 needs 16 bytes");
  }
  expect_rule(make_file("{" + entry("x", "F32", "[1]", 8, 4) + "}", zeros(8)), SafetensorsRule::size_mismatch);
}

TEST(SafetensorsRules, OverlapOrGap) {
  expect_rule(make_file("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}", zeros(12)),
              SafetensorsRule::overlap_or_gap);
  expect_rule(make_file("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 16, 24) + "}", zeros(24)),
              SafetensorsRule::overlap_or_gap);
  expect_rule(make_file("{" + entry("a", "F32", "[1]", 4, 8) + "}", zeros(8)), SafetensorsRule::overlap_or_gap);
  expect_rule(make_file("{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 0, 4) + "}", zeros(4)),
              SafetensorsRule::overlap_or_gap);
}

TEST(SafetensorsRules, Misaligned) {
  expect_rule(make_file("{" + entry("a", "U8", "[1]", 0, 1) + "," + entry("b", "F32", "[1]", 1, 5) + "}", zeros(5)),
              SafetensorsRule::misaligned);
  // Unpadded header: data starts at an odd file offset, so even offset 0 is misaligned.
  std::string header = "{" + entry("ab", "F16", "[1]", 0, 2) + "}";
  if (header.size() % 2 == 0) header = "{" + entry("abc", "F16", "[1]", 0, 2) + "}";
  ASSERT_EQ(header.size() % 2, 1u);
  expect_rule(make_file(header, zeros(2), false), SafetensorsRule::misaligned);
}

TEST(SafetensorsRules, TrailingBytes) {
  expect_rule(make_file("{" + entry("a", "F32", "[2]", 0, 8) + "}", zeros(9)), SafetensorsRule::trailing_bytes);
  expect_rule(make_file("{}", zeros(1)), SafetensorsRule::trailing_bytes);
}

TEST(SafetensorsRules, Truncated) {
  expect_rule(make_file("{" + entry("a", "F32", "[4]", 0, 16) + "}", zeros(8)), SafetensorsRule::truncated);
  expect_rule(make_file("{" + entry("a", "U8", "[9223372036854775807]", 0, 9223372036854775807ull) + "}", zeros(8)),
              SafetensorsRule::truncated);
}

TEST(SafetensorsRules, EveryTruncationOfAValidFileIsRejected) {
  const auto bytes = make_file("{\"__metadata__\":{\"a\":\"b\"}," + entry("w", "F32", "[3]", 0, 12) + "}", zeros(12));
  ASSERT_NO_THROW(SafetensorsFile::parse(bytes));
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW(SafetensorsFile::parse(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(n))),
                 SafetensorsError)
        << "length " << n;
  }
}

// ---- writer -------------------------------------------------------------------------------------

TEST(SafetensorsWriter, RoundTripsThroughTheReader) {
  const std::vector<double> f64 = {1.5, -3.25};
  const std::vector<float> f32 = {0.5f, 1.0f, -8.0f, 1e-30f, 3.0f, 4.0f};
  const std::vector<uint8_t> f16 = {0x00, 0x3C, 0x00, 0xC0};  // 1, -2
  const std::vector<uint8_t> u8 = {1, 2, 3};
  auto as_bytes = [](const auto& v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(v[0]));
  };
  const std::vector<strand::TensorToWrite> tensors = {
      {"f64", DType::F64, {2}, as_bytes(f64)},  {"f32", DType::F32, {2, 3}, as_bytes(f32)},
      {"empty", DType::F32, {0, 5}, {}},        {"f16", DType::F16, {2}, as_bytes(f16)},
      {"bytes", DType::U8, {3}, as_bytes(u8)},  {"empty_i64_after_u8", DType::I64, {0}, {}}};
  const std::map<std::string, std::string> metadata = {{"strand.config", "{\"a\": 1}"}, {"note", "caf\xc3\xa9"}};
  const std::vector<uint8_t> bytes = strand::serialize_safetensors(tensors, metadata);

  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  EXPECT_EQ((8 + header_length) % 8, 0u) << "data must start 8-aligned";
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(header_length));
  EXPECT_NE(header.find("\"__metadata__\""), std::string::npos);

  const SafetensorsFile file = SafetensorsFile::parse(bytes);
  EXPECT_EQ(file.metadata(), metadata);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const strand::TensorInfo& info = file.tensors()[i];
    EXPECT_EQ(info.name, tensors[i].name);
    EXPECT_EQ(info.dtype, tensors[i].dtype);
    EXPECT_EQ(info.shape, tensors[i].shape);
    const auto data = file.data(info);
    EXPECT_TRUE(std::equal(data.begin(), data.end(), tensors[i].bytes.begin(), tensors[i].bytes.end())) << info.name;
  }
  EXPECT_EQ(file.to_f32(*file.find("f32")), f32);
  EXPECT_EQ(file.to_f32(*file.find("f16")), (std::vector<float>{1.0f, -2.0f}));

  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  strand::write_safetensors(path, tensors, metadata);
  const SafetensorsFile loaded = SafetensorsFile::load(path);
  EXPECT_EQ(std::vector<uint8_t>(loaded.data_buffer().begin(), loaded.data_buffer().end()),
            std::vector<uint8_t>(file.data_buffer().begin(), file.data_buffer().end()));
}

TEST(SafetensorsWriter, RejectsInvalidInput) {
  const std::vector<uint8_t> four(4, 0);
  const std::vector<uint8_t> one(1, 0);
  const auto expect_invalid = [](const std::vector<strand::TensorToWrite>& tensors,
                                 const std::map<std::string, std::string>& metadata = {}) {
    try {
      (void)strand::serialize_safetensors(tensors, metadata);
      ADD_FAILURE() << "expected invalid_argument";
    } catch (const strand::Error& e) {
      EXPECT_EQ(e.kind(), strand::ErrorKind::invalid_argument) << e.what();
    }
  };
  expect_invalid({{"a/b", DType::F32, {1}, four}});
  expect_invalid({{"", DType::F32, {1}, four}});
  expect_invalid({{"__metadata__", DType::F32, {1}, four}});
  expect_invalid({{"a", DType::F32, {1}, four}, {"a", DType::F32, {1}, four}});
  expect_invalid({{"a", DType::F32, {2}, four}});   // size mismatch
  expect_invalid({{"a", DType::F32, {-1}, four}});  // negative dim
  expect_invalid({{"u", DType::U8, {1}, one}, {"f", DType::F32, {1}, four}});  // would be misaligned
  expect_invalid({}, {{"bad", "\xff"}});            // metadata not UTF-8
}
