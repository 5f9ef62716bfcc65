// ExportQueueDock: the non-modal export queue. One row per job: name, progress bar, frames
// done/total, speed, "about N left", state, and Pause/Resume, Cancel, Reveal in folder. When a job
// ends it notifies: a system tray message where a tray exists, else the main window's status bar.
#pragma once
#include <QDockWidget>
#include <QString>
#include <functional>
#include <map>

#include "export_queue.h"

class QProgressBar;
class QPushButton;
class QSystemTrayIcon;
class QTreeWidget;
class QTreeWidgetItem;
class QToolButton;

namespace strand::desktop {

class ExportQueueDock : public QDockWidget {
  Q_OBJECT

 public:
  enum Column {
    name_column = 0,
    progress_column,
    frames_column,
    speed_column,
    left_column,
    state_column,
    actions_column,
    column_count
  };

  ExportQueueDock(ExportQueue* queue, QWidget* parent = nullptr);

  // "Reveal in folder" opens the folder with QDesktopServices; tests replace it.
  void setRevealHandler(std::function<void(const QString& folder)> handler) {
    reveal_ = std::move(handler);
  }

  // For tests.
  [[nodiscard]] QTreeWidget* jobList() const { return list_; }
  [[nodiscard]] QToolButton* pauseButton(int id) const;
  [[nodiscard]] QToolButton* cancelButton(int id) const;
  [[nodiscard]] QToolButton* revealButton(int id) const;
  [[nodiscard]] QString rowText(int id, Column column) const;
  [[nodiscard]] QString lastNotification() const { return last_notification_; }

 signals:
  void notified(const QString& message);

 private:
  struct Row {
    QTreeWidgetItem* item = nullptr;
    QProgressBar* progress = nullptr;
    QToolButton* pause = nullptr;
    QToolButton* cancel = nullptr;
    QToolButton* reveal = nullptr;
  };
  void addRow(int id);
  void updateRow(int id);
  void removeRow(int id);
  void notifyFinished(int id, ExportJobState state);

  ExportQueue* queue_;
  QTreeWidget* list_ = nullptr;
  QPushButton* clear_button_ = nullptr;
  std::map<int, Row> rows_;
  std::function<void(const QString&)> reveal_;
  QSystemTrayIcon* tray_ = nullptr;
  QString last_notification_;
};

}  // namespace strand::desktop
