// Intra-block attention with wgmma (see attention_sm90.h for the contract).
//
// One CTA: 128 query rows of one head, two warpgroups of 64 rows each, K and V tiles of 128 keys
// in a cp.async ring (one barrier per key tile). Per tile and warpgroup: S = Q K^T as 8 wgmma
// m64n128k16 with both operands in shared memory; the online softmax in registers (fp32, base 2);
// O += P V as 8 wgmma m64n128k16 with P rounded to bf16 (in registers, or in shared memory for
// the pipelined kernel, see wgmma_attention_kernel) and V read transposed from shared memory.
// Q, K, V and P tiles use the layout wgmma's 128-byte swizzle expects: each 128-element row is
// split into two 64-element halves stored as [half][row][128 bytes], 16-byte chunk c of row r at
// chunk position c ^ (r & 7), every half 1024-byte aligned. The same layout serves Q, K and P as
// K-major operands and V as an MN-major one.
//
// The kernel body exists only in the sm_90a compilation (__CUDA_ARCH_FEAT_SM90_ALL); the probe
// kernel reports which compilation the driver loaded, so other GPUs and builds fall back cleanly.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda/attention_sm90.h"
#include "strand/error.h"

namespace strand::cuda::sm90 {
namespace {

using bfloat16 = __nv_bfloat16;

[[maybe_unused]] constexpr int kHeadDim = 128;
constexpr int kWarpgroups = 2;
constexpr int kThreads = kWarpgroups * 128;
constexpr int kBlockM = kWarpgroups * 64;  // query rows per CTA
constexpr int kBlockN = 128;               // keys per tile
constexpr int kStages = 3;                 // K/V ring depth (unpipelined)
constexpr int kPipelinedStages = 2;        // K/V ring depth (pipelined: P takes the room)
constexpr uint32_t kHalfBytes = 128u * 128u;  // one 64-dim half of a 128-row tile
constexpr uint32_t kTileBytes = 2u * kHalfBytes;  // a 128 x 128 bf16 tile
static_assert(kBlockM == 128 && kBlockN == 128, "tiles are 128 rows: one layout for Q, K and V");
constexpr uint32_t kPTileBytes = 64u * 128u * 2u;  // one warpgroup's P: 64 rows x 128 keys, bf16
// Q, then K stages, then V stages (pipelined: then P, 2 buffers per warpgroup), plus slack to
// align the base to 1024 bytes.
constexpr size_t shared_bytes(bool pipelined) {
  return pipelined ? static_cast<size_t>(kTileBytes) * (1 + 2 * kPipelinedStages) +
                         static_cast<size_t>(kPTileBytes) * 2 * kWarpgroups + 1024
                   : static_cast<size_t>(kTileBytes) * (1 + 2 * kStages) + 1024;
}

// Device helpers exist in the sm_90a compilation only (the other passes have no use for them).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;  // 0: writes 16 zero bytes, reads nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

// Starts copying rows [row0, row0 + 128) of a [tokens][128] bf16 slice into a swizzled tile
// (rows at or past `limit` become zeros), 8 chunks of 16 bytes per thread.
__device__ __forceinline__ void load_tile_async(uint32_t tile, const bfloat16* slice,
                                                int64_t stride, int row0, int limit, int thread) {
  constexpr int kChunks = kHeadDim / 8;  // 16 per row
#pragma unroll
  for (int i = 0; i < 128 * kChunks / kThreads; ++i) {
    const int index = thread + i * kThreads;
    const int row = index / kChunks;
    const int chunk = index % kChunks;
    const int token = row0 + row;
    const bool valid = token < limit;
    const bfloat16* src = valid ? slice + static_cast<int64_t>(token) * stride + chunk * 8 : slice;
    const uint32_t offset = static_cast<uint32_t>(chunk >> 3) * kHalfBytes +
                            static_cast<uint32_t>(row) * 128u +
                            (static_cast<uint32_t>((chunk & 7) ^ (row & 7)) << 4);
    cp_async_16(tile + offset, src, valid);
  }
}

// Shared-memory matrix descriptor, 128-byte swizzle (PTX ISA, "Matrix Descriptor Format").
// K-major operands: sbo = bytes between groups of 8 rows (1024 here), lbo unused. MN-major: lbo =
// bytes between 64-element halves along N, sbo = bytes between groups of 8 rows along K.
__device__ __forceinline__ uint64_t matrix_descriptor(uint32_t address, uint32_t lbo_bytes,
                                                      uint32_t sbo_bytes) {
  uint64_t desc = static_cast<uint64_t>((address & 0x3FFFFu) >> 4);
  desc |= static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFFu) << 16;
  desc |= static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFFu) << 32;
  desc |= static_cast<uint64_t>(1) << 62;  // 128-byte swizzle
  return desc;
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int Pending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}
// Keeps the compiler from moving accesses of accumulator registers across the asynchronous
// wgmma region (it cannot see that the tensor cores write them after the instruction issues).
__device__ __forceinline__ void fence_registers(float (&r)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// cp.async writes are generic-proxy writes; wgmma reads shared memory through the async proxy.
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// clang-format off
// d (+)= A B for a 64x16 A and a 16x128 B, both bf16 in shared memory (descriptors), both K-major;
// fp32 d in the accumulator layout. accumulate == 0 overwrites d.
__device__ __forceinline__ void wgmma_m64n128k16_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b,
                                                    int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// d += A B for A (64x16 bf16) in registers, in the fragment layout of two n8 tiles of an m64nNk16
// accumulator, and B (16x128 bf16) in shared memory stored MN-major (imm-trans-b 1).
__device__ __forceinline__ void wgmma_m64n128k16_rs_tb(float (&d)[64], const uint32_t (&a)[4],
                                                       uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
}

// d += A B for A (64x16 bf16, K-major) and B (16x128 bf16, MN-major: imm-trans-b 1), both in
// shared memory.
__device__ __forceinline__ void wgmma_m64n128k16_ss_tb(float (&d)[64], uint64_t desc_a,
                                                       uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(1));
}
// clang-format on

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// Accumulator layout of wgmma m64nNk16 (fp32): warp w of the warpgroup holds rows 16 w + g and
// 16 w + g + 8 (g = lane / 4); register 4 n + e holds column 8 n + 2 (lane % 4) + (e & 1) of row
// 16 w + g + 8 (e >> 1).
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

// Issues S = Q K^T for the warpgroup's 64 rows and a 128-key tile: 8 steps of 16 dims; steps 4..7
// read the second 64-dim half of Q and K (a 32-byte step inside a swizzled row is a plain
// address step: the hardware applies the XOR).
__device__ __forceinline__ void issue_scores(float (&s)[64], uint32_t q_rows, uint32_t k_tile) {
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    const uint32_t step =
        static_cast<uint32_t>(kk / 4) * kHalfBytes + static_cast<uint32_t>(kk % 4) * 32u;
    wgmma_m64n128k16_ss(s, matrix_descriptor(q_rows + step, 16, 1024),
                        matrix_descriptor(k_tile + step, 16, 1024), kk > 0 ? 1 : 0);
  }
  wgmma_commit();
}

// Issues O += P V: key steps of 16 (score tiles 2 kk and 2 kk + 1, packed in a[kk]); V is the
// MN-major B operand: 16 keys = two 8-row groups 1024 bytes apart, 128 dims = two halves.
__device__ __forceinline__ void issue_pv(float (&o)[64], const uint32_t (&a)[8][4],
                                         uint32_t v_tile) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    wgmma_m64n128k16_rs_tb(
        o, a[kk], matrix_descriptor(v_tile + static_cast<uint32_t>(kk) * 2048u, kHalfBytes, 1024));
  }
  wgmma_commit();
}

// Issues O += P V with P in shared memory (the warpgroup's [2 halves][64 rows][128 bytes] tile,
// swizzled like Q): key step kk reads 16 keys of P as a K-major A operand.
__device__ __forceinline__ void issue_pv_shared(float (&o)[64], uint32_t p_tile, uint32_t v_tile) {
#pragma unroll
  for (int kk = 0; kk < kBlockN / 16; ++kk) {
    const uint32_t step =
        static_cast<uint32_t>(kk / 4) * (kPTileBytes / 2) + static_cast<uint32_t>(kk % 4) * 32u;
    wgmma_m64n128k16_ss_tb(
        o, matrix_descriptor(p_tile + step, 16, 1024),
        matrix_descriptor(v_tile + static_cast<uint32_t>(kk) * 2048u, kHalfBytes, 1024));
  }
  wgmma_commit();
}

// Writes P (probabilities in the accumulator layout) to the warpgroup's shared tile as bf16. The
// thread's rows 16 w + g and 16 w + g + 8 share the swizzle (row & 7 = g); key pair 8 n + 2 t is
// 4 bytes at chunk n % 8 of half n / 8.
__device__ __forceinline__ void store_p(const float (&s)[64], uint32_t p_tile, int warp,
                                        int lane) {
  const int g = lane >> 2, t = lane & 3;
  const uint32_t row0 = p_tile + static_cast<uint32_t>(16 * warp + g) * 128u +
                        static_cast<uint32_t>(4 * t);
#pragma unroll
  for (int n = 0; n < 16; ++n) {
    const uint32_t address = row0 + static_cast<uint32_t>(n / 8) * (kPTileBytes / 2) +
                             (static_cast<uint32_t>((n % 8) ^ g) << 4);
    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(address),
                 "r"(pack_bf16x2(s[4 * n], s[4 * n + 1])));
    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(address + 8u * 128u),
                 "r"(pack_bf16x2(s[4 * n + 2], s[4 * n + 3])));
  }
}

// Online softmax step for the thread's two rows (h = 0: row g, h = 1: row g + 8): masks keys at
// or past tk, turns s into probabilities against the new running max (base 2), updates the row
// sums and returns the factor O must be multiplied by (0 on the first tile).
__device__ __forceinline__ void softmax_tile(float (&s)[64], int key0, int tk, int lane,
                                             float scale_log2, float (&row_max)[2],
                                             float (&row_sum)[2], float (&correction)[2]) {
  if (key0 + kBlockN > tk) {  // zero rows of the last tile: -inf (scale > 0 keeps them -inf)
#pragma unroll
    for (int i = 0; i < 64; ++i) {
      const int key = key0 + 8 * (i / 4) + 2 * (lane & 3) + (i & 1);
      if (key >= tk) s[i] = -INFINITY;
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float tile_max = -INFINITY;
#pragma unroll
    for (int n = 0; n < 16; ++n)
      tile_max = fmaxf(tile_max, fmaxf(s[4 * n + 2 * h], s[4 * n + 2 * h + 1]));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    // Each tile holds a real key, so tile_max and the new max are finite.
    const float new_max = fmaxf(row_max[h], tile_max * scale_log2);
    correction[h] = fast_exp2(row_max[h] - new_max);  // exp2(-inf) = 0 on the first tile
    row_max[h] = new_max;
    float tile_sum = 0.0f;
#pragma unroll
    for (int n = 0; n < 16; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int i = 4 * n + 2 * h + e;
        s[i] = fast_exp2(fmaf(s[i], scale_log2, -new_max));
        tile_sum += s[i];
      }
    row_sum[h] = row_sum[h] * correction[h] + tile_sum;
  }
}

// P (fp32 probabilities in the accumulator layout) as bf16 A fragments of 16-key steps.
__device__ __forceinline__ void to_fragments(const float (&s)[64], uint32_t (&a)[8][4]) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    a[kk][0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
    a[kk][1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
    a[kk][2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
    a[kk][3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

__device__ __forceinline__ void rescale(float (&o)[64], const float (&correction)[2]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] *= correction[(i >> 1) & 1];
}

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

// Pipelined = false: per key tile, S = Q K^T, wait, softmax, O += P V with P in registers, wait;
// a 3-stage ring loads K and V of tile j + 2 during tile j.
// Pipelined = true: S of tile j is issued together with P V of tile j - 1, so the softmax of tile
// j runs while the tensor cores do that P V (the rescale of O waits for it). P goes through shared
// memory (two buffers per warpgroup): a register A operand would have to stay untouched while its
// wgmma runs, and the compiler reuses such registers for the softmax's temporaries. The ring is 2
// stages deep (P takes the room): K of tile j + 1 and V of tile j load during tile j.
template <bool Pipelined>
__global__ void __launch_bounds__(kThreads, 1) wgmma_attention_kernel(WgmmaAttentionParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kRing = Pipelined ? kPipelinedStages : kStages;
  extern __shared__ unsigned char shared_raw[];
  const uint32_t raw = shared_address(shared_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  const uint32_t q_tile = base;
  const uint32_t k_tiles = base + kTileBytes;
  const uint32_t v_tiles = k_tiles + kRing * kTileBytes;

  const int thread = static_cast<int>(threadIdx.x);
  const int warpgroup = thread / 128;
  const int warp = (thread % 128) / 32;
  const int lane = thread % 32;
  // This warpgroup's two P buffers (pipelined).
  const uint32_t p_tiles = v_tiles + kRing * kTileBytes +
                           static_cast<uint32_t>(warpgroup) * 2u * kPTileBytes;
  const int head = static_cast<int>(blockIdx.y);
  const int m0 = static_cast<int>(blockIdx.x) * kBlockM;
  const bfloat16* q = p.q + static_cast<int64_t>(head) * kHeadDim;
  const bfloat16* k = p.k + static_cast<int64_t>(head) * kHeadDim;
  const bfloat16* v = p.v + static_cast<int64_t>(head) * kHeadDim;
  const int tiles = (p.tk + kBlockN - 1) / kBlockN;
  const auto k_tile = [&](int tile) { return k_tiles + (tile % kRing) * kTileBytes; };
  const auto v_tile = [&](int tile) { return v_tiles + (tile % kRing) * kTileBytes; };
  const auto load_k = [&](int tile) {
    if (tile < tiles) load_tile_async(k_tile(tile), k, p.k_stride, tile * kBlockN, p.tk, thread);
  };
  const auto load_v = [&](int tile) {
    if (tile < tiles) load_tile_async(v_tile(tile), v, p.v_stride, tile * kBlockN, p.tk, thread);
  };

  // cp.async groups. Unpipelined: [Q, K0, V0], [K1, V1], then one per iteration j, [K j+2, V j+2]
  // (empty past the last tile, so the wait count stays the constant 1): iteration j needs the
  // group committed two before its own. Pipelined: [Q, K0], then [K j+1, V j] per iteration:
  // iteration j needs K j and V j-1, i.e. every group committed before it (wait count 0).
  load_tile_async(q_tile, q, p.q_stride, m0, p.tq, thread);
  load_k(0);
  if (!Pipelined) {
    load_v(0);
    cp_async_commit();
    load_k(1);
    load_v(1);
  }
  cp_async_commit();

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  float row_max[2] = {-INFINITY, -INFINITY};  // base-2 logits
  float row_sum[2] = {0.0f, 0.0f};            // this thread's share; the quad sums at the end
  float correction[2];
  const float scale_log2 = p.scale_log2;
  const uint32_t q_rows = q_tile + static_cast<uint32_t>(warpgroup) * 64u * 128u;

  for (int j = 0; j < tiles; ++j) {
    if (Pipelined) {
      cp_async_wait<0>();
    } else {
      cp_async_wait<1>();
    }
    fence_proxy_async();  // this thread's copies (and, pipelined, its P stores) before wgmma reads
    // Everyone's copies and P stores are visible, and every warpgroup is done with the stages the
    // next loads reuse (unpipelined: tile j - 1; pipelined: K of tile j - 1, V of tile j - 2).
    __syncthreads();
    if (Pipelined) {
      load_k(j + 1);
      load_v(j);
    } else {
      load_k(j + 2);
      load_v(j + 2);
    }
    cp_async_commit();
    float s[64];
    if (!Pipelined) {
      wgmma_fence();
      issue_scores(s, q_rows, k_tile(j));
      wgmma_wait<0>();
      fence_registers(s);
      softmax_tile(s, j * kBlockN, p.tk, lane, scale_log2, row_max, row_sum, correction);
      rescale(o, correction);
      uint32_t a[8][4];
      to_fragments(s, a);
      fence_registers(o);
      wgmma_fence();
      issue_pv(o, a, v_tile(j));
      wgmma_wait<0>();
      fence_registers(o);
    } else {
      fence_registers(o);
      wgmma_fence();
      issue_scores(s, q_rows, k_tile(j));
      if (j > 0) {
        issue_pv_shared(o, p_tiles + static_cast<uint32_t>((j - 1) & 1) * kPTileBytes,
                        v_tile(j - 1));
        wgmma_wait<1>();  // S of tile j (committed first) is done; P V may still run
      } else {
        wgmma_wait<0>();
      }
      fence_registers(s);
      softmax_tile(s, j * kBlockN, p.tk, lane, scale_log2, row_max, row_sum, correction);
      // Buffer j & 1 was last read by P V of tile j - 2, finished in the previous iteration.
      store_p(s, p_tiles + static_cast<uint32_t>(j & 1) * kPTileBytes, warp, lane);
      wgmma_wait<0>();
      fence_registers(o);
      rescale(o, correction);
    }
  }
  if (Pipelined && tiles > 0) {
    // P and V of the last tile: the P stores and the copies of the last iteration's group.
    cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();
    fence_registers(o);
    wgmma_fence();
    issue_pv_shared(o, p_tiles + static_cast<uint32_t>((tiles - 1) & 1) * kPTileBytes,
                    v_tile(tiles - 1));
    wgmma_wait<0>();
    fence_registers(o);
  }
  cp_async_wait<0>();  // only empty groups can remain; nothing in flight at exit

  const int g = lane >> 2;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float total = row_sum[h];
    total += __shfl_xor_sync(0xffffffffu, total, 1);
    total += __shfl_xor_sync(0xffffffffu, total, 2);
    const float inv = 1.0f / total;
    const int row = m0 + warpgroup * 64 + warp * 16 + g + 8 * h;
    if (row >= p.tq) continue;
    float* out_row = p.out + static_cast<int64_t>(row) * p.out_stride +
                     static_cast<int64_t>(head) * kHeadDim + 2 * (lane & 3);
#pragma unroll
    for (int n = 0; n < 16; ++n) {
      const float x0 = o[4 * n + 2 * h] * inv;
      const float x1 = o[4 * n + 2 * h + 1] * inv;
      if (p.out_pairs) {
        *reinterpret_cast<float2*>(out_row + 8 * n) = make_float2(x0, x1);
      } else {
        out_row[8 * n] = x0;
        out_row[8 * n + 1] = x1;
      }
    }
  }
#endif
}

// Writes 1 when this compilation is the sm_90a one (the kernel above has a body).
__global__ void wgmma_probe_kernel(int* has_wgmma) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *has_wgmma = 1;
#else
  *has_wgmma = 0;
#endif
}

[[noreturn]] void throw_cuda(const char* what, cudaError_t status) {
  throw Error(ErrorKind::device,
              std::string("CUDA wgmma attention: ") + what + ": " + cudaGetErrorString(status));
}

bool probe_device(int device) {
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, device) != cudaSuccess) return false;
  if (props.major != 9 || props.minor != 0) return false;
  if (props.sharedMemPerBlockOptin < std::max(shared_bytes(false), shared_bytes(true))) return false;
  int* flag = nullptr;
  if (cudaMalloc(&flag, sizeof(int)) != cudaSuccess) return false;
  int host = 0;
  bool ok = cudaMemset(flag, 0, sizeof(int)) == cudaSuccess;
  if (ok) {
    wgmma_probe_kernel<<<1, 1>>>(flag);
    ok = cudaGetLastError() == cudaSuccess &&
         cudaMemcpy(&host, flag, sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess;
  }
  cudaFree(flag);
  return ok && host == 1;
}

}  // namespace

bool wgmma_attention_available() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  static std::mutex mutex;
  static std::vector<int> known;  // per device: -1 unknown, 0 no, 1 yes
  const std::lock_guard<std::mutex> lock(mutex);
  if (device >= static_cast<int>(known.size())) known.resize(static_cast<size_t>(device) + 1, -1);
  int& state = known[static_cast<size_t>(device)];
  if (state < 0) state = probe_device(device) ? 1 : 0;
  return state == 1;
}

void launch_wgmma_attention(const WgmmaAttentionParams& params, int heads, bool pipelined,
                            cudaStream_t stream) {
  void (*kernel)(WgmmaAttentionParams) =
      pipelined ? wgmma_attention_kernel<true> : wgmma_attention_kernel<false>;
  const size_t bytes = shared_bytes(pipelined);
  cudaError_t status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes));
  if (status != cudaSuccess) throw_cuda("shared memory opt-in", status);
  const dim3 grid(static_cast<unsigned>((params.tq + kBlockM - 1) / kBlockM),
                  static_cast<unsigned>(heads));
  kernel<<<grid, kThreads, bytes, stream>>>(params);
  status = cudaGetLastError();
  if (status != cudaSuccess) throw_cuda("launch", status);
}

}  // namespace strand::cuda::sm90
