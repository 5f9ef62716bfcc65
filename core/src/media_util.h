// Pieces shared by the two media writers: the render sinks (media.cpp: PngSequenceSink, Mp4Sink)
// and the ExportWriter (export_media.cpp). Internal to strand_core: no public API.
// The FFmpeg part exists only when STRAND_HAVE_FFMPEG is set, like the writers' own FFmpeg code.
#pragma once
#include <cstdint>
#include <string>
#include <system_error>

#ifdef STRAND_HAVE_FFMPEG
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/frame.h>
#include <libswscale/swscale.h>
}
#endif

namespace strand::detail {

[[noreturn]] void throw_io(const std::string& path, const std::string& what,
                           const std::error_code& ec);

// ---------------------------------------------------------------------------------------------
// Frame sequences: a folder of "frame_000000.EXT", "frame_000001.EXT", ... written into
// "DIR.part" and renamed to DIR when complete.

// "frame_" + the number in six digits or more + `extension` (".png"): names sort in frame order.
std::string frame_file_name(int64_t number, const std::string& extension);

// True for "frame_" + digits + `extension`: the names a frame_file_name sequence holds.
bool is_frame_file_name(const std::string& name, const std::string& extension);

// Hidden ".frame_*" files are what write_file_atomic leaves when the process dies mid-frame.
// Whether a sequence folder may hold them (and still count as ours) is the caller's choice.
enum class TempFrames { refuse, accept };

// A folder we may delete or replace: it exists and holds only frame files (an earlier sequence).
// Anything else might be a user's folder named by mistake, so we refuse to touch it.
bool is_frame_sequence_folder(const std::string& dir, const std::string& extension,
                              TempFrames temp_frames);

// Throws Error(io) when `dir` exists and is not an earlier frame sequence.
void require_replaceable_sequence(const std::string& dir, const std::string& extension,
                                  TempFrames temp_frames);

// Creates the empty folder `part_dir` (its parent must exist). A folder left there by an
// interrupted run is removed first, but only when it holds nothing but frames; otherwise
// Error(io).
void create_part_folder(const std::string& part_dir, const std::string& extension,
                        TempFrames temp_frames);

// Renames `part_path` to `path`; Error(io) on failure.
void rename_into_place(const std::string& part_path, const std::string& path);

// Renames the folder `part_dir` to `dir`, replacing an existing `dir`. rename() cannot replace a
// non-empty folder, so the old one is moved aside first and removed after: at every moment `dir`
// is the complete old sequence or the complete new one (or absent). The caller checks that an
// existing `dir` is a sequence we may replace.
void move_sequence_into_place(const std::string& part_dir, const std::string& dir);

#ifdef STRAND_HAVE_FFMPEG
// ---------------------------------------------------------------------------------------------
// FFmpeg

std::string av_error_text(int code);

// FFmpeg logs to stderr at "info" level by default (x264 prints several lines per file). The
// engine reports failures as exceptions, so silence it unless the application chose a level.
void quiet_ffmpeg_log();

// Size, pixel format and rate of a video encoder: one codec time-base tick per frame, square
// pixels.
void set_video_format(AVCodecContext* codec, int width, int height, AVPixelFormat pixel_format,
                      AVRational frame_rate);

// libx264 at CRF 18, preset medium, High profile.
void set_x264_options(AVDictionary** options);

// Gives `frame` its own buffers of that format and size; Error(out_of_memory) when it cannot.
void allocate_frame_buffer(AVFrame* frame, AVPixelFormat pixel_format, int width, int height);

// swscale assumes BT.601 unless told: full-range BT.709 RGB in, BT.709 out (limited range for
// YUV), matching the BT.709 tags of the stream (otherwise colours shift in every player that
// honours the tags).
void set_bt709_conversion(SwsContext* scaler, bool limited_range_output);

// The state of one encode: a muxer (or, for image sequences, no muxer and one file a packet),
// the encoder, a frame, a packet and the RGB24 converter. Every failure is reported as
// Error(io) naming `part_path`: ENOSPC and friends arrive as negative errno values.
struct FfmpegEncoder {
  AVFormatContext* format = nullptr;  // null for image sequences
  AVStream* stream = nullptr;
  AVCodecContext* codec = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* packet = nullptr;
  SwsContext* scaler = nullptr;
  std::string part_path;
  std::string sequence_extension;  // image sequences: packet N goes to part_path/frame_N + this

  FfmpegEncoder() = default;
  FfmpegEncoder(const FfmpegEncoder&) = delete;
  FfmpegEncoder& operator=(const FfmpegEncoder&) = delete;
  ~FfmpegEncoder() { close(); }

  // Frees everything (closing the file); safe to call twice.
  void close() noexcept;

  [[noreturn]] void fail(const std::string& what, int code) const;

  // Allocates the encoder context, frame and packet; Error(out_of_memory, `failure`) otherwise.
  void allocate(const AVCodec* encoder, const std::string& failure);

  // Creates the muxer for `container` (named explicitly: "NAME.mp4.part" would not be recognised
  // by its extension) writing to part_path, and its one stream. Call after allocate().
  void create_muxer(const std::string& container, const std::string& failure);

  // Copies the opened encoder's parameters, time base and rate to the stream.
  void set_stream_parameters();

  // Opens part_path and writes the container header with `mux_options` (consumed).
  void open_file_and_write_header(AVDictionary** mux_options, const std::string& failure);

  // Before writing into `frame`: the encoder may still reference its previous buffers.
  void make_frame_writable();

  // Encodes `frame` as number `pts` (codec time-base units: one tick per frame).
  void encode(int64_t pts, const std::string& encode_failure);

  // Moves every packet the encoder has ready into the file (containers) or into one image file
  // (sequences). `flushing`: the encoder was sent the null frame, so run until end of stream.
  void drain(bool flushing, const std::string& encode_failure);

  // Sends the null frame and drains: encoders with lookahead (x264) hold frames until then, and
  // without it a short clip comes out empty.
  void flush(const std::string& flush_failure, const std::string& encode_failure);

  // Writes the container trailer and closes the file (nothing for image sequences).
  // `file_label` names the file in errors ("the MP4 file").
  void finish_container(const std::string& file_label);
};
#endif

}  // namespace strand::detail
