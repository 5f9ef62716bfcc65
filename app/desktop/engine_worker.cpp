#include "engine_worker.h"

#include <QFile>
#include <QThread>

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>

#include "strand/error.h"
#include "strand/model.h"
#include "strand/session.h"

namespace strand::desktop {

namespace {

QString describe(const std::exception& error) {
  return QString::fromUtf8(error.what());
}

// Fills what a caller may leave out: a name, and fp32 on the CPU (its only precision).
EngineDevice normalized(EngineDevice device) {
  if (!device.isGpu()) {
    device.index = 0;
    device.precision = strand::ComputePrecision::fp32;
  }
  if (device.name.isEmpty()) {
    device.name =
        device.isGpu() ? EngineWorker::tr("GPU %1").arg(device.index) : EngineWorker::tr("CPU");
  }
  return device;
}

}  // namespace

void lowerCurrentThreadPriority([[maybe_unused]] int nice_increment) {
#ifdef __linux__
  if (nice_increment <= 0) return;
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int current = getpriority(PRIO_PROCESS, tid);
  if (errno == 0) setpriority(PRIO_PROCESS, tid, std::min(current + nice_increment, 19));
#endif
}

// Engine frames are tightly packed RGB8; QImage rows are 4-byte aligned, so copy row by row.
QImage toQImage(const strand::Frame& frame) {
  if (frame.width <= 0 || frame.height <= 0) return {};
  const size_t row_bytes = static_cast<size_t>(frame.width) * 3;
  if (frame.rgb.size() < row_bytes * static_cast<size_t>(frame.height)) return {};
  QImage image(frame.width, frame.height, QImage::Format_RGB888);
  if (image.isNull()) return {};  // allocation failed
  for (int y = 0; y < frame.height; ++y) {
    std::memcpy(image.scanLine(y), frame.rgb.data() + static_cast<size_t>(y) * row_bytes,
                row_bytes);
  }
  return image;
}

bool EngineDevice::sameAs(const EngineDevice& other) const {
  return kind == other.kind && (!isGpu() || (index == other.index && precision == other.precision));
}

EngineDevice cpuEngineDevice() {
  return normalized(EngineDevice{});
}

void applyEngineDevice(const EngineDevice& device, strand::SessionOptions& options) {
  options.device = device.kind;
  options.device_index = device.isGpu() ? device.index : 0;
  options.precision = device.isGpu() ? device.precision : strand::ComputePrecision::fp32;
}

qint64 estimateStateBytes(const strand::Model& model, qint64 blocks_done) {
  const ModelConfig& config = model.config();
  qint64 kept_blocks = std::max<qint64>(blocks_done, 0);
  if (config.kv_window > 0) {
    kept_blocks = std::min<qint64>(kept_blocks, config.kv_window + config.kv_sink);
  }
  return static_cast<qint64>(model.fixed_state_bytes()) +
         static_cast<qint64>(model.state_bytes_per_block()) * kept_blocks;
}

EngineWorker::EngineWorker(EngineWorkerOptions options)
    : options_(options),
      owner_context_(std::make_unique<QObject>()),
      mailbox_(options.frame_queue_capacity, options.overflow),
      device_(normalized(options.device)),
      device_shared_(device_) {
  thread_ = new QThread();
  thread_->setObjectName(QStringLiteral("strand-engine"));
  moveToThread(thread_);
  const int nice_increment = options_.engine_nice_increment;
  connect(
      thread_, &QThread::started, thread_,
      [nice_increment] { lowerCurrentThreadPriority(nice_increment); }, Qt::DirectConnection);
  thread_->start();
}

EngineWorker::~EngineWorker() {
  {
    std::lock_guard lock(mutex_);
    shutting_down_ = true;
    commands_.clear();
    if (in_block_ && session_) session_->cancel();
  }
  mailbox_.wakeAll();
  thread_->quit();
  thread_->wait();
  delete thread_;
  // The engine thread has ended: the session and model are released here, and pending events for
  // owner_context_ are discarded with it.
}

quint64 EngineWorker::enqueue(Command command, bool is_edit, bool abort_block_in_flight) {
  quint64 epoch = 0;
  {
    std::lock_guard lock(mutex_);
    if (shutting_down_) return epoch_.load();
    // Bumping under the lock keeps epoch order equal to queue order across calling threads.
    epoch = is_edit ? ++epoch_ : epoch_.load();
    command.epoch = epoch;
    commands_.push_back(std::move(command));
    // The engine thread claims a block only while the queue is empty (see pump()), so either it
    // sees this command first or we see in_block_ and stop that block between DiT passes.
    if (abort_block_in_flight && in_block_ && session_) session_->cancel();
  }
  if (is_edit) mailbox_.wakeAll();  // a producer waiting for space re-checks its epoch
  schedulePump();
  return epoch;
}

quint64 EngineWorker::loadModel(const QString& path, quint64 seed) {
  Command command;
  command.kind = Command::Kind::load_model;
  command.text = path;
  command.seed = seed;
  return enqueue(std::move(command), /*is_edit=*/true, /*abort_block_in_flight=*/true);
}

void EngineWorker::generate(int blocks) {
  Command command;
  command.kind = Command::Kind::generate;
  command.blocks = blocks;
  enqueue(std::move(command), false, false);
}

void EngineWorker::pause() {
  Command command;
  command.kind = Command::Kind::pause;
  enqueue(std::move(command), false, false);
}

void EngineWorker::cancel() {
  Command command;
  command.kind = Command::Kind::cancel;
  enqueue(std::move(command), false, true);
}

quint64 EngineWorker::setPrompt(const QString& prompt, int recache_blocks) {
  Command command;
  command.kind = Command::Kind::set_prompt;
  command.text = prompt;
  command.recache_blocks = std::max(recache_blocks, 0);
  return enqueue(std::move(command), true, true);
}

quint64 EngineWorker::restore(SnapshotPtr snapshot) {
  Command command;
  command.kind = Command::Kind::restore;
  command.snapshot = std::move(snapshot);
  return enqueue(std::move(command), true, true);
}

quint64 EngineWorker::continueFrom(SnapshotPtr snapshot, quint64 seed, const QString& prompt) {
  Command command;
  command.kind = Command::Kind::continue_from;
  command.snapshot = std::move(snapshot);
  command.seed = seed;
  command.text = prompt;
  return enqueue(std::move(command), true, true);
}

void EngineWorker::requestSnapshot() {
  Command command;
  command.kind = Command::Kind::snapshot;
  enqueue(std::move(command), false, false);
}

void EngineWorker::decodeLatents(const QString& tag, std::vector<float> latents, qint64 first_frame) {
  Command command;
  command.kind = Command::Kind::decode_latents;
  command.text = tag;
  command.latents = std::move(latents);
  command.first_frame = first_frame;
  enqueue(std::move(command), false, false);
}

void EngineWorker::setDevice(const EngineDevice& device, bool resume_interrupted) {
  Command command;
  command.kind = Command::Kind::set_device;
  command.device = normalized(device);
  command.resume = resume_interrupted;
  // Not an edit (the video does not change), but the block in flight is made again over there.
  enqueue(std::move(command), false, true);
}

EngineDevice EngineWorker::device() const {
  std::lock_guard lock(mutex_);
  return device_shared_;
}

void EngineWorker::schedulePump() {
  if (pump_posted_.exchange(true)) return;  // one pending pump is enough
  QMetaObject::invokeMethod(this, &EngineWorker::pump, Qt::QueuedConnection);
}

void EngineWorker::postToOwner(std::function<void()> fn) {
  QMetaObject::invokeMethod(owner_context_.get(), std::move(fn), Qt::QueuedConnection);
}

void EngineWorker::postResult(quint64 epoch, std::function<void()> fn) {
  postToOwner([this, epoch, fn = std::move(fn)] {
    if (epoch == epoch_.load()) fn();
  });
}

void EngineWorker::reportError(const QString& message) {
  postToOwner([this, message] { emit error(message); });
}

void EngineWorker::pump() {
  pump_posted_.store(false);
  bool start_block = false;
  for (;;) {
    Command command;
    bool have_command = false;
    {
      std::lock_guard lock(mutex_);
      if (shutting_down_) return;
      if (!commands_.empty()) {
        command = std::move(commands_.front());
        commands_.pop_front();
        have_command = true;
      } else {
        start_block = remaining_blocks_ != 0 && session_ != nullptr;
        in_block_ = start_block;
      }
    }
    if (!have_command) break;
    execute(command);
  }
  publishState();
  if (!start_block) return;
  runOneBlock();
  publishState();
  schedulePump();  // the next block comes after any command that arrived meanwhile
}

void EngineWorker::execute(Command& command) {
  using Kind = Command::Kind;
  if (failed_) {
    // The session is gone with its device: only a new device (or model) brings the engine back.
    switch (command.kind) {
      case Kind::load_model:
      case Kind::set_device:
        break;
      case Kind::pause:
      case Kind::cancel:
        remaining_blocks_ = 0;
        return;
      case Kind::decode_latents: {
        const QString tag = command.text;
        const QString reason = failedMessage();
        postToOwner([this, tag, reason] { emit latentsDecodeFailed(tag, reason); });
        return;
      }
      case Kind::set_prompt: {
        active_epoch_ = command.epoch;
        const QString prompt = command.text;
        const QString reason = failedMessage();
        postToOwner([this, prompt, reason] { emit promptRejected(prompt, reason); });
        reportError(reason);
        return;
      }
      case Kind::restore:
      case Kind::continue_from:
        active_epoch_ = command.epoch;
        reportError(failedMessage());
        return;
      case Kind::generate:
      case Kind::snapshot:
        reportError(failedMessage());
        return;
    }
  }
  switch (command.kind) {
    case Kind::load_model:
      executeLoadModel(command);
      return;
    case Kind::set_device:
      executeSetDevice(command);
      return;
    case Kind::generate:
      interrupted_blocks_ = 0;  // a new instruction replaces the one a device failure stopped
      if (!session_) {
        reportError(tr("No model is loaded."));
      } else if (session_->prompt().empty()) {
        reportError(tr("Enter a prompt before generating."));
      } else if (command.blocks > 0 || command.blocks == kUntilStopped) {
        remaining_blocks_ = command.blocks;
      }
      return;
    case Kind::pause:
    case Kind::cancel:
      remaining_blocks_ = 0;
      return;
    case Kind::set_prompt: {
      active_epoch_ = command.epoch;  // even if rejected: later blocks belong to the new epoch
      if (!session_) {
        reportError(tr("No model is loaded."));
        return;
      }
      try {
        session_->set_prompt(command.text.toStdString(), command.recache_blocks);
        rememberGoodState();
        const QString prompt = command.text;
        postResult(command.epoch,
                   [this, prompt, epoch = command.epoch] { emit promptApplied(prompt, epoch); });
      } catch (const std::exception& e) {
        const QString prompt = command.text;
        const QString reason = describe(e);
        postToOwner([this, prompt, reason] { emit promptRejected(prompt, reason); });
        if (!handleDeviceFailure(e)) reportError(tr("Prompt not applied: %1").arg(reason));
      }
      return;
    }
    case Kind::restore:
      active_epoch_ = command.epoch;
      if (!session_ || !command.snapshot) {
        reportError(!session_ ? tr("No model is loaded.") : tr("No snapshot to restore."));
        return;
      }
      try {
        session_->restore(*command.snapshot);
        rememberGoodState();
      } catch (const std::exception& e) {
        if (!handleDeviceFailure(e))
          reportError(tr("Could not restore the snapshot: %1").arg(describe(e)));
      }
      return;
    case Kind::continue_from:
      active_epoch_ = command.epoch;
      remaining_blocks_ = 0;  // a move to another place in the project never keeps generating
      if (!session_ || !command.snapshot) {
        reportError(!session_ ? tr("No model is loaded.") : tr("No snapshot to restore."));
        return;
      }
      try {
        session_->restore(*command.snapshot);
        session_->set_seed(command.seed);
        if (!command.text.isEmpty() && command.text.toStdString() != session_->prompt()) {
          session_->set_prompt(command.text.toStdString());
        }
        rememberGoodState();
      } catch (const std::exception& e) {
        if (!handleDeviceFailure(e)) {
          reportError(tr("Could not continue from the snapshot: %1").arg(describe(e)));
        }
      }
      return;
    case Kind::decode_latents: {
      const QString tag = command.text;
      if (!session_) {
        const QString reason = tr("No model is loaded.");
        postToOwner([this, tag, reason] { emit latentsDecodeFailed(tag, reason); });
        return;
      }
      try {
        QList<QImage> frames;
        for (const strand::Frame& frame : session_->decode_latents(command.latents, command.first_frame)) {
          frames << toQImage(frame);
        }
        const qint64 first = command.first_frame;
        postToOwner([this, tag, first, frames] { emit latentsDecoded(tag, first, frames); });
      } catch (const std::exception& e) {
        const QString reason = describe(e);
        postToOwner([this, tag, reason] { emit latentsDecodeFailed(tag, reason); });
        handleDeviceFailure(e);
      }
      return;
    }
    case Kind::snapshot:
      if (!session_) {
        reportError(tr("No model is loaded."));
        return;
      }
      try {
        auto snapshot = std::make_shared<const strand::MemoryState>(session_->snapshot());
        postResult(active_epoch_, [this, snapshot, epoch = active_epoch_] {
          emit snapshotReady(snapshot, epoch);
        });
      } catch (const std::exception& e) {
        if (!handleDeviceFailure(e))
          reportError(tr("Could not take a snapshot: %1").arg(describe(e)));
      }
      return;
  }
}

void EngineWorker::executeLoadModel(const Command& command) {
  active_epoch_ = command.epoch;
  remaining_blocks_ = 0;
  interrupted_blocks_ = 0;
  loading_ = true;
  failed_ = false;  // a new model starts over on the current device
  failed_reason_.clear();
  failed_load_path_.clear();
  publishState();
  // Release the old session first so two models never sit in memory at once.
  {
    std::lock_guard lock(mutex_);
    session_.reset();
  }
  model_.reset();
  last_good_state_.reset();
  bool model_read = false;
  try {
    auto model = strand::Model::load(QFile::encodeName(command.text).toStdString());
    model_read = true;
    model_ = model;  // buildSession() reads it
    auto session = buildSession(command.seed);

    const ModelConfig& config = model->config();
    ModelInfo info;
    info.path = command.text;
    info.name = QString::fromStdString(config.name);
    info.id = QString::fromStdString(model->id());
    info.width = config.width;
    info.height = config.height;
    info.fps = config.fps;
    info.frames_per_block = config.frames_per_block;
    info.parameters = model->parameter_count();
    info.steps = static_cast<int>(config.sigmas.size());
    info.model = model;
    info.initial_state = std::make_shared<const strand::MemoryState>(session->snapshot());

    last_good_state_ = info.initial_state;
    installSession(std::move(session));
    postResult(command.epoch, [this, info] { emit modelLoaded(info); });
    postToOwner([this, device = device_] { emit deviceChanged(device); });
  } catch (const std::exception& e) {
    loading_ = false;
    if (model_read && handleDeviceFailure(e)) {
      // The file is fine; the device is not: setDevice() retries the load on another one.
      failed_load_path_ = command.text;
      failed_load_seed_ = command.seed;
    } else {
      reportError(tr("Could not load the model \"%1\": %2").arg(command.text, describe(e)));
    }
    model_.reset();
  }
  loading_ = false;
}

std::shared_ptr<strand::Session> EngineWorker::buildSession(quint64 seed) {
  strand::SessionOptions session_options;
  session_options.seed = seed;
  session_options.recache_history = options_.recache_history;
  applyEngineDevice(device_, session_options);
  std::shared_ptr<strand::Session> session =
      options_.session_factory ? options_.session_factory(model_, session_options)
                               : std::make_shared<strand::Session>(model_, session_options);
  session->set_progress_callback([this](int step, int steps) {
    postToOwner([this, step, steps] { emit progress(step, steps); });
  });
  return session;
}

void EngineWorker::installSession(std::shared_ptr<strand::Session> session) {
  std::lock_guard lock(mutex_);
  session_ = std::move(session);
  device_shared_ = device_;
}

bool EngineWorker::rebuildAt(const strand::MemoryState& state, QString* failure) {
  try {
    auto session = buildSession(state.seed);
    session->restore(state);  // memory, seed and prompt
    installSession(std::move(session));
    return true;
  } catch (const std::exception& e) {
    *failure = describe(e);
    return false;
  }
}

void EngineWorker::rememberGoodState() {
  last_good_state_ = std::make_shared<const strand::MemoryState>(session_->snapshot());
}

void EngineWorker::executeSetDevice(const Command& command) {
  const EngineDevice previous = device_;
  device_ = command.device;
  if (!model_) {
    {
      std::lock_guard lock(mutex_);
      device_shared_ = device_;
    }
    if (!failed_load_path_.isEmpty()) {
      Command load;
      load.kind = Command::Kind::load_model;
      load.epoch = command.epoch;
      load.text = failed_load_path_;
      load.seed = failed_load_seed_;
      executeLoadModel(load);
    } else {
      failed_ = false;  // nothing loaded: the next load uses the new device
      postToOwner([this, device = device_] { emit deviceChanged(device); });
    }
    return;
  }
  const bool healthy = session_ != nullptr && !failed_;
  if (healthy && previous.sameAs(device_)) {
    {
      std::lock_guard lock(mutex_);
      device_shared_ = device_;
    }
    if (command.resume && interrupted_blocks_ != 0) remaining_blocks_ = interrupted_blocks_;
    interrupted_blocks_ = 0;
    return;
  }
  // Where the new session starts: the live boundary, or the last good one if the old device broke.
  SnapshotPtr state;
  if (healthy) {
    try {
      state = std::make_shared<const strand::MemoryState>(session_->snapshot());
    } catch (const std::exception&) {
      state = last_good_state_;
    }
  } else {
    state = last_good_state_;
  }
  if (!state) {
    reportError(tr("No block boundary to continue from: load the model again."));
    return;
  }
  // Release the old session first: it may hold the memory the new one needs (same GPU).
  {
    std::lock_guard lock(mutex_);
    session_.reset();
  }
  QString failure;
  if (rebuildAt(*state, &failure)) {
    failed_ = false;
    failed_reason_.clear();
    last_good_state_ = state;
    if (command.resume && interrupted_blocks_ != 0) remaining_blocks_ = interrupted_blocks_;
    interrupted_blocks_ = 0;
    postToOwner([this, device = device_] { emit deviceChanged(device); });
    return;
  }
  const QString target = device_.name;
  device_ = previous;
  QString previous_failure;
  if (healthy && rebuildAt(*state, &previous_failure)) {
    reportError(
        tr("Could not compute on %1: %2. Staying on %3.").arg(target, failure, previous.name));
    postToOwner([this, device = device_] { emit deviceChanged(device); });
    return;
  }
  remaining_blocks_ = 0;
  failed_ = true;
  failed_reason_ = failure;
  {
    std::lock_guard lock(mutex_);
    device_shared_ = device_;
  }
  reportError(tr("Could not compute on %1: %2").arg(target, failure));
}

bool EngineWorker::handleDeviceFailure(const std::exception& e) {
  const auto* error = dynamic_cast<const strand::Error*>(&e);
  if (error == nullptr) return false;
  const bool out_of_memory = error->kind() == strand::ErrorKind::out_of_memory && device_.isGpu();
  const bool lost = error->kind() == strand::ErrorKind::device;
  if (!out_of_memory && !lost) return false;

  DeviceFailure failure;
  failure.kind = lost ? DeviceFailureKind::device_lost : DeviceFailureKind::out_of_memory;
  failure.device = device_;
  failure.reason = describe(e);
  failure.interrupted_generation = remaining_blocks_ != 0;
  failure.next_block = last_good_state_ ? last_good_state_->next_block : 0;
  interrupted_blocks_ = remaining_blocks_;
  remaining_blocks_ = 0;
  if (lost) {
    // Nothing may call into a session whose device is broken; the last good state is on the host.
    failed_ = true;
    failed_reason_ = failure.reason;
    std::lock_guard lock(mutex_);
    session_.reset();
  }
  postToOwner([this, failure] { emit deviceFailed(failure); });
  return true;
}

QString EngineWorker::failedMessage() const {
  return tr("The engine stopped after an error on %1 (%2). Switch to the CPU in Settings, or "
            "restart Strand to use the GPU again.")
      .arg(device_.name, failed_reason_);
}

void EngineWorker::runOneBlock() {
  const quint64 block_epoch = active_epoch_;
  strand::BlockResult result;
  QString failure;
  bool committed = false;
  CommittedBlock record;
  std::optional<strand::Error> error_thrown;
  try {
    record.prompt = QString::fromStdString(session_->prompt());
    record.seed = session_->seed();
    if (options_.before_block) {
      strand::SessionOptions session_options;
      session_options.seed = record.seed;
      session_options.recache_history = options_.recache_history;
      applyEngineDevice(device_, session_options);
      options_.before_block(session_options, session_->next_block());
    }
    result = session_->generate_next_block();
    committed = true;
    record.state_after = std::make_shared<const strand::MemoryState>(session_->snapshot());
  } catch (const strand::Error& e) {
    // A cancel leaves the session at its last committed block. Whoever cancelled has queued the
    // command that says what happens next (stop, new prompt, restore). If no such command is
    // queued, the cancel was one that landed after the previous block's last DiT pass and was
    // still pending in the session: pump() simply retries the block.
    if (e.kind() != strand::ErrorKind::cancelled) {
      failure = describe(e);
      error_thrown = e;
    }
  } catch (const std::exception& e) {
    failure = describe(e);
  }
  {
    std::lock_guard lock(mutex_);
    in_block_ = false;
  }
  if (!failure.isEmpty()) {
    if (committed) {
      // The block is in the session but could not be read back: go back to the last good
      // boundary, so the session never runs ahead of what the project has recorded.
      committed = false;
      try {
        if (last_good_state_) session_->restore(*last_good_state_);
      } catch (const std::exception&) {
        if (!error_thrown)
          error_thrown = strand::Error(strand::ErrorKind::device, failure.toStdString());
      }
    }
    if (error_thrown && handleDeviceFailure(*error_thrown)) return;
    remaining_blocks_ = 0;
    reportError(tr("Generation stopped: %1").arg(failure));
    return;
  }
  if (!committed) return;
  last_good_state_ = record.state_after;

  ++blocks_generated_;
  if (remaining_blocks_ > 0) --remaining_blocks_;

  const auto frame_count = static_cast<qint64>(result.frames.size());
  record.epoch = block_epoch;
  record.block_index = result.block_index;
  record.latents = result.latents;
  for (const strand::Frame& frame : result.frames) record.frames << toQImage(frame);
  const QList<QImage> images = record.frames;  // shared with the record (QImage is ref-counted)
  postToOwner([this, record = std::move(record)] { emit blockCommitted(record); });
  if (block_epoch != epoch_.load()) {  // edited meanwhile: the user no longer wants these
    stale_frames_dropped_ += frame_count;
    return;
  }

  const auto abandon = [this, block_epoch] {
    return shutting_down_.load() || epoch_.load() != block_epoch;
  };
  for (qsizetype i = 0; i < images.size(); ++i) {
    PendingFrame pending{images[i], result.frames[static_cast<size_t>(i)].index, block_epoch};
    const FrameMailbox::PushResult pushed = mailbox_.push(std::move(pending), abandon);
    if (pushed == FrameMailbox::PushResult::abandoned) {
      stale_frames_dropped_ += 1;
      continue;
    }
    if (pushed == FrameMailbox::PushResult::queued_notify) {
      postToOwner([this] { deliverFrames(); });
    }
  }

  BlockStats stats;
  stats.block_index = result.block_index;
  stats.first_frame = result.frames.empty() ? 0 : result.frames.front().index;
  stats.frame_count = static_cast<int>(frame_count);
  stats.denoise_ms = result.timings.denoise_ms;
  stats.clean_ms = result.timings.clean_ms;
  stats.decode_ms = result.timings.decode_ms;
  stats.text_ms = result.timings.text_ms;
  stats.recache_ms = result.timings.recache_ms;
  stats.total_ms = result.timings.total_ms;
  stats.state_bytes = estimateStateBytes(*model_, result.block_index + 1);
  stats.epoch = block_epoch;
  stats.preview_frames_dropped = mailbox_.dropped();
  // Posted after the frames' delivery event, so receivers see a block's frames before its stats.
  postResult(block_epoch, [this, stats] { emit blockDone(stats); });
}

void EngineWorker::deliverFrames() {
  for (PendingFrame& frame : mailbox_.takeAll()) {
    // Re-checked per frame: a receiver may edit (bump the epoch) in the middle of a batch.
    if (frame.epoch != epoch_.load()) {
      ++stale_frames_dropped_;
      continue;
    }
    emit frameReady(frame.image, frame.index, frame.epoch);
  }
}

void EngineWorker::publishState() {
  EngineState now = EngineState::ready;
  if (loading_) {
    now = EngineState::loading;
  } else if (failed_) {
    now = EngineState::failed;
  } else if (!session_) {
    now = EngineState::no_model;
  } else if (remaining_blocks_ != 0) {
    now = EngineState::generating;
  }
  if (now == published_state_) return;
  published_state_ = now;
  state_.store(now);
  postToOwner([this, now] { emit stateChanged(now); });
}

}  // namespace strand::desktop
