#include "settings_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRegularExpressionValidator>
#include <QSettings>

namespace strand::desktop {

namespace {

const QString kDeviceKey = QStringLiteral("engine/device");
const QString kPrecisionKey = QStringLiteral("engine/precision");
const QString kAuto = QStringLiteral("auto");
const QString kCpu = QStringLiteral("cpu");

QString gpuKey(int index) {
  return QStringLiteral("cuda:%1").arg(index);
}

EngineDevice gpuDevice(const strand::ComputeDevice& device, const QString& precision) {
  EngineDevice chosen;
  chosen.kind = strand::DeviceKind::cuda;
  chosen.index = device.index;
  chosen.precision = precision == QStringLiteral("fp32") ? strand::ComputePrecision::fp32
                                                         : strand::ComputePrecision::bf16;
  chosen.name = QString::fromStdString(device.description);
  return chosen;
}

}  // namespace

DeviceSettings loadDeviceSettings() {
  QSettings settings;
  DeviceSettings loaded;
  loaded.device = settings.value(kDeviceKey, loaded.device).toString();
  loaded.precision = settings.value(kPrecisionKey, loaded.precision).toString();
  return loaded;
}

void saveDeviceSettings(const DeviceSettings& settings) {
  QSettings store;
  store.setValue(kDeviceKey, settings.device);
  store.setValue(kPrecisionKey, settings.precision);
}

EngineDevice resolveDevice(const DeviceSettings& settings,
                           const std::vector<strand::ComputeDevice>& devices) {
  if (settings.device == kCpu) return cpuEngineDevice();
  for (const strand::ComputeDevice& device : devices) {
    if (device.kind == "cuda" && device.usable_by_engine &&
        gpuKey(device.index) == settings.device) {
      return gpuDevice(device, settings.precision);
    }
  }
  // Automatic (or the chosen GPU is gone): the first GPU the engine can use, else the CPU.
  for (const strand::ComputeDevice& device : devices) {
    if (device.kind == "cuda" && device.usable_by_engine)
      return gpuDevice(device, settings.precision);
  }
  return cpuEngineDevice();
}

SettingsDialog::SettingsDialog(const Values& values, int steps,
                               const std::vector<strand::ComputeDevice>& devices,
                               const QString& running_on, QWidget* parent)
    : QDialog(parent), devices_(devices) {
  setWindowTitle(tr("Settings"));
  auto* form = new QFormLayout(this);

  auto* model_row = new QHBoxLayout();
  model_edit_ = new QLineEdit(values.model_path, this);
  auto* browse = new QPushButton(tr("Browse…"), this);
  model_row->addWidget(model_edit_, 1);
  model_row->addWidget(browse);
  form->addRow(tr("Model file:"), model_row);
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Strand model"), model_edit_->text(),
                                                      tr("Strand models (*.safetensors)"));
    if (!path.isEmpty()) model_edit_->setText(path);
  });

  device_combo_ = new QComboBox(this);
  const EngineDevice automatic = resolveDevice(DeviceSettings{}, devices_);
  device_combo_->addItem(tr("Automatic (%1)").arg(automatic.isGpu() ? automatic.name : tr("CPU")),
                         kAuto);
  device_combo_->setItemData(0, tr("The first GPU this build can use, else the CPU"),
                             Qt::ToolTipRole);
  for (const strand::ComputeDevice& device : devices_) {
    const QString description = QString::fromStdString(device.description);
    if (device.kind == "cpu") {
      device_combo_->addItem(tr("CPU: %1").arg(description), kCpu);
      continue;
    }
    device_combo_->addItem(tr("GPU %1: %2").arg(device.index).arg(description),
                           gpuKey(device.index));
    if (!device.usable_by_engine) {
      // Listed so the user sees the GPU was found; the engine cannot use it.
      const int row = device_combo_->count() - 1;
      device_combo_->setItemData(row, tr("Not usable by this build's engine"), Qt::ToolTipRole);
      device_combo_->setItemData(row, 0, Qt::UserRole - 1);  // disabled item
    }
  }
  const int current = device_combo_->findData(values.device.device);
  device_combo_->setCurrentIndex(current >= 0 ? current : 0);
  form->addRow(tr("Device:"), device_combo_);

  precision_combo_ = new QComboBox(this);
  precision_combo_->addItem(tr("bf16 (fast)"), QStringLiteral("bf16"));
  precision_combo_->addItem(tr("fp32 (exact, matches the CPU)"), QStringLiteral("fp32"));
  precision_combo_->setToolTip(
      tr("GPU arithmetic: bf16 matrix products are faster; fp32 gives the "
         "same frames as the CPU up to float rounding"));
  const int precision = precision_combo_->findData(values.device.precision);
  precision_combo_->setCurrentIndex(precision >= 0 ? precision : 0);
  form->addRow(tr("GPU precision:"), precision_combo_);
  connect(device_combo_, &QComboBox::currentIndexChanged, this,
          [this] { updatePrecisionEnabled(); });
  updatePrecisionEnabled();
  if (!running_on.isEmpty())
    form->addRow(QString(), new QLabel(tr("Running on: %1").arg(running_on), this));

  seed_edit_ = new QLineEdit(QString::number(values.seed), this);
  seed_edit_->setValidator(
      new QRegularExpressionValidator(QRegularExpression(QStringLiteral("[0-9]{1,20}")), this));
  seed_edit_->setToolTip(tr("Noise seed of the active branch's next blocks"));
  form->addRow(tr("Seed:"), seed_edit_);

  form->addRow(
      tr("Steps:"),
      new QLabel(tr("%1 denoising passes + 1 clean pass per block (set by the model)").arg(steps),
                 this));

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  form->addRow(buttons);
}

void SettingsDialog::updatePrecisionEnabled() {
  // Precision only means something where the choice resolves to a GPU.
  DeviceSettings choice;
  choice.device = device_combo_->currentData().toString();
  precision_combo_->setEnabled(resolveDevice(choice, devices_).isGpu());
}

SettingsDialog::Values SettingsDialog::values() const {
  Values values;
  values.model_path = model_edit_->text().trimmed();
  values.device.device = device_combo_->currentData().toString();
  values.device.precision = precision_combo_->currentData().toString();
  bool ok = false;
  values.seed = seed_edit_->text().toULongLong(&ok);
  return values;
}

}  // namespace strand::desktop
