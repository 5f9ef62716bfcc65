#include <cuda_runtime.h>

#include <cstdio>

#include "kernels/cuda/device.h"

namespace strand::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the error: no driver or no device is a normal answer here
    return 0;
  }
  return count;
}

std::string device_description(int index) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  char text[320];
  std::snprintf(text, sizeof text, "%s, %.1f GiB, sm_%d%d", prop.name,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), prop.major,
                prop.minor);
  return text;
}

bool memory_info(int index, size_t* free_bytes, size_t* total_bytes) {
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(index) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  const bool ok = cudaMemGetInfo(free_bytes, total_bytes) == cudaSuccess;
  if (!ok) cudaGetLastError();
  cudaSetDevice(previous);
  return ok;
}

}  // namespace strand::cuda
