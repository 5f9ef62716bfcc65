#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QKeySequence>
#include <QLabel>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QShortcut>
#include <QSpinBox>
#include <QStandardPaths>
#include <QStatusBar>
#include <QToolButton>
#include <QTreeWidget>
#include <QUndoStack>
#include <QVBoxLayout>
#include <algorithm>

#ifdef __linux__
#include <unistd.h>
#endif

#include "export_dialog.h"
#include "export_queue.h"
#include "export_queue_dock.h"
#include "settings_dialog.h"
#include "strand/devices.h"
#include "strand/model.h"
#include "strand/tokenizer.h"
#include "ui/formatting.h"
#include "ui/preview_widget.h"
#include "ui/prompt_edit.h"
#include "ui/timeline_widget.h"

namespace strand::desktop {

namespace {

constexpr int kRecentLimit = 8;
const QString kRecentKey = QStringLiteral("recentProjects");

QString stateText(EngineState state) {
  switch (state) {
    case EngineState::no_model:
      return MainWindow::tr("No model");
    case EngineState::loading:
      return MainWindow::tr("Loading model…");
    case EngineState::ready:
      return MainWindow::tr("Ready");
    case EngineState::generating:
      return MainWindow::tr("Generating");
    case EngineState::failed:
      return MainWindow::tr("Engine stopped (GPU error)");
  }
  return {};
}

// Resident set size of this process (Linux /proc/self/statm), or -1.
qint64 residentBytes() {
#ifdef __linux__
  QFile statm(QStringLiteral("/proc/self/statm"));
  if (!statm.open(QIODevice::ReadOnly)) return -1;
  const QList<QByteArray> fields = statm.readAll().split(' ');
  if (fields.size() < 2) return -1;
  return fields[1].toLongLong() * sysconf(_SC_PAGESIZE);
#else
  return -1;
#endif
}

}  // namespace

MainWindow::MainWindow(Options options, QWidget* parent)
    : QMainWindow(parent),
      options_(std::move(options)),
      engine_(std::make_unique<EngineWorker>(options_.engine)),
      project_(new ProjectModel(this)) {
  setWindowTitle(tr("Strand"));
  project_->reset(nullptr, 1, options_.seed, options_.initial_prompt);
  buildUi();
  buildMenus();
  buildShortcuts();
  connectEngine();
  connectProject();

  live_timer_.setTimerType(Qt::PreciseTimer);
  connect(&live_timer_, &QTimer::timeout, this, &MainWindow::showNextFrame);
  play_timer_.setTimerType(Qt::PreciseTimer);
  connect(&play_timer_, &QTimer::timeout, this, &MainWindow::playTick);
  connect(&autosave_timer_, &QTimer::timeout, this, [this] {
    if (engine_state_ == EngineState::generating) {
      autosave_pending_ = true;  // deferred, not skipped: runs when generation stops
    } else {
      autosaveNow();
    }
  });
  if (options_.autosave_interval_ms > 0) autosave_timer_.start(options_.autosave_interval_ms);
  connect(&ram_timer_, &QTimer::timeout, this, &MainWindow::updateRam);
  ram_timer_.start(1000);
  updateRam();

  if (options_.model_path.isEmpty()) {
    showError(tr("No model given. Start with --model PATH to a Strand .safetensors file."));
  } else {
    preview_->setPlaceholderText(tr("Loading %1…").arg(QFileInfo(options_.model_path).fileName()));
    engine_->loadModel(options_.model_path, options_.seed);
    if (!options_.project_folder.isEmpty()) {
      pending_open_folder_ = options_.project_folder;
      pending_open_autosave_ = false;
    }
  }
  refreshBranchTree();
  refreshTimeline(false);
  updateControls();
  updateTitle();
}

MainWindow::~MainWindow() {
  // Stop the engine thread before the widgets its queued events would touch go away.
  engine_.reset();
  // The project would otherwise die among QWidget's children, after this class's members, and
  // its undo stack's last indexChanged would reach a half-destroyed window.
  QObject::disconnect(project_, nullptr, this, nullptr);
  QObject::disconnect(project_->undoStack(), nullptr, this, nullptr);
  delete project_;
  project_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// UI construction

void MainWindow::buildUi() {
  auto* central = new QWidget(this);
  auto* layout = new QVBoxLayout(central);

  preview_ = new ui::PreviewWidget(central);
  preview_->setPlaceholderText(tr("No model loaded"));
  layout->addWidget(preview_, 1);

  error_label_ = new QLabel(central);
  error_label_->setWordWrap(true);
  error_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  error_label_->setStyleSheet(QStringLiteral(
      "QLabel { background: #5a1d1d; color: #ffdede; border-radius: 3px; padding: 6px; }"));
  error_label_->hide();
  layout->addWidget(error_label_);

  auto* prompt_row = new QHBoxLayout();
  prompt_row->addWidget(new QLabel(tr("Prompt:"), central));
  prompt_edit_ = new ui::PromptEdit(central);
  prompt_edit_->setText(options_.initial_prompt);
  prompt_edit_->setMaximumHeight(prompt_edit_->sizeHint().height());
  prompt_edit_->setToolTip(tr("Words the model knows are green; unknown words are underlined. "
                              "Enter applies, Up/Down walk the history."));
  prompt_row->addWidget(prompt_edit_, 1);
  history_button_ = new QToolButton(central);
  history_button_->setText(tr("History"));
  history_button_->setPopupMode(QToolButton::InstantPopup);
  history_button_->setMenu(new QMenu(history_button_));
  connect(history_button_->menu(), &QMenu::aboutToShow, this, [this] {
    QMenu* menu = history_button_->menu();
    menu->clear();
    for (const QString& prompt : project_->promptHistory()) {
      menu->addAction(QFontMetrics(menu->font()).elidedText(prompt, Qt::ElideRight, 400), this,
                      [this, prompt] { prompt_edit_->setText(prompt); });
    }
    if (menu->isEmpty()) menu->addAction(tr("(no prompts yet)"))->setEnabled(false);
  });
  prompt_row->addWidget(history_button_);
  prompt_row->addWidget(new QLabel(tr("Re-cache:"), central));
  recache_spin_ = new QSpinBox(central);
  recache_spin_->setRange(0, 8);
  recache_spin_->setToolTip(
      tr("Replay this many past blocks under the new prompt, so the video's memory agrees "
         "with it (0: switch at the next block). Applies to the running engine only."));
  prompt_row->addWidget(recache_spin_);
  apply_button_ = new QPushButton(tr("Apply"), central);
  apply_button_->setToolTip(tr("Apply the prompt from the next block on (Ctrl+Enter)"));
  prompt_row->addWidget(apply_button_);
  layout->addLayout(prompt_row);

  auto* transport_row = new QHBoxLayout();
  generate_button_ = new QPushButton(tr("Generate"), central);
  pause_button_ = new QPushButton(tr("Pause"), central);
  pause_button_->setToolTip(tr("Finish the current block, then stop"));
  stop_button_ = new QPushButton(tr("Stop"), central);
  stop_button_->setToolTip(tr("Abort the current block now"));
  blocks_spin_ = new QSpinBox(central);
  blocks_spin_->setRange(0, 100000);
  blocks_spin_->setSpecialValueText(tr("until stopped"));
  blocks_spin_->setPrefix(tr("blocks: "));
  blocks_spin_->setToolTip(tr("How many blocks Generate makes (0: until stopped)"));
  block_progress_ = new QProgressBar(central);
  block_progress_->setTextVisible(false);
  block_progress_->setMaximumHeight(10);
  block_progress_->setRange(0, 1);
  block_progress_->setValue(0);
  transport_row->addWidget(generate_button_);
  transport_row->addWidget(pause_button_);
  transport_row->addWidget(stop_button_);
  transport_row->addWidget(blocks_spin_);
  transport_row->addWidget(block_progress_, 1);
  layout->addLayout(transport_row);

  timeline_ = new ui::TimelineWidget(central);
  timeline_->setFrameSource([this](qint64 frame) { return project_->frame(project_->activeBranch(), frame); });
  layout->addWidget(timeline_);
  setCentralWidget(central);

  // Branch tree.
  auto* dock = new QDockWidget(tr("Branches"), this);
  dock->setObjectName(QStringLiteral("branches"));
  dock->setFeatures(QDockWidget::DockWidgetMovable);
  branch_tree_ = new QTreeWidget(dock);
  branch_tree_->setColumnCount(3);
  branch_tree_->setHeaderLabels({tr("Branch"), tr("Blocks"), tr("From")});
  branch_tree_->header()->setStretchLastSection(false);
  branch_tree_->header()->setSectionResizeMode(0, QHeaderView::Stretch);
  branch_tree_->header()->setSectionResizeMode(1, QHeaderView::ResizeToContents);
  branch_tree_->header()->setSectionResizeMode(2, QHeaderView::ResizeToContents);
  branch_tree_->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed);
  branch_tree_->setContextMenuPolicy(Qt::CustomContextMenu);
  dock->setWidget(branch_tree_);
  addDockWidget(Qt::RightDockWidgetArea, dock);

  // Export queue: hidden until the first export (View > Exports shows it).
  export_queue_ = new ExportQueue({}, this);
  export_dock_ = new ExportQueueDock(export_queue_, this);
  addDockWidget(Qt::BottomDockWidgetArea, export_dock_);
  export_dock_->hide();
  connect(branch_tree_, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
    if (rebuilding_tree_ || item == nullptr) return;
    project_->setActiveBranch(item->data(0, Qt::UserRole).toInt());
  });
  connect(branch_tree_, &QTreeWidget::itemChanged, this, [this](QTreeWidgetItem* item, int column) {
    if (rebuilding_tree_ || column != 0) return;
    const int id = item->data(0, Qt::UserRole).toInt();
    if (!project_->requestRenameBranch(id, item->text(0))) refreshBranchTree();  // refused: revert
  });
  connect(branch_tree_, &QTreeWidget::customContextMenuRequested, this, [this](const QPoint& pos) {
    QTreeWidgetItem* item = branch_tree_->itemAt(pos);
    if (item == nullptr) return;
    const int id = item->data(0, Qt::UserRole).toInt();
    QMenu menu(this);
    menu.addAction(tr("Switch to"), this, [this, id] { project_->setActiveBranch(id); });
    menu.addAction(tr("Rename"), this, [this, item] { branch_tree_->editItem(item, 0); });
    QAction* remove = menu.addAction(tr("Delete (with sub-branches)"), this, [this, id] { deleteBranch(id); });
    remove->setEnabled(id != ProjectModel::kRootId);
    menu.exec(branch_tree_->viewport()->mapToGlobal(pos));
  });
  auto* delete_action = new QAction(tr("Delete branch"), branch_tree_);
  delete_action->setShortcut(QKeySequence::Delete);
  delete_action->setShortcutContext(Qt::WidgetWithChildrenShortcut);
  branch_tree_->addAction(delete_action);
  connect(delete_action, &QAction::triggered, this, [this] {
    if (QTreeWidgetItem* item = branch_tree_->currentItem()) deleteBranch(item->data(0, Qt::UserRole).toInt());
  });

  connect(apply_button_, &QPushButton::clicked, this, &MainWindow::applyPrompt);
  connect(prompt_edit_, &ui::PromptEdit::applyRequested, this, &MainWindow::applyPrompt);
  connect(generate_button_, &QPushButton::clicked, this, &MainWindow::startGeneration);
  connect(pause_button_, &QPushButton::clicked, this, &MainWindow::pauseGeneration);
  connect(stop_button_, &QPushButton::clicked, this, &MainWindow::stopGeneration);
  connect(timeline_, &ui::TimelineWidget::scrubbed, this, &MainWindow::seek);
  connect(timeline_, &ui::TimelineWidget::branchFromBoundaryRequested, this,
          &MainWindow::branchFromBoundary);

  state_label_ = new QLabel(this);
  fps_label_ = new QLabel(this);
  block_label_ = new QLabel(this);
  memory_label_ = new QLabel(this);
  ram_label_ = new QLabel(this);
  fps_label_->setToolTip(tr("Generation speed (frames per second of engine time)"));
  block_label_->setToolTip(tr("Engine time of the last block"));
  memory_label_->setToolTip(tr("Size of the video's memory state (what a snapshot holds)"));
  ram_label_->setToolTip(tr("Memory used by Strand (resident set)"));
  device_label_ = new QLabel(this);
  device_label_->setToolTip(tr("Where the engine computes (Settings > Device); on a GPU, its memory in use"));
  statusBar()->addWidget(state_label_, 1);
  statusBar()->addPermanentWidget(fps_label_);
  statusBar()->addPermanentWidget(block_label_);
  statusBar()->addPermanentWidget(memory_label_);
  statusBar()->addPermanentWidget(ram_label_);
  statusBar()->addPermanentWidget(device_label_);
  state_label_->setText(stateText(engine_state_));
}

void MainWindow::buildMenus() {
  QMenu* file_menu = menuBar()->addMenu(tr("&File"));
  file_menu->addAction(tr("&New Project"), QKeySequence::New, this, &MainWindow::newProject);
  file_menu->addAction(tr("&Open Project…"), QKeySequence::Open, this, [this] {
    const QString folder = QFileDialog::getExistingDirectory(this, tr("Open Strand project folder"), project_folder_);
    if (!folder.isEmpty()) openProject(folder);
  });
  recent_menu_ = file_menu->addMenu(tr("Open &Recent"));
  rebuildRecentMenu();
  file_menu->addAction(tr("&Save"), QKeySequence::Save, this, [this] { saveProject(); });
  file_menu->addAction(tr("Save &As…"), QKeySequence::SaveAs, this, [this] {
    const QString folder = QFileDialog::getSaveFileName(this, tr("Save project as folder"), project_folder_);
    if (!folder.isEmpty()) saveProjectTo(folder);
  });
  file_menu->addSeparator();
  QAction* export_action = file_menu->addAction(tr("&Export…"), QKeySequence(Qt::CTRL | Qt::Key_E), this,
                                                &MainWindow::showExportDialog);
  export_action->setObjectName(QStringLiteral("exportAction"));
  file_menu->addSeparator();
  QAction* quit = file_menu->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);

  QMenu* edit_menu = menuBar()->addMenu(tr("&Edit"));
  QAction* undo = project_->undoStack()->createUndoAction(this, tr("&Undo"));
  undo->setShortcut(QKeySequence::Undo);
  QAction* redo = project_->undoStack()->createRedoAction(this, tr("&Redo"));
  redo->setShortcut(QKeySequence::Redo);
  edit_menu->addAction(undo);
  edit_menu->addAction(redo);
  edit_menu->addSeparator();
  edit_menu->addAction(tr("&Settings…"), this, &MainWindow::showSettings);

  QMenu* view_menu = menuBar()->addMenu(tr("&View"));
  view_menu->addAction(tr("Zoom &In Timeline"), QKeySequence(Qt::CTRL | Qt::Key_Equal), timeline_, &ui::TimelineWidget::zoomIn);
  view_menu->addAction(tr("Zoom &Out Timeline"), QKeySequence(Qt::CTRL | Qt::Key_Minus), timeline_, &ui::TimelineWidget::zoomOut);
  view_menu->addSeparator();
  QAction* exports_toggle = export_dock_->toggleViewAction();
  exports_toggle->setText(tr("&Exports"));
  exports_toggle->setObjectName(QStringLiteral("exportsDockAction"));
  view_menu->addAction(exports_toggle);

  QMenu* help_menu = menuBar()->addMenu(tr("&Help"));
  help_menu->addAction(tr("&About Strand"), this, &MainWindow::showAbout);
}

void MainWindow::buildShortcuts() {
  for (const QKeySequence& keys :
       {QKeySequence(Qt::CTRL | Qt::Key_Return), QKeySequence(Qt::CTRL | Qt::Key_Enter)}) {
    auto* shortcut = new QShortcut(keys, this);
    connect(shortcut, &QShortcut::activated, this, &MainWindow::applyPrompt);
  }
  // Transport keys are window shortcuts. A focused text box takes them first: line and text edits
  // accept the ShortcutOverride for printable and cursor keys, so typing never moves the playhead.
  const std::pair<int, Qt::KeyboardModifiers> keys[] = {
      {Qt::Key_Space, Qt::NoModifier}, {Qt::Key_J, Qt::NoModifier},    {Qt::Key_K, Qt::NoModifier},
      {Qt::Key_L, Qt::NoModifier},     {Qt::Key_Left, Qt::NoModifier}, {Qt::Key_Right, Qt::NoModifier},
      {Qt::Key_Left, Qt::ShiftModifier}, {Qt::Key_Right, Qt::ShiftModifier},
      {Qt::Key_Home, Qt::NoModifier},  {Qt::Key_End, Qt::NoModifier},  {Qt::Key_I, Qt::NoModifier},
      {Qt::Key_O, Qt::NoModifier}};
  for (const auto& [key, modifiers] : keys) {
    auto* shortcut = new QShortcut(QKeySequence(int(modifiers) | key), this);
    shortcut->setAutoRepeat(true);
    connect(shortcut, &QShortcut::activated, this, [this, key = key, modifiers = modifiers] {
      transportKey(key, modifiers);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring

void MainWindow::connectEngine() {
  EngineWorker* engine = engine_.get();
  connect(engine, &EngineWorker::modelLoaded, this, &MainWindow::onModelLoaded);
  connect(engine, &EngineWorker::blockCommitted, this, &MainWindow::onBlockCommitted);
  connect(engine, &EngineWorker::frameReady, this,
          [this](const QImage& image, qint64 index, quint64) { onFrameReady(image, index); });
  connect(engine, &EngineWorker::blockDone, this, &MainWindow::onBlockDone);
  connect(engine, &EngineWorker::error, this, &MainWindow::onEngineError);
  connect(engine, &EngineWorker::stateChanged, this, &MainWindow::onStateChanged);
  connect(engine, &EngineWorker::progress, this, [this](int step, int steps) {
    block_progress_->setRange(0, std::max(steps, 1));
    block_progress_->setValue(step);
  });
  connect(engine, &EngineWorker::promptApplied, this, [this](const QString& prompt, quint64) {
    statusBar()->showMessage(tr("Prompt applied: %1").arg(prompt), 4000);
  });
  connect(engine, &EngineWorker::snapshotReady, this, [this](const SnapshotPtr& state, quint64 epoch) {
    if (epoch != recache_epoch_ || !state) return;
    recache_epoch_ = 0;
    const int id = branchForEpoch(epoch);
    const Branch* b = project_->branch(id);
    // Only the state the prompt change produced: the engine kept its old prompt if it refused it.
    if (b != nullptr && QString::fromStdString(state->prompt) == b->prompt) {
      project_->setRecachedEnd(id, state);
    }
  });
  connect(engine, &EngineWorker::latentsDecoded, this, &MainWindow::onLatentsDecoded);
  connect(engine, &EngineWorker::latentsDecodeFailed, this,
          [this](const QString& key, const QString& reason) {
            frames_to_regenerate_.remove(key);
            showError(tr("Could not rebuild the frames of a damaged block: %1").arg(reason));
          });
  connect(engine, &EngineWorker::promptRejected, this, [this](const QString&, const QString&) {
    engine_branch_ = -1;  // the engine kept its previous prompt: resync before generating
  });
  engine_device_ = engine->device();
  connect(engine, &EngineWorker::deviceFailed, this, &MainWindow::onDeviceFailed);
  connect(engine, &EngineWorker::deviceChanged, this, [this](const EngineDevice& device) {
    // A failed engine comes back at its last good boundary, which may not be where this window
    // last sent it (its commands were refused meanwhile): resync before generating.
    if (engine_state_ == EngineState::failed) engine_branch_ = -1;
    engine_device_ = device;
    updateDeviceLabel();
  });
}

void MainWindow::connectProject() {
  connect(project_, &ProjectModel::branchesChanged, this, [this] {
    if (engine_branch_ >= 0 && project_->branch(engine_branch_) == nullptr) {
      // The branch the engine was extending is gone (deleted, or its creation undone).
      if (engine_state_ == EngineState::generating) engine_->cancel();
      engine_branch_ = -1;
    }
    refreshBranchTree();
    updateTitle();
  });
  connect(project_, &ProjectModel::branchContentChanged, this, &MainWindow::onBranchContentChanged);
  connect(project_, &ProjectModel::activeBranchChanged, this, &MainWindow::onActiveBranchChanged);
  connect(project_->undoStack(), &QUndoStack::indexChanged, this, [this] { updateTitle(); });
}

// ---------------------------------------------------------------------------------------------
// Engine events

void MainWindow::onModelLoaded(const ModelInfo& info) {
  model_info_ = info;
  model_loaded_ = true;
  preview_->setFramesPerSecond(info.fps);
  preview_->clear();
  preview_->setPlaceholderText(tr("%1 loaded. Enter a prompt and press Generate.").arg(info.name));
  playback_capacity_ = static_cast<size_t>(std::max(2 * info.frames_per_block, 4));
  live_timer_.setInterval(info.fps > 0 ? 1000 / info.fps : 83);
  prompt_edit_->setWordClassifier([this](const QString& text) { return classifyWords(text); });
  engine_branch_ = -1;
  epoch_branch_.clear();
  statusBar()->showMessage(tr("Loaded %1").arg(info.path), 4000);

  if (!pending_open_folder_.isEmpty()) {
    const QString folder = std::exchange(pending_open_folder_, {});
    if (finishOpen(folder, pending_open_autosave_)) {
      updateControls();
      return;
    }
  }
  // A new model starts a new video: the project starts over with this model's initial memory.
  const QString prompt = prompt_edit_->text().trimmed();
  project_->reset(info.initial_state, info.frames_per_block, options_.seed, prompt);
  // A fresh session is exactly at the root's end (boundary 0, this seed, no prompt yet).
  engine_branch_ = ProjectModel::kRootId;
  engine_seed_ = options_.seed;
  epoch_branch_[engine_->epoch()] = ProjectModel::kRootId;
  applied_prompt_.clear();
  project_meta_ = ProjectMeta{};
  project_meta_.model_path = info.path;
  project_meta_.model_id = info.id;
  project_folder_.clear();
  saved_content_revision_ = project_->contentRevision();
  project_->undoStack()->setClean();
  updateControls();
  updateTitle();
  if (!untitled_autosave_checked_) {
    untitled_autosave_checked_ = true;  // once per run, at the first model load
    offerUntitledAutosave();
  }
}

QString MainWindow::untitledAutosaveFolder() {
  return QStandardPaths::writableLocation(QStandardPaths::AppLocalDataLocation) +
         QStringLiteral("/autosave/untitled");
}

void MainWindow::offerUntitledAutosave() {
  // An untitled project has no folder of its own to reopen, so its autosave is offered here, at
  // start-up: Strand stopped (or was closed without saving) while it held unsaved work.
  const QString folder = untitledAutosaveFolder();
  const QString file = QDir(folder).filePath(QLatin1String(kAutosaveFile));
  if (!QFileInfo::exists(file)) return;
  const bool accept = options_.offer_autosave
                          ? options_.offer_autosave(folder)
                          : QMessageBox::question(this, tr("Recover unsaved work"),
                                                  tr("Strand found an autosave of an untitled "
                                                     "project from an earlier session. Open it?")) ==
                                QMessageBox::Yes;
  if (!accept) {
    // Declined: set aside (one copy kept) so that it is not offered at every start.
    const QString aside = file + QStringLiteral(".declined");
    QFile::remove(aside);
    QFile::rename(file, aside);
    return;
  }
  if (finishOpen(folder, /*from_autosave=*/true, /*untitled=*/true)) {
    statusBar()->showMessage(tr("Recovered the untitled project's autosave: use Save As to keep it"), 8000);
  }
}

int MainWindow::branchForEpoch(quint64 epoch) const {
  // The last edit at or before `epoch` says which branch the engine was extending.
  auto it = epoch_branch_.upper_bound(epoch);
  if (it == epoch_branch_.begin()) return -1;
  return std::prev(it)->second;
}

void MainWindow::onBlockCommitted(const CommittedBlock& committed) {
  const int id = branchForEpoch(committed.epoch);
  BlockRecord record;
  record.index = committed.block_index;
  record.prompt = committed.prompt;
  record.seed = committed.seed;
  record.frames = committed.frames;
  record.latents = committed.latents;
  record.state_after = committed.state_after;
  if (id < 0 || !project_->appendBlock(id, std::move(record))) {
    // The engine made a block the project cannot place (its branch is gone, or the engine is not
    // where we thought). Stop and resync on the next Generate: never record a wrong block.
    if (engine_state_ == EngineState::generating) engine_->cancel();
    engine_branch_ = -1;
    return;
  }
  autosave_pending_ = true;
}

void MainWindow::onFrameReady(const QImage& image, qint64 frame_index) {
  // Live preview only for the branch on screen, and only while following the live edge.
  if (engine_branch_ != project_->activeBranch() || !follow_live_ || play_speed_ != 0) return;
  if (playback_queue_.size() >= playback_capacity_) playback_queue_.pop_front();
  playback_queue_.push_back({image, frame_index});
  if (!live_timer_.isActive()) {
    showNextFrame();  // show at once after a pause; the timer paces the rest
    live_timer_.start();
  }
}

void MainWindow::showNextFrame() {
  if (playback_queue_.empty()) {
    live_timer_.stop();
    return;
  }
  QueuedFrame frame = std::move(playback_queue_.front());
  playback_queue_.pop_front();
  preview_->setFrame(frame.image, frame.index);
  timeline_->setPlayhead(frame.index);
}

void MainWindow::onBlockDone(const BlockStats& stats) {
  if (stats.total_ms > 0) {
    const double fps = stats.frame_count * 1000.0 / stats.total_ms;
    fps_label_->setText(tr("%1 fps").arg(fps, 0, 'f', 1));
  }
  block_label_->setText(tr("block %1: %2 ms").arg(stats.block_index).arg(stats.total_ms, 0, 'f', 0));
  memory_label_->setText(tr("memory %1").arg(ui::formatBytes(stats.state_bytes)));
  block_progress_->setValue(0);
}

void MainWindow::onEngineError(const QString& message) {
  if (!pending_open_folder_.isEmpty() && engine_state_ != EngineState::generating) {
    pending_open_folder_.clear();  // the project's model failed to load
  }
  showError(message);
}

void MainWindow::onDeviceFailed(const DeviceFailure& failure) {
  last_device_failure_ = failure;
  block_progress_->setValue(0);
  const bool lost = failure.kind == DeviceFailureKind::device_lost;
  QString text;
  if (lost) {
    // The project never held the unfinished block and the engine's memory is gone with the GPU:
    // write what the project has to disk now, in case the process does not last.
    autosaveNow();
    engine_branch_ = -1;
    text = tr("%1 reported an error it cannot recover from:\n%2\n\nThe engine is stopped. Your "
              "project and its snapshots are safe (autosaved); the unfinished block was dropped.\n\n"
              "To continue, switch to the CPU now (slower), or save and restart Strand to use the GPU "
              "again (Settings > Device).")
               .arg(failure.device.name, failure.reason);
    showError(tr("GPU error: the engine is stopped. Switch to the CPU in Settings, or restart Strand."));
  } else if (!model_loaded_) {
    text = tr("%1 does not have enough free memory for the model:\n%2\n\nLoad it on the CPU "
              "(slower), or cancel, free GPU memory (close other GPU programs) and restart Strand.")
               .arg(failure.device.name, failure.reason);
    showError(tr("Out of GPU memory: the model was not loaded."));
  } else {
    text = tr("%1 ran out of memory:\n%2\n\nGeneration stopped at block %3. Your project and its "
              "snapshots are unchanged; the unfinished block was dropped.\n\nContinue on the CPU "
              "(slower), or cancel, free GPU memory (close other GPU programs) and generate again.")
               .arg(failure.device.name, failure.reason)
               .arg(failure.next_block);
    showError(tr("Out of GPU memory: generation stopped."));
  }
  if (device_failure_box_ != nullptr) device_failure_box_->deleteLater();
  auto* box = new QMessageBox(QMessageBox::Warning, lost ? tr("GPU error") : tr("Out of GPU memory"), text,
                              QMessageBox::NoButton, this);
  box->setAttribute(Qt::WA_DeleteOnClose);
  QPushButton* cpu =
      box->addButton(lost ? tr("Switch to CPU") : tr("Continue on CPU"), QMessageBox::AcceptRole);
  cpu->setObjectName(QStringLiteral("continueOnCpu"));
  box->addButton(lost ? QMessageBox::Close : QMessageBox::Cancel);
  connect(box, &QMessageBox::buttonClicked, this, [this, cpu](QAbstractButton* button) {
    if (button == cpu) continueOnCpu();
  });
  device_failure_box_ = box;
  box->open();  // window-modal, never a nested event loop: the engine's signals keep arriving
  updateControls();
}

void MainWindow::continueOnCpu() {
  const bool resume = last_device_failure_.kind == DeviceFailureKind::out_of_memory &&
                      last_device_failure_.interrupted_generation;
  clearError();
  engine_->setDevice(cpuEngineDevice(), resume);
  statusBar()->showMessage(resume ? tr("Continuing on the CPU") : tr("Switched to the CPU"), 4000);
}

QString MainWindow::deviceText() const { return device_label_->text(); }

QMessageBox* MainWindow::deviceFailureBox() const { return device_failure_box_.data(); }

void MainWindow::updateDeviceLabel() {
  if (!engine_device_.isGpu()) {
    device_label_->setText(tr("CPU"));
    return;
  }
  const bool bf16 = engine_device_.precision == strand::ComputePrecision::bf16;
  QString text = tr("%1 (%2)").arg(engine_device_.name, bf16 ? QStringLiteral("bf16") : QStringLiteral("fp32"));
  // Only once a GPU session exists (the query creates a CUDA context), never on a broken one.
  if (model_loaded_ && engine_state_ != EngineState::failed) {
    if (const auto usage = strand::gpu_memory_usage(engine_device_.index)) {
      text += tr(" · VRAM %1 / %2")
                  .arg(ui::formatBytes(static_cast<qint64>(usage->used_bytes)),
                       ui::formatBytes(static_cast<qint64>(usage->total_bytes)));
    }
  }
  device_label_->setText(text);
}

void MainWindow::onStateChanged(EngineState state) {
  const bool stopped = engine_state_ == EngineState::generating && state != EngineState::generating;
  engine_state_ = state;
  if (state == EngineState::no_model) {
    model_loaded_ = false;
    preview_->setPlaceholderText(tr("No model loaded"));
  }
  state_label_->setText(stateText(state));
  if (state != EngineState::generating) block_progress_->setValue(0);
  if (stopped) maybeAutosaveAfterMilestone();
  updateControls();
}

// ---------------------------------------------------------------------------------------------
// Project events

void MainWindow::onBranchContentChanged(int id) {
  const Branch* b = project_->branch(id);
  if (b != nullptr && id == engine_branch_ && b->prompt != applied_prompt_ && !b->prompt.trimmed().isEmpty()) {
    // Undo/redo of a prompt edit changes what the engine should use from the next block on.
    applied_prompt_ = b->prompt;
    epoch_branch_[engine_->setPrompt(b->prompt, 0)] = id;
  }
  if (b != nullptr && id == engine_branch_ && b->seed != engine_seed_) {
    // A seed edit (or its undo) applies from the next block: move the engine to the branch's end
    // again with the new seed (this stops generation; Generate goes on with the new seed).
    syncEngineToBranch(id);
  }
  // Any branch whose path includes `id`'s blocks may show them: refresh when it is on screen.
  const int active = project_->activeBranch();
  bool affects_active = false;
  for (const Branch* a = project_->branch(active); a != nullptr; a = project_->branch(a->parent_id)) {
    if (a->id == id) affects_active = true;
  }
  if (affects_active) refreshTimeline(true);
  if (id == active && b != nullptr && prompt_edit_->text() != b->prompt && !prompt_edit_->hasFocus()) {
    prompt_edit_->setText(b->prompt);
  }
  refreshBranchTree();
  updateTitle();
}

void MainWindow::onActiveBranchChanged(int id) {
  const Branch* b = project_->branch(id);
  if (b == nullptr) return;
  playback_queue_.clear();
  setPlaybackSpeed(0);
  follow_live_ = true;
  prompt_edit_->setText(b->prompt);
  refreshTimeline(false);
  refreshBranchTree();
  const qint64 frames = project_->pathFrames(id);
  if (frames > 0) {
    seek(frames - 1);
    follow_live_ = true;
  } else {
    preview_->clear();
  }
  updateControls();
}

void MainWindow::refreshTimeline(bool keep_thumbnails) {
  const int id = project_->activeBranch();
  const Branch* b = project_->branch(id);
  if (b == nullptr) return;
  const int fpb = project_->framesPerBlock();
  ui::TimelineContent content;
  content.frame_count = project_->pathFrames(id);
  content.frames_per_block = fpb;
  content.fps = model_info_.fps;
  content.fork_frame = b->parent_id >= 0 ? b->fork_block * fpb : -1;
  content.in_frame = b->in_frame;
  content.out_frame = b->out_frame;
  for (const PromptSegment& segment : project_->promptSegments(id)) {
    content.segments.push_back({segment.first_block * fpb, (segment.last_block + 1) * fpb - 1,
                                segment.prompt, segment.branch_id != id});
  }
  timeline_->setContent(content, keep_thumbnails);
}

void MainWindow::refreshBranchTree() {
  rebuilding_tree_ = true;
  branch_tree_->clear();
  std::map<int, QTreeWidgetItem*> items;
  for (int id : project_->branchIds()) {  // ascending: parents come first
    const Branch* b = project_->branch(id);
    QTreeWidgetItem* parent = b->parent_id >= 0 && items.count(b->parent_id) ? items[b->parent_id] : nullptr;
    auto* item = parent != nullptr ? new QTreeWidgetItem(parent) : new QTreeWidgetItem(branch_tree_);
    item->setText(0, b->name);
    item->setText(1, QString::number(b->blocks.size()));
    item->setText(2, b->parent_id >= 0 ? tr("block %1").arg(b->fork_block) : QString());
    item->setData(0, Qt::UserRole, id);
    item->setToolTip(0, tr("Seed %1. Next prompt: %2").arg(b->seed).arg(b->prompt));
    item->setFlags(item->flags() | Qt::ItemIsEditable);
    if (id == project_->activeBranch()) {
      QFont bold = item->font(0);
      bold.setBold(true);
      item->setFont(0, bold);
    }
    items[id] = item;
  }
  branch_tree_->expandAll();
  if (items.count(project_->activeBranch())) branch_tree_->setCurrentItem(items[project_->activeBranch()]);
  rebuilding_tree_ = false;
}

QList<ui::WordSpan> MainWindow::classifyWords(const QString& text) const {
  QList<ui::WordSpan> spans;
  if (!model_info_.model) return spans;
  const std::vector<strand::WordPieceTokenizer::Word> words =
      model_info_.model->tokenizer().words(text.toStdString());
  // The tokenizer lowercases and splits punctuation; find each word in the original text in
  // order (case-insensitive). A word it normalised beyond recognition (accents) is skipped.
  int cursor = 0;
  for (const auto& word : words) {
    const QString needle = QString::fromStdString(word.text);
    const int at = text.indexOf(needle, cursor, Qt::CaseInsensitive);
    if (at < 0) continue;
    spans.push_back({at, int(needle.size()), word.known});
    cursor = at + int(needle.size());
  }
  return spans;
}

// ---------------------------------------------------------------------------------------------
// Commands

bool MainWindow::syncEngineToBranch(int id) {
  const Branch* b = project_->branch(id);
  const SnapshotPtr state = project_->endState(id);  // includes a re-cached prompt change
  if (b == nullptr || !state) return false;
  applied_prompt_ = b->prompt;
  const quint64 epoch = engine_->continueFrom(state, b->seed, b->prompt);
  epoch_branch_[epoch] = id;
  engine_branch_ = id;
  engine_seed_ = b->seed;
  return true;
}

void MainWindow::applyPrompt() {
  if (!model_loaded_) return;
  const QString prompt = prompt_edit_->text().trimmed();
  if (prompt.isEmpty()) {
    showError(tr("The prompt is empty."));
    return;
  }
  clearError();
  const int id = project_->activeBranch();
  // The engine first (with the re-cache choice), then the project: its change notification then
  // finds the engine already on this prompt.
  if (engine_branch_ == id && applied_prompt_ != prompt) {
    applied_prompt_ = prompt;
    const int recache = recache_spin_->value();
    const quint64 epoch = engine_->setPrompt(prompt, recache);
    epoch_branch_[epoch] = id;
    if (recache > 0) {
      // The re-cache changes the memory at the branch end: record it (onSnapshotReady), or a
      // switch to another branch and back would continue from the memory before the re-cache.
      recache_epoch_ = epoch;
      engine_->requestSnapshot();
    }
    // Frames waiting for playback belong to the old prompt: the user asked to move on.
    playback_queue_.clear();
  } else if (engine_branch_ != id) {
    applied_prompt_ = prompt;  // used when the engine moves to this branch
  }
  project_->requestSetPrompt(id, prompt);  // false when unchanged: nothing to undo
  project_->addToPromptHistory(prompt);
  prompt_edit_->setHistory(project_->promptHistory());
}

void MainWindow::startGeneration() {
  if (!model_loaded_) return;
  const int id = project_->activeBranch();
  if (prompt_edit_->text().trimmed() != project_->branch(id)->prompt || applied_prompt_.isEmpty()) {
    applyPrompt();
  }
  if (project_->branch(id)->prompt.trimmed().isEmpty()) {
    showError(tr("Enter a prompt before generating."));
    return;
  }
  if (engine_branch_ != id) syncEngineToBranch(id);
  clearError();
  follow_live_ = true;
  setPlaybackSpeed(0);
  const int blocks = blocks_spin_->value();
  engine_->generate(blocks > 0 ? blocks : EngineWorker::kUntilStopped);
}

void MainWindow::pauseGeneration() { engine_->pause(); }

void MainWindow::stopGeneration() {
  engine_->cancel();
  block_progress_->setValue(0);
}

bool MainWindow::branchFromBoundary(qint64 boundary) {
  const int parent = project_->activeBranch();
  const Branch* p = project_->branch(parent);
  if (p == nullptr) return false;
  int id = 0;
  const QString name = tr("branch %1").arg(project_->nextBranchId());
  // A different seed by default: the same seed and prompt would reproduce the parent exactly.
  if (!project_->requestCreateBranch(parent, boundary, name, p->seed + 1, p->prompt, &id)) return false;
  project_->setActiveBranch(id);
  statusBar()->showMessage(tr("Branched \"%1\" from block boundary %2").arg(name).arg(boundary), 4000);
  return true;
}

bool MainWindow::deleteBranch(int id) {
  const Branch* b = project_->branch(id);
  if (b == nullptr) return false;
  const QString name = b->name;
  if (!project_->requestDeleteBranch(id)) return false;
  statusBar()->showMessage(tr("Deleted \"%1\" (Ctrl+Z to undo)").arg(name), 6000);
  return true;
}

void MainWindow::showSettings() {
  SettingsDialog::Values values;
  values.model_path = model_info_.path.isEmpty() ? options_.model_path : model_info_.path;
  const Branch* active = project_->branch(project_->activeBranch());
  values.seed = active != nullptr ? active->seed : options_.seed;
  values.device = loadDeviceSettings();
  SettingsDialog dialog(values, model_info_.steps, strand::compute_devices(), engine_device_.name, this);
  if (dialog.exec() != QDialog::Accepted) return;
  const SettingsDialog::Values chosen = dialog.values();
  if (chosen.device != values.device || engine_state_ == EngineState::failed) {
    saveDeviceSettings(chosen.device);
    const EngineDevice device = resolveDevice(chosen.device);
    // The session moves at its block boundary; nothing is lost and generation goes on there.
    if (!device.sameAs(engine_device_) || engine_state_ == EngineState::failed) engine_->setDevice(device);
  }
  if (active != nullptr && project_->requestSetSeed(active->id, chosen.seed) && engine_branch_ == active->id) {
    engine_branch_ = -1;  // the next Generate moves the engine to the branch with the new seed
  }
  if (chosen.model_path != values.model_path && !chosen.model_path.isEmpty()) {
    if (QMessageBox::question(this, tr("Load another model"),
                              tr("Loading another model starts a new project. Continue?")) == QMessageBox::Yes) {
      options_.model_path = chosen.model_path;
      engine_->loadModel(chosen.model_path, options_.seed);
    }
  }
}

void MainWindow::showAbout() {
  QString text =
      tr("<h3>Strand %1</h3>"
         "<p>Interactive long-video generation: an autoregressive video diffusion model whose "
         "memory of the past is a fixed-size state, so a video can run as long as you like, "
         "be steered while it plays, and branch from any block.</p>")
          .arg(QStringLiteral(STRAND_VERSION));
  if (model_loaded_) {
    text += tr("<p>Model: %1 (%2 parameters, %3x%4 at %5 fps)</p>")
                .arg(model_info_.name.toHtmlEscaped())
                .arg(model_info_.parameters)
                .arg(model_info_.width)
                .arg(model_info_.height)
                .arg(model_info_.fps);
  }
  text += tr("<p>Built with Qt %1.</p>").arg(QString::fromLatin1(qVersion()));
  QMessageBox::about(this, tr("About Strand"), text);
}

// ---------------------------------------------------------------------------------------------
// Transport

qint64 MainWindow::playhead() const { return timeline_->playhead(); }

void MainWindow::seek(qint64 frame) {
  const int id = project_->activeBranch();
  const qint64 frames = project_->pathFrames(id);
  if (frames <= 0) return;
  const qint64 clamped = std::clamp<qint64>(frame, 0, frames - 1);
  follow_live_ = false;
  playback_queue_.clear();
  timeline_->setPlayhead(clamped);
  preview_->setFrame(project_->frame(id, clamped), clamped);
}

void MainWindow::setPlaybackSpeed(int frames_per_tick) {
  play_speed_ = frames_per_tick;
  if (play_speed_ == 0) {
    play_timer_.stop();
    return;
  }
  play_timer_.setInterval(model_info_.fps > 0 ? 1000 / model_info_.fps : 83);
  if (!play_timer_.isActive()) play_timer_.start();
}

void MainWindow::playTick() {
  const qint64 frames = project_->pathFrames(project_->activeBranch());
  const qint64 next = timeline_->playhead() + play_speed_;
  if (frames <= 0 || next < 0 || next >= frames) {
    seek(std::clamp<qint64>(next, 0, std::max<qint64>(frames - 1, 0)));
    setPlaybackSpeed(0);
    return;
  }
  seek(next);
}

void MainWindow::transportKey(int key, Qt::KeyboardModifiers modifiers) {
  const int fps = std::max(model_info_.fps, 1);
  const qint64 frames = project_->pathFrames(project_->activeBranch());
  const bool shift = modifiers & Qt::ShiftModifier;
  switch (key) {
    case Qt::Key_Space:
      setPlaybackSpeed(play_speed_ == 0 ? 1 : 0);
      if (play_speed_ != 0 && playhead() >= frames - 1) seek(0);  // play again from the start
      break;
    case Qt::Key_L:  // forward; again: faster (1, 2, 4, 8 frames per tick)
      setPlaybackSpeed(play_speed_ > 0 ? std::min(play_speed_ * 2, 8) : 1);
      break;
    case Qt::Key_J:  // backward; again: faster
      setPlaybackSpeed(play_speed_ < 0 ? std::max(play_speed_ * 2, -8) : -1);
      break;
    case Qt::Key_K:
      setPlaybackSpeed(0);
      break;
    case Qt::Key_Left:
      setPlaybackSpeed(0);
      seek(playhead() - (shift ? fps : 1));
      break;
    case Qt::Key_Right:
      setPlaybackSpeed(0);
      seek(playhead() + (shift ? fps : 1));
      break;
    case Qt::Key_Home:
      setPlaybackSpeed(0);
      seek(0);
      break;
    case Qt::Key_End:
      setPlaybackSpeed(0);
      seek(frames - 1);
      follow_live_ = true;  // back at the live edge
      break;
    case Qt::Key_I:
      setInOutAtPlayhead(true);
      break;
    case Qt::Key_O:
      setInOutAtPlayhead(false);
      break;
    default:
      break;
  }
}

void MainWindow::setInOutAtPlayhead(bool in) {
  const int id = project_->activeBranch();
  const Branch* b = project_->branch(id);
  if (b == nullptr || project_->pathFrames(id) == 0) return;
  qint64 in_frame = b->in_frame;
  qint64 out_frame = b->out_frame;
  if (in) {
    in_frame = playhead();
    if (out_frame >= 0 && out_frame < in_frame) out_frame = -1;
  } else {
    out_frame = playhead();
    if (in_frame > out_frame) in_frame = -1;
  }
  project_->requestSetInOut(id, in_frame, out_frame);
}

// ---------------------------------------------------------------------------------------------
// Projects

bool MainWindow::isProjectModified() const {
  return !project_->undoStack()->isClean() || project_->contentRevision() != saved_content_revision_;
}

void MainWindow::updateTitle() {
  const QString name = project_folder_.isEmpty() ? tr("Untitled") : QFileInfo(project_folder_).fileName();
  QString title = tr("%1[*] — Strand").arg(name);
  if (project_meta_.read_only) title += tr(" (read-only)");
  setWindowTitle(title);
  setWindowModified(isProjectModified());
}

void MainWindow::newProject() {
  if (!model_loaded_) return;
  if (engine_state_ == EngineState::generating) engine_->cancel();
  project_->reset(model_info_.initial_state, model_info_.frames_per_block, options_.seed,
                  prompt_edit_->text().trimmed());
  project_meta_ = ProjectMeta{};
  project_meta_.model_path = model_info_.path;
  project_meta_.model_id = model_info_.id;
  project_folder_.clear();
  engine_branch_ = -1;
  saved_content_revision_ = project_->contentRevision();
  project_->undoStack()->setClean();
  preview_->clear();
  updateTitle();
}

bool MainWindow::openProject(const QString& folder) {
  const QString path = QFileInfo(folder).absoluteFilePath();
  bool from_autosave = false;
  if (hasNewerAutosave(path)) {
    from_autosave = options_.offer_autosave
                        ? options_.offer_autosave(path)
                        : QMessageBox::question(this, tr("Newer autosave"),
                                                tr("This project has an autosave newer than its last "
                                                   "save (Strand may have stopped unexpectedly). Open "
                                                   "the autosave?")) == QMessageBox::Yes;
  }
  // A project made with another model: load that model first (if we can find it), then open.
  QFile file(QDir(path).filePath(QLatin1String(from_autosave ? kAutosaveFile : kProjectFile)));
  QJsonObject json;
  if (file.open(QIODevice::ReadOnly)) json = QJsonDocument::fromJson(file.readAll()).object();
  const QJsonObject model = json.value(QLatin1String("model")).toObject();
  const QString model_id = model.value(QLatin1String("id")).toString();
  const QString model_path = model.value(QLatin1String("path")).toString();
  if (!model_id.isEmpty() && model_loaded_ && model_id != model_info_.id && QFileInfo::exists(model_path)) {
    if (engine_state_ == EngineState::generating) engine_->cancel();
    pending_open_folder_ = path;
    pending_open_autosave_ = from_autosave;
    options_.model_path = model_path;
    engine_->loadModel(model_path, options_.seed);
    return true;
  }
  if (!model_loaded_) {
    pending_open_folder_ = path;
    pending_open_autosave_ = from_autosave;
    return true;
  }
  return finishOpen(path, from_autosave);
}

bool MainWindow::finishOpen(const QString& folder, bool from_autosave, bool untitled) {
  if (engine_state_ == EngineState::generating) engine_->cancel();
  ProjectMeta meta;
  QString error;
  if (!loadProject(folder, from_autosave, model_info_.id, project_, &meta, &error)) {
    showError(tr("Could not open %1: %2").arg(folder, error));
    return false;
  }
  project_meta_ = meta;
  if (project_meta_.model_path.isEmpty()) project_meta_.model_path = model_info_.path;
  project_meta_.model_id = model_info_.id;
  project_folder_ = untitled ? QString() : folder;  // an untitled recovery stays untitled
  engine_branch_ = -1;
  epoch_branch_.clear();
  applied_prompt_.clear();
  // An opened autosave is newer than the saved project: it counts as unsaved until Save.
  saved_content_revision_ = from_autosave ? 0 : project_->contentRevision();
  project_->undoStack()->setClean();
  prompt_edit_->setHistory(project_->promptHistory());
  clearError();
  if (!meta.warnings.isEmpty()) showError(meta.warnings.join(QLatin1Char('\n')));
  if (!untitled) addRecent(folder);
  refreshTimeline(false);
  updateTitle();
  statusBar()->showMessage(tr("Opened %1").arg(folder), 4000);
  regenerateMissingFrames();
  return true;
}

void MainWindow::regenerateMissingFrames() {
  // Decoding runs on the engine thread (between blocks); the placeholders stay until each
  // block's frames come back through onLatentsDecoded().
  const int fpb = project_->framesPerBlock();
  for (const QString& key : project_->blocksToRegenerate()) {
    const BlockRecord* block = project_->blockByKey(key);
    if (block == nullptr || frames_to_regenerate_.contains(key)) continue;
    frames_to_regenerate_.insert(key);
    engine_->decodeLatents(key, block->latents, block->index * fpb);
  }
}

void MainWindow::onLatentsDecoded(const QString& key, qint64 first_frame, const QList<QImage>& frames) {
  frames_to_regenerate_.remove(key);
  // Refused when the block is gone (another project was opened meanwhile) or already repaired.
  if (!project_->restoreBlockFrames(key, frames)) return;
  refreshTimeline(false);  // drop the placeholder thumbnails
  const qint64 shown = preview_->frameIndex();
  const int active = project_->activeBranch();
  if (shown >= first_frame && shown < first_frame + frames.size()) {
    const BlockRecord* block = project_->pathBlock(active, first_frame / std::max(project_->framesPerBlock(), 1));
    if (block != nullptr && block->key == key) preview_->setFrame(project_->frame(active, shown), shown);
  }
  if (frames_to_regenerate_.isEmpty()) {
    statusBar()->showMessage(tr("Damaged frame cache rebuilt from the stored latents"), 4000);
  }
}

bool MainWindow::saveProject() {
  if (project_folder_.isEmpty() || project_meta_.read_only) {
    const QString folder = QFileDialog::getSaveFileName(this, tr("Save project as folder"));
    return !folder.isEmpty() && saveProjectTo(folder);
  }
  return saveProjectTo(project_folder_);
}

bool MainWindow::saveProjectTo(const QString& folder) {
  const QString path = QFileInfo(folder).absoluteFilePath();
  ProjectMeta meta = project_meta_;
  if (path != project_folder_) meta.read_only = false;  // Save As writes the current version
  meta.model_path = model_info_.path;
  meta.model_id = model_info_.id;
  QString error;
  if (!strand::desktop::saveProject(*project_, meta, path, SaveKind::explicit_save, &error)) {
    showError(tr("Not saved: %1").arg(error));
    return false;
  }
  if (project_folder_.isEmpty()) {
    // The untitled work now has a folder: its untitled autosave must not be offered again.
    QFile::remove(QDir(untitledAutosaveFolder()).filePath(QLatin1String(kAutosaveFile)));
  }
  project_meta_ = meta;
  project_folder_ = path;
  saved_content_revision_ = project_->contentRevision();
  autosaved_revision_ = saved_content_revision_;
  autosave_pending_ = false;
  project_->undoStack()->setClean();
  addRecent(path);
  updateTitle();
  statusBar()->showMessage(tr("Saved %1").arg(path), 4000);
  return true;
}

bool MainWindow::autosaveNow() {
  autosave_pending_ = false;
  if (!isProjectModified()) return true;
  if (project_->contentRevision() == autosaved_revision_ &&
      project_->undoStack()->index() == autosaved_undo_index_) {
    return true;  // nothing new since the last autosave
  }
  QString folder = project_folder_;
  if (folder.isEmpty() || project_meta_.read_only) {
    folder = untitledAutosaveFolder();
  }
  QString error;
  if (!strand::desktop::saveProject(*project_, project_meta_, folder, SaveKind::autosave, &error)) {
    statusBar()->showMessage(tr("Autosave failed: %1").arg(error), 8000);
    return false;
  }
  autosaved_revision_ = project_->contentRevision();
  autosaved_undo_index_ = project_->undoStack()->index();
  statusBar()->showMessage(tr("Autosaved"), 2000);
  return true;
}

void MainWindow::maybeAutosaveAfterMilestone() {
  // Generation stopped (target reached, paused, stopped): a natural point to secure new blocks.
  if (autosave_pending_) autosaveNow();
}

void MainWindow::addRecent(const QString& folder) {
  if (!options_.remember_recent) return;
  QSettings settings;
  QStringList recent = settings.value(kRecentKey).toStringList();
  recent.removeAll(folder);
  recent.prepend(folder);
  while (recent.size() > kRecentLimit) recent.removeLast();
  settings.setValue(kRecentKey, recent);
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recent_menu_->clear();
  const QStringList recent = options_.remember_recent ? QSettings().value(kRecentKey).toStringList() : QStringList();
  for (const QString& folder : recent) {
    recent_menu_->addAction(folder, this, [this, folder] { openProject(folder); });
  }
  recent_menu_->setEnabled(!recent.isEmpty());
}

void MainWindow::closeEvent(QCloseEvent* event) {
  if (export_queue_->hasActiveJobs() && isVisible() && !options_.offer_autosave) {
    const auto answer = QMessageBox::question(
        this, tr("Exports running"), tr("Exports are still running. Cancel them and quit?"),
        QMessageBox::Yes | QMessageBox::No);
    if (answer != QMessageBox::Yes) {
      event->ignore();
      return;
    }
  }
  if (isProjectModified() && project_->pathLength(ProjectModel::kRootId) > 0 && isVisible() &&
      !options_.offer_autosave) {
    const auto answer = QMessageBox::question(
        this, tr("Unsaved changes"), tr("Save the project before closing?"),
        QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel);
    if (answer == QMessageBox::Cancel || (answer == QMessageBox::Save && !saveProject())) {
      event->ignore();
      return;
    }
  }
  event->accept();
}

void MainWindow::showExportDialog() {
  ExportDialog::Context context;
  context.project = project_;
  context.branch_id = project_->activeBranch();
  context.info.folder = project_folder_;
  context.info.model_path =
      project_meta_.model_path.isEmpty() ? model_info_.path : project_meta_.model_path;
  context.info.model_id = model_info_.id;
  context.info.native_fps = model_info_.fps;
  const Branch* branch = project_->branch(context.branch_id);
  if (!project_folder_.isEmpty()) {
    const QFileInfo folder(project_folder_);
    context.base_name = folder.fileName();
    if (branch != nullptr && branch->id != ProjectModel::kRootId) context.base_name += u'-' + branch->name;
    context.default_folder = folder.absolutePath();
  } else {
    context.base_name = branch != nullptr ? branch->name : tr("Untitled");
  }
  auto* dialog = new ExportDialog(context, this);
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  connect(dialog, &QDialog::accepted, this, [this, dialog] {
    QString error;
    if (export_queue_->add(dialog->takeJob(), &error) == 0) {
      showError(error);
      return;
    }
    export_dock_->show();
    export_dock_->raise();
  });
  dialog->open();
}

// ---------------------------------------------------------------------------------------------
// Status

void MainWindow::updateRam() {
  const qint64 bytes = residentBytes();
  ram_label_->setText(bytes >= 0 ? tr("RAM %1").arg(ui::formatBytes(bytes)) : QString());
  updateDeviceLabel();  // VRAM moves with it
}

QString MainWindow::statusText() const {
  return QStringList{fps_label_->text(), block_label_->text(), memory_label_->text(), ram_label_->text()}
      .join(QStringLiteral(" | "));
}

void MainWindow::showError(const QString& message) {
  last_error_ = message;
  error_label_->setText(message);
  error_label_->show();
  statusBar()->showMessage(message, 8000);
}

void MainWindow::clearError() {
  error_label_->hide();
  error_label_->clear();
}

void MainWindow::updateControls() {
  const bool generating = engine_state_ == EngineState::generating;
  prompt_edit_->setEnabled(model_loaded_);
  apply_button_->setEnabled(model_loaded_);
  recache_spin_->setEnabled(model_loaded_);
  generate_button_->setEnabled(model_loaded_ && !generating && engine_state_ != EngineState::failed);
  pause_button_->setEnabled(generating);
  stop_button_->setEnabled(generating);
}

}  // namespace strand::desktop
