// ExportDialog: File > Export. The user picks a preset (where the file goes next), its format,
// what to export (branch, in/out range, prompt segments, every branch), frame rate, an optional
// size, a timeline format and the output path. "Add to queue" plans the job from the project with
// the core's planner (see export_job.h); the dialog stays open with the reason when it cannot.
// Choices are remembered in QSettings (group "export") between runs.
#pragma once
#include <QDialog>
#include <QString>
#include <functional>

#include "export_job.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QSpinBox;

namespace strand::desktop {

class ProjectModel;

class ExportDialog : public QDialog {
  Q_OBJECT

 public:
  struct Context {
    const ProjectModel* project = nullptr;
    int branch_id = 1;       // the branch "current branch", in/out and segments refer to
    ExportProjectInfo info;  // folder, model and frame rate (native_fps 0: no model loaded)
    QString base_name;       // default file name (project or branch name)
    QString default_folder;  // used until the user has chosen one (remembered afterwards)
  };

  explicit ExportDialog(Context context, QWidget* parent = nullptr);

  // The current choices (valid or not).
  [[nodiscard]] ExportRequest request() const;
  // Selects a preset as the user would (format, timeline and file extension follow it).
  void setTarget(ExportTarget target);
  // After accept(): the planned job.
  [[nodiscard]] ExportJobSpec takeJob() { return std::move(job_); }
  // Asked before replacing existing files; default: a message box. Tests set it.
  void setConfirmOverwrite(std::function<bool(const QStringList& paths)> confirm) {
    confirm_overwrite_ = std::move(confirm);
  }

  // false: accept() does not remember the choices (the screenshot tour).
  void setRememberSettings(bool remember) { remember_settings_ = remember; }

  // Plans the job; on success saves the settings and closes. Otherwise shows why and stays open.
  void accept() override;

  // For tests.
  [[nodiscard]] QComboBox* targetCombo() const { return target_combo_; }
  [[nodiscard]] QComboBox* formatCombo() const { return format_combo_; }
  [[nodiscard]] QComboBox* scopeCombo() const { return scope_combo_; }
  [[nodiscard]] QListWidget* segmentList() const { return segment_list_; }
  [[nodiscard]] QComboBox* rateCombo() const { return rate_combo_; }
  [[nodiscard]] QCheckBox* resizeCheck() const { return resize_check_; }
  [[nodiscard]] QSpinBox* widthSpin() const { return width_spin_; }
  [[nodiscard]] QSpinBox* heightSpin() const { return height_spin_; }
  [[nodiscard]] QComboBox* timelineCombo() const { return timeline_combo_; }
  [[nodiscard]] QLineEdit* pathEdit() const { return path_edit_; }
  [[nodiscard]] QLabel* messageLabel() const { return message_label_; }

 private:
  void fillFormats();
  void loadSettings();
  void saveSettings() const;
  void updateSummary();
  void browse();
  [[nodiscard]] strand::ExportPresetInfo currentPreset() const;

  Context context_;
  ExportJobSpec job_;
  std::function<bool(const QStringList&)> confirm_overwrite_;
  bool loading_ = false;
  bool remember_settings_ = true;

  QComboBox* target_combo_ = nullptr;
  QComboBox* format_combo_ = nullptr;
  QComboBox* scope_combo_ = nullptr;
  QListWidget* segment_list_ = nullptr;
  QComboBox* rate_combo_ = nullptr;
  QCheckBox* resize_check_ = nullptr;
  QSpinBox* width_spin_ = nullptr;
  QSpinBox* height_spin_ = nullptr;
  QComboBox* timeline_combo_ = nullptr;
  QLineEdit* path_edit_ = nullptr;
  QLabel* summary_label_ = nullptr;
  QLabel* message_label_ = nullptr;
  QPushButton* add_button_ = nullptr;
};

}  // namespace strand::desktop
