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
  double decode_ms = 0;    // autoencoder decode of the block's frames
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
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Sets the prompt used from the next block on. Errors (Error invalid_argument, nothing
  // changes): empty/whitespace-only prompt, prompt over 4096 bytes, invalid UTF-8.
  // recache_blocks > 0 replays the clean passes of the last k blocks (at most those kept, see
  // SessionOptions::recache_history) under the new prompt, so memory agrees with it; 0 = hard switch.
  void set_prompt(std::string_view prompt, int recache_blocks = 0);
  [[nodiscard]] const std::string& prompt() const;

  // Generates, decodes and commits the next block. Requires a prompt. Throws Error(cancelled) if
  // cancel() was called: the flag is checked before each DiT pass and each decoded frame, the
  // state stays at the last committed block, and the flag is cleared. A cancel that arrives after
  // the last check (during the clean pass) is dropped when the block commits: the block is done.
  BlockResult generate_next_block();

  // Decodes clean latents of one block ([F, C, h, w], as in BlockResult::latents) to its frames,
  // numbered from first_frame. Pure: the memory is not touched. Lets a frame cache be rebuilt from
  // stored latents. Error(invalid_argument) if the size is wrong.
  [[nodiscard]] std::vector<Frame> decode_latents(const std::vector<float>& latents,
                                                  int64_t first_frame);

  // Thread-safe request to stop the current generate_next_block(), or the next one if none runs.
  void cancel();

  // The memory at the current block boundary (a deep copy; cheap for hybrid models).
  [[nodiscard]] MemoryState snapshot() const;
  // Bytes the memory holds now (MemoryState::size_bytes without copying it).
  [[nodiscard]] size_t memory_state_bytes() const;
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
