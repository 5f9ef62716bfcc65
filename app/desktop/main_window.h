// MainWindow: the desktop app's window. Preview, prompt editor, transport, timeline of the active
// branch, branch tree, project menu and status bar, wired to an EngineWorker and a ProjectModel.
//
// The window never waits for the engine: it sends commands and reacts to the worker's signals.
// Every committed block is recorded in the project (frames, latents, snapshot) on the branch the
// engine was generating when the block started (epochs map to branches); the timeline and
// scrubbing paint from those records. The engine is moved to a branch's end (continueFrom: its
// last snapshot, seed and prompt) lazily, when generation starts on a branch it is not at.
#pragma once
#include <QImage>
#include <QMainWindow>
#include <QSet>
#include <QString>
#include <QStringList>
#include <QTimer>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <QPointer>

#include "engine_worker.h"
#include "project_file.h"
#include "project_model.h"

class QLabel;
class QMenu;
class QMessageBox;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QToolButton;
class QTreeWidget;
class QTreeWidgetItem;

namespace strand::ui {
class PreviewWidget;
struct WordSpan;
class PromptEdit;
class TimelineWidget;
}  // namespace strand::ui

namespace strand::desktop {

class ExportQueue;
class ExportQueueDock;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  struct Options {
    QString model_path;      // loaded at start-up; empty: none
    quint64 seed = 0;        // noise seed of a new video
    QString initial_prompt;  // pre-filled prompt text
    QString project_folder;  // opened once the model is loaded; empty: a new project
    EngineWorkerOptions engine;
    int autosave_interval_ms = 120000;  // 0 disables the timer (milestone autosaves remain)
    // Asked when an opened project has a newer autosave: true opens the autosave. Default: a
    // message box. Tests and automation set it (modal dialogs block them).
    std::function<bool(const QString& folder)> offer_autosave;
    bool remember_recent = true;  // keep the Recent list in QSettings
  };

  explicit MainWindow(Options options, QWidget* parent = nullptr);
  ~MainWindow() override;

  // For tests and automation.
  [[nodiscard]] ui::PreviewWidget* preview() const { return preview_; }
  [[nodiscard]] EngineWorker* engine() const { return engine_.get(); }
  [[nodiscard]] ui::PromptEdit* promptEdit() const { return prompt_edit_; }
  [[nodiscard]] QPushButton* generateButton() const { return generate_button_; }
  [[nodiscard]] QSpinBox* blocksSpin() const { return blocks_spin_; }
  [[nodiscard]] QSpinBox* recacheSpin() const { return recache_spin_; }
  [[nodiscard]] ui::TimelineWidget* timeline() const { return timeline_; }
  [[nodiscard]] QTreeWidget* branchTree() const { return branch_tree_; }
  [[nodiscard]] ProjectModel* project() const { return project_; }
  [[nodiscard]] const ProjectMeta& projectMeta() const { return project_meta_; }
  [[nodiscard]] QString projectFolder() const { return project_folder_; }
  [[nodiscard]] QString lastError() const { return last_error_; }
  [[nodiscard]] QString appliedPrompt() const { return applied_prompt_; }
  [[nodiscard]] bool modelLoaded() const { return model_loaded_; }
  [[nodiscard]] qint64 playhead() const;
  [[nodiscard]] int playbackSpeed() const { return play_speed_; }
  [[nodiscard]] bool isProjectModified() const;
  [[nodiscard]] QString statusText() const;  // fps, block, memory, RAM labels joined
  [[nodiscard]] ExportQueue* exportQueue() const { return export_queue_; }
  [[nodiscard]] ExportQueueDock* exportDock() const { return export_dock_; }
  // GPU failures (see EngineWorker::deviceFailed): the open "Continue on CPU" / "Switch to CPU"
  // box (null when none), and the status bar's device label (name, VRAM used/total on a GPU).
  [[nodiscard]] QMessageBox* deviceFailureBox() const;
  [[nodiscard]] QString deviceText() const;
  // Where an untitled project autosaves (offered at the next start when present).
  static QString untitledAutosaveFolder();

 public slots:
  void applyPrompt();      // the prompt box becomes the active branch's prompt (Ctrl+Enter)
  void startGeneration();  // applies a changed prompt, then generates (target or until stopped)
  void pauseGeneration();  // finish the current block, then stop
  void stopGeneration();   // abort the current block
  void showAbout();
  void showSettings();
  // Creates a branch of the active branch at block boundary `boundary` and makes it active.
  bool branchFromBoundary(qint64 boundary);
  bool deleteBranch(int id);
  void newProject();
  bool openProject(const QString& folder);  // offers a newer autosave
  bool saveProject();                       // Save (Save As when untitled)
  bool saveProjectTo(const QString& folder);  // Save As
  bool autosaveNow();
  void seek(qint64 frame);  // moves the playhead and shows that cached frame
  // File > Export: opens the export dialog (window-modal, not blocking); its job joins the queue.
  void showExportDialog();
  // After a GPU failure: rebuilds the engine on the CPU at its last good block boundary; after
  // out of memory, also resumes the generation it stopped.
  void continueOnCpu();

 protected:
  void closeEvent(QCloseEvent* event) override;

 private:
  void buildUi();
  void buildMenus();
  void buildShortcuts();
  void connectEngine();
  void connectProject();
  void onModelLoaded(const ModelInfo& info);
  void onBlockCommitted(const CommittedBlock& block);
  void onFrameReady(const QImage& image, qint64 frame_index);
  void onBlockDone(const BlockStats& stats);
  void onEngineError(const QString& message);
  void onStateChanged(EngineState state);
  void onDeviceFailed(const DeviceFailure& failure);
  void updateDeviceLabel();
  void onBranchContentChanged(int id);
  void onActiveBranchChanged(int id);
  void refreshTimeline(bool keep_thumbnails);
  void refreshBranchTree();
  void showNextFrame();
  void showError(const QString& message);
  void clearError();
  void updateControls();
  void updateTitle();
  void updateRam();
  void playTick();
  void setPlaybackSpeed(int frames_per_tick);
  void transportKey(int key, Qt::KeyboardModifiers modifiers);
  void setInOutAtPlayhead(bool in);
  bool syncEngineToBranch(int id);  // continueFrom the branch's end, seed and prompt
  int branchForEpoch(quint64 epoch) const;
  // untitled: a recovered untitled autosave (no project folder, not added to Recent).
  bool finishOpen(const QString& folder, bool from_autosave, bool untitled = false);
  void offerUntitledAutosave();
  // Damaged frame caches: asks the engine thread to decode the blocks' stored latents again.
  void regenerateMissingFrames();
  void onLatentsDecoded(const QString& key, qint64 first_frame, const QList<QImage>& frames);
  void addRecent(const QString& folder);
  void rebuildRecentMenu();
  void maybeAutosaveAfterMilestone();
  QList<ui::WordSpan> classifyWords(const QString& text) const;

  struct QueuedFrame {
    QImage image;
    qint64 index = 0;
  };

  Options options_;
  std::unique_ptr<EngineWorker> engine_;
  ProjectModel* project_ = nullptr;  // child QObject
  ProjectMeta project_meta_;
  QString project_folder_;           // empty: untitled
  quint64 saved_content_revision_ = 0;
  ModelInfo model_info_;
  bool model_loaded_ = false;
  EngineState engine_state_ = EngineState::no_model;
  QString applied_prompt_;
  QString last_error_;

  // Engine position: the branch whose end the session is at (-1: unknown, resync before use),
  // and which branch each edit epoch generates for.
  int engine_branch_ = -1;
  quint64 engine_seed_ = 0;
  std::map<quint64, int> epoch_branch_;

  // Opening a project made with another model: load the model first, then the project.
  QString pending_open_folder_;
  bool pending_open_autosave_ = false;
  QSet<QString> frames_to_regenerate_;  // block keys whose latents are being decoded
  bool untitled_autosave_checked_ = false;
  quint64 recache_epoch_ = 0;  // epoch of a re-cached prompt change whose snapshot is awaited

  // Live preview pacing: frames arrive a block at a time; show them one per frame interval.
  std::deque<QueuedFrame> playback_queue_;
  size_t playback_capacity_ = 8;
  QTimer live_timer_;
  bool follow_live_ = true;  // the playhead follows live generation (End turns it back on)

  // Timeline playback (Space, J/K/L): frames per tick, negative = backwards, 0 = stopped.
  QTimer play_timer_;
  int play_speed_ = 0;

  QTimer autosave_timer_;
  QTimer ram_timer_;
  bool autosave_pending_ = false;
  quint64 autosaved_revision_ = 0;
  int autosaved_undo_index_ = -1;

  ui::PreviewWidget* preview_ = nullptr;
  ui::PromptEdit* prompt_edit_ = nullptr;
  ui::TimelineWidget* timeline_ = nullptr;
  QTreeWidget* branch_tree_ = nullptr;
  bool rebuilding_tree_ = false;
  QToolButton* history_button_ = nullptr;
  QSpinBox* recache_spin_ = nullptr;
  QSpinBox* blocks_spin_ = nullptr;
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
  QLabel* ram_label_ = nullptr;
  QLabel* device_label_ = nullptr;
  EngineDevice engine_device_;  // where the engine computes (deviceChanged)
  DeviceFailure last_device_failure_;
  QPointer<QMessageBox> device_failure_box_;
  QMenu* recent_menu_ = nullptr;
  ExportQueue* export_queue_ = nullptr;  // child QObject: exports run on its worker threads
  ExportQueueDock* export_dock_ = nullptr;
};

}  // namespace strand::desktop
