#include "strand/devices.h"

#include <thread>

#include "kernels/cpu/threading.h"
#ifdef STRAND_HAVE_CUDA
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
  devices.push_back({"cpu", std::to_string(cpu::num_threads()) + " threads (OpenBLAS + OpenMP)", true});
#ifdef STRAND_HAVE_CUDA
  const int count = cuda::device_count();
  for (int i = 0; i < count; ++i) devices.push_back({"cuda", cuda::device_description(i), false});
#endif
  return devices;
}

}  // namespace strand
