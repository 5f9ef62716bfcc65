// Export selection and execution (see strand/export_plan.h).
#include "strand/export_plan.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <set>

#include "strand/error.h"

namespace strand {
namespace {

[[noreturn]] void bad(const std::string& message) {
  throw Error(ErrorKind::invalid_argument, message);
}

// A marker name on one line, short enough for an EDL LOC comment: control characters become
// spaces, and the text is cut (on a UTF-8 character boundary) after 60 bytes.
std::string marker_text(const std::string& text) {
  std::string out;
  for (char c : text) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  if (out.size() > 60) {
    size_t cut = 60;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + "...";
  }
  return out;
}

// The first output frame that shows source frame `source_frame` or a later one (see
// conform_source_index): ceil(source_frame * target / source).
int64_t output_position(int64_t source_frame, FrameRate source, FrameRate output) {
  if (output.num <= 0 || output.den <= 0 || output == source) return source_frame;
  return conformed_frame_count(source_frame, source, output);
}

// Boundaries (block indices) on the path of `id` where another branch forks off, with the
// branch's name; and where `id` itself (or an ancestor) forked from its parent.
struct BranchPoint {
  int64_t block = 0;
  std::string text;
};

std::vector<BranchPoint> branch_points(const Project& project, int id) {
  std::vector<BranchPoint> points;
  // Walk from the branch to the root. `limit` is the last boundary of ancestor A's blocks that
  // lies on the path of `id`; `via` is the child of A on the way down (not a side branch).
  int64_t limit = project.path_length(id);
  int via = 0;
  for (const ProjectBranch* a = project.branch(id); a != nullptr;
       a = project.branch(a->parent_id)) {
    for (int child_id : project.children(a->id)) {
      if (child_id == via) continue;
      const ProjectBranch* child = project.branch(child_id);
      if (child->fork_block <= limit && child->fork_block >= a->fork_block)
        points.push_back({child->fork_block, "branch '" + child->name + "' forks here"});
    }
    if (a->parent_id != -1) {
      const ProjectBranch* parent = project.branch(a->parent_id);
      points.push_back({a->fork_block, "'" + a->name + "' forks from '" +
                                           (parent != nullptr ? parent->name : std::string()) +
                                           "'"});
    }
    limit = a->fork_block;
    via = a->id;
  }
  std::sort(points.begin(), points.end(),
            [](const BranchPoint& x, const BranchPoint& y) { return x.block < y.block; });
  return points;
}

ExportItem make_item(const Project& project, const ProjectBranch& branch,
                     std::vector<FrameSpan> spans) {
  ExportItem item;
  item.branch_id = branch.id;
  item.branch_name = branch.name;
  item.spans = std::move(spans);
  const int fpb = project.frames_per_block;
  std::string previous_prompt;
  uint64_t previous_seed = 0;
  std::string seed_schedule;
  std::string frame_list;
  int64_t position = 0;  // item frame of the current span's first frame
  for (size_t s = 0; s < item.spans.size(); ++s) {
    const FrameSpan& span = item.spans[s];
    frame_list += (s ? "," : "") + std::to_string(span.first) + "-" + std::to_string(span.end - 1);
    for (int64_t block = span.first / fpb; block * fpb < span.end; ++block) {
      const ProjectBlock* pb = project.path_block(branch.id, block);
      const int64_t at = position + std::max<int64_t>(block * fpb, span.first) - span.first;
      if (at == 0 || pb->prompt != previous_prompt) {
        item.metadata.prompt_schedule.push_back({at, pb->prompt});
        if (at != 0) {
          item.markers.push_back(
              {at, "prompt: " + marker_text(pb->prompt), MarkerKind::prompt_change, pb->prompt});
        }
      }
      if (at == 0 || pb->seed != previous_seed) {
        seed_schedule += (seed_schedule.empty() ? "" : ",") + std::to_string(at) + ":" +
                         std::to_string(pb->seed);
      }
      if (at == 0) {
        item.metadata.seed = pb->seed;
        item.metadata.has_seed = true;
      }
      previous_prompt = pb->prompt;
      previous_seed = pb->seed;
    }
    for (const BranchPoint& point : branch_points(project, branch.id)) {
      const int64_t frame = point.block * fpb;
      if (frame > span.first && frame < span.end) {
        item.markers.push_back({position + frame - span.first, marker_text(point.text),
                                MarkerKind::branch_point,
                                point.text + " (block " + std::to_string(point.block) + ")"});
      }
    }
    position += span.size();
  }
  item.frames = position;
  std::stable_sort(
      item.markers.begin(), item.markers.end(),
      [](const TimelineMarker& a, const TimelineMarker& b) { return a.frame < b.frame; });
  item.metadata.model = !project.model_path.empty() ? project.model_path : project.model_id;
  item.metadata.branch = branch.name;
  item.metadata.extra["model_id"] = project.model_id;
  item.metadata.extra["branch_id"] = std::to_string(branch.id);
  item.metadata.extra["path_frames"] = frame_list;
  if (seed_schedule.find(',') != std::string::npos)
    item.metadata.extra["seed_schedule"] = seed_schedule;
  if (!project.folder.empty()) item.metadata.extra["project"] = project.folder;
  return item;
}

const ProjectBranch& require_branch(const Project& project, int id) {
  const ProjectBranch* branch = project.branch(id == 0 ? project.active_branch : id);
  if (branch == nullptr) bad("the project has no branch " + std::to_string(id));
  if (project.path_frames(branch->id) == 0) bad("branch '" + branch->name + "' has no frames yet");
  return *branch;
}

void assign_unique_stems(std::vector<ExportItem>& items) {
  std::set<std::string> used;
  for (auto& item : items) {
    std::string stem = file_stem_for(item.branch_name);
    if (used.count(stem) != 0) stem += "_" + std::to_string(item.branch_id);
    while (used.count(stem) != 0) stem += "_";
    used.insert(stem);
    item.file_stem = stem;
  }
}

}  // namespace

int64_t ExportItem::path_frame(int64_t item_frame) const {
  for (const FrameSpan& span : spans) {
    if (item_frame < span.size()) return span.first + item_frame;
    item_frame -= span.size();
  }
  bad("item frame beyond the export");
}

std::string timeline_path_for(const std::string& media_path, bool sequence,
                              const std::string& format) {
  std::filesystem::path path(media_path);
  while (path.has_parent_path() && path.filename().empty()) path = path.parent_path();
  if (sequence) return path.string() + "." + format;
  return path.replace_extension("." + format).string();
}

std::string file_stem_for(const std::string& name) {
  std::string stem;
  for (char c : name) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.';
    stem += keep ? c : '_';
    if (stem.size() >= 64) break;
  }
  if (stem.empty() || stem.front() == '.') stem = "branch" + stem;
  return stem;
}

std::vector<int> parse_segment_list(const std::string& text) {
  std::vector<int> indices;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string part = text.substr(start, comma - start);
    int value = 0;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size() || value < 0)
      bad("--segments expects indices like 0,2,3 (from 0), got '" + text + "'");
    indices.push_back(value);
    start = comma + 1;
  }
  return indices;
}

ExportPlan plan_export(const Project& project, const ExportSelection& selection) {
  ExportPlan plan;
  if (!project.folder.empty()) {
    std::string folder = project.folder;
    while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
    const size_t slash = folder.find_last_of('/');
    plan.name = slash == std::string::npos ? folder : folder.substr(slash + 1);
  }
  switch (selection.scope) {
    case ExportScope::branch: {
      const ProjectBranch& branch = require_branch(project, selection.branch_id);
      plan.items.push_back(make_item(project, branch, {{0, project.path_frames(branch.id)}}));
      break;
    }
    case ExportScope::in_out: {
      const ProjectBranch& branch = require_branch(project, selection.branch_id);
      const int64_t frames = project.path_frames(branch.id);
      const int64_t in = selection.in_frame < 0 ? 0 : selection.in_frame;
      const int64_t out = selection.out_frame < 0 ? frames - 1 : selection.out_frame;
      if (selection.in_frame < -1 || selection.out_frame < -1 || in >= frames || out >= frames)
        bad("in/out " + std::to_string(selection.in_frame) + "/" +
            std::to_string(selection.out_frame) + " is outside branch '" + branch.name +
            "' (frames 0 to " + std::to_string(frames - 1) + ")");
      if (in > out)
        bad("the in frame " + std::to_string(in) + " is after the out frame " +
            std::to_string(out));
      plan.items.push_back(make_item(project, branch, {{in, out + 1}}));
      break;
    }
    case ExportScope::segments: {
      const ProjectBranch& branch = require_branch(project, selection.branch_id);
      const auto segments = project.prompt_segments(branch.id);
      if (selection.segments.empty()) bad("no segments chosen");
      std::vector<int> chosen = selection.segments;
      std::sort(chosen.begin(), chosen.end());
      for (size_t i = 0; i < chosen.size(); ++i) {
        if (chosen[i] < 0 || chosen[i] >= static_cast<int>(segments.size()))
          bad("segment " + std::to_string(chosen[i]) + " does not exist: branch '" + branch.name +
              "' has " + std::to_string(segments.size()) + " prompt segments (0 to " +
              std::to_string(segments.size() - 1) + ")");
        if (i > 0 && chosen[i] == chosen[i - 1])
          bad("segment " + std::to_string(chosen[i]) + " is chosen twice");
      }
      const int fpb = project.frames_per_block;
      std::vector<FrameSpan> spans;
      for (int index : chosen) {
        const FrameSpan span{segments[index].first_block * fpb,
                             (segments[index].last_block + 1) * fpb};
        // Adjacent segments make one span: the media has no cut there, only a prompt change.
        if (!spans.empty() && spans.back().end == span.first) {
          spans.back().end = span.end;
        } else {
          spans.push_back(span);
        }
      }
      plan.items.push_back(make_item(project, branch, std::move(spans)));
      break;
    }
    case ExportScope::all_branches: {
      for (const ProjectBranch& branch : project.branches) {
        if (project.path_frames(branch.id) == 0) continue;  // nothing to export (yet)
        plan.items.push_back(make_item(project, branch, {{0, project.path_frames(branch.id)}}));
      }
      if (plan.items.empty()) bad("no branch of the project has frames yet");
      break;
    }
    default:
      bad("unknown export scope");
  }
  assign_unique_stems(plan.items);
  return plan;
}

TimelineDescription plan_timeline(const ExportPlan& plan,
                                  const std::vector<std::string>& media_paths,
                                  FrameRate source_rate, FrameRate output_rate, int width,
                                  int height) {
  if (media_paths.size() != plan.items.size()) bad("one media path per export item is needed");
  if (source_rate.num <= 0 || source_rate.den <= 0) bad("the source frame rate must be positive");
  const FrameRate rate = output_rate.num > 0 && output_rate.den > 0 ? output_rate : source_rate;
  TimelineDescription timeline;
  timeline.name = plan.name;
  timeline.rate = rate;
  timeline.width = width;
  timeline.height = height;
  int64_t item_start = 0;  // timeline frame where the item's media begins
  for (size_t i = 0; i < plan.items.size(); ++i) {
    const ExportItem& item = plan.items[i];
    const int64_t media_frames = output_position(item.frames, source_rate, rate);
    int64_t source_position = 0;
    for (const FrameSpan& span : item.spans) {
      TimelineClip clip;
      clip.name =
          item.branch_name + " " + std::to_string(span.first) + "-" + std::to_string(span.end - 1);
      clip.media_path = media_paths[i];
      clip.media_frames = media_frames;
      clip.in_frame = output_position(source_position, source_rate, rate);
      clip.out_frame = output_position(source_position + span.size(), source_rate, rate);
      source_position += span.size();
      if (clip.out_frame > clip.in_frame) timeline.clips.push_back(clip);
    }
    for (TimelineMarker marker : item.markers) {
      marker.frame = item_start + output_position(marker.frame, source_rate, rate);
      if (marker.frame < item_start + media_frames) timeline.markers.push_back(marker);
    }
    item_start += media_frames;
  }
  validate_timeline(timeline);
  return timeline;
}

ExportedMedia export_item(const ExportItem& item, const ExportFrameSource& source,
                          FrameRate source_rate, const std::string& path,
                          const ExportSettings& settings, const ExportControl& control) {
  if (!source) bad("no frame source");
  ExportSettings effective = settings;
  if (effective.metadata.model.empty()) effective.metadata = item.metadata;
  ExportWriter writer(path, effective);
  const auto cancelled = [&] { return control.cancel != nullptr && control.cancel->load(); };
  try {
    if (cancelled()) throw Error(ErrorKind::cancelled, "export cancelled");
    Frame first = source(item.branch_id, item.path_frame(0));
    writer.begin(first.width, first.height, source_rate);
    int64_t done = 0;
    for (const FrameSpan& span : item.spans) {
      for (int64_t f = span.first; f < span.end; ++f) {
        if (cancelled()) throw Error(ErrorKind::cancelled, "export cancelled");
        Frame frame = done == 0 ? std::move(first) : source(item.branch_id, f);
        frame.index = done;
        writer.write(frame);
        ++done;
        if (control.progress) control.progress(done, item.frames);
      }
    }
    if (cancelled()) throw Error(ErrorKind::cancelled, "export cancelled");
    writer.finish();
    return {writer.output_width(), writer.output_height(), writer.output_rate(),
            writer.output_frames_written()};
  } catch (...) {
    writer.abort();
    throw;
  }
}

}  // namespace strand
