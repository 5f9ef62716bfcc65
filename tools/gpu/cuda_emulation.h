// What the kernel emulators share (tools/gpu/attention_emulator.cpp, delta_rule_emulator.cpp):
// CUDA's device qualifiers as plain C++, one std::thread per CUDA thread, std::barrier for
// __syncthreads and, per warp, for the warp-wide operations (each emulator writes its own from the
// PTX ISA's tables on top of WarpCtx), and a launcher that runs a grid one CTA at a time.
// Include it after the CUDA headers: they define the qualifiers for their host build.
#pragma once

#include <barrier>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#undef __global__
#undef __device__
#undef __forceinline__
#undef __launch_bounds__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local Dim3 threadIdx, blockIdx;
inline Dim3 blockDim;

// What the lanes of one warp exchange in a warp-wide operation: each lane writes its row, all
// wait, each reads what it needs, all wait again before the next exchange.
struct WarpCtx {
  std::barrier<> bar{32};
  uint32_t u[32][8];
  float f[32][8];
};
struct CtaCtx {
  std::unique_ptr<std::barrier<>> bar;
  std::vector<unsigned char> smem;
  std::vector<std::unique_ptr<WarpCtx>> warps;
};
inline thread_local CtaCtx* cta;
inline thread_local int emu_lane;

inline unsigned char* emu_shared() {
  return cta->smem.data();
}
inline void __syncthreads() {
  cta->bar->arrive_and_wait();
}
inline WarpCtx& my_warp() {
  return *cta->warps[threadIdx.x / 32];
}
inline void __syncwarp() {
  my_warp().bar.arrive_and_wait();
}
inline float __shfl_xor_sync(unsigned, float x, int lane_mask) {
  WarpCtx& w = my_warp();
  w.f[emu_lane][0] = x;
  w.bar.arrive_and_wait();
  const float y = w.f[emu_lane ^ lane_mask][0];
  w.bar.arrive_and_wait();
  return y;
}

// Runs body() on every thread of a grid_x x grid_y grid of CTAs of `threads` threads (a multiple
// of 32), one CTA at a time, with smem_bytes of shared memory that start as copies of `fill`
// (garbage or NaNs: a read of anything never written shows in the result).
inline void emu_launch(int grid_x, int grid_y, int threads, size_t smem_bytes, unsigned char fill,
                       const std::function<void()>& body) {
  blockDim = {static_cast<unsigned>(threads), 1, 1};
  for (int by = 0; by < grid_y; ++by)
    for (int bx = 0; bx < grid_x; ++bx) {
      CtaCtx ctx;
      ctx.bar = std::make_unique<std::barrier<>>(threads);
      ctx.smem.assign(smem_bytes, fill);
      for (int w = 0; w < threads / 32; ++w) ctx.warps.push_back(std::make_unique<WarpCtx>());
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          cta = &ctx;
          threadIdx = {static_cast<unsigned>(t), 0, 0};
          blockIdx = {static_cast<unsigned>(bx), static_cast<unsigned>(by), 0};
          emu_lane = t % 32;
          body();
        });
      for (std::thread& th : pool) th.join();
    }
}
