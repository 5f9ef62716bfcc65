// TimelineWidget: the active branch's path as a strip: a time ruler, thumbnails, the prompt
// segments as labelled bands, a snapshot marker at every block boundary, the in/out range and the
// playhead. Scrubbing (click or drag) moves the playhead and asks for nothing from the engine: the
// widget paints frames from a frame source the caller provides (the project's frame cache), with
// its own cache of scaled thumbnails. Zoom with Ctrl+wheel or zoomIn()/zoomOut(); plain wheel
// scrolls. Right-click near a block boundary offers "Branch from here".
//
// Plain Qt types only (no engine headers): the app converts its project data into TimelineContent.
#pragma once
#include <QColor>
#include <QHash>
#include <QImage>
#include <QList>
#include <QPixmap>
#include <QString>
#include <QWidget>
#include <functional>

namespace strand::ui {

struct TimelineSegment {
  qint64 first_frame = 0;
  qint64 last_frame = 0;  // inclusive
  QString label;          // the prompt
  bool inherited = false; // belongs to an ancestor branch (drawn dimmer)
};

struct TimelineContent {
  qint64 frame_count = 0;      // frames generated on the path
  int frames_per_block = 1;
  int fps = 0;
  QList<TimelineSegment> segments;
  qint64 fork_frame = -1;      // where the branch leaves its parent (-1: root)
  qint64 in_frame = -1;        // -1: unset
  qint64 out_frame = -1;
};

class TimelineWidget : public QWidget {
  Q_OBJECT

 public:
  explicit TimelineWidget(QWidget* parent = nullptr);

  // frame index -> image (null if unavailable). Called while painting: must not block.
  void setFrameSource(std::function<QImage(qint64)> source);
  // Replaces what is shown. keep_thumbnails: the frames already cached did not change (the path
  // only grew), so the scaled thumbnails are kept.
  void setContent(const TimelineContent& content, bool keep_thumbnails = false);
  [[nodiscard]] const TimelineContent& content() const { return content_; }

  void setPlayhead(qint64 frame);  // clamped to [0, frame_count - 1]; no signal
  [[nodiscard]] qint64 playhead() const { return playhead_; }

  // Zoom, clamped to [0.5, 64]. Until the first call, short content is fitted to the width.
  void setPixelsPerFrame(double pixels);
  [[nodiscard]] double pixelsPerFrame() const { return pixels_per_frame_; }
  void zoomIn() { setPixelsPerFrame(pixels_per_frame_ * 1.5); }
  void zoomOut() { setPixelsPerFrame(pixels_per_frame_ / 1.5); }

  // Geometry, for tests and automation.
  [[nodiscard]] qint64 frameAt(int x) const;           // clamped to the content
  [[nodiscard]] int xForFrame(qint64 frame) const;     // left edge of the frame
  [[nodiscard]] qint64 boundaryNear(int x) const;      // block boundary within a few pixels, or -1

  [[nodiscard]] QSize sizeHint() const override;
  [[nodiscard]] QSize minimumSizeHint() const override;

 signals:
  void scrubbed(qint64 frame);                       // the user moved the playhead
  void branchFromBoundaryRequested(qint64 boundary); // block boundary index (0 = the start)
  void zoomChanged(double pixels_per_frame);

 protected:
  void paintEvent(QPaintEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void contextMenuEvent(QContextMenuEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;

 private:
  void scrubTo(int x);
  void ensureVisible(qint64 frame);
  void clampScroll();
  QPixmap thumbnail(qint64 frame, const QSize& size);

  std::function<QImage(qint64)> frame_source_;
  TimelineContent content_;
  qint64 playhead_ = 0;
  double pixels_per_frame_ = 8.0;
  int scroll_x_ = 0;  // content pixels scrolled off to the left
  QHash<qint64, QPixmap> thumbnails_;
  bool user_zoomed_ = false;  // until set, setContent() fits short content to the width
};

}  // namespace strand::ui
