// The app's project files (saveProject / loadProject, Qt) and core's Qt-free reader and writer
// (strand/project.h, used by strand-cli) must read each other's projects exactly: structure,
// seeds (above 2^53), prompts, in/out, frames bit-exact, snapshots, unknown fields, and the
// block-cache bytes themselves.
#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QTemporaryDir>
#include <QtTest>
#include <cstring>

#include "project_file.h"
#include "project_test_support.h"
#include "strand/project.h"

using namespace strand::desktop;
using strand::desktop::test::Engine;

namespace {

std::vector<uint8_t> rgbOf(const QImage& image) {
  const QImage rgb = image.convertToFormat(QImage::Format_RGB888);
  std::vector<uint8_t> bytes;
  for (int y = 0; y < rgb.height(); ++y) {
    const auto* row = rgb.constScanLine(y);
    bytes.insert(bytes.end(), row, row + qsizetype(rgb.width()) * 3);
  }
  return bytes;
}

QByteArray readFile(const QString& path) {
  QFile file(path);
  return file.open(QIODevice::ReadOnly) ? file.readAll() : QByteArray();
}

}  // namespace

class ProjectInteropTest : public QObject {
  Q_OBJECT

 private slots:
  void blockCacheBytesAreIdentical() {
    QList<QImage> images;
    std::vector<strand::Frame> frames;
    for (int f = 0; f < 3; ++f) {
      QImage image(7, 5, QImage::Format_RGB888);
      for (int y = 0; y < 5; ++y)
        for (int x = 0; x < 7; ++x) image.setPixel(x, y, qRgb(x * 30 + f, y * 40, (x ^ y) * 20));
      images << image;
      strand::Frame frame;
      frame.width = 7;
      frame.height = 5;
      frame.rgb = rgbOf(image);
      frames.push_back(frame);
    }
    const std::vector<float> latents{0.5f, -1.0f, 1e-9f, 123.25f};
    const QByteArray app = encodeBlockCache(images, {});
    const std::vector<uint8_t> core = strand::encode_block_cache(frames, {});
    QCOMPARE(app, QByteArray(reinterpret_cast<const char*>(core.data()), qsizetype(core.size())));
    const QByteArray app_latents = encodeBlockCache({}, latents);
    const std::vector<uint8_t> core_latents = strand::encode_block_cache({}, latents);
    QCOMPARE(app_latents, QByteArray(reinterpret_cast<const char*>(core_latents.data()),
                                     qsizetype(core_latents.size())));
  }

  // Saved by the app, read by core.
  void appProjectReadByCore() {
    Engine engine;
    ProjectModel project;
    project.reset(engine.initialState(), engine.model->config().frames_per_block, 7,
                  QStringLiteral("a red balloon over snowy mountains"));
    QVERIFY(engine.generate(project, ProjectModel::kRootId, 3));
    int branch_id = 0;
    QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("forest"),
                                        18446744073709551557ULL,
                                        QStringLiteral("birds over a green forest"), &branch_id));
    QVERIFY(engine.generate(project, branch_id, 2));
    QVERIFY(project.requestSetInOut(branch_id, 2, 7));
    project.setActiveBranch(branch_id);
    ProjectMeta meta;
    meta.model_path = strand::desktop::test::goldenModelPath();
    meta.model_id = QString::fromStdString(engine.model->id());
    QTemporaryDir dir;
    QString error;
    QVERIFY2(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error),
             qPrintable(error));

    const strand::Project core = strand::read_project(dir.path().toStdString());
    QCOMPARE(core.model_id, engine.model->id());
    QCOMPARE(QString::fromStdString(core.model_path), meta.model_path);
    QCOMPARE(core.frames_per_block, project.framesPerBlock());
    QCOMPARE(core.active_branch, branch_id);
    QCOMPARE(core.next_branch_id, project.nextBranchId());
    QCOMPARE(int(core.branches.size()), project.branchIds().size());
    for (int id : project.branchIds()) {
      const Branch* a = project.branch(id);
      const strand::ProjectBranch* c = core.branch(id);
      QVERIFY(c != nullptr);
      QCOMPARE(QString::fromStdString(c->name), a->name);
      QCOMPARE(c->parent_id, a->parent_id);
      QCOMPARE(c->fork_block, a->fork_block);
      QCOMPARE(c->seed, a->seed);
      QCOMPARE(QString::fromStdString(c->prompt), a->prompt);
      QCOMPARE(c->in_frame, a->in_frame);
      QCOMPARE(c->out_frame, a->out_frame);
      QCOMPARE(core.path_length(id), project.pathLength(id));
      QCOMPARE(int(core.prompt_segments(id).size()), project.promptSegments(id).size());
      strand::ProjectFrameReader reader(core);
      for (qint64 f = 0; f < project.pathFrames(id); ++f) {
        QVERIFY2(reader.path_frame(id, f).rgb == rgbOf(project.frame(id, f)),
                 qPrintable(QStringLiteral("branch %1 frame %2").arg(id).arg(f)));
      }
      for (const BlockRecord& block : a->blocks) {
        QVERIFY(strand::load_project_snapshot(core, block.key.toStdString()) == *block.state_after);
      }
    }
  }

  // Written by core (as strand-cli render --project does), opened by the app, saved by the app
  // and extended by core again.
  void coreProjectOpenedByApp() {
    Engine engine;
    QTemporaryDir dir;
    const std::string folder = (dir.path() + QStringLiteral("/p")).toStdString();
    std::vector<strand::Frame> frames;
    strand::Session& session = *engine.session;
    {
      strand::ProjectWriter::NewProject info;
      info.model_path = strand::desktop::test::goldenModelPath().toStdString();
      info.model_id = engine.model->id();
      info.frames_per_block = engine.model->config().frames_per_block;
      info.fps = engine.model->config().fps;
      info.initial_state = session.snapshot();
      strand::NewProjectBranch root;
      root.seed = 18446744073709551557ULL;
      root.prompt = "a red balloon";
      auto writer = strand::ProjectWriter::create(folder, std::move(info), root);
      session.set_seed(root.seed);
      session.set_prompt(root.prompt);
      for (int b = 0; b < 2; ++b) {
        strand::NewProjectBlock block;
        block.prompt = session.prompt();
        block.seed = session.seed();
        strand::BlockResult result = session.generate_next_block();
        frames.insert(frames.end(), result.frames.begin(), result.frames.end());
        block.frames = result.frames;
        block.latents = result.latents;
        block.state_after = session.snapshot();
        writer.add_block(block);
      }
      writer.set_next(session.seed(), "a green forest");
      writer.commit();
    }
    ProjectModel project;
    ProjectMeta meta;
    QString error;
    const QString qfolder = QString::fromStdString(folder);
    QVERIFY2(loadProject(qfolder, false, QString::fromStdString(engine.model->id()), &project,
                         &meta, &error),
             qPrintable(error));
    QVERIFY2(meta.warnings.isEmpty(), qPrintable(meta.warnings.join(QStringLiteral("; "))));
    QCOMPARE(project.checkInvariants(), QString());
    QCOMPARE(project.pathLength(ProjectModel::kRootId), 2);
    const Branch* root = project.branch(ProjectModel::kRootId);
    QCOMPARE(root->seed, 18446744073709551557ULL);
    QCOMPARE(root->prompt, QStringLiteral("a green forest"));
    QCOMPARE(root->blocks[1].prompt, QStringLiteral("a red balloon"));
    QVERIFY(!root->blocks[0].latents.empty());
    for (qint64 f = 0; f < project.pathFrames(ProjectModel::kRootId); ++f)
      QVERIFY(rgbOf(project.frame(ProjectModel::kRootId, f)) == frames[size_t(f)].rgb);
    QVERIFY(project.initialState() && project.initialState()->next_block == 0);
    QVERIFY(meta.extra.contains(QStringLiteral("fps")));  // core's extra field, kept by the app

    // The app continues the branch, saves; core still reads it and appends a branch to it.
    QVERIFY(engine.generate(project, ProjectModel::kRootId, 1));
    QVERIFY2(saveProject(project, meta, qfolder, SaveKind::explicit_save, &error),
             qPrintable(error));
    const strand::Project core = strand::read_project(folder);
    QCOMPARE(core.fps, engine.model->config().fps);
    QCOMPARE(core.path_length(1), 3);
    {
      auto writer =
          strand::ProjectWriter::append_branch(folder, {"cli", 1, 1, 5, "birds over the sea"});
      session.restore(strand::load_project_snapshot(core, core.branch(1)->blocks[0].key));
      session.set_seed(5);
      session.set_prompt("birds over the sea");
      strand::NewProjectBlock block;
      block.prompt = session.prompt();
      block.seed = 5;
      strand::BlockResult result = session.generate_next_block();
      block.frames = result.frames;
      block.latents = result.latents;
      block.state_after = session.snapshot();
      writer.add_block(block);
      writer.commit();
    }
    ProjectModel reopened;
    QVERIFY2(loadProject(qfolder, false, QString::fromStdString(engine.model->id()), &reopened,
                         &meta, &error),
             qPrintable(error));
    QCOMPARE(reopened.checkInvariants(), QString());
    QCOMPARE(reopened.branchIds(), (QList<int>{1, 2}));
    QCOMPARE(reopened.activeBranch(), 2);
    QCOMPARE(reopened.branch(2)->fork_block, 1);
    QCOMPARE(reopened.pathLength(2), 2);
    QCOMPARE(reopened.pathLength(1), 3);
    // The app can continue the CLI's branch from its stored end snapshot.
    QVERIFY(engine.generate(reopened, 2, 1));
    QCOMPARE(reopened.checkInvariants(), QString());
    QVERIFY(!readFile(qfolder + QStringLiteral("/project.json.bak")).isEmpty());
  }
};

QTEST_GUILESS_MAIN(ProjectInteropTest)
#include "test_project_interop.moc"
