// CUDA device discovery: lets the engine, CLI and app report whether a usable GPU is present
// and how much of its memory is in use. The backend itself is cuda_backend.h.
#pragma once
#include <cstddef>
#include <string>

namespace strand::cuda {

// Number of usable CUDA devices; 0 when there is no driver, no device, or any CUDA error.
int device_count();
// "NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90" for device `index`, or an empty string.
std::string device_description(int index);
// Free and total memory of device `index` in bytes (cudaMemGetInfo; creates the CUDA context on
// first use). False on any error.
bool memory_info(int index, size_t* free_bytes, size_t* total_bytes);

}  // namespace strand::cuda
