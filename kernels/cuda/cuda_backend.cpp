// The CUDA backend: device buffers, one non-blocking stream, cuBLAS, pinned staging buffers, and
// each op forwarded to its launcher in kernels/cuda. All work is ordered on the one stream, so
// scratch memory is reused without extra synchronisation; only download() and synchronize() wait.
#include "kernels/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda/activation.h"
#include "kernels/cuda/conv.h"
#include "kernels/cuda/gates.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/qk_norm_rope.h"
#include "kernels/cuda/residual.h"
#include "kernels/cuda/residual_norm.h"
#include "kernels/cuda/rope.h"
#include "strand/error.h"
#ifdef STRAND_CUDA_HAVE_ATTENTION
#include "kernels/cuda/attention.h"
#endif
#ifdef STRAND_CUDA_HAVE_DELTA_RULE
#include "kernels/cuda/delta_rule.h"
#endif

namespace strand::cuda {
namespace {

// Pinned staging: two halves used in turn for uploads (the CPU fills one while the copy engine
// drains the other) and one area for downloads.
constexpr size_t kStagingHalfBytes = size_t{8} << 20;
constexpr size_t kDownloadBytes = size_t{8} << 20;
// im2col columns per convolution band (elements of the GEMM input type): 64 MiB of fp32.
constexpr size_t kConvWorkspaceElements = size_t{16} << 20;

std::string cuda_message(cudaError_t e) {
  return std::string(cudaGetErrorString(e)) + " (" + cudaGetErrorName(e) + ")";
}

// Device scratch areas, each grow-only and reused in stream order.
enum ScratchSlot {
  kActivationsBf16 = 0,
  kConvColumns,
  kDeltaWorkspace,
  kAttentionWorkspace,
  kHiddenBf16,    // the feed-forward's hidden activations, written by one GEMM, read by the next
  kLtWorkspace,   // cuBLASLt's per-call workspace
  kScratchSlots
};

// RoPE position sets kept on the device: an engine passes the same few arrays every pass, so
// each distinct set is uploaded once (a softmax_kv layer adds one per cached block age).
constexpr size_t kResidentPositionSets = 32;
// RoPE angle tables kept per position set (one per head_dim / 2 and theta; a model uses one).
constexpr size_t kRopeTablesPerSet = 4;

// Everything the backend and its buffers share; buffers keep it alive, so a buffer may outlive
// the backend object.
class Device {
 public:
  Device(int index, ComputePrecision precision) : index_(index), precision_(precision) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      const cudaError_t e = cudaGetLastError();
      throw Error(ErrorKind::unsupported, "no usable CUDA device: " + cuda_message(e));
    }
    if (index < 0 || index >= count) {
      throw Error(ErrorKind::unsupported, "no CUDA device " + std::to_string(index) + " (" +
                                              std::to_string(count) + " found)");
    }
    check(cudaSetDevice(index), "selecting the device");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "creating a stream");
    if (cublasCreate(&blas_) != CUBLAS_STATUS_SUCCESS) {
      cleanup();
      throw Error(ErrorKind::device,
                  "cuBLAS could not be initialised on CUDA device " + std::to_string(index));
    }
    cublasSetStream(blas_, stream_);
    // fp32 parity: no TF32 tensor-core shortcuts in SGEMM (bf16 GemmEx uses tensor cores anyway).
    cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH);
    try {
      check(cudaHostAlloc(reinterpret_cast<void**>(&upload_staging_), 2 * kStagingHalfBytes,
                          cudaHostAllocDefault),
            "allocating pinned upload staging");
      check(cudaHostAlloc(reinterpret_cast<void**>(&download_staging_), kDownloadBytes,
                          cudaHostAllocDefault),
            "allocating pinned download staging");
      for (auto& event : half_done_) {
        check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "creating an event");
      }
    } catch (...) {
      cleanup();
      throw;
    }
    name_ = precision == ComputePrecision::bf16 ? "cuda-bf16" : "cuda";
  }
  ~Device() { cleanup(); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  [[nodiscard]] cudaStream_t stream() const { return stream_; }
  [[nodiscard]] cublasHandle_t blas() const { return blas_; }
  [[nodiscard]] bool bf16() const { return precision_ == ComputePrecision::bf16; }
  [[nodiscard]] const std::string& name() const { return name_; }

  // Throws if an earlier sticky error lost the context; makes this thread use our device.
  void enter() {
    if (failed_) throw Error(ErrorKind::device, failure_);
    int current = -1;
    if (cudaGetDevice(&current) == cudaSuccess && current == index_) return;
    if (cudaSetDevice(index_) != cudaSuccess) check(cudaGetLastError(), "selecting the device");
  }

  // ---- recording (CUDA graphs, see Backend::begin_recording)
  [[nodiscard]] bool recording() const { return recording_; }
  [[nodiscard]] uint64_t generation() const { return generation_.load(); }
  void begin_recording() {
    enter();
    if (recording_) throw Error(ErrorKind::invalid_argument, "already recording");
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "starting a recording");
    recording_ = true;
  }
  // The instantiated graph; Error(unsupported) when the capture was invalidated.
  cudaGraphExec_t end_recording() {
    if (!recording_) throw Error(ErrorKind::invalid_argument, "not recording (it was aborted)");
    recording_ = false;
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (ended != cudaSuccess || graph == nullptr) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw Error(ErrorKind::unsupported, "recording failed: " + cuda_message(ended));
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check(made, "instantiating a recording");
    return exec;
  }
  // Anything but an op or a device copy while recording: abort the capture and say so.
  void not_while_recording(const char* what) {
    if (!recording_) return;
    abort_recording();
    throw Error(ErrorKind::unsupported, std::string(what) + " cannot be recorded");
  }
  void abort_recording() noexcept {
    if (!recording_) return;
    recording_ = false;
    cudaGraph_t graph = nullptr;
    cudaStreamEndCapture(stream_, &graph);
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
  }
  void memory_reused() { generation_.fetch_add(1); }

  // Turns a CUDA status into the error the backend contract promises.
  void check(cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    abort_recording();
    cudaGetLastError();  // clear a non-sticky error so that the backend stays usable
    if (e == cudaErrorMemoryAllocation) {
      throw Error(ErrorKind::out_of_memory, std::string("out of GPU memory ") + what +
                                                " on CUDA device " + std::to_string(index_));
    }
    // A sticky error (illegal address, launch failure, ECC...) keeps failing every call: the
    // context is lost for this process.
    if (cudaDeviceSynchronize() != cudaSuccess) {
      failed_ = true;
      failure_ = std::string("CUDA device ") + std::to_string(index_) + " failed " + what + ": " +
                 cuda_message(e) +
                 "; the GPU cannot be used again by this process (save, then restart or continue "
                 "on the CPU)";
      throw Error(ErrorKind::device, failure_);
    }
    throw Error(ErrorKind::device, std::string("CUDA error ") + what + ": " + cuda_message(e));
  }
  void check_blas(cublasStatus_t status, const char* what) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    check(cudaGetLastError(), what);  // a CUDA failure underneath reports itself first
    if (status == CUBLAS_STATUS_ALLOC_FAILED) {
      throw Error(ErrorKind::out_of_memory, std::string("out of GPU memory in cuBLAS ") + what);
    }
    throw Error(ErrorKind::device,
                std::string("cuBLAS failed ") + what + ": " + cublasGetStatusString(status));
  }
  void after_launch(const char* what) { check(cudaGetLastError(), what); }

  // cudaMalloc with the contract's errors (out_of_memory, device).
  void* allocate_bytes(size_t bytes, const char* what) {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<size_t>(bytes, 1)), what);
    return p;
  }

  float* allocate_buffer(size_t count) {
    enter();
    not_while_recording("allocating device memory");
    if (count > std::numeric_limits<size_t>::max() / sizeof(float)) {
      throw Error(ErrorKind::out_of_memory, "out of GPU memory: a buffer of " +
                                                std::to_string(count) + " floats is too large");
    }
    const std::string what = "allocating " + std::to_string(count * sizeof(float)) + " bytes";
    auto* p = static_cast<float*>(allocate_bytes(count * sizeof(float), what.c_str()));
    const cudaError_t e = cudaMemsetAsync(p, 0, count * sizeof(float), stream_);
    if (e != cudaSuccess) {
      cudaFree(p);
      check(e, "zeroing a new buffer");
    }
    std::lock_guard lock(mutex_);
    allocations_[p] = count;
    return p;
  }

  void free_buffer(float* p) noexcept {
    memory_reused();
    {
      std::lock_guard lock(mutex_);
      const auto it = allocations_.find(p);
      if (it != allocations_.end()) {
        drop_cached_in(p, it->second);
        allocations_.erase(it);
      }
    }
    if (!failed_) {
      cudaSetDevice(index_);
      cudaFree(p);  // waits for queued work that may still use it
    }
  }

  // A write through upload/copy: bf16 copies of weights in the written allocation are stale.
  void written(const float* p) {
    std::lock_guard lock(mutex_);
    if ((bf16_weights_.empty() && aligned_copies_.empty()) || allocations_.empty()) return;
    auto it = allocations_.upper_bound(p);
    if (it == allocations_.begin()) return;
    --it;
    if (p < it->first + it->second) drop_cached_in(it->first, it->second);
  }

  // bf16 copy of the weight at w (count floats), converted on first use.
  const __nv_bfloat16* bf16_weight(const float* w, size_t count) {
    std::lock_guard lock(mutex_);
    auto it = bf16_weights_.find(w);
    if (it != bf16_weights_.end() && it->second.count == count) return it->second.values;
    not_while_recording("converting a weight to bf16");
    if (it != bf16_weights_.end()) {
      memory_reused();
      cudaFree(it->second.values);
      bf16_weights_.erase(it);
    }
    auto* values = static_cast<__nv_bfloat16*>(
        allocate_bytes(count * sizeof(__nv_bfloat16), "caching a bf16 copy of a weight"));
    to_bf16(w, values, count, stream_);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
      cudaFree(values);
      check(e, "converting a weight to bf16");
    }
    bf16_weights_[w] = {values, count};
    return values;
  }

  // A 256-byte-aligned fp32 copy of the vector at v (count floats): cuBLASLt reads epilogue
  // biases with vector loads, and weights inside one model buffer are only float-aligned. An
  // aligned v is returned as it is.
  const float* aligned_vector(const float* v, size_t count) {
    if (reinterpret_cast<uintptr_t>(v) % 256 == 0) return v;
    std::lock_guard lock(mutex_);
    auto it = aligned_copies_.find(v);
    if (it != aligned_copies_.end() && it->second.count == count) return it->second.values;
    not_while_recording("copying a bias");
    if (it != aligned_copies_.end()) {
      memory_reused();
      cudaFree(it->second.values);
      aligned_copies_.erase(it);
    }
    auto* values = static_cast<float*>(allocate_bytes(count * sizeof(float), "copying a bias"));
    check(cudaMemcpyAsync(values, v, count * sizeof(float), cudaMemcpyDeviceToDevice, stream_),
          "copying a bias");
    aligned_copies_[v] = {values, count};
    return values;
  }

  // Made on first use, on this device (enter() has selected it).
  LtGemm& lt() {
    if (!lt_) lt_ = std::make_unique<LtGemm>();
    return *lt_;
  }

  // Grow-only device scratch areas, reused in stream order.
  void* scratch(ScratchSlot slot, size_t bytes) {
    Scratch& s = scratch_[slot];
    if (s.bytes < bytes) {
      not_while_recording("growing scratch memory");
      memory_reused();
      if (s.data != nullptr) cudaFree(s.data);
      s.data = nullptr;
      s.bytes = 0;
      s.data = allocate_bytes(bytes, "allocating scratch memory");
      s.bytes = bytes;
    }
    return s.data;
  }

  // The RoPE angle table (cuda::rope_3d_table) of these positions for head_dim and theta, on the
  // device. Made the first time the position values (compared by value, not by host address),
  // head_dim / 2 and theta's bits are seen together, then reused while their position set stays
  // resident: a call then reads the table instead of evaluating pow and sincos in double.
  const float2* rope_angles(const int* pos_t, const int* pos_r, const int* pos_c, int tokens,
                            int head_dim, float theta) {
    PositionSet& set = position_set(pos_t, pos_r, pos_c, tokens);
    const int pairs = head_dim / 2;
    const auto theta_bits = std::bit_cast<uint32_t>(theta);
    for (const RopeTable& table : set.tables) {
      if (table.valid && table.pairs == pairs && table.theta_bits == theta_bits) {
        return table.device;
      }
    }
    // A recording would only capture the table's kernel, not run it: the table would be marked
    // valid but hold nothing until a replay.
    not_while_recording("computing RoPE angles");
    const size_t entries = rope_table_entries(tokens, head_dim);
    size_t slot = set.tables.size();
    for (size_t i = 0; i < set.tables.size(); ++i) {
      if (!set.tables[i].valid && set.tables[i].capacity >= entries) {
        slot = i;
        break;
      }
    }
    if (slot == set.tables.size() && set.tables.size() >= kRopeTablesPerSet) {
      slot = 0;  // the oldest: its values change under any recording that read them
      set.tables[0].valid = false;
      memory_reused();
    }
    if (slot == set.tables.size()) set.tables.emplace_back();
    RopeTable& table = set.tables[slot];
    if (table.capacity < entries) {
      if (table.device != nullptr) {
        memory_reused();
        cudaFree(table.device);  // waits for queued work that may still read it
      }
      table.device = nullptr;
      table.capacity = 0;
      table.device = static_cast<float2*>(
          allocate_bytes(entries * sizeof(float2), "caching RoPE angles"));
      table.capacity = entries;
    }
    const int* positions = set.device;
    const size_t n = static_cast<size_t>(tokens);
    rope_3d_table(table.device, tokens, head_dim, positions, positions + n, positions + 2 * n,
                  theta, stream_);
    check(cudaGetLastError(), "computing RoPE angles");
    table.valid = true;
    table.pairs = pairs;
    table.theta_bits = theta_bits;
    // Most recent last, so that slot 0 is the one replaced past kRopeTablesPerSet.
    std::rotate(set.tables.begin() + static_cast<std::ptrdiff_t>(slot),
                set.tables.begin() + static_cast<std::ptrdiff_t>(slot) + 1, set.tables.end());
    return set.tables.back().device;
  }

 private:
  // The RoPE angles of one position set for one (head_dim / 2, theta).
  struct RopeTable {
    float2* device = nullptr;
    size_t capacity = 0;  // float2 entries at `device`
    bool valid = false;   // holds the angles of its set for pairs and theta_bits
    int pairs = 0;
    uint32_t theta_bits = 0;
  };
  struct PositionSet {
    std::vector<int> values;  // t, then r, then c
    int* device = nullptr;
    size_t capacity = 0;           // ints at `device`
    std::vector<RopeTable> tables;  // least recently made first
  };

  // Frees a set's device memory (waits for queued work that may still read it).
  static void free_position_set(PositionSet& set) noexcept {
    cudaFree(set.device);
    set.device = nullptr;
    for (RopeTable& table : set.tables) cudaFree(table.device);
    set.tables.clear();
  }

  // Device copy of three position arrays of `tokens` ints each (packed t, r, c), uploaded the
  // first time these values are seen; least recently used sets are dropped past the limit. The
  // set returned is the most recent (position_sets_.back()).
  PositionSet& position_set(const int* pos_t, const int* pos_r, const int* pos_c, int tokens) {
    const size_t n = static_cast<size_t>(tokens);
    auto same = [&](const PositionSet& set) {
      return set.values.size() == 3 * n &&
             std::equal(pos_t, pos_t + n, set.values.begin()) &&
             std::equal(pos_r, pos_r + n, set.values.begin() + static_cast<std::ptrdiff_t>(n)) &&
             std::equal(pos_c, pos_c + n, set.values.begin() + static_cast<std::ptrdiff_t>(2 * n));
    };
    for (size_t i = 0; i < position_sets_.size(); ++i) {
      if (!same(position_sets_[i])) continue;
      if (i + 1 != position_sets_.size()) {  // most recent last
        std::rotate(position_sets_.begin() + static_cast<std::ptrdiff_t>(i),
                    position_sets_.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                    position_sets_.end());
      }
      return position_sets_.back();
    }
    not_while_recording("uploading RoPE positions");
    PositionSet set;
    set.values.reserve(3 * n);
    set.values.insert(set.values.end(), pos_t, pos_t + n);
    set.values.insert(set.values.end(), pos_r, pos_r + n);
    set.values.insert(set.values.end(), pos_c, pos_c + n);
    if (position_sets_.size() >= kResidentPositionSets && position_sets_.front().capacity >= 3 * n) {
      // Reuse the least recently used set's memory: the upload is ordered on the one stream
      // after every kernel that read the old values, so nothing waits. Its angle tables' memory
      // too, marked invalid (rewritten in stream order when this set's angles are made).
      set.device = position_sets_.front().device;
      set.capacity = position_sets_.front().capacity;
      set.tables = std::move(position_sets_.front().tables);
      for (RopeTable& table : set.tables) table.valid = false;
      position_sets_.erase(position_sets_.begin());
      memory_reused();
    } else {
      if (position_sets_.size() >= kResidentPositionSets) {
        memory_reused();
        free_position_set(position_sets_.front());
        position_sets_.erase(position_sets_.begin());
      }
      set.device = static_cast<int*>(allocate_bytes(3 * n * sizeof(int), "caching RoPE positions"));
      set.capacity = 3 * n;
    }
    try {
      upload_bytes(set.device, set.values.data(), 3 * n * sizeof(int));
    } catch (...) {
      free_position_set(set);
      throw;
    }
    position_sets_.push_back(std::move(set));
    return position_sets_.back();
  }

 public:
  // Host -> device through the pinned halves: returns once the source may be reused.
  void upload_bytes(void* device_dst, const void* host_src, size_t bytes) {
    not_while_recording("an upload");
    auto* dst = static_cast<char*>(device_dst);
    const auto* src = static_cast<const char*>(host_src);
    while (bytes > 0) {
      const size_t chunk = std::min(bytes, kStagingHalfBytes);
      if (half_used_ + chunk > kStagingHalfBytes) {
        // Leave this half (its copies are queued) and wait until the other one has drained.
        check(cudaEventRecord(half_done_[half_], stream_), "recording an upload");
        half_ ^= 1;
        check(cudaEventSynchronize(half_done_[half_]), "waiting for an upload");
        half_used_ = 0;
      }
      char* staged = upload_staging_ + half_ * kStagingHalfBytes + half_used_;
      std::memcpy(staged, src, chunk);
      check(cudaMemcpyAsync(dst, staged, chunk, cudaMemcpyHostToDevice, stream_), "uploading");
      half_used_ += (chunk + 255) / 256 * 256;  // keep staged copies 256-byte aligned
      dst += chunk;
      src += chunk;
      bytes -= chunk;
    }
  }

  void download_bytes(void* host_dst, const void* device_src, size_t bytes) {
    not_while_recording("a download");
    auto* dst = static_cast<char*>(host_dst);
    const auto* src = static_cast<const char*>(device_src);
    while (bytes > 0) {
      const size_t chunk = std::min(bytes, kDownloadBytes);
      check(cudaMemcpyAsync(download_staging_, src, chunk, cudaMemcpyDeviceToHost, stream_),
            "downloading");
      check(cudaStreamSynchronize(stream_), "downloading");
      std::memcpy(dst, download_staging_, chunk);
      dst += chunk;
      src += chunk;
      bytes -= chunk;
    }
  }

 private:
  struct Bf16Weight {
    __nv_bfloat16* values = nullptr;
    size_t count = 0;
  };
  struct AlignedCopy {
    float* values = nullptr;
    size_t count = 0;
  };
  struct Scratch {
    void* data = nullptr;
    size_t bytes = 0;
  };

  void drop_cached_in(const float* base, size_t count) {
    auto first = bf16_weights_.lower_bound(base);
    auto last = bf16_weights_.lower_bound(base + count);
    if (first != last) memory_reused();
    for (auto it = first; it != last; ++it) {
      if (!failed_) cudaFree(it->second.values);
    }
    bf16_weights_.erase(first, last);
    auto first_copy = aligned_copies_.lower_bound(base);
    auto last_copy = aligned_copies_.lower_bound(base + count);
    if (first_copy != last_copy) memory_reused();
    for (auto it = first_copy; it != last_copy; ++it) {
      if (!failed_) cudaFree(it->second.values);
    }
    aligned_copies_.erase(first_copy, last_copy);
  }

  void cleanup() noexcept {
    cudaSetDevice(index_);
    abort_recording();
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    for (auto& [w, entry] : bf16_weights_) cudaFree(entry.values);
    bf16_weights_.clear();
    for (auto& [v, entry] : aligned_copies_) cudaFree(entry.values);
    aligned_copies_.clear();
    lt_.reset();
    for (auto& s : scratch_) {
      if (s.data != nullptr) cudaFree(s.data);
      s = {};
    }
    for (auto& set : position_sets_) free_position_set(set);
    position_sets_.clear();
    for (auto& event : half_done_) {
      if (event != nullptr) cudaEventDestroy(event);
      event = nullptr;
    }
    if (upload_staging_ != nullptr) cudaFreeHost(upload_staging_);
    if (download_staging_ != nullptr) cudaFreeHost(download_staging_);
    upload_staging_ = download_staging_ = nullptr;
    if (blas_ != nullptr) cublasDestroy(blas_);
    blas_ = nullptr;
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = nullptr;
    cudaGetLastError();
  }

  int index_;
  ComputePrecision precision_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  char* upload_staging_ = nullptr;
  char* download_staging_ = nullptr;
  cudaEvent_t half_done_[2] = {nullptr, nullptr};
  int half_ = 0;
  size_t half_used_ = 0;
  bool failed_ = false;
  std::string failure_;
  bool recording_ = false;  // the stream is being captured (one thread drives the backend)
  std::atomic<uint64_t> generation_{0};
  std::mutex mutex_;  // allocations_ and bf16_weights_: buffers may be freed from other threads
  std::map<const float*, size_t> allocations_;
  std::map<const float*, Bf16Weight> bf16_weights_;
  std::map<const float*, AlignedCopy> aligned_copies_;
  std::unique_ptr<LtGemm> lt_;
  Scratch scratch_[kScratchSlots];
  std::vector<PositionSet> position_sets_;
};

class CudaBuffer final : public Buffer {
 public:
  CudaBuffer(std::shared_ptr<Device> device, size_t count)
      : device_(std::move(device)), count_(count), data_(device_->allocate_buffer(count)) {}
  ~CudaBuffer() override { device_->free_buffer(data_); }
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;
  [[nodiscard]] DeviceKind device() const override { return DeviceKind::cuda; }
  [[nodiscard]] size_t count() const override { return count_; }
  [[nodiscard]] float* data() override { return data_; }

 private:
  std::shared_ptr<Device> device_;
  size_t count_;
  float* data_;
};

class CudaRecording final : public Recording {
 public:
  CudaRecording(std::shared_ptr<Device> device, cudaGraphExec_t exec, uint64_t generation)
      : device(std::move(device)), exec(exec), generation(generation) {}
  ~CudaRecording() override {
    cudaGraphExecDestroy(exec);
    cudaGetLastError();
  }
  CudaRecording(const CudaRecording&) = delete;
  CudaRecording& operator=(const CudaRecording&) = delete;
  std::shared_ptr<Device> device;
  cudaGraphExec_t exec;
  uint64_t generation;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int index, ComputePrecision precision)
      : device_(std::make_shared<Device>(index, precision)) {
#ifdef STRAND_CUDA_HAVE_ATTENTION
    // The wgmma attention kernel's availability is probed with a kernel launch: do it now, before
    // any pass is recorded into a graph (a launch on another stream would break the capture).
    device_->enter();
    (void)cuda::attention_wgmma_available();
#endif
  }

  [[nodiscard]] std::string_view name() const override { return device_->name(); }
  [[nodiscard]] DeviceKind device() const override { return DeviceKind::cuda; }
  [[nodiscard]] bool supports(Op op) const override {
    switch (op) {
      case Op::gated_delta_update:
      case Op::memory_read:
#ifdef STRAND_CUDA_HAVE_DELTA_RULE
        return true;
#else
        return false;
#endif
      case Op::attention:
#ifdef STRAND_CUDA_HAVE_ATTENTION
        return true;
#else
        return false;
#endif
      case Op::count:
        return false;
      default:
        return true;
    }
  }

  std::unique_ptr<Buffer> allocate(size_t count) override {
    return std::make_unique<CudaBuffer>(device_, count);
  }
  void upload(float* dst, const float* src, size_t count) override {
    if (count == 0) return;
    device_->enter();
    device_->written(dst);
    device_->upload_bytes(dst, src, count * sizeof(float));
  }
  void download(float* dst, const float* src, size_t count) override {
    if (count == 0) return;
    device_->enter();
    device_->download_bytes(dst, src, count * sizeof(float));
  }
  void copy(float* dst, const float* src, size_t count) override {
    if (count == 0 || dst == src) return;
    device_->enter();
    device_->written(dst);
    device_->check(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice,
                                   device_->stream()),
                   "copying on the device");
  }
  void copy_2d(float* dst, int dst_stride, const float* src, int src_stride, int rows,
               int cols) override {
    if (rows <= 0 || cols <= 0) return;
    device_->enter();
    device_->written(dst);
    device_->check(cudaMemcpy2DAsync(dst, sizeof(float) * static_cast<size_t>(dst_stride), src,
                                     sizeof(float) * static_cast<size_t>(src_stride),
                                     sizeof(float) * static_cast<size_t>(cols),
                                     static_cast<size_t>(rows), cudaMemcpyDeviceToDevice,
                                     device_->stream()),
                   "copying rows on the device");
  }
  void synchronize() override {
    device_->enter();
    device_->not_while_recording("synchronising");
    device_->check(cudaStreamSynchronize(device_->stream()), "running queued work");
  }

  [[nodiscard]] bool can_record() const override { return true; }
  void begin_recording() override {
    generation_at_start_ = device_->generation();
    device_->begin_recording();
  }
  std::unique_ptr<Recording> end_recording() override {
    cudaGraphExec_t exec = device_->end_recording();
    if (device_->generation() != generation_at_start_) {  // memory moved while recording
      cudaGraphExecDestroy(exec);
      throw Error(ErrorKind::unsupported, "recording failed: device memory was reused meanwhile");
    }
    return std::make_unique<CudaRecording>(device_, exec, generation_at_start_);
  }
  void replay(Recording& recording) override {
    auto* cuda_recording = dynamic_cast<CudaRecording*>(&recording);
    if (cuda_recording == nullptr || cuda_recording->device != device_) {
      throw Error(ErrorKind::invalid_argument, "a recording made by another backend");
    }
    if (cuda_recording->generation != device_->generation()) {
      throw Error(ErrorKind::invalid_argument, "a stale recording (device memory moved since)");
    }
    device_->enter();
    device_->not_while_recording("replaying a recording");
    device_->check(cudaGraphLaunch(cuda_recording->exec, device_->stream()), "replaying a recording");
  }
  [[nodiscard]] uint64_t generation() const override { return device_->generation(); }

  void linear(const float* x, const float* w, const float* bias, float* y, int rows, int in,
              int out) override {
    if (rows <= 0 || out <= 0) return;
    device_->enter();
    if (device_->bf16() && in > 0) {
      const __nv_bfloat16* xb = activations_bf16(x, static_cast<size_t>(rows) * in);
      const __nv_bfloat16* wb = device_->bf16_weight(w, static_cast<size_t>(out) * in);
      // The bias rides in the GEMM's epilogue (one store of y); cuBLAS's plain GEMM, which needs
      // y seeded with the bias first, is the fallback.
      if (!lt_linear(xb, wb, bias, y, LtType::fp32, rows, in, out,
                     bias != nullptr ? LtEpilogue::bias : LtEpilogue::none)) {
        device_->check_blas(cuda::linear(device_->blas(), GemmInput::bf16, xb, wb, bias, y, rows,
                                         in, out, device_->stream()),
                            "in linear (bf16)");
      }
    } else {
      device_->check_blas(cuda::linear(device_->blas(), GemmInput::fp32, x, w, bias, y, rows, in,
                                       out, device_->stream()),
                          "in linear");
    }
    device_->after_launch("in linear");
  }
  void feed_forward(const float* x, const float* w1, const float* b1, const float* w2,
                    const float* b2, float* hidden, float* y, int rows, int in, int mid,
                    int out) override {
    if (rows <= 0 || out <= 0) return;
    if (!device_->bf16() || in <= 0 || mid <= 0 || b1 == nullptr) {
      // fp32 parity mode (and shapes the fused path does not take): the three ops.
      Backend::feed_forward(x, w1, b1, w2, b2, hidden, y, rows, in, mid, out);
      return;
    }
    device_->enter();
    // bf16: x W1^T + b1 and the GELU in one GEMM whose bf16 output is the next GEMM's input, so
    // the hidden activations ([rows, mid], the largest tensor of a layer) are written once at 2
    // bytes and read once, instead of seed + GEMM + GELU + conversion passes at 4 bytes. The
    // rounding is the unfused path's: it converted GELU's fp32 output to bf16 for the second GEMM.
    const __nv_bfloat16* xb = activations_bf16(x, static_cast<size_t>(rows) * in);
    const __nv_bfloat16* w1b = device_->bf16_weight(w1, static_cast<size_t>(mid) * in);
    const __nv_bfloat16* w2b = device_->bf16_weight(w2, static_cast<size_t>(out) * mid);
    auto* hidden_bf16 = static_cast<__nv_bfloat16*>(device_->scratch(
        kHiddenBf16, static_cast<size_t>(rows) * mid * sizeof(__nv_bfloat16)));
    if (!lt_linear(xb, w1b, b1, hidden_bf16, LtType::bf16, rows, in, mid, LtEpilogue::gelu_bias)) {
      Backend::feed_forward(x, w1, b1, w2, b2, hidden, y, rows, in, mid, out);
      return;
    }
    if (!lt_linear(hidden_bf16, w2b, b2, y, LtType::fp32, rows, mid, out,
                   b2 != nullptr ? LtEpilogue::bias : LtEpilogue::none)) {
      device_->check_blas(cuda::linear(device_->blas(), GemmInput::bf16, hidden_bf16, w2b, b2, y,
                                       rows, mid, out, device_->stream()),
                          "in feed_forward (bf16)");
    }
    device_->after_launch("in feed_forward");
  }
  void layer_norm(const float* x, float* y, int rows, int dim, const float* weight,
                  const float* bias, float eps) override {
    device_->enter();
    cuda::layer_norm(x, y, rows, dim, weight, bias, eps, device_->stream());
    device_->after_launch("in layer_norm");
  }
  void layer_norm_modulate(const float* x, float* y, int rows, int dim, const float* shift,
                           const float* scale, int rows_per_group, int group_stride,
                           float eps) override {
    device_->enter();
    cuda::layer_norm_modulate(x, y, rows, dim, shift, scale, rows_per_group, group_stride, eps,
                              device_->stream());
    device_->after_launch("in layer_norm_modulate");
  }
  void rms_norm_rows(const float* x, int x_stride, float* y, int rows, int dim, const float* weight,
                     float eps) override {
    device_->enter();
    cuda::rms_norm(x, x_stride, y, rows, dim, weight, eps, device_->stream());
    device_->after_launch("in rms_norm_rows");
  }
  void rms_norm(const float* x, float* y, int rows, int dim, const float* weight,
                float eps) override {
    device_->enter();
    cuda::rms_norm(x, y, rows, dim, weight, eps, device_->stream());
    device_->after_launch("in rms_norm");
  }
  void l2_normalize_heads(float* x, int rows, int heads, int head_dim, float eps) override {
    device_->enter();
    cuda::l2_normalize_heads(x, rows, heads, head_dim, eps, device_->stream());
    device_->after_launch("in l2_normalize_heads");
  }
  void l2_normalize_heads_rows(const float* x, int x_stride, float* y, int rows, int heads,
                               int head_dim, float eps) override {
    device_->enter();
    cuda::l2_normalize_heads(x, x_stride, y, rows, heads, head_dim, eps, device_->stream());
    device_->after_launch("in l2_normalize_heads_rows");
  }
  // One kernel when the shape suits it (every model shape: head_dim % 4 == 0); else the two
  // norms and the rotations as separate launches, with the same results.
  void qk_norm_rope(const float* x, int x_stride, float* q, float* k, int rows, int heads,
                    int head_dim, const float* q_weight, const float* k_weight, float eps,
                    const int* pos_t, const int* pos_r, const int* pos_c, float theta,
                    bool rope_k) override {
    if (rows <= 0 || heads <= 0 || head_dim <= 0) return;
    if (!cuda::qk_norm_rope_fits(x, x_stride, q, k, heads, head_dim, q_weight, k_weight)) {
      Backend::qk_norm_rope(x, x_stride, q, k, rows, heads, head_dim, q_weight, k_weight, eps,
                            pos_t, pos_r, pos_c, theta, rope_k);
      return;
    }
    device_->enter();
    const float2* angles = device_->rope_angles(pos_t, pos_r, pos_c, rows, head_dim, theta);
    cuda::qk_norm_rope(x, x_stride, q, k, rows, heads, head_dim, q_weight, k_weight, eps, angles,
                       rope_k, device_->stream());
    device_->after_launch("in qk_norm_rope");
  }
  void gelu_tanh(float* x, size_t n) override {
    device_->enter();
    cuda::gelu_tanh(x, n, device_->stream());
    device_->after_launch("in gelu_tanh");
  }
  void gelu_erf(float* x, size_t n) override {
    device_->enter();
    cuda::gelu_erf(x, n, device_->stream());
    device_->after_launch("in gelu_erf");
  }
  void silu(float* x, size_t n) override {
    device_->enter();
    cuda::silu(x, n, device_->stream());
    device_->after_launch("in silu");
  }
  void gated_residual(float* x, const float* y, const float* gate, int rows, int dim,
                      int rows_per_group, int group_stride) override {
    device_->enter();
    cuda::gated_residual(x, y, gate, rows, dim, rows_per_group, group_stride, device_->stream());
    device_->after_launch("in gated_residual");
  }
  // One kernel when the shape suits it (every model shape: width % 4 == 0, aligned buffers);
  // else gated_residual then the norm as separate launches, with the same results.
  void residual_norm(float* x, const float* y, const float* gate, float* out, int rows, int dim,
                     int rows_per_group, int group_stride, ResidualNorm norm, const float* norm_a,
                     const float* norm_b, float eps) override {
    if (rows <= 0 || dim <= 0) return;
    if (!cuda::residual_norm_fits(x, y, gate, out, dim, rows_per_group, group_stride, norm_a,
                                  norm_b)) {
      Backend::residual_norm(x, y, gate, out, rows, dim, rows_per_group, group_stride, norm, norm_a,
                             norm_b, eps);
      return;
    }
    device_->enter();
    cuda::residual_norm(x, y, gate, out, rows, dim, rows_per_group, group_stride,
                        norm == ResidualNorm::layer_norm_modulate, norm_a, norm_b, eps,
                        device_->stream());
    device_->after_launch("in residual_norm");
  }
  void gated_residual_heads(float* x, const float* y, const float* gate, int rows, int heads,
                            int head_dim, int row_stride) override {
    device_->enter();
    cuda::gated_residual_heads(x, y, gate, rows, heads, head_dim, row_stride, device_->stream());
    device_->after_launch("in gated_residual_heads");
  }
  void rope_3d(float* x, int tokens, int heads, int head_dim, int row_stride, const int* pos_t,
               const int* pos_r, const int* pos_c, float theta) override {
    if (tokens <= 0 || heads <= 0 || head_dim < 2) return;
    device_->enter();
    const float2* angles = device_->rope_angles(pos_t, pos_r, pos_c, tokens, head_dim, theta);
    cuda::rope_3d_apply(x, tokens, heads, head_dim, row_stride, angles, device_->stream());
    device_->after_launch("in rope_3d");
  }
  void attention(const float* q, int q_stride, const float* k, int k_stride, const float* v,
                 int v_stride, float* out, int out_stride, int tq, int tk, int heads, int head_dim,
                 float scale) override {
#ifdef STRAND_CUDA_HAVE_ATTENTION
    device_->enter();
    // Scratch for the bf16 copies of q, k, v from the backend's grow-only area: a stream-ordered
    // allocation per call would hand memory back to the driver at every synchronisation.
    const size_t bytes = attention_workspace_bytes(tq, tk, heads, head_dim, device_->bf16());
    void* workspace = bytes > 0 ? device_->scratch(kAttentionWorkspace, bytes) : nullptr;
    cuda::attention(q, q_stride, k, k_stride, v, v_stride, out, out_stride, tq, tk, heads, head_dim,
                    scale, device_->bf16(), workspace, bytes, device_->stream());
    device_->after_launch("in attention");
#else
    (void)q, (void)q_stride, (void)k, (void)k_stride, (void)v, (void)v_stride, (void)out;
    (void)out_stride, (void)tq, (void)tk, (void)heads, (void)head_dim, (void)scale;
    throw Error(ErrorKind::unsupported, "attention is not built into the CUDA backend");
#endif
  }
  void gated_delta_update(float* s, const float* k, int k_stride, const float* v, int v_stride,
                          const float* alpha, const float* beta, int tokens, int heads, int dk,
                          int dv) override {
#ifdef STRAND_CUDA_HAVE_DELTA_RULE
    device_->enter();
    // fp32 (3xTF32) in both precisions: the state carries every past block, so it stays fp32-exact.
    const size_t bytes = gated_delta_workspace_bytes(tokens, heads);
    void* workspace = device_->scratch(kDeltaWorkspace, std::max<size_t>(bytes, 256));
    cuda::gated_delta_update(s, k, k_stride, v, v_stride, alpha, beta, tokens, heads, dk, dv,
                             workspace, std::max<size_t>(bytes, 256), device_->stream());
    device_->after_launch("in gated_delta_update");
#else
    (void)s, (void)k, (void)k_stride, (void)v, (void)v_stride, (void)alpha, (void)beta;
    (void)tokens, (void)heads, (void)dk, (void)dv;
    throw Error(ErrorKind::unsupported, "gated_delta_update is not built into the CUDA backend");
#endif
  }
  void memory_read(const float* s, const float* q, int q_stride, float* out, int out_stride,
                   int tokens, int heads, int dk, int dv, float scale) override {
#ifdef STRAND_CUDA_HAVE_DELTA_RULE
    device_->enter();
    // The read is a GEMM like the projections: in bf16 mode it runs on TF32 tensor cores (10-bit
    // operands, more than bf16's 7; 2.3x faster than plain fp32 at the 1.3B shape in run E). The
    // state itself stays fp32 and is updated in fp32 (gated_delta_update).
    cuda::memory_read(s, q, q_stride, out, out_stride, tokens, heads, dk, dv, scale,
                      device_->stream(), device_->bf16() ? DeltaPrecision::tf32 : DeltaPrecision::fp32);
    device_->after_launch("in memory_read");
#else
    (void)s, (void)q, (void)q_stride, (void)out, (void)out_stride, (void)tokens, (void)heads;
    (void)dk, (void)dv, (void)scale;
    throw Error(ErrorKind::unsupported, "memory_read is not built into the CUDA backend");
#endif
  }
  void conv2d_3x3(const float* in, int c_in, int h, int w, const float* weight, const float* bias,
                  int c_out, int stride, float* out) override {
    device_->enter();
    const bool bf16 = device_->bf16();
    const size_t elements = conv2d_3x3_workspace(c_in, h, w, stride, kConvWorkspaceElements);
    const size_t element_bytes = bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
    void* columns = device_->scratch(kConvColumns, std::max<size_t>(elements, 1) * element_bytes);
    const void* wt = bf16 ? static_cast<const void*>(
                                device_->bf16_weight(weight, static_cast<size_t>(c_out) * c_in * 9))
                          : weight;
    device_->check_blas(
        cuda::conv2d_3x3(device_->blas(), bf16 ? GemmInput::bf16 : GemmInput::fp32, in, c_in, h, w,
                         wt, bias, c_out, stride, out, columns, elements, device_->stream()),
        "in conv2d_3x3");
    device_->after_launch("in conv2d_3x3");
  }
  void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) override {
    device_->enter();
    cuda::upsample_nearest_2x(in, c, h, w, out, device_->stream());
    device_->after_launch("in upsample_nearest_2x");
  }
  void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                    float* beta, float* gamma, int tokens, int heads) override {
    device_->enter();
    cuda::memory_gates(raw, a_log, dt_bias, alpha, beta, gamma, tokens, heads, device_->stream());
    device_->after_launch("in memory_gates");
  }
  void memory_gates_rows(const float* x, int x_stride, const float* a_log, const float* dt_bias,
                         float* alpha, float* beta, float* gamma, int tokens, int heads,
                         float*) override {  // reads x in place: no scratch
    device_->enter();
    cuda::memory_gates_rows(x, x_stride, a_log, dt_bias, alpha, beta, gamma, tokens, heads,
                            device_->stream());
    device_->after_launch("in memory_gates_rows");
  }

 private:
  // x converted to bf16 in the activations scratch (valid until the next conversion).
  const __nv_bfloat16* activations_bf16(const float* x, size_t n) {
    auto* xb = static_cast<__nv_bfloat16*>(
        device_->scratch(kActivationsBf16, n * sizeof(__nv_bfloat16)));
    to_bf16(x, xb, n, device_->stream());
    return xb;
  }

  // One cuBLASLt GEMM with its epilogue (y of y_type, fp32 bias); false, with nothing queued, when
  // cuBLASLt has no algorithm for the combination. A bf16 output may need a bf16 bias: tried next.
  bool lt_linear(const __nv_bfloat16* x, const __nv_bfloat16* w, const float* bias, void* y,
                 LtType y_type, int rows, int in, int out, LtEpilogue epilogue) {
    void* workspace = device_->scratch(kLtWorkspace, kLtWorkspaceBytes);
    const float* bias32 = bias != nullptr ? device_->aligned_vector(bias, out) : nullptr;
    cublasStatus_t status =
        device_->lt().linear(x, w, bias32, LtType::fp32, y, y_type, rows, in, out, epilogue,
                             workspace, kLtWorkspaceBytes, device_->stream());
    if (status == CUBLAS_STATUS_NOT_SUPPORTED && bias != nullptr && y_type == LtType::bf16) {
      const __nv_bfloat16* bias16 = device_->bf16_weight(bias, static_cast<size_t>(out));
      status = device_->lt().linear(x, w, bias16, LtType::bf16, y, y_type, rows, in, out, epilogue,
                                    workspace, kLtWorkspaceBytes, device_->stream());
    }
    if (status == CUBLAS_STATUS_NOT_SUPPORTED) return false;
    device_->check_blas(status, "in a cuBLASLt GEMM");
    return true;
  }

  std::shared_ptr<Device> device_;
  uint64_t generation_at_start_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_backend(int device_index, ComputePrecision precision) {
  return std::make_unique<CudaBackend>(device_index, precision);
}

}  // namespace strand::cuda
