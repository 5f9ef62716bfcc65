// The scripted end-to-end scenario through the real main window (offscreen, golden model):
// type a prompt, generate 3 blocks, change the prompt mid-stream, branch from the block-1
// boundary (timeline context menu), generate on the branch, scrub with keys and mouse, delete the
// branch and undo the delete, save, reopen in a second window, and check that frames and branches
// are identical. The event loop's longest stall during generation is measured and reported.
#include <QApplication>
#include <QContextMenuEvent>
#include <QMenu>
#include <QPushButton>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTreeWidget>
#include <QtTest>

#include "main_window.h"
#include "stall_monitor.h"
#include "ui/preview_widget.h"
#include "ui/prompt_edit.h"
#include "ui/timeline_widget.h"

using namespace strand::desktop;
using strand::desktop::test::spinUntil;
using strand::desktop::test::StallMonitor;

namespace {

constexpr int kTimeoutMs = 60000;
const QString kPrompt1 = QStringLiteral("a red balloon over snowy mountains");
const QString kPrompt2 = QStringLiteral("birds over a green forest");

MainWindow::Options testOptions() {
  MainWindow::Options options;
  options.model_path = QStringLiteral(STRAND_SOURCE_DIR "/tests/data/golden-model.safetensors");
  options.seed = 11;
  options.autosave_interval_ms = 0;
  options.offer_autosave = [](const QString&) { return false; };
  options.remember_recent = false;
  return options;
}

QList<QImage> framesOf(const ProjectModel& project, int id) {
  QList<QImage> frames;
  for (qint64 f = 0; f < project.pathFrames(id); ++f) frames << project.frame(id, f);
  return frames;
}

// Opens the timeline's context menu at `x` and picks the "Branch from here" entry by keyboard
// (as a user would), from inside the menu's own event loop.
void branchViaContextMenu(strand::ui::TimelineWidget* timeline, int x) {
  bool picked = false;
  QTimer::singleShot(50, timeline, [&picked] {
    auto* menu = qobject_cast<QMenu*>(QApplication::activePopupWidget());
    if (menu == nullptr) return;
    for (QAction* action : menu->actions()) {
      if (action->text().startsWith(QStringLiteral("Branch from here")) && action->isEnabled()) {
        menu->setActiveAction(action);
        QTest::keyClick(menu, Qt::Key_Return);
        picked = true;
        return;
      }
    }
    menu->close();
  });
  const QPoint pos(x, timeline->height() / 2);
  QContextMenuEvent event(QContextMenuEvent::Mouse, pos, timeline->mapToGlobal(pos));
  QApplication::sendEvent(timeline, &event);
  QVERIFY2(picked, "the context menu had no enabled \"Branch from here\" entry");
}

bool waitReady(MainWindow& window) {
  return spinUntil([&] { return window.engine()->state() == EngineState::ready; }, kTimeoutMs);
}

}  // namespace

class TestAppScenario : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

  void fullScenario() {
    MainWindow window(testOptions());
    window.resize(1000, 700);
    window.show();
    QApplication::setActiveWindow(&window);
    QVERIFY(QTest::qWaitForWindowActive(&window));
    QTRY_VERIFY_WITH_TIMEOUT(window.generateButton()->isEnabled(), kTimeoutMs);
    ProjectModel* project = window.project();
    const int root = ProjectModel::kRootId;
    const int fpb = project->framesPerBlock();
    QCOMPARE(fpb, 3);

    // 0. The prompt box marks words by the model's vocabulary ("жар" has no word pieces in it).
    window.promptEdit()->setText(QStringLiteral("a red balloon, жар"));
    const QList<strand::ui::WordSpan> spans = window.promptEdit()->wordSpans();
    QCOMPARE(spans.size(), 5);  // a, red, balloon, ",", жар
    QCOMPARE(window.promptEdit()->text().mid(spans[1].start, spans[1].length), QStringLiteral("red"));
    QVERIFY(spans[1].known);
    QCOMPARE(window.promptEdit()->text().mid(spans[4].start, spans[4].length), QStringLiteral("жар"));
    QVERIFY(!spans[4].known);
    window.promptEdit()->clear();

    // 1. Type a prompt and generate 3 blocks.
    window.promptEdit()->setFocus();
    QTest::keyClicks(window.promptEdit(), kPrompt1);
    window.blocksSpin()->setValue(3);
    StallMonitor monitor;
    QTest::mouseClick(window.generateButton(), Qt::LeftButton);
    QVERIFY(spinUntil([&] { return project->pathLength(root) == 3; }, kTimeoutMs));
    QVERIFY(waitReady(window));
    QCOMPARE(project->branch(root)->prompt, kPrompt1);

    // 2. Generate until stopped; change the prompt while it runs.
    window.blocksSpin()->setValue(0);
    QTest::mouseClick(window.generateButton(), Qt::LeftButton);
    QVERIFY(spinUntil([&] { return project->pathLength(root) >= 4; }, kTimeoutMs));
    window.promptEdit()->setFocus();
    window.promptEdit()->selectAll();
    QTest::keyClicks(window.promptEdit(), kPrompt2);
    QTest::keyClick(window.promptEdit(), Qt::Key_Return, Qt::ControlModifier);
    QCOMPARE(window.appliedPrompt(), kPrompt2);
    QVERIFY(spinUntil([&] {
      const BlockRecord* last = project->pathBlock(root, project->pathLength(root) - 1);
      return last != nullptr && last->prompt == kPrompt2 && project->pathLength(root) >= 6;
    }, kTimeoutMs));
    window.stopGeneration();
    QVERIFY(waitReady(window));
    qInfo("event loop during %lld blocks: longest stall %.1f ms of our own (%.1f ms wall-clock), %lld ticks",
          static_cast<long long>(project->pathLength(root)), monitor.maxOwnMs(), monitor.maxGapMs(),
          static_cast<long long>(monitor.ticks()));
    QVERIFY2(monitor.maxOwnMs() <= 50, "the GUI thread was busy or blocked for more than 50 ms");
    const QList<PromptSegment> segments = project->promptSegments(root);
    QCOMPARE(segments.size(), 2);
    QCOMPARE(segments[0].prompt, kPrompt1);
    QVERIFY(segments[0].last_block >= 3);  // the first 3 blocks + at least the one seen running
    QCOMPARE(segments[1].prompt, kPrompt2);
    QCOMPARE(project->checkInvariants(), QString());
    const QList<QImage> root_frames = framesOf(*project, root);

    // 3. Branch from the block-1 boundary with the timeline's context menu.
    window.timeline()->setPixelsPerFrame(12);
    branchViaContextMenu(window.timeline(), window.timeline()->xForFrame(1 * fpb));
    const int branch = project->activeBranch();
    QVERIFY(branch != root);
    QCOMPARE(project->branch(branch)->parent_id, root);
    QCOMPARE(project->branch(branch)->fork_block, 1);
    QCOMPARE(project->pathFrames(branch), qint64(fpb));

    // 4. Generate 2 blocks on the branch.
    window.blocksSpin()->setValue(2);
    QTest::mouseClick(window.generateButton(), Qt::LeftButton);
    QVERIFY(spinUntil([&] { return project->pathLength(branch) == 3; }, kTimeoutMs));
    QVERIFY(waitReady(window));
    const QList<QImage> branch_frames = framesOf(*project, branch);
    QCOMPARE(branch_frames.mid(0, fpb), root_frames.mid(0, fpb));  // shared block 0
    QVERIFY(branch_frames.mid(fpb) != root_frames.mid(fpb, 2 * fpb));  // its own continuation
    QCOMPARE(framesOf(*project, root), root_frames);  // the root did not change

    // 5. Scrub: keys on the focused timeline, a click, and a text box that swallows the keys.
    window.timeline()->setFocus();
    QTest::keyClick(window.timeline(), Qt::Key_Home);
    QCOMPARE(window.playhead(), qint64{0});
    QTest::keyClick(window.timeline(), Qt::Key_Right);
    QTest::keyClick(window.timeline(), Qt::Key_Right);
    QCOMPARE(window.playhead(), qint64{2});
    QTest::keyClick(window.timeline(), Qt::Key_Right, Qt::ShiftModifier);  // one second, clamped
    QCOMPARE(window.playhead(), qint64{8});
    QTest::keyClick(window.timeline(), Qt::Key_Left);
    QCOMPARE(window.playhead(), qint64{7});
    QCOMPARE(window.preview()->image(), project->frame(branch, 7));
    QTest::mouseClick(window.timeline(), Qt::LeftButton, {}, QPoint(window.timeline()->xForFrame(4) + 2, 40));
    QCOMPARE(window.playhead(), qint64{4});
    QCOMPARE(window.preview()->frameIndex(), qint64{4});
    QCOMPARE(window.preview()->image(), project->frame(branch, 4));
    QTest::keyClick(window.timeline(), Qt::Key_I);
    QTest::keyClick(window.timeline(), Qt::Key_End);
    QTest::keyClick(window.timeline(), Qt::Key_O);
    QCOMPARE(project->branch(branch)->in_frame, qint64{4});
    QCOMPARE(project->branch(branch)->out_frame, qint64{8});
    window.promptEdit()->setFocus();
    QTest::keyClick(window.promptEdit(), Qt::Key_Home);
    QTest::keyClick(window.promptEdit(), Qt::Key_L);
    QCOMPARE(window.playhead(), qint64{8});  // the prompt box took Home and L
    QCOMPARE(window.playbackSpeed(), 0);
    QVERIFY(window.promptEdit()->text().startsWith(QLatin1Char('l')));
    window.promptEdit()->setText(kPrompt2);

    // 6. Delete the branch from the branch tree, then undo the delete.
    window.branchTree()->setFocus();
    QTest::keyClick(window.branchTree(), Qt::Key_Delete);
    QVERIFY(project->branch(branch) == nullptr);
    QCOMPARE(project->activeBranch(), root);
    QTest::keyClick(&window, Qt::Key_Z, Qt::ControlModifier);
    QVERIFY(project->branch(branch) != nullptr);
    QCOMPARE(project->activeBranch(), branch);
    QCOMPARE(framesOf(*project, branch), branch_frames);
    QCOMPARE(project->checkInvariants(), QString());

    // 7. Save, reopen in a second window, compare.
    QTemporaryDir dir;
    const QString folder = dir.filePath(QStringLiteral("scenario.strand"));
    QVERIFY(window.saveProjectTo(folder));
    QVERIFY(!window.isProjectModified());
    MainWindow::Options reopen_options = testOptions();
    reopen_options.project_folder = folder;
    MainWindow reopened(reopen_options);
    QVERIFY(spinUntil([&] { return reopened.projectFolder() == folder; }, kTimeoutMs));
    ProjectModel* copy = reopened.project();
    QCOMPARE(copy->branchIds(), project->branchIds());
    QCOMPARE(copy->activeBranch(), project->activeBranch());
    for (int id : project->branchIds()) {
      QCOMPARE(copy->branch(id)->name, project->branch(id)->name);
      QCOMPARE(copy->branch(id)->parent_id, project->branch(id)->parent_id);
      QCOMPARE(copy->branch(id)->fork_block, project->branch(id)->fork_block);
      QCOMPARE(copy->branch(id)->seed, project->branch(id)->seed);
      QCOMPARE(copy->branch(id)->in_frame, project->branch(id)->in_frame);
      QCOMPARE(copy->promptSegments(id).size(), project->promptSegments(id).size());
      QCOMPARE(framesOf(*copy, id), framesOf(*project, id));
    }
    QCOMPARE(framesOf(*copy, root), root_frames);
    QCOMPARE(framesOf(*copy, branch), branch_frames);

    // 8. The reopened project continues: one more block on the branch from its stored snapshot
    // equals one more block in the original window.
    reopened.blocksSpin()->setValue(1);
    reopened.startGeneration();
    window.blocksSpin()->setValue(1);
    window.startGeneration();
    QVERIFY(spinUntil([&] { return copy->pathLength(branch) == 4 && project->pathLength(branch) == 4; }, kTimeoutMs));
    QCOMPARE(framesOf(*copy, branch), framesOf(*project, branch));
    QVERIFY(waitReady(window));
    QVERIFY(waitReady(reopened));
    QVERIFY(reopened.lastError().isEmpty());
  }
};

QTEST_MAIN(TestAppScenario)
#include "test_app_scenario.moc"
