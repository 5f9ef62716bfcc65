// ProjectModel: the branch tree, block records and their snapshots, undo/redo of every edit, and a
// randomized operation + undo/redo sequence that checks the invariants after every step. Frames
// come from the real engine (golden model) where reproducibility is the point; expected results
// are always a second computation, never recorded output.
#include <QRandomGenerator>
#include <QtTest>

#include "project_test_support.h"

using namespace strand::desktop;
using strand::desktop::test::Engine;
using strand::desktop::test::pathFrames;

namespace {

// Everything observable about the model except block contents, as one comparable string.
QString digest(const ProjectModel& project) {
  QStringList parts;
  for (int id : project.branchIds()) {
    const Branch* b = project.branch(id);
    QStringList keys;
    for (const BlockRecord& block : b->blocks) keys << block.key;
    parts << QStringLiteral("%1|%2|%3|%4|%5|%6|%7|%8|%9")
                 .arg(id)
                 .arg(b->name)
                 .arg(b->parent_id)
                 .arg(b->fork_block)
                 .arg(b->seed)
                 .arg(b->prompt)
                 .arg(b->in_frame)
                 .arg(b->out_frame)
                 .arg(keys.join(QLatin1Char(',')));
  }
  parts << QStringLiteral("active=%1").arg(project.activeBranch());
  return parts.join(QLatin1Char('\n'));
}

// A block without the engine: enough for structural tests (a snapshot at the right boundary).
BlockRecord fakeBlock(qint64 index, int frames_per_block, const QString& prompt) {
  BlockRecord block;
  block.index = index;
  block.prompt = prompt;
  auto state = std::make_shared<strand::MemoryState>();
  state->next_block = index + 1;
  block.state_after = state;
  for (int f = 0; f < frames_per_block; ++f) {
    QImage image(4, 2, QImage::Format_RGB888);
    image.fill(QColor::fromRgb(int(index * 7 % 256), f * 40, 9));
    block.frames << image;
  }
  return block;
}

}  // namespace

class TestProjectModel : public QObject {
  Q_OBJECT

 private slots:
  void treeAndPaths() {
    ProjectModel project;
    auto initial = std::make_shared<strand::MemoryState>();
    project.reset(initial, 3, 5, QStringLiteral("a"));
    for (int k = 0; k < 3; ++k) QVERIFY(project.appendBlock(ProjectModel::kRootId, fakeBlock(k, 3, QStringLiteral("a"))));
    QCOMPARE(project.pathLength(ProjectModel::kRootId), 3);
    QVERIFY(!project.appendBlock(ProjectModel::kRootId, fakeBlock(5, 3, QStringLiteral("a"))));  // gap
    QVERIFY(!project.appendBlock(ProjectModel::kRootId, fakeBlock(3, 2, QStringLiteral("a"))));  // frames

    int child = 0;
    QVERIFY(!project.requestCreateBranch(ProjectModel::kRootId, 4, QStringLiteral("x"), 1, {}, &child));
    QVERIFY(!project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("  "), 1, {}, &child));
    QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("alt"), 9,
                                        QStringLiteral("b"), &child));
    QCOMPARE(project.pathLength(child), 1);
    QCOMPARE(project.snapshotAtBoundary(child, 0), SnapshotPtr(initial));
    QCOMPARE(project.snapshotAtBoundary(child, 1), project.snapshotAtBoundary(ProjectModel::kRootId, 1));
    QVERIFY(!project.snapshotAtBoundary(child, 2));
    QVERIFY(project.appendBlock(child, fakeBlock(1, 3, QStringLiteral("b"))));
    QVERIFY(project.appendBlock(child, fakeBlock(2, 3, QStringLiteral("b"))));
    // The child's path: root block 0, then its own blocks 1, 2.
    QCOMPARE(project.pathBlock(child, 0), project.pathBlock(ProjectModel::kRootId, 0));
    QVERIFY(project.pathBlock(child, 1) != project.pathBlock(ProjectModel::kRootId, 1));
    const QList<PromptSegment> segments = project.promptSegments(child);
    QCOMPARE(segments.size(), 2);
    QCOMPARE(segments[0].first_block, 0);
    QCOMPARE(segments[0].last_block, 0);
    QCOMPARE(segments[0].branch_id, ProjectModel::kRootId);
    QCOMPARE(segments[1].prompt, QStringLiteral("b"));
    QCOMPARE(segments[1].last_block, 2);
    QCOMPARE(segments[1].branch_id, child);
    QCOMPARE(project.checkInvariants(), QString());
  }

  void everyEditUndoes() {
    ProjectModel project;
    project.reset(std::make_shared<strand::MemoryState>(), 2, 1, QStringLiteral("p"));
    for (int k = 0; k < 2; ++k) QVERIFY(project.appendBlock(ProjectModel::kRootId, fakeBlock(k, 2, QStringLiteral("p"))));
    int child = 0;
    QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 2, QStringLiteral("c"), 3, QStringLiteral("q"), &child));
    QVERIFY(project.appendBlock(child, fakeBlock(2, 2, QStringLiteral("q"))));
    project.setActiveBranch(child);
    const QString before = digest(project);

    QVERIFY(project.requestSetPrompt(child, QStringLiteral("r")));
    QVERIFY(project.requestSetSeed(child, 77));
    QVERIFY(project.requestRenameBranch(child, QStringLiteral("renamed")));
    QVERIFY(project.requestSetInOut(child, 1, 4));
    QVERIFY(!project.requestSetInOut(child, 4, 1));
    QVERIFY(!project.requestSetInOut(child, 0, 6));  // path has 6 frames: 0..5
    QVERIFY(project.requestDeleteBranch(child));
    QVERIFY(!project.requestDeleteBranch(ProjectModel::kRootId));
    QVERIFY(project.branch(child) == nullptr);
    QCOMPARE(project.activeBranch(), ProjectModel::kRootId);
    const QString after = digest(project);

    // Undo the delete: the branch comes back with its generated block and becomes active again.
    project.undoStack()->undo();
    QVERIFY(project.branch(child) != nullptr);
    QCOMPARE(project.branch(child)->blocks.size(), size_t{1});
    QCOMPARE(project.activeBranch(), child);
    while (project.undoStack()->canUndo() && project.undoStack()->index() > 1) project.undoStack()->undo();
    QCOMPARE(digest(project), before);
    while (project.undoStack()->canRedo()) project.undoStack()->redo();
    QCOMPARE(digest(project), after);
    QCOMPARE(project.checkInvariants(), QString());
  }

  // Random edits, appends, undo and redo. After every step the invariants hold; after every
  // successful edit, undo gives back exactly the state before it and redo the state after it.
  void randomOperationsWithUndoRedo() {
    const quint32 seed = QRandomGenerator::global()->generate();
    qInfo("random seed %u", seed);
    QRandomGenerator rng(seed);
    ProjectModel project;
    constexpr int kFpb = 2;
    project.reset(std::make_shared<strand::MemoryState>(), kFpb, 0, QStringLiteral("p0"));
    int edits = 0, undos = 0, redos = 0, appends = 0;
    for (int step = 0; step < 1500; ++step) {
      const QList<int> ids = project.branchIds();
      const int id = ids[rng.bounded(int(ids.size()))];
      const QString before = digest(project);
      bool edited = false;
      switch (rng.bounded(10)) {
        case 0:
        case 1:
          edited = project.requestCreateBranch(id, rng.bounded(int(project.pathLength(id)) + 2),
                                               QStringLiteral("b%1").arg(step), rng.bounded(5),
                                               QStringLiteral("p%1").arg(rng.bounded(3)));
          break;
        case 2:
          edited = project.requestDeleteBranch(id);
          break;
        case 3:
          edited = project.requestRenameBranch(id, rng.bounded(4) == 0 ? QStringLiteral(" ") : QStringLiteral("n%1").arg(step));
          break;
        case 4:
          edited = project.requestSetPrompt(id, QStringLiteral("p%1").arg(rng.bounded(4)));
          break;
        case 5: {
          const int frames = int(project.pathFrames(id));
          edited = project.requestSetInOut(id, rng.bounded(-1, frames + 1), rng.bounded(-1, frames + 1));
          break;
        }
        case 6:
        case 7:
          if (project.appendBlock(id, fakeBlock(project.pathLength(id), kFpb, project.branch(id)->prompt))) ++appends;
          break;
        case 8:
          if (project.undoStack()->canUndo()) { project.undoStack()->undo(); ++undos; }
          break;
        case 9:
          if (project.undoStack()->canRedo()) { project.undoStack()->redo(); ++redos; }
          project.setActiveBranch(id);
          break;
      }
      QString problem = project.checkInvariants();
      QVERIFY2(problem.isEmpty(), qPrintable(QStringLiteral("step %1: %2").arg(step).arg(problem)));
      if (!edited) continue;
      ++edits;
      const QString after = digest(project);
      QVERIFY2(after != before, "an accepted edit changed nothing");
      project.undoStack()->undo();
      QVERIFY2(digest(project) == before, qPrintable(QStringLiteral("step %1: undo differs").arg(step)));
      QVERIFY(project.checkInvariants().isEmpty());
      project.undoStack()->redo();
      QVERIFY2(digest(project) == after, qPrintable(QStringLiteral("step %1: redo differs").arg(step)));
    }
    qInfo("%d edits, %d undos, %d redos, %d appended blocks, %d branches at the end", edits, undos,
          redos, appends, int(project.branchIds().size()));
    QVERIFY(edits > 100);
  }

  // Generating on one branch never changes another; the same snapshot, seed and prompts give the
  // same frames; another seed gives other frames.
  void branchesAreIndependentAndReproducible() {
    Engine engine;
    ProjectModel project;
    const QString prompt = QStringLiteral("a red balloon over snowy mountains");
    project.reset(engine.initialState(), engine.model->config().frames_per_block, 7, prompt);
    QVERIFY(engine.generate(project, ProjectModel::kRootId, 3));
    const QList<QImage> root_before = pathFrames(project, ProjectModel::kRootId);

    int same_a = 0, same_b = 0, other = 0;
    QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("A"), 99, QStringLiteral("green forest"), &same_a));
    QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("B"), 99, QStringLiteral("green forest"), &same_b));
    QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("C"), 100, QStringLiteral("green forest"), &other));
    QVERIFY(engine.generate(project, same_a, 2));
    QVERIFY(engine.generate(project, ProjectModel::kRootId, 1));  // interleave: root goes on
    QVERIFY(engine.generate(project, same_b, 2));
    QVERIFY(engine.generate(project, other, 2));

    // The root's first three blocks are untouched by everything generated since.
    const QList<QImage> root_after = pathFrames(project, ProjectModel::kRootId);
    QCOMPARE(root_after.mid(0, root_before.size()), root_before);
    const QList<QImage> a = pathFrames(project, same_a);
    const QList<QImage> b = pathFrames(project, same_b);
    const QList<QImage> c = pathFrames(project, other);
    QCOMPARE(a.size(), 9);
    QCOMPARE(a, b);                        // same snapshot + seed + prompts
    QCOMPARE(a.mid(0, 3), root_before.mid(0, 3));  // the shared block
    QVERIFY(a.mid(3) != c.mid(3));         // another seed
    QVERIFY(a.mid(3) != root_before.mid(3));  // another prompt than the root
    QVERIFY(project.pathBlock(same_a, 2)->latents == project.pathBlock(same_b, 2)->latents);
    QVERIFY(*project.pathBlock(same_a, 2)->state_after == *project.pathBlock(same_b, 2)->state_after);

    // Re-running the root's own continuation from boundary 1 reproduces its blocks 1 and 2.
    int replay = 0;
    QVERIFY(project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("replay"), 7, prompt, &replay));
    QVERIFY(engine.generate(project, replay, 2));
    QCOMPARE(pathFrames(project, replay), root_before);
    QCOMPARE(project.checkInvariants(), QString());
  }
};

QTEST_MAIN(TestProjectModel)
#include "test_project_model.moc"
