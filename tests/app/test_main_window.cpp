// MainWindow, offscreen: it shows, Generate fills the preview, the GUI thread never stalls.
#include <QPushButton>
#include <QTemporaryDir>
#include <QtTest>

#include "main_window.h"
#include "stall_monitor.h"
#include "ui/preview_widget.h"
#include "ui/prompt_edit.h"

using namespace strand::desktop;
using strand::desktop::test::spinUntil;
using strand::desktop::test::StallMonitor;

namespace {

constexpr int kTimeoutMs = 30000;

// The golden test model (tests/data) keeps this file fast; STRAND_TEST_MODEL overrides it (e.g.
// with tests/data/strand-tiny-random.safetensors, the bundled demo model).
QString bundledModelPath() {
  const QString override_path = qEnvironmentVariable("STRAND_TEST_MODEL");
  if (!override_path.isEmpty()) return override_path;
  return QStringLiteral(STRAND_SOURCE_DIR "/tests/data/golden-model.safetensors");
}

}  // namespace

class TestMainWindow : public QObject {
  Q_OBJECT

  QTemporaryDir data_dir_;  // autosaves of untitled projects go here, never to the user's folder

 private slots:
  void initTestCase() { qputenv("XDG_DATA_HOME", data_dir_.path().toUtf8()); }

  void badModelShowsErrorWithoutCrash() {
    MainWindow::Options options;
    options.offer_autosave = [](const QString&) { return false; };  // never a modal dialog
    options.model_path = QStringLiteral("/nonexistent/model.safetensors");
    MainWindow window(options);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QTRY_VERIFY_WITH_TIMEOUT(!window.lastError().isEmpty(), kTimeoutMs);
    QVERIFY(window.lastError().contains(QStringLiteral("/nonexistent/model.safetensors")));
    QVERIFY(!window.generateButton()->isEnabled());
    window.startGeneration();  // ignored without a model
    window.applyPrompt();
    QCOMPARE(window.preview()->frameIndex(), qint64{-1});
  }

  void generateFillsPreviewWithoutStalling() {
    if (!QFileInfo::exists(bundledModelPath()))
      QSKIP("test model tests/data/golden-model.safetensors is missing");
    MainWindow::Options options;
    options.offer_autosave = [](const QString&) { return false; };  // never a modal dialog
    options.model_path = bundledModelPath();
    options.initial_prompt = QStringLiteral("a hot air balloon over green hills");
    MainWindow window(options);
    window.resize(800, 600);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QTRY_VERIFY_WITH_TIMEOUT(window.generateButton()->isEnabled(), kTimeoutMs);
    QVERIFY(window.lastError().isEmpty());

    QSignalSpy blocks(window.engine(), &EngineWorker::blockDone);
    StallMonitor monitor;
    QTest::mouseClick(window.generateButton(), Qt::LeftButton);
    QCOMPARE(window.appliedPrompt(), options.initial_prompt);
    QVERIFY(spinUntil([&] { return blocks.count() >= 2 && window.preview()->framesShown() >= 2; },
                      kTimeoutMs));
    window.stopGeneration();
    QVERIFY(spinUntil([&] { return window.engine()->state() == EngineState::ready; }, kTimeoutMs));

    qInfo(
        "event loop during %lld blocks: longest stall %.1f ms of our own (%.1f ms wall-clock, "
        "the rest waiting for a CPU the OS gave to other work), %lld ticks",
        static_cast<long long>(blocks.count()), monitor.maxOwnMs(), monitor.maxGapMs(),
        static_cast<long long>(monitor.ticks()));
    QVERIFY2(monitor.maxOwnMs() <= 50, "the GUI thread was busy or blocked for more than 50 ms");
    if (monitor.maxGapMs() > 50) {
      qWarning("wall-clock stall over 50 ms came from CPU contention (machine load), not the GUI");
    }
    QVERIFY(window.preview()->frameIndex() >= 0);
    QVERIFY(!window.preview()->image().isNull());
    QVERIFY(window.lastError().isEmpty());
  }

  void ctrlEnterAppliesPrompt() {
    if (!QFileInfo::exists(bundledModelPath()))
      QSKIP("test model tests/data/golden-model.safetensors is missing");
    MainWindow::Options options;
    options.offer_autosave = [](const QString&) { return false; };  // never a modal dialog
    options.model_path = bundledModelPath();
    MainWindow window(options);
    window.show();
    QApplication::setActiveWindow(&window);
    QVERIFY(QTest::qWaitForWindowActive(&window));
    QTRY_VERIFY_WITH_TIMEOUT(window.promptEdit()->isEnabled(), kTimeoutMs);
    QSignalSpy applied(window.engine(), &EngineWorker::promptApplied);
    window.promptEdit()->setFocus();
    QTest::keyClicks(window.promptEdit(), QStringLiteral("fireflies in a forest"));
    QTest::keyClick(window.promptEdit(), Qt::Key_Return, Qt::ControlModifier);
    QCOMPARE(window.appliedPrompt(), QStringLiteral("fireflies in a forest"));
    QVERIFY(applied.wait(kTimeoutMs));
    QCOMPARE(applied[0][0].toString(), QStringLiteral("fireflies in a forest"));
  }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
