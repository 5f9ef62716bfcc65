#include "export_queue_dock.h"

#include <QApplication>
#include <QDesktopServices>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QMainWindow>
#include <QProgressBar>
#include <QPushButton>
#include <QStatusBar>
#include <QSystemTrayIcon>
#include <QToolButton>
#include <QTreeWidget>
#include <QUrl>
#include <QVBoxLayout>
#include <climits>

namespace strand::desktop {

ExportQueueDock::ExportQueueDock(ExportQueue* queue, QWidget* parent)
    : QDockWidget(tr("Exports"), parent), queue_(queue) {
  setObjectName(QStringLiteral("exports"));
  reveal_ = [](const QString& folder) { QDesktopServices::openUrl(QUrl::fromLocalFile(folder)); };

  auto* body = new QWidget(this);
  auto* layout = new QVBoxLayout(body);
  layout->setContentsMargins(2, 2, 2, 2);
  list_ = new QTreeWidget(body);
  list_->setColumnCount(column_count);
  list_->setHeaderLabels({tr("Export"), tr("Progress"), tr("Frames"), tr("Speed"), tr("Left"),
                          tr("State"), QString()});
  list_->setRootIsDecorated(false);
  list_->setSelectionMode(QAbstractItemView::NoSelection);
  list_->header()->setStretchLastSection(false);
  list_->header()->setSectionResizeMode(name_column, QHeaderView::Stretch);
  for (int column = progress_column; column < column_count; ++column) {
    list_->header()->setSectionResizeMode(column, QHeaderView::ResizeToContents);
  }
  layout->addWidget(list_, 1);
  auto* buttons = new QHBoxLayout();
  buttons->addStretch(1);
  clear_button_ = new QPushButton(tr("Clear finished"), body);
  clear_button_->setToolTip(tr("Remove finished exports from the list (their files stay)"));
  buttons->addWidget(clear_button_);
  layout->addLayout(buttons);
  setWidget(body);

  connect(clear_button_, &QPushButton::clicked, queue_, &ExportQueue::removeFinished);
  connect(queue_, &ExportQueue::jobAdded, this, &ExportQueueDock::addRow);
  connect(queue_, &ExportQueue::jobChanged, this, &ExportQueueDock::updateRow);
  connect(queue_, &ExportQueue::jobRemoved, this, &ExportQueueDock::removeRow);
  connect(queue_, &ExportQueue::jobFinished, this, &ExportQueueDock::notifyFinished);
  for (int id : queue_->jobIds()) addRow(id);
}

QToolButton* ExportQueueDock::pauseButton(int id) const {
  const auto it = rows_.find(id);
  return it == rows_.end() ? nullptr : it->second.pause;
}

QToolButton* ExportQueueDock::cancelButton(int id) const {
  const auto it = rows_.find(id);
  return it == rows_.end() ? nullptr : it->second.cancel;
}

QToolButton* ExportQueueDock::revealButton(int id) const {
  const auto it = rows_.find(id);
  return it == rows_.end() ? nullptr : it->second.reveal;
}

QString ExportQueueDock::rowText(int id, Column column) const {
  const auto it = rows_.find(id);
  return it == rows_.end() ? QString() : it->second.item->text(column);
}

void ExportQueueDock::addRow(int id) {
  const ExportJobStatus* status = queue_->job(id);
  if (status == nullptr || rows_.count(id)) return;
  Row row;
  row.item = new QTreeWidgetItem(list_);
  row.item->setText(name_column, status->name);
  QStringList files = status->outputs;
  if (!status->timeline_path.isEmpty()) files << status->timeline_path;
  row.item->setToolTip(name_column, files.join(u'\n'));
  row.progress = new QProgressBar(list_);
  row.progress->setMaximumHeight(14);
  row.progress->setMinimumWidth(90);
  row.progress->setTextVisible(false);
  list_->setItemWidget(row.item, progress_column, row.progress);

  auto* actions = new QWidget(list_);
  auto* actions_layout = new QHBoxLayout(actions);
  actions_layout->setContentsMargins(0, 0, 0, 0);
  actions_layout->setSpacing(2);
  const auto make_button = [actions, actions_layout](const QString& text, const QString& tip) {
    auto* button = new QToolButton(actions);
    button->setText(text);
    button->setToolTip(tip);
    button->setAutoRaise(true);
    actions_layout->addWidget(button);
    return button;
  };
  row.pause = make_button(tr("Pause"), tr("Pause or resume this export"));
  row.cancel = make_button(tr("Cancel"), tr("Stop this export and remove what it wrote"));
  row.reveal = make_button(tr("Reveal"), tr("Show the export's folder"));
  list_->setItemWidget(row.item, actions_column, actions);

  connect(row.pause, &QToolButton::clicked, this, [this, id] {
    const ExportJobStatus* s = queue_->job(id);
    if (s == nullptr) return;
    if (s->state == ExportJobState::paused) {
      queue_->resume(id);
    } else {
      queue_->pause(id);
    }
  });
  connect(row.cancel, &QToolButton::clicked, this, [this, id] { queue_->cancel(id); });
  connect(row.reveal, &QToolButton::clicked, this, [this, id] {
    const ExportJobStatus* s = queue_->job(id);
    if (s != nullptr && reveal_) reveal_(s->folder);
  });
  rows_[id] = row;
  updateRow(id);
}

void ExportQueueDock::updateRow(int id) {
  const auto it = rows_.find(id);
  const ExportJobStatus* s = queue_->job(id);
  if (it == rows_.end() || s == nullptr) return;
  const Row& row = it->second;
  row.progress->setRange(0, int(std::min<qint64>(std::max<qint64>(s->frames_total, 1), INT_MAX)));
  row.progress->setValue(int(std::min<qint64>(s->frames_done, INT_MAX)));
  row.item->setText(frames_column, tr("%1 / %2").arg(s->frames_done).arg(s->frames_total));
  const bool active = s->state == ExportJobState::running && !s->cancel_requested;
  row.item->setText(speed_column, active && s->frames_per_second > 0
                                      ? tr("%1 fps").arg(s->frames_per_second, 0, 'f', 1)
                                      : QString());
  row.item->setText(left_column, active ? aboutLeftText(s->seconds_left) : QString());
  QString state = exportJobStateText(s->state);
  if (s->cancel_requested && !isFinished(s->state)) state = tr("Cancelling…");
  row.item->setText(state_column, state);
  row.item->setToolTip(state_column, s->error);
  if (s->state == ExportJobState::failed)
    row.item->setText(state_column, tr("Failed: %1").arg(s->error));

  row.pause->setText(s->state == ExportJobState::paused ? tr("Resume") : tr("Pause"));
  row.pause->setEnabled(!isFinished(s->state) && !s->cancel_requested);
  row.cancel->setEnabled(!isFinished(s->state) && !s->cancel_requested);
  row.reveal->setEnabled(QFileInfo(s->folder).isDir());
}

void ExportQueueDock::removeRow(int id) {
  const auto it = rows_.find(id);
  if (it == rows_.end()) return;
  delete it->second.item;  // also deletes its item widgets
  rows_.erase(it);
}

void ExportQueueDock::notifyFinished(int id, ExportJobState state) {
  const ExportJobStatus* s = queue_->job(id);
  if (s == nullptr || state == ExportJobState::cancelled) return;  // the user knows
  const QString message =
      state == ExportJobState::done
          ? tr("Export finished: %1 (%2)").arg(s->name, QFileInfo(s->outputs.front()).fileName())
          : tr("Export failed: %1: %2").arg(s->name, s->error);
  last_notification_ = message;
  if (QSystemTrayIcon::isSystemTrayAvailable()) {
    if (tray_ == nullptr) {
      tray_ = new QSystemTrayIcon(QApplication::windowIcon(), this);
      tray_->setToolTip(tr("Strand exports"));
    }
    tray_->show();
    tray_->showMessage(
        tr("Strand"), message,
        state == ExportJobState::done ? QSystemTrayIcon::Information : QSystemTrayIcon::Warning);
  } else if (auto* window = qobject_cast<QMainWindow*>(parentWidget())) {
    window->statusBar()->showMessage(message, 15000);
  }
  emit notified(message);
}

}  // namespace strand::desktop
