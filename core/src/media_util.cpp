// Pieces shared by the media writers (see media_util.h).
#include "media_util.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string_view>

#include "strand/error.h"
#include "strand/file_io.h"

#ifdef STRAND_HAVE_FFMPEG
extern "C" {
#include <libavutil/error.h>
#include <libavutil/log.h>
}
#endif

namespace strand::detail {
namespace fs = std::filesystem;

void throw_io(const std::string& path, const std::string& what, const std::error_code& ec) {
  throw Error(ErrorKind::io, path + ": " + what + ": " + ec.message());
}

// ---------------------------------------------------------------------------------------------
// Frame sequences

std::string frame_file_name(int64_t number, const std::string& extension) {
  char name[40];
  std::snprintf(name, sizeof name, "frame_%06lld", static_cast<long long>(number));
  return name + extension;
}

bool is_frame_file_name(const std::string& name, const std::string& extension) {
  constexpr std::string_view prefix = "frame_";
  if (name.size() <= prefix.size() + extension.size() || !name.starts_with(prefix) ||
      !name.ends_with(extension)) {
    return false;
  }
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()),
                     name.end() - static_cast<std::ptrdiff_t>(extension.size()),
                     [](char c) { return c >= '0' && c <= '9'; });
}

bool is_frame_sequence_folder(const std::string& dir, const std::string& extension,
                              TempFrames temp_frames) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool ours = is_frame_file_name(name, extension) ||
                      (temp_frames == TempFrames::accept && name.starts_with(".frame_"));
    if (!it->is_regular_file(ec) || !ours) return false;
  }
  return !ec;
}

void require_replaceable_sequence(const std::string& dir, const std::string& extension,
                                  TempFrames temp_frames) {
  std::error_code ec;
  const fs::file_status target = fs::symlink_status(dir, ec);
  if (fs::exists(target) &&
      (!fs::is_directory(target) || !is_frame_sequence_folder(dir, extension, temp_frames))) {
    throw Error(ErrorKind::io,
                dir + ": exists and is not an earlier frame sequence (refusing to replace it)");
  }
}

void create_part_folder(const std::string& part_dir, const std::string& extension,
                        TempFrames temp_frames) {
  std::error_code ec;
  const fs::file_status part = fs::symlink_status(part_dir, ec);
  if (fs::exists(part)) {
    // Left over from an interrupted run. Only ever delete what we could have written.
    if (!fs::is_directory(part) || !is_frame_sequence_folder(part_dir, extension, temp_frames))
      throw Error(ErrorKind::io, part_dir + ": exists and is not a partial frame sequence");
    fs::remove_all(part_dir, ec);
    if (ec) throw_io(part_dir, "cannot remove stale partial output", ec);
  }
  fs::create_directory(part_dir, ec);
  if (ec) throw_io(part_dir, "cannot create folder", ec);
}

void rename_into_place(const std::string& part_path, const std::string& path) {
  std::error_code ec;
  fs::rename(part_path, path, ec);
  if (ec) throw_io(part_path, "cannot rename to " + path, ec);
}

void move_sequence_into_place(const std::string& part_dir, const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) {
    rename_into_place(part_dir, dir);
    return;
  }
  const std::string old = dir + ".old-" + std::to_string(::getpid());
  fs::rename(dir, old, ec);
  if (ec) throw_io(dir, "cannot move the earlier sequence aside", ec);
  fs::rename(part_dir, dir, ec);
  if (ec) {
    std::error_code ignored;
    fs::rename(old, dir, ignored);
    throw_io(part_dir, "cannot rename to " + dir, ec);
  }
  fs::remove_all(old, ec);  // failure leaves a stray folder but a complete output: not an error
}

#ifdef STRAND_HAVE_FFMPEG
// ---------------------------------------------------------------------------------------------
// FFmpeg

std::string av_error_text(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof text);
  return text;
}

void quiet_ffmpeg_log() {
  if (av_log_get_level() == AV_LOG_INFO) av_log_set_level(AV_LOG_QUIET);
}

void set_video_format(AVCodecContext* codec, int width, int height, AVPixelFormat pixel_format,
                      AVRational frame_rate) {
  codec->width = width;
  codec->height = height;
  codec->pix_fmt = pixel_format;
  codec->time_base = av_inv_q(frame_rate);
  codec->framerate = frame_rate;
  codec->sample_aspect_ratio = AVRational{1, 1};
}

void set_x264_options(AVDictionary** options) {
  av_dict_set(options, "crf", "18", 0);
  av_dict_set(options, "preset", "medium", 0);
  av_dict_set(options, "profile", "high", 0);
}

void allocate_frame_buffer(AVFrame* frame, AVPixelFormat pixel_format, int width, int height) {
  frame->format = pixel_format;
  frame->width = width;
  frame->height = height;
  if (av_frame_get_buffer(frame, 0) < 0)
    throw Error(ErrorKind::out_of_memory, "cannot allocate a video frame");
}

void set_bt709_conversion(SwsContext* scaler, bool limited_range_output) {
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(scaler, bt709, /*srcRange=full*/ 1, bt709,
                           /*dstRange*/ limited_range_output ? 0 : 1, /*brightness*/ 0,
                           /*contrast*/ 1 << 16, /*saturation*/ 1 << 16);
}

void FfmpegEncoder::close() noexcept {
  sws_freeContext(scaler);
  scaler = nullptr;
  av_packet_free(&packet);
  av_frame_free(&frame);
  avcodec_free_context(&codec);
  if (format != nullptr) {
    if (format->pb != nullptr) avio_closep(&format->pb);
    avformat_free_context(format);
    format = nullptr;
  }
}

void FfmpegEncoder::fail(const std::string& what, int code) const {
  throw Error(ErrorKind::io, part_path + ": " + what + ": " + av_error_text(code));
}

void FfmpegEncoder::allocate(const AVCodec* encoder, const std::string& failure) {
  codec = avcodec_alloc_context3(encoder);
  frame = av_frame_alloc();
  packet = av_packet_alloc();
  if (codec == nullptr || frame == nullptr || packet == nullptr)
    throw Error(ErrorKind::out_of_memory, failure);
}

void FfmpegEncoder::create_muxer(const std::string& container, const std::string& failure) {
  const int result =
      avformat_alloc_output_context2(&format, nullptr, container.c_str(), part_path.c_str());
  if (result < 0 || format == nullptr) fail(failure, result);
  stream = avformat_new_stream(format, nullptr);
  if (stream == nullptr) throw Error(ErrorKind::out_of_memory, "cannot allocate a stream");
  if ((format->oformat->flags & AVFMT_GLOBALHEADER) != 0)
    codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
}

void FfmpegEncoder::set_stream_parameters() {
  const int result = avcodec_parameters_from_context(stream->codecpar, codec);
  if (result < 0) fail("cannot set stream parameters", result);
  stream->time_base = codec->time_base;
  stream->avg_frame_rate = codec->framerate;
}

void FfmpegEncoder::open_file_and_write_header(AVDictionary** mux_options,
                                               const std::string& failure) {
  int result = avio_open(&format->pb, part_path.c_str(), AVIO_FLAG_WRITE);
  if (result < 0) {
    av_dict_free(mux_options);
    fail("cannot create file", result);
  }
  result = avformat_write_header(format, mux_options);
  av_dict_free(mux_options);
  if (result < 0) fail(failure, result);
}

void FfmpegEncoder::make_frame_writable() {
  if (av_frame_make_writable(frame) < 0)
    throw Error(ErrorKind::out_of_memory, "cannot allocate a video frame");
}

void FfmpegEncoder::encode(int64_t pts, const std::string& encode_failure) {
  frame->pts = pts;
  const int result = avcodec_send_frame(codec, frame);
  if (result < 0) fail(encode_failure, result);
  drain(false, encode_failure);
}

void FfmpegEncoder::drain(bool flushing, const std::string& encode_failure) {
  for (;;) {
    const int result = avcodec_receive_packet(codec, packet);
    if (result == AVERROR(EAGAIN) && !flushing) return;
    if (result == AVERROR_EOF) return;
    if (result < 0) fail(encode_failure, result);
    if (format == nullptr) {
      // Image encoders are intra-only: the packet's pts is its frame number.
      const std::string file = part_path + "/" + frame_file_name(packet->pts, sequence_extension);
      write_file_atomic(file,
                        std::span<const uint8_t>(packet->data, static_cast<size_t>(packet->size)));
      av_packet_unref(packet);
      continue;
    }
    // The muxer may pick its own stream time base at write_header: packets carry codec units.
    av_packet_rescale_ts(packet, codec->time_base, stream->time_base);
    packet->stream_index = stream->index;
    const int written = av_interleaved_write_frame(format, packet);  // takes the packet's data
    if (written < 0) fail("cannot write video data", written);
  }
}

void FfmpegEncoder::flush(const std::string& flush_failure, const std::string& encode_failure) {
  const int result = avcodec_send_frame(codec, nullptr);
  if (result < 0) fail(flush_failure, result);
  drain(true, encode_failure);
}

void FfmpegEncoder::finish_container(const std::string& file_label) {
  if (format == nullptr) return;
  int result = av_write_trailer(format);
  if (result < 0) fail("cannot finish " + file_label, result);
  result = avio_closep(&format->pb);
  if (result < 0) fail("cannot close " + file_label, result);
}
#endif

}  // namespace strand::detail
