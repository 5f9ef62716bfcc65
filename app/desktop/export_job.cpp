#include "export_job.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QSet>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "project_model.h"
#include "strand/error.h"

namespace strand::desktop {

namespace {

QString tr(const char* text, int n = -1) {
  return QCoreApplication::translate("Export", text, nullptr, n);
}

// "dir/clip.mov" + "main" -> "dir/clip-main.mov"; a sequence folder "dir/shots" ->
// "dir/shots-main".
QString pathWithSuffix(const QString& path, const QString& suffix, bool sequence) {
  if (sequence) return path + u'-' + suffix;
  const QFileInfo info(path);
  const QString ext = info.suffix();
  const QString base = QDir(info.path()).filePath(info.completeBaseName() + u'-' + suffix);
  return ext.isEmpty() ? base : base + u'.' + ext;
}

strand::ExportSelection selectionFor(const ExportRequest& request, const Branch& branch) {
  strand::ExportSelection selection;
  selection.scope = request.scope;
  selection.branch_id = branch.id;
  selection.in_frame = branch.in_frame;
  selection.out_frame = branch.out_frame;
  selection.segments.assign(request.segments.begin(), request.segments.end());
  return selection;
}

// Checks the request against the project before planning: the reasons a user can act on.
bool checkRequest(const ProjectModel& project, const ExportRequest& request,
                  const ExportProjectInfo& info, const strand::ExportPresetInfo& preset,
                  QString* error) {
  const Branch* branch = project.branch(request.branch_id);
  if (branch == nullptr) {
    *error = tr("The branch to export no longer exists.");
    return false;
  }
  if (info.native_fps <= 0) {
    *error = tr("The model's frame rate is unknown: load a model first.");
    return false;
  }
  if (!preset.available) {
    *error = tr("This build's FFmpeg has no %1 encoder.").arg(QString::fromStdString(preset.codec));
    return false;
  }
  if (request.output_path.trimmed().isEmpty()) {
    *error = tr("Choose where to save the export.");
    return false;
  }
  const QFileInfo output_info(request.output_path);
  if (!QFileInfo(output_info.absolutePath()).isDir()) {
    *error = tr("The folder %1 does not exist.").arg(output_info.absolutePath());
    return false;
  }
  if (request.rate.num < 0 || request.rate.den < 0 ||
      (request.rate.num == 0) != (request.rate.den == 0)) {
    *error = tr("The frame rate is not valid.");
    return false;
  }
  const QList<int> ids =
      request.scope == ExportScope::all_branches ? project.branchIds() : QList<int>{branch->id};
  if (std::all_of(ids.begin(), ids.end(), [&](int id) { return project.pathFrames(id) == 0; })) {
    *error = tr("Nothing to export: generate some frames first.");
    return false;
  }
  if (request.scope == ExportScope::in_out && branch->in_frame < 0 && branch->out_frame < 0) {
    *error = tr("Branch \"%1\" has no in or out point (I / O on the timeline).").arg(branch->name);
    return false;
  }
  if (request.scope == ExportScope::segments && request.segments.isEmpty()) {
    *error = tr("Choose at least one prompt segment.");
    return false;
  }
  return true;
}

// Shallow copies of the frames of every block the plan reads. false with *error when a block's
// frames are placeholders (still being rebuilt from their latents) or missing.
bool collectFrames(const ProjectModel& project, const strand::ExportPlan& plan,
                   ExportFrames* frames, QString* error) {
  const int fpb = project.framesPerBlock();
  for (const strand::ExportItem& item : plan.items) {
    for (const strand::FrameSpan& span : item.spans) {
      for (qint64 block = span.first / fpb; block * fpb < span.end; ++block) {
        if (frames->hasBlock(item.branch_id, block)) continue;
        const BlockRecord* record = project.pathBlock(item.branch_id, block);
        if (record == nullptr || record->frames.size() != fpb) {
          *error = tr("Frame %1 of branch \"%2\" has not been generated.")
                       .arg(block * fpb)
                       .arg(QString::fromStdString(item.branch_name));
          return false;
        }
        if (record->frames_missing) {
          *error = tr("Some frames of branch \"%1\" are still being rebuilt from their latents; "
                      "export again when they are back.")
                       .arg(QString::fromStdString(item.branch_name));
          return false;
        }
        frames->addBlock(item.branch_id, block, record->frames);
      }
    }
  }
  return true;
}

// The queue's name for a job.
QString jobName(const strand::ExportPlan& plan, const ExportRequest& request,
                const QString& first_path) {
  const strand::ExportItem& item = plan.items.front();
  const QString branch = QString::fromStdString(item.branch_name);
  QString name;
  switch (request.scope) {
    case ExportScope::branch:
      name = branch;
      break;
    case ExportScope::in_out:
      name = tr("%1, frames %2-%3")
                 .arg(branch)
                 .arg(item.spans.front().first)
                 .arg(item.spans.back().end - 1);
      break;
    case ExportScope::segments:
      name = tr("%1, %n segment(s)", int(request.segments.size())).arg(branch);
      break;
    case ExportScope::all_branches:
      return tr("Every branch (%n file(s))", int(plan.items.size()));
  }
  return tr("%1 → %2").arg(name, QFileInfo(first_path).fileName());
}

}  // namespace

const std::vector<ExportTargetInfo>& exportTargets() {
  static const std::vector<ExportTargetInfo> targets = {
      {ExportTarget::resolve_premiere,
       QStringLiteral("resolve"),
       tr("Edit in Resolve / Premiere"),
       {QStringLiteral("prores"), QStringLiteral("dnxhr"), QStringLiteral("dnxhr-hqx")},
       TimelineFormat::none},
      {ExportTarget::final_cut,
       QStringLiteral("finalcut"),
       tr("Final Cut"),
       {QStringLiteral("prores")},
       TimelineFormat::fcpxml},
      {ExportTarget::review,
       QStringLiteral("review"),
       tr("Review"),
       {QStringLiteral("h264")},
       TimelineFormat::none},
      {ExportTarget::archive,
       QStringLiteral("archive"),
       tr("Archive"),
       {QStringLiteral("ffv1")},
       TimelineFormat::none},
      {ExportTarget::image_sequence,
       QStringLiteral("sequence"),
       tr("Image sequence"),
       {QStringLiteral("png"), QStringLiteral("png16"), QStringLiteral("tiff"),
        QStringLiteral("exr")},
       TimelineFormat::none},
  };
  return targets;
}

const ExportTargetInfo& exportTargetInfo(ExportTarget target) {
  for (const ExportTargetInfo& info : exportTargets()) {
    if (info.target == target) return info;
  }
  return exportTargets().front();
}

const ExportTargetInfo* findExportTarget(const QString& key) {
  for (const ExportTargetInfo& info : exportTargets()) {
    if (info.key == key) return &info;
  }
  return nullptr;
}

QString timelineFormatKey(TimelineFormat format) {
  switch (format) {
    case TimelineFormat::otio:
      return QStringLiteral("otio");
    case TimelineFormat::fcpxml:
      return QStringLiteral("fcpxml");
    case TimelineFormat::edl:
      return QStringLiteral("edl");
    case TimelineFormat::none:
      break;
  }
  return {};
}

TimelineFormat timelineFormatFromKey(const QString& key) {
  for (TimelineFormat format :
       {TimelineFormat::otio, TimelineFormat::fcpxml, TimelineFormat::edl}) {
    if (timelineFormatKey(format) == key) return format;
  }
  return TimelineFormat::none;
}

strand::ExportSettings writerSettings(const ExportRequest& request) {
  strand::ExportSettings settings;
  settings.preset = request.format.toStdString();
  settings.target_rate = request.rate;
  if (request.size.isValid() && !request.size.isEmpty()) {
    settings.width = request.size.width();
    settings.height = request.size.height();
  }
  return settings;
}

QString withPresetExtension(const QString& path, const strand::ExportPresetInfo& preset) {
  if (path.isEmpty()) return path;
  QString trimmed = path;
  while (trimmed.size() > 1 && trimmed.endsWith(u'/')) trimmed.chop(1);
  const QFileInfo info(trimmed);
  // Only our own extensions are replaced: "take.v2" keeps its ".v2".
  static const QSet<QString> known = {
      QStringLiteral("mov"), QStringLiteral("mp4"),  QStringLiteral("mkv"), QStringLiteral("png"),
      QStringLiteral("tif"), QStringLiteral("tiff"), QStringLiteral("exr")};
  QString base = trimmed;
  if (known.contains(info.suffix().toLower()))
    base = QDir(info.path()).filePath(info.completeBaseName());
  return preset.sequence ? base : base + QString::fromStdString(preset.extension);
}

strand::Project toCoreProject(const ProjectModel& project, const ExportProjectInfo& info) {
  strand::Project core;
  core.folder = info.folder.toStdString();
  core.model_path = info.model_path.toStdString();
  core.model_id = info.model_id.toStdString();
  core.frames_per_block = project.framesPerBlock();
  core.fps = info.native_fps;
  core.next_branch_id = project.nextBranchId();
  core.active_branch = project.activeBranch();
  for (const auto& [id, branch] : project.branches()) {
    strand::ProjectBranch& b = core.branches.emplace_back();
    b.id = id;
    b.name = branch.name.toStdString();
    b.parent_id = branch.parent_id;
    b.fork_block = branch.fork_block;
    b.seed = branch.seed;
    b.prompt = branch.prompt.toStdString();
    b.in_frame = branch.in_frame;
    b.out_frame = branch.out_frame;
    b.recached_end_key = branch.recached_key.toStdString();
    for (const BlockRecord& block : branch.blocks) {
      b.blocks.push_back(
          {block.index, block.key.toStdString(), block.prompt.toStdString(), block.seed});
    }
  }
  return core;
}

void ExportFrames::addBlock(int branch_id, qint64 block_index, QList<QImage> frames) {
  blocks_[{branch_id, block_index}] = std::move(frames);
}

bool ExportFrames::hasBlock(int branch_id, qint64 block_index) const {
  return blocks_.count({branch_id, block_index}) != 0;
}

QImage ExportFrames::image(int branch_id, qint64 path_frame) const {
  const auto it = blocks_.find({branch_id, path_frame / frames_per_block_});
  const qint64 f = path_frame % frames_per_block_;
  return it == blocks_.end() || f >= it->second.size() ? QImage() : it->second[f];
}

strand::Frame ExportFrames::frame(int branch_id, qint64 path_frame) const {
  const QImage source = image(branch_id, path_frame);
  if (source.isNull()) {
    throw strand::Error(strand::ErrorKind::invalid_argument,
                        "frame " + std::to_string(path_frame) + " of branch " +
                            std::to_string(branch_id) + " was not planned for this export");
  }
  return toEngineFrame(source, path_frame);
}

bool planExport(const ProjectModel& project, const ExportRequest& request,
                const ExportProjectInfo& info, ExportJobSpec* job, QString* error) {
  *job = {};
  strand::ExportPresetInfo preset;
  try {
    preset = strand::find_preset(request.format.toStdString());
  } catch (const std::exception& e) {
    *error = QString::fromUtf8(e.what());
    return false;
  }
  if (!checkRequest(project, request, info, preset, error)) return false;

  try {
    job->plan = strand::plan_export(toCoreProject(project, info),
                                    selectionFor(request, *project.branch(request.branch_id)));
  } catch (const std::exception& e) {
    *error = QString::fromUtf8(e.what());
    return false;
  }
  job->frames = ExportFrames(project.framesPerBlock());
  if (!collectFrames(project, job->plan, &job->frames, error)) return false;

  // Every branch: one file each, NAME-STEM.EXT (or a folder NAME-STEM) next to the chosen path.
  const QString absolute_path = QFileInfo(request.output_path).absoluteFilePath();
  for (const strand::ExportItem& item : job->plan.items) {
    job->output_paths << (request.scope == ExportScope::all_branches
                              ? pathWithSuffix(absolute_path,
                                               QString::fromStdString(item.file_stem),
                                               preset.sequence)
                              : absolute_path);
  }
  job->name = jobName(job->plan, request, job->output_paths.front());
  job->settings = writerSettings(request);
  job->source_rate = {info.native_fps, 1};

  const strand::ExportItem& first = job->plan.items.front();
  job->source_size = job->frames.image(first.branch_id, first.path_frame(0)).size();
  const int out_width = job->settings.width > 0 ? job->settings.width : job->source_size.width();
  const int out_height =
      job->settings.height > 0 ? job->settings.height : job->source_size.height();
  if (out_width < preset.min_width || out_height < preset.min_height) {
    *error = tr("%1 needs frames of at least %2x%3: choose a larger size (upscale).")
                 .arg(QString::fromStdString(preset.description))
                 .arg(preset.min_width)
                 .arg(preset.min_height);
    return false;
  }
  for (const strand::ExportItem& item : job->plan.items) {
    for (const strand::FrameSpan& span : item.spans) {
      for (qint64 f = span.first; f < span.end; ++f) {
        if (job->frames.image(item.branch_id, f).size() != job->source_size) {
          *error = tr("The frames to export do not all have the same size.");
          return false;
        }
      }
    }
  }

  job->timeline = request.timeline;
  if (request.timeline != TimelineFormat::none) {
    job->timeline_path = QString::fromStdString(
        strand::timeline_path_for(absolute_path.toStdString(), preset.sequence,
                                  timelineFormatKey(request.timeline).toStdString()));
  }
  return true;
}

qint64 outputFrames(qint64 source_frames, strand::FrameRate source, strand::FrameRate target) {
  return target.num > 0 && target.den > 0
             ? strand::conformed_frame_count(source_frames, source, target)
             : source_frames;
}

qint64 outputFrameCount(const ExportJobSpec& job) {
  qint64 total = 0;
  for (const strand::ExportItem& item : job.plan.items)
    total += outputFrames(item.frames, job.source_rate, job.settings.target_rate);
  return total;
}

strand::Frame toEngineFrame(const QImage& image, qint64 index) {
  const QImage rgb = image.format() == QImage::Format_RGB888
                         ? image
                         : image.convertToFormat(QImage::Format_RGB888);
  strand::Frame frame;
  frame.width = rgb.width();
  frame.height = rgb.height();
  frame.index = index;
  const size_t row_bytes = static_cast<size_t>(frame.width) * 3;
  frame.rgb.resize(row_bytes * static_cast<size_t>(frame.height));
  // QImage rows are 4-byte aligned; engine frames are packed.
  for (int y = 0; y < frame.height; ++y) {
    std::memcpy(frame.rgb.data() + static_cast<size_t>(y) * row_bytes, rgb.constScanLine(y),
                row_bytes);
  }
  return frame;
}

QString aboutLeftText(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return {};
  const auto rounded = static_cast<qint64>(std::ceil(seconds));
  if (rounded < 60) return tr("about %1 s left").arg(std::max<qint64>(rounded, 1));
  const qint64 minutes = (rounded + 30) / 60;
  if (minutes < 60) return tr("about %1 min left").arg(minutes);
  return tr("about %1 h %2 min left").arg(minutes / 60).arg(minutes % 60);
}

}  // namespace strand::desktop
