// What this build can compute on: the CPU always; CUDA GPUs when built with CUDA and a device
// is present (make_cuda_backend in backend.h runs the engine there).
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace strand {

struct ComputeDevice {
  std::string kind;         // "cpu" or "cuda"
  std::string description;  // human-readable
  bool usable_by_engine = false;
  int index = 0;  // device index for SessionOptions::device_index (cuda)
};

std::vector<ComputeDevice> compute_devices();
bool built_with_cuda();

// Memory of one GPU, for a status display.
struct GpuMemoryUsage {
  size_t used_bytes = 0;  // by every process on the device
  size_t total_bytes = 0;
};
// Used/total memory of CUDA device `index`; nullopt without CUDA, without that device, or on any
// CUDA error. Creates the CUDA context of the calling thread on first use (a few hundred MB of
// device memory), so call it once a GPU session exists.
std::optional<GpuMemoryUsage> gpu_memory_usage(int index);

}  // namespace strand
