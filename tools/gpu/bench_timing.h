// Shared by the GPU microbenchmarks (tests/cuda/bench_attention.cpp, tools/gpu/bench_delta_rule.cpp):
// a fail-fast CUDA check and CUDA-event timing of a launch sequence on one stream.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <functional>

// Benchmarks stop at the first CUDA error: a number measured after one would mean nothing.
#define CHECK_CUDA(call)                                                                         \
  do {                                                                                           \
    const cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

namespace strand::bench {

// Mean milliseconds per call of `body` over `repeats` calls, after 3 untimed warm-up calls.
inline double time_ms(cudaStream_t stream, int repeats, const std::function<void()>& body) {
  for (int i = 0; i < 3; ++i) body();
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  CHECK_CUDA(cudaEventRecord(start, stream));
  for (int i = 0; i < repeats; ++i) body();
  CHECK_CUDA(cudaEventRecord(stop, stream));
  CHECK_CUDA(cudaEventSynchronize(stop));
  float ms = 0.0f;
  CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  return static_cast<double>(ms) / repeats;
}

}  // namespace strand::bench
