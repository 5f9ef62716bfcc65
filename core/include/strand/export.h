// Export to editors: edit-ready media files (ProRes, DNxHR, H.264, FFV1, PNG / TIFF / EXR
// sequences) and timelines (OpenTimelineIO, FCPXML 1.9, CMX3600 EDL). See docs/export.md.
//
// Media is written like the sinks in strand/media.h: a single file as "NAME.part", a sequence as
// "DIR.part/", renamed to the final name only by finish(). abort(), the destructor of an
// unfinished writer, and any failure leave no output that looks finished (partial outputs are
// removed; an earlier complete output at the same path is left as it was until finish()).
//
// Media needs FFmpeg (libavcodec / libavformat / libswscale) at build time; without it every
// preset reports available == false and ExportWriter::begin throws Error(unsupported).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "strand/session.h"  // Frame

namespace strand {

// A frame rate as an exact fraction (23.976 is 24000/1001).
struct FrameRate {
  int num = 24;
  int den = 1;
  [[nodiscard]] double fps() const { return static_cast<double>(num) / den; }
  friend bool operator==(const FrameRate&, const FrameRate&) = default;
};

// Parses "native" (-> {0, 0}), "23.976", "24", "25", "30", "29.97", or "N/D". Throws
// Error(invalid_argument) on anything else.
[[nodiscard]] FrameRate parse_frame_rate(const std::string& text);

// What a preset writes. `name` is the value users type (`--preset NAME`).
struct ExportPresetInfo {
  std::string name;          // "prores", "dnxhr", "dnxhr-hqx", "h264", "ffv1", "png", "png16", ...
  std::string description;   // one line for people
  std::string codec;         // FFmpeg encoder name ("prores_ks", "dnxhd", "libx264", ...)
  std::string profile;       // encoder profile ("3" = 422 HQ, "dnxhr_hq", "high") or ""
  std::string pixel_format;  // FFmpeg pixel format written ("yuv422p10le", "rgb48le", ...)
  std::string container;     // "mov", "mp4", "mkv", or "sequence"
  std::string extension;     // ".mov", ".mp4", ".mkv", or the per-frame file extension
  bool sequence = false;     // one image file per frame in a folder
  bool even_size = false;    // width and height must be even (odd sizes are cropped by 1 px)
  int min_width = 1;         // smallest output the encoder accepts (DNxHR: 256x120);
  int min_height = 1;        // begin() throws Error(invalid_argument) below it
  bool available = false;    // the encoder is built into this FFmpeg
};

// Every preset, in a stable order, with `available` filled in for this build.
[[nodiscard]] std::vector<ExportPresetInfo> list_presets();
// The named preset. Throws Error(invalid_argument) for an unknown name.
[[nodiscard]] ExportPresetInfo find_preset(const std::string& name);

// A prompt taking effect at a frame (frame numbers of the exported source, from 0).
struct PromptChange {
  int64_t frame = 0;
  std::string prompt;
};

// Provenance written into the container tags (where the container has tags) and the JSON sidecar.
struct ExportMetadata {
  std::string model;   // model file name or id
  std::string branch;  // branch name in the project
  uint64_t seed = 0;
  bool has_seed = false;
  std::vector<PromptChange> prompt_schedule;
  std::map<std::string, std::string> extra;  // free-form additions, e.g. project name
};

struct ExportSettings {
  std::string preset = "prores";
  // Conform target: {0, 0} (or equal to the source rate) keeps the native rate. Otherwise frames
  // are repeated or dropped by nearest-earlier sampling (docs/export.md, "Frame rate").
  FrameRate target_rate{0, 0};
  // Output size; 0 x 0 keeps the source size. Resampled with Lanczos (sRGB values).
  int width = 0;
  int height = 0;
  ExportMetadata metadata;
  // Writes PATH's sidecar (see sidecar_path) next to the output.
  bool write_sidecar = true;
};

// Where the JSON sidecar of an export at `path` goes: the path with its extension replaced by
// ".json" for files ("a/clip.mov" -> "a/clip.json"), "DIR.json" for sequences.
[[nodiscard]] std::string sidecar_path(const std::string& path, bool sequence);

// Number of output frames when `source_frames` frames at `source` are conformed to `target`:
// ceil(source_frames * target / source), so the duration is kept within one output frame.
[[nodiscard]] int64_t conformed_frame_count(int64_t source_frames, FrameRate source,
                                            FrameRate target);
// The source frame shown at output frame `output_index`: floor(output_index * source / target).
[[nodiscard]] int64_t conform_source_index(int64_t output_index, FrameRate source,
                                           FrameRate target);

// Writes one export. Call order: begin, write * n (source frames in order), finish. Any method
// may throw strand::Error; after a throw, the caller calls abort() (the destructor also does).
// Not thread-safe; one writer may run on a worker thread while others run elsewhere.
class ExportWriter {
 public:
  // `path`: a file path for containers (the extension is not changed), a folder for sequences
  // (frames are DIR/frame_000000.EXT, ...). Throws Error(invalid_argument) for an unknown preset
  // or bad settings.
  ExportWriter(std::string path, ExportSettings settings);
  ~ExportWriter();
  ExportWriter(const ExportWriter&) = delete;
  ExportWriter& operator=(const ExportWriter&) = delete;

  // Creates the partial output, so an unwritable target fails before any frame is rendered.
  // `source_rate` is the rate of the frames passed to write().
  void begin(int source_width, int source_height, FrameRate source_rate);
  // One source frame (8-bit sRGB, BT.709 primaries). Writes 0 or more output frames (conform).
  void write(const Frame& frame);
  // Flushes the encoder, completes the file, renames it into place, writes the sidecar.
  void finish();
  // Removes the partial output. Never throws; a no-op after finish().
  void abort() noexcept;

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] const ExportPresetInfo& preset() const { return preset_; }
  [[nodiscard]] int64_t source_frames_written() const { return source_frames_; }
  [[nodiscard]] int64_t output_frames_written() const { return output_frames_; }
  // Output size and rate (valid after begin()).
  [[nodiscard]] int output_width() const { return out_width_; }
  [[nodiscard]] int output_height() const { return out_height_; }
  [[nodiscard]] FrameRate output_rate() const { return out_rate_; }

 private:
  struct Impl;  // FFmpeg state, kept out of this header
  // Converts and encodes one output frame (the conform loop in write() may call it 0..n times).
  void encode_frame(const Frame& frame);
  void write_sidecar_part();
  std::string path_;
  std::string part_path_;
  ExportSettings settings_;
  ExportPresetInfo preset_;
  std::unique_ptr<Impl> impl_;
  FrameRate source_rate_{0, 0};
  FrameRate out_rate_{0, 0};
  int source_width_ = 0, source_height_ = 0;
  int out_width_ = 0, out_height_ = 0;
  int64_t source_frames_ = 0;
  int64_t output_frames_ = 0;
  bool begun_ = false;
  bool finished_ = false;
};

// ---------------------------------------------------------------------------------------------
// Timelines

enum class MarkerKind { branch_point, prompt_change, note };

// One media file placed on the single video track.
struct TimelineClip {
  std::string name;         // clip name shown in the editor
  std::string media_path;   // absolute path of the media file (or sequence folder)
  int64_t media_frames = 0; // length of the media file in frames (its available range)
  int64_t in_frame = 0;     // first media frame used (inclusive; media starts at frame 0)
  int64_t out_frame = 0;    // one past the last media frame used (exclusive)
  int64_t gap_before = 0;   // empty frames on the track before this clip
};

struct TimelineMarker {
  int64_t frame = 0;        // timeline frame (from 0)
  std::string name;
  MarkerKind kind = MarkerKind::note;
  std::string comment;
};

// A one-track edit. All media and the timeline run at `rate` (exports are conformed first).
struct TimelineDescription {
  std::string name = "Strand";
  FrameRate rate{24, 1};
  int width = 0;   // frame size, for FCPXML's format resource
  int height = 0;
  std::vector<TimelineClip> clips;
  std::vector<TimelineMarker> markers;
};

// Throws Error(invalid_argument) when a clip's range is empty or outside its media, a marker lies
// outside the timeline, or the rate is not positive. Called by every writer below.
void validate_timeline(const TimelineDescription& timeline);
// Total timeline length in frames (gaps + clip ranges).
[[nodiscard]] int64_t timeline_length(const TimelineDescription& timeline);

// Marker colour names in OTIO's vocabulary and as #rrggbb.
[[nodiscard]] const char* marker_color_name(MarkerKind kind);
[[nodiscard]] const char* marker_color_hex(MarkerKind kind);

[[nodiscard]] std::string timeline_to_otio(const TimelineDescription& timeline);
[[nodiscard]] std::string timeline_to_fcpxml(const TimelineDescription& timeline);
[[nodiscard]] std::string timeline_to_edl(const TimelineDescription& timeline);
// Picks the format by `format` ("otio", "fcpxml", "edl") and writes atomically. Error(io).
void write_timeline(const std::string& path, const std::string& format,
                    const TimelineDescription& timeline);

// SMPTE timecode HH:MM:SS:FF of `frame` at `rate` (non-drop-frame, nominal rate rounded up:
// 23.976 counts 24 frames a second, as editors do).
[[nodiscard]] std::string frames_to_timecode(int64_t frame, FrameRate rate);

}  // namespace strand
