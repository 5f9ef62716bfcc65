#include "ui/timeline_widget.h"

#include <QContextMenuEvent>
#include <QMenu>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>

#include "ui/formatting.h"

namespace strand::ui {

namespace {

constexpr int kRulerHeight = 18;
constexpr int kThumbHeight = 48;
constexpr int kBandHeight = 22;
constexpr int kMarkerGrab = 5;  // pixels either side of a boundary that count as "on" it

// Stable colour per prompt text, so a prompt keeps its colour across branches.
QColor bandColor(const QString& label, bool inherited) {
  const QColor color = QColor::fromHsv(int(qHash(label) % 360), 110, inherited ? 110 : 170);
  return color;
}

}  // namespace

TimelineWidget::TimelineWidget(QWidget* parent) : QWidget(parent) {
  setFocusPolicy(Qt::StrongFocus);
  setMouseTracking(false);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  setToolTip(tr("Click or drag to scrub. Ctrl+wheel zooms. Right-click a block boundary to "
                "branch from it."));
}

void TimelineWidget::setFrameSource(std::function<QImage(qint64)> source) {
  frame_source_ = std::move(source);
  thumbnails_.clear();
  update();
}

void TimelineWidget::setContent(const TimelineContent& content, bool keep_thumbnails) {
  content_ = content;
  content_.frames_per_block = std::max(content_.frames_per_block, 1);
  if (!keep_thumbnails) thumbnails_.clear();
  if (!user_zoomed_ && content_.frame_count > 0 && width() > 40) {
    // Until the user zooms, short videos fill the strip (up to 24 px a frame); long ones scroll.
    const double fit = std::clamp(double(width() - 20) / double(content_.frame_count), 2.0, 24.0);
    if (std::abs(fit - pixels_per_frame_) > 0.01) {
      pixels_per_frame_ = fit;
      thumbnails_.clear();
    }
  }
  playhead_ = std::clamp<qint64>(playhead_, 0, std::max<qint64>(content_.frame_count - 1, 0));
  clampScroll();
  update();
}

void TimelineWidget::setPlayhead(qint64 frame) {
  const qint64 clamped = std::clamp<qint64>(frame, 0, std::max<qint64>(content_.frame_count - 1, 0));
  if (clamped == playhead_) return;
  playhead_ = clamped;
  ensureVisible(playhead_);
  update();
}

void TimelineWidget::setPixelsPerFrame(double pixels) {
  user_zoomed_ = true;
  const double clamped = std::clamp(pixels, 0.5, 64.0);
  if (clamped == pixels_per_frame_) return;
  // Keep the playhead where it is on screen while zooming.
  const int anchor = xForFrame(playhead_);
  pixels_per_frame_ = clamped;
  scroll_x_ = int(std::lround(double(playhead_) * pixels_per_frame_)) - anchor;
  clampScroll();
  thumbnails_.clear();
  update();
  emit zoomChanged(pixels_per_frame_);
}

qint64 TimelineWidget::frameAt(int x) const {
  const auto frame = qint64(std::floor((x + scroll_x_) / pixels_per_frame_));
  return std::clamp<qint64>(frame, 0, std::max<qint64>(content_.frame_count - 1, 0));
}

int TimelineWidget::xForFrame(qint64 frame) const {
  return int(std::lround(double(frame) * pixels_per_frame_)) - scroll_x_;
}

qint64 TimelineWidget::boundaryNear(int x) const {
  const double frame = (x + scroll_x_) / pixels_per_frame_;
  const qint64 boundary = std::llround(frame / content_.frames_per_block);
  const qint64 blocks = content_.frame_count / content_.frames_per_block;
  if (boundary < 0 || boundary > blocks) return -1;
  const int marker_x = xForFrame(boundary * content_.frames_per_block);
  return std::abs(marker_x - x) <= kMarkerGrab ? boundary : -1;
}

QSize TimelineWidget::sizeHint() const {
  return {600, kRulerHeight + kThumbHeight + kBandHeight + 6};
}

QSize TimelineWidget::minimumSizeHint() const {
  return {120, kRulerHeight + kThumbHeight + kBandHeight + 6};
}

void TimelineWidget::clampScroll() {
  const int content_width = int(std::lround(double(content_.frame_count) * pixels_per_frame_));
  scroll_x_ = std::clamp(scroll_x_, 0, std::max(content_width - width() + 20, 0));
}

void TimelineWidget::ensureVisible(qint64 frame) {
  const int x = xForFrame(frame);
  const int margin = std::min(40, width() / 4);
  if (x < margin) scroll_x_ += x - margin;
  if (x > width() - margin) scroll_x_ += x - (width() - margin);
  clampScroll();
}

QPixmap TimelineWidget::thumbnail(qint64 frame, const QSize& size) {
  const auto it = thumbnails_.constFind(frame);
  if (it != thumbnails_.constEnd() && it->size() == size) return *it;
  if (!frame_source_) return {};
  const QImage image = frame_source_(frame);
  if (image.isNull()) return {};
  QPixmap pixmap = QPixmap::fromImage(image.scaled(size, Qt::IgnoreAspectRatio, Qt::SmoothTransformation));
  thumbnails_.insert(frame, pixmap);
  return pixmap;
}

void TimelineWidget::paintEvent(QPaintEvent*) {
  QPainter painter(this);
  painter.fillRect(rect(), palette().color(QPalette::Base));
  const int thumbs_top = kRulerHeight;
  const int bands_top = thumbs_top + kThumbHeight;
  const int bottom = bands_top + kBandHeight;
  const int end_x = xForFrame(content_.frame_count);

  // Ruler: a tick per block, a time code every ~100 px.
  painter.setPen(palette().color(QPalette::Mid));
  painter.drawLine(0, kRulerHeight - 1, width(), kRulerHeight - 1);
  const int fps = std::max(content_.fps, 1);
  const qint64 label_step_frames = std::max<qint64>(fps, qint64(std::ceil(100.0 / pixels_per_frame_ / fps)) * fps);
  QFont small = font();
  small.setPointSizeF(std::max(7.0, small.pointSizeF() * 0.8));
  painter.setFont(small);
  const qint64 first_visible = std::max<qint64>(0, frameAt(0) - label_step_frames);
  for (qint64 f = first_visible - first_visible % label_step_frames; f <= content_.frame_count; f += label_step_frames) {
    const int x = xForFrame(f);
    if (x > width()) break;
    painter.setPen(palette().color(QPalette::Text));
    painter.drawText(x + 3, 12, timeCode(f, content_.fps).mid(3));
    painter.setPen(palette().color(QPalette::Mid));
    painter.drawLine(x, 4, x, kRulerHeight - 1);
  }

  // Thumbnails: one per slot, the slot's first frame, slot width from the frames' aspect ratio.
  painter.fillRect(QRect(0, thumbs_top, width(), kThumbHeight), QColor(20, 20, 20));
  if (content_.frame_count > 0 && frame_source_) {
    const QImage first = frame_source_(0);
    const double aspect = first.isNull() ? 16.0 / 9.0 : double(first.width()) / first.height();
    const int thumb_width = std::max(8, int(std::lround(kThumbHeight * aspect)));
    const qint64 slot_frames = std::max<qint64>(1, qint64(std::ceil(thumb_width / pixels_per_frame_)));
    const QSize size(int(std::lround(slot_frames * pixels_per_frame_)), kThumbHeight);
    qint64 frame = std::max<qint64>(0, frameAt(0) / slot_frames * slot_frames);
    for (; frame < content_.frame_count; frame += slot_frames) {
      const int x = xForFrame(frame);
      if (x > width()) break;
      const int w = std::min(size.width(), end_x - x);
      const QPixmap pixmap = thumbnail(frame, size);
      if (!pixmap.isNull()) painter.drawPixmap(QRect(x, thumbs_top, w, kThumbHeight), pixmap, QRect(0, 0, w, kThumbHeight));
    }
  }

  // Prompt segments.
  painter.setFont(font());
  for (const TimelineSegment& segment : content_.segments) {
    const int x0 = xForFrame(segment.first_frame);
    const int x1 = xForFrame(segment.last_frame + 1);
    if (x1 < 0 || x0 > width()) continue;
    const QRect band(x0, bands_top + 2, x1 - x0 - 1, kBandHeight - 4);
    painter.fillRect(band, bandColor(segment.label, segment.inherited));
    painter.setPen(segment.inherited ? QColor(200, 200, 200) : Qt::white);
    const QString text = painter.fontMetrics().elidedText(segment.label, Qt::ElideRight, std::max(band.width() - 8, 0));
    painter.drawText(band.adjusted(4, 0, -4, 0), Qt::AlignVCenter | Qt::AlignLeft, text);
  }

  // In/out range.
  if (content_.in_frame >= 0 || content_.out_frame >= 0) {
    const qint64 in = std::max<qint64>(content_.in_frame, 0);
    const qint64 out = content_.out_frame >= 0 ? content_.out_frame : content_.frame_count - 1;
    const QRect range(xForFrame(in), 0, xForFrame(out + 1) - xForFrame(in), bottom);
    painter.fillRect(range, QColor(80, 140, 255, 45));
    painter.setPen(QPen(QColor(110, 160, 255), 2));
    if (content_.in_frame >= 0) painter.drawLine(range.left(), 0, range.left(), bottom);
    if (content_.out_frame >= 0) painter.drawLine(range.right(), 0, range.right(), bottom);
  }

  // Block boundaries: every one has a stored memory snapshot.
  painter.setRenderHint(QPainter::Antialiasing);
  const qint64 blocks = content_.frame_count / content_.frames_per_block;
  if (pixels_per_frame_ * content_.frames_per_block >= 3) {
    for (qint64 k = 0; k <= blocks; ++k) {
      const int x = xForFrame(k * content_.frames_per_block);
      if (x < -6) continue;
      if (x > width() + 6) break;
      const bool fork = content_.fork_frame >= 0 && k * content_.frames_per_block == content_.fork_frame;
      painter.setPen(QPen(fork ? QColor(255, 200, 60) : QColor(255, 255, 255, 90), 1));
      painter.drawLine(x, thumbs_top, x, bottom);
      QPainterPath diamond;
      diamond.moveTo(x, kRulerHeight - 8);
      diamond.lineTo(x + 4, kRulerHeight - 4);
      diamond.lineTo(x, kRulerHeight);
      diamond.lineTo(x - 4, kRulerHeight - 4);
      diamond.closeSubpath();
      painter.fillPath(diamond, fork ? QColor(255, 200, 60) : QColor(120, 200, 255));
    }
  }

  // Playhead.
  if (content_.frame_count > 0) {
    const int x = xForFrame(playhead_) + int(pixels_per_frame_ / 2);
    painter.setPen(QPen(QColor(255, 70, 70), 2));
    painter.drawLine(x, 0, x, bottom);
  }
  if (hasFocus()) {
    painter.setPen(palette().color(QPalette::Highlight));
    painter.drawRect(rect().adjusted(0, 0, -1, -1));
  }
}

void TimelineWidget::scrubTo(int x) {
  if (content_.frame_count <= 0) return;
  const qint64 frame = frameAt(x);
  if (frame != playhead_) {
    playhead_ = frame;
    update();
  }
  emit scrubbed(frame);
}

void TimelineWidget::mousePressEvent(QMouseEvent* event) {
  if (event->button() == Qt::LeftButton) scrubTo(int(event->position().x()));
  QWidget::mousePressEvent(event);
}

void TimelineWidget::mouseMoveEvent(QMouseEvent* event) {
  if (event->buttons() & Qt::LeftButton) scrubTo(int(event->position().x()));
}

void TimelineWidget::wheelEvent(QWheelEvent* event) {
  const int delta = event->angleDelta().y() != 0 ? event->angleDelta().y() : event->angleDelta().x();
  if (event->modifiers() & Qt::ControlModifier) {
    if (delta > 0) zoomIn();
    if (delta < 0) zoomOut();
  } else {
    scroll_x_ -= delta / 2;
    clampScroll();
    update();
  }
  event->accept();
}

void TimelineWidget::contextMenuEvent(QContextMenuEvent* event) {
  const qint64 boundary = boundaryNear(event->pos().x());
  QMenu menu(this);
  QAction* branch = menu.addAction(boundary >= 0 ? tr("Branch from here (block boundary %1)").arg(boundary)
                                                 : tr("Branch from here"));
  branch->setEnabled(boundary >= 0);
  if (boundary < 0) branch->setToolTip(tr("Right-click on a block boundary marker"));
  QAction* zoom_in = menu.addAction(tr("Zoom in"));
  QAction* zoom_out = menu.addAction(tr("Zoom out"));
  QAction* chosen = menu.exec(event->globalPos());
  if (chosen == branch && boundary >= 0) emit branchFromBoundaryRequested(boundary);
  if (chosen == zoom_in) zoomIn();
  if (chosen == zoom_out) zoomOut();
}

void TimelineWidget::resizeEvent(QResizeEvent* event) {
  if (!user_zoomed_) setContent(content_, /*keep_thumbnails=*/true);  // refits; clears if the scale changed
  clampScroll();
  QWidget::resizeEvent(event);
}

}  // namespace strand::ui
