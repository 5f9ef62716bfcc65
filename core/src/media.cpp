// Media output (see strand/media.h). libpng and FFmpeg are optional: each part compiles only when
// its STRAND_HAVE_* flag is set, and the public functions report Error(unsupported) otherwise.
#include "strand/media.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "strand/error.h"
#include "strand/file_io.h"

#ifdef STRAND_HAVE_PNG
#include <png.h>
#endif

#ifdef STRAND_HAVE_FFMPEG
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}
#endif

namespace strand {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void throw_io(const std::string& path, const std::string& what,
                           const std::error_code& ec) {
  throw Error(ErrorKind::io, path + ": " + what + ": " + ec.message());
}

void check_frame(const Frame& frame) {
  if (frame.width <= 0 || frame.height <= 0 ||
      frame.rgb.size() !=
          static_cast<size_t>(frame.width) * static_cast<size_t>(frame.height) * 3) {
    throw Error(ErrorKind::invalid_argument,
                "frame " + std::to_string(frame.index) + " has an invalid size (" +
                    std::to_string(frame.width) + "x" + std::to_string(frame.height) + ", " +
                    std::to_string(frame.rgb.size()) + " bytes)");
  }
}

void create_parent_folders(const std::string& path) {
  std::error_code ec;
  fs::create_directories(parent_folder(path), ec);
  if (ec) throw_io(path, "cannot create its folder", ec);
}

std::string frame_file_name(int64_t number) {
  char name[32];
  std::snprintf(name, sizeof name, "frame_%06lld.png", static_cast<long long>(number));
  return name;
}

// True for names PngSequenceSink writes: "frame_" + digits + ".png".
bool is_frame_file_name(const std::string& name) {
  constexpr std::string_view prefix = "frame_", suffix = ".png";
  if (name.size() <= prefix.size() + suffix.size() || !name.starts_with(prefix) ||
      !name.ends_with(suffix)) {
    return false;
  }
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()),
                     name.end() - static_cast<std::ptrdiff_t>(suffix.size()),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// A folder we may delete or replace: it exists and holds only frame files (an earlier sequence).
// Anything else might be a user's folder named by mistake, so we refuse to touch it.
bool is_frame_sequence_folder(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec) || !is_frame_file_name(it->path().filename().string()))
      return false;
  }
  return !ec;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// PNG

bool media_supports_png() {
#ifdef STRAND_HAVE_PNG
  return true;
#else
  return false;
#endif
}

std::vector<uint8_t> encode_png(const Frame& frame) {
  check_frame(frame);
#ifdef STRAND_HAVE_PNG
  // libpng's simplified API reports errors by return value (no setjmp/longjmp across C++ frames).
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(frame.width);
  image.height = static_cast<png_uint_32>(frame.height);
  image.format = PNG_FORMAT_RGB;
  const auto row_stride = static_cast<png_int_32>(frame.width * 3);
  png_alloc_size_t size = 0;
  // First call sizes the output (an upper bound), second writes it.
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, frame.rgb.data(), row_stride,
                                 nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw Error(ErrorKind::invalid_argument, "cannot encode PNG: " + message);
  }
  std::vector<uint8_t> bytes(size);
  if (!png_image_write_to_memory(&image, bytes.data(), &size, 0, frame.rgb.data(), row_stride,
                                 nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    throw Error(ErrorKind::invalid_argument, "cannot encode PNG: " + message);
  }
  bytes.resize(size);
  return bytes;
#else
  throw Error(ErrorKind::unsupported, "cannot write PNG: built without libpng");
#endif
}

void write_png(const std::string& path, const Frame& frame) {
  const std::vector<uint8_t> bytes = encode_png(frame);
  write_file_atomic(path, bytes);
}

// ---------------------------------------------------------------------------------------------
// PngSequenceSink

PngSequenceSink::PngSequenceSink(std::string directory) : directory_(std::move(directory)) {
  // "out/demo/" and "out/demo" are the same folder; the ".part" suffix needs the bare name.
  while (directory_.size() > 1 && directory_.back() == '/') directory_.pop_back();
  if (directory_.empty() || directory_ == "/" || directory_ == "." || directory_ == "..") {
    throw Error(ErrorKind::invalid_argument, "invalid output folder '" + directory_ + "'");
  }
  part_directory_ = directory_ + ".part";
}

PngSequenceSink::~PngSequenceSink() {
  abort();
}

void PngSequenceSink::begin(int width, int height, int /*fps*/) {
  if (!media_supports_png())
    throw Error(ErrorKind::unsupported, "cannot write PNG: built without libpng");
  if (width <= 0 || height <= 0) throw Error(ErrorKind::invalid_argument, "invalid frame size");
  std::error_code ec;
  const fs::file_status target = fs::symlink_status(directory_, ec);
  if (fs::exists(target)) {
    if (!fs::is_directory(target) || !is_frame_sequence_folder(directory_)) {
      throw Error(
          ErrorKind::io,
          directory_ + ": exists and is not an earlier frame sequence (refusing to replace it)");
    }
  }
  const fs::file_status part = fs::symlink_status(part_directory_, ec);
  if (fs::exists(part)) {
    // Left over from an interrupted run. Only ever delete what we could have written.
    if (!fs::is_directory(part) || !is_frame_sequence_folder(part_directory_)) {
      throw Error(ErrorKind::io, part_directory_ + ": exists and is not a partial frame sequence");
    }
    fs::remove_all(part_directory_, ec);
    if (ec) throw_io(part_directory_, "cannot remove stale partial output", ec);
  }
  create_parent_folders(part_directory_);
  fs::create_directory(part_directory_, ec);
  if (ec) throw_io(part_directory_, "cannot create folder", ec);
  width_ = width;
  height_ = height;
  begun_ = true;
  finished_ = false;
  frames_written_ = 0;
}

void PngSequenceSink::write(const Frame& frame) {
  if (!begun_ || finished_)
    throw Error(ErrorKind::invalid_argument, "PngSequenceSink::write outside begin/finish");
  if (frame.width != width_ || frame.height != height_) {
    throw Error(ErrorKind::invalid_argument, "frame size differs from the sequence's");
  }
  write_png(part_directory_ + "/" + frame_file_name(frames_written_), frame);
  ++frames_written_;
}

void PngSequenceSink::finish() {
  if (!begun_ || finished_)
    throw Error(ErrorKind::invalid_argument, "PngSequenceSink::finish without begin");
  std::error_code ec;
  const std::string parent = parent_folder(directory_);
  if (fs::exists(fs::symlink_status(directory_, ec))) {
    // rename() cannot replace a non-empty folder: move the old sequence aside first, so that at
    // every moment DIR is either the complete old sequence or the complete new one (or absent).
    if (!fs::is_directory(fs::symlink_status(directory_, ec)) ||
        !is_frame_sequence_folder(directory_)) {
      throw Error(ErrorKind::io, directory_ + ": exists and is not an earlier frame sequence");
    }
    const std::string old = directory_ + ".old-" + std::to_string(::getpid());
    fs::rename(directory_, old, ec);
    if (ec) throw_io(directory_, "cannot move the earlier sequence aside", ec);
    fs::rename(part_directory_, directory_, ec);
    if (ec) {
      std::error_code ignored;
      fs::rename(old, directory_, ignored);
      throw_io(part_directory_, "cannot rename to " + directory_, ec);
    }
    fs::remove_all(old, ec);  // failure leaves a stray folder but a complete output: not an error
  } else {
    fs::rename(part_directory_, directory_, ec);
    if (ec) throw_io(part_directory_, "cannot rename to " + directory_, ec);
  }
  finished_ = true;
  sync_to_disk(parent, true);
}

void PngSequenceSink::abort() noexcept {
  if (!begun_ || finished_) return;
  std::error_code ec;
  fs::remove_all(part_directory_, ec);
  begun_ = false;
}

// ---------------------------------------------------------------------------------------------
// Mp4Sink

bool media_supports_mp4() {
#ifdef STRAND_HAVE_FFMPEG
  return avcodec_find_encoder_by_name("libx264") != nullptr;
#else
  return false;
#endif
}

#ifdef STRAND_HAVE_FFMPEG
namespace {

std::string av_error_text(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof text);
  return text;
}

}  // namespace

struct Mp4Sink::Encoder {
  AVFormatContext* format = nullptr;
  AVCodecContext* codec = nullptr;
  AVStream* stream = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* packet = nullptr;
  SwsContext* scaler = nullptr;
  bool header_written = false;
  std::string part_path;

  ~Encoder() { close(); }

  void close() noexcept {
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

  [[noreturn]] void fail(const std::string& what, int code) const {
    throw Error(ErrorKind::io, part_path + ": " + what + ": " + av_error_text(code));
  }

  static void tag_bt709(AVCodecContext* c) {
    c->color_primaries = AVCOL_PRI_BT709;
    c->color_trc = AVCOL_TRC_BT709;
    c->colorspace = AVCOL_SPC_BT709;
    c->color_range = AVCOL_RANGE_MPEG;
  }
  static void tag_bt709(AVFrame* f) {
    f->color_primaries = AVCOL_PRI_BT709;
    f->color_trc = AVCOL_TRC_BT709;
    f->colorspace = AVCOL_SPC_BT709;
    f->color_range = AVCOL_RANGE_MPEG;
  }

  // Moves every packet the encoder has ready into the file. `flushing`: the encoder was sent the
  // null frame, so run until it reports end of stream.
  void drain(bool flushing) {
    for (;;) {
      const int result = avcodec_receive_packet(codec, packet);
      if (result == AVERROR(EAGAIN) && !flushing) return;
      if (result == AVERROR_EOF) return;
      if (result < 0) fail("H.264 encoding failed", result);
      // The muxer picks its own stream time base at write_header: packets carry codec units.
      av_packet_rescale_ts(packet, codec->time_base, stream->time_base);
      packet->stream_index = stream->index;
      const int written = av_interleaved_write_frame(format, packet);  // takes the packet's data
      if (written < 0) fail("cannot write video data", written);
    }
  }
};
#else
struct Mp4Sink::Encoder {};
#endif

Mp4Sink::Mp4Sink(std::string path) : path_(std::move(path)), part_path_(path_ + ".part") {
  if (!media_supports_mp4()) {
#ifdef STRAND_HAVE_FFMPEG
    throw Error(ErrorKind::unsupported, "cannot write MP4: this FFmpeg has no libx264 encoder");
#else
    throw Error(ErrorKind::unsupported, "cannot write MP4: built without FFmpeg");
#endif
  }
}

Mp4Sink::~Mp4Sink() {
  abort();
}

void Mp4Sink::begin(int width, int height, int fps) {
#ifdef STRAND_HAVE_FFMPEG
  if (width <= 0 || height <= 0 || fps <= 0)
    throw Error(ErrorKind::invalid_argument, "invalid video size or rate");
  if (width % 2 != 0 || height % 2 != 0) {
    throw Error(ErrorKind::invalid_argument,
                "H.264 (yuv420p) needs an even width and height, got " + std::to_string(width) +
                    "x" + std::to_string(height));
  }
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(path_, ec))) {
    throw Error(ErrorKind::io, path_ + ": is a folder, not a video file");
  }
  create_parent_folders(path_);
  // FFmpeg logs to stderr at "info" level by default (x264 prints several lines per file). The
  // engine reports failures as exceptions, so silence it unless the application chose a level.
  if (av_log_get_level() == AV_LOG_INFO) av_log_set_level(AV_LOG_QUIET);
  abort();  // a sink may be restarted
  finished_ = false;
  frames_written_ = 0;
  encoder_ = std::make_unique<Encoder>();
  Encoder& e = *encoder_;
  e.part_path = part_path_;

  // The container is named explicitly: "NAME.mp4.part" would not be recognised by its extension.
  int result = avformat_alloc_output_context2(&e.format, nullptr, "mp4", part_path_.c_str());
  if (result < 0 || e.format == nullptr) e.fail("cannot create MP4 muxer", result);
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (codec == nullptr)
    throw Error(ErrorKind::unsupported, "cannot write MP4: FFmpeg has no libx264 encoder");
  e.stream = avformat_new_stream(e.format, nullptr);
  e.codec = avcodec_alloc_context3(codec);
  e.frame = av_frame_alloc();
  e.packet = av_packet_alloc();
  if (e.stream == nullptr || e.codec == nullptr || e.frame == nullptr || e.packet == nullptr) {
    throw Error(ErrorKind::out_of_memory, "cannot allocate the MP4 encoder");
  }
  AVCodecContext* c = e.codec;
  c->width = width;
  c->height = height;
  c->pix_fmt = AV_PIX_FMT_YUV420P;
  c->time_base = AVRational{1, fps};
  c->framerate = AVRational{fps, 1};
  c->sample_aspect_ratio = AVRational{1, 1};
  Encoder::tag_bt709(c);
  if ((e.format->oformat->flags & AVFMT_GLOBALHEADER) != 0) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;

  AVDictionary* codec_options = nullptr;
  av_dict_set(&codec_options, "crf", "18", 0);
  av_dict_set(&codec_options, "preset", "medium", 0);
  av_dict_set(&codec_options, "profile", "high", 0);
  result = avcodec_open2(c, codec, &codec_options);
  av_dict_free(&codec_options);
  if (result < 0) e.fail("cannot open the libx264 encoder", result);

  result = avcodec_parameters_from_context(e.stream->codecpar, c);
  if (result < 0) e.fail("cannot set stream parameters", result);
  e.stream->time_base = c->time_base;
  e.stream->avg_frame_rate = c->framerate;

  result = avio_open(&e.format->pb, part_path_.c_str(), AVIO_FLAG_WRITE);
  if (result < 0) e.fail("cannot create file", result);
  AVDictionary* mux_options = nullptr;
  // +faststart moves the index to the front so players and editors can start before the end.
  av_dict_set(&mux_options, "movflags", "+faststart", 0);
  result = avformat_write_header(e.format, &mux_options);
  av_dict_free(&mux_options);
  if (result < 0) e.fail("cannot write MP4 header", result);
  e.header_written = true;

  e.frame->format = AV_PIX_FMT_YUV420P;
  e.frame->width = width;
  e.frame->height = height;
  result = av_frame_get_buffer(e.frame, 0);
  if (result < 0) throw Error(ErrorKind::out_of_memory, "cannot allocate a video frame");

  e.scaler = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr);
  if (e.scaler == nullptr)
    throw Error(ErrorKind::unsupported, "swscale cannot convert RGB24 to yuv420p");
  // swscale assumes BT.601 unless told: full-range BT.709 RGB in, limited-range BT.709 YUV out,
  // matching the tags above (otherwise colours shift in every player that honours the tags).
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(e.scaler, bt709, /*srcRange=full*/ 1, bt709, /*dstRange=limited*/ 0,
                           /*brightness*/ 0, /*contrast*/ 1 << 16, /*saturation*/ 1 << 16);
#else
  (void)width;
  (void)height;
  (void)fps;
  throw Error(ErrorKind::unsupported, "cannot write MP4: built without FFmpeg");
#endif
}

void Mp4Sink::write(const Frame& frame) {
#ifdef STRAND_HAVE_FFMPEG
  if (!encoder_ || finished_)
    throw Error(ErrorKind::invalid_argument, "Mp4Sink::write outside begin/finish");
  Encoder& e = *encoder_;
  check_frame(frame);
  if (frame.width != e.codec->width || frame.height != e.codec->height) {
    throw Error(ErrorKind::invalid_argument, "frame size differs from the video's");
  }
  // The encoder may still reference the previous frame's buffers.
  int result = av_frame_make_writable(e.frame);
  if (result < 0) throw Error(ErrorKind::out_of_memory, "cannot allocate a video frame");
  const uint8_t* source[1] = {frame.rgb.data()};
  const int source_stride[1] = {frame.width * 3};
  sws_scale(e.scaler, source, source_stride, 0, frame.height, e.frame->data, e.frame->linesize);
  Encoder::tag_bt709(e.frame);
  e.frame->pts = frames_written_;  // in codec time base units: one tick per frame
  result = avcodec_send_frame(e.codec, e.frame);
  if (result < 0) e.fail("H.264 encoding failed", result);
  e.drain(false);
  ++frames_written_;
#else
  (void)frame;
  throw Error(ErrorKind::unsupported, "cannot write MP4: built without FFmpeg");
#endif
}

void Mp4Sink::finish() {
#ifdef STRAND_HAVE_FFMPEG
  if (!encoder_ || finished_)
    throw Error(ErrorKind::invalid_argument, "Mp4Sink::finish without begin");
  Encoder& e = *encoder_;
  // x264 holds frames in its lookahead: without the null-frame flush a short clip comes out empty.
  int result = avcodec_send_frame(e.codec, nullptr);
  if (result < 0) e.fail("H.264 flush failed", result);
  e.drain(true);
  result = av_write_trailer(e.format);
  if (result < 0) e.fail("cannot finish the MP4 file", result);
  result = avio_closep(&e.format->pb);
  if (result < 0) e.fail("cannot close the MP4 file", result);
  e.close();
  sync_to_disk(part_path_, false);
  std::error_code ec;
  fs::rename(part_path_, path_, ec);
  if (ec) throw_io(part_path_, "cannot rename to " + path_, ec);
  finished_ = true;
  encoder_.reset();
  sync_to_disk(parent_folder(path_), true);
#else
  throw Error(ErrorKind::unsupported, "cannot write MP4: built without FFmpeg");
#endif
}

void Mp4Sink::abort() noexcept {
  if (finished_) return;
  const bool had_output = encoder_ != nullptr;
  encoder_.reset();  // closes the file before it is removed
  if (had_output) {
    std::error_code ec;
    fs::remove(part_path_, ec);
  }
}

// ---------------------------------------------------------------------------------------------

std::unique_ptr<FrameSink> make_sink(const std::string& path) {
  std::string extension = fs::path(path).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (extension == ".mp4") return std::make_unique<Mp4Sink>(path);
  return std::make_unique<PngSequenceSink>(path);
}

}  // namespace strand
