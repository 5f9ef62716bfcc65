// strand-cli, tested as a user runs it: the built binary (STRAND_CLI) in a child process.
// Bad input of every kind must give exit code 2, exactly one "strand-cli: error: ..." line on
// stderr and no output; good runs must be deterministic and snapshot continuation exact.
// Renders use the small golden test model (64x32) and 1-2 blocks to stay fast.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli_process.h"
#include "strand/media.h"
#include "strand/memory_state.h"

namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(STRAND_TEST_DATA) + "/golden-model.safetensors";
const std::string kBundledModel =
    std::string(STRAND_SOURCE_DIR) + "/resources/models/strand-world-v1.safetensors";

// Whether the model loader will find the bundled model's text encoder where it looks: next to the
// model, in $STRAND_MODELS_DIR, in .deps/models.
bool bundled_text_encoder_present() {
  const char* name = "text-encoder-minilm-l6-v2.safetensors";
  std::vector<fs::path> places = {fs::path(kBundledModel).parent_path() / name,
                                  fs::path(STRAND_SOURCE_DIR) / ".deps" / "models" / name};
  if (const char* dir = std::getenv("STRAND_MODELS_DIR"); dir != nullptr && *dir != '\0') {
    places.push_back(fs::path(dir) / name);
  }
  for (const auto& p : places) {
    if (fs::exists(p)) return true;
  }
  return false;
}

using RunResult = strand::test::CliRun;
using strand::test::read_text;
using strand::test::spawn_cli;
using strand::test::wait_exit_code;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strand_cli_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  RunResult run(const std::vector<std::string>& args) {
    RunResult result;
    const fs::path out = dir_ / "stdout.txt", err = dir_ / "stderr.txt";
    result.exit_code = wait_exit_code(spawn_cli(args, out, err));
    result.out = read_text(out);
    result.err = read_text(err);
    fs::remove(out);
    fs::remove(err);
    return result;
  }

  // The contract for bad input: exit 2, one error line, and nothing at `output` (nor its .part).
  void expect_rejected(const std::vector<std::string>& args, const std::string& output,
                       const std::string& expected_in_message = "") {
    SCOPED_TRACE("strand-cli " + describe(args));
    const RunResult r = run(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(r.err.starts_with("strand-cli: error: ")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "exactly one line: " << r.err;
    EXPECT_TRUE(r.err.ends_with("\n"));
    if (!expected_in_message.empty()) {
      EXPECT_NE(r.err.find(expected_in_message), std::string::npos) << r.err;
    }
    if (!output.empty()) {
      EXPECT_FALSE(fs::exists(output)) << output;
      EXPECT_FALSE(fs::exists(output + ".part")) << output;
    }
  }

  static std::string describe(const std::vector<std::string>& args) {
    std::string text;
    for (const auto& arg : args) text += (arg.size() > 60 ? arg.substr(0, 60) + "..." : arg) + " ";
    return text;
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string write_file(const std::string& name, const std::string& content) const {
    std::ofstream(dir_ / name, std::ios::binary) << content;
    return path(name);
  }

  // A render of the golden model with a fixed prompt; extra options appended.
  std::vector<std::string> render_args(const std::string& out,
                                       std::vector<std::string> extra = {}) const {
    std::vector<std::string> args{"render", "--model", kModel,  "--prompt", "a red fox in the snow",
                                  "--seed", "11",      "--out", out};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  fs::path dir_;
};

// Parameter count straight from the safetensors header (sum of shape products), independently of
// the engine's loader.
int64_t count_parameters_in_file(const std::string& model_path) {
  std::ifstream in(model_path, std::ios::binary);
  uint8_t length_bytes[8] = {};
  in.read(reinterpret_cast<char*>(length_bytes), 8);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | length_bytes[i];
  std::string header(header_length, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_length));
  int64_t total = 0;
  const nlohmann::json root = nlohmann::json::parse(header);
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    int64_t count = 1;
    for (const auto& dim : it.value().at("shape")) count *= dim.get<int64_t>();
    total += count;
  }
  return total;
}

std::string read_binary(const fs::path& path) {
  return read_text(path);
}

std::string frame_name(int i) {
  char name[32];
  std::snprintf(name, sizeof name, "frame_%06d.png", i);
  return name;
}

int count_files(const fs::path& dir) {
  return static_cast<int>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

// ---- Bad input: each case is rejected before any work, with one clear line. --------------------

TEST_F(CliTest, RejectsUnknownCommandsAndFlags) {
  expect_rejected({}, "");
  expect_rejected({"frobnicate"}, "", "unknown command");
  const std::string out = path("out");
  expect_rejected(render_args(out, {"--frames", "3", "--bogus"}), out, "--bogus");
  expect_rejected(render_args(out, {"--frames", "3", "stray"}), out, "stray");
  expect_rejected(render_args(out, {"--frames"}), out, "needs a value");
  expect_rejected(render_args(out), out, "--frames");  // required option missing
  expect_rejected({"info", "--model", kModel, "--frames", "3"}, "", "--frames");
  expect_rejected({"bench", "--model", kModel, "--blocks", "0"}, "", "--blocks");
}

TEST_F(CliTest, RejectsMissingOrCorruptModels) {
  const std::string out = path("out");
  std::vector<std::string> args = render_args(out, {"--frames", "3"});
  args[2] = path("no-such-model.safetensors");
  expect_rejected(args, out, "no-such-model");

  const std::string whole = read_binary(kModel);
  ASSERT_GT(whole.size(), 2000u) << "golden test model missing: " << kModel;
  args[2] = write_file("truncated.safetensors", whole.substr(0, whole.size() - 100));
  expect_rejected(args, out, "truncated.safetensors");
  args[2] = write_file("garbage.safetensors", "this is not a model at all");
  expect_rejected(args, out);
  args[2] = dir_.string();  // a folder
  expect_rejected(args, out);
  expect_rejected({"info", "--model", path("garbage.safetensors")}, "");
}

TEST_F(CliTest, RejectsBadSchedules) {
  const std::string out = path("out");
  const auto with_schedule = [&](const std::string& file) {
    return std::vector<std::string>{"render", "--model", kModel, "--schedule", file, "--frames",
                                    "3",      "--seed",  "1",    "--out",      out};
  };
  expect_rejected(with_schedule(path("missing.json")), out, "missing.json");
  expect_rejected(with_schedule(write_file("syntax.json", "[{\"frame\": 0, \"prompt\": \"a\"},")),
                  out, "JSON");
  expect_rejected(with_schedule(write_file("object.json", "{\"frame\": 0, \"prompt\": \"a\"}")),
                  out);
  expect_rejected(with_schedule(write_file("empty.json", "[]")), out);
  expect_rejected(
      with_schedule(write_file("types.json", "[{\"frame\": \"0\", \"prompt\": \"a\"}]")), out,
      "frame");
  expect_rejected(with_schedule(write_file("noprompt.json", "[{\"frame\": 0}]")), out, "prompt");
  expect_rejected(with_schedule(write_file("late.json", "[{\"frame\": 3, \"prompt\": \"a\"}]")),
                  out, "frame 0");
  expect_rejected(with_schedule(write_file(
                      "unsorted.json",
                      "[{\"frame\": 0, \"prompt\": \"a\"}, {\"frame\": 6, \"prompt\": \"b\"},"
                      " {\"frame\": 3, \"prompt\": \"c\"}]")),
                  out, "increasing");
  expect_rejected(
      with_schedule(write_file("negative.json", "[{\"frame\": -3, \"prompt\": \"a\"}]")), out);
  // Invalid UTF-8 inside the JSON text.
  expect_rejected(
      with_schedule(write_file("utf8.json", "[{\"frame\": 0, \"prompt\": \"caf\xC3\"}]")), out);
  expect_rejected(with_schedule(write_file("blank.json", "[{\"frame\": 0, \"prompt\": \"  \"}]")),
                  out, "empty");
}

TEST_F(CliTest, RejectsBadPrompts) {
  const std::string out = path("out");
  const auto with_prompt = [&](const std::string& prompt) {
    return std::vector<std::string>{"render", "--model", kModel, "--prompt", prompt, "--frames",
                                    "3",      "--seed",  "1",    "--out",    out};
  };
  expect_rejected(with_prompt(""), out, "empty");
  expect_rejected(with_prompt(" \t \n"), out, "empty");
  expect_rejected(with_prompt("caf\xC3\x28 au lait"), out, "UTF-8");
  expect_rejected(with_prompt("\xED\xA0\x80 surrogate"), out, "UTF-8");
  // Linux caps one argument at 128 KiB, so the 1 MB prompt goes through a schedule file.
  expect_rejected(with_prompt(std::string(100 * 1024, 'a')), out, "too long");
  const std::string huge =
      nlohmann::json::array({{{"frame", 0}, {"prompt", std::string(1 << 20, 'a')}}}).dump();
  expect_rejected({"render", "--model", kModel, "--schedule", write_file("huge.json", huge),
                   "--frames", "3", "--seed", "1", "--out", out},
                  out, "too long");
  expect_rejected({"render", "--model", kModel, "--prompt", "a", "--schedule",
                   write_file("ok.json", "[]"), "--frames", "3", "--seed", "1", "--out", out},
                  out, "not both");
}

TEST_F(CliTest, RejectsBadCounts) {
  const std::string out = path("out");
  for (const std::string frames :
       {"0", "-1", "-3", "abc", "3x", "", "1e3", "99999999999999999999"}) {
    expect_rejected(render_args(out, {"--frames", frames}), out, "--frames");
  }
  expect_rejected(render_args(out, {"--frames", "3", "--recache", "-1"}), out, "--recache");
  std::vector<std::string> args = render_args(out, {"--frames", "3"});
  args[6] = "-5";  // --seed
  expect_rejected(args, out, "--seed");
}

TEST_F(CliTest, RejectsUnwritableOutputs) {
  // Running as root makes permission bits useless here: put the output under a regular file.
  const std::string file = write_file("plain-file", "x");
  expect_rejected(render_args(file + "/frames", {"--frames", "3"}), file + "/frames");
  expect_rejected(render_args(file + "/clip.mp4", {"--frames", "3"}), file + "/clip.mp4");
  const std::string out = path("out");
  expect_rejected(render_args(out, {"--frames", "3", "--stats", file + "/stats.json"}), out);
  expect_rejected(
      render_args(out, {"--frames", "3", "--save-snapshot-at", "3:" + file + "/s.snap"}), out);
  // A folder with other content is not replaced by a frame sequence, and stays intact.
  const fs::path mine = dir_ / "mine";
  fs::create_directories(mine);
  std::ofstream(mine / "notes.txt") << "keep";
  const RunResult r = run(render_args(mine.string(), {"--frames", "3"}));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(read_text(mine / "notes.txt"), "keep");
  EXPECT_FALSE(fs::exists(mine.string() + ".part"));
}

TEST_F(CliTest, RejectsBadSnapshotRequests) {
  const std::string out = path("out");
  // The golden model has 3 frames per block; 3 frames requested = 1 block.
  expect_rejected(render_args(out, {"--frames", "3", "--save-snapshot-at", "2:" + path("a.snap")}),
                  out, "block");
  expect_rejected(render_args(out, {"--frames", "3", "--save-snapshot-at", "6:" + path("a.snap")}),
                  out, "outside");
  expect_rejected(render_args(out, {"--frames", "3", "--save-snapshot-at", "3"}), out,
                  "FRAME:FILE");
  expect_rejected(render_args(out, {"--frames", "3", "--save-snapshot-at", "x:" + path("a.snap")}),
                  out);
  EXPECT_FALSE(fs::exists(path("a.snap")));
  // An output may not overwrite an input (here the model, through a copy).
  const std::string model_copy = write_file("model.safetensors", read_binary(kModel));
  std::vector<std::string> args =
      render_args(out, {"--frames", "3", "--save-snapshot-at", "3:" + model_copy});
  args[2] = model_copy;
  expect_rejected(args, out, "another input or output");
  EXPECT_EQ(read_binary(model_copy), read_binary(kModel));
}

TEST_F(CliTest, RejectsSnapshotsOfAnotherModel) {
  // A well-formed snapshot whose model id is not the golden model's.
  strand::MemoryState state;
  state.model_id = "0123456789abcdef0123456789abcdef";
  state.next_block = 1;
  state.seed = 5;
  state.prompt = "a cat";
  const std::string snapshot = path("other.snap");
  strand::save_snapshot(snapshot, state);
  const std::string out = path("out");
  expect_rejected({"render", "--model", kModel, "--from-snapshot", snapshot, "--prompt", "a cat",
                   "--frames", "3", "--out", out},
                  out, "another model");
  expect_rejected(
      {"render", "--model", kModel, "--from-snapshot", write_file("junk.snap", "STRNSNAP junk"),
       "--prompt", "a cat", "--frames", "3", "--out", out},
      out, "junk.snap");
}

TEST_F(CliTest, Mp4WithoutFfmpegIsRejectedUpFront) {
  if (strand::media_supports_mp4()) GTEST_SKIP() << "built with FFmpeg";
  const std::string out = path("clip.mp4");
  expect_rejected(render_args(out, {"--frames", "3"}), out, "FFmpeg");
}

// ---- Good runs (these need a working engine).
// ----------------------------------------------------

TEST_F(CliTest, InfoPrintsTheParameterCount) {
  const RunResult r = run({"info", "--model", kModel});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  const int64_t expected = count_parameters_in_file(kModel);
  EXPECT_NE(r.out.find("parameters:     " + std::to_string(expected) + "\n"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\"frames_per_block\": 3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("memory state:"), std::string::npos) << r.out;
}

TEST_F(CliTest, InfoDefaultsToTheBundledModel) {
  ASSERT_TRUE(fs::exists(kBundledModel)) << "bundled model missing: " << kBundledModel;
  if (!bundled_text_encoder_present()) {
    // ./strand setup converts it (CI has it); a bare build tree (the GPU machines) does not.
    GTEST_SKIP() << "the bundled model's text encoder is not set up (./strand setup)";
  }
  const RunResult r = run({"info"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The trained model, with the pretrained text encoder it names found by the model loader (its
  // parameters count the encoder's too, so they exceed the model file's own).
  EXPECT_NE(r.out.find("model:          strand-world-v1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("file:           " + fs::path(kBundledModel).lexically_normal().string()),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("256x144 at 12 fps"), std::string::npos) << r.out;
  const int64_t own = count_parameters_in_file(kBundledModel);
  const size_t at = r.out.find("parameters:     ");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_GT(std::stoll(r.out.substr(at + 16)), own) << r.out;
}

TEST_F(CliTest, RendersAreDeterministicAndSnapshotsContinueExactly) {
  // 5 frames = 2 blocks of 3, only 5 written. Run A also saves a snapshot at frame 3 and stats.
  const fs::path a = dir_ / "a", b = dir_ / "b", c = dir_ / "c";
  const std::string snapshot = path("s3.snap"), stats = path("stats.json");
  RunResult r = run(render_args(
      a.string(), {"--frames", "5", "--save-snapshot-at", "3:" + snapshot, "--stats", stats}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  r = run(render_args(b.string(), {"--frames", "5"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(count_files(a), 5);
  ASSERT_EQ(count_files(b), 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(read_binary(a / frame_name(i)), read_binary(b / frame_name(i)))
        << "frame " << i << " differs";
  }
  EXPECT_NE(read_binary(a / frame_name(0)), read_binary(a / frame_name(3)))
      << "frames should change over time";
  EXPECT_FALSE(fs::exists(a.string() + ".part"));

  // Continue from the snapshot: the next frames are those of the uninterrupted run.
  ASSERT_TRUE(fs::exists(snapshot));
  r = run({"render", "--model", kModel, "--from-snapshot", snapshot, "--prompt",
           "a red fox in the snow", "--frames", "2", "--out", c.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(count_files(c), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(read_binary(c / frame_name(i)), read_binary(a / frame_name(3 + i)))
        << "continued frame " << 3 + i;
  }

  const nlohmann::json s = nlohmann::json::parse(read_text(stats));
  ASSERT_EQ(s["blocks"].size(), 2u);
  EXPECT_EQ(s["frames_written"], 5);
  EXPECT_EQ(s["frames_generated"], 6);
  EXPECT_GT(s["peak_rss_bytes"].get<double>(), 1e6);
  EXPECT_GT(s["frames_per_second"].get<double>(), 0.0);
  for (const auto& block : s["blocks"]) {
    EXPECT_GT(block["ms"]["denoise"].get<double>(), 0.0);
    EXPECT_GT(block["memory_state_bytes"].get<double>(), 0.0);
  }
}

TEST_F(CliTest, Mp4RenderIsH264Yuv420pBt709) {
  if (!strand::media_supports_mp4()) GTEST_SKIP() << "built without FFmpeg";
  const std::string out = path("clip.mp4");
  const RunResult r = run(render_args(out, {"--frames", "4"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".part"));
  if (std::system("command -v ffprobe >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "ffprobe not installed";
  const std::string probe = path("probe.json");
  const std::string command =
      "ffprobe -v error -count_frames -select_streams v:0 -show_streams -of json '" + out +
      "' > '" + probe + "'";
  ASSERT_EQ(std::system(command.c_str()), 0);
  const nlohmann::json stream = nlohmann::json::parse(read_text(probe))["streams"].at(0);
  EXPECT_EQ(stream["codec_name"], "h264");
  EXPECT_EQ(stream["pix_fmt"], "yuv420p");
  EXPECT_EQ(stream["color_space"], "bt709");
  EXPECT_EQ(stream["color_primaries"], "bt709");
  EXPECT_EQ(stream["color_transfer"], "bt709");
  EXPECT_EQ(stream["color_range"], "tv");
  EXPECT_EQ(stream["nb_read_frames"],
            "4");  // 2 blocks generated, only the 4 frames asked for written
  EXPECT_EQ(stream["width"], 64);
  EXPECT_EQ(stream["height"], 32);
}

TEST_F(CliTest, CtrlCCancelsAndRemovesPartialOutputs) {
  const std::string out = path("long.mp4");
  const std::string stats = path("stats.json"), snapshot = path("s.snap");
  const std::string video = strand::media_supports_mp4() ? out : path("long");
  const pid_t pid = spawn_cli(render_args(video, {"--frames", "3000", "--stats", stats,
                                                  "--save-snapshot-at", "3:" + snapshot}),
                              dir_ / "stdout.txt", dir_ / "stderr.txt");
  ASSERT_GT(pid, 0);
  // Wait until generation has started (the sink's .part output exists), then interrupt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!fs::exists(video + ".part") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(fs::exists(video + ".part"));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let it get into a block
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_exit_code(pid), 130) << read_text(dir_ / "stderr.txt");
  EXPECT_FALSE(fs::exists(video));
  EXPECT_FALSE(fs::exists(video + ".part"));
  EXPECT_FALSE(fs::exists(stats));
  EXPECT_FALSE(fs::exists(snapshot));
}
