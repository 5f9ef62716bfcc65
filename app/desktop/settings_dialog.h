// SettingsDialog: model file, compute device and precision, the active branch's noise seed, and
// the sampler's step count (fixed by the model, shown for information).
//
// The device choice is an application setting (QSettings "engine/device", "engine/precision"),
// not a project one: a project opens on whatever machine it is moved to.
#pragma once
#include <QDialog>
#include <QString>
#include <vector>

#include "engine_worker.h"
#include "strand/devices.h"

class QComboBox;
class QLabel;
class QLineEdit;

namespace strand::desktop {

// The compute device choice as the user made it (and as persisted).
struct DeviceSettings {
  QString device = QStringLiteral("auto");     // "auto", "cpu", or "cuda:N" (N: CUDA device index)
  QString precision = QStringLiteral("bf16");  // GPUs: "bf16" (fast) or "fp32" (exact)
  bool operator==(const DeviceSettings&) const = default;
};

// QSettings of the application (organisation and application names set by main()).
DeviceSettings loadDeviceSettings();
void saveDeviceSettings(const DeviceSettings& settings);

// The device `settings` select among `devices` (strand::compute_devices()). "auto": the first GPU
// the engine can use, else the CPU. A GPU that is gone or unusable falls back to "auto", an
// unknown precision to bf16.
EngineDevice resolveDevice(const DeviceSettings& settings,
                           const std::vector<strand::ComputeDevice>& devices);
inline EngineDevice resolveDevice(const DeviceSettings& settings) {
  return resolveDevice(settings, strand::compute_devices());
}

class SettingsDialog : public QDialog {
  Q_OBJECT

 public:
  struct Values {
    QString model_path;
    DeviceSettings device;
    quint64 seed = 0;
  };

  // `devices`: what the device list offers (strand::compute_devices(); tests pass their own).
  // `running_on`: the device the engine computes on now, shown under the choice.
  SettingsDialog(const Values& values, int steps, const std::vector<strand::ComputeDevice>& devices,
                 const QString& running_on = {}, QWidget* parent = nullptr);
  SettingsDialog(const Values& values, int steps, QWidget* parent = nullptr)
      : SettingsDialog(values, steps, strand::compute_devices(), {}, parent) {}
  [[nodiscard]] Values values() const;

  // For tests.
  [[nodiscard]] QLineEdit* modelEdit() const { return model_edit_; }
  [[nodiscard]] QLineEdit* seedEdit() const { return seed_edit_; }
  [[nodiscard]] QComboBox* deviceCombo() const { return device_combo_; }
  [[nodiscard]] QComboBox* precisionCombo() const { return precision_combo_; }

 private:
  void updatePrecisionEnabled();

  std::vector<strand::ComputeDevice> devices_;
  QLineEdit* model_edit_ = nullptr;
  QComboBox* device_combo_ = nullptr;
  QComboBox* precision_combo_ = nullptr;
  QLineEdit* seed_edit_ = nullptr;
};

}  // namespace strand::desktop
