// Softmax attention on the GPU (see attention.h for the contract).
//
// Two kernels:
//  - flash_attention_bf16_kernel<D, BlockN>: FlashAttention-2 style. A CTA of 4 warps owns 128
//    query rows of one head (32 rows per warp, so each K/V fragment read from shared memory feeds
//    two m16 tiles); K/V tiles of BlockN keys are double-buffered with cp.async; Q K^T and P V
//    run on mma.sync m16n8k16 bf16 with fp32 accumulators; the softmax statistics stay in fp32.
//  - attention_fp32_kernel: the exact path, a tiled online softmax with fp32 FMA and expf.
// tools/gpu/emulate_attention.sh runs both kernels' source on the CPU (no GPU needed).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/cuda/attention.h"
#include "strand/error.h"

namespace strand::cuda {
namespace {

using bfloat16 = __nv_bfloat16;

[[noreturn]] void throw_cuda(ErrorKind kind, const char* what, cudaError_t status) {
  throw Error(kind, std::string("CUDA attention: ") + what + ": " + cudaGetErrorString(status));
}

void check_launch(const char* what) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, what, status);
}

// ---------------------------------------------------------------------------------------------
// PTX wrappers (sm_80+ instructions, all valid on sm_90).

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16-byte global->shared copy that bypasses L1; valid == false writes 16 zero bytes instead
// (src-size 0 reads nothing), which pads partial tiles with zeros.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes));
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}

template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// d += a b for a 16x16 (row-major) bf16 A, a 16x8 (column-major) bf16 B and a 16x8 fp32 D.
__device__ __forceinline__ void mma_bf16_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                 uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x on the special-function unit; ex2.approx(-inf) = +0, which the online softmax relies on.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Two floats rounded to bf16 in one 32-bit register, `low` in the low half (the element with the
// smaller column index in an mma fragment).
__device__ __forceinline__ uint32_t pack_bf16x2(float low, float high) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// ---------------------------------------------------------------------------------------------
// Tensor-core kernel.

constexpr int kFlashWarps = 4;
constexpr int kFlashThreads = kFlashWarps * 32;
constexpr int kFlashRowsPerWarp = 32;                          // two m16 tiles
constexpr int kFlashBlockM = kFlashWarps * kFlashRowsPerWarp;  // 128 query rows per CTA
// Keys per tile (BlockN) when the caller does not choose: 64 at D = 64; at D = 128, 32 keeps the
// 128 output accumulators, the 32 score accumulators and the fragments within 255 registers
// (64 spills ~150 bytes per thread; both are built so that the benchmark can compare them).
template <int D>
constexpr int kDefaultFlashBlockN = D == 64 ? 64 : 32;

template <int D, int BlockN>
constexpr size_t flash_shared_bytes() {
  // Q [128][D] + K [2 stages][BlockN][D] + V [2 stages][BlockN][D], bf16.
  return static_cast<size_t>(kFlashBlockM + 4 * BlockN) * D * sizeof(bfloat16);
}

struct FlashParams {
  const bfloat16* q;
  const bfloat16* k;
  const bfloat16* v;
  float* out;
  int64_t q_stride, k_stride, v_stride, out_stride;  // elements between consecutive tokens
  int tq, tk;
  float scale_log2;  // scale * log2(e): the softmax runs in base 2
  bool out_pairs;    // out and out_stride allow 8-byte float2 stores
};

// Element offset of (row, 16-byte chunk) in a [rows][D] bf16 tile. The chunk index is XORed with
// the row's low 3 bits, so the 8 row addresses of one ldmatrix 8x8 matrix (same logical chunk,
// 8 consecutive rows) fall in 8 different 16-byte bank groups: no bank conflicts, for D = 64 (128-
// byte rows) as for D = 128 (256-byte rows).
template <int D>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

// Starts the async copy of rows [row0, row0 + Rows) of a [tokens][D] slice (row stride `stride`)
// into a swizzled shared tile; rows at or past `limit` become zeros.
template <int D, int Rows>
__device__ __forceinline__ void load_tile_async(bfloat16* tile, const bfloat16* slice,
                                                int64_t stride, int row0, int limit, int thread) {
  constexpr int kChunks = D / 8;
  constexpr int kTotal = Rows * kChunks;
  static_assert(kTotal % kFlashThreads == 0, "tile chunks must split evenly over the threads");
#pragma unroll
  for (int i = 0; i < kTotal / kFlashThreads; ++i) {
    const int index = thread + i * kFlashThreads;
    const int row = index / kChunks;
    const int chunk = index % kChunks;
    const int token = row0 + row;
    const bool valid = token < limit;
    const bfloat16* src = valid ? slice + static_cast<int64_t>(token) * stride + chunk * 8 : slice;
    cp_async_16(shared_address(tile + swizzled<D>(row, chunk)), src, valid);
  }
}

// Grid: x = query tile of 128 rows, y = head. Fragment layouts follow the PTX ISA for
// mma.m16n8k16: with g = lane / 4 and t = lane % 4, an accumulator holds (row g, cols 2t, 2t+1) in
// [0], [1] and (row g + 8, same cols) in [2], [3].
template <int D, int kFlashBlockN>
__global__ void __launch_bounds__(kFlashThreads, 2) flash_attention_bf16_kernel(FlashParams p) {
  static_assert(D == 64 || D == 128, "head dims 64 and 128");
  static_assert(kFlashBlockN == 32 || kFlashBlockN == 64, "key tiles of 32 or 64");
  constexpr int kDTiles = D / 8;               // n8 tiles of the output
  constexpr int kKeyTiles = kFlashBlockN / 8;  // n8 tiles of the scores
  extern __shared__ __align__(128) unsigned char shared_raw[];
  bfloat16* q_tile = reinterpret_cast<bfloat16*>(shared_raw);
  bfloat16* k_tiles = q_tile + kFlashBlockM * D;
  bfloat16* v_tiles = k_tiles + 2 * kFlashBlockN * D;

  const int thread = static_cast<int>(threadIdx.x);
  const int warp = thread / 32;
  const int lane = thread % 32;
  const int head = static_cast<int>(blockIdx.y);
  const int m0 = static_cast<int>(blockIdx.x) * kFlashBlockM;
  const bfloat16* q = p.q + static_cast<int64_t>(head) * D;
  const bfloat16* k = p.k + static_cast<int64_t>(head) * D;
  const bfloat16* v = p.v + static_cast<int64_t>(head) * D;

  load_tile_async<D, kFlashBlockM>(q_tile, q, p.q_stride, m0, p.tq, thread);
  cp_async_commit();
  load_tile_async<D, kFlashBlockN>(k_tiles, k, p.k_stride, 0, p.tk, thread);
  load_tile_async<D, kFlashBlockN>(v_tiles, v, p.v_stride, 0, p.tk, thread);
  cp_async_commit();

  float o[2][kDTiles][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nd = 0; nd < kDTiles; ++nd)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][nd][e] = 0.0f;
  // Per thread: rows g and g + 8 of each of the warp's two m16 tiles, in base-2 logit units.
  float row_max[2][2], row_sum[2][2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_max[mt][h] = -INFINITY;
      row_sum[mt][h] = 0.0f;  // this thread's partial sum; the quad's total is taken at the end
    }

  // Fragment addresses. Every ldmatrix row address has row % 8 == lane % 8, and the logical chunk
  // is (an even compile-time offset) | (a per-lane bit), so its swizzled position splits into a
  // per-lane part for each of the 4 values of (offset % 8), precomputed here, plus compile-time
  // row and chunk offsets that become ldmatrix immediates: 8 address registers instead of one
  // per (step, tile) pair.
  constexpr int kRowBytes = D * static_cast<int>(sizeof(bfloat16));
  // Q (A operand): lanes 0-15 rows 0-15 at dims +0..7, lanes 16-31 the same rows at dims +8..15
  // (matrices a0..a3 in order). V (B operand of P V, loaded transposed): lanes 0-7 keys +0..7
  // dims +0..7, lanes 8-15 keys +8..15 dims +0..7, lanes 16-31 the same at dims +8..15. Both
  // take the high-chunk bit from lane / 16.
  // K (B operand of Q K^T, rows = keys = n, columns = dims = k, i.e. B column-major as mma wants):
  // lanes 0-7 keys +0..7 dims +0..7, lanes 8-15 keys +0..7 dims +8..15, lanes 16-23 keys +8..15
  // dims +0..7, lanes 24-31 keys +8..15 dims +8..15: b0, b1 of key tile 2np, then of 2np + 1.
  uint32_t lo_hi_swizzle[4];  // for Q and V: chunk bit from lane / 16
  uint32_t k_swizzle[4];      // for K: chunk bit from (lane / 8) % 2
#pragma unroll
  for (int kl = 0; kl < 4; ++kl) {
    lo_hi_swizzle[kl] = static_cast<uint32_t>((((kl * 2) | (lane >> 4)) ^ (lane & 7)) << 4);
    k_swizzle[kl] = static_cast<uint32_t>((((kl * 2) | ((lane >> 3) & 1)) ^ (lane & 7)) << 4);
  }
  const int warp_row0 = warp * kFlashRowsPerWarp;
  const uint32_t q_rows =
      shared_address(q_tile) + static_cast<uint32_t>((warp_row0 + (lane & 15)) * kRowBytes);
  const uint32_t k_rows = shared_address(k_tiles) +
                          static_cast<uint32_t>(((lane & 7) + ((lane >> 4) << 3)) * kRowBytes);
  const uint32_t v_rows =
      shared_address(v_tiles) +
      static_cast<uint32_t>(((lane & 7) + (((lane >> 3) & 1) << 3)) * kRowBytes);
  constexpr uint32_t kStageBytes = kFlashBlockN * kRowBytes;

  const int key_tiles = (p.tk + kFlashBlockN - 1) / kFlashBlockN;
  for (int j = 0; j < key_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < key_tiles) {
      // The other stage was last read in iteration j - 1, which ended with a barrier.
      load_tile_async<D, kFlashBlockN>(k_tiles + (stage ^ 1) * kFlashBlockN * D, k, p.k_stride,
                                       (j + 1) * kFlashBlockN, p.tk, thread);
      load_tile_async<D, kFlashBlockN>(v_tiles + (stage ^ 1) * kFlashBlockN * D, v, p.v_stride,
                                       (j + 1) * kFlashBlockN, p.tk, thread);
      cp_async_commit();
      cp_async_wait<1>();  // everything but the prefetch just issued: Q and tile j
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint32_t k_stage = k_rows + stage * kStageBytes;
    const uint32_t v_stage = v_rows + stage * kStageBytes;

    // S = Q K^T for the warp's 32 rows x 64 keys.
    float s[2][kKeyTiles][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[mt][nt][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      // Dims kk*16.. are chunks 2kk, 2kk+1: bytes (kk / 4) * 128 plus the swizzled part.
      const uint32_t chunk_bytes = static_cast<uint32_t>((kk / 4) * 128);
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        ldmatrix_x4(a[mt], q_rows + static_cast<uint32_t>(mt * 16 * kRowBytes) + chunk_bytes +
                               lo_hi_swizzle[kk % 4]);
      }
#pragma unroll
      for (int np = 0; np < kKeyTiles / 2; ++np) {
        uint32_t b[4];
        ldmatrix_x4(b, k_stage + static_cast<uint32_t>(np * 16 * kRowBytes) + chunk_bytes +
                           k_swizzle[kk % 4]);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_bf16_16x8x16(s[mt][2 * np], a[mt], b[0], b[1]);
          mma_bf16_16x8x16(s[mt][2 * np + 1], a[mt], b[2], b[3]);
        }
      }
    }

    // Scale into base-2 units, then mask the keys past tk (zero-padded, so their dot products are
    // 0, not garbage). Scaling first keeps the mask right for any sign of scale.
    const int key0 = j * kFlashBlockN;
    const bool partial = key0 + kFlashBlockN > p.tk;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float x = s[mt][nt][e] * p.scale_log2;
          const int key = key0 + nt * 8 + 2 * (lane & 3) + (e & 1);
          s[mt][nt][e] = (partial && key >= p.tk) ? -INFINITY : x;
        }

        // Online softmax. Every tile holds at least one real key, so the new maximum is finite and
        // exp2(old - new) is 0 on the first tile (old = -inf), never NaN.
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
          tile_max = fmaxf(tile_max, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
        // The 4 threads of a quad share the row.
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
        const float new_max = fmaxf(row_max[mt][h], tile_max);
        const float correction = fast_exp2(row_max[mt][h] - new_max);
        row_max[mt][h] = new_max;
        float tile_sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            const float prob = fast_exp2(s[mt][nt][e] - new_max);
            s[mt][nt][e] = prob;
            tile_sum += prob;
          }
        row_sum[mt][h] = row_sum[mt][h] * correction + tile_sum;
#pragma unroll
        for (int nd = 0; nd < kDTiles; ++nd) {
          o[mt][nd][2 * h] *= correction;
          o[mt][nd][2 * h + 1] *= correction;
        }
      }

      // O += P V. The score accumulators of key tiles 2kk and 2kk+1 are exactly the A fragment of
      // a 16-key step (a0: row g keys lo, a1: row g+8 keys lo, a2/a3: keys hi).
#pragma unroll
    for (int kk = 0; kk < kFlashBlockN / 16; ++kk) {
      uint32_t a[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_stage + static_cast<uint32_t>(kk * 16 * kRowBytes) +
                                 static_cast<uint32_t>((dp / 4) * 128) + lo_hi_swizzle[dp % 4]);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma_bf16_16x8x16(o[mt][2 * dp], a[mt], b[0], b[1]);
          mma_bf16_16x8x16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // this stage is overwritten by the prefetch of iteration j + 1
  }

  // Normalise and store fp32. Shuffles first: every lane takes part, rows past tq included.
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float total = row_sum[mt][h];
      total += __shfl_xor_sync(0xffffffffu, total, 1);
      total += __shfl_xor_sync(0xffffffffu, total, 2);
      const float inv = 1.0f / total;
      const int row = m0 + warp_row0 + mt * 16 + (lane >> 2) + 8 * h;
      if (row >= p.tq) continue;
      float* out_row = p.out + static_cast<int64_t>(row) * p.out_stride +
                       static_cast<int64_t>(head) * D + 2 * (lane & 3);
#pragma unroll
      for (int nd = 0; nd < kDTiles; ++nd) {
        const float x0 = o[mt][nd][2 * h] * inv;
        const float x1 = o[mt][nd][2 * h + 1] * inv;
        if (p.out_pairs) {
          *reinterpret_cast<float2*>(out_row + nd * 8) = make_float2(x0, x1);
        } else {
          out_row[nd * 8] = x0;
          out_row[nd * 8 + 1] = x1;
        }
      }
    }
}

template <int D, int BlockN>
void launch_flash(const FlashParams& params, int heads, cudaStream_t stream) {
  constexpr size_t shared_bytes = flash_shared_bytes<D, BlockN>();
  // Above 48 KB dynamic shared memory must be opted into; the carveout hint lets two CTAs share
  // an SM (2 x 96 KB for D = 128).
  cudaError_t status = cudaFuncSetAttribute(flash_attention_bf16_kernel<D, BlockN>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(shared_bytes));
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "shared memory opt-in", status);
  status = cudaFuncSetAttribute(flash_attention_bf16_kernel<D, BlockN>,
                                cudaFuncAttributePreferredSharedMemoryCarveout,
                                cudaSharedmemCarveoutMaxShared);
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "shared memory carveout", status);
  const dim3 grid(static_cast<unsigned>((params.tq + kFlashBlockM - 1) / kFlashBlockM),
                  static_cast<unsigned>(heads));
  flash_attention_bf16_kernel<D, BlockN><<<grid, kFlashThreads, shared_bytes, stream>>>(params);
  check_launch("flash attention launch");
}

// ---------------------------------------------------------------------------------------------
// Exact fp32 kernel: any head dim that fits in shared memory.

constexpr int kExactRows = 32;  // query rows per CTA
constexpr int kExactKeys = 32;  // keys per tile: one per lane, so row softmax is a warp reduction
constexpr int kExactWarps = 8;  // warp w owns rows w, w + 8, w + 16, w + 24
constexpr int kExactThreads = kExactWarps * 32;
constexpr int kExactRowsPerWarp = kExactRows / kExactWarps;

size_t exact_shared_bytes(int head_dim) {
  // Q, V, O [32][D]; K [32][D + 1] (the pad puts lane c's K row in its own bank); P [32][32].
  return (static_cast<size_t>(kExactRows) * head_dim * 3 +
          static_cast<size_t>(kExactKeys) * (head_dim + 1) +
          static_cast<size_t>(kExactRows) * kExactKeys) *
         sizeof(float);
}

struct ExactParams {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  int64_t q_stride, k_stride, v_stride, out_stride;
  int tq, tk, head_dim;
  float scale;
};

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__global__ void __launch_bounds__(kExactThreads) attention_fp32_kernel(ExactParams p) {
  extern __shared__ float shared[];
  const int D = p.head_dim;
  const int k_pitch = D + 1;
  float* q_tile = shared;
  float* k_tile = q_tile + kExactRows * D;
  float* v_tile = k_tile + kExactKeys * k_pitch;
  float* o_tile = v_tile + kExactKeys * D;
  float* p_tile = o_tile + kExactRows * D;

  const int thread = static_cast<int>(threadIdx.x);
  const int warp = thread / 32;
  const int lane = thread % 32;
  const int head = static_cast<int>(blockIdx.y);
  const int m0 = static_cast<int>(blockIdx.x) * kExactRows;
  const int64_t head_offset = static_cast<int64_t>(head) * D;

  for (int i = thread; i < kExactRows * D; i += kExactThreads) {
    const int row = m0 + i / D;
    q_tile[i] = row < p.tq ? p.q[row * p.q_stride + head_offset + i % D] : 0.0f;
    o_tile[i] = 0.0f;
  }
  float row_max[kExactRowsPerWarp], row_sum[kExactRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kExactRowsPerWarp; ++r) {
    row_max[r] = -INFINITY;
    row_sum[r] = 0.0f;
  }

  for (int key0 = 0; key0 < p.tk; key0 += kExactKeys) {
    __syncthreads();  // the previous tile is no longer read
    for (int i = thread; i < kExactKeys * D; i += kExactThreads) {
      const int key = key0 + i / D;
      const int d = i % D;
      const bool valid = key < p.tk;
      k_tile[(i / D) * k_pitch + d] = valid ? p.k[key * p.k_stride + head_offset + d] : 0.0f;
      v_tile[i] = valid ? p.v[key * p.v_stride + head_offset + d] : 0.0f;
    }
    __syncthreads();

    const bool key_valid = key0 + lane < p.tk;
    float correction[kExactRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kExactRowsPerWarp; ++r) {
      const int row = warp + r * kExactWarps;
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot = fmaf(q_tile[row * D + d], k_tile[lane * k_pitch + d], dot);
      const float logit = key_valid ? dot * p.scale : -INFINITY;
      const float new_max = fmaxf(row_max[r], warp_max(logit));  // finite: lane 0's key is real
      correction[r] = expf(row_max[r] - new_max);
      const float prob = key_valid ? expf(logit - new_max) : 0.0f;
      row_sum[r] = row_sum[r] * correction[r] + warp_sum(prob);
      row_max[r] = new_max;
      p_tile[row * kExactKeys + lane] = prob;
    }
    __syncwarp();  // a warp reads back only the P rows it wrote
#pragma unroll
    for (int r = 0; r < kExactRowsPerWarp; ++r) {
      const int row = warp + r * kExactWarps;
      for (int d = lane; d < D; d += 32) {
        float acc = o_tile[row * D + d] * correction[r];
        for (int c = 0; c < kExactKeys; ++c)
          acc = fmaf(p_tile[row * kExactKeys + c], v_tile[c * D + d], acc);
        o_tile[row * D + d] = acc;
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < kExactRowsPerWarp; ++r) {
    const int row = warp + r * kExactWarps;
    if (m0 + row >= p.tq) continue;
    const float inv = 1.0f / row_sum[r];
    float* out_row = p.out + (m0 + row) * p.out_stride + head_offset;
    for (int d = lane; d < D; d += 32) out_row[d] = o_tile[row * D + d] * inv;
  }
}

void launch_exact(const ExactParams& params, int heads, cudaStream_t stream) {
  const size_t shared_bytes = exact_shared_bytes(params.head_dim);
  int device = 0;
  int limit = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess)
    status = cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "device query", status);
  if (shared_bytes > static_cast<size_t>(limit)) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention: head_dim " +
                                                 std::to_string(params.head_dim) +
                                                 " needs more shared memory than the device has");
  }
  status = cudaFuncSetAttribute(attention_fp32_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(shared_bytes));
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "shared memory opt-in", status);
  const dim3 grid(static_cast<unsigned>((params.tq + kExactRows - 1) / kExactRows),
                  static_cast<unsigned>(heads));
  attention_fp32_kernel<<<grid, kExactThreads, shared_bytes, stream>>>(params);
  check_launch("fp32 attention launch");
}

// ---------------------------------------------------------------------------------------------
// fp32 -> bf16 conversion.

__global__ void convert_rows_vec4_kernel(const float* src, int64_t src_stride, bfloat16* dst,
                                         int64_t rows, int width) {
  const int quads = width / 4;
  const int64_t total = rows * quads;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / quads;
    const int col = static_cast<int>(i % quads) * 4;
    const float4 x = *reinterpret_cast<const float4*>(src + row * src_stride + col);
    __nv_bfloat162 pair[2] = {__floats2bfloat162_rn(x.x, x.y), __floats2bfloat162_rn(x.z, x.w)};
    *reinterpret_cast<uint2*>(dst + row * width + col) = *reinterpret_cast<const uint2*>(pair);
  }
}

__global__ void convert_rows_scalar_kernel(const float* src, int64_t src_stride, bfloat16* dst,
                                           int64_t rows, int width) {
  const int64_t total = rows * width;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / width;
    const int col = static_cast<int>(i % width);
    dst[i] = __float2bfloat16_rn(src[row * src_stride + col]);
  }
}

bool aligned_to(const void* pointer, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

void check_sizes(int q_stride, int k_stride, int v_stride, int out_stride, int tq, int tk,
                 int heads, int head_dim) {
  if (tq < 0 || tk < 0 || heads < 0 || head_dim < 0) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention: negative size");
  }
  if (heads > 65535) throw Error(ErrorKind::invalid_argument, "CUDA attention: over 65535 heads");
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  if (q_stride < width || out_stride < width ||
      (tk > 0 && (k_stride < width || v_stride < width))) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA attention: a row stride is smaller than heads * head_dim");
  }
}

// Softmax over no keys: the output rows are zeros, as on the CPU.
void zero_output(float* out, int out_stride, int tq, int heads, int head_dim,
                 cudaStream_t stream) {
  const cudaError_t status =
      cudaMemset2DAsync(out, static_cast<size_t>(out_stride) * sizeof(float), 0,
                        static_cast<size_t>(heads) * head_dim * sizeof(float), tq, stream);
  if (status != cudaSuccess) throw_cuda(ErrorKind::device, "zero fill", status);
}

// Stream-ordered scratch memory, freed (stream-ordered) on every exit path.
class StreamScratch {
 public:
  StreamScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    const cudaError_t status = cudaMallocAsync(&memory_, bytes, stream);
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw_cuda(ErrorKind::out_of_memory, "scratch allocation", status);
    }
  }
  ~StreamScratch() { cudaFreeAsync(memory_, stream_); }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  [[nodiscard]] void* get() const { return memory_; }

 private:
  void* memory_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace

void convert_rows_to_bf16(const float* src, int src_stride, __nv_bfloat16* dst, int rows, int width,
                          cudaStream_t stream) {
  if (rows <= 0 || width <= 0) return;
  constexpr int kThreads = 256;
  const bool vec4 =
      width % 4 == 0 && src_stride % 4 == 0 && aligned_to(src, 16) && aligned_to(dst, 8);
  const int64_t items = static_cast<int64_t>(rows) * (vec4 ? width / 4 : width);
  // Enough blocks to fill the device several times over; the grid-stride loop does the rest.
  const int blocks = static_cast<int>(std::min<int64_t>((items + kThreads - 1) / kThreads, 4096));
  if (vec4) {
    convert_rows_vec4_kernel<<<blocks, kThreads, 0, stream>>>(src, src_stride, dst, rows, width);
  } else {
    convert_rows_scalar_kernel<<<blocks, kThreads, 0, stream>>>(src, src_stride, dst, rows, width);
  }
  check_launch("bf16 conversion launch");
}

void attention_bf16(const __nv_bfloat16* q, int q_stride, const __nv_bfloat16* k, int k_stride,
                    const __nv_bfloat16* v, int v_stride, float* out, int out_stride, int tq,
                    int tk, int heads, int head_dim, float scale, cudaStream_t stream,
                    int key_tile) {
  check_sizes(q_stride, k_stride, v_stride, out_stride, tq, tk, heads, head_dim);
  if (key_tile != 0 && key_tile != 32 && key_tile != 64) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention_bf16: key_tile must be 0, 32 or 64");
  }
  if (head_dim != 64 && head_dim != 128) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention_bf16: head_dim must be 64 or 128");
  }
  if (!aligned_to(q, 16) || !aligned_to(k, 16) || !aligned_to(v, 16) || q_stride % 8 != 0 ||
      k_stride % 8 != 0 || v_stride % 8 != 0) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA attention_bf16: q, k, v need 16-byte alignment and strides that are "
                "multiples of 8");
  }
  if (tq == 0 || heads == 0) return;
  if (tk == 0) {
    zero_output(out, out_stride, tq, heads, head_dim, stream);
    return;
  }
  FlashParams params{};
  params.q = q;
  params.k = k;
  params.v = v;
  params.out = out;
  params.q_stride = q_stride;
  params.k_stride = k_stride;
  params.v_stride = v_stride;
  params.out_stride = out_stride;
  params.tq = tq;
  params.tk = tk;
  params.scale_log2 = scale * 1.44269504088896341f;
  params.out_pairs = out_stride % 2 == 0 && aligned_to(out, 8);
  if (key_tile == 0) key_tile = head_dim == 64 ? kDefaultFlashBlockN<64> : kDefaultFlashBlockN<128>;
  if (head_dim == 64) {
    key_tile == 32 ? launch_flash<64, 32>(params, heads, stream)
                   : launch_flash<64, 64>(params, heads, stream);
  } else {
    key_tile == 32 ? launch_flash<128, 32>(params, heads, stream)
                   : launch_flash<128, 64>(params, heads, stream);
  }
}

size_t attention_workspace_bytes(int tq, int tk, int heads, int head_dim, bool bf16) {
  if (!bf16 || (head_dim != 64 && head_dim != 128) || tq <= 0 || tk <= 0 || heads <= 0) return 0;
  const size_t width = static_cast<size_t>(heads) * head_dim;
  return (static_cast<size_t>(tq) + 2 * static_cast<size_t>(tk)) * width * sizeof(bfloat16);
}

void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale, bool bf16, cudaStream_t stream) {
  const size_t bytes = attention_workspace_bytes(tq, tk, heads, head_dim, bf16);
  if (bytes == 0) {
    attention(q, q_stride, k, k_stride, v, v_stride, out, out_stride, tq, tk, heads, head_dim,
              scale, bf16, nullptr, 0, stream);
    return;
  }
  check_sizes(q_stride, k_stride, v_stride, out_stride, tq, tk, heads, head_dim);
  StreamScratch scratch(bytes, stream);
  attention(q, q_stride, k, k_stride, v, v_stride, out, out_stride, tq, tk, heads, head_dim, scale,
            bf16, scratch.get(), bytes, stream);
}

void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
               int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
               float scale, bool bf16, void* workspace, size_t workspace_bytes,
               cudaStream_t stream) {
  check_sizes(q_stride, k_stride, v_stride, out_stride, tq, tk, heads, head_dim);
  if (tq == 0 || heads == 0 || head_dim == 0) return;
  if (tk == 0) {
    zero_output(out, out_stride, tq, heads, head_dim, stream);
    return;
  }
  if (bf16 && (head_dim == 64 || head_dim == 128)) {
    // Packed bf16 copies (row stride = width, a multiple of 64, so 16-byte aligned rows).
    const int width = heads * head_dim;
    const size_t q_elems = static_cast<size_t>(tq) * width;
    const size_t kv_elems = static_cast<size_t>(tk) * width;
    if (workspace == nullptr ||
        workspace_bytes < attention_workspace_bytes(tq, tk, heads, head_dim, bf16) ||
        !aligned_to(workspace, 16)) {
      throw Error(ErrorKind::invalid_argument,
                  "CUDA attention: the bf16 path needs a 16-byte aligned workspace of "
                  "attention_workspace_bytes()");
    }
    auto* q16 = static_cast<bfloat16*>(workspace);
    bfloat16* k16 = q16 + q_elems;
    bfloat16* v16 = k16 + kv_elems;
    convert_rows_to_bf16(q, q_stride, q16, tq, width, stream);
    convert_rows_to_bf16(k, k_stride, k16, tk, width, stream);
    convert_rows_to_bf16(v, v_stride, v16, tk, width, stream);
    attention_bf16(q16, width, k16, width, v16, width, out, out_stride, tq, tk, heads, head_dim,
                   scale, stream);
    return;
  }
  ExactParams params{};
  params.q = q;
  params.k = k;
  params.v = v;
  params.out = out;
  params.q_stride = q_stride;
  params.k_stride = k_stride;
  params.v_stride = v_stride;
  params.out_stride = out_stride;
  params.tq = tq;
  params.tk = tk;
  params.head_dim = head_dim;
  params.scale = scale;
  launch_exact(params, heads, stream);
}

}  // namespace strand::cuda
