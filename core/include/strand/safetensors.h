// safetensors reader and writer, strict: it enforces every rule of the format and the extra rules
// of ../shared/docs/reliability.md, and reports the rule broken (SafetensorsError::rule()).
//
// File layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data buffer.
// JSON: { "__metadata__": {str: str}?, NAME: {"dtype": D, "shape": [...], "data_offsets": [b, e]} }
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "strand/error.h"

namespace strand {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };

// Bytes per element; "F32" <-> DType::F32 names.
size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);
bool dtype_from_name(std::string_view name, DType* out);

// Which rule a file broke. Values are stable (tests and the CLI print the name).
enum class SafetensorsRule {
  io,                    // cannot open/read the file
  too_small,             // shorter than the 8-byte header length
  header_too_large,      // N > 100,000,000 or N + 8 > file size (overflow-checked)
  header_not_utf8,       // header bytes are not valid UTF-8
  header_not_json,       // not parseable JSON, or not a JSON object
  bad_metadata,          // __metadata__ not an object of string -> string
  bad_entry,             // an entry is not {"dtype","shape","data_offsets"} with right types
  unknown_dtype,         // dtype string not known
  bad_shape,             // negative dim, or element count / byte size overflows
  duplicate_key,         // the same tensor name twice (also zero-size duplicates)
  bad_name,              // empty name, or one usable as a path ('/', '\\', "..", NUL, control chars)
  size_mismatch,         // end - begin != element count * dtype size, or begin > end
  overlap_or_gap,        // tensors sorted by offset are not contiguous from 0
  misaligned,            // tensor offset not a multiple of its element size (engine needs alignment)
  trailing_bytes,        // data does not end exactly at the end of the file
  truncated,             // data extends past the end of the file
};
std::string_view rule_name(SafetensorsRule rule);

class SafetensorsError : public Error {
 public:
  SafetensorsError(SafetensorsRule rule, const std::string& message);
  [[nodiscard]] SafetensorsRule rule() const noexcept { return rule_; }

 private:
  SafetensorsRule rule_;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data buffer
  uint64_t end = 0;
  [[nodiscard]] uint64_t element_count() const;
};

// A validated, fully loaded safetensors file. Immutable after load.
class SafetensorsFile {
 public:
  // Throws SafetensorsError naming the first rule broken.
  static SafetensorsFile load(const std::string& path);
  static SafetensorsFile parse(std::vector<uint8_t> bytes);

  [[nodiscard]] const std::map<std::string, std::string>& metadata() const { return metadata_; }
  [[nodiscard]] const std::vector<TensorInfo>& tensors() const { return tensors_; }  // file order
  [[nodiscard]] const TensorInfo* find(std::string_view name) const;
  // Raw bytes of a tensor (little-endian, as stored).
  [[nodiscard]] std::span<const uint8_t> data(const TensorInfo& info) const;
  // The tensor converted to float32 (F32, F16, BF16 accepted; others throw Error invalid_file).
  [[nodiscard]] std::vector<float> to_f32(const TensorInfo& info) const;
  // The whole data buffer (after the header): used to hash the weights.
  [[nodiscard]] std::span<const uint8_t> data_buffer() const;

 private:
  std::vector<uint8_t> bytes_;
  size_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
};

// Writer: tensors are laid out in the order given, each aligned to 8 bytes by padding the header
// with spaces. Writes atomically (temp file + fsync + rename + directory fsync).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata);
std::vector<uint8_t> serialize_safetensors(const std::vector<TensorToWrite>& tensors,
                                           const std::map<std::string, std::string>& metadata);

}  // namespace strand
