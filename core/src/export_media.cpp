// Media export (see strand/export.h and docs/export.md). FFmpeg is optional: without
// STRAND_HAVE_FFMPEG every preset is unavailable and ExportWriter::begin throws Error(unsupported).
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#include "media_util.h"
#include "strand/error.h"
#include "strand/export.h"
#include "strand/file_io.h"

#ifdef STRAND_HAVE_FFMPEG
extern "C" {
#include <libavutil/pixdesc.h>
}
#endif

namespace strand {
namespace fs = std::filesystem;

using detail::throw_io;

namespace {

// Hidden temp files are what write_file_atomic leaves if the process dies mid-frame: a sequence
// folder holding them is still ours to replace.
constexpr detail::TempFrames kTempFrames = detail::TempFrames::accept;

bool is_sequence_folder(const std::string& dir, const std::string& extension) {
  return detail::is_frame_sequence_folder(dir, extension, kTempFrames);
}

// The preset table. `available` is filled in by list_presets(). Sizes: ProRes/DNxHR are 4:2:2
// (even width), H.264 4:2:0 (even width and height); we require both even for all three.
std::vector<ExportPresetInfo> preset_table() {
  auto make = [](std::string name, std::string description, std::string codec,
                 std::string profile, std::string pixel_format, std::string container,
                 std::string extension, bool sequence, bool even) {
    ExportPresetInfo p;
    p.name = std::move(name);
    p.description = std::move(description);
    p.codec = std::move(codec);
    p.profile = std::move(profile);
    p.pixel_format = std::move(pixel_format);
    p.container = std::move(container);
    p.extension = std::move(extension);
    p.sequence = sequence;
    p.even_size = even;
    return p;
  };
  std::vector<ExportPresetInfo> table = {
      make("prores", "Apple ProRes 422 HQ, 10-bit 4:2:2, QuickTime (edit in Resolve / Premiere / FCP)",
           "prores_ks", "3", "yuv422p10le", "mov", ".mov", false, true),
      make("dnxhr", "Avid DNxHR HQ, 8-bit 4:2:2, QuickTime", "dnxhd", "dnxhr_hq", "yuv422p", "mov",
           ".mov", false, true),
      make("dnxhr-hqx", "Avid DNxHR HQX, 10-bit 4:2:2, QuickTime", "dnxhd", "dnxhr_hqx",
           "yuv422p10le", "mov", ".mov", false, true),
      make("h264", "H.264 High, CRF 18, 4:2:0, MP4 with faststart (review copy)", "libx264", "high",
           "yuv420p", "mp4", ".mp4", false, true),
      make("ffv1", "FFV1 version 3, lossless 8-bit RGB, Matroska (archive)", "ffv1", "",
           "bgr0", "matroska", ".mkv", false, false),
      make("png", "PNG sequence, 8-bit RGB", "png", "", "rgb24", "sequence", ".png", true, false),
      make("png16", "PNG sequence, 16-bit RGB", "png", "", "rgb48be", "sequence", ".png", true,
           false),
      make("tiff", "TIFF sequence, 16-bit RGB, uncompressed", "tiff", "", "rgb48le", "sequence",
           ".tiff", true, false),
      make("exr", "OpenEXR sequence, half float, linear light (sRGB decoded), BT.709 primaries",
           "exr", "", "gbrpf32le", "sequence", ".exr", true, false),
  };
  for (auto& p : table) {
    if (p.codec == "dnxhd") {
      p.min_width = 256;  // dnxhd refuses smaller DNxHR frames ("must be at least 256x120")
      p.min_height = 120;
    }
  }
  return table;
}

bool encoder_available(const std::string& codec) {
#ifdef STRAND_HAVE_FFMPEG
  return avcodec_find_encoder_by_name(codec.c_str()) != nullptr;
#else
  (void)codec;
  return false;
#endif
}

nlohmann::json metadata_json(const ExportMetadata& m) {
  nlohmann::json j;
  j["model"] = m.model;
  j["branch"] = m.branch;
  j["seed"] = m.has_seed ? nlohmann::json(m.seed) : nlohmann::json(nullptr);
  nlohmann::json schedule = nlohmann::json::array();
  for (const auto& change : m.prompt_schedule)
    schedule.push_back({{"frame", change.frame}, {"prompt", change.prompt}});
  j["prompt_schedule"] = schedule;
  if (!m.extra.empty()) j["extra"] = m.extra;
  return j;
}

// sRGB decoding (IEC 61966-2-1) of a 16-bit code value, for linear-light EXR.
[[maybe_unused]] float srgb_to_linear(double v) {  // used only with FFmpeg
  return static_cast<float>(v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Presets, rates, conform

std::vector<ExportPresetInfo> list_presets() {
  std::vector<ExportPresetInfo> table = preset_table();
  for (auto& p : table) p.available = encoder_available(p.codec);
  return table;
}

ExportPresetInfo find_preset(const std::string& name) {
  for (auto& p : list_presets())
    if (p.name == name) return p;
  std::string names;
  for (const auto& p : preset_table()) names += (names.empty() ? "" : ", ") + p.name;
  throw Error(ErrorKind::invalid_argument, "unknown export preset '" + name + "' (" + names + ")");
}

FrameRate parse_frame_rate(const std::string& text) {
  if (text == "native" || text.empty()) return {0, 0};
  if (text == "23.976" || text == "23.98") return {24000, 1001};
  if (text == "29.97") return {30000, 1001};
  if (text == "59.94") return {60000, 1001};
  const auto all_digits = [](const std::string& s) {
    return !s.empty() && s.size() < 7 &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  const size_t slash = text.find('/');
  if (slash == std::string::npos) {
    if (all_digits(text) && std::stoi(text) > 0) return {std::stoi(text), 1};
  } else {
    const std::string num = text.substr(0, slash), den = text.substr(slash + 1);
    if (all_digits(num) && all_digits(den) && std::stoi(num) > 0 && std::stoi(den) > 0)
      return {std::stoi(num), std::stoi(den)};
  }
  throw Error(ErrorKind::invalid_argument, "invalid frame rate '" + text +
                                               "' (native, 23.976, 24, 25, 30, or N/D)");
}

// 128-bit intermediates so that frame * rate products of long exports cannot overflow.
__extension__ using Wide = __int128;

int64_t conform_source_index(int64_t output_index, FrameRate source, FrameRate target) {
  // floor(k * (s.num/s.den) / (t.num/t.den)).
  const Wide num = static_cast<Wide>(output_index) * source.num * target.den;
  const Wide den = static_cast<Wide>(source.den) * target.num;
  return static_cast<int64_t>(num / den);
}

int64_t conformed_frame_count(int64_t source_frames, FrameRate source, FrameRate target) {
  const Wide num = static_cast<Wide>(source_frames) * target.num * source.den;
  const Wide den = static_cast<Wide>(target.den) * source.num;
  return static_cast<int64_t>((num + den - 1) / den);
}

std::string sidecar_path(const std::string& path, bool sequence) {
  std::string base = path;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  if (sequence) return base + ".json";
  return fs::path(base).replace_extension(".json").string();
}

// ---------------------------------------------------------------------------------------------
// FFmpeg state

#ifdef STRAND_HAVE_FFMPEG
struct ExportWriter::Impl : detail::FfmpegEncoder {
  AVFrame* rgb48 = nullptr;  // EXR only: scaled sRGB before linearisation
  std::vector<float> linear_lut;  // EXR only: 16-bit sRGB code -> linear
  std::array<float, 256> linear_lut8{};  // EXR only: 8-bit sRGB code -> linear (exact path)
  bool scaling = false;
  bool linear = false;  // EXR

  ~Impl() { close(); }

  void close() noexcept {
    av_frame_free(&rgb48);
    FfmpegEncoder::close();
  }

  void tag(AVColorPrimaries* pri, AVColorTransferCharacteristic* trc, AVColorSpace* spc,
           AVColorRange* range, const ExportPresetInfo& preset) const {
    *pri = AVCOL_PRI_BT709;
    *trc = linear ? AVCOL_TRC_LINEAR : AVCOL_TRC_BT709;
    const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(av_get_pix_fmt(preset.pixel_format.c_str()));
    const bool rgb = desc != nullptr && (desc->flags & AV_PIX_FMT_FLAG_RGB) != 0;
    *spc = rgb ? AVCOL_SPC_RGB : AVCOL_SPC_BT709;
    *range = rgb ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
  }

  // EXR: fills `frame` (gbrpf32: planes G, B, R) with linear light from interleaved RGB codes
  // (`Code`: 8 or 16 bits), each decoded through `lut` (sRGB code -> linear).
  template <typename Code>
  void linearise(const uint8_t* rgb, std::ptrdiff_t rgb_stride, const float* lut, int width,
                 int height) {
    for (int y = 0; y < height; ++y) {
      const auto* in = reinterpret_cast<const Code*>(rgb + y * rgb_stride);
      auto* g = reinterpret_cast<float*>(frame->data[0] + y * frame->linesize[0]);
      auto* b = reinterpret_cast<float*>(frame->data[1] + y * frame->linesize[1]);
      auto* r = reinterpret_cast<float*>(frame->data[2] + y * frame->linesize[2]);
      for (int x = 0; x < width; ++x) {
        r[x] = lut[in[3 * x]];
        g[x] = lut[in[3 * x + 1]];
        b[x] = lut[in[3 * x + 2]];
      }
    }
  }
};
#else
struct ExportWriter::Impl {};
#endif

// ---------------------------------------------------------------------------------------------
// ExportWriter

ExportWriter::ExportWriter(std::string path, ExportSettings settings)
    : path_(std::move(path)), settings_(std::move(settings)), preset_(find_preset(settings_.preset)) {
  if (preset_.sequence) {
    while (path_.size() > 1 && path_.back() == '/') path_.pop_back();
  }
  if (path_.empty() || path_ == "/" || path_ == "." || path_ == "..")
    throw Error(ErrorKind::invalid_argument, "invalid export path '" + path_ + "'");
  part_path_ = path_ + ".part";
  if (settings_.width < 0 || settings_.height < 0 || (settings_.width == 0) != (settings_.height == 0))
    throw Error(ErrorKind::invalid_argument, "export size must be WxH with both > 0, or native");
  const FrameRate t = settings_.target_rate;
  if (!(t.num == 0 && t.den == 0) && (t.num <= 0 || t.den <= 0))
    throw Error(ErrorKind::invalid_argument, "invalid export frame rate");
}

ExportWriter::~ExportWriter() {
  abort();
}

void ExportWriter::begin(int source_width, int source_height, FrameRate source_rate) {
#ifdef STRAND_HAVE_FFMPEG
  if (!preset_.available)
    throw Error(ErrorKind::unsupported, "this FFmpeg has no '" + preset_.codec + "' encoder");
  if (source_width <= 0 || source_height <= 0 || source_rate.num <= 0 || source_rate.den <= 0)
    throw Error(ErrorKind::invalid_argument, "invalid source size or frame rate");
  abort();  // a writer may be restarted
  finished_ = false;
  source_width_ = source_width;
  source_height_ = source_height;
  source_rate_ = source_rate;
  out_rate_ = settings_.target_rate.num == 0 ? source_rate : settings_.target_rate;
  out_width_ = settings_.width > 0 ? settings_.width : source_width;
  out_height_ = settings_.height > 0 ? settings_.height : source_height;
  if (preset_.even_size) {  // documented: odd sizes lose their last column / row
    out_width_ &= ~1;
    out_height_ &= ~1;
  }
  if (out_width_ < preset_.min_width || out_height_ < preset_.min_height) {
    throw Error(ErrorKind::invalid_argument,
                preset_.name + " needs at least " + std::to_string(preset_.min_width) + "x" +
                    std::to_string(preset_.min_height) + " pixels, got " +
                    std::to_string(out_width_) + "x" + std::to_string(out_height_) +
                    " (choose an upscale size)");
  }
  const bool scaling = settings_.width > 0;
  // When not scaling, an odd source is cropped (the source rectangle shrinks to the output).
  const int crop_width = scaling ? source_width : out_width_;
  const int crop_height = scaling ? source_height : out_height_;

  // Target checks before creating anything.
  std::error_code ec;
  if (preset_.sequence) {
    detail::require_replaceable_sequence(path_, preset_.extension, kTempFrames);
  } else if (fs::is_directory(fs::symlink_status(path_, ec))) {
    throw Error(ErrorKind::io, path_ + ": is a folder, not a video file");
  }
  fs::create_directories(parent_folder(path_), ec);
  if (ec) throw_io(path_, "cannot create its folder", ec);
  detail::quiet_ffmpeg_log();

  impl_ = std::make_unique<Impl>();
  Impl& e = *impl_;
  e.part_path = part_path_;
  e.sequence_extension = preset_.extension;
  e.linear = preset_.name == "exr";
  e.scaling = scaling;
  begun_ = true;  // from here on abort() cleans up

  const AVCodec* codec = avcodec_find_encoder_by_name(preset_.codec.c_str());
  if (codec == nullptr) throw Error(ErrorKind::unsupported, "no '" + preset_.codec + "' encoder");
  const AVPixelFormat pix_fmt = av_get_pix_fmt(preset_.pixel_format.c_str());
  e.allocate(codec, "cannot allocate the encoder");
  AVCodecContext* c = e.codec;
  detail::set_video_format(c, out_width_, out_height_, pix_fmt,
                           AVRational{out_rate_.num, out_rate_.den});
  e.tag(&c->color_primaries, &c->color_trc, &c->colorspace, &c->color_range, preset_);
  if (!preset_.sequence)
    e.create_muxer(preset_.container, "cannot create the " + preset_.container + " muxer");

  AVDictionary* options = nullptr;
  if (preset_.codec == "prores_ks") {
    av_dict_set(&options, "profile", preset_.profile.c_str(), 0);
  } else if (preset_.codec == "dnxhd") {
    av_dict_set(&options, "profile", preset_.profile.c_str(), 0);
  } else if (preset_.codec == "libx264") {
    detail::set_x264_options(&options);
  } else if (preset_.codec == "ffv1") {
    av_dict_set(&options, "level", "3", 0);     // slices + CRCs: damage is detectable
    av_dict_set(&options, "slicecrc", "1", 0);
    c->gop_size = 1;                            // every frame intra: cuttable archive
  } else if (preset_.codec == "exr") {
    av_dict_set(&options, "format", "half", 0);
    av_dict_set(&options, "compression", "zip16", 0);
  } else if (preset_.codec == "tiff") {
    av_dict_set(&options, "compression_algo", "raw", 0);
  }
  int result = avcodec_open2(c, codec, &options);
  av_dict_free(&options);
  if (result < 0) e.fail("cannot open the " + preset_.codec + " encoder", result);

  if (preset_.sequence) {
    detail::create_part_folder(part_path_, preset_.extension, kTempFrames);
  } else {
    e.set_stream_parameters();
    e.stream->r_frame_rate = c->framerate;
    // Provenance: one JSON "comment" every reader shows, plus individual keys.
    const ExportMetadata& m = settings_.metadata;
    av_dict_set(&e.format->metadata, "comment", metadata_json(m).dump().c_str(), 0);
    if (!m.branch.empty()) av_dict_set(&e.format->metadata, "title", m.branch.c_str(), 0);
    av_dict_set(&e.format->metadata, "strand_model", m.model.c_str(), 0);
    av_dict_set(&e.format->metadata, "strand_branch", m.branch.c_str(), 0);
    if (m.has_seed) av_dict_set(&e.format->metadata, "strand_seed", std::to_string(m.seed).c_str(), 0);
    av_dict_set(&e.format->metadata, "strand_prompt_schedule",
                metadata_json(m)["prompt_schedule"].dump().c_str(), 0);
    AVDictionary* mux = nullptr;
    if (preset_.container == "mov" || preset_.container == "mp4") {
      // use_metadata_tags: keep the strand_* keys (QuickTime 'mdta'); MP4 also gets faststart so
      // players and editors can start before the index at the end is read.
      av_dict_set(&mux, "movflags",
                  preset_.container == "mp4" ? "+faststart+use_metadata_tags" : "+use_metadata_tags", 0);
    }
    e.open_file_and_write_header(&mux, "cannot write the " + preset_.container + " header");
  }

  detail::allocate_frame_buffer(e.frame, pix_fmt, out_width_, out_height_);

  // Lanczos when resizing; without resizing swscale only converts (and the flag is harmless).
  const int flags = SWS_LANCZOS | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP;
  AVPixelFormat scaled_format = pix_fmt;
  if (e.linear) {
    scaled_format = AV_PIX_FMT_RGB48;
    e.rgb48 = av_frame_alloc();
    if (e.rgb48 == nullptr) throw Error(ErrorKind::out_of_memory, "cannot allocate a video frame");
    detail::allocate_frame_buffer(e.rgb48, AV_PIX_FMT_RGB48, out_width_, out_height_);
    e.linear_lut.resize(65536);
    for (size_t i = 0; i < e.linear_lut.size(); ++i)
      e.linear_lut[i] = srgb_to_linear(static_cast<double>(i) / 65535.0);
    for (size_t i = 0; i < e.linear_lut8.size(); ++i)
      e.linear_lut8[i] = srgb_to_linear(static_cast<double>(i) / 255.0);
  }
  e.scaler = sws_getContext(crop_width, crop_height, AV_PIX_FMT_RGB24, out_width_, out_height_,
                            scaled_format, flags, nullptr, nullptr, nullptr);
  if (e.scaler == nullptr)
    throw Error(ErrorKind::unsupported, "swscale cannot convert RGB24 to " + preset_.pixel_format);
  // For RGB outputs the matrix is unused and the range stays full.
  const bool yuv = c->colorspace == AVCOL_SPC_BT709;
  detail::set_bt709_conversion(e.scaler, /*limited_range_output=*/yuv);
  source_frames_ = 0;
  output_frames_ = 0;
#else
  (void)source_width;
  (void)source_height;
  (void)source_rate;
  throw Error(ErrorKind::unsupported, "cannot export media: built without FFmpeg");
#endif
}

void ExportWriter::write(const Frame& frame) {
  if (!begun_ || finished_ || !impl_)
    throw Error(ErrorKind::invalid_argument, "ExportWriter::write outside begin/finish");
  if (frame.width != source_width_ || frame.height != source_height_ ||
      frame.rgb.size() != static_cast<size_t>(frame.width) * static_cast<size_t>(frame.height) * 3)
    throw Error(ErrorKind::invalid_argument, "frame " + std::to_string(frame.index) +
                                                 " differs from the export's source size");
  // Streaming conform: encode every output frame whose sampled source frame is this one (none
  // when this frame is dropped, several when it is repeated).
  while (conform_source_index(output_frames_, source_rate_, out_rate_) == source_frames_)
    encode_frame(frame);
  ++source_frames_;
}

void ExportWriter::encode_frame(const Frame& frame) {
#ifdef STRAND_HAVE_FFMPEG
  Impl& e = *impl_;
  e.make_frame_writable();
  const uint8_t* source[1] = {frame.rgb.data()};
  const int source_stride[1] = {frame.width * 3};
  AVFrame* scaled = e.linear ? e.rgb48 : e.frame;
  const int crop_height = settings_.width > 0 ? frame.height : out_height_;
  if (e.linear && !e.scaling) {
    // Unscaled EXR: decode the 8-bit values directly. swscale's RGB24 -> RGB48 path is not exact
    // (measured: 188 came out as ~187.2), which would bias every linear value.
    e.linearise<uint8_t>(frame.rgb.data(), static_cast<std::ptrdiff_t>(frame.width) * 3,
                         e.linear_lut8.data(), out_width_, out_height_);
  } else {
    sws_scale(e.scaler, source, source_stride, 0, crop_height, scaled->data, scaled->linesize);
  }
  if (e.linear && e.scaling) {
    // Linear light from the (scaled) 16-bit sRGB values.
    e.linearise<uint16_t>(e.rgb48->data[0], e.rgb48->linesize[0], e.linear_lut.data(), out_width_,
                          out_height_);
  }
  // Tags on every frame too: some encoders (ProRes) take them from the frame, not the context.
  e.tag(&e.frame->color_primaries, &e.frame->color_trc, &e.frame->colorspace,
        &e.frame->color_range, preset_);
  e.encode(output_frames_, "encoding failed");  // codec time base: one tick per output frame
  ++output_frames_;
#else
  (void)frame;
  throw Error(ErrorKind::unsupported, "cannot export media: built without FFmpeg");
#endif
}

void ExportWriter::write_sidecar_part() {
  nlohmann::json j = metadata_json(settings_.metadata);
  nlohmann::json media;
  media["file"] = fs::path(path_).filename().string();
  media["preset"] = preset_.name;
  media["codec"] = preset_.codec;
  media["profile"] = preset_.profile;
  media["pixel_format"] = preset_.pixel_format;
  media["width"] = out_width_;
  media["height"] = out_height_;
  media["frame_rate"] = std::to_string(out_rate_.num) + "/" + std::to_string(out_rate_.den);
  media["source_frame_rate"] = std::to_string(source_rate_.num) + "/" + std::to_string(source_rate_.den);
  media["frames"] = output_frames_;
  media["source_frames"] = source_frames_;
  media["colour"] = preset_.name == "exr" ? "BT.709 primaries, linear light"
                                          : "BT.709 primaries and transfer";
  j["media"] = media;
  const std::string text = j.dump(2) + "\n";
  write_file_atomic(sidecar_path(path_, preset_.sequence) + ".part",
                    std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

void ExportWriter::finish() {
#ifdef STRAND_HAVE_FFMPEG
  if (!begun_ || finished_ || !impl_)
    throw Error(ErrorKind::invalid_argument, "ExportWriter::finish without begin");
  if (output_frames_ == 0) throw Error(ErrorKind::invalid_argument, "nothing to export: no frames");
  Impl& e = *impl_;
  e.flush("encoder flush failed", "encoding failed");
  e.finish_container("the file");
  e.close();
  sync_to_disk(part_path_, preset_.sequence);
  const std::string sidecar = sidecar_path(path_, preset_.sequence);
  if (settings_.write_sidecar) write_sidecar_part();

  if (preset_.sequence) {
    detail::move_sequence_into_place(part_path_, path_);
  } else {
    detail::rename_into_place(part_path_, path_);
  }
  finished_ = true;
  impl_.reset();
  std::error_code ec;
  if (settings_.write_sidecar) {
    fs::rename(sidecar + ".part", sidecar, ec);
    if (ec) throw_io(sidecar, "cannot rename the sidecar into place", ec);
  }
  sync_to_disk(parent_folder(path_), true);
#else
  throw Error(ErrorKind::unsupported, "cannot export media: built without FFmpeg");
#endif
}

void ExportWriter::abort() noexcept {
  if (!begun_ || finished_) return;
  impl_.reset();  // closes the file before it is removed
  std::error_code ec;
  if (preset_.sequence) {
    if (is_sequence_folder(part_path_, preset_.extension)) fs::remove_all(part_path_, ec);
  } else {
    fs::remove(part_path_, ec);
  }
  fs::remove(sidecar_path(path_, preset_.sequence) + ".part", ec);
  begun_ = false;
}

}  // namespace strand
