// Projects on disk: save/load round trip (frames bit-exact, snapshots equal, branches equal),
// backups, autosave, unknown fields, version migration on hand-written golden files, newer
// versions read-only, damaged files.
#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QtTest>

#include "project_file.h"
#include "project_test_support.h"
#include "strand/memory_state.h"

using namespace strand::desktop;
using strand::desktop::test::Engine;
using strand::desktop::test::pathFrames;

namespace {

const QString kGoldenDir = QStringLiteral(STRAND_SOURCE_DIR "/tests/app/data");

QJsonObject readJson(const QString& path) {
  QFile file(path);
  if (!file.open(QIODevice::ReadOnly)) return {};
  return QJsonDocument::fromJson(file.readAll()).object();
}

bool writeJson(const QString& path, const QJsonObject& json) {
  QFile file(path);
  return file.open(QIODevice::WriteOnly | QIODevice::Truncate) &&
         file.write(QJsonDocument(json).toJson()) > 0;
}

// Root with 3 blocks, a branch from boundary 1 with 2 blocks, in/out and history set.
void buildProject(Engine& engine, ProjectModel& project, int* branch_id) {
  project.reset(engine.initialState(), engine.model->config().frames_per_block, 7,
                QStringLiteral("a red balloon over snowy mountains"));
  QVERIFY(engine.generate(project, ProjectModel::kRootId, 3));
  QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("forest"),
                                      18446744073709551557ULL,  // above 2^53: must stay exact
                                      QStringLiteral("birds over a green forest"), branch_id));
  QVERIFY(engine.generate(project, *branch_id, 2));
  QVERIFY(project.requestSetInOut(*branch_id, 2, 7));
  project.addToPromptHistory(QStringLiteral("a red balloon over snowy mountains"));
  project.addToPromptHistory(QStringLiteral("birds over a green forest"));
  project.setActiveBranch(*branch_id);
}

void compareProjects(const ProjectModel& a, const ProjectModel& b) {
  QCOMPARE(a.branchIds(), b.branchIds());
  QCOMPARE(a.activeBranch(), b.activeBranch());
  QCOMPARE(a.nextBranchId(), b.nextBranchId());
  QCOMPARE(a.promptHistory(), b.promptHistory());
  QVERIFY(a.initialState() && b.initialState());
  QVERIFY(*a.initialState() == *b.initialState());
  for (int id : a.branchIds()) {
    const Branch* x = a.branch(id);
    const Branch* y = b.branch(id);
    QCOMPARE(x->name, y->name);
    QCOMPARE(x->parent_id, y->parent_id);
    QCOMPARE(x->fork_block, y->fork_block);
    QCOMPARE(x->seed, y->seed);
    QCOMPARE(x->prompt, y->prompt);
    QCOMPARE(x->in_frame, y->in_frame);
    QCOMPARE(x->out_frame, y->out_frame);
    QCOMPARE(x->blocks.size(), y->blocks.size());
    for (size_t i = 0; i < x->blocks.size(); ++i) {
      QCOMPARE(x->blocks[i].key, y->blocks[i].key);
      QCOMPARE(x->blocks[i].prompt, y->blocks[i].prompt);
      QCOMPARE(x->blocks[i].seed, y->blocks[i].seed);
      QVERIFY(x->blocks[i].latents == y->blocks[i].latents);
      QVERIFY(*x->blocks[i].state_after == *y->blocks[i].state_after);
    }
    QCOMPARE(pathFrames(a, id), pathFrames(b, id));
  }
}

}  // namespace

class TestProjectFile : public QObject {
  Q_OBJECT

 private slots:
  void roundTripIsExact() {
    Engine engine;
    ProjectModel project;
    int branch = 0;
    buildProject(engine, project, &branch);
    QTemporaryDir dir;
    ProjectMeta meta;
    meta.model_id = QString::fromStdString(engine.model->id());
    QString error;
    QVERIFY2(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error), qPrintable(error));
    const QJsonObject json = readJson(dir.filePath(QLatin1String(kProjectFile)));
    QCOMPARE(json.value(QLatin1String("format")).toString(), QStringLiteral("strand-project"));
    QVERIFY(json.value(QLatin1String("version")).isDouble());
    QCOMPARE(json.value(QLatin1String("version")).toInt(), kProjectVersion);

    ProjectModel loaded;
    ProjectMeta loaded_meta;
    QVERIFY2(loadProject(dir.path(), false, meta.model_id, &loaded, &loaded_meta, &error), qPrintable(error));
    QVERIFY(loaded_meta.warnings.isEmpty());
    compareProjects(project, loaded);
    QCOMPARE(loaded.undoStack()->count(), 0);
  }

  void backupsAutosaveAndCleanup() {
    Engine engine;
    ProjectModel project;
    int branch = 0;
    buildProject(engine, project, &branch);
    QTemporaryDir dir;
    ProjectMeta meta;
    QString error;
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    const QByteArray first = [&] {
      QFile f(dir.filePath(QLatin1String(kProjectFile)));
      f.open(QIODevice::ReadOnly);
      return f.readAll();
    }();
    const int files_before = int(QDir(dir.filePath(QStringLiteral("snapshots"))).entryList(QDir::Files).size());
    QCOMPARE(files_before, 1 + 5);  // initial + one per block

    // Autosave: a second file; the saved project is untouched; it is offered as newer.
    QVERIFY(project.requestRenameBranch(branch, QStringLiteral("woods")));
    QTest::qWait(20);  // distinct modification times
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::autosave, &error));
    QVERIFY(hasNewerAutosave(dir.path()));
    ProjectModel recovered;
    ProjectMeta recovered_meta;
    QVERIFY(loadProject(dir.path(), true, {}, &recovered, &recovered_meta, &error));
    QCOMPARE(recovered.branch(branch)->name, QStringLiteral("woods"));

    // Deleting the branch and saving: .bak holds the previous file, the autosave is gone and the
    // branch's files are removed.
    QVERIFY(project.requestDeleteBranch(branch));
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    QFile bak(dir.filePath(QLatin1String(kProjectFile) + QStringLiteral(".bak")));
    QVERIFY(bak.open(QIODevice::ReadOnly));
    QCOMPARE(bak.readAll(), first);
    QVERIFY(!QFileInfo::exists(dir.filePath(QLatin1String(kAutosaveFile))));
    QVERIFY(!hasNewerAutosave(dir.path()));
    QCOMPARE(int(QDir(dir.filePath(QStringLiteral("snapshots"))).entryList(QDir::Files).size()), 1 + 3);
    // Each block: frames (.blk) and latents (.lat), kept apart so damaged frames can be rebuilt.
    QCOMPARE(int(QDir(dir.filePath(QStringLiteral("cache"))).entryList({QStringLiteral("*.blk")}, QDir::Files).size()), 3);
    QCOMPARE(int(QDir(dir.filePath(QStringLiteral("cache"))).entryList({QStringLiteral("*.lat")}, QDir::Files).size()), 3);
    QCOMPARE(int(QDir(dir.filePath(QStringLiteral("cache"))).entryList(QDir::Files).size()), 6);

    // Undo the delete after that save: the next save writes the branch's files again.
    project.undoStack()->undo();
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    ProjectModel reopened;
    ProjectMeta reopened_meta;
    QVERIFY2(loadProject(dir.path(), false, {}, &reopened, &reopened_meta, &error), qPrintable(error));
    compareProjects(project, reopened);
  }

  void unknownFieldsRoundTrip() {
    Engine engine;
    ProjectModel project;
    int branch = 0;
    buildProject(engine, project, &branch);
    QTemporaryDir dir;
    ProjectMeta meta;
    QString error;
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    const QString file = dir.filePath(QLatin1String(kProjectFile));
    QJsonObject json = readJson(file);
    json.insert(QStringLiteral("future_top"), QJsonObject{{QStringLiteral("x"), 1}});
    QJsonArray branches = json.value(QLatin1String("branches")).toArray();
    QJsonObject b0 = branches[0].toObject();
    b0.insert(QStringLiteral("colour"), QStringLiteral("teal"));
    QJsonArray blocks = b0.value(QLatin1String("blocks")).toArray();
    QJsonObject block0 = blocks[0].toObject();
    block0.insert(QStringLiteral("rating"), 5);
    blocks[0] = block0;
    b0.insert(QStringLiteral("blocks"), blocks);
    branches[0] = b0;
    json.insert(QStringLiteral("branches"), branches);
    QVERIFY(writeJson(file, json));

    ProjectModel loaded;
    ProjectMeta loaded_meta;
    QVERIFY2(loadProject(dir.path(), false, {}, &loaded, &loaded_meta, &error), qPrintable(error));
    QTemporaryDir second;
    QVERIFY(saveProject(loaded, loaded_meta, second.path(), SaveKind::explicit_save, &error));
    const QJsonObject again = readJson(second.filePath(QLatin1String(kProjectFile)));
    QCOMPARE(again.value(QStringLiteral("future_top")).toObject().value(QStringLiteral("x")).toInt(), 1);
    const QJsonObject again_b0 = again.value(QLatin1String("branches")).toArray()[0].toObject();
    QCOMPARE(again_b0.value(QStringLiteral("colour")).toString(), QStringLiteral("teal"));
    QCOMPARE(again_b0.value(QLatin1String("blocks")).toArray()[0].toObject().value(QStringLiteral("rating")).toInt(), 5);
  }

  void migratesGoldenV0() {
    const QJsonObject v0 = readJson(kGoldenDir + QStringLiteral("/project-v0/project.json"));
    const QJsonObject expected = readJson(kGoldenDir + QStringLiteral("/project-v0-migrated.json"));
    QVERIFY(!v0.isEmpty() && !expected.isEmpty());
    QString error;
    const QJsonObject migrated = migrateProjectJson(v0, &error);
    QVERIFY2(error.isEmpty(), qPrintable(error));
    if (migrated != expected) {
      qWarning("%s", QJsonDocument(migrated).toJson().constData());
      QFAIL("migration of project-v0 differs from project-v0-migrated.json");
    }
    // Idempotent at the current version.
    QCOMPARE(migrateProjectJson(migrated, &error), migrated);
  }

  // A whole v0 project folder opens: the golden JSON plus snapshot/cache files made now for the
  // keys it names, by the same generation the v0 file describes.
  void opensGoldenV0Folder() {
    Engine engine;
    ProjectModel reference;
    reference.reset(engine.initialState(), 3, 7, QStringLiteral("a red balloon over snowy mountains"));
    QVERIFY(engine.generate(reference, ProjectModel::kRootId, 3));
    int forest = 0;
    QVERIFY(reference.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("forest"), 7,
                                          QStringLiteral("birds over a green forest"), &forest));
    QVERIFY(engine.generate(reference, forest, 1));
    const QStringList keys{QStringLiteral("00000000000000a0"), QStringLiteral("00000000000000a1"),
                           QStringLiteral("00000000000000a2"), QStringLiteral("00000000000000b1")};
    const BlockRecord* records[] = {reference.pathBlock(1, 0), reference.pathBlock(1, 1),
                                    reference.pathBlock(1, 2), reference.pathBlock(forest, 1)};
    QTemporaryDir dir;
    QVERIFY(QDir(dir.path()).mkpath(QStringLiteral("snapshots")));
    QVERIFY(QDir(dir.path()).mkpath(QStringLiteral("cache")));
    QVERIFY(QFile::copy(kGoldenDir + QStringLiteral("/project-v0/project.json"), dir.filePath(QLatin1String(kProjectFile))));
    strand::save_snapshot(dir.filePath(QStringLiteral("snapshots/initial.snap")).toStdString(), *reference.initialState());
    for (int i = 0; i < 4; ++i) {
      strand::save_snapshot(dir.filePath(QStringLiteral("snapshots/%1.snap").arg(keys[i])).toStdString(), *records[i]->state_after);
      QFile cache(dir.filePath(QStringLiteral("cache/%1.blk").arg(keys[i])));
      QVERIFY(cache.open(QIODevice::WriteOnly));
      cache.write(encodeBlockCache(records[i]->frames, records[i]->latents));
    }
    ProjectModel loaded;
    ProjectMeta meta;
    QString error;
    QVERIFY2(loadProject(dir.path(), false, QString::fromStdString(engine.model->id()), &loaded, &meta, &error), qPrintable(error));
    QCOMPARE(meta.loaded_version, 0);
    QVERIFY(!meta.read_only);
    QCOMPARE(loaded.activeBranch(), 2);
    QCOMPARE(loaded.branch(2)->fork_block, 1);
    QCOMPARE(loaded.branch(2)->seed, quint64{7});
    QCOMPARE(pathFrames(loaded, 2), pathFrames(reference, forest));
    QCOMPARE(pathFrames(loaded, 1), pathFrames(reference, 1));
    QCOMPARE(loaded.checkInvariants(), QString());
  }

  void newerVersionOpensReadOnly() {
    Engine engine;
    ProjectModel project;
    project.reset(engine.initialState(), 3, 1, QStringLiteral("a red balloon"));
    QTemporaryDir dir;
    ProjectMeta meta;
    QString error;
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    QJsonObject json = readJson(dir.filePath(QLatin1String(kProjectFile)));
    json.insert(QLatin1String("version"), kProjectVersion + 1);
    QVERIFY(writeJson(dir.filePath(QLatin1String(kProjectFile)), json));
    ProjectModel loaded;
    ProjectMeta loaded_meta;
    QVERIFY2(loadProject(dir.path(), false, {}, &loaded, &loaded_meta, &error), qPrintable(error));
    QVERIFY(loaded_meta.read_only);
    QVERIFY(!saveProject(loaded, loaded_meta, dir.path(), SaveKind::explicit_save, &error));
    QVERIFY(error.contains(QStringLiteral("read-only")));
    QTemporaryDir copy;  // Save As to another folder works; the copy is the current version
    loaded_meta.read_only = false;
    QVERIFY(saveProject(loaded, loaded_meta, copy.path(), SaveKind::explicit_save, &error));
  }

  void damagedFilesAreReported() {
    Engine engine;
    ProjectModel project;
    int branch = 0;
    buildProject(engine, project, &branch);
    QTemporaryDir dir;
    ProjectMeta meta;
    QString error;
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    const BlockRecord* block = project.pathBlock(branch, 2);

    // A flipped byte in a frame cache: opens with a warning, that block shows placeholders.
    {
      QFile cache(dir.filePath(QStringLiteral("cache/%1.blk").arg(block->key)));
      QVERIFY(cache.open(QIODevice::ReadWrite));
      QByteArray bytes = cache.readAll();
      bytes[bytes.size() / 2] = char(bytes[bytes.size() / 2] ^ 0x10);
      cache.seek(0);
      cache.write(bytes);
    }
    ProjectModel loaded;
    ProjectMeta loaded_meta;
    QVERIFY(loadProject(dir.path(), false, {}, &loaded, &loaded_meta, &error));
    QCOMPARE(loaded_meta.warnings.size(), 1);
    QVERIFY(loaded_meta.warnings[0].contains(QStringLiteral("checksum")));
    QVERIFY(loaded.frame(branch, 6) != project.frame(branch, 6));
    QCOMPARE(loaded.frame(branch, 3), project.frame(branch, 3));

    // A damaged snapshot is an error, and the target model is left as it was.
    {
      QFile snap(dir.filePath(QStringLiteral("snapshots/%1.snap").arg(block->key)));
      QVERIFY(snap.open(QIODevice::ReadWrite));
      QByteArray bytes = snap.readAll();
      bytes[bytes.size() - 3] = char(bytes[bytes.size() - 3] ^ 0x01);
      snap.seek(0);
      snap.write(bytes);
    }
    ProjectModel untouched;
    untouched.reset(nullptr, 3, 0);
    const QList<int> ids_before = untouched.branchIds();
    QVERIFY(!loadProject(dir.path(), false, {}, &untouched, &loaded_meta, &error));
    QVERIFY(!error.isEmpty());
    QCOMPARE(untouched.branchIds(), ids_before);

    // Keys are file names: a path in a key is refused.
    QJsonObject json = readJson(dir.filePath(QLatin1String(kProjectFile)));
    QJsonArray branches = json.value(QLatin1String("branches")).toArray();
    QJsonObject b0 = branches[0].toObject();
    QJsonArray blocks = b0.value(QLatin1String("blocks")).toArray();
    QJsonObject first = blocks[0].toObject();
    first.insert(QLatin1String("key"), QStringLiteral("../../etc/passwd"));
    blocks[0] = first;
    b0.insert(QLatin1String("blocks"), blocks);
    branches[0] = b0;
    json.insert(QLatin1String("branches"), branches);
    QVERIFY(writeJson(dir.filePath(QLatin1String(kProjectFile)), json));
    QVERIFY(!loadProject(dir.path(), false, {}, &untouched, &loaded_meta, &error));
    QVERIFY(error.contains(QStringLiteral("invalid key")));

    // Not a project at all.
    QVERIFY(writeJson(dir.filePath(QLatin1String(kProjectFile)), QJsonObject{{QStringLiteral("format"), QStringLiteral("other")}, {QStringLiteral("version"), 1}}));
    QVERIFY(!loadProject(dir.path(), false, {}, &untouched, &loaded_meta, &error));
    QVERIFY(error.contains(QStringLiteral("not a Strand project")));
  }

  void failedSaveKeepsThePreviousFile() {
    ProjectModel project;
    project.reset(std::make_shared<strand::MemoryState>(), 3, 0, QStringLiteral("p"));
    QTemporaryDir dir;
    ProjectMeta meta;
    QString error;
    QVERIFY(saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    const QJsonObject before = readJson(dir.filePath(QLatin1String(kProjectFile)));
    // Make the cache folder a file: the save must fail before touching project.json.
    QVERIFY(QDir(dir.filePath(QStringLiteral("cache"))).removeRecursively());
    QFile blocker(dir.filePath(QStringLiteral("cache")));
    QVERIFY(blocker.open(QIODevice::WriteOnly));
    blocker.close();
    QVERIFY(project.requestRenameBranch(ProjectModel::kRootId, QStringLiteral("changed")));
    QVERIFY(!saveProject(project, meta, dir.path(), SaveKind::explicit_save, &error));
    QVERIFY(!error.isEmpty());
    QCOMPARE(readJson(dir.filePath(QLatin1String(kProjectFile))), before);
  }
};

QTEST_MAIN(TestProjectFile)
#include "test_project_file.moc"
