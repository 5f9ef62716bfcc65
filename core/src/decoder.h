// Decoder: the autoencoder's decoder (docs/model-spec.md) over a whole block on one Backend, and
// DecodeThread, the thread on which a Session decodes block n while its main engine runs the clean
// pass (see Session::generate_next_block). Internal to core.
#pragma once
#include <condition_variable>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "strand/backend.h"
#include "strand/model.h"

namespace strand {

class Decoder {
 public:
  // Runs on `backend`, which must outlive the decoder (the engine's own backend).
  Decoder(std::shared_ptr<const Model> model, Backend& backend);
  // Runs on a backend of its own (on CUDA: its own stream, so its work can run beside the
  // engine's). Only the decoder's weights are uploaded to it.
  Decoder(std::shared_ptr<const Model> model, std::unique_ptr<Backend> backend);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // `frames` latent frames [frames, C, h, w] (host) -> RGB [frames, 3, H, W] in [-1, 1] (host).
  // One upload and one download for all the frames, each frame's convolutions in between: the
  // same ops with the same operands as decoding the frames one at a time, so the values are
  // bitwise those of a one-frame decode on the same kind of backend. `before_frame`, when given,
  // runs on the calling thread before each frame's ops are issued (cancellation); whatever it
  // throws abandons the block. Backend errors propagate (Error out_of_memory, device ...); the
  // decoder stays usable after out of memory.
  std::vector<float> decode(const float* latents, int frames,
                            const std::function<void()>& before_frame = {});

  [[nodiscard]] Backend& backend() { return *backend_; }

 private:
  const float* weight(const std::string& name);  // device pointer of a decoder weight
  float* scratch(int slot, size_t count);        // grow-only device scratch

  std::shared_ptr<const Model> model_;
  std::unique_ptr<Backend> owned_backend_;  // null when the backend is borrowed
  Backend* backend_;
  std::map<std::string, std::unique_ptr<Buffer>> weights_;  // non-CPU backends
  std::unique_ptr<Buffer> scratch_[4];
};

// One job at a time on a thread of its own: run() hands a job over and returns at once; wait()
// blocks until the job has finished and rethrows whatever it threw (the same exception object).
class DecodeThread {
 public:
  DecodeThread();
  // Waits for a job still running (its exception is dropped), then ends the thread.
  ~DecodeThread();
  DecodeThread(const DecodeThread&) = delete;
  DecodeThread& operator=(const DecodeThread&) = delete;

  // Precondition: no job handed over since the last wait().
  void run(std::function<void()> job);
  void wait();

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable changed_;
  std::function<void()> job_;
  bool has_job_ = false;  // handed over, not yet finished
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread thread_;  // declared last: it starts once the members it uses exist
};

}  // namespace strand
