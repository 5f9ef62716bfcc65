// ExportQueue: runs export jobs (ExportJobSpec) in the background, in the order they were added,
// each on its own worker thread (at most `max_parallel` encoding at once), while the GUI and the
// generating engine go on. No widgets: ExportQueueDock shows it.
//
// Threads. A job's frames are shallow copies of immutable project images (see export_job.h), so
// the worker reads them without locks and never touches the project or the engine. The GUI thread
// only flips atomics and a condition variable (pause, resume, cancel) and polls the frame counter
// on a timer for progress, speed and time left: no call here waits for a worker, except the
// destructor, which cancels every job and joins its thread.
//
// Files. Each plan item goes through strand::export_item, as in strand-cli (an ExportWriter:
// NAME.part / DIR.part/, renamed when complete).
// A cancelled or failed job removes everything it wrote, including the finished outputs of a
// multi-file job and their sidecars, so it leaves no file that looks finished. The timeline is
// written (atomically, strand::plan_timeline) only after every media file is complete.
#pragma once
#include <QElapsedTimer>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QTimer>
#include <deque>
#include <functional>
#include <map>
#include <memory>

#include "export_job.h"

class QThread;

namespace strand::desktop {

enum class ExportJobState {
  queued = 1,  // waiting for a free worker
  running,
  paused,  // holds at the next frame (a paused queued job does not start)
  done,
  failed,
  cancelled,
};

[[nodiscard]] QString exportJobStateText(ExportJobState state);
[[nodiscard]] inline bool isFinished(ExportJobState state) {
  return state == ExportJobState::done || state == ExportJobState::failed ||
         state == ExportJobState::cancelled;
}

// What the GUI sees of a job (owned by the queue, read on the GUI thread).
struct ExportJobStatus {
  int id = 0;
  QString name;
  QStringList outputs;    // final media paths
  QString timeline_path;  // empty: none
  QString folder;         // where the outputs go (for "Reveal in folder")
  ExportJobState state = ExportJobState::queued;
  qint64 frames_done = 0;  // output frames written
  qint64 frames_total = 0;
  double frames_per_second = 0;   // over the last few seconds; 0 while paused or unknown
  double seconds_left = -1;       // -1: unknown
  QString error;                  // why it failed
  bool cancel_requested = false;  // cancel asked; the worker is removing its files
};

struct ExportQueueOptions {
  int max_parallel = 1;            // jobs encoding at once (paused ones do not count)
  int progress_interval_ms = 250;  // how often progress is polled and jobChanged emitted
  int worker_nice_increment = 10;  // added to the worker threads' nice value (Linux)
  // Runs on the worker thread before each source frame is encoded. For tests that need a job
  // to last long enough to pause or cancel it; leave empty otherwise.
  std::function<void()> before_frame;
};

class ExportQueue : public QObject {
  Q_OBJECT

 public:
  explicit ExportQueue(ExportQueueOptions options = {}, QObject* parent = nullptr);
  ~ExportQueue() override;  // cancels every job (their partial files are removed) and joins
  ExportQueue(const ExportQueue&) = delete;
  ExportQueue& operator=(const ExportQueue&) = delete;

  // Queues a job; returns its id (> 0), or 0 with *error when the job writes a path that a job
  // still in the queue writes too.
  int add(ExportJobSpec job, QString* error = nullptr);
  // false when the job is unknown or already finished.
  bool pause(int id);
  bool resume(int id);
  bool cancel(int id);
  // Forgets a finished job (its files stay). false if unknown or not finished.
  bool remove(int id);
  void removeFinished();

  [[nodiscard]] QList<int> jobIds() const;  // in the order they were added
  [[nodiscard]] const ExportJobStatus* job(int id) const;
  [[nodiscard]] bool hasActiveJobs() const;  // queued, running or paused

 signals:
  void jobAdded(int id);
  void jobChanged(int id);  // progress or state
  void jobFinished(int id, strand::desktop::ExportJobState state);
  void jobRemoved(int id);

 private:
  struct Control;  // shared with the worker thread
  struct Job {
    ExportJobStatus status;
    ExportJobSpec spec;  // handed to the worker when it starts
    std::shared_ptr<Control> control;
    QThread* thread = nullptr;
    std::deque<std::pair<qint64, qint64>> samples;  // (ms, frames) for the speed estimate
  };

  void startQueued();
  void pollProgress();
  void onWorkerFinished(int id);
  Job* find(int id);

  ExportQueueOptions options_;
  std::map<int, Job> jobs_;
  QList<int> order_;
  int next_id_ = 1;
  QTimer progress_timer_;
  QElapsedTimer clock_;
};

}  // namespace strand::desktop

Q_DECLARE_METATYPE(strand::desktop::ExportJobState)
