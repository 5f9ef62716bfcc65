// strand-bench-delta-rule (tools/gpu/bench_delta_rule.cpp): times the CUDA gated delta rule at
// the 1.3B reference shape (12 heads x 128, 4680-token block, q/k/v rows of width 1536 as the
// engine lays them out) against its roofline floor and the issue-6 target (state update <= 0.05 ms
// on one H100), plus the block memory read and the simple sequential kernel. Also checks the result
// against the CPU rule. The "chunked" lines run the automatic schedule (the engine's); the
// "single pass", "overlapped single pass", "folded single pass", "grouped ..., N groups" and "FMA
// single pass" lines pin the schedule (kernels/cuda/delta_rule.h).
// Usage: strand-bench-delta-rule [repeats (default 50)]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "kernels/cpu/delta_rule.h"
#include "kernels/cuda/delta_rule.h"
#include "kernels/cuda/device.h"
#include "tools/gpu/bench_timing.h"

namespace {

using strand::cuda::DeltaPrecision;
using strand::cuda::DeltaSchedule;

constexpr int kTokens = 4680, kHeads = 12, kDim = 128, kWidth = kHeads * kDim;

// Mean microseconds per call (strand::bench::time_ms, in us).
double time_us(cudaStream_t stream, int repeats, const std::function<void()>& body) {
  return 1000.0 * strand::bench::time_ms(stream, repeats, body);
}

// As time_us, with a stream synchronisation after every call: what one call costs in the engine,
// which waits for each update (and lets the stream-ordered pool trim its memory in between).
double time_synced_us(cudaStream_t stream, int repeats, const std::function<void()>& body) {
  for (int i = 0; i < 3; ++i) body();
  CHECK_CUDA(cudaStreamSynchronize(stream));
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) {
    body();
    CHECK_CUDA(cudaStreamSynchronize(stream));
  }
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::micro>(t1 - t0).count() / repeats;
}

double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    diff += (x - y) * (x - y);
    ref += y * y;
  }
  return std::sqrt(diff / std::max(ref, 1e-30));
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 50;
  if (strand::cuda::device_count() == 0) {
    std::fprintf(stderr, "no CUDA device\n");
    return 1;
  }
  std::printf("device: %s\n", strand::cuda::device_description(0).c_str());
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  // Inputs as the engine makes them: rows of width 1536, L2-normalised key heads.
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> a_dist(0.9f, 1.0f), b_dist(0.0f, 2.0f), s_dist(-0.5f, 0.5f);
  const size_t rows = static_cast<size_t>(kTokens) * kWidth;
  std::vector<float> k(rows), v(rows), q(rows), alpha(static_cast<size_t>(kTokens) * kHeads),
      beta(alpha.size()), s0(static_cast<size_t>(kHeads) * kDim * kDim);
  for (auto* vec : {&k, &v, &q})
    for (auto& x : *vec) x = normal(rng);
  for (auto* vec : {&k, &q}) {
    for (size_t r = 0; r < rows; r += kDim) {
      double ss = 0;
      for (int i = 0; i < kDim; ++i) ss += std::pow(static_cast<double>((*vec)[r + i]), 2);
      const double inv = 1.0 / std::sqrt(ss + 1e-6);
      for (int i = 0; i < kDim; ++i)
        (*vec)[r + i] = static_cast<float>(static_cast<double>((*vec)[r + i]) * inv);
    }
  }
  for (auto& x : alpha) x = a_dist(rng);
  for (auto& x : beta) x = b_dist(rng);
  for (auto& x : s0) x = s_dist(rng);

  float *dk_, *dv_, *dq, *dout, *da, *db, *ds;
  CHECK_CUDA(cudaMalloc(&dk_, rows * 4));
  CHECK_CUDA(cudaMalloc(&dv_, rows * 4));
  CHECK_CUDA(cudaMalloc(&dq, rows * 4));
  CHECK_CUDA(cudaMalloc(&dout, rows * 4));
  CHECK_CUDA(cudaMalloc(&da, alpha.size() * 4));
  CHECK_CUDA(cudaMalloc(&db, beta.size() * 4));
  CHECK_CUDA(cudaMalloc(&ds, s0.size() * 4));
  CHECK_CUDA(cudaMemcpy(dk_, k.data(), rows * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dv_, v.data(), rows * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dq, q.data(), rows * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(da, alpha.data(), alpha.size() * 4, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(db, beta.data(), beta.size() * 4, cudaMemcpyHostToDevice));
  // Room for every schedule timed below (the sweep goes up to kSweepMaxGroups groups).
  constexpr int kSweepMaxGroups = 8;
  const size_t ws_bytes = std::max(
      {strand::cuda::gated_delta_workspace_bytes(kTokens, kHeads),
       strand::cuda::gated_delta_workspace_bytes(kTokens, kHeads, kDim, kDim, kSweepMaxGroups),
       strand::cuda::gated_delta_workspace_bytes(DeltaSchedule::folded_single_pass, kTokens, kHeads,
                                                 kDim, kDim),
       strand::cuda::gated_delta_workspace_bytes(DeltaSchedule::overlapped_single_pass, kTokens,
                                                 kHeads, kDim, kDim),
       strand::cuda::gated_delta_workspace_bytes(DeltaSchedule::overlapped_folded_single_pass,
                                                 kTokens, kHeads, kDim, kDim)});
  void* ws = nullptr;
  CHECK_CUDA(cudaMalloc(&ws, ws_bytes));
  const auto reset_state = [&] {
    CHECK_CUDA(cudaMemcpy(ds, s0.data(), s0.size() * 4, cudaMemcpyHostToDevice));
  };

  // ---- measured machine rates: copy bandwidth, cuBLAS SGEMM (FP32 and TF32).
  double bandwidth_gbs = 0, sgemm_tflops = 0, tf32_tflops = 0;
  {
    const size_t bytes = size_t{1} << 30;
    void *a, *b;
    CHECK_CUDA(cudaMalloc(&a, bytes));
    CHECK_CUDA(cudaMalloc(&b, bytes));
    const double us = time_us(
        stream, 10, [&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream); });
    bandwidth_gbs = 2.0 * bytes / us / 1e3;
    cublasHandle_t h;
    cublasCreate(&h);
    cublasSetStream(h, stream);
    const int n = 4096;
    const float one = 1.0f, zero = 0.0f;
    auto* fa = static_cast<float*>(a);
    auto* fb = static_cast<float*>(b);
    float* fc = fb + static_cast<size_t>(n) * n;
    for (const bool tf32 : {false, true}) {
      cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
      const double gemm_us = time_us(stream, 5, [&] {
        cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, fa, n, fa, n, &zero, fc, n);
      });
      (tf32 ? tf32_tflops : sgemm_tflops) = 2.0 * n * n * n / gemm_us / 1e6;
    }
    cublasDestroy(h);
    CHECK_CUDA(cudaFree(a));
    CHECK_CUDA(cudaFree(b));
  }
  std::printf("measured: copy %.0f GB/s, cuBLAS SGEMM %.1f TFLOP/s (FP32), %.1f TFLOP/s (TF32)\n",
              bandwidth_gbs, sgemm_tflops, tf32_tflops);

  // ---- accuracy at the full shape against the CPU sequential rule.
  std::vector<float> want = s0;
  strand::cpu::gated_delta_update_sequential(want.data(), k.data(), kWidth, v.data(), kWidth,
                                             alpha.data(), beta.data(), kTokens, kHeads, kDim,
                                             kDim);
  std::vector<float> got(s0.size());
  const auto schedule_name = [](DeltaSchedule schedule) {
    return schedule == DeltaSchedule::automatic                ? "automatic"
           : schedule == DeltaSchedule::single_pass            ? "single pass"
           : schedule == DeltaSchedule::fma_single_pass        ? "FMA single pass"
           : schedule == DeltaSchedule::folded_single_pass     ? "folded single pass"
           : schedule == DeltaSchedule::overlapped_single_pass ? "overlapped single pass"
           : schedule == DeltaSchedule::overlapped_folded_single_pass
               ? "overlapped folded single pass"
               : "grouped";
  };
  for (const auto precision : {DeltaPrecision::fp32, DeltaPrecision::tf32}) {
    const char* pname = precision == DeltaPrecision::fp32 ? "fp32" : "tf32";
    std::printf("automatic schedule, %s: %d groups (1 = single pass)\n", pname,
                strand::cuda::gated_delta_groups(kTokens, kHeads, kDim, kDim, precision));
    for (const auto schedule :
         {DeltaSchedule::automatic, DeltaSchedule::single_pass, DeltaSchedule::grouped,
          DeltaSchedule::fma_single_pass, DeltaSchedule::folded_single_pass,
          DeltaSchedule::overlapped_single_pass, DeltaSchedule::overlapped_folded_single_pass}) {
      for (const int groups : {0, 2, 4, 8}) {
        if (groups != 0 && schedule != DeltaSchedule::grouped) continue;
        reset_state();
        strand::cuda::gated_delta_update(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens, kHeads,
                                         kDim, kDim, ws, ws_bytes, stream, precision, schedule,
                                         groups);
        CHECK_CUDA(cudaStreamSynchronize(stream));
        CHECK_CUDA(cudaMemcpy(got.data(), ds, got.size() * 4, cudaMemcpyDeviceToHost));
        std::printf("chunked %s %s (groups %d) vs CPU sequential: relative error %.3g\n", pname,
                    schedule_name(schedule), groups, rel_error(got, want));
      }
    }
  }
  reset_state();
  strand::cuda::gated_delta_update_sequential(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens, kHeads,
                                              kDim, kDim, stream);
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_CUDA(cudaMemcpy(got.data(), ds, got.size() * 4, cudaMemcpyDeviceToHost));
  std::printf("sequential kernel vs CPU sequential: relative error %.3g\n", rel_error(got, want));

  // ---- floors. Update: read k and v once (the state is 0.8 MB); the two-kernel form also reads
  // k twice and writes + reads X (64 x 64 per chunk and head).
  const double chunks = std::ceil(kTokens / 64.0);
  const double kv_bytes = 2.0 * kTokens * kHeads * kDim * 4;
  const double state_bytes = 2.0 * kHeads * kDim * kDim * 4;
  const double x_bytes = 2.0 * kHeads * chunks * 64 * 64 * 4;
  const double ideal_bytes = kv_bytes + state_bytes;
  const double ours_bytes = ideal_bytes + kv_bytes / 2 + x_bytes;
  // FLOPs per token and head: K S and K^T U (2 dk dv each), X R (~64 dv, triangular), K K^T
  // (~64 dk, lower half).
  const double flops =
      static_cast<double>(kTokens) * kHeads * (4.0 * kDim * kDim + 64.0 * kDim + 64.0 * kDim);
  const double byte_floor_us = ideal_bytes / bandwidth_gbs / 1e3;
  std::printf("\nstate update, %d tokens x %d heads x %dx%d:\n", kTokens, kHeads, kDim, kDim);
  std::printf(
      "  floor: %.1f MB -> %.1f us at %.0f GB/s (two-kernel traffic %.1f MB -> %.1f us); "
      "%.2f GFLOP -> %.1f us at TF32 rate, %.1f us for 3xTF32, %.1f us at SGEMM rate\n",
      ideal_bytes / 1e6, byte_floor_us, bandwidth_gbs, ours_bytes / 1e6,
      ours_bytes / bandwidth_gbs / 1e3, flops / 1e9, flops / tf32_tflops / 1e6,
      3 * flops / tf32_tflops / 1e6, flops / sgemm_tflops / 1e6);

  reset_state();
  const auto report = [&](const char* what, double us) {
    std::printf("  %-44s %9.1f us  (%.2fx the 50 us target, %.1fx the byte floor)\n", what, us,
                us / 50.0, us / byte_floor_us);
  };
  // Schedules side by side, own workspace: one line each.
  report("FMA single pass (exact fp32), own workspace", time_us(stream, repeats, [&] {
           strand::cuda::gated_delta_update(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens, kHeads,
                                            kDim, kDim, ws, ws_bytes, stream, DeltaPrecision::fp32,
                                            DeltaSchedule::fma_single_pass);
         }));
  for (const auto precision : {DeltaPrecision::fp32, DeltaPrecision::tf32}) {
    const char* pname = precision == DeltaPrecision::fp32 ? "fp32" : "tf32";
    char label[64];
    for (const auto& [schedule, name] :
         {std::pair{DeltaSchedule::single_pass, "single pass"},
          std::pair{DeltaSchedule::overlapped_single_pass, "overlapped single pass"},
          std::pair{DeltaSchedule::overlapped_folded_single_pass, "overlapped folded single pass"},
          std::pair{DeltaSchedule::folded_single_pass, "folded single pass"}}) {
      std::snprintf(label, sizeof label, "%s %s, own workspace", name, pname);
      report(label, time_us(stream, repeats, [&, schedule = schedule] {
               strand::cuda::gated_delta_update(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens,
                                                kHeads, kDim, kDim, ws, ws_bytes, stream, precision,
                                                schedule);
             }));
    }
    for (int groups = 2; groups <= kSweepMaxGroups; ++groups) {
      std::snprintf(label, sizeof label, "grouped %s, %d groups, own workspace", pname, groups);
      report(label, time_us(stream, repeats, [&] {
               strand::cuda::gated_delta_update(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens,
                                                kHeads, kDim, kDim, ws, ws_bytes, stream, precision,
                                                DeltaSchedule::grouped, groups);
             }));
    }
  }
  for (const auto precision : {DeltaPrecision::fp32, DeltaPrecision::tf32}) {
    const bool fp32 = precision == DeltaPrecision::fp32;
    report(fp32 ? "chunked fp32 (3xTF32), own workspace" : "chunked tf32, own workspace",
           time_us(stream, repeats, [&] {
             strand::cuda::gated_delta_update(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens, kHeads,
                                              kDim, kDim, ws, ws_bytes, stream, precision);
           }));
    report(fp32 ? "chunked fp32, cudaMallocAsync scratch" : "chunked tf32, cudaMallocAsync scratch",
           time_us(stream, repeats, [&] {
             strand::cuda::gated_delta_update(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens, kHeads,
                                              kDim, kDim, stream, precision);
           }));
    report(fp32 ? "chunked fp32, scratch, synced per call (wall)"
                : "chunked tf32, scratch, synced per call (wall)",
           time_synced_us(stream, repeats, [&] {
             strand::cuda::gated_delta_update(ds, dk_, kWidth, dv_, kWidth, da, db, kTokens, kHeads,
                                              kDim, kDim, stream, precision);
           }));
  }
  report("sequential kernel (one thread per column)", time_us(stream, 3, [&] {
           strand::cuda::gated_delta_update_sequential(ds, dk_, kWidth, dv_, kWidth, da, db,
                                                       kTokens, kHeads, kDim, kDim, stream);
         }));

  // ---- memory read: out[t, h] = scale S_h^T q[t, h].
  const double read_bytes = 2.0 * kTokens * kHeads * kDim * 4 + state_bytes / 2;
  const double read_flops = 2.0 * kTokens * kHeads * kDim * kDim;
  std::printf(
      "\nmemory read, %d tokens x %d heads x %dx%d: floor %.1f MB -> %.1f us; %.2f GFLOP -> "
      "%.1f us at SGEMM rate, %.1f us at TF32 rate\n",
      kTokens, kHeads, kDim, kDim, read_bytes / 1e6, read_bytes / bandwidth_gbs / 1e3,
      read_flops / 1e9, read_flops / sgemm_tflops / 1e6, read_flops / tf32_tflops / 1e6);
  for (const auto precision : {DeltaPrecision::fp32, DeltaPrecision::tf32}) {
    const double us = time_us(stream, repeats, [&] {
      strand::cuda::memory_read(ds, dq, kWidth, dout, kWidth, kTokens, kHeads, kDim, kDim,
                                1.0f / std::sqrt(128.0f), stream, precision);
    });
    std::printf("  %-44s %9.1f us  (%.1fx the byte floor)\n",
                precision == DeltaPrecision::fp32 ? "cuBLAS strided batched, FP32"
                                                  : "cuBLAS strided batched, TF32",
                us, us / (read_bytes / bandwidth_gbs / 1e3));
  }
  CHECK_CUDA(cudaStreamSynchronize(stream));
  CHECK_CUDA(cudaGetLastError());
  for (void* p : {static_cast<void*>(dk_), static_cast<void*>(dv_), static_cast<void*>(dq),
                  static_cast<void*>(dout), static_cast<void*>(da), static_cast<void*>(db),
                  static_cast<void*>(ds), ws})
    cudaFree(p);
  cudaStreamDestroy(stream);
  return 0;
}
