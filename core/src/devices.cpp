#include "strand/devices.h"

#include <thread>

#include "kernels/cpu/threading.h"
#include "strand/backend.h"
#include "strand/error.h"
#ifdef STRAND_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/device.h"
#endif

namespace strand {

bool built_with_cuda() {
#ifdef STRAND_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<ComputeDevice> compute_devices() {
  std::vector<ComputeDevice> devices;
  devices.push_back(
      {"cpu", std::to_string(cpu::num_threads()) + " threads (OpenBLAS + OpenMP)", true, 0});
#ifdef STRAND_HAVE_CUDA
  const int count = cuda::device_count();
  for (int i = 0; i < count; ++i) devices.push_back({"cuda", cuda::device_description(i), true, i});
#endif
  return devices;
}

std::optional<GpuMemoryUsage> gpu_memory_usage(int index) {
#ifdef STRAND_HAVE_CUDA
  size_t free_bytes = 0, total_bytes = 0;
  if (index < 0 || index >= cuda::device_count() ||
      !cuda::memory_info(index, &free_bytes, &total_bytes)) {
    return std::nullopt;
  }
  return GpuMemoryUsage{total_bytes - free_bytes, total_bytes};
#else
  (void)index;
  return std::nullopt;
#endif
}

std::unique_ptr<Backend> make_cuda_backend(int device_index, ComputePrecision precision) {
#ifdef STRAND_HAVE_CUDA
  return cuda::make_backend(device_index, precision);
#else
  (void)device_index;
  (void)precision;
  throw Error(ErrorKind::unsupported, "this build of Strand has no CUDA support");
#endif
}

}  // namespace strand
