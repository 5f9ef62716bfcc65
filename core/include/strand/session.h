// Session: one generation run over an immutable Model. Not thread-safe except for cancel(), which
// any thread may call. The desktop app drives a Session from a worker thread; strand-cli directly.
//
// Contract of every call: on success the memory state is committed at a block boundary; on any
// error or cancel the session is exactly as before the call (the last committed block).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strand/backend.h"
#include "strand/memory_state.h"
#include "strand/model.h"

namespace strand {

// One decoded frame: RGB8, row-major, width * height * 3 bytes.
struct Frame {
  int width = 0;
  int height = 0;
  int64_t index = 0;  // frame number in the video (block * frames_per_block + f)
  std::vector<uint8_t> rgb;
};

// Milliseconds spent per stage on the last generated block.
struct BlockTimings {
  double denoise_ms = 0;   // all denoising passes of the DiT
  double clean_ms = 0;     // the clean pass (state update)
  double decode_ms = 0;    // autoencoder decode of the block's frames (with overlap_decode: on
                           // the decode thread, beside the clean pass, so total_ms can be less
                           // than the sum of the stages)
  double text_ms = 0;      // prompt encoding, when the prompt changed
  double recache_ms = 0;   // re-cache replay, when requested
  double total_ms = 0;
};

struct BlockResult {
  int64_t block_index = 0;
  std::vector<Frame> frames;   // frames_per_block frames
  std::vector<float> latents;  // clean latents x0, [F, C, h, w]
  BlockTimings timings;
};

struct SessionOptions {
  uint64_t seed = 0;
  int recache_history = 8;  // how many past blocks are kept for re-cache (0 disables re-cache)
  OpProfile* op_profile = nullptr;  // when set, every backend op is timed into it (benchmarks)
  // Where the engine computes. cuda: make_cuda_backend(device_index, precision) behind the CPU
  // fallback of make_dispatch_backend; the constructor throws its errors (Error(unsupported) without
  // CUDA or without that device, Error(out_of_memory), Error(device)). The CPU is always fp32.
  DeviceKind device = DeviceKind::cpu;
  int device_index = 0;
  ComputePrecision precision = ComputePrecision::fp32;
  // On a GPU, record each kind of DiT pass once (a CUDA graph) and replay it: the same results
  // with one launch a pass instead of hundreds. Off: every op is launched one by one.
  bool record_passes = true;
  // Decode block n's frames while the clean pass of block n runs (see generate_next_block): the
  // decoder gets a backend of its own (make_backend again for the same device: on CUDA a second
  // stream, cuBLAS handle and pinned staging, with only the decoder's weights) and a thread of its
  // own. Unset: on for cuda, off for the CPU (there a second thread would only compete with the
  // clean pass's threads). Frames are bitwise the same either way. Off whenever op_profile is set
  // (op timing synchronises after every op and is not thread-safe) and for a Session given its
  // backend (no second instance of it can be made).
  std::optional<bool> overlap_decode{};
  // For tests: when the decode is overlapped, wraps the decoder's backend once, when the session
  // is built (fault injection).
  std::function<std::unique_ptr<Backend>(std::unique_ptr<Backend>)> wrap_decoder_backend{};
};

// Prompts longer than this (bytes of UTF-8) are rejected.
inline constexpr size_t kMaxPromptBytes = 4096;

// Throws Error(invalid_argument) unless `prompt` is a usable prompt: valid UTF-8, not blank, at
// most kMaxPromptBytes. Session::set_prompt applies the same check.
void validate_prompt(std::string_view prompt);

// progress(step, steps): called after each DiT pass of the current block (steps = denoising
// passes + 1 clean pass). Runs on the calling thread.
using ProgressCallback = std::function<void(int step, int steps)>;

class Session {
 public:
  Session(std::shared_ptr<const Model> model, SessionOptions options);
  // Runs on `backend` instead of the one options.device, device_index, precision and op_profile
  // would make (a custom device, or a test's pretend one).
  Session(std::shared_ptr<const Model> model, SessionOptions options,
          std::unique_ptr<Backend> backend);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Sets the prompt used from the next block on. Errors (Error invalid_argument, nothing
  // changes): empty/whitespace-only prompt, prompt over 4096 bytes, invalid UTF-8.
  // recache_blocks > 0 replays the clean passes of the last k blocks (at most those kept, see
  // SessionOptions::recache_history) under the new prompt, so memory agrees with it; 0 = hard switch.
  void set_prompt(std::string_view prompt, int recache_blocks = 0);
  [[nodiscard]] const std::string& prompt() const;

  // Generates, decodes and commits the next block. Requires a prompt. Order: the denoising passes,
  // then the decode of the block's clean latents x0 and the clean pass over x0 (which writes the
  // memory block n + 1 reads), then the commit (next_block = n + 1). Neither of the two middle
  // stages reads what the other writes. Without overlap_decode they run one after the other
  // (decode first). With it, the decode runs on the decode thread and its own backend while the
  // clean pass runs here; the block commits only when both have finished. Nothing else overlaps:
  // the denoising passes of block n + 1 start in the next call. If the decode fails (any error,
  // e.g. Error(out_of_memory) or Error(device) from the decoder's backend), the clean pass is
  // undone and that error is thrown; if the clean pass fails, the decode is waited for and the
  // clean pass's error is thrown. Either way the memory stays at the last committed block.
  // Throws Error(cancelled) if cancel() was called: the flag is checked before each DiT pass and
  // before each frame's decode, the state stays at the last committed block, and the flag is
  // cleared. A cancel that arrives after the last check is dropped when the block commits: the
  // block is done.
  BlockResult generate_next_block();

  // Decodes clean latents of one block ([F, C, h, w], as in BlockResult::latents) to its frames,
  // numbered from first_frame. Pure: the memory is not touched. Lets a frame cache be rebuilt from
  // stored latents. Error(invalid_argument) if the size is wrong.
  [[nodiscard]] std::vector<Frame> decode_latents(const std::vector<float>& latents,
                                                  int64_t first_frame);

  // Thread-safe request to stop the current generate_next_block(), or the next one if none runs.
  void cancel();

  // The memory at the current block boundary (a deep copy; cheap for hybrid models). On a GPU
  // the softmax_kv cache blocks made since the last snapshot are downloaded first (kept on the
  // host from then on); a device failure there throws Error(device) and changes nothing.
  [[nodiscard]] MemoryState snapshot() const;
  // Bytes the memory holds now (MemoryState::size_bytes without copying it).
  [[nodiscard]] size_t memory_state_bytes() const;
  // Whether generate_next_block overlaps the decode with the clean pass (see overlap_decode).
  [[nodiscard]] bool overlaps_decode() const;
  // DiT passes replayed from a recording so far (see SessionOptions::record_passes; 0 on the CPU).
  [[nodiscard]] int64_t replayed_passes() const;
  // Continue from a snapshot. Error(model_mismatch) if it was made by another model.
  // The snapshot's prompt becomes the active prompt; re-cache history is cleared.
  void restore(const MemoryState& state);

  // Seed of the noise from the next block on (a branch may take its own seed).
  void set_seed(uint64_t seed);
  [[nodiscard]] uint64_t seed() const;

  [[nodiscard]] int64_t next_block() const;
  [[nodiscard]] int64_t next_frame() const;
  [[nodiscard]] const Model& model() const;
  void set_progress_callback(ProgressCallback callback);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strand
