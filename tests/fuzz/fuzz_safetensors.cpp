// libFuzzer target for the safetensors reader. Any input must either be rejected with a
// SafetensorsError or load into a file whose every accessor works; a loaded file must survive a
// write/read round trip unchanged. ASan/UBSan catch memory and arithmetic errors on the way.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "strand/safetensors.h"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

void exercise(const strand::SafetensorsFile& file) {
  for (const strand::TensorInfo& info : file.tensors()) {
    const auto data = file.data(info);
    check(data.size() == info.end - info.begin);
    check(file.find(info.name) == &info);
    if (info.dtype == strand::DType::F32 || info.dtype == strand::DType::F16 || info.dtype == strand::DType::BF16) {
      check(file.to_f32(info).size() == info.element_count());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  std::vector<uint8_t> input(bytes, bytes + size);
  try {
    const strand::SafetensorsFile file = strand::SafetensorsFile::parse(std::move(input));
    exercise(file);

    // Round trip in data order (the order the writer lays tensors out in, so alignment holds).
    std::vector<const strand::TensorInfo*> by_offset;
    for (const strand::TensorInfo& info : file.tensors()) by_offset.push_back(&info);
    std::stable_sort(by_offset.begin(), by_offset.end(),
                     [](const auto* a, const auto* b) { return a->begin < b->begin; });
    std::vector<strand::TensorToWrite> tensors;
    for (const strand::TensorInfo* info : by_offset) {
      tensors.push_back({info->name, info->dtype, info->shape, file.data(*info)});
    }
    std::vector<uint8_t> written;
    try {
      written = strand::serialize_safetensors(tensors, file.metadata());
    } catch (const strand::Error&) {
      // A valid file must be writable, except one whose header length was not a multiple of 8:
      // its tensors are aligned in the file but the writer (8-aligned data start) would shift
      // them. Then some non-empty tensor's relative offset is not a multiple of its element size.
      bool shifted_alignment = false;
      for (const strand::TensorToWrite& t : tensors) {
        const strand::TensorInfo* info = file.find(t.name);
        shifted_alignment |= info->begin != info->end && info->begin % strand::dtype_size(info->dtype) != 0;
      }
      check(shifted_alignment);
      return 0;
    }
    const strand::SafetensorsFile again = strand::SafetensorsFile::parse(std::move(written));
    check(again.metadata() == file.metadata());
    check(again.tensors().size() == file.tensors().size());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const strand::TensorInfo& info = again.tensors()[i];
      check(info.name == tensors[i].name && info.dtype == tensors[i].dtype && info.shape == tensors[i].shape);
      const auto data = again.data(info);
      check(std::equal(data.begin(), data.end(), tensors[i].bytes.begin(), tensors[i].bytes.end()));
    }
  } catch (const strand::SafetensorsError&) {
    // Rejected with a rule: the expected outcome for most inputs.
  }
  return 0;
}
