// MainWindow, offscreen: it shows, Generate fills the preview, the GUI thread never stalls.
#include <QtTest>

#include <QLineEdit>
#include <QPushButton>

#include "main_window.h"
#include "ui/preview_widget.h"

using namespace strand::desktop;

namespace {

constexpr int kTimeoutMs = 30000;

// STRAND_TEST_MODEL overrides the bundled model (e.g. to try another model file).
QString bundledModelPath() {
  const QString override_path = qEnvironmentVariable("STRAND_TEST_MODEL");
  if (!override_path.isEmpty()) return override_path;
  return QStringLiteral(STRAND_SOURCE_DIR "/resources/models/strand-tiny-random.safetensors");
}

// Measures the longest gap between ticks of a 1 ms timer: how long the event loop was blocked.
class StallMonitor {
 public:
  StallMonitor() {
    timer_.setTimerType(Qt::PreciseTimer);
    timer_.setInterval(1);
    QObject::connect(&timer_, &QTimer::timeout, [this] {
      max_gap_ms_ = std::max(max_gap_ms_, clock_.restart());
      ++ticks_;
    });
    clock_.start();
    timer_.start();
  }
  [[nodiscard]] qint64 maxGapMs() const { return max_gap_ms_; }
  [[nodiscard]] qint64 ticks() const { return ticks_; }

 private:
  QTimer timer_;
  QElapsedTimer clock_;
  qint64 max_gap_ms_ = 0;
  qint64 ticks_ = 0;
};

}  // namespace

class TestMainWindow : public QObject {
  Q_OBJECT

 private slots:
  void badModelShowsErrorWithoutCrash() {
    MainWindow::Options options;
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
      QSKIP("bundled model resources/models/strand-tiny-random.safetensors is missing");
    MainWindow::Options options;
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
    QTRY_VERIFY_WITH_TIMEOUT(blocks.count() >= 2, kTimeoutMs);
    QTRY_VERIFY_WITH_TIMEOUT(window.preview()->framesShown() >= 2, kTimeoutMs);
    window.stopGeneration();
    QTRY_COMPARE_WITH_TIMEOUT(window.engine()->state(), EngineState::ready, kTimeoutMs);

    qInfo("event loop: longest stall %lld ms over %lld ticks while generating %lld blocks",
          static_cast<long long>(monitor.maxGapMs()), static_cast<long long>(monitor.ticks()),
          static_cast<long long>(blocks.count()));
    QVERIFY2(monitor.maxGapMs() <= 50, "the GUI thread stalled for more than 50 ms");
    QVERIFY(window.preview()->frameIndex() >= 0);
    QVERIFY(!window.preview()->image().isNull());
    QVERIFY(window.lastError().isEmpty());
  }

  void ctrlEnterAppliesPrompt() {
    if (!QFileInfo::exists(bundledModelPath()))
      QSKIP("bundled model resources/models/strand-tiny-random.safetensors is missing");
    MainWindow::Options options;
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
