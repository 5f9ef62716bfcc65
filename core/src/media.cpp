// Media output (see strand/media.h). libpng and FFmpeg are optional: each part compiles only when
// its STRAND_HAVE_* flag is set, and the public functions report Error(unsupported) otherwise.
#include "strand/media.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <utility>

#include "media_util.h"
#include "strand/error.h"
#include "strand/file_io.h"

#ifdef STRAND_HAVE_PNG
#include <png.h>
#endif

namespace strand {
namespace fs = std::filesystem;

using detail::throw_io;

namespace {

// PngSequenceSink's frames. A folder holding hidden temp files (left by a crash mid-frame) is not
// counted as a sequence here, as before; ExportWriter accepts them.
constexpr const char* kPngExtension = ".png";
constexpr detail::TempFrames kPngTempFrames = detail::TempFrames::refuse;

bool is_frame_sequence_folder(const std::string& dir) {
  return detail::is_frame_sequence_folder(dir, kPngExtension, kPngTempFrames);
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
  detail::require_replaceable_sequence(directory_, kPngExtension, kPngTempFrames);
  create_parent_folders(part_directory_);
  detail::create_part_folder(part_directory_, kPngExtension, kPngTempFrames);
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
  // No fsync per frame (two syncs a frame cost ~30 ms, ten times the engine's time on a GPU): the
  // folder is synced once and renamed in finish(); a crash leaves only the ".part" folder, which
  // the next begin() removes.
  write_file_unsynced(
      part_directory_ + "/" + detail::frame_file_name(frames_written_, kPngExtension),
      encode_png(frame));
  ++frames_written_;
}

void PngSequenceSink::finish() {
  if (!begun_ || finished_)
    throw Error(ErrorKind::invalid_argument, "PngSequenceSink::finish without begin");
  std::error_code ec;
  const std::string parent = parent_folder(directory_);
  // Checked again: DIR may have appeared since begin().
  const fs::file_status target = fs::symlink_status(directory_, ec);
  if (fs::exists(target) && (!fs::is_directory(target) || !is_frame_sequence_folder(directory_))) {
    throw Error(ErrorKind::io, directory_ + ": exists and is not an earlier frame sequence");
  }
  sync_file_system(part_directory_);  // every frame on disk before the rename makes them visible
  detail::move_sequence_into_place(part_directory_, directory_);
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
struct Mp4Sink::Encoder : detail::FfmpegEncoder {
  // `Tagged`: AVCodecContext or AVFrame, which carry the same four colour fields.
  template <typename Tagged>
  static void tag_bt709(Tagged* t) {
    t->color_primaries = AVCOL_PRI_BT709;
    t->color_trc = AVCOL_TRC_BT709;
    t->colorspace = AVCOL_SPC_BT709;
    t->color_range = AVCOL_RANGE_MPEG;
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
  detail::quiet_ffmpeg_log();
  abort();  // a sink may be restarted
  finished_ = false;
  frames_written_ = 0;
  encoder_ = std::make_unique<Encoder>();
  Encoder& e = *encoder_;
  e.part_path = part_path_;

  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (codec == nullptr)
    throw Error(ErrorKind::unsupported, "cannot write MP4: FFmpeg has no libx264 encoder");
  e.allocate(codec, "cannot allocate the MP4 encoder");
  AVCodecContext* c = e.codec;
  detail::set_video_format(c, width, height, AV_PIX_FMT_YUV420P, AVRational{fps, 1});
  Encoder::tag_bt709(c);
  e.create_muxer("mp4", "cannot create MP4 muxer");

  AVDictionary* codec_options = nullptr;
  detail::set_x264_options(&codec_options);
  const int result = avcodec_open2(c, codec, &codec_options);
  av_dict_free(&codec_options);
  if (result < 0) e.fail("cannot open the libx264 encoder", result);

  e.set_stream_parameters();
  AVDictionary* mux_options = nullptr;
  // +faststart moves the index to the front so players and editors can start before the end.
  av_dict_set(&mux_options, "movflags", "+faststart", 0);
  e.open_file_and_write_header(&mux_options, "cannot write MP4 header");

  detail::allocate_frame_buffer(e.frame, AV_PIX_FMT_YUV420P, width, height);
  e.scaler = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND, nullptr, nullptr, nullptr);
  if (e.scaler == nullptr)
    throw Error(ErrorKind::unsupported, "swscale cannot convert RGB24 to yuv420p");
  detail::set_bt709_conversion(e.scaler, /*limited_range_output=*/true);
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
  e.make_frame_writable();
  const uint8_t* source[1] = {frame.rgb.data()};
  const int source_stride[1] = {frame.width * 3};
  sws_scale(e.scaler, source, source_stride, 0, frame.height, e.frame->data, e.frame->linesize);
  Encoder::tag_bt709(e.frame);
  e.encode(frames_written_, "H.264 encoding failed");
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
  e.flush("H.264 flush failed", "H.264 encoding failed");
  e.finish_container("the MP4 file");
  e.close();
  sync_to_disk(part_path_, false);
  detail::rename_into_place(part_path_, path_);
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
