// The tensors a model file must hold for a config (names and shapes of docs/model-spec.md).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "strand/model.h"

namespace strand {

struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config, int64_t vocab_size);

}  // namespace strand
