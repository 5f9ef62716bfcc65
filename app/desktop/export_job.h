// What the desktop app exports and how: the export dialog's presets (each maps to an ExportWriter
// preset of strand/export.h and a default timeline format), the user's choice (ExportRequest),
// and the job built from the project (ExportJobSpec) that the ExportQueue runs on a worker thread.
//
// What to export (whole branch, in/out range, selected prompt segments, every branch = one file
// each) is planned by the core (strand::plan_export, strand/export_plan.h) on the GUI thread, from
// the ProjectModel converted to a strand::Project: the app and `strand-cli export` write the same
// frames, metadata, markers and timeline for the same project. A job holds shallow copies of the
// planned blocks' frames: blocks are immutable once recorded and QImage is implicitly shared, so
// the copy costs no pixels, the worker thread only reads it, and the generating engine is never
// touched.
#pragma once
#include <QImage>
#include <QList>
#include <QSize>
#include <QString>
#include <QStringList>
#include <map>
#include <utility>
#include <vector>

#include "strand/export.h"
#include "strand/export_plan.h"
#include "strand/project.h"

namespace strand::desktop {

class ProjectModel;

// The dialog's presets, named for where the file goes next.
enum class ExportTarget {
  resolve_premiere = 1,  // ProRes 422 HQ (DNxHR offered too)
  final_cut,             // ProRes 422 HQ + FCPXML
  review,                // H.264 MP4
  archive,               // FFV1 MKV (lossless)
  image_sequence,        // PNG / 16-bit PNG / TIFF / EXR
};

enum class TimelineFormat { none = 1, otio, fcpxml, edl };

// Whole branch, in/out, segments or every branch: the core's selection kinds.
using ExportScope = strand::ExportScope;

struct ExportTargetInfo {
  ExportTarget target;
  QString key;          // stable identifier stored in QSettings
  QString label;        // shown in the dialog
  QStringList formats;  // ExportWriter presets offered; the first is the default
  TimelineFormat default_timeline;
};

// Every target in dialog order.
[[nodiscard]] const std::vector<ExportTargetInfo>& exportTargets();
[[nodiscard]] const ExportTargetInfo& exportTargetInfo(ExportTarget target);
// nullptr for an unknown key.
[[nodiscard]] const ExportTargetInfo* findExportTarget(const QString& key);

// "" / "otio" / "fcpxml" / "edl" (the value write_timeline takes) and back (unknown: none).
[[nodiscard]] QString timelineFormatKey(TimelineFormat format);
[[nodiscard]] TimelineFormat timelineFormatFromKey(const QString& key);

// What the user asked for.
struct ExportRequest {
  ExportTarget target = ExportTarget::resolve_premiere;
  QString format = QStringLiteral("prores");  // ExportWriter preset name
  ExportScope scope = ExportScope::branch;
  int branch_id = 1;             // in_out uses this branch's in/out marks
  QList<int> segments;           // indices into promptSegments(branch_id) (scope segments)
  strand::FrameRate rate{0, 0};  // {0, 0}: native
  QSize size;                    // invalid / empty: source size
  TimelineFormat timeline = TimelineFormat::none;
  QString output_path;  // a file, or the folder of an image sequence
};

// The writer settings of a request (preset, conform rate, size); each plan item brings its
// metadata.
[[nodiscard]] strand::ExportSettings writerSettings(const ExportRequest& request);

// `path` with its extension set to the preset's (files), or without one (sequences: a folder).
[[nodiscard]] QString withPresetExtension(const QString& path,
                                          const strand::ExportPresetInfo& preset);

// What the app knows of a project beyond its ProjectModel, written into the export metadata as
// strand-cli writes it from project.json.
struct ExportProjectInfo {
  QString folder;      // the project folder; empty while untitled
  QString model_path;  // the model file the project names (ProjectMeta::model_path)
  QString model_id;    // its weights hash
  int native_fps = 0;  // the model's frame rate
};

// The ProjectModel as the core's plain project (structure only; frames are not copied).
[[nodiscard]] strand::Project toCoreProject(const ProjectModel& project,
                                            const ExportProjectInfo& info);

// The frames a job exports: shallow copies of the planned path blocks, keyed by (branch, block
// index on its path), served as engine frames to strand::export_item on the worker thread.
class ExportFrames {
 public:
  ExportFrames() = default;
  explicit ExportFrames(int frames_per_block) : frames_per_block_(frames_per_block) {}
  void addBlock(int branch_id, qint64 block_index, QList<QImage> frames);
  [[nodiscard]] bool hasBlock(int branch_id, qint64 block_index) const;
  // The frame at `path_frame` of branch `branch_id`; null when it was not planned.
  [[nodiscard]] QImage image(int branch_id, qint64 path_frame) const;
  // The same as an engine frame (an ExportFrameSource); Error(invalid_argument) when not planned.
  [[nodiscard]] strand::Frame frame(int branch_id, qint64 path_frame) const;

 private:
  int frames_per_block_ = 1;
  std::map<std::pair<int, qint64>, QList<QImage>> blocks_;
};

struct ExportJobSpec {
  QString name;                     // shown in the queue
  strand::ExportPlan plan;          // from strand::plan_export: one item per media file
  QStringList output_paths;         // final path of each item (file, or sequence folder), absolute
  strand::ExportSettings settings;  // preset, conform rate, size (metadata: each item's)
  strand::FrameRate source_rate{0, 0};
  QSize source_size;
  ExportFrames frames;
  TimelineFormat timeline = TimelineFormat::none;
  QString timeline_path;  // empty when timeline == none
};

// Builds the job for `request` from `project` (GUI thread) with strand::plan_export. Returns false
// with *error (one sentence for the user) when there is nothing to export, the choice does not
// fit the project (no in/out set, no segment chosen, frames still being rebuilt), the model's
// frame rate is unknown, the preset is not in this FFmpeg, or the size is too small for it.
// Nothing is written.
bool planExport(const ProjectModel& project, const ExportRequest& request,
                const ExportProjectInfo& info, ExportJobSpec* job, QString* error);

// Output frames the job writes in all (after conforming to the target rate).
[[nodiscard]] qint64 outputFrameCount(const ExportJobSpec& job);

// Output frames of `source_frames` frames at `source` conformed to `target` ({0, 0}: native).
[[nodiscard]] qint64 outputFrames(qint64 source_frames, strand::FrameRate source,
                                  strand::FrameRate target);

// A QImage as an engine frame (tightly packed RGB8).
[[nodiscard]] strand::Frame toEngineFrame(const QImage& image, qint64 index);

// "about 40 s left", "about 3 min left", "about 2 h 5 min left"; empty for a negative value.
[[nodiscard]] QString aboutLeftText(double seconds);

}  // namespace strand::desktop
