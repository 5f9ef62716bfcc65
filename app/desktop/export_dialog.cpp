#include "export_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QStandardPaths>

#include "project_model.h"

namespace strand::desktop {

namespace {

const QString kGroup = QStringLiteral("export");

struct ScopeChoice {
  ExportScope scope;
  const char* key;
  const char* label;
};
constexpr ScopeChoice kScopes[] = {
    {ExportScope::branch, "branch", QT_TRANSLATE_NOOP("ExportDialog", "Current branch")},
    {ExportScope::in_out, "in_out", QT_TRANSLATE_NOOP("ExportDialog", "In/out range")},
    {ExportScope::segments, "segments",
     QT_TRANSLATE_NOOP("ExportDialog", "Selected prompt segments")},
    {ExportScope::all_branches, "every_branch",
     QT_TRANSLATE_NOOP("ExportDialog", "Every branch (one file each)")},
};

// Frame-rate choices: the value is what strand::parse_frame_rate reads.
constexpr const char* kRates[] = {"native", "23.976", "24", "25", "30"};

void setItemEnabled(QComboBox* combo, int row, bool enabled) {
  if (auto* model = qobject_cast<QStandardItemModel*>(combo->model())) {
    if (QStandardItem* item = model->item(row)) item->setEnabled(enabled);
  }
}

bool itemEnabled(const QComboBox* combo, int row) {
  const auto* model = qobject_cast<const QStandardItemModel*>(combo->model());
  return model == nullptr || model->item(row) == nullptr || model->item(row)->isEnabled();
}

QString safeFileName(const QString& name) {
  QString out;
  for (const QChar c : name.trimmed()) {
    out += c.isLetterOrNumber() || c == u'-' || c == u'_' || c == u' ' ? c : QChar(u'_');
  }
  return out.trimmed().isEmpty() ? QStringLiteral("strand-export") : out.trimmed();
}

}  // namespace

ExportDialog::ExportDialog(Context context, QWidget* parent)
    : QDialog(parent), context_(std::move(context)) {
  setWindowTitle(tr("Export"));
  auto* form = new QFormLayout(this);

  target_combo_ = new QComboBox(this);
  for (const ExportTargetInfo& info : exportTargets()) target_combo_->addItem(info.label, info.key);
  form->addRow(tr("Preset:"), target_combo_);

  format_combo_ = new QComboBox(this);
  form->addRow(tr("Format:"), format_combo_);

  scope_combo_ = new QComboBox(this);
  for (const ScopeChoice& choice : kScopes) {
    scope_combo_->addItem(tr(choice.label), QString::fromLatin1(choice.key));
  }
  form->addRow(tr("Export:"), scope_combo_);
  segment_list_ = new QListWidget(this);
  segment_list_->setMaximumHeight(110);
  segment_list_->setToolTip(
      tr("Tick the prompt segments to export; they are joined in timeline order"));
  form->addRow(QString(), segment_list_);

  rate_combo_ = new QComboBox(this);
  for (const char* rate : kRates) {
    const QString value = QString::fromLatin1(rate);
    rate_combo_->addItem(value == QStringLiteral("native")
                             ? tr("Native (%1 fps)").arg(context_.info.native_fps)
                             : tr("%1 fps").arg(value),
                         value);
  }
  rate_combo_->setToolTip(
      tr("Other rates repeat or drop frames (no blending), keeping the duration"));
  form->addRow(tr("Frame rate:"), rate_combo_);

  auto* size_row = new QHBoxLayout();
  resize_check_ = new QCheckBox(tr("Resize to"), this);
  width_spin_ = new QSpinBox(this);
  height_spin_ = new QSpinBox(this);
  for (QSpinBox* spin : {width_spin_, height_spin_}) {
    spin->setRange(16, 8192);
    spin->setSuffix(tr(" px"));
  }
  size_row->addWidget(resize_check_);
  size_row->addWidget(width_spin_);
  size_row->addWidget(new QLabel(QStringLiteral("×"), this));
  size_row->addWidget(height_spin_);
  size_row->addStretch(1);
  form->addRow(tr("Size:"), size_row);

  timeline_combo_ = new QComboBox(this);
  timeline_combo_->addItem(tr("None"), QString());
  timeline_combo_->addItem(tr("OpenTimelineIO (.otio)"), QStringLiteral("otio"));
  timeline_combo_->addItem(tr("Final Cut Pro XML (.fcpxml)"), QStringLiteral("fcpxml"));
  timeline_combo_->addItem(tr("CMX 3600 EDL (.edl)"), QStringLiteral("edl"));
  timeline_combo_->setToolTip(
      tr("Also write a timeline next to the media, with prompt changes and "
         "branch points as markers"));
  form->addRow(tr("Timeline:"), timeline_combo_);

  auto* path_row = new QHBoxLayout();
  path_edit_ = new QLineEdit(this);
  auto* browse_button = new QPushButton(tr("Browse…"), this);
  path_row->addWidget(path_edit_, 1);
  path_row->addWidget(browse_button);
  form->addRow(tr("Save to:"), path_row);

  summary_label_ = new QLabel(this);
  summary_label_->setWordWrap(true);
  form->addRow(summary_label_);
  message_label_ = new QLabel(this);
  message_label_->setWordWrap(true);
  message_label_->setStyleSheet(QStringLiteral("QLabel { color: #ff8a80; }"));
  message_label_->hide();
  form->addRow(message_label_);

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  add_button_ = buttons->addButton(tr("Add to Queue"), QDialogButtonBox::AcceptRole);
  add_button_->setDefault(true);
  connect(buttons, &QDialogButtonBox::accepted, this, &ExportDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  form->addRow(buttons);

  // Project facts: which scopes apply, the segments, the source size.
  const ProjectModel* project = context_.project;
  const Branch* branch = project != nullptr ? project->branch(context_.branch_id) : nullptr;
  setItemEnabled(scope_combo_, 1,
                 branch != nullptr && (branch->in_frame >= 0 || branch->out_frame >= 0));
  if (branch != nullptr) {
    const int fpb = project->framesPerBlock();
    for (const PromptSegment& segment : project->promptSegments(context_.branch_id)) {
      auto* item = new QListWidgetItem(tr("frames %1-%2: %3")
                                           .arg(segment.first_block * fpb)
                                           .arg((segment.last_block + 1) * fpb - 1)
                                           .arg(segment.prompt),
                                       segment_list_);
      item->setFlags(Qt::ItemIsEnabled | Qt::ItemIsUserCheckable);
      item->setCheckState(Qt::Unchecked);
    }
  }
  QSize source_size(256, 256);
  if (branch != nullptr && project->pathFrames(context_.branch_id) > 0) {
    source_size = project->frame(context_.branch_id, 0).size();
  }
  width_spin_->setValue(source_size.width() * 2);
  height_spin_->setValue(source_size.height() * 2);

  connect(target_combo_, &QComboBox::currentIndexChanged, this, [this] {
    if (loading_) return;
    fillFormats();
    // The preset's own timeline (FCPXML for Final Cut), or what was used with it last time.
    const ExportTargetInfo* info = findExportTarget(target_combo_->currentData().toString());
    QSettings settings;
    settings.beginGroup(kGroup);
    const QString timeline = settings
                                 .value(QStringLiteral("timeline/") + info->key,
                                        timelineFormatKey(info->default_timeline))
                                 .toString();
    timeline_combo_->setCurrentIndex(std::max(timeline_combo_->findData(timeline), 0));
    updateSummary();
  });
  connect(format_combo_, &QComboBox::currentIndexChanged, this, [this] {
    if (loading_) return;
    path_edit_->setText(withPresetExtension(path_edit_->text(), currentPreset()));
    updateSummary();
  });
  connect(scope_combo_, &QComboBox::currentIndexChanged, this, &ExportDialog::updateSummary);
  connect(segment_list_, &QListWidget::itemChanged, this, &ExportDialog::updateSummary);
  connect(rate_combo_, &QComboBox::currentIndexChanged, this, &ExportDialog::updateSummary);
  connect(resize_check_, &QCheckBox::toggled, this, &ExportDialog::updateSummary);
  connect(width_spin_, &QSpinBox::valueChanged, this, &ExportDialog::updateSummary);
  connect(height_spin_, &QSpinBox::valueChanged, this, &ExportDialog::updateSummary);
  connect(timeline_combo_, &QComboBox::currentIndexChanged, this, &ExportDialog::updateSummary);
  connect(path_edit_, &QLineEdit::textChanged, this, &ExportDialog::updateSummary);
  connect(browse_button, &QPushButton::clicked, this, &ExportDialog::browse);

  loadSettings();
  updateSummary();
}

strand::ExportPresetInfo ExportDialog::currentPreset() const {
  try {
    return strand::find_preset(format_combo_->currentData().toString().toStdString());
  } catch (const std::exception&) {
    return strand::find_preset("prores");
  }
}

void ExportDialog::fillFormats() {
  const ExportTargetInfo* info = findExportTarget(target_combo_->currentData().toString());
  if (info == nullptr) info = &exportTargets().front();
  QSettings settings;
  settings.beginGroup(kGroup);
  const QString remembered = settings.value(QStringLiteral("format/") + info->key).toString();
  const bool was_loading = loading_;
  loading_ = true;
  format_combo_->clear();
  int choice = -1;
  for (const QString& name : info->formats) {
    const strand::ExportPresetInfo preset = strand::find_preset(name.toStdString());
    QString label = QString::fromStdString(preset.description);
    if (!preset.available) label += tr(" (not in this FFmpeg)");
    format_combo_->addItem(label, name);
    const int row = format_combo_->count() - 1;
    setItemEnabled(format_combo_, row, preset.available);
    if (preset.available && (choice < 0 || name == remembered)) choice = row;
  }
  format_combo_->setCurrentIndex(std::max(choice, 0));
  loading_ = was_loading;
  path_edit_->setText(withPresetExtension(path_edit_->text(), currentPreset()));
}

void ExportDialog::setTarget(ExportTarget target) {
  target_combo_->setCurrentIndex(
      std::max(target_combo_->findData(exportTargetInfo(target).key), 0));
}

void ExportDialog::loadSettings() {
  QSettings settings;
  settings.beginGroup(kGroup);
  loading_ = true;
  const QString target =
      settings.value(QStringLiteral("target"), exportTargets().front().key).toString();
  target_combo_->setCurrentIndex(std::max(target_combo_->findData(target), 0));
  const ExportTargetInfo* info = findExportTarget(target_combo_->currentData().toString());

  const int scope = scope_combo_->findData(
      settings.value(QStringLiteral("scope"), QStringLiteral("branch")).toString());
  scope_combo_->setCurrentIndex(scope >= 0 && itemEnabled(scope_combo_, scope) ? scope : 0);
  rate_combo_->setCurrentIndex(
      std::max(rate_combo_->findData(
                   settings.value(QStringLiteral("rate"), QStringLiteral("native")).toString()),
               0));
  resize_check_->setChecked(settings.value(QStringLiteral("resize"), false).toBool());
  if (settings.contains(QStringLiteral("width")))
    width_spin_->setValue(settings.value(QStringLiteral("width")).toInt());
  if (settings.contains(QStringLiteral("height")))
    height_spin_->setValue(settings.value(QStringLiteral("height")).toInt());
  const QString timeline =
      settings
          .value(QStringLiteral("timeline/") + info->key, timelineFormatKey(info->default_timeline))
          .toString();
  timeline_combo_->setCurrentIndex(std::max(timeline_combo_->findData(timeline), 0));

  QString folder = settings.value(QStringLiteral("folder")).toString();
  if (folder.isEmpty() || !QFileInfo(folder).isDir()) folder = context_.default_folder;
  if (folder.isEmpty() || !QFileInfo(folder).isDir()) {
    folder = QStandardPaths::writableLocation(QStandardPaths::MoviesLocation);
  }
  if (folder.isEmpty() || !QFileInfo(folder).isDir()) folder = QDir::homePath();
  path_edit_->setText(QDir(folder).filePath(safeFileName(context_.base_name)));
  fillFormats();
  loading_ = false;
}

void ExportDialog::saveSettings() const {
  QSettings settings;
  settings.beginGroup(kGroup);
  const QString target = target_combo_->currentData().toString();
  settings.setValue(QStringLiteral("target"), target);
  settings.setValue(QStringLiteral("format/") + target, format_combo_->currentData());
  settings.setValue(QStringLiteral("timeline/") + target, timeline_combo_->currentData());
  settings.setValue(QStringLiteral("scope"), scope_combo_->currentData());
  settings.setValue(QStringLiteral("rate"), rate_combo_->currentData());
  settings.setValue(QStringLiteral("resize"), resize_check_->isChecked());
  settings.setValue(QStringLiteral("width"), width_spin_->value());
  settings.setValue(QStringLiteral("height"), height_spin_->value());
  settings.setValue(QStringLiteral("folder"),
                    QFileInfo(path_edit_->text().trimmed()).absolutePath());
}

ExportRequest ExportDialog::request() const {
  ExportRequest request;
  if (const ExportTargetInfo* info = findExportTarget(target_combo_->currentData().toString())) {
    request.target = info->target;
  }
  request.format = format_combo_->currentData().toString();
  const QString scope = scope_combo_->currentData().toString();
  for (const ScopeChoice& choice : kScopes) {
    if (scope == QLatin1String(choice.key)) request.scope = choice.scope;
  }
  request.branch_id = context_.branch_id;
  for (int row = 0; row < segment_list_->count(); ++row) {
    if (segment_list_->item(row)->checkState() == Qt::Checked) request.segments << row;
  }
  try {
    request.rate = strand::parse_frame_rate(rate_combo_->currentData().toString().toStdString());
  } catch (const std::exception&) {
    request.rate = {0, 0};
  }
  if (resize_check_->isChecked()) request.size = QSize(width_spin_->value(), height_spin_->value());
  request.timeline = timelineFormatFromKey(timeline_combo_->currentData().toString());
  request.output_path = path_edit_->text().trimmed();
  return request;
}

void ExportDialog::updateSummary() {
  if (loading_) return;
  segment_list_->setEnabled(scope_combo_->currentData().toString() == QLatin1String("segments"));
  width_spin_->setEnabled(resize_check_->isChecked());
  height_spin_->setEnabled(resize_check_->isChecked());
  if (context_.project == nullptr) return;
  ExportJobSpec job;
  QString error;
  if (!planExport(*context_.project, request(), context_.info, &job, &error)) {
    summary_label_->setText(error);
    return;
  }
  const strand::ExportSettings& settings = job.settings;
  const int width = settings.width > 0 ? settings.width : job.source_size.width();
  const int height = settings.height > 0 ? settings.height : job.source_size.height();
  const strand::FrameRate rate =
      settings.target_rate.num > 0 ? settings.target_rate : job.source_rate;
  QString text = tr("%n file(s), %1 frames at %2 fps, %3×%4", nullptr, int(job.output_paths.size()))
                     .arg(outputFrameCount(job))
                     .arg(rate.fps(), 0, 'g', 5)
                     .arg(width)
                     .arg(height);
  if (!job.timeline_path.isEmpty())
    text += tr("; timeline %1").arg(QFileInfo(job.timeline_path).fileName());
  summary_label_->setText(text);
}

void ExportDialog::browse() {
  const strand::ExportPresetInfo preset = currentPreset();
  const QString filter = preset.sequence ? tr("Folder for the image sequence (*)")
                                         : tr("%1 files (*%2)")
                                               .arg(QString::fromStdString(preset.container),
                                                    QString::fromStdString(preset.extension));
  const QString path =
      QFileDialog::getSaveFileName(this, tr("Export to"), path_edit_->text(), filter, nullptr,
                                   QFileDialog::DontConfirmOverwrite);
  if (!path.isEmpty()) path_edit_->setText(withPresetExtension(path, preset));
}

void ExportDialog::accept() {
  ExportJobSpec job;
  QString error;
  if (!planExport(*context_.project, request(), context_.info, &job, &error)) {
    message_label_->setText(error);
    message_label_->show();
    return;
  }
  QStringList existing;
  for (const QString& path : job.output_paths) {
    if (QFileInfo::exists(path)) existing << path;
  }
  if (!job.timeline_path.isEmpty() && QFileInfo::exists(job.timeline_path))
    existing << job.timeline_path;
  if (!existing.isEmpty()) {
    const bool replace =
        confirm_overwrite_
            ? confirm_overwrite_(existing)
            : QMessageBox::question(
                  this, tr("Replace files?"),
                  tr("These files exist and will be replaced when the export completes:\n%1")
                      .arg(existing.join(u'\n'))) == QMessageBox::Yes;
    if (!replace) return;
  }
  message_label_->hide();
  job_ = std::move(job);
  if (remember_settings_) saveSettings();
  QDialog::accept();
}

}  // namespace strand::desktop
