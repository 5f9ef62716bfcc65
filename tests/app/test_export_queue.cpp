// The export queue and its dock: jobs run to completion on worker threads (PNG frames compared
// with the source, FFV1 frame count probed), pause holds and resume finishes, cancel and failure
// leave no file that looks finished and the project folder unchanged, the GUI thread is never
// blocked while an export runs, and the dock's buttons, reveal and notification work.
#include <QMainWindow>
#include <QStatusBar>
#include <QSystemTrayIcon>
#include <QToolButton>
#include <QTreeWidget>
#include <QtTest>
#include <atomic>
#include <chrono>
#include <thread>

#include "export_queue.h"
#include "export_queue_dock.h"
#include "export_test_support.h"
#include "project_file.h"
#include "stall_monitor.h"

using namespace strand::desktop;
using namespace strand::desktop::test;

namespace {

constexpr int kTimeoutMs = 30000;

ExportJobSpec plan(const ProjectModel& project, ExportRequest request) {
  ExportJobSpec job;
  QString error;
  ExportProjectInfo info;
  info.model_path = QStringLiteral("test-model");
  info.native_fps = kNativeFps;
  if (!planExport(project, request, info, &job, &error)) {
    qFatal("planExport failed: %s", qPrintable(error));
  }
  return job;
}

// A PNG sequence of the whole root branch, written to `folder`/`name`.
ExportRequest pngRequest(const QString& folder, const QString& name) {
  ExportRequest request;
  request.format = QStringLiteral("png");
  request.output_path = QDir(folder).filePath(name);
  return request;
}

bool finished(const ExportQueue& queue, int id) {
  const ExportJobStatus* status = queue.job(id);
  return status != nullptr && isFinished(status->state);
}

// Slows each frame down so a job lasts long enough to pause or cancel it mid-way.
ExportQueueOptions slowOptions(int ms_per_frame) {
  ExportQueueOptions options;
  options.progress_interval_ms = 20;
  options.before_frame = [ms_per_frame] {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms_per_frame));
  };
  return options;
}

}  // namespace

class TestExportQueue : public QObject {
  Q_OBJECT

  QTemporaryDir settings_dir_;

 private slots:
  void initTestCase() {
    QVERIFY(settings_dir_.isValid());
    isolateSettings(settings_dir_);
  }

  void pngSequenceJobCompletesWithTheSourceFrames() {
    if (!strand::find_preset("png").available) QSKIP("this FFmpeg has no PNG encoder");
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, true);
    ExportRequest request;
    request.target = ExportTarget::image_sequence;
    request.format = QStringLiteral("png");
    request.timeline = TimelineFormat::otio;
    request.output_path = QDir(out.path()).filePath(QStringLiteral("shots"));
    ExportQueue queue;
    QSignalSpy finished_spy(&queue, &ExportQueue::jobFinished);
    const int id = queue.add(plan(project, request));
    QVERIFY(id > 0);
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    const ExportJobStatus* status = queue.job(id);
    QVERIFY2(status->state == ExportJobState::done, qPrintable(status->error));
    QCOMPARE(status->frames_done, qint64{12});
    QCOMPARE(status->frames_total, qint64{12});
    QCOMPARE(finished_spy.count(), 1);

    const QDir shots(request.output_path);
    const QStringList files = shots.entryList({QStringLiteral("*.png")}, QDir::Files, QDir::Name);
    QCOMPARE(files.size(), 12);
    QCOMPARE(files.front(), QStringLiteral("frame_000000.png"));
    for (int f = 0; f < 12; ++f) {
      const QImage written =
          QImage(shots.filePath(files[f])).convertToFormat(QImage::Format_RGB888);
      const QImage source = project.frame(ProjectModel::kRootId, f);
      QCOMPARE(written.size(), source.size());
      // Pixel by pixel: QImage::operator== also compares the colour space the PNG declares.
      for (int y = 0; y < source.height(); ++y) {
        for (int x = 0; x < source.width(); ++x) QCOMPARE(written.pixel(x, y), source.pixel(x, y));
      }
    }
    QVERIFY(QFileInfo::exists(request.output_path + QStringLiteral(".json")));  // sidecar
    QFile timeline(request.output_path + QStringLiteral(".otio"));
    QVERIFY(timeline.open(QIODevice::ReadOnly));
    const QByteArray otio = timeline.readAll();
    QVERIFY(otio.contains("Timeline.1"));
    QVERIFY(otio.contains("birds over a forest"));       // prompt change marker
    QVERIFY(otio.contains("branch 'side' forks here"));  // branch point marker
    QVERIFY(!QFileInfo::exists(request.output_path + QStringLiteral(".part")));
  }

  void ffv1JobConformedTo24FpsHasTheRightFrameCount() {
    if (!strand::find_preset("ffv1").available) QSKIP("this FFmpeg has no FFV1 encoder");
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, false);
    ExportRequest request;
    request.target = ExportTarget::archive;
    request.format = QStringLiteral("ffv1");
    request.rate = {24, 1};  // 12 frames at 8 fps -> 36 frames at 24 fps
    request.output_path = QDir(out.path()).filePath(QStringLiteral("archive.mkv"));
    ExportQueue queue;
    const int id = queue.add(plan(project, request));
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    QVERIFY2(queue.job(id)->state == ExportJobState::done, qPrintable(queue.job(id)->error));
    QCOMPARE(queue.job(id)->frames_done, qint64{36});
    QVERIFY(QFileInfo(request.output_path).size() > 0);
    const qint64 probed = probeFrameCount(request.output_path);
    if (probed < 0) QSKIP("ffprobe is not installed: frame count not probed");
    QCOMPARE(probed, qint64{36});
  }

  void pauseHoldsAndResumeFinishes() {
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, false, QSize(32, 24), 10);  // 40 frames
    const ExportRequest request = pngRequest(out.path(), QStringLiteral("paused"));
    ExportQueue queue(slowOptions(15));
    const int id = queue.add(plan(project, request));
    QVERIFY(spinUntil([&] { return queue.job(id)->frames_done >= 5; }, kTimeoutMs));
    QVERIFY(queue.pause(id));
    QCOMPARE(queue.job(id)->state, ExportJobState::paused);
    QTest::qWait(150);  // the frame in flight completes, then the worker holds
    const qint64 held = queue.job(id)->frames_done;
    QTest::qWait(300);
    QCOMPARE(queue.job(id)->frames_done, held);
    QVERIFY(held < 40);
    QCOMPARE(queue.job(id)->frames_per_second, 0.0);
    QVERIFY(!QFileInfo::exists(request.output_path));  // still the .part folder
    QVERIFY(QFileInfo::exists(request.output_path + QStringLiteral(".part")));
    QVERIFY(!queue.pause(id));  // already paused
    QVERIFY(queue.resume(id));
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    QCOMPARE(queue.job(id)->state, ExportJobState::done);
    QCOMPARE(QDir(request.output_path).entryList({QStringLiteral("*.png")}).size(), 40);
  }

  void cancelLeavesNoFinishedFileAndTheProjectUnchanged() {
    QTemporaryDir out;
    QTemporaryDir project_dir;
    ProjectModel project;
    makeProject(project, true);
    ProjectMeta meta;
    QString error;
    QVERIFY2(saveProject(project, meta, project_dir.path(), SaveKind::explicit_save, &error),
             qPrintable(error));
    const QMap<QString, QByteArray> before = hashFolder(project_dir.path());
    QVERIFY(!before.isEmpty());
    const quint64 revision = project.contentRevision();

    // Every branch, one file each: cancel while the second is being written, so the first,
    // already complete, must be removed too.
    ExportRequest request;
    request.scope = ExportScope::all_branches;
    request.format =
        strand::find_preset("ffv1").available ? QStringLiteral("ffv1") : QStringLiteral("png");
    request.timeline = TimelineFormat::fcpxml;
    request.output_path =
        QDir(out.path())
            .filePath(request.format == QStringLiteral("ffv1") ? QStringLiteral("all.mkv")
                                                               : QStringLiteral("all"));
    ExportQueue queue(slowOptions(20));
    QSignalSpy finished_spy(&queue, &ExportQueue::jobFinished);
    const int id = queue.add(plan(project, request));
    QVERIFY(
        spinUntil([&] { return queue.job(id)->frames_done >= 15; }, kTimeoutMs));  // into file 2
    QVERIFY(!listTree(out.path()).isEmpty());
    QVERIFY(queue.cancel(id));
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    QCOMPARE(queue.job(id)->state, ExportJobState::cancelled);
    QCOMPARE(finished_spy.count(), 1);
    QCOMPARE(listTree(out.path()),
             QStringList());  // nothing: no media, no .part, no sidecar, no timeline
    QCOMPARE(hashFolder(project_dir.path()), before);
    QCOMPARE(project.contentRevision(), revision);
    QCOMPARE(project.checkInvariants(), QString());

    // Cancelling a queued job that never started, and a paused one.
    QTemporaryDir out2;
    request.scope = ExportScope::branch;
    request.timeline = TimelineFormat::none;
    request.output_path = QDir(out2.path()).filePath(QStringLiteral("first"));
    request.format = QStringLiteral("png");
    const int first = queue.add(plan(project, request));
    request.output_path = QDir(out2.path()).filePath(QStringLiteral("second"));
    const int second = queue.add(plan(project, request));
    QCOMPARE(queue.job(second)->state, ExportJobState::queued);  // one at a time
    QVERIFY(queue.cancel(second));
    QCOMPARE(queue.job(second)->state, ExportJobState::cancelled);
    QVERIFY(queue.pause(first));
    QVERIFY(queue.cancel(first));
    QVERIFY(spinUntil([&] { return finished(queue, first); }, kTimeoutMs));
    QCOMPARE(queue.job(first)->state, ExportJobState::cancelled);
    QCOMPARE(listTree(out2.path()), QStringList());
    QVERIFY(!queue.hasActiveJobs());
    queue.removeFinished();
    QVERIFY(queue.jobIds().isEmpty());
  }

  void failureIsReportedAndLeavesNothing() {
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, false);
    const QString folder = QDir(out.path()).filePath(QStringLiteral("gone"));
    QVERIFY(QDir().mkpath(folder));
    const ExportRequest request = pngRequest(folder, QStringLiteral("frames"));
    ExportJobSpec job = plan(project, request);
    // The folder becomes a file before the job runs: nothing can be created in it.
    QVERIFY(QDir(folder).removeRecursively());
    QFile blocker(folder);
    QVERIFY(blocker.open(QIODevice::WriteOnly));
    blocker.close();
    ExportQueue queue;
    const int id = queue.add(std::move(job));
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    QCOMPARE(queue.job(id)->state, ExportJobState::failed);
    QVERIFY(!queue.job(id)->error.isEmpty());
    QCOMPARE(listTree(out.path()), QStringList{QStringLiteral("gone")});  // only the blocking file
  }

  void twoJobsMayNotWriteTheSamePath() {
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, false);
    const ExportRequest request = pngRequest(out.path(), QStringLiteral("same"));
    ExportQueue queue(slowOptions(20));
    const int id = queue.add(plan(project, request));
    QVERIFY(id > 0);
    QString error;
    QCOMPARE(queue.add(plan(project, request), &error), 0);
    QVERIFY(error.contains(QStringLiteral("same")));
    QVERIFY(queue.cancel(id));
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    QVERIFY(queue.add(plan(project, request)) > 0);  // finished jobs do not hold their path
  }

  void guiThreadIsNotBlockedWhileExporting() {
    if (!strand::find_preset("ffv1").available) QSKIP("this FFmpeg has no FFV1 encoder");
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, true, QSize(64, 48), 6);
    ExportRequest request;
    request.scope = ExportScope::all_branches;
    request.format = QStringLiteral("ffv1");
    request.size = QSize(640, 480);  // upscaling makes every frame cost real work on the worker
    request.output_path = QDir(out.path()).filePath(QStringLiteral("busy.mkv"));
    ExportQueueOptions options;
    options.progress_interval_ms = 20;
    ExportQueue queue(options);
    QMainWindow window;
    auto* dock = new ExportQueueDock(&queue, &window);
    window.addDockWidget(Qt::BottomDockWidgetArea, dock);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    StallMonitor monitor;
    const int id = queue.add(plan(project, request));
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    QVERIFY2(queue.job(id)->state == ExportJobState::done, qPrintable(queue.job(id)->error));
    qInfo(
        "exported %lld frames; event loop: longest own stall %.1f ms, longest gap %.1f ms, %lld "
        "ticks",
        static_cast<long long>(queue.job(id)->frames_done), monitor.maxOwnMs(), monitor.maxGapMs(),
        static_cast<long long>(monitor.ticks()));
    QVERIFY(monitor.ticks() > 10);
    QVERIFY2(monitor.maxOwnMs() <= 50, "the GUI thread was busy or blocked for more than 50 ms");
  }

  void dockShowsJobsAndItsButtonsWork() {
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, false, QSize(32, 24), 12);  // 48 frames
    const ExportRequest request = pngRequest(out.path(), QStringLiteral("docked"));
    ExportQueue queue(slowOptions(15));
    QMainWindow window;
    auto* dock = new ExportQueueDock(&queue, &window);
    window.addDockWidget(Qt::BottomDockWidgetArea, dock);
    QString revealed;
    dock->setRevealHandler([&revealed](const QString& folder) { revealed = folder; });
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));

    const int id = queue.add(plan(project, request));
    QCOMPARE(dock->jobList()->topLevelItemCount(), 1);
    QVERIFY(spinUntil([&] { return queue.job(id)->frames_done >= 4; }, kTimeoutMs));
    QVERIFY(spinUntil(
        [&] {
          return dock->rowText(id, ExportQueueDock::left_column)
              .startsWith(QStringLiteral("about"));
        },
        kTimeoutMs));
    QVERIFY(dock->rowText(id, ExportQueueDock::speed_column).endsWith(QStringLiteral("fps")));
    QVERIFY(dock->rowText(id, ExportQueueDock::frames_column).endsWith(QStringLiteral("/ 48")));

    QToolButton* pause = dock->pauseButton(id);
    QVERIFY(pause != nullptr && pause->isEnabled());
    pause->click();
    QCOMPARE(queue.job(id)->state, ExportJobState::paused);
    QCOMPARE(pause->text(), QStringLiteral("Resume"));
    QCOMPARE(dock->rowText(id, ExportQueueDock::state_column), QStringLiteral("Paused"));
    pause->click();
    QCOMPARE(queue.job(id)->state, ExportJobState::running);
    QVERIFY(spinUntil([&] { return finished(queue, id); }, kTimeoutMs));
    QCOMPARE(dock->rowText(id, ExportQueueDock::frames_column), QStringLiteral("48 / 48"));
    QVERIFY(!dock->pauseButton(id)->isEnabled());
    QVERIFY(!dock->cancelButton(id)->isEnabled());

    dock->revealButton(id)->click();
    QCOMPARE(QDir(revealed).absolutePath(), QDir(out.path()).absolutePath());
    QVERIFY(dock->lastNotification().contains(QStringLiteral("Export finished")));
    if (!QSystemTrayIcon::isSystemTrayAvailable()) {
      QCOMPARE(window.statusBar()->currentMessage(), dock->lastNotification());
    }
    queue.removeFinished();
    QCOMPARE(dock->jobList()->topLevelItemCount(), 0);
  }

  void destroyingTheQueueCancelsRunningJobs() {
    QTemporaryDir out;
    ProjectModel project;
    makeProject(project, false, QSize(32, 24), 10);
    const ExportRequest request = pngRequest(out.path(), QStringLiteral("quit"));
    {
      ExportQueue queue(slowOptions(20));
      const int id = queue.add(plan(project, request));
      QVERIFY(spinUntil([&] { return queue.job(id)->frames_done >= 2; }, kTimeoutMs));
    }
    QCOMPARE(listTree(out.path()), QStringList());
  }
};

QTEST_MAIN(TestExportQueue)
#include "test_export_queue.moc"
