// strand-safetensors-check: the strict safetensors reader as a command, for differential tests
// against the reference implementation (training/tests/test_safetensors_differential.py).
//
//   strand-safetensors-check FILE              prints "ok" (exit 0) or "error <rule>: <message>" (exit 1)
//   strand-safetensors-check --dump FILE       prints the file as JSON: metadata, and per tensor its
//                                              name, dtype, shape, offsets, raw bytes as hex and, for
//                                              F32/F16/BF16, the float32 conversion's bytes as hex
//   strand-safetensors-check --write-sample OUT  writes the sample set below with the strict writer
//
// Usage errors exit 2.
#include <bit>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "strand/safetensors.h"

namespace {

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

// Little-endian encoders, so the sample bytes do not depend on the host.
template <typename T>
void put_le(std::vector<uint8_t>* out, T value) {
  const auto bits = static_cast<std::make_unsigned_t<T>>(value);
  for (size_t i = 0; i < sizeof(T); ++i) out->push_back(static_cast<uint8_t>(bits >> (8 * i)));
}
void put_f32(std::vector<uint8_t>* out, float value) { put_le(out, std::bit_cast<uint32_t>(value)); }
void put_f64(std::vector<uint8_t>* out, double value) { put_le(out, std::bit_cast<uint64_t>(value)); }

// The sample set. The Python test defines the same values independently; keep both in sync.
//   f64  F64  [3]    i * 1.25 - 2                 i = 0..2
//   i64  I64  [2,2]  (i - 2) * 1000000007
//   f32  F32  [2,3]  (i - 2.5) / 4
//   scalar F32 []    42.5
//   empty  F32 [0,4]
//   i32  I32  [4]    -3 * i
//   f16  F16  [4]    1.0, -2.0, 0.5, 65504.0      (bits 3c00 c000 3800 7bff)
//   bf16 BF16 [3]    1.0, -2.5, 3.140625          (bits 3f80 c020 4049)
//   u16  U16  [2]    65535, 1
//   i16  I16  [3]    -32768, 0, 32767
//   u8   U8   [5]    0, 1, 2, 254, 255
//   i8   I8   [2]    -128, 127
//   bool BOOL [3]    true, false, true
//   metadata: {"producer": "strand", "unicode": "café ✓"}
int write_sample(const std::string& path) {
  std::vector<std::vector<uint8_t>> storage(13);
  for (int i = 0; i < 3; ++i) put_f64(&storage[0], i * 1.25 - 2);
  for (int64_t i = 0; i < 4; ++i) put_le<int64_t>(&storage[1], (i - 2) * 1000000007);
  for (int i = 0; i < 6; ++i) put_f32(&storage[2], (static_cast<float>(i) - 2.5f) / 4.0f);
  put_f32(&storage[3], 42.5f);
  for (int32_t i = 0; i < 4; ++i) put_le<int32_t>(&storage[5], -3 * i);
  for (const uint16_t bits : {0x3c00, 0xc000, 0x3800, 0x7bff}) put_le<uint16_t>(&storage[6], bits);
  for (const uint16_t bits : {0x3f80, 0xc020, 0x4049}) put_le<uint16_t>(&storage[7], bits);
  for (const uint16_t v : {65535, 1}) put_le<uint16_t>(&storage[8], v);
  for (const int16_t v : {-32768, 0, 32767}) put_le<int16_t>(&storage[9], v);
  storage[10] = {0, 1, 2, 254, 255};
  storage[11] = {0x80, 0x7f};
  storage[12] = {1, 0, 1};
  using strand::DType;
  const std::vector<strand::TensorToWrite> tensors = {
      {"f64", DType::F64, {3}, storage[0]},      {"i64", DType::I64, {2, 2}, storage[1]},
      {"f32", DType::F32, {2, 3}, storage[2]},   {"scalar", DType::F32, {}, storage[3]},
      {"empty", DType::F32, {0, 4}, storage[4]}, {"i32", DType::I32, {4}, storage[5]},
      {"f16", DType::F16, {4}, storage[6]},      {"bf16", DType::BF16, {3}, storage[7]},
      {"u16", DType::U16, {2}, storage[8]},      {"i16", DType::I16, {3}, storage[9]},
      {"u8", DType::U8, {5}, storage[10]},       {"i8", DType::I8, {2}, storage[11]},
      {"bool", DType::BOOL, {3}, storage[12]},
  };
  strand::write_safetensors(path, tensors, {{"producer", "strand"}, {"unicode", "caf\xc3\xa9 \xe2\x9c\x93"}});
  return 0;
}

nlohmann::json dump(const strand::SafetensorsFile& file) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const strand::TensorInfo& info : file.tensors()) {
    nlohmann::json entry = {{"name", info.name},
                            {"dtype", std::string(strand::dtype_name(info.dtype))},
                            {"shape", info.shape},
                            {"data_offsets", {info.begin, info.end}},
                            {"hex", to_hex(file.data(info))}};
    if (info.dtype == strand::DType::F32 || info.dtype == strand::DType::F16 || info.dtype == strand::DType::BF16) {
      std::vector<uint8_t> converted;
      for (const float value : file.to_f32(info)) put_f32(&converted, value);
      entry["f32_hex"] = to_hex(converted);
    }
    tensors.push_back(std::move(entry));
  }
  return {{"metadata", file.metadata()}, {"tensors", std::move(tensors)}};
}

int usage() {
  std::fputs("usage: strand-safetensors-check FILE | --dump FILE | --write-sample OUT\n", stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "--write-sample") return write_sample(args[1]);
    const bool dumping = args.size() == 2 && args[0] == "--dump";
    if (!dumping && (args.size() != 1 || args[0].starts_with("--"))) return usage();
    try {
      const strand::SafetensorsFile file = strand::SafetensorsFile::load(args.back());
      if (dumping) {
        std::cout << dump(file).dump() << "\n";
      } else {
        std::cout << "ok\n";
      }
      return 0;
    } catch (const strand::SafetensorsError& e) {
      std::cout << "error " << strand::rule_name(e.rule()) << ": " << e.what() << "\n";
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "strand-safetensors-check: " << e.what() << "\n";
    return 2;
  }
}
