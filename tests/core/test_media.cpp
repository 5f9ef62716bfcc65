// Media output: PNG encoding (checked by decoding with libpng's reader), PNG sequences and MP4
// files (checked with the ffmpeg tool and by reading the MP4 box structure ourselves).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "strand/error.h"
#include "strand/media.h"

#if __has_include(<png.h>)
#include <png.h>
#define STRAND_TEST_HAVE_PNG_HEADER 1
#endif

namespace fs = std::filesystem;
using strand::Error;
using strand::ErrorKind;
using strand::Frame;

namespace {

Frame make_frame(int width, int height, int64_t index, uint32_t salt) {
  Frame frame;
  frame.width = width;
  frame.height = height;
  frame.index = index;
  frame.rgb.resize(static_cast<size_t>(width) * static_cast<size_t>(height) * 3);
  // A hash-like pattern: every byte value and neighbouring-pixel differences occur.
  uint32_t x = 2463534242u ^ salt;
  for (auto& byte : frame.rgb) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    byte = static_cast<uint8_t>(x);
  }
  return frame;
}

Frame solid_frame(int width, int height, uint8_t r, uint8_t g, uint8_t b) {
  Frame frame;
  frame.width = width;
  frame.height = height;
  frame.rgb.resize(static_cast<size_t>(width) * static_cast<size_t>(height) * 3);
  for (size_t i = 0; i < frame.rgb.size(); i += 3) {
    frame.rgb[i] = r;
    frame.rgb[i + 1] = g;
    frame.rgb[i + 2] = b;
  }
  return frame;
}

std::vector<uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

#ifdef STRAND_TEST_HAVE_PNG_HEADER
// Independent decoder: libpng's reader, RGB8 out. Fails the test on any decode error.
std::vector<uint8_t> decode_png(const std::vector<uint8_t>& bytes, int* width, int* height) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size())) {
    ADD_FAILURE() << "libpng: " << image.message;
    return {};
  }
  image.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> rgb(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgb.data(), 0, nullptr)) {
    ADD_FAILURE() << "libpng: " << image.message;
    return {};
  }
  *width = static_cast<int>(image.width);
  *height = static_cast<int>(image.height);
  return rgb;
}
#endif

class MediaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strand_media_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

// Reads the top-level MP4 boxes: (type, size) in file order.
std::vector<std::string> mp4_top_level_boxes(const std::vector<uint8_t>& bytes) {
  std::vector<std::string> types;
  size_t offset = 0;
  while (offset + 8 <= bytes.size()) {
    uint64_t size = (uint64_t{bytes[offset]} << 24) | (uint64_t{bytes[offset + 1]} << 16) |
                    (uint64_t{bytes[offset + 2]} << 8) | uint64_t{bytes[offset + 3]};
    types.emplace_back(reinterpret_cast<const char*>(&bytes[offset + 4]), 4);
    if (size == 1 && offset + 16 <= bytes.size()) {  // 64-bit size follows
      size = 0;
      for (int i = 0; i < 8; ++i) size = (size << 8) | bytes[offset + 8 + static_cast<size_t>(i)];
    }
    if (size < 8) break;
    offset += size;
  }
  return types;
}

bool have_tool(const char* name) {
  return std::system((std::string("command -v ") + name + " >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace

TEST_F(MediaTest, PngRoundTripIsLossless) {
  if (!strand::media_supports_png()) GTEST_SKIP() << "built without libpng";
#ifndef STRAND_TEST_HAVE_PNG_HEADER
  GTEST_SKIP() << "png.h not available to the test";
#else
  // Odd sizes catch row-stride mistakes.
  const Frame frame = make_frame(37, 11, 0, 1);
  const fs::path path = dir_ / "one.png";
  strand::write_png(path.string(), frame);
  int width = 0, height = 0;
  const std::vector<uint8_t> decoded = decode_png(read_bytes(path), &width, &height);
  EXPECT_EQ(width, 37);
  EXPECT_EQ(height, 11);
  EXPECT_EQ(decoded, frame.rgb);
  // Only the file itself: the atomic write leaves no temp file behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
#endif
}

TEST_F(MediaTest, PngRejectsInconsistentFrames) {
  Frame frame = make_frame(4, 4, 0, 2);
  frame.rgb.pop_back();
  try {
    (void)strand::encode_png(frame);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  }
  Frame empty;
  EXPECT_THROW((void)strand::encode_png(empty), Error);
}

TEST_F(MediaTest, PngSequenceWritesNumberedFramesOnFinish) {
  if (!strand::media_supports_png()) GTEST_SKIP() << "built without libpng";
  const fs::path out = dir_ / "seq";
  strand::PngSequenceSink sink(out.string() + "/");  // trailing slash names the same folder
  sink.begin(8, 6, 12);
  std::vector<Frame> frames;
  for (int i = 0; i < 3; ++i) {
    // Frame::index deliberately does not start at 0: files are numbered in write order.
    frames.push_back(make_frame(8, 6, 30 + i, static_cast<uint32_t>(i)));
    sink.write(frames.back());
  }
  EXPECT_FALSE(fs::exists(out)) << "the sequence must not appear before finish()";
  EXPECT_TRUE(fs::is_directory(out.string() + ".part"));
  sink.finish();
  EXPECT_EQ(sink.frames_written(), 3);
  EXPECT_FALSE(fs::exists(out.string() + ".part"));
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(out))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names,
            (std::vector<std::string>{"frame_000000.png", "frame_000001.png", "frame_000002.png"}));
#ifdef STRAND_TEST_HAVE_PNG_HEADER
  int width = 0, height = 0;
  EXPECT_EQ(decode_png(read_bytes(out / "frame_000001.png"), &width, &height), frames[1].rgb);
#endif

  // A second render to the same path replaces the earlier sequence completely.
  strand::PngSequenceSink again(out.string());
  again.begin(8, 6, 12);
  again.write(frames[2]);
  again.finish();
  EXPECT_TRUE(fs::exists(out / "frame_000000.png"));
  EXPECT_FALSE(fs::exists(out / "frame_000001.png"));
}

TEST_F(MediaTest, PngSequenceAbortLeavesNothing) {
  if (!strand::media_supports_png()) GTEST_SKIP() << "built without libpng";
  const fs::path out = dir_ / "aborted";
  {
    strand::PngSequenceSink sink(out.string());
    sink.begin(8, 6, 12);
    sink.write(make_frame(8, 6, 0, 3));
    sink.write(make_frame(8, 6, 1, 4));
    sink.abort();
  }
  {
    strand::PngSequenceSink sink(out.string());  // destroyed unfinished: same as abort
    sink.begin(8, 6, 12);
    sink.write(make_frame(8, 6, 0, 5));
  }
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".part"));
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(MediaTest, PngSequenceRefusesToReplaceAForeignFolder) {
  if (!strand::media_supports_png()) GTEST_SKIP() << "built without libpng";
  const fs::path out = dir_ / "mine";
  fs::create_directories(out);
  std::ofstream(out / "notes.txt") << "keep me";
  strand::PngSequenceSink sink(out.string());
  EXPECT_THROW(sink.begin(8, 6, 12), Error);
  EXPECT_TRUE(fs::exists(out / "notes.txt"));
  EXPECT_FALSE(fs::exists(out.string() + ".part"));
}

TEST_F(MediaTest, MakeSinkPicksByExtension) {
  const std::string png_dir = (dir_ / "frames").string();
  EXPECT_NE(dynamic_cast<strand::PngSequenceSink*>(strand::make_sink(png_dir).get()), nullptr);
  if (strand::media_supports_mp4()) {
    EXPECT_NE(dynamic_cast<strand::Mp4Sink*>(strand::make_sink((dir_ / "a.mp4").string()).get()),
              nullptr);
    EXPECT_NE(dynamic_cast<strand::Mp4Sink*>(strand::make_sink((dir_ / "a.MP4").string()).get()),
              nullptr);
  } else {
    try {
      (void)strand::make_sink((dir_ / "a.mp4").string());
      FAIL() << "expected Error(unsupported)";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::unsupported);
    }
  }
  EXPECT_TRUE(fs::is_empty(dir_)) << "constructing a sink must not create files";
}

TEST_F(MediaTest, Mp4SinkWritesADecodableBt709File) {
  if (!strand::media_supports_mp4()) GTEST_SKIP() << "built without FFmpeg/libx264";
  const fs::path out = dir_ / "clip.mp4";
  constexpr int kWidth = 64, kHeight = 48, kFrames = 10;
  // A saturated red: BT.601 and BT.709 matrices decode it to clearly different RGB, so a wrong
  // matrix on either side shows up in the decoded colour.
  const Frame red = solid_frame(kWidth, kHeight, 200, 40, 40);
  {
    strand::Mp4Sink sink(out.string());
    sink.begin(kWidth, kHeight, 12);
    for (int i = 0; i < kFrames; ++i) sink.write(red);
    EXPECT_FALSE(fs::exists(out));
    sink.finish();
  }
  ASSERT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".part"));
  const std::vector<std::string> boxes = mp4_top_level_boxes(read_bytes(out));
  ASSERT_FALSE(boxes.empty());
  EXPECT_EQ(boxes.front(), "ftyp");
  const auto moov = std::find(boxes.begin(), boxes.end(), "moov");
  const auto mdat = std::find(boxes.begin(), boxes.end(), "mdat");
  ASSERT_NE(moov, boxes.end());
  ASSERT_NE(mdat, boxes.end());
  EXPECT_LT(moov - boxes.begin(), mdat - boxes.begin()) << "+faststart puts the index first";

  if (!have_tool("ffmpeg")) GTEST_SKIP() << "ffmpeg tool not installed: decode check skipped";
  // ffmpeg converts back to RGB using the stream's colour tags.
  const std::string command =
      "ffmpeg -v error -i '" + out.string() + "' -f rawvideo -pix_fmt rgb24 -";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::vector<uint8_t> decoded;
  uint8_t buffer[65536];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
    decoded.insert(decoded.end(), buffer, buffer + n);
  ASSERT_EQ(::pclose(pipe), 0);
  ASSERT_EQ(decoded.size(), size_t{kWidth} * kHeight * 3 * kFrames)
      << "every frame, including the lookahead";
  double sum[3] = {0, 0, 0};
  for (size_t i = 0; i < decoded.size(); ++i) sum[i % 3] += decoded[i];
  const double pixels = static_cast<double>(decoded.size() / 3);
  EXPECT_NEAR(sum[0] / pixels, 200.0, 4.0);
  EXPECT_NEAR(sum[1] / pixels, 40.0, 4.0);
  EXPECT_NEAR(sum[2] / pixels, 40.0, 4.0);
}

TEST_F(MediaTest, Mp4SinkAbortRemovesThePartialFile) {
  if (!strand::media_supports_mp4()) GTEST_SKIP() << "built without FFmpeg/libx264";
  const fs::path out = dir_ / "cancelled.mp4";
  strand::Mp4Sink sink(out.string());
  sink.begin(32, 32, 12);
  sink.write(solid_frame(32, 32, 10, 20, 30));
  EXPECT_TRUE(fs::exists(out.string() + ".part"));
  sink.abort();
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".part"));
  EXPECT_THROW(strand::Mp4Sink(out.string()).begin(33, 32, 12), Error)
      << "yuv420p needs even sizes";
  EXPECT_TRUE(fs::is_empty(dir_));
}
