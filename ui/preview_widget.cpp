#include "ui/preview_widget.h"

#include <QFontDatabase>
#include <QPaintEvent>
#include <QPainter>

#include "ui/formatting.h"

namespace strand::ui {

PreviewWidget::PreviewWidget(QWidget* parent) : QWidget(parent) {
  setAttribute(Qt::WA_OpaquePaintEvent);  // we fill every pixel: skip the background erase
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Expanding);
}

void PreviewWidget::setFrame(const QImage& image, qint64 frame_index) {
  if (image.isNull()) {
    clear();
    return;
  }
  image_ = image;
  frame_index_ = frame_index;
  ++frames_shown_;
  update();
}

void PreviewWidget::clear() {
  image_ = QImage();
  frame_index_ = -1;
  update();
}

void PreviewWidget::setFramesPerSecond(int fps) {
  fps_ = fps;
  update();
}

void PreviewWidget::setPlaceholderText(const QString& text) {
  placeholder_ = text;
  update();
}

QRect PreviewWidget::fitRect(const QSize& image, const QRect& area) {
  if (image.isEmpty() || area.isEmpty()) return {};
  const QSize fitted = image.scaled(area.size(), Qt::KeepAspectRatio);
  const QPoint top_left(area.x() + (area.width() - fitted.width()) / 2,
                        area.y() + (area.height() - fitted.height()) / 2);
  return {top_left, fitted};
}

QSize PreviewWidget::sizeHint() const {
  return {640, 360};
}
QSize PreviewWidget::minimumSizeHint() const {
  return {160, 90};
}

void PreviewWidget::paintEvent(QPaintEvent* event) {
  QPainter painter(this);
  painter.fillRect(event->rect(), Qt::black);

  if (image_.isNull()) {
    if (!placeholder_.isEmpty()) {
      painter.setPen(QColor(150, 150, 150));
      painter.drawText(rect(), Qt::AlignCenter | Qt::TextWordWrap, placeholder_);
    }
    return;
  }

  // Model frames are small (e.g. 128x72): bilinear filtering looks far better than nearest when
  // blown up to window size, and QPainter does it without an intermediate scaled copy.
  painter.setRenderHint(QPainter::SmoothPixmapTransform, true);
  painter.drawImage(fitRect(image_.size(), rect()), image_);

  // Overlay: frame number and time code in a translucent box, top-left.
  QFont font = QFontDatabase::systemFont(QFontDatabase::FixedFont);
  font.setPointSizeF(font.pointSizeF() * 0.95);
  painter.setFont(font);
  QString label = tr("frame %1").arg(frame_index_);
  if (fps_ > 0) label += QStringLiteral("   ") + timeCode(frame_index_, fps_);
  const QFontMetrics metrics(font);
  const int margin = 6;
  QRect box = metrics.boundingRect(label).adjusted(-margin, -margin / 2, margin, margin / 2);
  box.moveTopLeft(QPoint(8, 8));
  painter.fillRect(box, QColor(0, 0, 0, 150));
  painter.setPen(QColor(235, 235, 235));
  painter.drawText(box, Qt::AlignCenter, label);
}

}  // namespace strand::ui
