// The CUDA backend: strand::Backend on one GPU (the contract is make_cuda_backend's, in
// core/include/strand/backend.h). core calls this through make_cuda_backend, which exists in every
// build; this header exists only in CUDA builds.
#pragma once
#include <memory>

#include "strand/backend.h"

namespace strand::cuda {

std::unique_ptr<Backend> make_backend(int device_index, ComputePrecision precision);

}  // namespace strand::cuda
