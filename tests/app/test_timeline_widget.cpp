// TimelineWidget: geometry (frame <-> x, boundary hit test), scrubbing signals, zoom limits, and
// painting only from the frame source (never beyond the content).
#include <QSignalSpy>
#include <QtTest>

#include "ui/timeline_widget.h"

using strand::ui::TimelineContent;
using strand::ui::TimelineWidget;

namespace {

TimelineContent content(qint64 frames) {
  TimelineContent c;
  c.frame_count = frames;
  c.frames_per_block = 3;
  c.fps = 12;
  c.segments = {{0, 5, QStringLiteral("first prompt"), true}, {6, frames - 1, QStringLiteral("second"), false}};
  c.fork_frame = 6;
  c.in_frame = 2;
  c.out_frame = 10;
  return c;
}

}  // namespace

class TestTimelineWidget : public QObject {
  Q_OBJECT

 private slots:
  void geometryAndBoundaries() {
    TimelineWidget timeline;
    timeline.resize(600, timeline.sizeHint().height());
    timeline.setContent(content(30));
    timeline.setPixelsPerFrame(10);
    QCOMPARE(timeline.xForFrame(0), 0);
    QCOMPARE(timeline.xForFrame(7), 70);
    QCOMPARE(timeline.frameAt(75), qint64{7});
    QCOMPARE(timeline.frameAt(-20), qint64{0});
    QCOMPARE(timeline.frameAt(10000), qint64{29});
    QCOMPARE(timeline.boundaryNear(timeline.xForFrame(6) + 2), qint64{2});
    QCOMPARE(timeline.boundaryNear(timeline.xForFrame(7) + 5), qint64{-1});  // mid-block
    QCOMPARE(timeline.boundaryNear(timeline.xForFrame(30)), qint64{10});    // the end
  }

  void scrubbingEmitsFrames() {
    TimelineWidget timeline;
    timeline.resize(600, timeline.sizeHint().height());
    timeline.setContent(content(30));
    timeline.setPixelsPerFrame(10);
    QSignalSpy scrubbed(&timeline, &TimelineWidget::scrubbed);
    QTest::mouseClick(&timeline, Qt::LeftButton, {}, QPoint(timeline.xForFrame(12) + 3, 40));
    QCOMPARE(scrubbed.count(), 1);
    QCOMPARE(scrubbed[0][0].toLongLong(), 12);
    QCOMPARE(timeline.playhead(), qint64{12});
    timeline.setPlayhead(500);  // clamped, no signal
    QCOMPARE(timeline.playhead(), qint64{29});
    QCOMPARE(scrubbed.count(), 1);
  }

  void zoomIsClampedAndKeepsThePlayhead() {
    TimelineWidget timeline;
    timeline.resize(400, timeline.sizeHint().height());
    timeline.setContent(content(3000));
    timeline.setPlayhead(1500);
    const int before = timeline.xForFrame(1500);
    timeline.zoomIn();
    QCOMPARE(timeline.xForFrame(1500), before);
    for (int i = 0; i < 40; ++i) timeline.zoomIn();
    QCOMPARE(timeline.pixelsPerFrame(), 64.0);
    for (int i = 0; i < 40; ++i) timeline.zoomOut();
    QCOMPARE(timeline.pixelsPerFrame(), 0.5);
  }

  void paintsOnlyFromTheSource() {
    TimelineWidget timeline;
    timeline.resize(800, timeline.sizeHint().height());
    qint64 highest = -1;
    int calls = 0;
    timeline.setFrameSource([&](qint64 frame) {
      ++calls;
      highest = std::max(highest, frame);
      QImage image(64, 32, QImage::Format_RGB888);
      image.fill(QColor::fromHsv(int(frame * 10 % 360), 200, 200));
      return image;
    });
    timeline.setContent(content(30));
    const QImage shot = timeline.grab().toImage();
    QVERIFY(!shot.isNull());
    QVERIFY(calls > 0);
    QVERIFY(highest < 30);
    // Thumbnails are cached: painting again asks the source for nothing new but the aspect probe.
    const int after_first = calls;
    (void)timeline.grab();
    QVERIFY2(calls - after_first <= 1, qPrintable(QString::number(calls - after_first) + " of " + QString::number(after_first)));
  }
};

QTEST_MAIN(TestTimelineWidget)
#include "test_timeline_widget.moc"
