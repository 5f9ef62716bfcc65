// Strict safetensors reader and writer (see strand/safetensors.h and shared/docs/reliability.md).
//
// Model loaders are an attack surface: every size computed from the file goes through
// overflow-checked arithmetic before it is used to index or allocate, and every rule has its own
// SafetensorsRule so a crafted file is rejected with the reason, not a crash.
#include "strand/safetensors.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "strand/file_io.h"

namespace strand {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeEntry {
  DType dtype;
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeEntry, 15> kDTypes = {{
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8},         {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},           {DType::U64, "U64", 8},
    {DType::U32, "U32", 4},   {DType::U16, "U16", 2},         {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1}, {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
}};

const DTypeEntry& dtype_entry(DType dtype) {
  for (const DTypeEntry& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  throw Error(ErrorKind::invalid_argument, "unknown DType value");
}

ErrorKind kind_for_rule(SafetensorsRule rule) {
  return rule == SafetensorsRule::io ? ErrorKind::io : ErrorKind::invalid_file;
}

// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
bool is_valid_utf8(std::span<const uint8_t> text) {
  size_t i = 0;
  while (i < text.size()) {
    const uint8_t lead = text[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    uint8_t min_second = 0x80;
    uint8_t max_second = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) min_second = 0xA0;  // overlong
      if (lead == 0xED) max_second = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) min_second = 0x90;  // overlong
      if (lead == 0xF4) max_second = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    if (text[i + 1] < min_second || text[i + 1] > max_second) return false;
    for (size_t k = 2; k < length; ++k) {
      if (text[i + k] < 0x80 || text[i + k] > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

// Names end up in logs, maps and possibly file names (exports, caches): reject anything that could
// act as a path or hide in a terminal. Returns why the name is bad, or an empty string.
std::string name_problem(std::string_view name) {
  if (name.empty()) return "empty tensor name";
  if (name.find('/') != std::string_view::npos || name.find('\\') != std::string_view::npos) {
    return "contains a path separator";
  }
  if (name.find("..") != std::string_view::npos) return "contains '..'";
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7F) return "contains a control character";
    // C1 controls U+0080..U+009F are encoded as C2 80..C2 9F.
    if (c == 0xC2 && i + 1 < name.size()) {
      const auto next = static_cast<unsigned char>(name[i + 1]);
      if (next >= 0x80 && next <= 0x9F) return "contains a control character";
    }
  }
  return {};
}

// Names are quoted in messages; keep control characters (C0, DEL, C1 such as U+0085 NEXT LINE)
// out of the one-line message.
std::string printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::string_view shown = text.substr(0, 200);
  std::string out;
  for (size_t i = 0; i < shown.size(); ++i) {
    const auto c = static_cast<unsigned char>(shown[i]);
    const bool c1 = c == 0xC2 && i + 1 < shown.size() && static_cast<unsigned char>(shown[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>(shown[i + 1]) <= 0x9F;
    if (c < 0x20 || c == 0x7F || c1) {
      const unsigned code = c1 ? static_cast<unsigned char>(shown[++i]) : c;
      out += c1 ? "\\u00" : "\\x";
      out += kHex[code >> 4];
      out += kHex[code & 15];
    } else {
      out += shown[i];
    }
  }
  if (text.size() > 200) out += "...";
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Element count and byte size of a shape, or nullopt when either overflows uint64.
std::optional<std::pair<uint64_t, uint64_t>> checked_sizes(const std::vector<int64_t>& shape,
                                                           size_t element_size) {
  uint64_t count = 1;
  for (const int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) return std::nullopt;
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(element_size), &bytes)) return std::nullopt;
  return std::make_pair(count, bytes);
}

// nlohmann/json keeps the last of duplicate keys silently. This parser callback records the first
// duplicate at any depth so the file can be rejected instead.
class DuplicateKeyDetector {
 public:
  bool on_event(int /*depth*/, nlohmann::json::parse_event_t event, ordered_json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    switch (event) {
      case Event::object_start:
        open_.emplace_back(std::set<std::string>{});
        break;
      case Event::array_start:
        open_.emplace_back(std::nullopt);
        break;
      case Event::object_end:
      case Event::array_end:
        if (!open_.empty()) open_.pop_back();
        break;
      case Event::key:
        if (!open_.empty() && open_.back().has_value() && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!open_.back()->insert(key).second && !duplicate_) {
            duplicate_ = key;
            duplicate_at_top_level_ = open_.size() == 1;
          }
        }
        break;
      case Event::value:
        break;
    }
    return true;  // keep everything: the DOM is checked after parsing
  }
  [[nodiscard]] const std::optional<std::string>& duplicate() const { return duplicate_; }
  [[nodiscard]] bool duplicate_at_top_level() const { return duplicate_at_top_level_; }

 private:
  std::vector<std::optional<std::set<std::string>>> open_;  // one per open object/array
  std::optional<std::string> duplicate_;
  bool duplicate_at_top_level_ = false;
};

class Parser {
 public:
  explicit Parser(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(SafetensorsRule rule, const std::string& detail) const {
    throw SafetensorsError(rule, source_ + ": " + detail);
  }
  [[noreturn]] void fail_tensor(SafetensorsRule rule, const std::string& name,
                                const std::string& detail) const {
    fail(rule, "tensor '" + printable(name) + "': " + detail);
  }

  // Parses and validates; fills the out-parameters only when the whole file is valid.
  void run(std::span<const uint8_t> bytes, size_t* data_start,
           std::map<std::string, std::string>* metadata, std::vector<TensorInfo>* tensors) {
    if (bytes.size() < 8) {
      fail(SafetensorsRule::too_small, "file is " + std::to_string(bytes.size()) +
                                           " bytes, shorter than the 8-byte header length");
    }
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | bytes[static_cast<size_t>(i)];
    if (header_length > kMaxHeaderBytes) {
      fail(SafetensorsRule::header_too_large,
           "header length " + std::to_string(header_length) + " exceeds the limit of " +
               std::to_string(kMaxHeaderBytes) + " bytes");
    }
    uint64_t header_end = 0;
    if (__builtin_add_overflow(header_length, uint64_t{8}, &header_end) || header_end > bytes.size()) {
      fail(SafetensorsRule::header_too_large,
           "header length " + std::to_string(header_length) + " but the file has only " +
               std::to_string(bytes.size() - 8) + " bytes after the length field");
    }
    const auto header = bytes.subspan(8, static_cast<size_t>(header_length));
    if (!is_valid_utf8(header)) fail(SafetensorsRule::header_not_utf8, "header is not valid UTF-8");

    // JSON never contains a raw NUL (not even inside strings), but nlohmann's lexer treats one as
    // the end of input, which would accept "{}\0<anything>". The reference rejects it too.
    if (std::find(header.begin(), header.end(), uint8_t{0}) != header.end()) {
      fail(SafetensorsRule::header_not_json, "header contains a NUL byte");
    }
    DuplicateKeyDetector detector;
    ordered_json root;
    try {
      root = ordered_json::parse(
          header.begin(), header.end(),
          [&detector](int depth, nlohmann::json::parse_event_t event, ordered_json& parsed) {
            return detector.on_event(depth, event, parsed);
          });
    } catch (const nlohmann::json::exception& e) {
      fail(SafetensorsRule::header_not_json, std::string("header is not valid JSON: ") + e.what());
    }
    if (!root.is_object()) fail(SafetensorsRule::header_not_json, "header JSON is not an object");
    if (detector.duplicate()) {
      const std::string& key = *detector.duplicate();
      fail(SafetensorsRule::duplicate_key,
           detector.duplicate_at_top_level() && key != kMetadataKey
               ? "tensor '" + printable(key) + "' appears more than once in the header"
               : "key '" + printable(key) + "' appears more than once in a header object");
    }

    std::map<std::string, std::string> parsed_metadata;
    std::vector<TensorInfo> parsed_tensors;
    for (const auto& [name, entry] : root.items()) {
      if (name == kMetadataKey) {
        parsed_metadata = parse_metadata(entry);
      } else {
        parsed_tensors.push_back(parse_entry(name, entry));
      }
    }

    check_layout(parsed_tensors, bytes.size() - static_cast<size_t>(header_end),
                 static_cast<size_t>(header_end));

    *data_start = static_cast<size_t>(header_end);
    *metadata = std::move(parsed_metadata);
    *tensors = std::move(parsed_tensors);
  }

 private:
  std::map<std::string, std::string> parse_metadata(const ordered_json& entry) const {
    if (!entry.is_object()) fail(SafetensorsRule::bad_metadata, "__metadata__ is not a JSON object");
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : entry.items()) {
      if (!value.is_string()) {
        fail(SafetensorsRule::bad_metadata,
             "__metadata__ value for '" + printable(key) + "' is not a string");
      }
      out.emplace(key, value.get<std::string>());
    }
    return out;
  }

  TensorInfo parse_entry(const std::string& name, const ordered_json& entry) const {
    TensorInfo info;
    info.name = name;
    if (const std::string problem = name_problem(name); !problem.empty()) {
      fail_tensor(SafetensorsRule::bad_name, name, "bad name: " + problem);
    }
    if (!entry.is_object()) fail_tensor(SafetensorsRule::bad_entry, name, "entry is not a JSON object");
    for (const auto& [key, value] : entry.items()) {
      if (key != "dtype" && key != "shape" && key != "data_offsets") {
        fail_tensor(SafetensorsRule::bad_entry, name, "unexpected field '" + printable(key) + "'");
      }
    }
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(key)) {
        fail_tensor(SafetensorsRule::bad_entry, name, std::string("missing field '") + key + "'");
      }
    }
    const ordered_json& dtype = entry.at("dtype");
    const ordered_json& shape = entry.at("shape");
    const ordered_json& offsets = entry.at("data_offsets");
    if (!dtype.is_string()) fail_tensor(SafetensorsRule::bad_entry, name, "dtype is not a string");
    if (!shape.is_array()) fail_tensor(SafetensorsRule::bad_entry, name, "shape is not an array");
    for (const ordered_json& dim : shape) {
      if (!dim.is_number_integer()) {
        fail_tensor(SafetensorsRule::bad_entry, name, "shape " + shape.dump() + " has a non-integer dimension");
      }
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      fail_tensor(SafetensorsRule::bad_entry, name,
                  "data_offsets " + offsets.dump() + " is not two non-negative integers");
    }

    const auto& dtype_string = dtype.get_ref<const std::string&>();
    if (!dtype_from_name(dtype_string, &info.dtype)) {
      fail_tensor(SafetensorsRule::unknown_dtype, name, "unknown dtype '" + printable(dtype_string) + "'");
    }

    for (const ordered_json& dim : shape) {
      // Non-negative integers are stored as unsigned by nlohmann; anything above INT64_MAX or
      // below zero cannot be a dimension.
      if (dim.is_number_unsigned()) {
        const auto value = dim.get<uint64_t>();
        if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          fail_tensor(SafetensorsRule::bad_shape, name, "shape " + shape.dump() + " has a dimension too large");
        }
        info.shape.push_back(static_cast<int64_t>(value));
      } else {
        fail_tensor(SafetensorsRule::bad_shape, name, "shape " + shape.dump() + " has a negative dimension");
      }
    }
    const size_t element_size = dtype_size(info.dtype);
    const auto sizes = checked_sizes(info.shape, element_size);
    if (!sizes) {
      fail_tensor(SafetensorsRule::bad_shape, name,
                  "shape " + shape_string(info.shape) + " " + std::string(dtype_name(info.dtype)) +
                      ": element count or byte size overflows");
    }

    info.begin = offsets[0].get<uint64_t>();
    info.end = offsets[1].get<uint64_t>();
    const std::string offsets_text =
        "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "]";
    if (info.begin > info.end) {
      fail_tensor(SafetensorsRule::size_mismatch, name, offsets_text + ": begin is after end");
    }
    if (info.end - info.begin != sizes->second) {
      fail_tensor(SafetensorsRule::size_mismatch, name,
                  offsets_text + " but shape " + shape_string(info.shape) + " " +
                      std::string(dtype_name(info.dtype)) + " needs " + std::to_string(sizes->second) +
                      " bytes");
    }
    return info;
  }

  void check_layout(const std::vector<TensorInfo>& tensors, size_t buffer_size, size_t data_start) const {
    std::vector<const TensorInfo*> by_offset;
    by_offset.reserve(tensors.size());
    for (const TensorInfo& info : tensors) by_offset.push_back(&info);
    std::stable_sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t expected = 0;
    for (const TensorInfo* info : by_offset) {
      if (info->begin != expected) {
        fail_tensor(SafetensorsRule::overlap_or_gap, info->name,
                    "data_offsets [" + std::to_string(info->begin) + ", " + std::to_string(info->end) +
                        "] " + (info->begin < expected ? "overlaps the previous tensor" : "leaves a gap") +
                        " (expected begin " + std::to_string(expected) + ")");
      }
      expected = info->end;
    }
    // The engine reads tensors in place, so the absolute file offset (which is the offset in the
    // loaded buffer, malloc-aligned) must be a multiple of the element size. The reference
    // implementation does not check this.
    // Zero-size tensors are never read, so their offset does not matter.
    for (const TensorInfo& info : tensors) {
      if (info.begin == info.end) continue;
      const uint64_t element_size = dtype_size(info.dtype);
      uint64_t absolute = 0;
      if (__builtin_add_overflow(static_cast<uint64_t>(data_start), info.begin, &absolute) ||
          absolute % element_size != 0) {
        fail_tensor(SafetensorsRule::misaligned, info.name,
                    "data begins at file offset " + std::to_string(data_start) + " + " +
                        std::to_string(info.begin) + ", not a multiple of its element size " +
                        std::to_string(element_size));
      }
    }
    if (expected > buffer_size) {
      fail(SafetensorsRule::truncated, "tensor data needs " + std::to_string(expected) +
                                           " bytes but the file has only " + std::to_string(buffer_size) +
                                           " after the header");
    }
    if (expected < buffer_size) {
      fail(SafetensorsRule::trailing_bytes, "tensor data ends at " + std::to_string(expected) +
                                                " but the file has " + std::to_string(buffer_size) +
                                                " bytes after the header");
    }
  }

  std::string source_;
};

float half_to_float(uint16_t half) {
  const uint32_t sign = (uint32_t{half} & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1Fu;
  uint32_t mantissa = half & 0x3FFu;
  uint32_t bits = 0;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);  // inf / NaN (payload kept)
  } else if (exponent != 0) {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: normalise the mantissa; every half subnormal is a normal float.
    int32_t e = 127 - 15 + 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (static_cast<uint32_t>(e) << 23) | ((mantissa & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t load_u16_le(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t load_u32_le(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

}  // namespace

size_t dtype_size(DType dtype) { return dtype_entry(dtype).size; }

std::string_view dtype_name(DType dtype) { return dtype_entry(dtype).name; }

bool dtype_from_name(std::string_view name, DType* out) {
  for (const DTypeEntry& entry : kDTypes) {
    if (entry.name == name) {
      *out = entry.dtype;
      return true;
    }
  }
  return false;
}

std::string_view rule_name(SafetensorsRule rule) {
  switch (rule) {
    case SafetensorsRule::io: return "io";
    case SafetensorsRule::too_small: return "too_small";
    case SafetensorsRule::header_too_large: return "header_too_large";
    case SafetensorsRule::header_not_utf8: return "header_not_utf8";
    case SafetensorsRule::header_not_json: return "header_not_json";
    case SafetensorsRule::bad_metadata: return "bad_metadata";
    case SafetensorsRule::bad_entry: return "bad_entry";
    case SafetensorsRule::unknown_dtype: return "unknown_dtype";
    case SafetensorsRule::bad_shape: return "bad_shape";
    case SafetensorsRule::duplicate_key: return "duplicate_key";
    case SafetensorsRule::bad_name: return "bad_name";
    case SafetensorsRule::size_mismatch: return "size_mismatch";
    case SafetensorsRule::overlap_or_gap: return "overlap_or_gap";
    case SafetensorsRule::misaligned: return "misaligned";
    case SafetensorsRule::trailing_bytes: return "trailing_bytes";
    case SafetensorsRule::truncated: return "truncated";
  }
  return "unknown";
}

SafetensorsError::SafetensorsError(SafetensorsRule rule, const std::string& message)
    : Error(kind_for_rule(rule), message), rule_(rule) {}

uint64_t TensorInfo::element_count() const {
  uint64_t count = 1;
  for (const int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(count, static_cast<uint64_t>(dim), &count)) {
      throw Error(ErrorKind::invalid_argument,
                  "tensor '" + printable(name) + "': shape " + shape_string(shape) + " is invalid");
    }
  }
  return count;
}

SafetensorsFile SafetensorsFile::load(const std::string& path) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file(path);
  } catch (const Error& e) {
    throw SafetensorsError(SafetensorsRule::io, e.what());
  }
  SafetensorsFile file;
  Parser(path).run(bytes, &file.data_start_, &file.metadata_, &file.tensors_);
  file.bytes_ = std::move(bytes);
  return file;
}

SafetensorsFile SafetensorsFile::parse(std::vector<uint8_t> bytes) {
  SafetensorsFile file;
  Parser("<memory>").run(bytes, &file.data_start_, &file.metadata_, &file.tensors_);
  file.bytes_ = std::move(bytes);
  return file;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  for (const TensorInfo& info : tensors_) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

std::span<const uint8_t> SafetensorsFile::data(const TensorInfo& info) const {
  const std::span<const uint8_t> buffer = data_buffer();
  if (info.begin > info.end || info.end > buffer.size()) {
    throw Error(ErrorKind::invalid_argument,
                "tensor '" + printable(info.name) + "': offsets are outside this file's data");
  }
  return buffer.subspan(static_cast<size_t>(info.begin), static_cast<size_t>(info.end - info.begin));
}

std::vector<float> SafetensorsFile::to_f32(const TensorInfo& info) const {
  const std::span<const uint8_t> raw = data(info);
  const size_t element_size = dtype_size(info.dtype);
  const uint64_t count = info.element_count();
  uint64_t needed = 0;
  if (__builtin_mul_overflow(count, uint64_t{element_size}, &needed) || needed != raw.size()) {
    throw Error(ErrorKind::invalid_argument,
                "tensor '" + printable(info.name) + "': shape does not match its data_offsets");
  }
  std::vector<float> out(static_cast<size_t>(count));
  const uint8_t* p = raw.data();
  switch (info.dtype) {
    case DType::F32:
      for (size_t i = 0; i < out.size(); ++i) out[i] = std::bit_cast<float>(load_u32_le(p + 4 * i));
      break;
    case DType::F16:
      for (size_t i = 0; i < out.size(); ++i) out[i] = half_to_float(load_u16_le(p + 2 * i));
      break;
    case DType::BF16:
      // bfloat16 is the upper half of a float32: widening is exact.
      for (size_t i = 0; i < out.size(); ++i) {
        out[i] = std::bit_cast<float>(static_cast<uint32_t>(load_u16_le(p + 2 * i)) << 16);
      }
      break;
    default:
      throw Error(ErrorKind::invalid_file, "tensor '" + printable(info.name) + "': dtype " +
                                               std::string(dtype_name(info.dtype)) +
                                               " cannot be converted to float32 (F32, F16, BF16 only)");
  }
  return out;
}

std::span<const uint8_t> SafetensorsFile::data_buffer() const {
  return std::span<const uint8_t>(bytes_).subspan(data_start_);
}

std::vector<uint8_t> serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                           const std::map<std::string, std::string>& metadata) {
  const auto invalid = [](const std::string& name, const std::string& detail) {
    return Error(ErrorKind::invalid_argument,
                 "write_safetensors: tensor '" + printable(name) + "': " + detail);
  };
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json meta = ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header[kMetadataKey] = std::move(meta);
  }
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    if (const std::string problem = name_problem(tensor.name); !problem.empty()) {
      throw invalid(tensor.name, "bad name: " + problem);
    }
    if (tensor.name == kMetadataKey) throw invalid(tensor.name, "name is reserved");
    if (!seen.insert(tensor.name).second) throw invalid(tensor.name, "name used twice");
    const size_t element_size = dtype_size(tensor.dtype);
    const auto sizes = checked_sizes(tensor.shape, element_size);
    if (!sizes) throw invalid(tensor.name, "shape " + shape_string(tensor.shape) + " is invalid");
    if (sizes->second != tensor.bytes.size()) {
      throw invalid(tensor.name, "shape " + shape_string(tensor.shape) + " " +
                                     std::string(dtype_name(tensor.dtype)) + " needs " +
                                     std::to_string(sizes->second) + " bytes, got " +
                                     std::to_string(tensor.bytes.size()));
    }
    // Tensors are contiguous (no gaps allowed), so alignment depends on the order the caller
    // chose: put wider dtypes first.
    if (sizes->second != 0 && offset % element_size != 0) {
      throw invalid(tensor.name, "would start at offset " + std::to_string(offset) +
                                     ", not a multiple of its element size; order tensors by "
                                     "decreasing element size");
    }
    header[tensor.name] = {{"dtype", std::string(dtype_name(tensor.dtype))},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + sizes->second}}};
    offset += sizes->second;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::invalid_argument,
                std::string("write_safetensors: names and metadata must be valid UTF-8: ") + e.what());
  }
  // Pad with spaces (valid JSON whitespace) so the data buffer starts 8-aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(8 + header_text.size() + static_cast<size_t>(offset));
  const uint64_t header_length = header_text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(header_length >> (8 * i)));
  out.insert(out.end(), header_text.begin(), header_text.end());
  for (const TensorToWrite& tensor : tensors) out.insert(out.end(), tensor.bytes.begin(), tensor.bytes.end());
  return out;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace strand
