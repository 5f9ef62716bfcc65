// What this build can compute on: the CPU always; CUDA GPUs when built with CUDA and a device
// is present. (The CUDA backend itself is a later issue: GPUs are listed, not yet used.)
#pragma once
#include <string>
#include <vector>

namespace strand {

struct ComputeDevice {
  std::string kind;         // "cpu" or "cuda"
  std::string description;  // human-readable
  bool usable_by_engine = false;
};

std::vector<ComputeDevice> compute_devices();
bool built_with_cuda();

}  // namespace strand
