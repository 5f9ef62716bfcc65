// strand_ui: preview widget geometry and the text formatting it shows (no model needed).
#include <QtTest>

#include "ui/formatting.h"
#include "ui/preview_widget.h"

using strand::ui::PreviewWidget;

class TestPreviewWidget : public QObject {
  Q_OBJECT

 private slots:
  void timeCodes() {
    QCOMPARE(strand::ui::timeCode(0, 12), QStringLiteral("00:00:00:00"));
    QCOMPARE(strand::ui::timeCode(11, 12), QStringLiteral("00:00:00:11"));
    QCOMPARE(strand::ui::timeCode(12, 12), QStringLiteral("00:00:01:00"));
    // 1 h 2 min 3 s and 4 frames at 24 fps.
    QCOMPARE(strand::ui::timeCode(((3600 + 120 + 3) * 24) + 4, 24), QStringLiteral("01:02:03:04"));
    QCOMPARE(strand::ui::timeCode(5, 0), QStringLiteral("--:--:--:--"));
    QCOMPARE(strand::ui::timeCode(-1, 12), QStringLiteral("--:--:--:--"));
  }

  void byteSizes() {
    QCOMPARE(strand::ui::formatBytes(0), QStringLiteral("0 B"));
    QCOMPARE(strand::ui::formatBytes(1023), QStringLiteral("1023 B"));
    QCOMPARE(strand::ui::formatBytes(1536), QStringLiteral("1.5 KiB"));
    QCOMPARE(strand::ui::formatBytes(3 * 1024 * 1024), QStringLiteral("3.0 MiB"));
    QCOMPARE(strand::ui::formatBytes(qint64{5} << 30), QStringLiteral("5.0 GiB"));
  }

  void fitRectKeepsAspectAndCentres() {
    // 16:9 into a tall area: full width, centred vertically.
    QCOMPARE(PreviewWidget::fitRect(QSize(128, 72), QRect(0, 0, 640, 640)),
             QRect(0, 140, 640, 360));
    // 16:9 into a wide area: full height, centred horizontally, offset kept.
    QCOMPARE(PreviewWidget::fitRect(QSize(128, 72), QRect(10, 20, 1000, 360)),
             QRect(10 + 180, 20, 640, 360));
    QVERIFY(PreviewWidget::fitRect(QSize(), QRect(0, 0, 10, 10)).isEmpty());
  }

  void paintsFrameScaledWithLetterbox() {
    PreviewWidget widget;
    widget.resize(400, 400);
    widget.setFramesPerSecond(12);
    QImage red(16, 9, QImage::Format_RGB888);
    red.fill(QColor(255, 0, 0));
    widget.setFrame(red, 25);
    QCOMPARE(widget.frameIndex(), qint64{25});
    const QImage shot = widget.grab().toImage();
    // Letterbox bars are black, the picture area red (sampled away from the overlay).
    QCOMPARE(QColor(shot.pixel(200, 10)), QColor(Qt::black));
    QCOMPARE(QColor(shot.pixel(200, 390)), QColor(Qt::black));
    QCOMPARE(QColor(shot.pixel(300, 250)), QColor(255, 0, 0));
    widget.clear();
    QCOMPARE(widget.frameIndex(), qint64{-1});
  }
};

QTEST_MAIN(TestPreviewWidget)
#include "test_preview_widget.moc"
