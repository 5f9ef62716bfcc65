// The export dialog and the export planner: presets map to the right ExportWriter settings,
// choices persist in QSettings, what-to-export selections pick the right frames, bad choices are
// refused with a reason; MainWindow has File > Export (Ctrl+E) and a View toggle for the queue,
// and an export runs while the engine goes on generating.
#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDockWidget>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMenuBar>
#include <QPushButton>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QtTest>
#include <cstring>

#include "export_dialog.h"
#include "export_queue.h"
#include "export_queue_dock.h"
#include "export_test_support.h"
#include "main_window.h"
#include "stall_monitor.h"
#include "ui/prompt_edit.h"

using namespace strand::desktop;
using namespace strand::desktop::test;
using strand::desktop::test::spinUntil;
using strand::desktop::test::StallMonitor;

namespace {

ExportDialog::Context contextFor(const ProjectModel& project, int branch_id,
                                 const QString& folder) {
  ExportDialog::Context context;
  context.project = &project;
  context.branch_id = branch_id;
  context.info.native_fps = kNativeFps;
  context.info.model_path = QStringLiteral("test-model");
  context.base_name = QStringLiteral("take one");
  context.default_folder = folder;
  return context;
}

void selectData(QComboBox* combo, const QString& data) {
  const int index = combo->findData(data);
  QVERIFY2(index >= 0, qPrintable(data));
  combo->setCurrentIndex(index);
}

bool sameImage(const QImage& a, const QImage& b) {
  return a.convertToFormat(QImage::Format_RGB888) == b.convertToFormat(QImage::Format_RGB888);
}

// Every frame the job's items list is served from the job's copies as the project holds it, both
// as an image and as the engine frame the writer receives.
bool servesProjectFrames(const ProjectModel& project, const ExportJobSpec& job) {
  for (const strand::ExportItem& item : job.plan.items) {
    for (int64_t i = 0; i < item.frames; ++i) {
      const int64_t f = item.path_frame(i);
      const QImage expected = project.frame(item.branch_id, f);
      if (expected.isNull() || !sameImage(job.frames.image(item.branch_id, f), expected))
        return false;
      const strand::Frame frame = job.frames.frame(item.branch_id, f);
      if (frame.width != expected.width() ||
          std::memcmp(frame.rgb.data(), expected.constScanLine(0), 3 * expected.width()) != 0)
        return false;
    }
  }
  return true;
}

}  // namespace

class TestExportDialog : public QObject {
  Q_OBJECT

  QTemporaryDir settings_dir_;
  QTemporaryDir out_dir_;

 private slots:
  void initTestCase() {
    QVERIFY(settings_dir_.isValid() && out_dir_.isValid());
    qputenv("XDG_DATA_HOME", settings_dir_.path().toUtf8());
  }
  void init() { isolateSettings(settings_dir_); }

  void presetsMapToWriterSettings() {
    ProjectModel project;
    makeProject(project, false);
    ExportDialog dialog(contextFor(project, ProjectModel::kRootId, out_dir_.path()));

    struct Expected {
      ExportTarget target;
      const char* preset;
      TimelineFormat timeline;
      const char* extension;  // "" for a sequence folder
    };
    const Expected expected[] = {
        {ExportTarget::resolve_premiere, "prores", TimelineFormat::none, ".mov"},
        {ExportTarget::final_cut, "prores", TimelineFormat::fcpxml, ".mov"},
        {ExportTarget::review, "h264", TimelineFormat::none, ".mp4"},
        {ExportTarget::archive, "ffv1", TimelineFormat::none, ".mkv"},
        {ExportTarget::image_sequence, "png", TimelineFormat::none, ""},
    };
    for (const Expected& e : expected) {
      dialog.setTarget(e.target);
      const ExportRequest request = dialog.request();
      QCOMPARE(request.target, e.target);
      const strand::ExportSettings settings = writerSettings(request);
      QCOMPARE(QString::fromStdString(settings.preset), QString::fromLatin1(e.preset));
      QCOMPARE(request.timeline, e.timeline);
      QCOMPARE(settings.target_rate, (strand::FrameRate{0, 0}));  // native by default
      QCOMPARE(settings.width, 0);
      const QFileInfo path(request.output_path);
      QCOMPARE(path.fileName(), QStringLiteral("take one") + QString::fromLatin1(e.extension));
      QCOMPARE(path.absolutePath(), QDir(out_dir_.path()).absolutePath());
    }
    // The ProRes family is offered for Resolve / Premiere, every image format for sequences.
    dialog.setTarget(ExportTarget::resolve_premiere);
    QVERIFY(dialog.formatCombo()->findData(QStringLiteral("dnxhr")) >= 0);
    QVERIFY(dialog.formatCombo()->findData(QStringLiteral("dnxhr-hqx")) >= 0);
    dialog.setTarget(ExportTarget::image_sequence);
    for (const char* format : {"png16", "tiff", "exr"}) {
      QVERIFY(dialog.formatCombo()->findData(QString::fromLatin1(format)) >= 0);
    }
    selectData(dialog.formatCombo(), QStringLiteral("exr"));
    QCOMPARE(QString::fromStdString(writerSettings(dialog.request()).preset),
             QStringLiteral("exr"));
    // Switching to a container format gives the path its extension back.
    dialog.setTarget(ExportTarget::archive);
    QVERIFY(dialog.pathEdit()->text().endsWith(QStringLiteral("take one.mkv")));

    // Frame rate and size.
    selectData(dialog.rateCombo(), QStringLiteral("23.976"));
    dialog.resizeCheck()->setChecked(true);
    dialog.widthSpin()->setValue(512);
    dialog.heightSpin()->setValue(384);
    strand::ExportSettings settings = writerSettings(dialog.request());
    QCOMPARE(settings.target_rate, (strand::FrameRate{24000, 1001}));
    QCOMPARE(settings.width, 512);
    QCOMPARE(settings.height, 384);
    for (const char* rate : {"24", "25", "30"}) {
      selectData(dialog.rateCombo(), QString::fromLatin1(rate));
      QCOMPARE(writerSettings(dialog.request()).target_rate,
               (strand::FrameRate{QByteArray(rate).toInt(), 1}));
    }
    dialog.resizeCheck()->setChecked(false);
    QCOMPARE(writerSettings(dialog.request()).width, 0);
  }

  void settingsPersistBetweenRuns() {
    ProjectModel project;
    makeProject(project, true);
    const QString folder = QDir(out_dir_.path()).filePath(QStringLiteral("persist"));
    QVERIFY(QDir().mkpath(folder));
    {
      ExportDialog dialog(contextFor(project, ProjectModel::kRootId, out_dir_.path()));
      dialog.setTarget(ExportTarget::image_sequence);
      selectData(dialog.formatCombo(), QStringLiteral("tiff"));
      selectData(dialog.timelineCombo(), QStringLiteral("edl"));
      selectData(dialog.rateCombo(), QStringLiteral("25"));
      selectData(dialog.scopeCombo(), QStringLiteral("every_branch"));
      dialog.resizeCheck()->setChecked(true);
      dialog.widthSpin()->setValue(320);
      dialog.heightSpin()->setValue(240);
      dialog.pathEdit()->setText(QDir(folder).filePath(QStringLiteral("shots")));
      dialog.accept();
      QVERIFY2(dialog.result() == QDialog::Accepted, qPrintable(dialog.messageLabel()->text()));
      const ExportJobSpec job = dialog.takeJob();
      QCOMPARE(job.output_paths.size(), 2);  // main and side
      QCOMPARE(job.timeline, TimelineFormat::edl);
    }
    {
      ExportDialog dialog(contextFor(project, ProjectModel::kRootId, out_dir_.path()));
      const ExportRequest request = dialog.request();
      QCOMPARE(request.target, ExportTarget::image_sequence);
      QCOMPARE(request.format, QStringLiteral("tiff"));
      QCOMPARE(request.timeline, TimelineFormat::edl);
      QCOMPARE(request.rate, (strand::FrameRate{25, 1}));
      QCOMPARE(request.scope, ExportScope::all_branches);
      QCOMPARE(request.size, QSize(320, 240));
      QCOMPARE(QFileInfo(request.output_path).absolutePath(), QDir(folder).absolutePath());
      // Each preset remembers its own format and timeline; the others keep their defaults.
      dialog.setTarget(ExportTarget::final_cut);
      QCOMPARE(dialog.request().timeline, TimelineFormat::fcpxml);
      dialog.setTarget(ExportTarget::image_sequence);
      QCOMPARE(dialog.request().format, QStringLiteral("tiff"));
      dialog.reject();
    }
    // Cancel does not save: a third dialog still shows the accepted choices.
    {
      ExportDialog dialog(contextFor(project, ProjectModel::kRootId, out_dir_.path()));
      dialog.setTarget(ExportTarget::review);
      dialog.reject();
    }
    ExportDialog again(contextFor(project, ProjectModel::kRootId, out_dir_.path()));
    QCOMPARE(again.request().target, ExportTarget::image_sequence);
  }

  void badChoicesAreRefusedWithAReason() {
    ProjectModel project;
    makeProject(project, false);
    ExportDialog dialog(contextFor(project, ProjectModel::kRootId, out_dir_.path()));
    dialog.setConfirmOverwrite([](const QStringList&) { return false; });
    // No in/out set: the choice is disabled.
    const auto* model = qobject_cast<QStandardItemModel*>(dialog.scopeCombo()->model());
    QVERIFY(model != nullptr);
    QVERIFY(!model->item(dialog.scopeCombo()->findData(QStringLiteral("in_out")))->isEnabled());
    // Segments with none ticked.
    selectData(dialog.scopeCombo(), QStringLiteral("segments"));
    QCOMPARE(dialog.segmentList()->count(), 2);
    dialog.accept();
    QVERIFY(dialog.result() != QDialog::Accepted);
    QVERIFY(dialog.messageLabel()->text().contains(QStringLiteral("segment")));
    // DNxHR refuses frames under 256x120: the dialog says so before anything is queued.
    selectData(dialog.scopeCombo(), QStringLiteral("branch"));
    dialog.setTarget(ExportTarget::resolve_premiere);
    if (strand::find_preset("dnxhr").available) {
      selectData(dialog.formatCombo(), QStringLiteral("dnxhr"));
      dialog.accept();
      QVERIFY(dialog.result() != QDialog::Accepted);
      QVERIFY2(dialog.messageLabel()->text().contains(QStringLiteral("256x120")),
               qPrintable(dialog.messageLabel()->text()));
    }
    // A folder that does not exist.
    dialog.pathEdit()->setText(QStringLiteral("/nonexistent-strand-folder/out.mov"));
    dialog.accept();
    QVERIFY(dialog.result() != QDialog::Accepted);
    QVERIFY(dialog.messageLabel()->text().contains(QStringLiteral("/nonexistent-strand-folder")));
    // An existing file is only replaced when the user agrees (here: no).
    QFile existing(QDir(out_dir_.path()).filePath(QStringLiteral("exists.mov")));
    QVERIFY(existing.open(QIODevice::WriteOnly));
    existing.close();
    selectData(dialog.formatCombo(), QStringLiteral("prores"));
    dialog.pathEdit()->setText(existing.fileName());
    dialog.accept();
    QVERIFY(dialog.result() != QDialog::Accepted);
    // Without a model the frame rate is unknown.
    ExportDialog::Context no_model = contextFor(project, ProjectModel::kRootId, out_dir_.path());
    no_model.info.native_fps = 0;
    ExportDialog second(no_model);
    second.accept();
    QVERIFY(second.result() != QDialog::Accepted);
    QVERIFY(second.messageLabel()->text().contains(QStringLiteral("model")));
  }

  void selectionsPickTheRightFrames() {
    // main: 4 blocks of 4 frames with prompts A A B A (segments 0-7, 8-11, 12-15); "side" forks
    // at block 1 (its path: main's block 0, then 2 blocks of its own).
    ProjectModel project;
    const int side = makeProject(project, true, QSize(32, 24), 4);
    const int main_id = ProjectModel::kRootId;
    ExportProjectInfo info;
    info.native_fps = kNativeFps;
    info.model_path = QStringLiteral("m");
    ExportRequest request;
    request.format = QStringLiteral("png");
    request.output_path = QDir(out_dir_.path()).filePath(QStringLiteral("sel"));
    ExportJobSpec job;
    QString error;
    using Spans = std::vector<strand::FrameSpan>;

    // Whole branch: every path frame, prompt changes at 8 and 12, the side branch point at 4.
    QVERIFY2(planExport(project, request, info, &job, &error), qPrintable(error));
    QCOMPARE(job.plan.items.size(), size_t{1});
    const strand::ExportItem& item = job.plan.items[0];
    QCOMPARE(item.spans, (Spans{{0, 16}}));
    QVERIFY(servesProjectFrames(project, job));
    QCOMPARE(job.source_rate, (strand::FrameRate{kNativeFps, 1}));
    QCOMPARE(job.source_size, QSize(32, 24));
    QCOMPARE(item.metadata.branch, std::string("main"));
    QCOMPARE(item.metadata.model, std::string("m"));
    QCOMPARE(item.metadata.prompt_schedule.size(), size_t{3});
    QCOMPARE(item.metadata.prompt_schedule[1].frame, int64_t{8});
    QCOMPARE(item.metadata.prompt_schedule[1].prompt, std::string("birds over a forest"));
    int branch_markers = 0;
    for (const strand::TimelineMarker& marker : item.markers) {
      if (marker.kind != strand::MarkerKind::branch_point) continue;
      ++branch_markers;
      QCOMPARE(marker.frame, int64_t{4});  // "side" forks at block 1
    }
    QCOMPARE(branch_markers, 1);
    QCOMPARE(outputFrameCount(job), qint64{16});

    // In/out range 3..9 inclusive.
    QVERIFY(project.requestSetInOut(main_id, 3, 9));
    request.scope = ExportScope::in_out;
    QVERIFY2(planExport(project, request, info, &job, &error), qPrintable(error));
    QCOMPARE(job.plan.items[0].spans, (Spans{{3, 10}}));
    QVERIFY(servesProjectFrames(project, job));
    QVERIFY(job.name.contains(QStringLiteral("frames 3-9")));
    // Only an out point: from the start.
    QVERIFY(project.requestSetInOut(main_id, -1, 5));
    QVERIFY(planExport(project, request, info, &job, &error));
    QCOMPARE(job.plan.items[0].spans, (Spans{{0, 6}}));
    // Neither: refused with the reason.
    QVERIFY(project.requestSetInOut(main_id, -1, -1));
    QVERIFY(!planExport(project, request, info, &job, &error));
    QVERIFY(error.contains(QStringLiteral("in or out")));

    // Segments of the side branch: its second segment only (its own blocks, 8 frames).
    request.scope = ExportScope::segments;
    request.branch_id = side;
    request.segments = {1};
    QVERIFY2(planExport(project, request, info, &job, &error), qPrintable(error));
    QCOMPARE(job.plan.items[0].spans, (Spans{{4, 12}}));
    QVERIFY(servesProjectFrames(project, job));
    // Adjacent segments, listed in any order, are one run of frames (no cut between them).
    request.segments = {1, 0};
    QVERIFY(planExport(project, request, info, &job, &error));
    QCOMPARE(job.plan.items[0].spans, (Spans{{0, 12}}));
    // Separate segments of main: two runs, two clips on the timeline, in path order.
    request.branch_id = main_id;
    request.segments = {2, 0};
    QVERIFY2(planExport(project, request, info, &job, &error), qPrintable(error));
    QCOMPARE(job.plan.items[0].spans, (Spans{{0, 8}, {12, 16}}));
    QVERIFY(servesProjectFrames(project, job));
    const strand::TimelineDescription timeline =
        strand::plan_timeline(job.plan, {"/tmp/sel.mov"}, job.source_rate, {0, 0}, 32, 24);
    QCOMPARE(timeline.clips.size(), size_t{2});
    QCOMPARE(timeline.clips[1].in_frame, int64_t{8});
    request.segments = {5};
    QVERIFY(!planExport(project, request, info, &job, &error));
    request.segments = {};
    QVERIFY(!planExport(project, request, info, &job, &error));
    QVERIFY(error.contains(QStringLiteral("segment")));

    // Every branch: one file each, named after the branch.
    request.scope = ExportScope::all_branches;
    request.format = QStringLiteral("ffv1");
    request.output_path = QDir(out_dir_.path()).filePath(QStringLiteral("all.mkv"));
    request.timeline = TimelineFormat::otio;
    QVERIFY2(planExport(project, request, info, &job, &error), qPrintable(error));
    QCOMPARE(job.output_paths.size(), 2);
    QCOMPARE(QFileInfo(job.output_paths[0]).fileName(), QStringLiteral("all-main.mkv"));
    QCOMPARE(QFileInfo(job.output_paths[1]).fileName(), QStringLiteral("all-side.mkv"));
    QCOMPARE(QFileInfo(job.timeline_path).fileName(), QStringLiteral("all.otio"));
    QCOMPARE(job.plan.items[1].spans, (Spans{{0, 12}}));
    QVERIFY(servesProjectFrames(project, job));
    QCOMPARE(outputFrameCount(job), qint64{28});
    request.rate = {24, 1};  // 8 -> 24 fps: every frame three times
    QVERIFY(planExport(project, request, info, &job, &error));
    QCOMPARE(outputFrameCount(job), qint64{84});

    // Frames being rebuilt from latents are not exported as grey placeholders.
    ProjectModel damaged;
    makeProject(damaged, false);
    std::map<int, Branch> branches = damaged.branches();
    branches[main_id].blocks[1].frames_missing = true;
    damaged.loadState(branches, 2, main_id, damaged.initialState(), 4, {});
    request = {};
    request.format = QStringLiteral("png");
    request.output_path = QDir(out_dir_.path()).filePath(QStringLiteral("damaged"));
    QVERIFY(!planExport(damaged, request, info, &job, &error));
    QVERIFY(error.contains(QStringLiteral("rebuilt")));
    // A branch without frames yet.
    ProjectModel empty;
    makeProject(empty, false, QSize(32, 24), 0);
    QVERIFY(!planExport(empty, request, info, &job, &error));
    QVERIFY(error.contains(QStringLiteral("generate some frames")));
  }

  void aboutLeftIsReadable() {
    QCOMPARE(aboutLeftText(-1), QString());
    QCOMPARE(aboutLeftText(0.2), QStringLiteral("about 1 s left"));
    QCOMPARE(aboutLeftText(42), QStringLiteral("about 42 s left"));
    QCOMPARE(aboutLeftText(185), QStringLiteral("about 3 min left"));
    QCOMPARE(aboutLeftText(2 * 3600 + 5 * 60), QStringLiteral("about 2 h 5 min left"));
  }

  void mainWindowHasExportMenuAndQueueToggle() {
    MainWindow::Options options;
    options.offer_autosave = [](const QString&) { return false; };
    options.model_path = QStringLiteral("/nonexistent/model.safetensors");
    options.remember_recent = false;
    MainWindow window(options);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    auto* export_action = window.findChild<QAction*>(QStringLiteral("exportAction"));
    QVERIFY(export_action != nullptr);
    QCOMPARE(export_action->shortcut(), QKeySequence(Qt::CTRL | Qt::Key_E));
    QVERIFY(window.exportQueue() != nullptr);
    ExportQueueDock* dock = window.exportDock();
    QVERIFY(dock != nullptr);
    QVERIFY(!dock->isVisible());
    auto* toggle = window.findChild<QAction*>(QStringLiteral("exportsDockAction"));
    QVERIFY(toggle != nullptr);
    toggle->trigger();
    QTRY_VERIFY(dock->isVisible());
    toggle->trigger();
    QTRY_VERIFY(!dock->isVisible());

    // Ctrl+E opens the dialog without blocking (window-modal); no model: it says why.
    QTest::keyClick(&window, Qt::Key_E, Qt::ControlModifier);
    ExportDialog* dialog = nullptr;
    QTRY_VERIFY((dialog = window.findChild<ExportDialog*>()) != nullptr);
    QTRY_VERIFY(dialog->isVisible());
    dialog->accept();
    QVERIFY(dialog->messageLabel()->isVisibleTo(dialog));
    dialog->reject();
    QVERIFY(!window.exportQueue()->hasActiveJobs());
  }

  void exportRunsWhileGenerationContinues() {
    const QString model = QStringLiteral(STRAND_SOURCE_DIR "/tests/data/golden-model.safetensors");
    if (!QFileInfo::exists(model))
      QSKIP("test model tests/data/golden-model.safetensors is missing");
    MainWindow::Options options;
    options.offer_autosave = [](const QString&) { return false; };
    options.model_path = model;
    options.remember_recent = false;
    options.autosave_interval_ms = 0;
    options.initial_prompt = QStringLiteral("a hot air balloon over green hills");
    MainWindow window(options);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QTRY_VERIFY_WITH_TIMEOUT(window.generateButton()->isEnabled(), 30000);
    ProjectModel* project = window.project();
    const int root = ProjectModel::kRootId;
    window.blocksSpin()->setValue(2);
    window.startGeneration();
    QVERIFY(spinUntil(
        [&] {
          return project->pathLength(root) >= 2 && window.engine()->state() == EngineState::ready;
        },
        30000));
    const qint64 frames_at_export = project->pathFrames(root);

    // Generation goes on (4 more blocks) while the two blocks made so far are exported.
    StallMonitor monitor;
    window.blocksSpin()->setValue(4);
    window.startGeneration();
    window.showExportDialog();
    ExportDialog* dialog = window.findChild<ExportDialog*>();
    QVERIFY(dialog != nullptr);
    dialog->setTarget(strand::find_preset("ffv1").available ? ExportTarget::archive
                                                            : ExportTarget::image_sequence);
    const QString path =
        withPresetExtension(QDir(out_dir_.path()).filePath(QStringLiteral("live")),
                            strand::find_preset(dialog->request().format.toStdString()));
    dialog->pathEdit()->setText(path);
    dialog->accept();
    QVERIFY2(dialog->result() == QDialog::Accepted, qPrintable(dialog->messageLabel()->text()));
    ExportQueue* queue = window.exportQueue();
    QCOMPARE(queue->jobIds().size(), 1);
    const int id = queue->jobIds().front();
    QVERIFY(window.exportDock()->isVisible());
    QVERIFY(spinUntil(
        [&] {
          return isFinished(queue->job(id)->state) && project->pathLength(root) >= 6 &&
                 window.engine()->state() == EngineState::ready;
        },
        30000));
    QVERIFY2(queue->job(id)->state == ExportJobState::done, qPrintable(queue->job(id)->error));
    QCOMPARE(queue->job(id)->frames_done, frames_at_export);  // what existed when it was queued
    QVERIFY(QFileInfo::exists(path));
    if (dialog->request().format == QStringLiteral("ffv1")) {
      const qint64 probed = probeFrameCount(path);
      if (probed >= 0) QCOMPARE(probed, frames_at_export);
    }
    QCOMPARE(project->pathLength(root), qint64{6});
    QVERIFY(window.lastError().isEmpty());
    QCOMPARE(project->checkInvariants(), QString());
    qInfo("export + generation: longest own stall %.1f ms (gap %.1f ms)", monitor.maxOwnMs(),
          monitor.maxGapMs());
    QVERIFY2(monitor.maxOwnMs() <= 50, "the GUI thread was busy or blocked for more than 50 ms");
  }
};

QTEST_MAIN(TestExportDialog)
#include "test_export_dialog.moc"
