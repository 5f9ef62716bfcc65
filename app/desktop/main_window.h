// MainWindow: the desktop app's single window. Preview, prompt editing, transport buttons and a
// status bar, wired to an EngineWorker. The window never waits for the engine: it sends commands
// and reacts to the worker's signals; frames are paced to the model's frame rate for playback.
#pragma once
#include <QImage>
#include <QMainWindow>
#include <QString>
#include <QTimer>
#include <deque>
#include <memory>

#include "engine_worker.h"

class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;

namespace strand::ui {
class PreviewWidget;
}

namespace strand::desktop {

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  struct Options {
    QString model_path;      // loaded at start-up; empty: none
    quint64 seed = 0;        // noise seed of the video
    QString initial_prompt;  // pre-filled prompt text
    EngineWorkerOptions engine;
  };

  explicit MainWindow(Options options, QWidget* parent = nullptr);
  ~MainWindow() override;

  // For tests and automation.
  [[nodiscard]] ui::PreviewWidget* preview() const { return preview_; }
  [[nodiscard]] EngineWorker* engine() const { return engine_.get(); }
  [[nodiscard]] QLineEdit* promptEdit() const { return prompt_edit_; }
  [[nodiscard]] QPushButton* generateButton() const { return generate_button_; }
  [[nodiscard]] QString lastError() const { return last_error_; }
  [[nodiscard]] QString appliedPrompt() const { return applied_prompt_; }

 public slots:
  void applyPrompt();      // sends the prompt field to the engine (Ctrl+Enter)
  void startGeneration();  // applies a changed prompt, then generates until stopped
  void pauseGeneration();  // finish the current block, then stop
  void stopGeneration();   // abort the current block
  void showAbout();

 private:
  void buildUi();
  void connectEngine();
  void onModelLoaded(const ModelInfo& info);
  void onFrameReady(const QImage& image, qint64 frame_index);
  void onBlockDone(const BlockStats& stats);
  void onEngineError(const QString& message);
  void onStateChanged(EngineState state);
  void showNextFrame();
  void showError(const QString& message);
  void clearError();
  void updateControls();

  struct QueuedFrame {
    QImage image;
    qint64 index = 0;
  };

  Options options_;
  std::unique_ptr<EngineWorker> engine_;
  ModelInfo model_info_;
  bool model_loaded_ = false;
  EngineState engine_state_ = EngineState::no_model;
  QString applied_prompt_;
  QString last_error_;

  // Playback pacing: frames arrive a block at a time; show them one per frame interval. Bounded:
  // when generation outruns playback the oldest are dropped (live preview, never a backlog).
  std::deque<QueuedFrame> playback_queue_;
  size_t playback_capacity_ = 8;
  QTimer playback_timer_;

  ui::PreviewWidget* preview_ = nullptr;
  QLineEdit* prompt_edit_ = nullptr;
  QSpinBox* recache_spin_ = nullptr;
  QPushButton* apply_button_ = nullptr;
  QPushButton* generate_button_ = nullptr;
  QPushButton* pause_button_ = nullptr;
  QPushButton* stop_button_ = nullptr;
  QProgressBar* block_progress_ = nullptr;
  QLabel* error_label_ = nullptr;
  QLabel* state_label_ = nullptr;
  QLabel* fps_label_ = nullptr;
  QLabel* block_label_ = nullptr;
  QLabel* memory_label_ = nullptr;
};

}  // namespace strand::desktop
