#include "export_queue.h"

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QThread>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>

#include "engine_worker.h"
#include "strand/error.h"

namespace strand::desktop {

struct ExportQueue::Control {
  std::atomic<bool> cancel{false};
  std::atomic<qint64> frames_done{0};
  std::mutex mutex;
  std::condition_variable wake;
  bool paused = false;  // guarded by mutex
  // Written by the worker (under mutex) just before its thread ends.
  ExportJobState result = ExportJobState::failed;
  QString error;
};

namespace {

QString tr(const char* text) {
  return QCoreApplication::translate("ExportQueue", text);
}

// Removes a finished output and its sidecar (a cancelled or failed job leaves nothing behind).
void removeOutput(const QString& path, bool sequence) {
  if (sequence) {
    QDir(path).removeRecursively();
  } else {
    QFile::remove(path);
  }
  QFile::remove(QString::fromStdString(strand::sidecar_path(path.toStdString(), sequence)));
}

// The worker's whole job: each plan item through strand::export_item (as strand-cli does), then
// the timeline. Returns the final state; *error says why it failed.
ExportJobState runJob(const ExportJobSpec& spec, std::atomic<bool>& cancel,
                      std::atomic<qint64>& frames_done,
                      const std::function<bool()>& wait_while_paused,
                      const std::function<void()>& before_frame, QString* error) {
  std::vector<std::pair<QString, bool>> finished;  // outputs renamed into place so far
  const auto remove_finished = [&finished] {
    for (const auto& [path, sequence] : finished) removeOutput(path, sequence);
  };
  // Pausing holds the worker inside the frame source, between two frames.
  const strand::ExportFrameSource source = [&](int branch_id, int64_t path_frame) {
    if (!wait_while_paused()) throw strand::Error(strand::ErrorKind::cancelled, "export cancelled");
    if (before_frame) before_frame();
    return spec.frames.frame(branch_id, path_frame);
  };
  try {
    const bool sequence = strand::find_preset(spec.settings.preset).sequence;
    const strand::FrameRate target = spec.settings.target_rate;
    std::vector<std::string> media_paths;
    strand::ExportedMedia media;
    qint64 frames_before = 0;
    for (size_t i = 0; i < spec.plan.items.size(); ++i) {
      const strand::ExportItem& item = spec.plan.items[i];
      const QString& path = spec.output_paths[qsizetype(i)];
      strand::ExportControl control;
      control.cancel = &cancel;
      control.progress = [&](int64_t done, int64_t) {
        frames_done.store(frames_before + outputFrames(done, spec.source_rate, target));
      };
      media = strand::export_item(item, source, spec.source_rate, path.toStdString(), spec.settings,
                                  control);
      finished.emplace_back(path, sequence);
      media_paths.push_back(path.toStdString());
      frames_before += media.frames;
      frames_done.store(frames_before);
    }
    if (spec.timeline != TimelineFormat::none) {
      if (cancel.load()) throw strand::Error(strand::ErrorKind::cancelled, "export cancelled");
      strand::write_timeline(spec.timeline_path.toStdString(),
                             timelineFormatKey(spec.timeline).toStdString(),
                             strand::plan_timeline(spec.plan, media_paths, spec.source_rate,
                                                   media.rate, media.width, media.height));
    }
    return ExportJobState::done;
  } catch (const std::exception& e) {
    remove_finished();
    if (cancel.load()) return ExportJobState::cancelled;
    *error = QString::fromUtf8(e.what());
    return ExportJobState::failed;
  }
}

}  // namespace

QString exportJobStateText(ExportJobState state) {
  switch (state) {
    case ExportJobState::queued:
      return tr("Queued");
    case ExportJobState::running:
      return tr("Exporting");
    case ExportJobState::paused:
      return tr("Paused");
    case ExportJobState::done:
      return tr("Done");
    case ExportJobState::failed:
      return tr("Failed");
    case ExportJobState::cancelled:
      return tr("Cancelled");
  }
  return {};
}

ExportQueue::ExportQueue(ExportQueueOptions options, QObject* parent)
    : QObject(parent), options_(std::move(options)) {
  qRegisterMetaType<ExportJobState>();
  options_.max_parallel = std::max(options_.max_parallel, 1);
  progress_timer_.setInterval(std::max(options_.progress_interval_ms, 10));
  connect(&progress_timer_, &QTimer::timeout, this, &ExportQueue::pollProgress);
  clock_.start();
}

ExportQueue::~ExportQueue() {
  progress_timer_.stop();
  for (auto& [id, job] : jobs_) {
    if (job.thread == nullptr) continue;
    QObject::disconnect(job.thread, nullptr, this, nullptr);
    {
      const std::lock_guard lock(job.control->mutex);
      job.control->paused = false;
    }
    job.control->cancel.store(true);
    job.control->wake.notify_all();
  }
  for (auto& [id, job] : jobs_) {
    if (job.thread == nullptr) continue;
    job.thread->wait();
    delete job.thread;
    job.thread = nullptr;
  }
}

ExportQueue::Job* ExportQueue::find(int id) {
  const auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

const ExportJobStatus* ExportQueue::job(int id) const {
  const auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second.status;
}

QList<int> ExportQueue::jobIds() const {
  return order_;
}

bool ExportQueue::hasActiveJobs() const {
  return std::any_of(jobs_.begin(), jobs_.end(),
                     [](const auto& entry) { return !isFinished(entry.second.status.state); });
}

int ExportQueue::add(ExportJobSpec spec, QString* error) {
  QStringList paths;
  for (const QString& path : spec.output_paths) paths << QFileInfo(path).absoluteFilePath();
  if (!spec.timeline_path.isEmpty()) paths << QFileInfo(spec.timeline_path).absoluteFilePath();
  for (const auto& [other_id, other] : jobs_) {
    if (isFinished(other.status.state)) continue;
    QStringList other_paths = other.status.outputs;
    if (!other.status.timeline_path.isEmpty()) other_paths << other.status.timeline_path;
    for (const QString& path : paths) {
      if (other_paths.contains(path)) {
        if (error != nullptr) *error = tr("Another export in the queue writes %1.").arg(path);
        return 0;
      }
    }
  }
  if (spec.output_paths.isEmpty() ||
      spec.output_paths.size() != qsizetype(spec.plan.items.size())) {
    if (error != nullptr) *error = tr("Nothing to export.");
    return 0;
  }

  const int id = next_id_++;
  Job& job = jobs_[id];
  job.status.id = id;
  job.status.name = spec.name;
  job.status.outputs = paths.mid(0, spec.output_paths.size());
  if (!spec.timeline_path.isEmpty())
    job.status.timeline_path = QFileInfo(spec.timeline_path).absoluteFilePath();
  job.status.folder = QFileInfo(job.status.outputs.front()).absolutePath();
  job.status.frames_total = outputFrameCount(spec);
  job.spec = std::move(spec);
  job.control = std::make_shared<Control>();
  order_ << id;
  emit jobAdded(id);
  startQueued();
  return id;
}

void ExportQueue::startQueued() {
  int running = 0;
  for (const auto& [id, job] : jobs_) {
    if (job.thread != nullptr && job.status.state == ExportJobState::running) ++running;
  }
  for (int id : order_) {
    if (running >= options_.max_parallel) break;
    Job& job = jobs_[id];
    if (job.status.state != ExportJobState::queued || job.thread != nullptr) continue;

    auto spec = std::make_shared<const ExportJobSpec>(std::move(job.spec));
    job.spec = {};
    std::shared_ptr<Control> control = job.control;
    const int nice_increment = options_.worker_nice_increment;
    std::function<void()> before_frame = options_.before_frame;
    job.thread = QThread::create([spec, control, nice_increment, before_frame] {
      lowerCurrentThreadPriority(nice_increment);  // like the engine: the GUI thread goes first
      const auto wait_while_paused = [&control] {
        std::unique_lock lock(control->mutex);
        control->wake.wait(lock, [&control] { return !control->paused || control->cancel.load(); });
        return !control->cancel.load();
      };
      QString error;
      const ExportJobState state = runJob(*spec, control->cancel, control->frames_done,
                                          wait_while_paused, before_frame, &error);
      const std::lock_guard lock(control->mutex);
      control->result = state;
      control->error = error;
    });
    job.thread->setObjectName(QStringLiteral("export-%1").arg(id));
    connect(job.thread, &QThread::finished, this, [this, id] { onWorkerFinished(id); });
    job.status.state = ExportJobState::running;
    job.samples.clear();
    job.samples.emplace_back(clock_.elapsed(), 0);
    job.thread->start();
    ++running;
    emit jobChanged(id);
  }
  if (!progress_timer_.isActive() && hasActiveJobs()) progress_timer_.start();
}

void ExportQueue::pollProgress() {
  const qint64 now = clock_.elapsed();
  bool any_running = false;
  for (auto& [id, job] : jobs_) {
    if (job.thread == nullptr || isFinished(job.status.state)) continue;
    any_running = true;
    const qint64 done = job.control->frames_done.load();
    ExportJobStatus& status = job.status;
    const bool changed = done != status.frames_done;
    status.frames_done = done;
    if (status.state == ExportJobState::paused) {
      status.frames_per_second = 0;
      status.seconds_left = -1;
    } else {
      // Speed over the last ~3 s, so a slow start or a pause does not linger in the estimate.
      job.samples.emplace_back(now, done);
      while (job.samples.size() > 2 && now - job.samples.front().first > 3000)
        job.samples.pop_front();
      const auto& [t0, f0] = job.samples.front();
      const double seconds = static_cast<double>(now - t0) / 1000.0;
      if (seconds >= 0.2) {
        status.frames_per_second = static_cast<double>(done - f0) / seconds;
        status.seconds_left =
            status.frames_per_second > 0
                ? static_cast<double>(status.frames_total - done) / status.frames_per_second
                : -1;
      }
    }
    if (changed || status.state == ExportJobState::running) emit jobChanged(id);
  }
  if (!any_running && !hasActiveJobs()) progress_timer_.stop();
}

void ExportQueue::onWorkerFinished(int id) {
  Job* job = find(id);
  if (job == nullptr || job->thread == nullptr) return;
  job->thread->wait();  // it has finished: returns at once
  job->thread->deleteLater();
  job->thread = nullptr;
  {
    const std::lock_guard lock(job->control->mutex);
    job->status.state = job->control->result;
    job->status.error = job->control->error;
  }
  job->status.frames_done = job->control->frames_done.load();
  job->status.frames_per_second = 0;
  job->status.seconds_left = -1;
  const ExportJobState state = job->status.state;
  emit jobChanged(id);
  emit jobFinished(id, state);
  startQueued();
}

bool ExportQueue::pause(int id) {
  Job* job = find(id);
  if (job == nullptr || (job->status.state != ExportJobState::running &&
                         job->status.state != ExportJobState::queued)) {
    return false;
  }
  {
    const std::lock_guard lock(job->control->mutex);
    job->control->paused = true;
  }
  job->status.state = ExportJobState::paused;
  job->status.frames_per_second = 0;
  job->status.seconds_left = -1;
  job->samples.clear();
  emit jobChanged(id);
  // A paused job keeps its thread but not its slot: the next queued job may start.
  startQueued();
  return true;
}

bool ExportQueue::resume(int id) {
  Job* job = find(id);
  if (job == nullptr || job->status.state != ExportJobState::paused) return false;
  {
    const std::lock_guard lock(job->control->mutex);
    job->control->paused = false;
  }
  job->control->wake.notify_all();
  job->status.state = job->thread != nullptr ? ExportJobState::running : ExportJobState::queued;
  job->samples.clear();
  job->samples.emplace_back(clock_.elapsed(), job->control->frames_done.load());
  emit jobChanged(id);
  startQueued();
  return true;
}

bool ExportQueue::cancel(int id) {
  Job* job = find(id);
  if (job == nullptr || isFinished(job->status.state)) return false;
  if (job->thread == nullptr) {  // never started: nothing written
    job->status.state = ExportJobState::cancelled;
    job->spec = {};
    emit jobChanged(id);
    emit jobFinished(id, ExportJobState::cancelled);
    return true;
  }
  job->control->cancel.store(true);
  job->status.cancel_requested = true;
  emit jobChanged(id);
  {
    const std::lock_guard lock(job->control->mutex);
    job->control->paused = false;
  }
  job->control->wake.notify_all();
  // The state changes when the worker has removed its files (onWorkerFinished).
  return true;
}

bool ExportQueue::remove(int id) {
  Job* job = find(id);
  if (job == nullptr || !isFinished(job->status.state) || job->thread != nullptr) return false;
  jobs_.erase(id);
  order_.removeAll(id);
  emit jobRemoved(id);
  return true;
}

void ExportQueue::removeFinished() {
  for (int id : QList<int>(order_)) remove(id);
}

}  // namespace strand::desktop
