// A prompt change applied with re-cache is recorded at the branch end: after switching to another
// branch (the engine generates there) and back, the next block is the one a single uninterrupted
// Session makes (generate, set_prompt with re-cache, generate). The re-cached memory also survives
// a save and reopen. The reference comes from a plain strand::Session, not from recorded output.
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest>

#include "main_window.h"
#include "project_file.h"
#include "project_test_support.h"
#include "ui/prompt_edit.h"

using namespace strand::desktop;

namespace {

constexpr int kTimeoutMs = 30000;
constexpr quint64 kSeed = 11;
const QString kPrompt1 = QStringLiteral("a red balloon over snowy mountains");
const QString kPrompt2 = QStringLiteral("birds over a green forest");

// Block 2 after two blocks of kPrompt1 and a switch to kPrompt2 re-caching `recache` blocks.
QList<QImage> referenceBlock2(int recache) {
  test::Engine engine;  // golden model, default session options
  engine.session->set_seed(kSeed);
  engine.session->set_prompt(kPrompt1.toStdString());
  (void)engine.session->generate_next_block();
  (void)engine.session->generate_next_block();
  engine.session->set_prompt(kPrompt2.toStdString(), recache);
  QList<QImage> frames;
  for (const strand::Frame& frame : engine.session->generate_next_block().frames) frames << toQImage(frame);
  return frames;
}

}  // namespace

class TestRecacheBranch : public QObject {
  Q_OBJECT

 private slots:
  void recachedPromptSurvivesBranchSwitch() {
    const QList<QImage> expected = referenceBlock2(1);
    QVERIFY(expected != referenceBlock2(0));  // the re-cache matters, so this test can fail

    MainWindow::Options options;
    options.model_path = test::goldenModelPath();
    options.seed = kSeed;
    options.initial_prompt = kPrompt1;
    options.autosave_interval_ms = 0;
    options.offer_autosave = [](const QString&) { return false; };
    options.remember_recent = false;
    MainWindow window(options);
    QTRY_VERIFY_WITH_TIMEOUT(window.modelLoaded(), kTimeoutMs);
    ProjectModel* project = window.project();
    const int root = ProjectModel::kRootId;
    const auto idle = [&] { return window.engine()->state() == EngineState::ready; };

    window.blocksSpin()->setValue(2);
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(project->pathLength(root) == 2 && idle(), kTimeoutMs);

    // Apply kPrompt2 with a re-cache of one block: the branch end records the re-cached memory.
    window.promptEdit()->setText(kPrompt2);
    window.recacheSpin()->setValue(1);
    window.applyPrompt();
    QTRY_VERIFY_WITH_TIMEOUT(project->branch(root)->recached_end != nullptr, kTimeoutMs);
    QCOMPARE(project->endState(root), project->branch(root)->recached_end);
    QVERIFY(!(*project->endState(root) == *project->snapshotAtBoundary(root, 2)));

    // Saved and reopened, the re-cached end is still there.
    QTemporaryDir dir;
    QVERIFY(window.saveProjectTo(dir.path()));
    {
      ProjectModel reopened;
      ProjectMeta meta;
      QString error;
      QVERIFY2(loadProject(dir.path(), false, {}, &reopened, &meta, &error), qPrintable(error));
      QVERIFY(reopened.branch(root)->recached_end != nullptr);
      QVERIFY(*reopened.endState(root) == *project->endState(root));
    }

    // Undoing the prompt edit falls back to the plain end; redo uses the re-cached one again.
    project->undoStack()->undo();
    QCOMPARE(project->endState(root), project->snapshotAtBoundary(root, 2));
    project->undoStack()->redo();
    QCOMPARE(project->endState(root), project->branch(root)->recached_end);

    // Branch from boundary 1 and generate there: the engine leaves the root's end.
    QVERIFY(window.branchFromBoundary(1));
    const int branch = project->activeBranch();
    QVERIFY(branch != root);
    window.blocksSpin()->setValue(1);
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(project->pathLength(branch) == 2 && idle(), kTimeoutMs);

    // Back to the root and one more block: it continues from the re-cached memory.
    QVERIFY(project->setActiveBranch(root));
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(project->pathLength(root) == 3 && idle(), kTimeoutMs);
    const BlockRecord* block2 = project->pathBlock(root, 2);
    QCOMPARE(block2->prompt, kPrompt2);
    QCOMPARE(block2->frames, expected);
    QVERIFY(project->branch(root)->recached_end == nullptr);  // superseded by the new block
  }
};

QTEST_MAIN(TestRecacheBranch)
#include "test_recache_branch.moc"
