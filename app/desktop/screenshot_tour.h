// ScreenshotTour: drives a MainWindow through a short session (generate, change the prompt,
// branch, generate on the branch, scrub, export) and saves images of the window with QWidget::grab() into
// a folder, then quits. Used by tools/screenshots.sh (under Xvfb) to make the user guide's images;
// no external screen-capture tool needed.
#pragma once
#include <QObject>
#include <QString>
#include <functional>
#include <vector>

namespace strand::desktop {

class MainWindow;

class ScreenshotTour : public QObject {
  Q_OBJECT

 public:
  ScreenshotTour(MainWindow* window, QString output_dir);
  void start();

 private:
  void next();
  void waitFor(std::function<bool()> done, std::function<void()> then);
  bool idle() const;
  void save(QWidget* widget, const QString& name);
  [[nodiscard]] QString exportScratch() const;  // where the tour's export goes (removed after)

  MainWindow* window_;
  QString output_dir_;
  std::vector<std::function<void()>> steps_;
  size_t step_ = 0;
};

}  // namespace strand::desktop
