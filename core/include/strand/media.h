// Media output for generated frames: single PNGs, PNG sequences and H.264 MP4 files.
//
// Every output is written so that an interrupted or failed run never leaves something that looks
// finished: a PNG is written atomically, a sequence is built in "DIR.part/" and an MP4 in
// "NAME.part", and only FrameSink::finish() renames them to their final names. abort() (and the
// destructor of an unfinished sink) removes the partial output.
//
// PNG support needs libpng and MP4 support needs FFmpeg (libavcodec with libx264) at build time;
// without them the calls throw Error(unsupported). media_supports_*() tell which are built in.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strand/session.h"  // Frame

namespace strand {

[[nodiscard]] bool media_supports_png();
[[nodiscard]] bool media_supports_mp4();

// 8-bit RGB PNG of `frame` (no colour-management chunks other than sRGB). Throws
// Error(invalid_argument) if frame.rgb.size() != width * height * 3 or a dimension is <= 0,
// Error(unsupported) without libpng.
[[nodiscard]] std::vector<uint8_t> encode_png(const Frame& frame);
// encode_png() then strand::write_file_atomic(path, ...). Error(io) on write failure.
void write_png(const std::string& path, const Frame& frame);

// A video being written, frame by frame. Call order: begin, write * n, finish. Any method may
// throw; after a throw the caller calls abort() (the destructor also does). begin() creates the
// partial output, so it fails early (before any frame is generated) when the target is not
// writable. Frames must all have the size given to begin().
class FrameSink {
 public:
  FrameSink() = default;
  virtual ~FrameSink() = default;
  FrameSink(const FrameSink&) = delete;
  FrameSink& operator=(const FrameSink&) = delete;

  virtual void begin(int width, int height, int fps) = 0;
  virtual void write(const Frame& frame) = 0;
  // Completes the output and moves it to its final path. Replaces an earlier output there.
  virtual void finish() = 0;
  // Removes whatever partial output exists. Never throws; a no-op after finish().
  virtual void abort() noexcept = 0;

  // The final path given at construction.
  [[nodiscard]] virtual const std::string& path() const = 0;
  [[nodiscard]] virtual int64_t frames_written() const = 0;
};

// DIR/frame_000000.png, frame_000001.png, ... numbered in the order written (from 0, whatever
// Frame::index says). Built in "DIR.part/" and renamed to DIR by finish(). An existing DIR is
// replaced only when it holds nothing but frame_*.png files (an earlier sequence); begin() throws
// Error(io) otherwise, so a mistyped path never deletes a user's folder.
class PngSequenceSink final : public FrameSink {
 public:
  explicit PngSequenceSink(std::string directory);
  ~PngSequenceSink() override;

  void begin(int width, int height, int fps) override;
  void write(const Frame& frame) override;
  void finish() override;
  void abort() noexcept override;
  [[nodiscard]] const std::string& path() const override { return directory_; }
  [[nodiscard]] int64_t frames_written() const override { return frames_written_; }

 private:
  std::string directory_;
  std::string part_directory_;
  int width_ = 0, height_ = 0;
  int64_t frames_written_ = 0;
  bool begun_ = false, finished_ = false;
};

// H.264 (libx264, yuv420p, crf 18) in an MP4 with BT.709 colour tags and +faststart, at `fps`
// frames per second. Width and height must be even (yuv420p): begin() throws
// Error(invalid_argument) otherwise. Written to "NAME.part" and renamed by finish(). Without
// FFmpeg the constructor throws Error(unsupported).
class Mp4Sink final : public FrameSink {
 public:
  explicit Mp4Sink(std::string path);
  ~Mp4Sink() override;

  void begin(int width, int height, int fps) override;
  void write(const Frame& frame) override;
  void finish() override;
  void abort() noexcept override;
  [[nodiscard]] const std::string& path() const override { return path_; }
  [[nodiscard]] int64_t frames_written() const override { return frames_written_; }

 private:
  struct Encoder;  // FFmpeg state, kept out of this header
  std::string path_;
  std::string part_path_;
  std::unique_ptr<Encoder> encoder_;
  int64_t frames_written_ = 0;
  bool finished_ = false;
};

// Picks the sink by the path: ".mp4" (any case) -> Mp4Sink, anything else -> PngSequenceSink
// (a directory). Without FFmpeg an .mp4 path throws Error(unsupported) here, before any work.
std::unique_ptr<FrameSink> make_sink(const std::string& path);

}  // namespace strand
