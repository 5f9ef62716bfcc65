// A damaged or missing frame cache is rebuilt from the block's stored latents: on disk
// (loadProject marks the block, saveProject rewrites the file once repaired) and through the real
// main window (the latents are decoded on the engine thread; placeholders show until then).
// The reference frames are the ones the engine generated, never a recorded output.
#include <QApplication>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include "main_window.h"
#include "project_file.h"
#include "project_test_support.h"

using namespace strand::desktop;
using strand::desktop::test::Engine;
using strand::desktop::test::pathFrames;

namespace {

constexpr int kTimeoutMs = 30000;

void flipByte(const QString& path) {
  QFile file(path);
  QVERIFY(file.open(QIODevice::ReadWrite));
  QByteArray bytes = file.readAll();
  QVERIFY(!bytes.isEmpty());
  bytes[bytes.size() / 2] = char(bytes[bytes.size() / 2] ^ 0x01);
  file.seek(0);
  QCOMPARE(file.write(bytes), bytes.size());
}

// Root with 3 blocks saved to `folder`; returns the project in `project`.
void saveThreeBlocks(Engine& engine, ProjectModel& project, const QString& folder) {
  project.reset(engine.initialState(), engine.model->config().frames_per_block, 9,
                QStringLiteral("a red balloon over snowy mountains"));
  QVERIFY(engine.generate(project, ProjectModel::kRootId, 3));
  ProjectMeta meta;
  meta.model_id = QString::fromStdString(engine.model->id());
  QString error;
  QVERIFY2(saveProject(project, meta, folder, SaveKind::explicit_save, &error), qPrintable(error));
}

QString cacheFile(const QString& folder, const BlockRecord* block) {
  return folder + QStringLiteral("/cache/%1.blk").arg(block->key);
}

}  // namespace

class TestFrameCacheRepair : public QObject {
  Q_OBJECT

 private slots:
  // On disk only: a flipped byte in block 1's frames and a deleted block 2 frame file.
  void loaderMarksDamagedBlocksAndSaveRewritesThem() {
    Engine engine;
    ProjectModel original;
    QTemporaryDir dir;
    saveThreeBlocks(engine, original, dir.path());
    const BlockRecord* b1 = original.pathBlock(ProjectModel::kRootId, 1);
    const BlockRecord* b2 = original.pathBlock(ProjectModel::kRootId, 2);
    flipByte(cacheFile(dir.path(), b1));
    QVERIFY(QFile::remove(cacheFile(dir.path(), b2)));

    ProjectModel loaded;
    ProjectMeta meta;
    QString error;
    QVERIFY2(loadProject(dir.path(), false, {}, &loaded, &meta, &error), qPrintable(error));
    QCOMPARE(meta.warnings.size(), 2);
    QCOMPARE(loaded.blocksToRegenerate(), (QStringList{b1->key, b2->key}));
    QVERIFY(loaded.blockByKey(b1->key)->latents == b1->latents);  // the latents survived
    const int fpb = loaded.framesPerBlock();
    QVERIFY(loaded.frame(ProjectModel::kRootId, fpb) != original.frame(ProjectModel::kRootId, fpb));

    // A save before the repair keeps the damaged file (placeholders are never written).
    QVERIFY(saveProject(loaded, meta, dir.path(), SaveKind::explicit_save, &error));
    QVERIFY(!QFile::exists(cacheFile(dir.path(), b2)));

    // Repair with the frames a fresh decode gives (the same Session::decode_latents the worker uses).
    for (const QString& key : loaded.blocksToRegenerate()) {
      const BlockRecord* block = loaded.blockByKey(key);
      QList<QImage> frames;
      for (const strand::Frame& f : engine.session->decode_latents(block->latents, block->index * fpb)) {
        frames << toQImage(f);
      }
      QVERIFY(loaded.restoreBlockFrames(key, frames));
      QVERIFY(!loaded.restoreBlockFrames(key, frames));  // only placeholders are replaced
    }
    QVERIFY(loaded.blocksToRegenerate().isEmpty());
    QCOMPARE(pathFrames(loaded, ProjectModel::kRootId), pathFrames(original, ProjectModel::kRootId));

    QVERIFY(saveProject(loaded, meta, dir.path(), SaveKind::explicit_save, &error));
    ProjectModel reopened;
    ProjectMeta reopened_meta;
    QVERIFY(loadProject(dir.path(), false, {}, &reopened, &reopened_meta, &error));
    QVERIFY2(reopened_meta.warnings.isEmpty(), qPrintable(reopened_meta.warnings.join('\n')));
    QCOMPARE(pathFrames(reopened, ProjectModel::kRootId), pathFrames(original, ProjectModel::kRootId));
  }

  // Latents damaged too: nothing to rebuild from; placeholders stay and the warning says so.
  void damagedLatentsLeavePlaceholders() {
    Engine engine;
    ProjectModel original;
    QTemporaryDir dir;
    saveThreeBlocks(engine, original, dir.path());
    const BlockRecord* b0 = original.pathBlock(ProjectModel::kRootId, 0);
    flipByte(cacheFile(dir.path(), b0));
    flipByte(dir.path() + QStringLiteral("/cache/%1.lat").arg(b0->key));
    ProjectModel loaded;
    ProjectMeta meta;
    QString error;
    QVERIFY(loadProject(dir.path(), false, {}, &loaded, &meta, &error));
    QCOMPARE(meta.warnings.size(), 2);
    QVERIFY(loaded.blockByKey(b0->key)->frames_missing);
    QVERIFY(loaded.blocksToRegenerate().isEmpty());
  }

  // Through the main window: open a project with a damaged cache; the window shows placeholders at
  // once, asks the engine thread to decode, and ends with the original frames.
  void mainWindowRebuildsFramesOnOpen() {
    Engine engine;
    ProjectModel original;
    QTemporaryDir dir;
    saveThreeBlocks(engine, original, dir.path());
    const BlockRecord* b1 = original.pathBlock(ProjectModel::kRootId, 1);
    flipByte(cacheFile(dir.path(), b1));

    MainWindow::Options options;
    options.model_path = test::goldenModelPath();
    options.autosave_interval_ms = 0;
    options.offer_autosave = [](const QString&) { return false; };
    options.remember_recent = false;
    MainWindow window(options);
    QTRY_VERIFY_WITH_TIMEOUT(window.modelLoaded(), kTimeoutMs);
    QSignalSpy decoded(window.engine(), &EngineWorker::latentsDecoded);
    QVERIFY(window.openProject(dir.path()));
    // Placeholders until the engine thread answers (the open itself never decodes).
    QCOMPARE(window.project()->blocksToRegenerate(), QStringList{b1->key});
    QCOMPARE(decoded.count(), 0);
    QTRY_VERIFY2_WITH_TIMEOUT(window.project()->blocksToRegenerate().isEmpty(),
                              qPrintable(window.lastError()), kTimeoutMs);
    QCOMPARE(decoded.count(), 1);
    QCOMPARE(pathFrames(*window.project(), ProjectModel::kRootId),
             pathFrames(original, ProjectModel::kRootId));
    QVERIFY(window.saveProjectTo(dir.path()));
    ProjectModel reopened;
    ProjectMeta meta;
    QString error;
    QVERIFY(loadProject(dir.path(), false, {}, &reopened, &meta, &error));
    QVERIFY2(meta.warnings.isEmpty(), qPrintable(meta.warnings.join('\n')));
  }
};

QTEST_MAIN(TestFrameCacheRepair)
#include "test_frame_cache_repair.moc"
