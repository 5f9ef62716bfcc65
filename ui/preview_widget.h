// PreviewWidget: shows the latest video frame, scaled smoothly to fit while keeping its aspect
// ratio (letterboxed on a black surround), with the frame number and time code drawn on top.
// It only paints what it is given; pacing and dropping frames is the caller's business.
#pragma once
#include <QImage>
#include <QRect>
#include <QSize>
#include <QWidget>

namespace strand::ui {

class PreviewWidget : public QWidget {
  Q_OBJECT

 public:
  explicit PreviewWidget(QWidget* parent = nullptr);

  // Shows `image` as frame `frame_index` (0-based, of the whole video). A null image clears.
  void setFrame(const QImage& image, qint64 frame_index);
  void clear();
  // Frame rate used for the time code overlay; <= 0 hides the time code.
  void setFramesPerSecond(int fps);
  // Text shown when there is no frame (e.g. "No model loaded").
  void setPlaceholderText(const QString& text);

  [[nodiscard]] qint64 frameIndex() const { return frame_index_; }  // -1 when empty
  [[nodiscard]] const QImage& image() const { return image_; }
  [[nodiscard]] qint64 framesShown() const { return frames_shown_; }

  // The largest rectangle with `image`'s aspect ratio centred in `area` (empty for empty input).
  static QRect fitRect(const QSize& image, const QRect& area);

  [[nodiscard]] QSize sizeHint() const override;
  [[nodiscard]] QSize minimumSizeHint() const override;

 protected:
  void paintEvent(QPaintEvent* event) override;

 private:
  QImage image_;
  qint64 frame_index_ = -1;
  qint64 frames_shown_ = 0;
  int fps_ = 0;
  QString placeholder_;
};

}  // namespace strand::ui
