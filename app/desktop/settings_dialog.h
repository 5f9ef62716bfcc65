// SettingsDialog: model file, compute device, the active branch's noise seed, and the sampler's
// step count (fixed by the model, shown for information).
#pragma once
#include <QDialog>
#include <QString>

class QComboBox;
class QLabel;
class QLineEdit;

namespace strand::desktop {

class SettingsDialog : public QDialog {
  Q_OBJECT

 public:
  struct Values {
    QString model_path;
    QString device = QStringLiteral("cpu");
    quint64 seed = 0;
  };

  SettingsDialog(const Values& values, int steps, QWidget* parent = nullptr);
  [[nodiscard]] Values values() const;

  // For tests.
  [[nodiscard]] QLineEdit* modelEdit() const { return model_edit_; }
  [[nodiscard]] QLineEdit* seedEdit() const { return seed_edit_; }
  [[nodiscard]] QComboBox* deviceCombo() const { return device_combo_; }

 private:
  QLineEdit* model_edit_ = nullptr;
  QComboBox* device_combo_ = nullptr;
  QLineEdit* seed_edit_ = nullptr;
};

}  // namespace strand::desktop
