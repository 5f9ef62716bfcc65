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

#include "strand/devices.h"

namespace strand::desktop {

SettingsDialog::SettingsDialog(const Values& values, int steps, QWidget* parent) : QDialog(parent) {
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
  for (const strand::ComputeDevice& device : strand::compute_devices()) {
    const QString kind = QString::fromStdString(device.kind);
    device_combo_->addItem(QString::fromStdString(device.description), kind);
    if (!device.usable_by_engine) {
      // Listed so the user sees the GPU was found; the engine cannot use it yet.
      const int row = device_combo_->count() - 1;
      device_combo_->setItemData(row, tr("Not usable by this build's engine yet"), Qt::ToolTipRole);
      device_combo_->setItemData(row, 0, Qt::UserRole - 1);  // disabled item
    }
  }
  const int current = device_combo_->findData(values.device);
  device_combo_->setCurrentIndex(current >= 0 ? current : 0);
  form->addRow(tr("Device:"), device_combo_);

  seed_edit_ = new QLineEdit(QString::number(values.seed), this);
  seed_edit_->setValidator(new QRegularExpressionValidator(QRegularExpression(QStringLiteral("[0-9]{1,20}")), this));
  seed_edit_->setToolTip(tr("Noise seed of the active branch's next blocks"));
  form->addRow(tr("Seed:"), seed_edit_);

  form->addRow(tr("Steps:"), new QLabel(tr("%1 denoising passes + 1 clean pass per block (set by the model)")
                                            .arg(steps), this));

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  form->addRow(buttons);
}

SettingsDialog::Values SettingsDialog::values() const {
  Values values;
  values.model_path = model_edit_->text().trimmed();
  values.device = device_combo_->currentData().toString();
  bool ok = false;
  values.seed = seed_edit_->text().toULongLong(&ok);
  return values;
}

}  // namespace strand::desktop
