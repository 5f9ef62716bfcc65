// Elementwise kernels at the 1.3B reference shape (docs/model.md: 4680-token blocks, width 1536,
// 12 heads of 128): the kernels of kernels/cuda against the ones they replaced (kept below as
// `old_*`, verbatim but for names), with the bytes each must move and a bitwise comparison of
// their outputs on the same input. A .cu file, not .cpp: the old kernels live here, not in the
// library. The fused ops of the self-attention layers (qk_norm_rope, l2_normalize_heads_rows,
// memory_gates_rows) are timed against the separate launches they replace ("old"), reading a
// hybrid layer's fused projection [4680, 6192] as the engine does; residual_norm (a layer's
// residual add with the layer norm after it) against gated_residual + layer_norm[_modulate].
// One line per kernel:
//   elementwise <name> <us> us <GB/s> GB/s [old <us> us, <x> faster, bitwise equal|N differ]
// plus a device-to-device copy of one activation tensor as the bandwidth reference.
// Usage: strand-bench-elementwise [repeats]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/activation.h"
#include "kernels/cuda/gates.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/qk_norm_rope.h"
#include "kernels/cuda/residual.h"
#include "kernels/cuda/residual_norm.h"
#include "kernels/cuda/rope.h"
#include "tools/gpu/bench_timing.h"

namespace {

using strand::bench::time_ms;
namespace cuda = strand::cuda;
namespace detail = strand::cuda::detail;

// ---- the kernels as they were before the rewrite (flat size_t loops) --------------------------

__global__ void old_gated_residual_kernel(float* __restrict__ x, const float* __restrict__ y,
                                          const float* __restrict__ gate, int rows, int dim,
                                          int rows_per_group, int group_stride) {
  const size_t total = static_cast<size_t>(rows) * dim;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    if (gate == nullptr) {
      x[i] += y[i];
    } else {
      const size_t r = i / dim, j = i % dim;
      x[i] += gate[(r / rows_per_group) * group_stride + j] * y[i];
    }
  }
}

__global__ void old_gated_residual_heads_kernel(float* __restrict__ x, const float* __restrict__ y,
                                                const float* __restrict__ gate, int rows, int heads,
                                                int head_dim, int row_stride) {
  const int width = heads * head_dim;
  const size_t total = static_cast<size_t>(rows) * width;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t r = i / width;
    const int c = static_cast<int>(i % width);
    const size_t at = r * row_stride + c;
    x[at] += gate[r * heads + c / head_dim] * y[at];
  }
}

__global__ void old_rope_3d_kernel(float* x, int tokens, int heads, int head_dim, int row_stride,
                                   const int* pos_t, const int* pos_r, const int* pos_c,
                                   double theta) {
  const int pairs = head_dim / 2;
  const int spatial = pairs / 3;
  const int temporal = pairs - 2 * spatial;
  const size_t total = static_cast<size_t>(tokens) * pairs;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(i / pairs);
    const int p = static_cast<int>(i % pairs);
    int position, j, n;
    if (p < temporal) {
      position = pos_t[t], j = p, n = temporal;
    } else if (p < temporal + spatial) {
      position = pos_r[t], j = p - temporal, n = spatial;
    } else {
      position = pos_c[t], j = p - temporal - spatial, n = spatial;
    }
    const double freq = pow(theta, -static_cast<double>(j) / n);
    double s, c;
    sincos(static_cast<double>(position) * freq, &s, &c);
    const float cf = static_cast<float>(c), sf = static_cast<float>(s);
    float* v = x + static_cast<size_t>(t) * row_stride + 2 * p;
    for (int h = 0; h < heads; ++h, v += head_dim) {
      const float x0 = v[0], x1 = v[1];
      v[0] = __fsub_rn(__fmul_rn(x0, cf), __fmul_rn(x1, sf));
      v[1] = __fadd_rn(__fmul_rn(x0, sf), __fmul_rn(x1, cf));
    }
  }
}

__global__ void old_l2_heads_kernel(float* x, int vectors, int head_dim, float eps) {
  const int warps_per_block = blockDim.x >> 5;
  const size_t vec = static_cast<size_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  if (vec >= static_cast<size_t>(vectors)) return;
  const int lane = threadIdx.x & 31;
  float* v = x + vec * head_dim;
  float sq = 0.0f;
  for (int j = lane; j < head_dim; j += 32) sq += v[j] * v[j];
  const float inv = 1.0f / sqrtf(detail::warp_sum(sq) + eps);
  for (int j = lane; j < head_dim; j += 32) v[j] *= inv;
}

__device__ __forceinline__ float old_softplus(float x) {
  return x > 20.0f ? x : log1pf(expf(x));
}
__device__ __forceinline__ float old_sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

__global__ void old_memory_gates_kernel(const float* __restrict__ raw,
                                        const float* __restrict__ a_log,
                                        const float* __restrict__ dt_bias,
                                        float* __restrict__ alpha, float* __restrict__ beta,
                                        float* __restrict__ gamma, size_t total, int heads) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int h = static_cast<int>(i % heads);
    const float decay = -expf(a_log[h]) * old_softplus(raw[i] + dt_bias[h]);
    alpha[i] = expf(decay);
    beta[i] = 2.0f * old_sigmoid(raw[total + i]);
    gamma[i] = old_sigmoid(raw[2 * total + i]);
  }
}

__global__ void old_silu_kernel(float* x, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float v = x[i];
    const float e = expf(-fabsf(v));
    x[i] = v * ((v >= 0.0f ? 1.0f : e) / (1.0f + e));
  }
}

// ---- harness ------------------------------------------------------------------------------------

float* device_random(size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> host(n);
  unsigned s = seed * 2654435761u + 1u;
  for (auto& v : host) {
    s = s * 1664525u + 1013904223u;
    v = lo + (hi - lo) * static_cast<float>(s >> 8) / 16777216.0f;
  }
  float* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, n * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(p, host.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return p;
}

std::vector<float> fetch(const float* p, size_t n) {
  std::vector<float> host(n);
  CHECK_CUDA(cudaMemcpy(host.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

// "bitwise equal" or how many floats differ (and the largest difference).
std::string compare(const std::vector<float>& a, const std::vector<float>& b) {
  size_t differ = 0;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      ++differ;
      worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]));
    }
  }
  if (differ == 0) return "bitwise equal";
  char text[96];
  std::snprintf(text, sizeof text, "%zu of %zu differ, max |diff| %.3g", differ, a.size(), worst);
  return text;
}

void report(const char* name, double ms, double bytes, double old_ms, const std::string& check) {
  std::printf("elementwise %-42s %8.2f us %7.0f GB/s", name, ms * 1e3, bytes / (ms * 1e6));
  if (old_ms > 0) {
    std::printf("   old %8.2f us %7.0f GB/s, %.2fx faster, %s", old_ms * 1e3,
                bytes / (old_ms * 1e6), old_ms / ms, check.c_str());
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 50;
  const int rows = 4680, width = 1536, heads = 12, head_dim = 128;
  const int frames = 3, grid_rows = 30, grid_cols = 52;  // 3 x 30 x 52 = 4680 tokens
  const size_t n = static_cast<size_t>(rows) * width;
  const double tensor_bytes = static_cast<double>(n) * sizeof(float);
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  float* x = device_random(n, 1);
  float* y = device_random(n, 2);
  float* work = nullptr;  // the kernels run in place: timed on a scratch copy of x
  CHECK_CUDA(cudaMalloc(&work, n * sizeof(float)));
  float* work2 = nullptr;
  CHECK_CUDA(cudaMalloc(&work2, n * sizeof(float)));
  float* gate = device_random(static_cast<size_t>(width), 3);
  float* head_gate = device_random(static_cast<size_t>(rows) * heads, 4);
  auto reset = [&](float* dst) {
    CHECK_CUDA(cudaMemcpyAsync(dst, x, n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  };
  // Runs old and new once each on copies of x and compares the outputs.
  auto check = [&](const auto& old_call, const auto& new_call) {
    reset(work);
    reset(work2);
    old_call(work);
    new_call(work2);
    CHECK_CUDA(cudaStreamSynchronize(stream));
    CHECK_CUDA(cudaGetLastError());
    return compare(fetch(work, n), fetch(work2, n));
  };

  // Bandwidth reference: read + write one activation tensor.
  const double copy_ms = time_ms(stream, repeats, [&] {
    CHECK_CUDA(cudaMemcpyAsync(work, x, n * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  });
  report("copy r4680 d1536 (d2d memcpy)", copy_ms, 2 * tensor_bytes, 0, "");

  // gated_residual: read x, y (+ one gate row), write x.
  for (const bool gated : {true, false}) {
    const float* g = gated ? gate : nullptr;
    auto old_call = [&](float* dst) {
      old_gated_residual_kernel<<<detail::grid_for(n), detail::kThreads, 0, stream>>>(
          dst, y, g, rows, width, rows, 0);
    };
    auto new_call = [&](float* dst) {
      cuda::gated_residual(dst, y, g, rows, width, rows, 0, stream);
    };
    const std::string same = check(old_call, new_call);
    const double old_ms = time_ms(stream, repeats, [&] { old_call(work); });
    const double new_ms = time_ms(stream, repeats, [&] { new_call(work); });
    report(
        gated ? "gated_residual r4680 d1536 (one gate row)" : "gated_residual r4680 d1536 (plain)",
        new_ms, 3 * tensor_bytes, old_ms, same);
  }

  // gated_residual_heads: same traffic, one gate per (row, head).
  {
    auto old_call = [&](float* dst) {
      old_gated_residual_heads_kernel<<<detail::grid_for(n), detail::kThreads, 0, stream>>>(
          dst, y, head_gate, rows, heads, head_dim, width);
    };
    auto new_call = [&](float* dst) {
      cuda::gated_residual_heads(dst, y, head_gate, rows, heads, head_dim, width, stream);
    };
    const std::string same = check(old_call, new_call);
    const double old_ms = time_ms(stream, repeats, [&] { old_call(work); });
    const double new_ms = time_ms(stream, repeats, [&] { new_call(work); });
    report("gated_residual_heads r4680 h12 d128", new_ms, 3 * tensor_bytes, old_ms, same);
  }

  // rope_3d: read + write x; the new kernel also reads the cached angle table.
  {
    std::vector<int> positions;  // t, then r, then c, as the backend packs them
    positions.reserve(3 * static_cast<size_t>(rows));
    for (int part = 0; part < 3; ++part)
      for (int f = 0; f < frames; ++f)
        for (int r = 0; r < grid_rows; ++r)
          for (int c = 0; c < grid_cols; ++c)
            positions.push_back(part == 0 ? f - 9 : part == 1 ? r : c);
    int* pos = nullptr;
    CHECK_CUDA(cudaMalloc(&pos, positions.size() * sizeof(int)));
    CHECK_CUDA(
        cudaMemcpy(pos, positions.data(), positions.size() * sizeof(int), cudaMemcpyHostToDevice));
    const size_t entries = cuda::rope_table_entries(rows, head_dim);
    float2* table = nullptr;
    CHECK_CUDA(cudaMalloc(&table, entries * sizeof(float2)));
    const float theta = 10000.0f;
    auto old_call = [&](float* dst) {
      const size_t total = static_cast<size_t>(rows) * (head_dim / 2);
      old_rope_3d_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
          dst, rows, heads, head_dim, width, pos, pos + rows, pos + 2 * rows,
          static_cast<double>(theta));
    };
    auto build = [&] {
      cuda::rope_3d_table(table, rows, head_dim, pos, pos + rows, pos + 2 * rows, theta, stream);
    };
    auto new_call = [&](float* dst) {
      cuda::rope_3d_apply(dst, rows, heads, head_dim, width, table, stream);
    };
    build();
    const std::string same = check(old_call, new_call);
    const double old_ms = time_ms(stream, repeats, [&] { old_call(work); });
    const double new_ms = time_ms(stream, repeats, [&] { new_call(work); });
    const double build_ms = time_ms(stream, repeats, build);
    report("rope_3d t4680 h12 d128 (table cached)", new_ms,
           2 * tensor_bytes + static_cast<double>(entries) * sizeof(float2), old_ms, same);
    report("rope_3d angle table (once per position set)", build_ms,
           static_cast<double>(entries) * sizeof(float2), 0, "");
    CHECK_CUDA(cudaFree(table));
    CHECK_CUDA(cudaFree(pos));
  }

  // l2_normalize_heads: read + write.
  {
    const int vectors = rows * heads;
    auto old_call = [&](float* dst) {
      old_l2_heads_kernel<<<(vectors + 7) / 8, 256, 0, stream>>>(dst, vectors, head_dim, 1e-6f);
    };
    auto new_call = [&](float* dst) {
      cuda::l2_normalize_heads(dst, rows, heads, head_dim, 1e-6f, stream);
    };
    const std::string same = check(old_call, new_call);
    const double old_ms = time_ms(stream, repeats, [&] { old_call(work); });
    const double new_ms = time_ms(stream, repeats, [&] { new_call(work); });
    report("l2_normalize_heads r4680 h12 d128", new_ms, 2 * tensor_bytes, old_ms,
           same + " (summation order changed: ulps expected)");
  }

  // memory_gates: read 3 x [tokens, heads], write 3.
  {
    const size_t total = static_cast<size_t>(rows) * heads;
    float* raw = device_random(3 * total, 5, -30.0f, 30.0f);
    float* a_log = device_random(static_cast<size_t>(heads), 6, -3.0f, 2.0f);
    float* dt_bias = device_random(static_cast<size_t>(heads), 7, -4.0f, 4.0f);
    float* out = nullptr;
    CHECK_CUDA(cudaMalloc(&out, 6 * total * sizeof(float)));
    auto old_call = [&](float* o) {
      old_memory_gates_kernel<<<detail::grid_for(total), detail::kThreads, 0, stream>>>(
          raw, a_log, dt_bias, o, o + total, o + 2 * total, total, heads);
    };
    auto new_call = [&](float* o) {
      cuda::memory_gates(raw, a_log, dt_bias, o, o + total, o + 2 * total, rows, heads, stream);
    };
    old_call(out);
    new_call(out + 3 * total);
    CHECK_CUDA(cudaStreamSynchronize(stream));
    const std::string same = compare(fetch(out, 3 * total), fetch(out + 3 * total, 3 * total));
    const double old_ms = time_ms(stream, repeats, [&] { old_call(out); });
    const double new_ms = time_ms(stream, repeats, [&] { new_call(out); });
    report("memory_gates t4680 h12", new_ms, 6.0 * total * sizeof(float), old_ms, same);
    CHECK_CUDA(cudaFree(out));
    CHECK_CUDA(cudaFree(raw));
    CHECK_CUDA(cudaFree(a_log));
    CHECK_CUDA(cudaFree(dt_bias));
  }

  // ---- fused ops against the launches they replace, on a hybrid layer's projection rows:
  // [q | k | v | mem_q | mem_a | mem_b | mem_g], 4 * 1536 + 3 * 12 columns padded to 6192.
  {
    const int ps = 6192;
    const size_t projected_count = static_cast<size_t>(rows) * ps;
    float* projected = device_random(projected_count, 8, -2.0f, 3.0f);
    float* q_weight = device_random(static_cast<size_t>(width), 9, 0.5f, 1.5f);
    float* k_weight = device_random(static_cast<size_t>(width), 10, 0.5f, 1.5f);
    float* outs = nullptr;  // q, k (fused), q, k (separate)
    CHECK_CUDA(cudaMalloc(&outs, 4 * n * sizeof(float)));
    std::vector<int> positions;
    positions.reserve(3 * static_cast<size_t>(rows));
    for (int part = 0; part < 3; ++part)
      for (int f = 0; f < frames; ++f)
        for (int r = 0; r < grid_rows; ++r)
          for (int c = 0; c < grid_cols; ++c)
            positions.push_back(part == 0 ? f - 9 : part == 1 ? r : c);
    int* pos = nullptr;
    CHECK_CUDA(cudaMalloc(&pos, positions.size() * sizeof(int)));
    CHECK_CUDA(
        cudaMemcpy(pos, positions.data(), positions.size() * sizeof(int), cudaMemcpyHostToDevice));
    float2* table = nullptr;
    CHECK_CUDA(cudaMalloc(&table, cuda::rope_table_entries(rows, head_dim) * sizeof(float2)));
    cuda::rope_3d_table(table, rows, head_dim, pos, pos + rows, pos + 2 * rows, 10000.0f, stream);
    if (!cuda::qk_norm_rope_fits(projected, ps, outs, outs + n, heads, head_dim, q_weight,
                                 k_weight)) {
      std::fprintf(stderr, "qk_norm_rope: the 1.3B shape does not take the fused kernel\n");
      return 1;
    }
    // rope_k: the hybrid layer; without, the softmax_kv layer (k cached unrotated).
    for (const bool rope_k : {true, false}) {
      auto separate = [&](float* q, float* k) {
        cuda::rms_norm(projected, ps, q, rows, width, q_weight, 1e-6f, stream);
        cuda::rms_norm(projected + width, ps, k, rows, width, k_weight, 1e-6f, stream);
        cuda::rope_3d_apply(q, rows, heads, head_dim, width, table, stream);
        if (rope_k) cuda::rope_3d_apply(k, rows, heads, head_dim, width, table, stream);
      };
      auto fused = [&](float* q, float* k) {
        cuda::qk_norm_rope(projected, ps, q, k, rows, heads, head_dim, q_weight, k_weight, 1e-6f,
                           table, rope_k, stream);
      };
      fused(outs, outs + n);
      separate(outs + 2 * n, outs + 3 * n);
      CHECK_CUDA(cudaStreamSynchronize(stream));
      CHECK_CUDA(cudaGetLastError());
      const std::string same = compare(fetch(outs, 2 * n), fetch(outs + 2 * n, 2 * n));
      const double old_ms = time_ms(stream, repeats, [&] { separate(outs + 2 * n, outs + 3 * n); });
      const double new_ms = time_ms(stream, repeats, [&] { fused(outs, outs + n); });
      // Least traffic: read q and k, write q and k (the table stays in L2).
      report(rope_k ? "qk_norm_rope t4680 h12 d128 (vs 2 rms + 2 rope)"
                    : "qk_norm_rope t4680 h12 d128 k unrotated (vs 2 rms + 1 rope)",
             new_ms, 4 * tensor_bytes, old_ms, same);
    }

    // l2_normalize_heads_rows: mem_q (column 3 * 1536) into packed rows, vs copy_2d + in place.
    {
      const float* src = projected + 3 * static_cast<size_t>(width);
      auto separate = [&](float* dst) {
        CHECK_CUDA(cudaMemcpy2DAsync(dst, width * sizeof(float), src, ps * sizeof(float),
                                     width * sizeof(float), rows, cudaMemcpyDeviceToDevice,
                                     stream));
        cuda::l2_normalize_heads(dst, rows, heads, head_dim, 1e-6f, stream);
      };
      auto fused = [&](float* dst) {
        cuda::l2_normalize_heads(src, ps, dst, rows, heads, head_dim, 1e-6f, stream);
      };
      fused(outs);
      separate(outs + n);
      CHECK_CUDA(cudaStreamSynchronize(stream));
      CHECK_CUDA(cudaGetLastError());
      const std::string same = compare(fetch(outs, n), fetch(outs + n, n));
      const double old_ms = time_ms(stream, repeats, [&] { separate(outs + n); });
      const double new_ms = time_ms(stream, repeats, [&] { fused(outs); });
      report("l2_normalize_heads_rows r4680 h12 d128 (vs copy_2d + l2)", new_ms, 2 * tensor_bytes,
             old_ms, same);
    }

    // memory_gates_rows: gate columns a | b | g at column 4 * 1536, vs 3 copy_2d + memory_gates.
    {
      const size_t total = static_cast<size_t>(rows) * heads;
      const float* src = projected + 4 * static_cast<size_t>(width);
      float* a_log = device_random(static_cast<size_t>(heads), 6, -3.0f, 2.0f);
      float* dt_bias = device_random(static_cast<size_t>(heads), 7, -4.0f, 4.0f);
      float* raw = nullptr;
      CHECK_CUDA(cudaMalloc(&raw, 3 * total * sizeof(float)));
      auto separate = [&](float* o) {
        for (int g = 0; g < 3; ++g) {
          CHECK_CUDA(cudaMemcpy2DAsync(raw + g * total, heads * sizeof(float),
                                       src + static_cast<size_t>(g) * heads, ps * sizeof(float),
                                       heads * sizeof(float), rows, cudaMemcpyDeviceToDevice,
                                       stream));
        }
        cuda::memory_gates(raw, a_log, dt_bias, o, o + total, o + 2 * total, rows, heads, stream);
      };
      auto fused = [&](float* o) {
        cuda::memory_gates_rows(src, ps, a_log, dt_bias, o, o + total, o + 2 * total, rows, heads,
                                stream);
      };
      fused(outs);
      separate(outs + 3 * total);
      CHECK_CUDA(cudaStreamSynchronize(stream));
      CHECK_CUDA(cudaGetLastError());
      const std::string same = compare(fetch(outs, 3 * total), fetch(outs + 3 * total, 3 * total));
      const double old_ms = time_ms(stream, repeats, [&] { separate(outs + 3 * total); });
      const double new_ms = time_ms(stream, repeats, [&] { fused(outs); });
      report("memory_gates_rows t4680 h12 (vs 3 copy_2d + gates)", new_ms,
             6.0 * total * sizeof(float), old_ms, same);
      CHECK_CUDA(cudaFree(raw));
      CHECK_CUDA(cudaFree(a_log));
      CHECK_CUDA(cudaFree(dt_bias));
    }
    CHECK_CUDA(cudaFree(table));
    CHECK_CUDA(cudaFree(pos));
    CHECK_CUDA(cudaFree(outs));
    CHECK_CUDA(cudaFree(q_weight));
    CHECK_CUDA(cudaFree(k_weight));
    CHECK_CUDA(cudaFree(projected));
  }

  // ---- residual_norm against gated_residual + the norm, the three uses of a DiT layer (h += y
  // with a gate row or none, then norm3's affine layer norm or adaLN with one shift/scale row).
  // Least traffic: read x and y, write x and out (the parameter rows stay in L2).
  {
    float* weight = device_random(static_cast<size_t>(width), 31, 0.5f, 1.5f);
    float* bias = device_random(static_cast<size_t>(width), 32);
    float* shift = device_random(static_cast<size_t>(width), 33);
    float* scale = device_random(static_cast<size_t>(width), 34);
    float* outs = nullptr;  // out (separate), out (fused)
    CHECK_CUDA(cudaMalloc(&outs, 2 * n * sizeof(float)));
    struct Use {
      const char* name;
      bool gated, modulate;
    };
    for (const Use u :
         {Use{"residual_norm r4680 d1536 gate + layer_norm (vs gated_residual + layer_norm)", true,
              false},
          Use{"residual_norm r4680 d1536 plain + modulate (vs gated_residual + layer_norm_modulate)",
              false, true},
          Use{"residual_norm r4680 d1536 gate + modulate (vs gated_residual + layer_norm_modulate)",
              true, true}}) {
      const float* g = u.gated ? gate : nullptr;
      const float* a = u.modulate ? shift : weight;
      const float* b = u.modulate ? scale : bias;
      auto separate = [&](float* h, float* out) {
        cuda::gated_residual(h, y, g, rows, width, rows, 0, stream);
        if (u.modulate) {
          cuda::layer_norm_modulate(h, out, rows, width, a, b, rows, 0, 1e-6f, stream);
        } else {
          cuda::layer_norm(h, out, rows, width, a, b, 1e-6f, stream);
        }
      };
      auto fused = [&](float* h, float* out) {
        cuda::residual_norm(h, y, g, out, rows, width, rows, 0, u.modulate, a, b, 1e-6f, stream);
      };
      if (!cuda::residual_norm_fits(work, y, g, outs, width, rows, 0, a, b)) {
        std::fprintf(stderr, "residual_norm: the 1.3B shape does not take the fused kernel\n");
        return 1;
      }
      reset(work);
      reset(work2);
      separate(work, outs);
      fused(work2, outs + n);
      CHECK_CUDA(cudaStreamSynchronize(stream));
      CHECK_CUDA(cudaGetLastError());
      const std::string same_x = compare(fetch(work, n), fetch(work2, n));
      const std::string same_out = compare(fetch(outs, n), fetch(outs + n, n));
      const std::string same =
          same_x == same_out ? same_x : "x " + same_x + ", out " + same_out;
      // x grows by y (times the gate) each repeat: the values, not the traffic, change.
      const double old_ms = time_ms(stream, repeats, [&] { separate(work, outs); });
      const double new_ms = time_ms(stream, repeats, [&] { fused(work2, outs + n); });
      report(u.name, new_ms, 4 * tensor_bytes, old_ms, same);
    }
    CHECK_CUDA(cudaFree(outs));
    CHECK_CUDA(cudaFree(weight));
    CHECK_CUDA(cudaFree(bias));
    CHECK_CUDA(cudaFree(shift));
    CHECK_CUDA(cudaFree(scale));
  }

  // silu (gelu_tanh / gelu_erf share its launcher): read + write.
  {
    auto old_call = [&](float* dst) {
      old_silu_kernel<<<detail::grid_for(n), detail::kThreads, 0, stream>>>(dst, n);
    };
    auto new_call = [&](float* dst) { cuda::silu(dst, n, stream); };
    const std::string same = check(old_call, new_call);
    const double old_ms = time_ms(stream, repeats, [&] { old_call(work); });
    const double new_ms = time_ms(stream, repeats, [&] { new_call(work); });
    report("silu n4680x1536", new_ms, 2 * tensor_bytes, old_ms, same);
  }

  CHECK_CUDA(cudaFree(x));
  CHECK_CUDA(cudaFree(y));
  CHECK_CUDA(cudaFree(work));
  CHECK_CUDA(cudaFree(work2));
  CHECK_CUDA(cudaFree(gate));
  CHECK_CUDA(cudaFree(head_gate));
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}
