#include "main_window.h"

#include <QAction>
#include <QApplication>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QKeySequence>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QShortcut>
#include <QSpinBox>
#include <QStatusBar>
#include <QToolButton>
#include <QVBoxLayout>
#include <algorithm>

#include "ui/formatting.h"
#include "ui/preview_widget.h"

namespace strand::desktop {

namespace {

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
  }
  return {};
}

}  // namespace

MainWindow::MainWindow(Options options, QWidget* parent)
    : QMainWindow(parent),
      options_(std::move(options)),
      engine_(std::make_unique<EngineWorker>(options_.engine)) {
  setWindowTitle(tr("Strand"));
  buildUi();
  connectEngine();

  playback_timer_.setTimerType(Qt::PreciseTimer);
  connect(&playback_timer_, &QTimer::timeout, this, &MainWindow::showNextFrame);

  if (options_.model_path.isEmpty()) {
    showError(tr("No model given. Start with --model PATH to a Strand .safetensors file."));
  } else {
    preview_->setPlaceholderText(tr("Loading %1…").arg(QFileInfo(options_.model_path).fileName()));
    engine_->loadModel(options_.model_path, options_.seed);
  }
  updateControls();
}

MainWindow::~MainWindow() {
  // Stop the engine thread before the widgets its queued events would touch go away.
  engine_.reset();
}

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
  prompt_edit_ = new QLineEdit(options_.initial_prompt, central);
  prompt_edit_->setPlaceholderText(tr("Describe the video, then Ctrl+Enter to apply"));
  prompt_edit_->setClearButtonEnabled(true);
  prompt_row->addWidget(prompt_edit_, 1);
  prompt_row->addWidget(new QLabel(tr("Re-cache:"), central));
  recache_spin_ = new QSpinBox(central);
  recache_spin_->setRange(0, 8);
  recache_spin_->setToolTip(
      tr("Replay this many past blocks under the new prompt, so the video's memory agrees "
         "with it (0: switch at the next block)"));
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
  block_progress_ = new QProgressBar(central);
  block_progress_->setTextVisible(false);
  block_progress_->setMaximumHeight(10);
  block_progress_->setRange(0, 1);
  block_progress_->setValue(0);
  transport_row->addWidget(generate_button_);
  transport_row->addWidget(pause_button_);
  transport_row->addWidget(stop_button_);
  transport_row->addWidget(block_progress_, 1);
  layout->addLayout(transport_row);
  setCentralWidget(central);

  connect(apply_button_, &QPushButton::clicked, this, &MainWindow::applyPrompt);
  connect(generate_button_, &QPushButton::clicked, this, &MainWindow::startGeneration);
  connect(pause_button_, &QPushButton::clicked, this, &MainWindow::pauseGeneration);
  connect(stop_button_, &QPushButton::clicked, this, &MainWindow::stopGeneration);
  for (const QKeySequence& keys :
       {QKeySequence(Qt::CTRL | Qt::Key_Return), QKeySequence(Qt::CTRL | Qt::Key_Enter)}) {
    auto* shortcut = new QShortcut(keys, this);
    connect(shortcut, &QShortcut::activated, this, &MainWindow::applyPrompt);
  }

  QMenu* file_menu = menuBar()->addMenu(tr("&File"));
  QAction* quit = file_menu->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);
  QMenu* help_menu = menuBar()->addMenu(tr("&Help"));
  help_menu->addAction(tr("&About Strand"), this, &MainWindow::showAbout);

  state_label_ = new QLabel(this);
  fps_label_ = new QLabel(this);
  block_label_ = new QLabel(this);
  memory_label_ = new QLabel(this);
  fps_label_->setToolTip(tr("Generation speed (frames per second of engine time)"));
  block_label_->setToolTip(tr("Engine time of the last block"));
  memory_label_->setToolTip(tr("Size of the video's memory state"));
  statusBar()->addWidget(state_label_, 1);
  statusBar()->addPermanentWidget(fps_label_);
  statusBar()->addPermanentWidget(block_label_);
  statusBar()->addPermanentWidget(memory_label_);
  state_label_->setText(stateText(engine_state_));
}

void MainWindow::connectEngine() {
  EngineWorker* engine = engine_.get();
  connect(engine, &EngineWorker::modelLoaded, this, &MainWindow::onModelLoaded);
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
  connect(engine, &EngineWorker::promptRejected, this,
          [this](const QString& prompt, const QString&) {
            // The engine kept the previous prompt: let Generate / Apply send this text again once
            // edited.
            if (applied_prompt_ == prompt) applied_prompt_.clear();
          });
}

void MainWindow::applyPrompt() {
  if (!model_loaded_) return;
  const QString prompt = prompt_edit_->text();
  applied_prompt_ = prompt;
  clearError();
  engine_->setPrompt(prompt, recache_spin_->value());
  // Frames waiting for playback belong to the old prompt: the user asked to move on.
  playback_queue_.clear();
}

void MainWindow::startGeneration() {
  if (!model_loaded_) return;
  if (prompt_edit_->text() != applied_prompt_) applyPrompt();
  clearError();
  engine_->generateUntilStopped();
}

void MainWindow::pauseGeneration() {
  engine_->pause();
}

void MainWindow::stopGeneration() {
  engine_->cancel();
  block_progress_->setValue(0);
}

void MainWindow::showAbout() {
  QString text =
      tr("<h3>Strand %1</h3>"
         "<p>Interactive long-video generation: an autoregressive video diffusion model whose "
         "memory of the past is a fixed-size state, so a video can run as long as you like "
         "and be steered while it plays.</p>")
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

void MainWindow::onModelLoaded(const ModelInfo& info) {
  model_info_ = info;
  model_loaded_ = true;
  preview_->setFramesPerSecond(info.fps);
  preview_->clear();
  preview_->setPlaceholderText(tr("%1 loaded. Enter a prompt and press Generate.").arg(info.name));
  playback_capacity_ = static_cast<size_t>(std::max(2 * info.frames_per_block, 4));
  playback_timer_.setInterval(info.fps > 0 ? 1000 / info.fps : 83);
  setWindowTitle(tr("Strand — %1").arg(info.name));
  statusBar()->showMessage(tr("Loaded %1").arg(info.path), 4000);
  updateControls();
}

void MainWindow::onFrameReady(const QImage& image, qint64 frame_index) {
  if (playback_queue_.size() >= playback_capacity_) playback_queue_.pop_front();
  playback_queue_.push_back({image, frame_index});
  if (!playback_timer_.isActive()) {
    showNextFrame();  // show at once after a pause; the timer paces the rest
    playback_timer_.start();
  }
}

void MainWindow::showNextFrame() {
  if (playback_queue_.empty()) {
    playback_timer_.stop();
    return;
  }
  QueuedFrame frame = std::move(playback_queue_.front());
  playback_queue_.pop_front();
  preview_->setFrame(frame.image, frame.index);
}

void MainWindow::onBlockDone(const BlockStats& stats) {
  if (stats.total_ms > 0) {
    const double fps = stats.frame_count * 1000.0 / stats.total_ms;
    fps_label_->setText(tr("%1 fps").arg(fps, 0, 'f', 1));
  }
  block_label_->setText(
      tr("block %1: %2 ms").arg(stats.block_index).arg(stats.total_ms, 0, 'f', 0));
  memory_label_->setText(tr("memory %1").arg(ui::formatBytes(stats.state_bytes)));
  block_progress_->setValue(0);
}

void MainWindow::onEngineError(const QString& message) {
  showError(message);
}

void MainWindow::onStateChanged(EngineState state) {
  engine_state_ = state;
  if (state == EngineState::no_model) {
    model_loaded_ = false;
    preview_->setPlaceholderText(tr("No model loaded"));
  }
  state_label_->setText(stateText(state));
  if (state != EngineState::generating) block_progress_->setValue(0);
  updateControls();
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
  generate_button_->setEnabled(model_loaded_ && !generating);
  pause_button_->setEnabled(generating);
  stop_button_->setEnabled(generating);
}

}  // namespace strand::desktop
