// What to export from a project (issue 5, section 2): a whole branch, an in/out range, selected
// prompt segments, or every branch (one file each), turned into a plan of frame spans with their
// metadata and timeline markers; then exported through ExportWriter from any frame source.
//
// Used by strand-cli export and meant for the desktop app's export dialog:
//
//   strand::Project project = ...;  // read_project(folder), or filled from the app's model
//   strand::ExportSelection selection;
//   selection.scope = strand::ExportScope::in_out;
//   selection.branch_id = 3;
//   selection.in_frame = 16;  selection.out_frame = 63;   // inclusive, like the app's marks
//   const strand::ExportPlan plan = strand::plan_export(project, selection);
//   for (const strand::ExportItem& item : plan.items) {
//     strand::export_item(item, frame_source, source_rate, path_for(item), settings, control);
//   }
//   strand::write_timeline(timeline_path, "otio",
//                          strand::plan_timeline(plan, media_paths, source_rate, output_rate, w,
//                          h));
//
// Frame numbers: "path frames" count from 0 along a branch's path from the root (see
// strand/project.h). "Item frames" count the frames of one export item from 0, in the order they
// are written (the spans one after another); its metadata and markers use item frames at the
// source rate. plan_timeline converts them to the conformed output rate.
//
// Planning is pure (no I/O) and cheap; exporting is synchronous on the calling thread, so a GUI
// runs export_item on a worker thread and cancels through ExportControl::cancel.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "strand/export.h"
#include "strand/project.h"

namespace strand {

enum class ExportScope {
  branch = 1,    // the whole path of one branch
  in_out,        // frames [in_frame, out_frame] (inclusive) of one branch's path
  segments,      // chosen prompt segments (Project::prompt_segments) of one branch, in path order
  all_branches,  // every branch's whole path, one item each (ascending branch id)
};

struct ExportSelection {
  ExportScope scope = ExportScope::branch;
  int branch_id = 0;          // 0: the project's active branch (ignored by all_branches)
  int64_t in_frame = -1;      // in_out: -1 = from the start
  int64_t out_frame = -1;     // in_out: -1 = to the end
  std::vector<int> segments;  // segments: indices from 0 into prompt_segments(branch_id); any
                              // order, no duplicates; exported in path order
};

// Path frames [first, end) of one branch.
struct FrameSpan {
  int64_t first = 0;
  int64_t end = 0;
  [[nodiscard]] int64_t size() const { return end - first; }
  friend bool operator==(const FrameSpan&, const FrameSpan&) = default;
};

// One output file.
struct ExportItem {
  int branch_id = 0;
  std::string branch_name;
  std::string file_stem;         // file-safe name, unique within the plan ("main", "take_2", ...)
  std::vector<FrameSpan> spans;  // in path order, not overlapping, none empty
  int64_t frames = 0;            // total frames of the spans (item frames 0 .. frames-1)
  ExportMetadata metadata;       // model, branch, seed, prompt schedule in item frames
  std::vector<TimelineMarker> markers;  // branch points and prompt changes, in item frames
  // Item frame -> path frame.
  [[nodiscard]] int64_t path_frame(int64_t item_frame) const;
};

struct ExportPlan {
  std::vector<ExportItem> items;
  std::string name = "Strand";  // timeline name (project folder name when read from disk)
};

// Turns a selection into a plan. Error(invalid_argument), with one line saying what is wrong, for
// an unknown branch, a branch with no frames, an in/out outside the path or reversed, a segment
// index out of range or repeated, or an empty segment list.
[[nodiscard]] ExportPlan plan_export(const Project& project, const ExportSelection& selection);

// Parses "0,2,5" (what `--segments` takes) into indices. Error(invalid_argument).
[[nodiscard]] std::vector<int> parse_segment_list(const std::string& text);

// One editor timeline for an exported plan: each item's media (media_paths[i], absolute) placed
// one after another on one track, one clip per span, with every item's markers. `source_rate` is
// the project's frame rate, `output_rate` the rate the media were written at ({0,0}: native).
[[nodiscard]] TimelineDescription plan_timeline(const ExportPlan& plan,
                                                const std::vector<std::string>& media_paths,
                                                FrameRate source_rate, FrameRate output_rate,
                                                int width, int height);

// Supplies the frame at `path_frame` of branch `branch_id` (RGB8, all of one size). The CLI reads
// the project folder (ProjectFrameReader::path_frame); the app can hand out frames it holds.
// May throw strand::Error; the export is then aborted and the error passed on.
using ExportFrameSource = std::function<Frame(int branch_id, int64_t path_frame)>;

struct ExportControl {
  // Set (from any thread) to stop: export_item throws Error(cancelled) before the next frame and
  // leaves no output. Null: not cancellable.
  const std::atomic<bool>* cancel = nullptr;
  // Called after each source frame: (frames done, frames total). Runs on the exporting thread.
  std::function<void(int64_t done, int64_t total)> progress;
};

// What export_item wrote: the writer's output size and rate (after the preset's even-size crop,
// upscaling and conform) and its output frame count; what a timeline of the media must state.
struct ExportedMedia {
  int width = 0;
  int height = 0;
  FrameRate rate{0, 0};
  int64_t frames = 0;
};

// Writes `item` to `path` with an ExportWriter (see strand/export.h for paths, .part files and
// the sidecar). The item's metadata is written unless settings.metadata already names a model.
// On any error or cancel the partial output is removed and the error rethrown; an earlier
// complete file at `path` is then left as it was.
ExportedMedia export_item(const ExportItem& item, const ExportFrameSource& source,
                          FrameRate source_rate, const std::string& path,
                          const ExportSettings& settings, const ExportControl& control = {});

// Where the timeline of media at `media_path` goes: "clip.mov" -> "clip.otio", a sequence folder
// "seq" (or "seq/") -> "seq.otio". `format` is the extension without its dot.
[[nodiscard]] std::string timeline_path_for(const std::string& media_path, bool sequence,
                                            const std::string& format);

// A file-safe stem for a branch name: letters, digits, '-', '_' and '.' kept, anything else '_',
// at most 64 bytes, never empty or starting with '.'.
[[nodiscard]] std::string file_stem_for(const std::string& name);

}  // namespace strand
