// strand-cli render --project and strand-cli export, run as a user runs them (the built binary in
// a child process): a project made by the CLI, exported as a branch, an in/out range, prompt
// segments and every branch, probed with ffprobe (skipped without FFmpeg); bad input gives exit 2,
// one error line and no output; a full disk (a file-size limit in the child, and a real 64 KiB
// tmpfs in a private mount namespace) leaves no output;
// the project folder stays byte-identical through every export.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_process.h"
#include "strand/export.h"
#include "strand/project.h"
#include "temp_dir.h"

namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(STRAND_TEST_DATA) + "/golden-model.safetensors";

using RunResult = strand::test::CliRun;
using strand::test::read_text;
using strand::test::run_cli;

// Runs strand-cli with `full_dir` a fresh tmpfs of `tmpfs_bytes` (a real full disk: ENOSPC), in a
// private mount namespace of a child process so that nothing outside sees the mount. The child
// lists what the CLI left in the tmpfs (into `listing`) before the namespace and its tmpfs vanish.
// exit_code 77: no namespace/tmpfs here (not root, or a container forbids it).
RunResult run_cli_on_tmpfs(const std::vector<std::string>& args, const fs::path& scratch,
                           const fs::path& full_dir, size_t tmpfs_bytes, std::string* listing) {
  const fs::path listing_file = scratch / "listing.txt";
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(77);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(77);
    const std::string options = "size=" + std::to_string(tmpfs_bytes);
    if (::mount("tmpfs", full_dir.c_str(), "tmpfs", 0, options.c_str()) != 0) ::_exit(77);
    const RunResult inner = run_cli(args, scratch);
    std::ofstream list(listing_file);
    for (const auto& entry : fs::recursive_directory_iterator(full_dir)) {
      list << fs::relative(entry.path(), full_dir).string() << "\n";
    }
    std::ofstream(scratch / "inner-err.txt") << inner.err;
    ::_exit(inner.exit_code < 0 ? 126 : inner.exit_code);
  }
  RunResult result;
  int status = 0;
  ::waitpid(pid, &status, 0);
  result.exit_code = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
  result.err = read_text(scratch / "inner-err.txt");
  *listing = read_text(listing_file);
  fs::remove(scratch / "inner-err.txt");
  fs::remove(listing_file);
  return result;
}

std::map<std::string, std::string> tree_contents(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    files[fs::relative(entry.path(), root).string()] =
        entry.is_regular_file() ? read_text(entry.path()) : std::string("<dir>");
  }
  return files;
}

bool have_tool(const char* name) {
  return std::system((std::string("command -v ") + name + " >/dev/null 2>&1").c_str()) == 0;
}

bool can_probe(std::initializer_list<const char*> presets) {
  for (const char* preset : presets)
    if (!strand::find_preset(preset).available) return false;
  return have_tool("ffprobe");
}

// ffprobe: decoded frame count and codec name of the first video stream.
std::pair<int, std::string> probe(const std::string& input) {
  const std::string command =
      "ffprobe -v error -count_frames -select_streams v:0 -show_entries "
      "stream=nb_read_frames,codec_name -of json '" +
      input + "' 2>/dev/null";
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string text;
  char buffer[4096];
  size_t n = 0;
  while (pipe != nullptr && (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0)
    text.append(buffer, n);
  if (pipe != nullptr) ::pclose(pipe);
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.contains("streams") || json["streams"].empty()) return {-1, ""};
  const auto& s = json["streams"][0];
  return {std::stoi(s.value("nb_read_frames", "-1")), s.value("codec_name", "")};
}

class CliExport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // One project for the suite: "main" (3 blocks: two prompts) and "side" (from block 1, 2
    // blocks).
    project_dir_ = new strand::test::TempDir("strand-cli-export");
    const fs::path root = project_dir_->path();
    std::ofstream(root / "schedule.json")
        << R"([{"frame": 0, "prompt": "a red balloon"}, {"frame": 6, "prompt": "a green forest"}])";
    const RunResult a =
        run_cli({"render", "--model", kModel, "--schedule", (root / "schedule.json").string(),
                 "--seed", "11", "--frames", "9", "--project", (root / "p").string()},
                root);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    const RunResult b =
        run_cli({"render", "--project", (root / "p").string(), "--from-block", "1", "--prompt",
                 "birds over the sea", "--frames", "6", "--name", "side"},
                root);
    ASSERT_EQ(b.exit_code, 0) << b.err;
  }
  static void TearDownTestSuite() {
    delete project_dir_;
    project_dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(project_dir_, nullptr);
    ASSERT_TRUE(fs::exists(project_dir_->path() / "p" / "project.json"));
    before_ = tree_contents(project());
  }
  void TearDown() override {
    EXPECT_EQ(tree_contents(project()), before_) << "the project folder changed";
  }

  static std::string project() { return (project_dir_->path() / "p").string(); }
  std::string out(const std::string& name) const { return (scratch_.path() / name).string(); }
  RunResult run(const std::vector<std::string>& args, rlim_t limit = 0) {
    return run_cli(args, work_.path(), limit);
  }
  void expect_rejected(const std::vector<std::string>& args, const std::string& output,
                       const std::string& expected = "") {
    std::string text;
    for (const auto& a : args) text += a + " ";
    SCOPED_TRACE("strand-cli " + text);
    const RunResult r = run(args);
    EXPECT_EQ(r.exit_code, 2) << r.err << r.out;
    EXPECT_TRUE(r.err.starts_with("strand-cli: error: ")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    if (!expected.empty()) {
      EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
    }
    EXPECT_TRUE(fs::is_empty(scratch_.path())) << "left behind in " << scratch_.path();
    (void)output;
  }

  static strand::test::TempDir* project_dir_;
  strand::test::TempDir scratch_{"strand-cli-export-out"};
  strand::test::TempDir work_{"strand-cli-export-work"};
  std::map<std::string, std::string> before_;
};

strand::test::TempDir* CliExport::project_dir_ = nullptr;

}  // namespace

TEST_F(CliExport, RenderMadeAProjectAndABranch) {
  const strand::Project p = strand::read_project(project());
  ASSERT_EQ(p.branches.size(), 2u);
  EXPECT_EQ(p.branch(1)->name, "main");
  EXPECT_EQ(p.path_length(1), 3);
  EXPECT_EQ(p.branch(1)->seed, 11u);
  ASSERT_EQ(p.prompt_segments(1).size(), 2u);
  EXPECT_EQ(p.prompt_segments(1)[1].prompt, "a green forest");
  EXPECT_EQ(p.branch(2)->name, "side");
  EXPECT_EQ(p.branch(2)->fork_block, 1);
  EXPECT_EQ(p.branch(2)->seed, 11u);  // the parent's seed when none is given
  EXPECT_EQ(p.path_length(2), 3);
  EXPECT_EQ(p.active_branch, 2);
  EXPECT_GT(p.fps, 0);
  // Every block has its snapshot, frames and latents.
  for (const auto& b : p.branches) {
    for (const auto& block : b.blocks) {
      for (const std::string& name : {"snapshots/" + block.key + ".snap",
                                     "cache/" + block.key + ".blk", "cache/" + block.key + ".lat"}) {
        EXPECT_TRUE(fs::exists(fs::path(project()) / name)) << name;
      }
    }
  }
  // Bad extensions of the project are refused and change nothing.
  expect_rejected({"render", "--project", project(), "--from-block", "9", "--frames", "3"}, "",
                  "--from-block");
  expect_rejected({"render", "--project", project(), "--branch", "nope", "--frames", "3"}, "",
                  "nope");
  expect_rejected({"render", "--project", project(), "--from-snapshot", "x.snap", "--frames", "3"},
                  "");
  expect_rejected({"render", "--project", project(), "--frames", "3", "--name", " "}, "");
}

TEST_F(CliExport, ListPresetsAndList) {
  RunResult r = run({"export", "--list-presets"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const auto& preset : strand::list_presets()) {
    EXPECT_NE(r.out.find(preset.name + "\t"), std::string::npos) << preset.name;
    EXPECT_NE(r.out.find(preset.pixel_format), std::string::npos) << preset.name;
  }
  r = run({"export", "--project", project(), "--list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("branch 2 'side' (active)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("segment 1: frames 6-8 \"a green forest\""), std::string::npos) << r.out;
}

TEST_F(CliExport, BranchRangeSegmentsAndAllBranches) {
  if (!can_probe({"ffv1", "prores", "png"})) GTEST_SKIP() << "FFmpeg encoders or ffprobe missing";
  // A whole branch, with an OTIO timeline whose clip covers it exactly.
  RunResult r = run({"export", "--project", project(), "--branch", "main", "--preset", "ffv1",
                     "--out", out("main.mkv"), "--timeline", "otio"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(probe(out("main.mkv")), (std::pair<int, std::string>{9, "ffv1"}));
  const auto otio = nlohmann::json::parse(read_text(out("main.otio")));
  const auto& clips = otio["tracks"]["children"][0]["children"];
  ASSERT_EQ(clips.size(), 1u);
  EXPECT_EQ(clips[0]["source_range"]["duration"]["value"], 9.0);
  const auto sidecar = nlohmann::json::parse(read_text(out("main.json")));
  EXPECT_EQ(sidecar["branch"], "main");
  EXPECT_EQ(sidecar["seed"], 11);
  ASSERT_EQ(sidecar["prompt_schedule"].size(), 2u);
  EXPECT_EQ(sidecar["prompt_schedule"][1]["frame"], 6);

  // In/out (inclusive) in the issue's "--in F --out F" form, conformed 12 -> 24 fps, EDL.
  r = run({"export", "--project", project(), "--branch", "2", "--in", "2", "--out", "6", "--preset",
           "prores", "--fps", "24", "--out", out("range.mov"), "--timeline", "edl"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(probe(out("range.mov")), (std::pair<int, std::string>{10, "prores"}));
  const std::string edl = read_text(out("range.edl"));
  EXPECT_NE(edl.find("00:00:00:00 00:00:00:10 00:00:00:00 00:00:00:10"), std::string::npos) << edl;
  EXPECT_NE(edl.find("forks from 'main'"), std::string::npos) << edl;

  // One prompt segment: "a green forest" = frames 6-8 of main.
  r = run({"export", "--project", project(), "--branch", "main", "--segments", "1", "--preset",
           "ffv1", "--out", out("seg.mkv"), "--timeline", "fcpxml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(probe(out("seg.mkv")).first, 3);
  EXPECT_NE(read_text(out("seg.fcpxml")).find("<fcpxml"), std::string::npos);

  // Every branch, one PNG sequence each, and one timeline with both.
  r = run({"export", "--project", project(), "--all-branches", "--preset", "png", "--out",
           out("all"), "--timeline", "otio"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(out("all.part")));
  for (const char* branch : {"main", "side"}) {
    int count = 0;
    for (const auto& entry : fs::directory_iterator(fs::path(out("all")) / branch))
      count += entry.is_regular_file();
    EXPECT_EQ(count, 9) << branch;
    EXPECT_TRUE(fs::exists(fs::path(out("all")) / (std::string(branch) + ".json")));
  }
  const auto all = nlohmann::json::parse(read_text(fs::path(out("all")) / "p.otio"));
  EXPECT_EQ(all["tracks"]["children"][0]["children"].size(), 2u);
  const std::string url = all["tracks"]["children"][0]["children"][1]["media_references"]
                             ["DEFAULT_MEDIA"]["target_url"];
  EXPECT_NE(url.find(out("all") + "/side"), std::string::npos) << url;  // the final folder
}

TEST_F(CliExport, DamagedFramesAreRebuiltFromLatentsWithoutTouchingTheProject) {
  if (!can_probe({"ffv1"})) GTEST_SKIP() << "FFmpeg encoders or ffprobe missing";
  // A copy of the project with one damaged frame cache (the suite's project stays intact).
  const fs::path copy = work_.path() / "copy";
  fs::copy(project(), copy, fs::copy_options::recursive);
  const strand::Project p = strand::read_project(copy.string());
  const fs::path blk = copy / "cache" / (p.branch(1)->blocks[1].key + ".blk");
  std::string bytes = read_text(blk);
  bytes[bytes.size() / 2] ^= 0x10;
  std::ofstream(blk, std::ios::binary) << bytes;
  const auto damaged = tree_contents(copy);
  RunResult r = run({"export", "--project", copy.string(), "--branch", "main", "--preset", "ffv1",
                     "--out", out("fixed.mkv")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("decoded again from their stored latents"), std::string::npos) << r.out;
  EXPECT_EQ(probe(out("fixed.mkv")).first, 9);
  // Identical to the export of the intact project.
  r = run({"export", "--project", project(), "--branch", "main", "--preset", "ffv1", "--out",
           out("intact.mkv")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto decode = [](const std::string& file) {
    return "ffmpeg -v error -i '" + file + "' -f rawvideo -pix_fmt rgb24 - | md5sum";
  };
  const std::string a = decode(out("fixed.mkv"));
  const std::string b = decode(out("intact.mkv"));
  const auto capture = [](const std::string& command) {
    FILE* pipe = ::popen(command.c_str(), "r");
    char line[256] = {};
    if (pipe != nullptr) {
      (void)!std::fgets(line, sizeof line, pipe);
      ::pclose(pipe);
    }
    return std::string(line);
  };
  if (have_tool("ffmpeg")) {
    EXPECT_EQ(capture(a), capture(b));
  }
  EXPECT_EQ(tree_contents(copy), damaged);
}

TEST_F(CliExport, BadInputIsOneLineAndLeavesNothing) {
  const std::string p = project();
  const std::string o = out("x.mov");
  // Checks of the project's contents use an image sequence. Every preset needs an FFmpeg encoder,
  // and a build without FFmpeg (the GPU machines) rejects the preset before it looks at the
  // project: there those checks cannot run, and only the argument checks do.
  const std::string seq = out("seq");
  const bool sequence_available = strand::find_preset("png").available;
  expect_rejected({"export", "--project", p, "--preset", "gif", "--out", o}, o,
                  "unknown preset 'gif'");
  expect_rejected({"export", "--project", p, "--preset", "prores"}, o, "--out PATH");
  expect_rejected({"export", "--project", p, "--out", o}, o, "--preset");
  expect_rejected({"export", "--out", o, "--preset", "prores"}, o, "--project");
  expect_rejected({"export", "--project", out("none"), "--preset", "prores", "--out", o}, o);
  if (sequence_available) {
    expect_rejected({"export", "--project", p, "--branch", "nope", "--preset", "png", "--out", seq},
                    seq, "nope");
    expect_rejected(
        {"export", "--project", p, "--in", "5", "--out", "99", "--preset", "png", "--out", seq},
        seq, "outside");
    expect_rejected(
        {"export", "--project", p, "--in", "6", "--out-frame", "2", "--preset", "png", "--out", seq},
        seq, "after");
    expect_rejected({"export", "--project", p, "--segments", "7", "--preset", "png", "--out", seq},
                    seq, "segment 7");
  } else {
    std::printf("no FFmpeg png encoder: the project-content checks were not run\n");
  }
  expect_rejected({"export", "--project", p, "--segments", "0,x", "--preset", "prores", "--out", o},
                  o);
  expect_rejected(
      {"export", "--project", p, "--segments", "0", "--in", "1", "--preset", "prores", "--out", o},
      o);
  expect_rejected({"export", "--project", p, "--all-branches", "--branch", "1", "--preset", "png",
                   "--out", out("all")},
                  "");
  expect_rejected({"export", "--project", p, "--preset", "prores", "--out", o, "--timeline", "xml"},
                  o);
  expect_rejected({"export", "--project", p, "--preset", "prores", "--out", o, "--fps", "31.5"}, o);
  expect_rejected({"export", "--project", p, "--preset", "prores", "--out", o, "--size", "0x0"}, o);
  expect_rejected({"export", "--project", p, "--preset", "prores", "--out", o, "--out", o}, o);
  if (strand::find_preset("prores").available) {  // else the preset is rejected first
    expect_rejected({"export", "--project", p, "--preset", "prores", "--out", p + "/cache/x.mov"},
                    "", "inside the project");
  }
  expect_rejected({"export", "--project", p, "--list-presets"}, "");
}

// A render into the project (or into a new one) that fails on a full disk removes every block
// file it wrote: the project is byte-identical (checked in TearDown) and no new folder is left.
TEST_F(CliExport, RenderIntoProjectOnAFullDiskLeavesItAsItWas) {
  RunResult r = run({"render", "--project", project(), "--frames", "6"}, 4 * 1024);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("File too large"), std::string::npos) << r.err;
  r = run({"render", "--model", kModel, "--prompt", "a red balloon", "--seed", "1", "--frames", "3",
           "--project", out("new")},
          4 * 1024);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(fs::is_empty(scratch_.path()));
}

TEST_F(CliExport, FullTmpfsLeavesNothing) {
  if (!can_probe({"ffv1", "png"})) GTEST_SKIP() << "FFmpeg encoders or ffprobe missing";
  // A 64 KiB tmpfs: the sidecar fits, the upscaled lossless media does not (ENOSPC mid-write).
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--branch", "main", "--preset", "ffv1", "--size", "512x256",
                                 "--out", out("full.mkv"), "--timeline", "otio"},
        std::vector<std::string>{"--all-branches", "--preset", "png", "--size", "512x256", "--out",
                                 out("all")}}) {
    std::vector<std::string> full{"export", "--project", project()};
    full.insert(full.end(), args.begin(), args.end());
    std::string listing;
    const RunResult r = run_cli_on_tmpfs(full, work_.path(), scratch_.path(), 64 * 1024, &listing);
    if (r.exit_code == 77) GTEST_SKIP() << "no private tmpfs here (needs root and mount rights)";
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
    EXPECT_EQ(listing, "") << "left on the full disk:\n" << listing;
  }
}

TEST_F(CliExport, FullDiskLeavesNothing) {
  if (!can_probe({"ffv1", "png"})) GTEST_SKIP() << "FFmpeg encoders or ffprobe missing";
  // 4 KB per file: less than the media file and than one upscaled PNG frame.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--branch", "main", "--preset", "ffv1", "--size", "256x128",
                                 "--out", out("full.mkv"), "--timeline", "otio"},
        std::vector<std::string>{"--all-branches", "--preset", "png", "--size", "256x128", "--out",
                                 out("all")}}) {
    std::vector<std::string> full{"export", "--project", project()};
    full.insert(full.end(), args.begin(), args.end());
    const RunResult r = run(full, 4 * 1024);
    EXPECT_EQ(r.exit_code, 2) << r.err << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("File too large"), std::string::npos)
        << r.err;  // EFBIG, not another error
    EXPECT_TRUE(fs::is_empty(scratch_.path())) << args[0];
  }
}
