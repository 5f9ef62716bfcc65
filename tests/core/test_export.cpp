// Export (strand/export.h): every media preset on a short synthetic clip, checked with the
// ffprobe / ffmpeg tools (codec, profile, pixel format, colour tags, frame count, duration, and
// PSNR of the decoded frames against the source); frame-rate conform, upscaling, metadata,
// cancellation and failures (unwritable path, full disk) leaving nothing that looks finished; and
// the timeline writers' exact frame arithmetic. The real OTIO library and xmllint check the
// timelines in training/tests/test_export_timelines.py.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "strand/error.h"
#include "strand/export.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using strand::Error;
using strand::ErrorKind;
using strand::ExportSettings;
using strand::ExportWriter;
using strand::Frame;
using strand::FrameRate;
using strand::test::TempDir;

namespace {

// Eight vertical colour bars (SMPTE-like, 75% and full colours) shifted right by 2 px per frame
// with a vertical brightness ramp, so every frame differs and chroma edges fall on even columns.
Frame bars_frame(int width, int height, int64_t index) {
  static const uint8_t colours[8][3] = {{235, 235, 235}, {235, 235, 16}, {16, 235, 235}, {16, 235, 16},
                                        {235, 16, 235},  {235, 16, 16},  {16, 16, 235},  {40, 40, 40}};
  Frame f;
  f.width = width;
  f.height = height;
  f.index = index;
  f.rgb.resize(static_cast<size_t>(width) * static_cast<size_t>(height) * 3);
  const int bar = std::max(2, (width / 8) & ~1);
  for (int y = 0; y < height; ++y) {
    const double ramp = 0.75 + 0.25 * y / std::max(1, height - 1);
    for (int x = 0; x < width; ++x) {
      const auto* c = colours[((x + 2 * index) / bar) % 8];
      for (int ch = 0; ch < 3; ++ch)
        f.rgb[(static_cast<size_t>(y) * width + x) * 3 + ch] = static_cast<uint8_t>(std::lround(c[ch] * ramp));
    }
  }
  return f;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs a command, returns its stdout (binary-safe); `status` gets the exit status.
std::string run(const std::string& command, int* status = nullptr) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed");
  std::string out;
  char buffer[65536];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  const int rc = ::pclose(pipe);
  if (status != nullptr) *status = rc;
  return out;
}

bool have_tool(const char* name) {
  int status = 0;
  run(std::string("command -v ") + name + " >/dev/null 2>&1", &status);
  return status == 0;
}

nlohmann::json ffprobe(const std::string& input) {
  int status = 0;
  const std::string out = run("ffprobe -v error -count_frames -show_streams -show_format -of json " +
                                  input + " 2>/dev/null",
                              &status);
  EXPECT_EQ(status, 0) << input;
  return nlohmann::json::parse(out.empty() ? "{}" : out);
}

// Decodes to packed RGB24 frames with ffmpeg (which honours the file's colour tags).
std::vector<std::vector<uint8_t>> decode_rgb(const std::string& input_args, int width, int height) {
  int status = 0;
  const std::string raw =
      run("ffmpeg -v error " + input_args + " -f rawvideo -pix_fmt rgb24 - 2>/dev/null", &status);
  EXPECT_EQ(status, 0) << input_args;
  const size_t frame_bytes = static_cast<size_t>(width) * height * 3;
  std::vector<std::vector<uint8_t>> frames;
  for (size_t at = 0; at + frame_bytes <= raw.size(); at += frame_bytes)
    frames.emplace_back(raw.begin() + static_cast<std::ptrdiff_t>(at),
                        raw.begin() + static_cast<std::ptrdiff_t>(at + frame_bytes));
  EXPECT_EQ(raw.size() % frame_bytes, 0u);
  return frames;
}

double psnr(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size() || a.empty()) return 0;
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    sum += d * d;
  }
  if (sum == 0) return std::numeric_limits<double>::infinity();
  return 10 * std::log10(255.0 * 255.0 / (sum / static_cast<double>(a.size())));
}

bool preset_usable(const std::string& name) {
  return strand::find_preset(name).available && have_tool("ffprobe") && have_tool("ffmpeg");
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct PresetCase {
  const char* preset;
  int width, height;
  const char* codec;         // ffprobe codec_name
  const char* profile;       // ffprobe profile ("" = not checked)
  const char* pixel_format;  // ffprobe pix_fmt
  bool yuv;                  // BT.709 limited-range YUV tags expected
  double min_psnr;           // dB, worst frame; infinity = bit-exact
  const char* decode_extra;  // ffmpeg decoder options before -i
};

class PresetTest : public ::testing::TestWithParam<PresetCase> {};

TEST_P(PresetTest, ProbesAndDecodesBackCloseToTheSource) {
  const PresetCase& pc = GetParam();
  if (!preset_usable(pc.preset)) GTEST_SKIP() << pc.preset << " not available";
  const auto info = strand::find_preset(pc.preset);
  TempDir dir("strand-export");
  const std::string out = info.sequence ? dir.file("seq") : dir.file(std::string("clip") + info.extension);
  constexpr int kFrames = 12;
  const FrameRate rate{16, 1};
  std::vector<Frame> source;
  for (int i = 0; i < kFrames; ++i) source.push_back(bars_frame(pc.width, pc.height, i));

  ExportSettings settings;
  settings.preset = pc.preset;
  settings.metadata.model = "strand-tiny";
  settings.metadata.branch = "main";
  settings.metadata.seed = 1234;
  settings.metadata.has_seed = true;
  settings.metadata.prompt_schedule = {{0, "a red fox"}, {6, "a fox in snow"}};
  {
    ExportWriter writer(out, settings);
    writer.begin(pc.width, pc.height, rate);
    for (const auto& f : source) writer.write(f);
    writer.finish();
    EXPECT_EQ(writer.output_frames_written(), kFrames);
  }
  ASSERT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".part"));

  std::string input;
  if (info.sequence) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(out)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    ASSERT_EQ(names.size(), static_cast<size_t>(kFrames));
    EXPECT_EQ(names.front(), "frame_000000" + info.extension);
    EXPECT_EQ(names.back(), "frame_000011" + info.extension);
    input = "-framerate 16 -i " + shell_quote(out + "/frame_%06d" + info.extension);
  } else {
    input = "-i " + shell_quote(out);
  }

  const auto probe = ffprobe(info.sequence ? input.substr(input.find("-i ") + 3) : shell_quote(out));
  ASSERT_TRUE(probe.contains("streams") && !probe["streams"].empty());
  const auto& s = probe["streams"][0];
  EXPECT_EQ(s.value("codec_name", ""), pc.codec);
  if (*pc.profile != 0) {
    EXPECT_EQ(s.value("profile", ""), pc.profile);
  }
  EXPECT_EQ(s.value("pix_fmt", ""), pc.pixel_format);
  EXPECT_EQ(s.value("width", 0), pc.width);
  EXPECT_EQ(s.value("height", 0), pc.height);
  if (!info.sequence) {
    EXPECT_EQ(s.value("nb_read_frames", ""), std::to_string(kFrames));
    EXPECT_EQ(s.value("r_frame_rate", ""), "16/1");
    // Within half a frame (Matroska stores milliseconds).
    EXPECT_NEAR(std::stod(probe["format"].value("duration", "0")), kFrames / 16.0, 0.5 / 16);
    EXPECT_EQ(s.value("color_primaries", ""), "bt709");
    EXPECT_EQ(s.value("color_transfer", ""), "bt709");
    EXPECT_EQ(s.value("color_space", ""), pc.yuv ? "bt709" : "gbr");
    if (pc.yuv) {
      EXPECT_EQ(s.value("color_range", ""), "tv");
    }
    // Provenance in the container tags.
    // Matroska tag names come back upper-case: compare names case-insensitively.
    nlohmann::json tags = nlohmann::json::object();
    const nlohmann::json raw_tags = probe["format"].value("tags", nlohmann::json::object());
    for (const auto& [key, value] : raw_tags.items()) {
      std::string lower = key;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      tags[lower] = value;
    }
    EXPECT_EQ(tags.value("strand_seed", ""), "1234");
    EXPECT_EQ(tags.value("strand_model", ""), "strand-tiny");
    ASSERT_TRUE(tags.contains("comment"));
    const auto comment = nlohmann::json::parse(tags.value("comment", "{}"));
    EXPECT_EQ(comment["prompt_schedule"][1]["prompt"], "a fox in snow");
  }

  // Sidecar next to the output.
  const std::string sidecar = strand::sidecar_path(out, info.sequence);
  ASSERT_TRUE(fs::exists(sidecar)) << sidecar;
  const auto meta = nlohmann::json::parse(read_text(sidecar));
  EXPECT_EQ(meta["seed"], 1234);
  EXPECT_EQ(meta["branch"], "main");
  EXPECT_EQ(meta["prompt_schedule"][0]["frame"], 0);
  EXPECT_EQ(meta["media"]["frames"], kFrames);
  EXPECT_EQ(meta["media"]["frame_rate"], "16/1");

  const auto decoded = decode_rgb(std::string(pc.decode_extra) + " " + input, pc.width, pc.height);
  ASSERT_EQ(decoded.size(), static_cast<size_t>(kFrames));
  double worst = std::numeric_limits<double>::infinity();
  for (int i = 0; i < kFrames; ++i) worst = std::min(worst, psnr(decoded[static_cast<size_t>(i)], source[static_cast<size_t>(i)].rgb));
  if (std::isinf(pc.min_psnr)) {
    EXPECT_TRUE(std::isinf(worst)) << pc.preset << " should be lossless, worst PSNR " << worst;
  } else {
    EXPECT_GE(worst, pc.min_psnr) << pc.preset;
  }
  std::printf("[ info     ] %s: worst PSNR %.2f dB over %d frames\n", pc.preset, worst, kFrames);
  // Bar centres keep their colour: a BT.601/BT.709 or range mix-up moves saturated colours by
  // 10-40 levels, far more than compression does at the middle of a flat 8-pixel bar.
  const int bar = std::max(2, (pc.width / 8) & ~1);
  int worst_level = 0;
  for (int b = 0; b + 1 < pc.width / bar; ++b) {
    const int x = b * bar + bar / 2, y = pc.height / 2;
    for (int ch = 0; ch < 3; ++ch) {
      const size_t at = (static_cast<size_t>(y) * pc.width + x) * 3 + ch;
      worst_level = std::max(worst_level, std::abs(decoded[0][at] - source[0].rgb[at]));
    }
  }
  EXPECT_LE(worst_level, 4) << pc.preset << " worst level difference " << worst_level << ": a bar centre's colour moved";
  // A frame decoded back must match its own source frame far better than its neighbour (order).
  EXPECT_GT(psnr(decoded[5], source[5].rgb), psnr(decoded[5], source[6].rgb) + 3) << pc.preset;
}

// Worst-frame PSNR floors: measured on this clip (prores 35.5, dnxhr 38.6, dnxhr-hqx 37.8, h264
// 35.8, exr 51.1 dB; the loss is chroma subsampling at the sharp bar edges) minus ~2.5 dB.
constexpr double kExact = std::numeric_limits<double>::infinity();
INSTANTIATE_TEST_SUITE_P(
    AllPresets, PresetTest,
    ::testing::Values(
        PresetCase{"prores", 128, 72, "prores", "HQ", "yuv422p10le", true, 33, ""},
        PresetCase{"dnxhr", 256, 144, "dnxhd", "DNXHR HQ", "yuv422p", true, 35, ""},
        PresetCase{"dnxhr-hqx", 256, 144, "dnxhd", "DNXHR HQX", "yuv422p10le", true, 35, ""},
        PresetCase{"h264", 128, 72, "h264", "High", "yuv420p", true, 33, ""},
        PresetCase{"ffv1", 64, 36, "ffv1", "", "bgr0", false, kExact, ""},
        PresetCase{"png", 64, 36, "png", "", "rgb24", false, kExact, ""},
        PresetCase{"png16", 64, 36, "png", "", "rgb48be", false, kExact, ""},
        PresetCase{"tiff", 64, 36, "tiff", "", "rgb48le", false, kExact, ""},
        // EXR holds linear light: ffmpeg's decoder re-applies the sRGB curve (-apply_trc).
        PresetCase{"exr", 64, 36, "exr", "", "gbrpf32le", false, 48, "-apply_trc iec61966_2_1"}),
    [](const auto& param_info) {
      std::string name = param_info.param.preset;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

// The EXR channels are HALF (pixel type 1) and hold linear light: mid-grey sRGB 188 is 0.5 linear.
TEST(Export, ExrIsHalfFloatLinearLight) {
  if (!preset_usable("exr")) GTEST_SKIP();
  TempDir dir("strand-export");
  ExportSettings settings;
  settings.preset = "exr";
  Frame grey;
  grey.width = 8;
  grey.height = 8;
  grey.rgb.assign(8 * 8 * 3, 188);  // sRGB 188/255 -> linear 0.5029
  ExportWriter writer(dir.file("seq"), settings);
  writer.begin(8, 8, {24, 1});
  writer.write(grey);
  writer.finish();
  const std::string bytes = read_text(dir.file("seq/frame_000000.exr"));
  const size_t at = bytes.find(std::string("channels\0chlist\0", 16));
  ASSERT_NE(at, std::string::npos);
  size_t p = at + 16 + 4;  // attribute size
  int channels = 0;
  while (p < bytes.size() && bytes[p] != 0) {
    const size_t name_end = bytes.find('\0', p);
    int32_t pixel_type = 0;
    std::memcpy(&pixel_type, bytes.data() + name_end + 1, 4);
    EXPECT_EQ(pixel_type, 1) << "channel " << bytes.substr(p, name_end - p) << " is not HALF";
    p = name_end + 1 + 16;
    ++channels;
  }
  EXPECT_EQ(channels, 3);
  // Read the value back as float (no transfer applied) and compare with the sRGB formula.
  int status = 0;
  const std::string raw = run("ffmpeg -v error -i " + shell_quote(dir.file("seq/frame_000000.exr")) +
                                  " -f rawvideo -pix_fmt gbrpf32le - 2>/dev/null", &status);
  ASSERT_EQ(raw.size(), 8u * 8 * 3 * 4);
  float value = 0;
  std::memcpy(&value, raw.data(), 4);
  const double expected = std::pow((188 / 255.0 + 0.055) / 1.055, 2.4);
  EXPECT_NEAR(value, expected, 1e-3);
}

TEST(Export, ConformArithmetic) {
  const FrameRate ntsc{24000, 1001};
  struct Case { FrameRate source, target; };
  for (const Case c : {Case{{16, 1}, {24, 1}}, Case{{16, 1}, ntsc}, Case{{30, 1}, {24, 1}},
                       Case{{24, 1}, {25, 1}}, Case{{25, 1}, {30, 1}}, Case{{24, 1}, {24, 1}}}) {
    const double s = c.source.fps(), t = c.target.fps();
    for (int64_t n : {1, 7, 12, 48, 1000}) {
      EXPECT_EQ(strand::conformed_frame_count(n, c.source, c.target),
                static_cast<int64_t>(std::ceil(n * t / s - 1e-9)));
    }
    int64_t previous = -1;
    for (int64_t k = 0; k < 500; ++k) {
      const int64_t i = strand::conform_source_index(k, c.source, c.target);
      EXPECT_EQ(i, static_cast<int64_t>(std::floor(k * s / t + 1e-9)));
      EXPECT_GE(i, previous);
      previous = i;
    }
  }
  EXPECT_EQ(strand::conformed_frame_count(12, {16, 1}, {24, 1}), 18);
  EXPECT_EQ(strand::parse_frame_rate("23.976"), ntsc);
  EXPECT_EQ(strand::parse_frame_rate("25"), (FrameRate{25, 1}));
  EXPECT_EQ(strand::parse_frame_rate("native"), (FrameRate{0, 0}));
  EXPECT_THROW((void)strand::parse_frame_rate("fast"), Error);
}

// Conformed files hold exactly the frames the method names (checked losslessly with FFV1).
TEST(Export, ConformRepeatsAndDropsTheDocumentedFrames) {
  if (!preset_usable("ffv1")) GTEST_SKIP();
  TempDir dir("strand-export");
  for (const auto& [source_rate, target_rate] :
       {std::pair<FrameRate, FrameRate>{{16, 1}, {24000, 1001}}, {{30, 1}, {24, 1}}}) {
    ExportSettings settings;
    settings.preset = "ffv1";
    settings.target_rate = target_rate;
    const std::string out = dir.file("conform.mkv");
    std::vector<Frame> source;
    for (int i = 0; i < 12; ++i) source.push_back(bars_frame(32, 16, i));
    ExportWriter writer(out, settings);
    writer.begin(32, 16, source_rate);
    for (const auto& f : source) writer.write(f);
    writer.finish();
    const int64_t expected = strand::conformed_frame_count(12, source_rate, target_rate);
    const auto decoded = decode_rgb("-i " + shell_quote(out), 32, 16);
    ASSERT_EQ(static_cast<int64_t>(decoded.size()), expected);
    for (int64_t k = 0; k < expected; ++k) {
      const int64_t i = strand::conform_source_index(k, source_rate, target_rate);
      EXPECT_EQ(decoded[static_cast<size_t>(k)], source[static_cast<size_t>(i)].rgb) << "output " << k;
    }
    const auto probe = ffprobe(shell_quote(out));
    EXPECT_EQ(probe["streams"][0].value("r_frame_rate", ""),
              std::to_string(target_rate.num) + "/" + std::to_string(target_rate.den));
  }
}

TEST(Export, LanczosUpscaleAndOddSizeCrop) {
  if (!preset_usable("h264") || !preset_usable("ffv1")) GTEST_SKIP();
  TempDir dir("strand-export");
  {
    ExportSettings settings;
    settings.preset = "ffv1";
    settings.width = 128;
    settings.height = 72;
    ExportWriter writer(dir.file("up.mkv"), settings);
    writer.begin(64, 36, {16, 1});
    writer.write(bars_frame(64, 36, 0));
    writer.finish();
    const auto s = ffprobe(shell_quote(dir.file("up.mkv")))["streams"][0];
    EXPECT_EQ(s.value("width", 0), 128);
    EXPECT_EQ(s.value("height", 0), 72);
    // Against a pixel-doubled source: equal away from edges, so the PSNR is high but finite.
    const auto decoded = decode_rgb("-i " + shell_quote(dir.file("up.mkv")), 128, 72);
    ASSERT_EQ(decoded.size(), 1u);
    const Frame small = bars_frame(64, 36, 0);
    std::vector<uint8_t> doubled(128 * 72 * 3);
    for (int y = 0; y < 72; ++y)
      for (int x = 0; x < 128; ++x)
        for (int c = 0; c < 3; ++c)
          doubled[(static_cast<size_t>(y) * 128 + x) * 3 + c] = small.rgb[(static_cast<size_t>(y / 2) * 64 + x / 2) * 3 + c];
    EXPECT_GT(psnr(decoded[0], doubled), 20);
  }
  {
    ExportSettings settings;
    settings.preset = "h264";
    ExportWriter writer(dir.file("odd.mp4"), settings);
    writer.begin(65, 37, {16, 1});
    for (int i = 0; i < 3; ++i) writer.write(bars_frame(65, 37, i));
    writer.finish();
    EXPECT_EQ(writer.output_width(), 64);
    const auto s = ffprobe(shell_quote(dir.file("odd.mp4")))["streams"][0];
    EXPECT_EQ(s.value("width", 0), 64);
    EXPECT_EQ(s.value("height", 0), 36);
  }
}

TEST(Export, CancelMidExportLeavesNothing) {
  for (const char* preset : {"prores", "png", "h264"}) {
    if (!preset_usable(preset)) continue;
    TempDir dir("strand-export");
    const auto info = strand::find_preset(preset);
    const std::string out = info.sequence ? dir.file("seq") : dir.file(std::string("c") + info.extension);
    {
      ExportSettings settings;
      settings.preset = preset;
      ExportWriter writer(out, settings);
      writer.begin(64, 36, {16, 1});
      for (int i = 0; i < 5; ++i) writer.write(bars_frame(64, 36, i));
      EXPECT_GT(dir.entry_count(), 0u);  // the partial output exists while writing
      writer.abort();
      EXPECT_EQ(dir.entry_count(), 0u) << preset;
    }
    {
      ExportSettings settings;
      settings.preset = preset;
      ExportWriter writer(out, settings);  // destroyed unfinished: same as abort
      writer.begin(64, 36, {16, 1});
      writer.write(bars_frame(64, 36, 0));
    }
    EXPECT_EQ(dir.entry_count(), 0u) << preset;
  }
}

TEST(Export, UnwritablePathAndTooSmallFailBeforeWriting) {
  if (!preset_usable("prores") || !preset_usable("dnxhr")) GTEST_SKIP();
  TempDir dir("strand-export");
  std::ofstream(dir.file("not-a-folder")) << "x";
  ExportSettings settings;
  settings.preset = "prores";
  ExportWriter writer(dir.file("not-a-folder/clip.mov"), settings);
  try {
    writer.begin(64, 36, {16, 1});
    FAIL() << "begin should throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io) << e.what();
  }
  writer.abort();
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"not-a-folder"});

  settings.preset = "dnxhr";
  ExportWriter small(dir.file("small.mov"), settings);
  try {
    small.begin(64, 36, {16, 1});
    FAIL() << "DNxHR below 256x120 should throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"not-a-folder"});
  ExportSettings unknown;
  unknown.preset = "gif";
  EXPECT_THROW(ExportWriter(dir.file("x"), unknown), Error);
}

// A full disk, simulated with a file-size limit (writes past it fail with EFBIG): the export
// throws Error(io) and abort leaves nothing.
TEST(Export, FullDiskLeavesNothing) {
  for (const char* preset : {"ffv1", "png"}) {
    if (!preset_usable(preset)) continue;
    TempDir dir("strand-export");
    const auto info = strand::find_preset(preset);
    const std::string out = info.sequence ? dir.file("seq") : dir.file(std::string("f") + info.extension);
    ExportSettings settings;
    settings.preset = preset;
    ExportWriter writer(out, settings);
    writer.begin(128, 128, {16, 1});
    // Noise does not compress: each frame is ~48 KB.
    Frame noise;
    noise.width = noise.height = 128;
    noise.rgb.resize(128 * 128 * 3);
    uint32_t x = 12345;
    for (auto& b : noise.rgb) b = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);

    struct rlimit old_limit {};
    ::getrlimit(RLIMIT_FSIZE, &old_limit);
    auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = old_limit;
    limit.rlim_cur = 30 * 1024;  // per file: also hits one 48 KB frame file
    ::setrlimit(RLIMIT_FSIZE, &limit);
    bool failed = false;
    try {
      for (int i = 0; i < 8; ++i) writer.write(noise);
      writer.finish();
    } catch (const Error& e) {
      failed = true;
      EXPECT_EQ(e.kind(), ErrorKind::io) << e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    ::signal(SIGXFSZ, old_handler);
    EXPECT_TRUE(failed) << preset << ": 8 x 48 KB should not fit in 30 KB";
    writer.abort();
    EXPECT_EQ(dir.entry_count(), 0u) << preset;
  }
}

TEST(Export, ListPresetsDescribesEveryCliName) {
  const auto presets = strand::list_presets();
  for (const char* name : {"prores", "dnxhr", "h264", "ffv1", "png", "tiff", "exr"}) {
    const auto it = std::find_if(presets.begin(), presets.end(), [&](const auto& p) { return p.name == name; });
    ASSERT_NE(it, presets.end()) << name;
    EXPECT_FALSE(it->description.empty());
    EXPECT_FALSE(it->pixel_format.empty());
  }
  EXPECT_EQ(strand::find_preset("prores").profile, "3");
  EXPECT_EQ(strand::sidecar_path("a/clip.mov", false), "a/clip.json");
  EXPECT_EQ(strand::sidecar_path("a/seq/", true), "a/seq.json");
}

// ---- timelines

strand::TimelineDescription sample_timeline() {
  strand::TimelineDescription t;
  t.name = "Fox & snow";
  t.rate = {24000, 1001};
  t.width = 832;
  t.height = 480;
  t.clips = {{"main", "/media/main.mov", 240, 10, 130, 0},
             {"branch b", "/media/branch b.mov", 96, 0, 48, 12}};
  t.markers = {{30, "prompt: snow", strand::MarkerKind::prompt_change, "a fox in snow"},
               {125, "gap note", strand::MarkerKind::note, ""},
               {140, "branch b", strand::MarkerKind::branch_point, ""}};
  return t;
}

TEST(Timeline, TimecodeAndLength) {
  EXPECT_EQ(strand::frames_to_timecode(0, {24, 1}), "00:00:00:00");
  EXPECT_EQ(strand::frames_to_timecode(24 * 3661 + 5, {24, 1}), "01:01:01:05");
  EXPECT_EQ(strand::frames_to_timecode(25, {24000, 1001}), "00:00:01:01");
  EXPECT_EQ(strand::timeline_length(sample_timeline()), 120 + 12 + 48);
}

TEST(Timeline, OtioStatesExactRanges) {
  const auto j = nlohmann::json::parse(strand::timeline_to_otio(sample_timeline()));
  EXPECT_EQ(j["OTIO_SCHEMA"], "Timeline.1");
  const auto& track = j["tracks"]["children"][0];
  EXPECT_EQ(track["kind"], "Video");
  ASSERT_EQ(track["children"].size(), 3u);  // clip, gap, clip
  const auto& clip = track["children"][0];
  EXPECT_EQ(clip["OTIO_SCHEMA"], "Clip.2");
  EXPECT_EQ(clip["source_range"]["start_time"]["value"], 10.0);
  EXPECT_EQ(clip["source_range"]["duration"]["value"], 120.0);
  EXPECT_DOUBLE_EQ(clip["source_range"]["duration"]["rate"].get<double>(), 24000.0 / 1001.0);
  const auto& ref = clip["media_references"][clip["active_media_reference_key"].get<std::string>()];
  EXPECT_EQ(ref["available_range"]["start_time"]["value"], 0.0);
  EXPECT_EQ(ref["available_range"]["duration"]["value"], 240.0);
  EXPECT_EQ(ref["target_url"], "file:///media/main.mov");
  // Timeline frame 30 in a clip starting at 0 with in point 10: media frame 40.
  EXPECT_EQ(clip["markers"][0]["marked_range"]["start_time"]["value"], 40.0);
  EXPECT_EQ(clip["markers"][0]["color"], "CYAN");
  EXPECT_EQ(track["children"][1]["OTIO_SCHEMA"], "Gap.1");
  EXPECT_EQ(track["children"][1]["source_range"]["duration"]["value"], 12.0);
  EXPECT_EQ(track["children"][2]["media_references"]["DEFAULT_MEDIA"]["target_url"],
            "file:///media/branch%20b.mov");
  EXPECT_EQ(j["tracks"]["markers"][0]["marked_range"]["start_time"]["value"], 125.0);  // gap marker
}

TEST(Timeline, FcpxmlAndEdlUseFrameExactTimes) {
  const std::string x = strand::timeline_to_fcpxml(sample_timeline());
  EXPECT_NE(x.find("frameDuration=\"1001/24000s\""), std::string::npos);
  // Clip 2: offset 132 frames = 132132/24000 = 11011/2000 s; start 0; 48 frames = 1001/500 s.
  EXPECT_NE(x.find("offset=\"11011/2000s\" start=\"0s\" duration=\"1001/500s\""), std::string::npos) << x;
  EXPECT_NE(x.find("Fox &amp; snow"), std::string::npos);
  const std::string e = strand::timeline_to_edl(sample_timeline());
  EXPECT_NE(e.find("001  MAIN     V     C        00:00:00:10 00:00:05:10 00:00:00:00 00:00:05:00\n"),
            std::string::npos) << e;
  EXPECT_NE(e.find("002  BRANCH_B V     C        00:00:00:00 00:00:02:00 00:00:05:12 00:00:07:12\n"),
            std::string::npos) << e;
}

TEST(Timeline, RejectsBadRanges) {
  auto t = sample_timeline();
  t.clips[0].out_frame = 241;  // past the media
  EXPECT_THROW((void)strand::timeline_to_otio(t), Error);
  t = sample_timeline();
  t.markers.push_back({180, "after the end", strand::MarkerKind::note, ""});
  EXPECT_THROW((void)strand::timeline_to_edl(t), Error);
  EXPECT_THROW(strand::write_timeline("/tmp/x.aaf", "aaf", sample_timeline()), Error);
}

}  // namespace
