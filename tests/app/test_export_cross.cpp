// The app and strand-cli export the same thing. For a project the app saved, the app's export job
// (ProjectModel -> strand::plan_export, frames from the ProjectModel, run by the ExportQueue) and
// the path `strand-cli export` takes (read_project, plan_export, ProjectFrameReader over the cache
// files, export_item, plan_timeline) give identical plans for every kind of selection, and
// byte-identical PNG sequences, sidecars and timelines. When strand-cli is built next to this
// test, it is run on the project folder too and must write the same bytes.
#include <QProcess>
#include <QtTest>
#include <sstream>

#include "export_queue.h"
#include "export_test_support.h"
#include "project_file.h"
#include "stall_monitor.h"

using namespace strand::desktop;
using namespace strand::desktop::test;

namespace {

constexpr int kTimeoutMs = 30000;
const QString kModelPath = QStringLiteral("/models/strand-test.safetensors");
const QString kModelId = QStringLiteral("0123456789abcdef0123456789abcdef");

// Everything plan_export decides, as text (a mismatch shows as a readable diff).
std::string describe(const strand::ExportPlan& plan) {
  std::ostringstream out;
  out << "plan " << plan.name << "\n";
  for (const strand::ExportItem& item : plan.items) {
    out << "item branch " << item.branch_id << " '" << item.branch_name << "' stem "
        << item.file_stem << " frames " << item.frames << " spans";
    for (const strand::FrameSpan& span : item.spans) out << " " << span.first << "-" << span.end;
    const strand::ExportMetadata& m = item.metadata;
    out << "\n  model " << m.model << " branch " << m.branch << " seed " << m.seed << " "
        << m.has_seed << "\n";
    for (const auto& entry : m.prompt_schedule)
      out << "  prompt " << entry.frame << " " << entry.prompt << "\n";
    for (const auto& [key, value] : m.extra) out << "  extra " << key << "=" << value << "\n";
    for (const strand::TimelineMarker& marker : item.markers) {
      out << "  marker " << marker.frame << " " << static_cast<int>(marker.kind) << " "
          << marker.name << " | " << marker.comment << "\n";
    }
  }
  return out.str();
}

std::string describe(const strand::Project& project) {
  std::ostringstream out;
  out << project.folder << " " << project.model_path << " " << project.model_id << " fpb "
      << project.frames_per_block << " fps " << project.fps << " next " << project.next_branch_id
      << " active " << project.active_branch << "\n";
  for (const strand::ProjectBranch& b : project.branches) {
    out << "branch " << b.id << " '" << b.name << "' parent " << b.parent_id << " fork "
        << b.fork_block << " seed " << b.seed << " prompt " << b.prompt << " in/out " << b.in_frame
        << "/" << b.out_frame << " recached '" << b.recached_end_key << "'\n";
    for (const strand::ProjectBlock& block : b.blocks)
      out << "  block " << block.index << " " << block.key << " " << block.seed << " "
          << block.prompt << "\n";
  }
  return out.str();
}

strand::ExportSelection selectionOf(const ExportRequest& request, const ProjectModel& project) {
  strand::ExportSelection selection;
  selection.scope = request.scope;
  selection.branch_id = request.branch_id;
  selection.in_frame = project.branch(request.branch_id)->in_frame;
  selection.out_frame = project.branch(request.branch_id)->out_frame;
  selection.segments.assign(request.segments.begin(), request.segments.end());
  return selection;
}

// The files of `folder` (relative path -> bytes); in timelines and sidecars the output folder's
// own path is replaced by "OUT", so two folders compare by content.
QMap<QString, QByteArray> contents(const QString& folder) {
  QMap<QString, QByteArray> files;
  const QByteArray prefix = QDir(folder).absolutePath().toUtf8();
  for (const QString& path : listTree(folder)) {
    QFile file(QDir(folder).filePath(path));
    if (!file.open(QIODevice::ReadOnly)) continue;  // a folder
    files[path] = file.readAll().replace(prefix, "OUT");
  }
  return files;
}

void compareTrees(const QString& app, const QString& cli) {
  const QMap<QString, QByteArray> a = contents(app);
  const QMap<QString, QByteArray> b = contents(cli);
  QCOMPARE(a.keys(), b.keys());
  for (const QString& path : a.keys()) QVERIFY2(a[path] == b[path], qPrintable(path));
}

}  // namespace

class TestExportCross : public QObject {
  Q_OBJECT

  QTemporaryDir settings_dir_;
  QTemporaryDir project_dir_;
  ProjectModel project_;
  ExportProjectInfo info_;
  int side_ = 0;
  int tip_ = 0;

  // The app's job for `request` (planned like the export dialog does).
  ExportJobSpec appJob(const ExportRequest& request) {
    ExportJobSpec job;
    QString error;
    if (!planExport(project_, request, info_, &job, &error))
      qFatal("planExport failed: %s", qPrintable(error));
    return job;
  }

  // Runs `job` in an ExportQueue, as the app does.
  static bool runInQueue(ExportJobSpec job) {
    ExportQueue queue;
    const int id = queue.add(std::move(job));
    if (id == 0 || !spinUntil([&] { return isFinished(queue.job(id)->state); }, kTimeoutMs))
      return false;
    if (queue.job(id)->state != ExportJobState::done) qWarning() << queue.job(id)->error;
    return queue.job(id)->state == ExportJobState::done;
  }

  // strand-cli export's steps on the saved folder: the same items written to `paths`, frames read
  // from the project's cache files, and the timeline of the written media.
  void exportLikeCli(const strand::ExportSelection& selection, const ExportJobSpec& app_job,
                     const QStringList& paths, const QString& timeline_path) {
    const strand::Project project = strand::read_project(project_dir_.path().toStdString());
    const strand::ExportPlan plan = strand::plan_export(project, selection);
    strand::ProjectFrameReader reader(project);
    const strand::FrameRate source_rate{project.fps, 1};
    std::vector<std::string> media_paths;
    strand::ExportedMedia media;
    for (size_t i = 0; i < plan.items.size(); ++i) {
      media_paths.push_back(paths[qsizetype(i)].toStdString());
      media = strand::export_item(
          plan.items[i],
          [&](int branch, int64_t frame) { return reader.path_frame(branch, frame); }, source_rate,
          media_paths.back(), app_job.settings);
    }
    QCOMPARE(reader.blocks_decoded_from_latents(), int64_t{0});
    if (!timeline_path.isEmpty()) {
      strand::write_timeline(timeline_path.toStdString(),
                             timelineFormatKey(app_job.timeline).toStdString(),
                             strand::plan_timeline(plan, media_paths, source_rate, media.rate,
                                                   media.width, media.height));
    }
  }

 private slots:
  void initTestCase() {
    QVERIFY(settings_dir_.isValid() && project_dir_.isValid());
    isolateSettings(settings_dir_);
    // main: 4 blocks with prompts A A B A; "side" forks at block 1 (2 blocks); "tip" forks from
    // side at its block 2 (1 block, another seed): branch points on ancestors and children.
    side_ = makeProject(project_, true, QSize(32, 24), 4);
    QVERIFY(project_.requestCreateBranch(side_, 2, QStringLiteral("tip"), 11,
                                         QStringLiteral("night sky"), &tip_));
    QVERIFY(appendSyntheticBlocks(project_, tip_, 1, {QStringLiteral("night sky")}));
    QVERIFY(project_.requestSetInOut(ProjectModel::kRootId, 3, 13));
    ProjectMeta meta;
    meta.model_path = kModelPath;
    meta.model_id = kModelId;
    meta.extra.insert(QStringLiteral("fps"), kNativeFps);  // as strand-cli render records it
    QString error;
    QVERIFY2(saveProject(project_, meta, project_dir_.path(), SaveKind::explicit_save, &error),
             qPrintable(error));
    info_.folder = project_dir_.path();
    info_.model_path = kModelPath;
    info_.model_id = kModelId;
    info_.native_fps = kNativeFps;
  }

  void theAppsProjectIsWhatTheCliReads() {
    const strand::Project read = strand::read_project(project_dir_.path().toStdString());
    QCOMPARE(read.check(), std::string());
    QCOMPARE(describe(toCoreProject(project_, info_)), describe(read));
  }

  void plansAreIdenticalForEverySelection() {
    const strand::Project read = strand::read_project(project_dir_.path().toStdString());
    struct Case {
      ExportScope scope;
      int branch;
      QList<int> segments;
    };
    const Case cases[] = {
        {ExportScope::branch, ProjectModel::kRootId, {}},
        {ExportScope::branch, side_, {}},
        {ExportScope::branch, tip_, {}},
        {ExportScope::in_out, ProjectModel::kRootId, {}},
        {ExportScope::segments, ProjectModel::kRootId, {2, 0}},
        {ExportScope::segments, side_, {1}},
        {ExportScope::segments, tip_, {0, 1, 2}},
        {ExportScope::all_branches, ProjectModel::kRootId, {}},
    };
    for (const Case& c : cases) {
      ExportRequest request;
      request.format = QStringLiteral("png");
      request.scope = c.scope;
      request.branch_id = c.branch;
      request.segments = c.segments;
      request.output_path = QDir::temp().filePath(QStringLiteral("cross-plan"));
      const ExportJobSpec job = appJob(request);
      const std::string app = describe(job.plan);
      const std::string cli = describe(strand::plan_export(read, selectionOf(request, project_)));
      QCOMPARE(app, cli);
      QVERIFY(app.find("marker") != std::string::npos || c.scope == ExportScope::segments);
    }
  }

  void mediaSidecarsAndTimelinesAreIdentical() {
    if (!strand::find_preset("png").available) QSKIP("this FFmpeg has no PNG encoder");
    // An in/out range conformed 8 -> 12 fps (frames repeated), and every branch, with timelines.
    ExportRequest range;
    range.format = QStringLiteral("png");
    range.scope = ExportScope::in_out;
    range.rate = {12, 1};
    range.timeline = TimelineFormat::otio;
    ExportRequest every = range;
    every.scope = ExportScope::all_branches;
    every.rate = {0, 0};
    every.timeline = TimelineFormat::edl;
    for (ExportRequest request : {range, every}) {
      QTemporaryDir app_out, cli_out;
      request.output_path = QDir(app_out.path()).filePath(QStringLiteral("shot"));
      const ExportJobSpec job = appJob(request);
      QStringList cli_paths;
      for (const QString& path : job.output_paths)
        cli_paths << QDir(cli_out.path()).filePath(QFileInfo(path).fileName());
      const QString cli_timeline =
          QDir(cli_out.path()).filePath(QFileInfo(job.timeline_path).fileName());
      const strand::ExportSelection selection = selectionOf(request, project_);
      QVERIFY(runInQueue(job));
      exportLikeCli(selection, job, cli_paths, cli_timeline);
      const QStringList files = listTree(app_out.path());
      QVERIFY2(files.filter(QStringLiteral(".png")).size() >= 12, qPrintable(files.join(u' ')));
      QVERIFY(QFileInfo::exists(job.timeline_path));
      compareTrees(app_out.path(), cli_out.path());
    }
  }

  void strandCliWritesTheSameBytes() {
    const QString cli =
        QDir(QCoreApplication::applicationDirPath()).filePath(QStringLiteral("strand-cli"));
    if (!QFileInfo(cli).isExecutable()) QSKIP("strand-cli is not built next to this test");
    if (!strand::find_preset("png").available) QSKIP("this FFmpeg has no PNG encoder");
    QTemporaryDir app_out, cli_out;
    ExportRequest request;
    request.format = QStringLiteral("png");
    request.scope = ExportScope::in_out;
    request.rate = {24, 1};
    request.timeline = TimelineFormat::fcpxml;
    request.output_path = QDir(app_out.path()).filePath(QStringLiteral("take"));
    QVERIFY(runInQueue(appJob(request)));
    QProcess process;
    process.start(cli,
                  {QStringLiteral("export"), QStringLiteral("--project"), project_dir_.path(),
                   QStringLiteral("--branch"), QStringLiteral("main"), QStringLiteral("--in"),
                   QStringLiteral("3"), QStringLiteral("--out-frame"), QStringLiteral("13"),
                   QStringLiteral("--preset"), QStringLiteral("png"), QStringLiteral("--fps"),
                   QStringLiteral("24"), QStringLiteral("--timeline"), QStringLiteral("fcpxml"),
                   QStringLiteral("--out"), QDir(cli_out.path()).filePath(QStringLiteral("take"))});
    QVERIFY(process.waitForFinished(kTimeoutMs));
    QVERIFY2(process.exitCode() == 0, process.readAllStandardError().constData());
    // The folder, 11 frames x 3, the sidecar and the timeline.
    QCOMPARE(listTree(app_out.path()).size(), 1 + 33 + 2);
    compareTrees(app_out.path(), cli_out.path());
  }
};

QTEST_MAIN(TestExportCross)
#include "test_export_cross.moc"
