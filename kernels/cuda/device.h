// CUDA device discovery. The CUDA backend (the ops of strand::Backend on the GPU) is a later
// issue; this is the piece that proves the optional CUDA toolchain from day one and lets the
// engine and CLI report whether a usable GPU is present.
#pragma once
#include <string>

namespace strand::cuda {

// Number of usable CUDA devices; 0 when there is no driver, no device, or any CUDA error.
int device_count();
// "NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90" for device `index`, or an empty string.
std::string device_description(int index);

}  // namespace strand::cuda
