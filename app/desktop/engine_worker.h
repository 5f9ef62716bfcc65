// EngineWorker: the bridge between the Qt GUI and the engine (strand::Session).
//
// Threads. The worker object lives on its own QThread, which owns the Model and the Session and is
// the only thread that calls into them (except Session::cancel(), which is atomic). Every public
// method is thread-safe and never blocks on the engine: it appends a command to a queue that the
// engine thread runs between blocks. All signals are emitted on the *owner thread* (the thread
// that constructed the worker, normally the GUI thread), so receivers there are called directly
// and the epoch check below happens at the last possible moment.
//
// Commands. Generation is a background mode: generate(n) / generateUntilStopped() set how many
// blocks are still to make and return at once; pause() lets the current block finish, then stops;
// cancel() aborts the current block between two DiT passes (Session::cancel()) and stops. Other
// commands (prompt, restore, snapshot) run between blocks, in the order they were issued.
//
// Epochs. Every edit (setPrompt, restore, loadModel) bumps the epoch at once, on the caller's
// thread, and aborts the block in flight. A block's results carry the epoch under which it was
// generated; results of an older epoch are dropped, never emitted: the GUI never shows a frame of
// a video that the user has already changed. Rare race: an edit that lands after the block's last
// DiT pass cannot stop the commit; that block stays in the session's memory but its frames are
// still dropped (counted in staleFramesDropped()).
//
// Frames go through a bounded FrameMailbox: live preview drops the oldest frames when the GUI
// falls behind (never stalls the engine); FrameOverflow::wait makes the engine wait instead, for
// consumers that need every frame (tests, export).
//
// Devices. Sessions compute on EngineWorkerOptions::device, which setDevice() changes: the current
// session is rebuilt there at its block boundary (memory, seed, prompt). The worker keeps a host
// copy of the last good boundary (after every committed block and every accepted edit), so a GPU
// failure never loses the video: out of memory stops generation (the unfinished block is dropped,
// the session stays usable) and emits deviceFailed(); a device error (sticky CUDA error) marks
// the engine failed (EngineState::failed: every engine command is refused with a message, the
// broken session is released) until setDevice() rebuilds it from that copy.
#pragma once
#include <QImage>
#include <QList>
#include <QMetaType>
#include <QObject>
#include <QString>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "frame_mailbox.h"
#include "strand/backend.h"
#include "strand/memory_state.h"

class QThread;

namespace strand {
class Model;
class Session;
struct Frame;
struct SessionOptions;
}  // namespace strand

namespace strand::desktop {

using SnapshotPtr = std::shared_ptr<const strand::MemoryState>;

enum class EngineState {
  no_model = 1,  // nothing loaded (or the last load failed)
  loading,       // a model is being loaded
  ready,         // a session exists and is idle
  generating,    // blocks are being generated
  failed,        // a device error broke the session: commands are refused until setDevice()
};

// Where the worker's sessions compute.
struct EngineDevice {
  strand::DeviceKind kind = strand::DeviceKind::cpu;
  int index = 0;  // CUDA device ordinal (kind == cuda)
  // GPUs only: bf16 is fast, fp32 matches the CPU reference. The CPU always computes in fp32.
  strand::ComputePrecision precision = strand::ComputePrecision::fp32;
  QString name;  // human-readable, for messages and the status bar

  [[nodiscard]] bool isGpu() const { return kind == strand::DeviceKind::cuda; }
  // Same place and precision (the name is only a label).
  [[nodiscard]] bool sameAs(const EngineDevice& other) const;
};

// Adds `nice_increment` to the calling thread's nice value (Linux; elsewhere nothing). The engine
// and export threads call it first: the nice value is per thread and inherited by threads created
// later (the kernels' OpenMP pool), so when cores are scarce the GUI thread wins and the preview
// stays smooth.
void lowerCurrentThreadPriority(int nice_increment);

EngineDevice cpuEngineDevice();
// The SessionOptions fields that select `device` (device, device_index, precision).
void applyEngineDevice(const EngineDevice& device, strand::SessionOptions& options);

enum class DeviceFailureKind {
  out_of_memory = 1,  // the device ran out of memory; the session is still usable
  device_lost,        // a sticky device error: the engine is failed until setDevice()
};

// What deviceFailed() reports.
struct DeviceFailure {
  DeviceFailureKind kind = DeviceFailureKind::out_of_memory;
  EngineDevice device;    // where it happened
  QString reason;         // the engine's message
  qint64 next_block = 0;  // block boundary of the last good state (where a rebuild starts)
  bool interrupted_generation = false;  // generation was running: setDevice(d, true) resumes it
};

struct ModelInfo {
  QString path;
  QString name;
  QString id;  // weights hash
  int width = 0, height = 0, fps = 0, frames_per_block = 0;
  int steps = 0;  // denoising passes per block (sampler sigmas)
  qint64 parameters = 0;
  // The immutable model, shared read-only (the GUI uses its tokenizer for prompt highlighting;
  // Model is safe to read from any thread).
  std::shared_ptr<const strand::Model> model;
  SnapshotPtr initial_state;  // memory of a fresh session (boundary 0 of a new video)
};

// Everything a project needs to record one committed block (see blockCommitted()).
struct CommittedBlock {
  quint64 epoch = 0;         // epoch the block was generated under
  qint64 block_index = 0;
  QString prompt;            // prompt it was generated with
  quint64 seed = 0;          // noise seed it was generated with
  QList<QImage> frames;      // every frame of the block, never dropped
  std::vector<float> latents;
  SnapshotPtr state_after;   // memory at the boundary after the block
};

struct BlockStats {
  qint64 block_index = 0;
  qint64 first_frame = 0;
  int frame_count = 0;
  double denoise_ms = 0, clean_ms = 0, decode_ms = 0, text_ms = 0, recache_ms = 0;
  double total_ms = 0;     // engine time for the block (BlockTimings::total_ms)
  qint64 state_bytes = 0;  // memory-state size after the block
  quint64 epoch = 0;
  qint64 preview_frames_dropped = 0;  // total frames dropped by mailbox overflow so far
};

// Test seams (called on the engine thread): let the tests drive the GPU failure paths without a
// GPU.
using SessionFactory = std::function<std::shared_ptr<strand::Session>(
    std::shared_ptr<const strand::Model> model, const strand::SessionOptions& options)>;
// Runs before each block with the options of the session about to generate it; may throw what
// Session::generate_next_block would (Error(out_of_memory), Error(device)).
using BeforeBlockHook =
    std::function<void(const strand::SessionOptions& options, qint64 block_index)>;

struct EngineWorkerOptions {
  size_t frame_queue_capacity = 12;
  FrameOverflow overflow = FrameOverflow::drop_oldest;
  int recache_history = 8;  // SessionOptions::recache_history
  // Added to the engine threads' nice value (Linux), so the GUI keeps a core when they compete.
  int engine_nice_increment = 10;
  EngineDevice device;             // where sessions compute until setDevice()
  SessionFactory session_factory;  // default: std::make_shared<strand::Session>
  BeforeBlockHook before_block;    // default: none
};

// An engine frame as an RGB888 QImage (null if the frame is malformed).
QImage toQImage(const strand::Frame& frame);

// Memory-state bytes after `blocks_done` blocks: the fixed hybrid states plus the softmax_kv caches
// that the window/sink rule of docs/model-spec.md keeps.
qint64 estimateStateBytes(const strand::Model& model, qint64 blocks_done);

class EngineWorker : public QObject {
  Q_OBJECT

 public:
  static constexpr int kUntilStopped = -1;

  explicit EngineWorker(EngineWorkerOptions options = {});
  ~EngineWorker() override;  // aborts the block in flight and joins the engine thread
  EngineWorker(const EngineWorker&) = delete;
  EngineWorker& operator=(const EngineWorker&) = delete;

  // --- Commands (thread-safe, non-blocking) ---
  // Replaces the model and session (a new video with noise seed `seed`). Bumps the epoch.
  quint64 loadModel(const QString& path, quint64 seed = 0);
  void generate(int blocks);  // blocks >= 1, or kUntilStopped
  void generateUntilStopped() { generate(kUntilStopped); }
  void pause();
  void cancel();
  // Prompt for the next blocks; recache_blocks > 0 replays that many past blocks under it.
  // Returns the new epoch. A rejected prompt is reported by error(); generation goes on with the
  // previous prompt.
  quint64 setPrompt(const QString& prompt, int recache_blocks = 0);
  // Continues from `snapshot` (its prompt becomes active). Returns the new epoch.
  quint64 restore(SnapshotPtr snapshot);
  // Continues from `snapshot` with noise seed `seed` and prompt `prompt` (empty: the snapshot's),
  // as one edit: how the app moves the engine to the end of a branch. Returns the new epoch.
  quint64 continueFrom(SnapshotPtr snapshot, quint64 seed, const QString& prompt);
  // Asks for a copy of the memory at the current block boundary -> snapshotReady().
  void requestSnapshot();
  // Decodes one block's stored clean latents ([F, C, h, w], CommittedBlock::latents) to its
  // frames on the engine thread (Session::decode_latents: pure, the memory is untouched), so the
  // GUI thread never decodes. Runs between blocks in queue order -> latentsDecoded(tag, ...) or
  // latentsDecodeFailed(tag, reason). Not an edit and not tied to an epoch: a block's frames
  // depend only on its latents and the model, so the result is delivered whatever happened
  // meanwhile (a loadModel() queued before it decodes with the new model). `tag` is the caller's
  // (the app passes the block key).
  void decodeLatents(const QString& tag, std::vector<float> latents, qint64 first_frame);
  // Computes on `device` from now on (the next loadModel() too). A loaded session is rebuilt there
  // at its current block boundary (memory, seed and prompt; the re-cache history starts empty);
  // after a device failure, at the last good boundary, which brings a failed engine back. Not an
  // edit: the block in flight is aborted and made again on the new device, generation goes on,
  // nothing is dropped. `resume_interrupted`: also resume the generation that the last
  // deviceFailed() stopped (how "Continue on CPU" continues). If `device` cannot be used, error()
  // says so and the engine stays on (or, failed, goes back to) the previous device. When the last
  // loadModel() failed on the device, it is retried on the new one.
  void setDevice(const EngineDevice& device, bool resume_interrupted = false);

  // --- Queries (thread-safe) ---
  [[nodiscard]] quint64 epoch() const { return epoch_.load(); }
  [[nodiscard]] EngineState state() const { return state_.load(); }
  [[nodiscard]] qint64 staleFramesDropped() const { return stale_frames_dropped_.load(); }
  [[nodiscard]] qint64 overflowFramesDropped() const { return mailbox_.dropped(); }
  [[nodiscard]] size_t pendingFrames() const { return mailbox_.size(); }
  [[nodiscard]] qint64 blocksGenerated() const { return blocks_generated_.load(); }
  [[nodiscard]] EngineDevice device() const;  // where the session computes (the latest setDevice)

 signals:
  // All emitted on the owner thread.
  void modelLoaded(const strand::desktop::ModelInfo& info);
  void frameReady(const QImage& image, qint64 frame_index, quint64 epoch);
  void blockDone(const strand::desktop::BlockStats& stats);
  // Every block the session commits, with its frames, latents and the memory after it, emitted
  // even when its epoch is stale (an edit landed after its last DiT pass): the session's memory
  // has moved on, so a project that mirrors it must see the block. Receivers decide by `epoch`
  // which branch it belongs to. Emitted before the block's frameReady/blockDone.
  void blockCommitted(const strand::desktop::CommittedBlock& block);
  void progress(int step, int steps);  // DiT passes of the current block
  void promptApplied(const QString& prompt, quint64 epoch);
  void promptRejected(const QString& prompt, const QString& reason);  // also reported by error()
  void snapshotReady(const strand::desktop::SnapshotPtr& snapshot, quint64 epoch);
  void latentsDecoded(const QString& tag, qint64 first_frame, const QList<QImage>& frames);
  void latentsDecodeFailed(const QString& tag, const QString& reason);
  void error(const QString& message);
  void stateChanged(strand::desktop::EngineState state);
  // The device ran out of memory or failed (see DeviceFailure); not also reported by error().
  // Never dropped by epochs.
  void deviceFailed(const strand::desktop::DeviceFailure& failure);
  // The session now computes on `device` (after a load or a setDevice()).
  void deviceChanged(const strand::desktop::EngineDevice& device);

 private:
  struct Command {
    enum class Kind {
      load_model = 1,
      generate,
      pause,
      cancel,
      set_prompt,
      restore,
      snapshot,
      continue_from,
      decode_latents,
      set_device
    };
    Kind kind = Kind::pause;
    quint64 epoch = 0;       // epoch current when issued (edits: the epoch they start)
    int blocks = 0;          // generate
    QString text;            // load_model: path; set_prompt: prompt
    int recache_blocks = 0;  // set_prompt
    quint64 seed = 0;        // load_model, continue_from
    SnapshotPtr snapshot;    // restore
    std::vector<float> latents;  // decode_latents (text: the caller's tag)
    qint64 first_frame = 0;      // decode_latents
    EngineDevice device;         // set_device
    bool resume = false;         // set_device
  };

  // Appends `command` (bumping the epoch first when `is_edit`; edits and cancel also abort the
  // block in flight). Returns the command's epoch.
  quint64 enqueue(Command command, bool is_edit, bool abort_block_in_flight);
  void schedulePump();
  void pump();  // engine thread: runs queued commands, then at most one block
  void execute(Command& command);
  void executeLoadModel(const Command& command);
  void runOneBlock();
  void executeSetDevice(const Command& command);
  // Builds a session on device_ for model_ with `seed` (throws what the session throws).
  std::shared_ptr<strand::Session> buildSession(quint64 seed);
  void installSession(std::shared_ptr<strand::Session> session);  // swaps under the lock
  // Rebuilds the session on device_ at `state`; false (and nothing installed) if it failed.
  bool rebuildAt(const strand::MemoryState& state, QString* failure);
  void rememberGoodState();  // last_good_state_ = the session's memory now
  // A device failure (GPU out of memory, any device error): stops generation (a later
  // setDevice(d, true) resumes it), emits deviceFailed(), and for a device error marks the engine
  // failed and releases the session. False if `e` is not one (the caller reports it as before).
  bool handleDeviceFailure(const std::exception& e);
  [[nodiscard]] QString failedMessage() const;
  void deliverFrames();  // owner thread
  void publishState();
  void reportError(const QString& message);
  void postToOwner(std::function<void()> fn);
  // Runs `fn` on the owner thread only if no edit happened since `epoch`.
  void postResult(quint64 epoch, std::function<void()> fn);

  const EngineWorkerOptions options_;
  QThread* thread_ = nullptr;               // owned; deleted in the destructor after join
  std::unique_ptr<QObject> owner_context_;  // lives on the owner thread: target of posted events

  // Guards the queue, the session pointer swap and in_block_, so that an edit either reaches the
  // engine thread before it starts a block, or cancels that block.
  mutable std::mutex mutex_;
  std::deque<Command> commands_;
  std::shared_ptr<strand::Session> session_;
  bool in_block_ = false;
  std::atomic<bool> shutting_down_{false};

  std::atomic<quint64> epoch_{0};
  std::atomic<bool> pump_posted_{false};
  std::atomic<EngineState> state_{EngineState::no_model};
  std::atomic<qint64> stale_frames_dropped_{0};
  std::atomic<qint64> blocks_generated_{0};
  FrameMailbox mailbox_;

  // Engine thread only.
  std::shared_ptr<const strand::Model> model_;
  int remaining_blocks_ = 0;  // > 0: that many; kUntilStopped; 0: idle
  quint64 active_epoch_ = 0;  // epoch of the last edit the session has taken in
  bool loading_ = false;
  EngineState published_state_ = EngineState::no_model;
  EngineDevice device_;  // engine thread's copy; device_shared_ under mutex_
  EngineDevice device_shared_;
  bool failed_ = false;  // a device error broke the session (it is released)
  QString failed_reason_;
  SnapshotPtr last_good_state_;  // host copy of the last good block boundary
  int interrupted_blocks_ = 0;   // remaining_blocks_ when a device failure stopped them
  // The last load that failed on a device: setDevice() retries it there.
  QString failed_load_path_;
  quint64 failed_load_seed_ = 0;
};

}  // namespace strand::desktop

Q_DECLARE_METATYPE(strand::desktop::ModelInfo)
Q_DECLARE_METATYPE(strand::desktop::BlockStats)
Q_DECLARE_METATYPE(strand::desktop::CommittedBlock)
Q_DECLARE_METATYPE(strand::desktop::SnapshotPtr)
Q_DECLARE_METATYPE(strand::desktop::EngineState)
Q_DECLARE_METATYPE(strand::desktop::EngineDevice)
Q_DECLARE_METATYPE(strand::desktop::DeviceFailure)
