// Timeline export (see strand/export.h and docs/export.md, "Timelines"): OpenTimelineIO JSON,
// FCPXML 1.9 and CMX3600 EDL from one engine-side description. Every time is a whole frame count
// at the timeline rate, so each format states exactly the same frame ranges.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "strand/error.h"
#include "strand/export.h"
#include "strand/file_io.h"

namespace strand {
namespace {

using nlohmann::ordered_json;

// Timeline position of each clip's first frame.
std::vector<int64_t> clip_starts(const TimelineDescription& t) {
  std::vector<int64_t> starts;
  int64_t position = 0;
  for (const auto& clip : t.clips) {
    position += clip.gap_before;
    starts.push_back(position);
    position += clip.out_frame - clip.in_frame;
  }
  return starts;
}

// The clip containing timeline frame `frame`, or -1 (a gap).
int clip_at(const TimelineDescription& t, const std::vector<int64_t>& starts, int64_t frame) {
  for (size_t i = 0; i < t.clips.size(); ++i) {
    const int64_t length = t.clips[i].out_frame - t.clips[i].in_frame;
    if (frame >= starts[i] && frame < starts[i] + length) return static_cast<int>(i);
  }
  return -1;
}

std::string file_url(const std::string& path) {
  // RFC 8089 file URL with percent-encoding of everything outside the unreserved set and '/'.
  std::string absolute = std::filesystem::absolute(path).lexically_normal().string();
  std::string url = "file://";
  for (unsigned char c : absolute) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      url += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      url += hex;
    }
  }
  return url;
}

// ---- OTIO helpers

ordered_json rational_time(int64_t frames, FrameRate rate) {
  ordered_json j;
  j["OTIO_SCHEMA"] = "RationalTime.1";
  j["rate"] = rate.fps();
  j["value"] = static_cast<double>(frames);
  return j;
}

ordered_json time_range(int64_t start, int64_t duration, FrameRate rate) {
  ordered_json j;
  j["OTIO_SCHEMA"] = "TimeRange.1";
  j["duration"] = rational_time(duration, rate);
  j["start_time"] = rational_time(start, rate);
  return j;
}

const char* kind_name(MarkerKind kind) {
  switch (kind) {
    case MarkerKind::branch_point: return "branch_point";
    case MarkerKind::prompt_change: return "prompt_change";
    case MarkerKind::note: return "note";
  }
  return "note";
}

ordered_json otio_marker(const TimelineMarker& m, int64_t local_frame, FrameRate rate) {
  ordered_json j;
  j["OTIO_SCHEMA"] = "Marker.2";
  j["metadata"] = {{"strand", {{"kind", kind_name(m.kind)}, {"color_hex", marker_color_hex(m.kind)}}}};
  j["name"] = m.name;
  j["color"] = marker_color_name(m.kind);
  j["marked_range"] = time_range(local_frame, 0, rate);
  j["comment"] = m.comment;
  return j;
}

ordered_json otio_item_base(const char* schema, const std::string& name) {
  ordered_json j;
  j["OTIO_SCHEMA"] = schema;
  j["metadata"] = ordered_json::object();
  j["name"] = name;
  return j;
}

// ---- FCPXML helpers

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      case '\n': out += "&#10;"; break;
      default:
        // XML 1.0 forbids most control characters even escaped: drop them.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') out += c;
    }
  }
  return out;
}

// `frames` frames at `rate` as FCPXML rational seconds, reduced: "1001/24000s", "5s", "0s".
std::string fcp_time(int64_t frames, FrameRate rate) {
  int64_t num = frames * rate.den;
  int64_t den = rate.num;
  const int64_t g = std::gcd(num, den);
  if (g > 1) {
    num /= g;
    den /= g;
  }
  if (num == 0) return "0s";
  if (den == 1) return std::to_string(num) + "s";
  return std::to_string(num) + "/" + std::to_string(den) + "s";
}

// ---- EDL helpers

// Up to 8 characters of [A-Z0-9_] from the media file's stem, unique within the EDL.
std::vector<std::string> reel_names(const TimelineDescription& t) {
  std::vector<std::string> reels;
  std::vector<std::pair<std::string, std::string>> by_media;  // media path -> reel
  std::set<std::string> used;
  for (const auto& clip : t.clips) {
    auto found = std::find_if(by_media.begin(), by_media.end(),
                              [&](const auto& p) { return p.first == clip.media_path; });
    if (found != by_media.end()) {
      reels.push_back(found->second);
      continue;
    }
    std::string reel;
    for (unsigned char c : std::filesystem::path(clip.media_path).stem().string()) {
      if (reel.size() == 8) break;
      reel += std::isalnum(c) ? static_cast<char>(std::toupper(c)) : '_';
    }
    if (reel.empty()) reel = "AX";
    for (int n = 1; used.count(reel) != 0; ++n) {
      const std::string suffix = std::to_string(n);
      reel = reel.substr(0, std::min<size_t>(reel.size(), 8 - suffix.size())) + suffix;
    }
    used.insert(reel);
    by_media.emplace_back(clip.media_path, reel);
    reels.push_back(reel);
  }
  return reels;
}

std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) out += (c == '\n' || c == '\r') ? ' ' : c;
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

const char* marker_color_name(MarkerKind kind) {
  switch (kind) {
    case MarkerKind::branch_point: return "ORANGE";
    case MarkerKind::prompt_change: return "CYAN";
    case MarkerKind::note: return "GREEN";
  }
  return "GREEN";
}

const char* marker_color_hex(MarkerKind kind) {
  switch (kind) {
    case MarkerKind::branch_point: return "#ff8c00";
    case MarkerKind::prompt_change: return "#00c8ff";
    case MarkerKind::note: return "#00c000";
  }
  return "#00c000";
}

int64_t timeline_length(const TimelineDescription& t) {
  int64_t length = 0;
  for (const auto& clip : t.clips) length += clip.gap_before + (clip.out_frame - clip.in_frame);
  return length;
}

void validate_timeline(const TimelineDescription& t) {
  if (t.rate.num <= 0 || t.rate.den <= 0)
    throw Error(ErrorKind::invalid_argument, "timeline rate must be positive");
  if (t.clips.empty()) throw Error(ErrorKind::invalid_argument, "timeline has no clips");
  if (t.clips.size() > 999)
    throw Error(ErrorKind::invalid_argument, "timeline has more than 999 clips (CMX3600 limit)");
  for (const auto& clip : t.clips) {
    if (clip.media_path.empty())
      throw Error(ErrorKind::invalid_argument, "clip '" + clip.name + "' has no media path");
    if (clip.gap_before < 0 || clip.in_frame < 0 || clip.out_frame <= clip.in_frame ||
        clip.out_frame > clip.media_frames) {
      throw Error(ErrorKind::invalid_argument,
                  "clip '" + clip.name + "' has an invalid range [" + std::to_string(clip.in_frame) +
                      ", " + std::to_string(clip.out_frame) + ") of " +
                      std::to_string(clip.media_frames) + " media frames");
    }
  }
  const int64_t length = timeline_length(t);
  for (const auto& m : t.markers) {
    if (m.frame < 0 || m.frame >= length)
      throw Error(ErrorKind::invalid_argument, "marker '" + m.name + "' at frame " +
                                                   std::to_string(m.frame) + " is outside the timeline");
  }
}

std::string frames_to_timecode(int64_t frame, FrameRate rate) {
  // Non-drop-frame counting at the nominal (rounded-up) integer rate.
  const int64_t base = (static_cast<int64_t>(rate.num) + rate.den - 1) / rate.den;
  const int64_t ff = frame % base, total_seconds = frame / base;
  char text[96];
  std::snprintf(text, sizeof text, "%02lld:%02lld:%02lld:%02lld",
                static_cast<long long>(total_seconds / 3600),
                static_cast<long long>((total_seconds / 60) % 60),
                static_cast<long long>(total_seconds % 60), static_cast<long long>(ff));
  return text;
}

std::string timeline_to_otio(const TimelineDescription& t) {
  validate_timeline(t);
  const auto starts = clip_starts(t);
  std::vector<ordered_json> clip_markers(t.clips.size(), ordered_json::array());
  ordered_json stack_markers = ordered_json::array();
  for (const auto& m : t.markers) {
    const int i = clip_at(t, starts, m.frame);
    if (i < 0) {
      stack_markers.push_back(otio_marker(m, m.frame, t.rate));  // in a gap: timeline time
    } else {
      // Clip markers live in the clip's source (media) time.
      const auto& clip = t.clips[static_cast<size_t>(i)];
      clip_markers[static_cast<size_t>(i)].push_back(
          otio_marker(m, clip.in_frame + (m.frame - starts[static_cast<size_t>(i)]), t.rate));
    }
  }

  ordered_json children = ordered_json::array();
  for (size_t i = 0; i < t.clips.size(); ++i) {
    const auto& clip = t.clips[i];
    if (clip.gap_before > 0) {
      ordered_json gap = otio_item_base("Gap.1", "");
      gap["source_range"] = time_range(0, clip.gap_before, t.rate);
      gap["effects"] = ordered_json::array();
      gap["markers"] = ordered_json::array();
      gap["enabled"] = true;
      children.push_back(gap);
    }
    ordered_json reference = otio_item_base("ExternalReference.1", "");
    // Media starts at frame 0 (timecode 00:00:00:00): Kdenlive subtracts the media start.
    reference["available_range"] = time_range(0, clip.media_frames, t.rate);
    reference["available_image_bounds"] = nullptr;
    reference["target_url"] = file_url(clip.media_path);

    ordered_json item = otio_item_base("Clip.2", clip.name);
    item["source_range"] = time_range(clip.in_frame, clip.out_frame - clip.in_frame, t.rate);
    item["effects"] = ordered_json::array();
    item["markers"] = clip_markers[i];
    item["enabled"] = true;
    item["media_references"] = {{"DEFAULT_MEDIA", reference}};
    item["active_media_reference_key"] = "DEFAULT_MEDIA";
    children.push_back(item);
  }

  ordered_json track = otio_item_base("Track.1", "V1");
  track["source_range"] = nullptr;
  track["effects"] = ordered_json::array();
  track["markers"] = ordered_json::array();
  track["enabled"] = true;
  track["children"] = children;
  track["kind"] = "Video";

  ordered_json stack = otio_item_base("Stack.1", "tracks");
  stack["source_range"] = nullptr;
  stack["effects"] = ordered_json::array();
  stack["markers"] = stack_markers;
  stack["enabled"] = true;
  stack["children"] = ordered_json::array({track});

  ordered_json timeline = otio_item_base("Timeline.1", t.name);
  timeline["global_start_time"] = rational_time(0, t.rate);
  timeline["tracks"] = stack;
  return timeline.dump(4) + "\n";
}

std::string timeline_to_fcpxml(const TimelineDescription& t) {
  validate_timeline(t);
  const auto starts = clip_starts(t);
  const FrameRate r = t.rate;
  std::ostringstream x;
  x << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE fcpxml>\n<fcpxml version=\"1.9\">\n";
  x << "  <resources>\n";
  x << "    <format id=\"r1\" frameDuration=\"" << fcp_time(1, r) << "\"";
  if (t.width > 0 && t.height > 0) x << " width=\"" << t.width << "\" height=\"" << t.height << "\"";
  x << " colorSpace=\"1-1-1 (Rec. 709)\"/>\n";
  // One asset per distinct media file.
  std::vector<std::string> asset_of_clip;
  std::vector<std::string> media_seen;
  for (const auto& clip : t.clips) {
    auto found = std::find(media_seen.begin(), media_seen.end(), clip.media_path);
    const size_t index = static_cast<size_t>(found - media_seen.begin());
    const std::string id = "r" + std::to_string(index + 2);
    asset_of_clip.push_back(id);
    if (found != media_seen.end()) continue;
    media_seen.push_back(clip.media_path);
    x << "    <asset id=\"" << id << "\" name=\""
      << xml_escape(std::filesystem::path(clip.media_path).stem().string())
      << "\" start=\"0s\" duration=\"" << fcp_time(clip.media_frames, r)
      << "\" hasVideo=\"1\" format=\"r1\" videoSources=\"1\">\n";
    x << "      <media-rep kind=\"original-media\" src=\"" << xml_escape(file_url(clip.media_path))
      << "\"/>\n    </asset>\n";
  }
  x << "  </resources>\n  <library>\n    <event name=\"" << xml_escape(t.name) << "\">\n";
  x << "      <project name=\"" << xml_escape(t.name) << "\">\n";
  x << "        <sequence format=\"r1\" duration=\"" << fcp_time(timeline_length(t), r)
    << "\" tcStart=\"0s\" tcFormat=\"NDF\">\n          <spine>\n";
  auto write_marker = [&](const TimelineMarker& m, int64_t local_frame, const std::string& indent) {
    x << indent << "<marker start=\"" << fcp_time(local_frame, r) << "\" duration=\""
      << fcp_time(1, r) << "\" value=\"" << xml_escape(m.name) << "\"";
    if (!m.comment.empty()) x << " note=\"" << xml_escape(m.comment) << "\"";
    x << "/>\n";
  };
  int64_t position = 0;
  for (size_t i = 0; i < t.clips.size(); ++i) {
    const auto& clip = t.clips[i];
    if (clip.gap_before > 0) {
      x << "            <gap name=\"Gap\" offset=\"" << fcp_time(position, r) << "\" start=\"0s\" duration=\""
        << fcp_time(clip.gap_before, r) << "\"";
      bool any = false;
      for (const auto& m : t.markers) {
        if (m.frame >= position && m.frame < position + clip.gap_before) {
          if (!any) x << ">\n";
          any = true;
          write_marker(m, m.frame - position, "              ");
        }
      }
      x << (any ? "            </gap>\n" : "/>\n");
      position += clip.gap_before;
    }
    const int64_t length = clip.out_frame - clip.in_frame;
    x << "            <asset-clip ref=\"" << asset_of_clip[i] << "\" name=\"" << xml_escape(clip.name)
      << "\" offset=\"" << fcp_time(position, r) << "\" start=\"" << fcp_time(clip.in_frame, r)
      << "\" duration=\"" << fcp_time(length, r) << "\" format=\"r1\" tcFormat=\"NDF\"";
    bool any = false;
    for (const auto& m : t.markers) {
      if (m.frame >= starts[i] && m.frame < starts[i] + length) {
        if (!any) x << ">\n";
        any = true;
        // Markers inside a clip are in its media time (start = in point + offset into the clip).
        write_marker(m, clip.in_frame + (m.frame - starts[i]), "              ");
      }
    }
    x << (any ? "            </asset-clip>\n" : "/>\n");
    position += length;
  }
  x << "          </spine>\n        </sequence>\n      </project>\n    </event>\n  </library>\n</fcpxml>\n";
  return x.str();
}

std::string timeline_to_edl(const TimelineDescription& t) {
  validate_timeline(t);
  const auto starts = clip_starts(t);
  const auto reels = reel_names(t);
  std::ostringstream e;
  e << "TITLE: " << one_line(t.name).substr(0, 70) << "\nFCM: NON-DROP FRAME\n\n";
  for (size_t i = 0; i < t.clips.size(); ++i) {
    const auto& clip = t.clips[i];
    const int64_t length = clip.out_frame - clip.in_frame;
    char line[128];
    // Out points are exclusive: source out = in + length, record out = record in + length.
    std::snprintf(line, sizeof line, "%03zu  %-8s V     C        %s %s %s %s\n", i + 1,
                  reels[i].c_str(), frames_to_timecode(clip.in_frame, t.rate).c_str(),
                  frames_to_timecode(clip.out_frame, t.rate).c_str(),
                  frames_to_timecode(starts[i], t.rate).c_str(),
                  frames_to_timecode(starts[i] + length, t.rate).c_str());
    e << line;
    e << "* FROM CLIP NAME: " << one_line(clip.name) << "\n";
    e << "* SOURCE FILE: " << one_line(clip.media_path) << "\n";
    for (const auto& m : t.markers) {
      // A marker belongs to the event it falls in; gap markers go with the next event.
      const int64_t range_start = i == 0 ? 0 : starts[i - 1] + (t.clips[i - 1].out_frame - t.clips[i - 1].in_frame);
      if (m.frame >= range_start && m.frame < starts[i] + length) {
        e << "* LOC: " << frames_to_timecode(m.frame, t.rate) << " " << marker_color_name(m.kind)
          << " " << one_line(m.name) << "\n";
      }
    }
    e << "\n";
  }
  return e.str();
}

void write_timeline(const std::string& path, const std::string& format,
                    const TimelineDescription& timeline) {
  std::string text;
  if (format == "otio") {
    text = timeline_to_otio(timeline);
  } else if (format == "fcpxml") {
    text = timeline_to_fcpxml(timeline);
  } else if (format == "edl") {
    text = timeline_to_edl(timeline);
  } else {
    throw Error(ErrorKind::invalid_argument, "unknown timeline format '" + format + "' (otio, fcpxml, edl)");
  }
  write_file_atomic(path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

}  // namespace strand
