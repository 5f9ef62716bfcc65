// Projects without Qt (strand/project.h) and export selection (strand/export_plan.h): SHA-256
// vectors, block-cache files, a project written with the real engine and read back (frames,
// snapshots, unknown fields, re-decoding a damaged block from its latents), plans for every
// selection, and cancelled / disk-full exports that leave no output and the project untouched.
// The app side of the format is held to the same bytes by tests/app/test_project_interop.cpp.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sha256.h"
#include "strand/error.h"
#include "strand/export_plan.h"
#include "strand/project.h"
#include "strand/session.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using strand::Error;
using strand::ErrorKind;

namespace {

const std::string kModelPath = std::string(STRAND_TEST_DATA) + "/golden-model.safetensors";

std::string hex(const strand::detail::Sha256Digest& digest) {
  std::string text;
  char byte[3];
  for (uint8_t b : digest) {
    std::snprintf(byte, sizeof byte, "%02x", b);
    text += byte;
  }
  return text;
}

std::string sha_of(const std::string& text) {
  return hex(strand::detail::sha256({reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Every file under `root` (relative path -> content): equal maps mean a byte-identical tree.
std::map<std::string, std::string> tree_contents(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string relative = fs::relative(entry.path(), root).string();
    files[relative] = entry.is_regular_file() ? read_text(entry.path()) : std::string("<dir>");
  }
  return files;
}

int error_kind(const std::function<void()>& action, std::string* message = nullptr) {
  try {
    action();
  } catch (const Error& e) {
    if (message != nullptr) *message = e.what();
    return static_cast<int>(e.kind());
  }
  return 0;
}

// A project made with the golden model: branch 1 "main" with `blocks` blocks under two prompts.
struct MadeProject {
  std::shared_ptr<const strand::Model> model;
  std::vector<strand::Frame> frames;  // all frames of "main", in order
};

MadeProject make_project(const std::string& folder, int blocks) {
  MadeProject made;
  made.model = strand::Model::load(kModelPath);
  strand::SessionOptions options;
  options.seed = 7;
  strand::Session session(made.model, options);
  strand::ProjectWriter::NewProject info;
  info.model_path = kModelPath;
  info.model_id = made.model->id();
  info.frames_per_block = made.model->config().frames_per_block;
  info.fps = made.model->config().fps;
  info.initial_state = session.snapshot();
  strand::NewProjectBranch root;
  root.seed = 7;
  root.prompt = "a red balloon";
  auto writer = strand::ProjectWriter::create(folder, std::move(info), root);
  for (int b = 0; b < blocks; ++b) {
    session.set_prompt(b < 2 ? "a red balloon" : "a green forest");
    strand::NewProjectBlock block;
    block.prompt = session.prompt();
    block.seed = session.seed();
    strand::BlockResult result = session.generate_next_block();
    made.frames.insert(made.frames.end(), result.frames.begin(), result.frames.end());
    block.frames = std::move(result.frames);
    block.latents = std::move(result.latents);
    block.state_after = session.snapshot();
    writer.add_block(block);
  }
  writer.set_next(session.seed(), session.prompt());
  writer.commit();
  return made;
}

}  // namespace

TEST(Sha256, MatchesFipsVectors) {
  EXPECT_EQ(sha_of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha_of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  // Fed in pieces across block boundaries: the same digest.
  const std::string million(1000000, 'a');
  strand::detail::Sha256 hash;
  for (size_t i = 0; i < million.size(); i += 997)
    hash.update({reinterpret_cast<const uint8_t*>(million.data()) + i,
                 std::min<size_t>(997, million.size() - i)});
  EXPECT_EQ(hex(hash.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(ProjectFiles, BlockCacheRoundTripAndDamage) {
  std::vector<strand::Frame> frames(2);
  for (int f = 0; f < 2; ++f) {
    frames[f].width = 5;
    frames[f].height = 3;
    frames[f].rgb.resize(45);
    for (size_t i = 0; i < 45; ++i) frames[f].rgb[i] = static_cast<uint8_t>(i * 7 + f);
  }
  const std::vector<float> latents{1.5f, -2.25f, 3e-8f};
  std::vector<uint8_t> bytes = strand::encode_block_cache(frames, latents);
  // The header the app's QJsonDocument::Compact writes, byte for byte.
  const std::string header = R"({"frames":2,"height":3,"latents":3,"width":5})";
  EXPECT_EQ(std::string(bytes.begin() + 12, bytes.begin() + 12 + header.size()), header);
  const strand::BlockCache back = strand::decode_block_cache(bytes);
  ASSERT_EQ(back.frames.size(), 2u);
  EXPECT_EQ(back.frames[1].rgb, frames[1].rgb);
  EXPECT_EQ(back.latents, latents);
  bytes[20] ^= 1;
  std::string message;
  EXPECT_EQ(error_kind([&] { (void)strand::decode_block_cache(bytes); }, &message),
            int(ErrorKind::invalid_file));
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
  EXPECT_EQ(error_kind([&] { (void)strand::decode_block_cache(std::vector<uint8_t>(10, 0)); }),
            int(ErrorKind::invalid_file));
}

TEST(ProjectFiles, WriteReadRoundTripAndAppendBranch) {
  strand::test::TempDir dir("strand-project");
  const std::string folder = dir.file("p");
  const MadeProject made = make_project(folder, 3);

  strand::Project project = strand::read_project(folder);
  EXPECT_EQ(project.model_id, made.model->id());
  EXPECT_EQ(project.fps, made.model->config().fps);
  ASSERT_EQ(project.branches.size(), 1u);
  const auto& main = project.branches[0];
  EXPECT_EQ(main.name, "main");
  EXPECT_EQ(main.seed, 7u);
  EXPECT_EQ(main.prompt, "a green forest");
  ASSERT_EQ(main.blocks.size(), 3u);
  EXPECT_EQ(main.blocks[2].prompt, "a green forest");
  const auto segments = project.prompt_segments(1);
  ASSERT_EQ(segments.size(), 2u);
  EXPECT_EQ(segments[0].last_block, 1);
  EXPECT_EQ(segments[1].prompt, "a green forest");

  strand::ProjectFrameReader reader(project);
  for (size_t f = 0; f < made.frames.size(); ++f) {
    const strand::Frame frame = reader.path_frame(1, static_cast<int64_t>(f));
    EXPECT_EQ(frame.rgb, made.frames[f].rgb) << f;
    EXPECT_EQ(frame.index, static_cast<int64_t>(f));
  }
  EXPECT_EQ(strand::load_project_snapshot(project, main.blocks[1].key).next_block, 2);
  EXPECT_EQ(strand::load_project_snapshot(project, "initial").next_block, 0);

  // Unknown fields anywhere survive an appended branch.
  nlohmann::json json = nlohmann::json::parse(read_text(fs::path(folder) / "project.json"));
  json["future_top"] = {{"x", 1}};
  json["branches"][0]["future_branch"] = "kept";
  json["branches"][0]["blocks"][0]["future_block"] = 3;
  std::ofstream(fs::path(folder) / "project.json") << json.dump(2);
  const std::string before = read_text(fs::path(folder) / "project.json");

  strand::Session session(made.model, {});
  session.restore(strand::load_project_snapshot(project, main.blocks[0].key));
  session.set_seed(99);
  session.set_prompt("birds over the sea");
  auto writer =
      strand::ProjectWriter::append_branch(folder, {"take 2", 1, 1, 99, "birds over the sea"});
  EXPECT_EQ(writer.branch_id(), 2);
  EXPECT_EQ(writer.next_block_index(), 1);
  strand::NewProjectBlock block;
  block.prompt = session.prompt();
  block.seed = 99;
  strand::BlockResult result = session.generate_next_block();
  block.frames = result.frames;
  block.latents = result.latents;
  block.state_after = session.snapshot();
  writer.add_block(block);
  // A block that does not follow is refused, and nothing is written for it.
  EXPECT_EQ(error_kind([&] { writer.add_block(block); }), int(ErrorKind::invalid_argument));
  writer.commit();

  EXPECT_EQ(read_text(fs::path(folder) / "project.json.bak"), before);
  const nlohmann::json after = nlohmann::json::parse(read_text(fs::path(folder) / "project.json"));
  EXPECT_EQ(after["future_top"]["x"], 1);
  EXPECT_EQ(after["branches"][0]["future_branch"], "kept");
  EXPECT_EQ(after["branches"][0]["blocks"][0]["future_block"], 3);
  EXPECT_EQ(after["active_branch"], 2);
  EXPECT_EQ(after["next_branch_id"], 3);

  project = strand::read_project(folder);
  ASSERT_NE(project.branch(2), nullptr);
  EXPECT_EQ(project.branch(2)->fork_block, 1);
  EXPECT_EQ(project.path_length(2), 2);
  EXPECT_EQ(project.block_owner(2, 0), 1);
  EXPECT_EQ(project.block_owner(2, 1), 2);
  strand::ProjectFrameReader reader2(project);
  EXPECT_EQ(reader2.path_frame(2, 0).rgb, made.frames[0].rgb);  // shared with the parent
  EXPECT_EQ(reader2.path_frame(2, 3).rgb, result.frames[0].rgb);
}

TEST(ProjectFiles, AbortedWritersLeaveTheFolderAsItWas) {
  strand::test::TempDir dir("strand-project");
  const std::string folder = dir.file("p");
  const MadeProject made = make_project(folder, 2);
  const auto before = tree_contents(folder);
  {
    strand::Session session(made.model, {});
    session.restore(strand::load_project_snapshot(
        strand::read_project(folder), strand::read_project(folder).branches[0].blocks[1].key));
    auto writer = strand::ProjectWriter::append_branch(folder, {"x", 1, 2, 1, "a red balloon"});
    strand::NewProjectBlock block;
    block.prompt = session.prompt();
    strand::BlockResult result = session.generate_next_block();
    block.frames = result.frames;
    block.latents = result.latents;
    block.state_after = session.snapshot();
    writer.add_block(block);
    EXPECT_NE(tree_contents(folder), before);  // the block's files are there while writing
  }                                            // destroyed uncommitted
  EXPECT_EQ(tree_contents(folder), before);

  // A new project that is never committed leaves no folder; bad targets are refused.
  {
    strand::Session session(made.model, {});
    strand::ProjectWriter::NewProject info;
    info.model_id = made.model->id();
    info.frames_per_block = 3;
    info.initial_state = session.snapshot();
    auto writer = strand::ProjectWriter::create(dir.file("q"), info, {});
    EXPECT_TRUE(fs::exists(dir.file("q/snapshots/initial.snap")));
    EXPECT_EQ(error_kind([&] { (void)strand::ProjectWriter::create(folder, info, {}); }),
              int(ErrorKind::invalid_argument));
  }
  EXPECT_FALSE(fs::exists(dir.file("q")));
  EXPECT_EQ(error_kind([&] {
              (void)strand::ProjectWriter::append_branch(folder, {"y", 1, 3, 1, "a"});
            }),
            int(ErrorKind::invalid_argument));  // fork beyond the path
  EXPECT_EQ(tree_contents(folder), before);
}

TEST(ProjectFiles, DamagedFramesAreDecodedFromLatents) {
  strand::test::TempDir dir("strand-project");
  const std::string folder = dir.file("p");
  const MadeProject made = make_project(folder, 2);
  const strand::Project project = strand::read_project(folder);
  const std::string key = project.branches[0].blocks[1].key;
  const fs::path blk = fs::path(folder) / "cache" / (key + ".blk");
  std::string bytes = read_text(blk);
  bytes[bytes.size() / 2] ^= 0x40;
  std::ofstream(blk, std::ios::binary) << bytes;

  strand::ProjectFrameReader without_model(project);
  std::string message;
  EXPECT_EQ(error_kind([&] { (void)without_model.path_frame(1, 3); }, &message),
            int(ErrorKind::invalid_file));
  EXPECT_NE(message.find("block 1"), std::string::npos) << message;

  strand::Session decoder(made.model, {});
  strand::ProjectFrameReader reader(project, [&] { return &decoder; });
  for (int f = 3; f < 6; ++f) EXPECT_EQ(reader.path_frame(1, f).rgb, made.frames[f].rgb) << f;
  EXPECT_EQ(reader.blocks_decoded_from_latents(), 1);
  EXPECT_EQ(read_text(blk), bytes);  // reading never repairs (never writes) the project

  fs::remove(fs::path(folder) / "cache" / (key + ".lat"));
  strand::ProjectFrameReader no_latents(project, [&] { return &decoder; });
  EXPECT_EQ(error_kind([&] { (void)no_latents.path_frame(1, 3); }), int(ErrorKind::invalid_file));
}

TEST(ProjectFiles, RejectsBrokenProjects) {
  strand::test::TempDir dir("strand-project");
  const auto write = [&](const std::string& text) {
    fs::create_directories(dir.file("b"));
    std::ofstream(dir.file("b/project.json")) << text;
  };
  const auto kind = [&] { return error_kind([&] { (void)strand::read_project(dir.file("b")); }); };
  EXPECT_EQ(error_kind([&] { (void)strand::read_project(dir.file("none")); }), int(ErrorKind::io));
  write("{not json");
  EXPECT_EQ(kind(), int(ErrorKind::invalid_file));
  write(R"({"format":"other","version":1})");
  EXPECT_EQ(kind(), int(ErrorKind::invalid_file));
  const std::string ok_branch =
      R"({"id":1,"name":"main","parent":-1,"fork_block":0,"seed":"1","in":-1,"out":-1,"blocks":[]})";
  write(R"({"format":"strand-project","version":1,"frames_per_block":3,"branches":[)" + ok_branch +
        "]}");
  EXPECT_EQ(kind(), 0);
  write(
      R"({"format":"strand-project","version":1,"frames_per_block":3,"branches":[{"id":1,"name":"main","parent":-1,"fork_block":0,"seed":"1","blocks":[{"index":0,"key":"../x","seed":"1"}]}]})");
  EXPECT_EQ(kind(), int(ErrorKind::invalid_file));  // a key that is a path
  write(R"({"format":"strand-project","version":1,"frames_per_block":3,"branches":[)" + ok_branch +
        R"(,{"id":2,"name":"b","parent":1,"fork_block":5,"seed":"1","blocks":[]}]})");
  EXPECT_EQ(kind(), int(ErrorKind::invalid_file));  // fork beyond the parent's path
  // Version 0 migrates like the app's: fork_frame -> fork_block, one seed for all.
  write(
      R"({"format":"strand-project","version":0,"frames_per_block":2,"seed":5,"model":"m.safetensors","active":1,
            "branches":[{"id":1,"name":"main","parent":-1,"fork_frame":0,"blocks":[{"key":"ab","prompt":"p"}]},
                        {"id":2,"name":"x","parent":1,"fork_frame":2,"blocks":[]}]})");
  const strand::Project migrated = strand::read_project(dir.file("b"));
  EXPECT_EQ(migrated.version, 0);
  EXPECT_EQ(migrated.branch(2)->fork_block, 1);
  EXPECT_EQ(migrated.branch(1)->blocks[0].seed, 5u);
  EXPECT_EQ(migrated.model_path, "m.safetensors");
  EXPECT_EQ(migrated.next_branch_id, 3);
}

// ---- Export selection
// ----------------------------------------------------------------------------

namespace {

// In memory (as the app would fill it): fpb 4; main has 4 blocks (prompts A A B B); "alt" forks
// main at block 2 with 2 blocks (prompt C); "late" forks alt at block 3 with 1 block.
strand::Project sample_project() {
  strand::Project p;
  p.frames_per_block = 4;
  p.model_id = "m";
  p.model_path = "/models/m.safetensors";
  p.next_branch_id = 4;
  strand::ProjectBranch main{1, "main", -1, 0, 5, "B", -1, -1, {}, ""};
  const char* prompts[] = {"A", "A", "B", "B"};
  for (int k = 0; k < 4; ++k) main.blocks.push_back({k, "k" + std::to_string(k), prompts[k], 5});
  strand::ProjectBranch alt{2, "alt", 1, 2, 9, "C", -1, -1, {}, ""};
  for (int k = 2; k < 4; ++k) alt.blocks.push_back({k, "a" + std::to_string(k), "C", 9});
  strand::ProjectBranch late{3, "alt", 2, 3, 9, "C", -1, -1, {}, ""};  // same name as branch 2
  late.blocks.push_back({3, "l3", "C", 9});
  p.branches = {main, alt, late};
  return p;
}

}  // namespace

TEST(ExportPlan, WholeBranchInOutSegmentsAndAllBranches) {
  const strand::Project p = sample_project();
  ASSERT_EQ(p.check(), "");

  strand::ExportSelection whole;
  whole.branch_id = 2;
  strand::ExportPlan plan = strand::plan_export(p, whole);
  ASSERT_EQ(plan.items.size(), 1u);
  const strand::ExportItem& item = plan.items[0];
  EXPECT_EQ(item.spans, (std::vector<strand::FrameSpan>{{0, 16}}));
  EXPECT_EQ(item.frames, 16);
  ASSERT_EQ(item.metadata.prompt_schedule.size(), 2u);
  EXPECT_EQ(item.metadata.prompt_schedule[1].frame, 8);
  EXPECT_EQ(item.metadata.prompt_schedule[1].prompt, "C");
  EXPECT_EQ(item.metadata.seed, 5u);  // the first exported block's seed...
  EXPECT_EQ(item.metadata.extra.at("seed_schedule"), "0:5,8:9");  // ...and where it changes
  EXPECT_EQ(item.metadata.branch, "alt");
  // Markers: alt forks from main at frame 8 (with the prompt change there), late forks at 12.
  std::vector<std::pair<int64_t, strand::MarkerKind>> markers;
  for (const auto& m : item.markers) markers.emplace_back(m.frame, m.kind);
  EXPECT_EQ(markers, (std::vector<std::pair<int64_t, strand::MarkerKind>>{
                         {8, strand::MarkerKind::prompt_change},
                         {8, strand::MarkerKind::branch_point},
                         {12, strand::MarkerKind::branch_point}}));

  strand::ExportSelection range;
  range.scope = strand::ExportScope::in_out;
  range.branch_id = 1;
  range.in_frame = 5;
  range.out_frame = 10;
  plan = strand::plan_export(p, range);
  EXPECT_EQ(plan.items[0].spans, (std::vector<strand::FrameSpan>{{5, 11}}));
  EXPECT_EQ(plan.items[0].metadata.prompt_schedule.size(), 2u);
  EXPECT_EQ(plan.items[0].metadata.prompt_schedule[1].frame, 3);  // path frame 8 = item frame 3
  ASSERT_EQ(plan.items[0].markers.size(), 2u);  // the prompt change and alt's fork, both at 3
  EXPECT_EQ(plan.items[0].path_frame(0), 5);

  strand::ExportSelection segments;
  segments.scope = strand::ExportScope::segments;
  segments.branch_id = 2;  // segments of alt: A (0-1), C (2-3)
  segments.segments = {1};
  plan = strand::plan_export(p, segments);
  EXPECT_EQ(plan.items[0].spans, (std::vector<strand::FrameSpan>{{8, 16}}));
  EXPECT_EQ(plan.items[0].metadata.prompt_schedule.front().prompt, "C");
  segments.segments = {1, 0};  // any order, exported in path order, adjacent ones merged
  plan = strand::plan_export(p, segments);
  EXPECT_EQ(plan.items[0].spans, (std::vector<strand::FrameSpan>{{0, 16}}));
  segments.branch_id = 1;  // main: A (0-1), B (2-3)
  segments.segments = {0};
  EXPECT_EQ(strand::plan_export(p, segments).items[0].spans,
            (std::vector<strand::FrameSpan>{{0, 8}}));

  strand::ExportSelection all;
  all.scope = strand::ExportScope::all_branches;
  plan = strand::plan_export(p, all);
  ASSERT_EQ(plan.items.size(), 3u);
  EXPECT_EQ(plan.items[0].file_stem, "main");
  EXPECT_EQ(plan.items[1].file_stem, "alt");
  EXPECT_EQ(plan.items[2].file_stem, "alt_3");  // same name: made unique
  EXPECT_EQ(plan.items[2].frames, 16);

  // Timeline at 24 fps from 12 fps: every range doubles; markers follow.
  const auto timeline = strand::plan_timeline(plan, {"/x/main.mov", "/x/alt.mov", "/x/alt_3.mov"},
                                              {12, 1}, {24, 1}, 64, 32);
  ASSERT_EQ(timeline.clips.size(), 3u);
  EXPECT_EQ(timeline.clips[1].media_frames, 32);
  EXPECT_EQ(timeline.clips[1].out_frame, 32);
  EXPECT_EQ(strand::timeline_length(timeline), 96);
  bool found = false;
  for (const auto& m : timeline.markers)
    found |= m.frame == 32 + 16 && m.kind == strand::MarkerKind::branch_point;
  EXPECT_TRUE(found) << "alt's fork point at item frame 8 -> timeline frame 48";

  // Two ranges from segments give two clips on the same media.
  strand::ExportSelection gap;
  gap.scope = strand::ExportScope::segments;
  gap.branch_id = 1;
  gap.segments = {0};
  strand::Project three = p;
  three.branches[0].blocks[3].prompt = "A";  // main: A A B A -> segments 0, 1, 2
  gap.segments = {0, 2};
  plan = strand::plan_export(three, gap);
  EXPECT_EQ(plan.items[0].spans, (std::vector<strand::FrameSpan>{{0, 8}, {12, 16}}));
  const auto two = strand::plan_timeline(plan, {"/x/a.mov"}, {12, 1}, {0, 0}, 64, 32);
  ASSERT_EQ(two.clips.size(), 2u);
  EXPECT_EQ(two.clips[1].in_frame, 8);
  EXPECT_EQ(two.clips[1].out_frame, 12);
}

TEST(ExportPlan, RejectsBadSelections) {
  const strand::Project p = sample_project();
  const auto kind = [&](strand::ExportSelection s) {
    return error_kind([&] { (void)strand::plan_export(p, s); });
  };
  const int bad = int(ErrorKind::invalid_argument);
  EXPECT_EQ(kind({strand::ExportScope::branch, 9, -1, -1, {}}), bad);
  EXPECT_EQ(kind({strand::ExportScope::in_out, 1, 10, 5, {}}), bad);     // reversed
  EXPECT_EQ(kind({strand::ExportScope::in_out, 1, 0, 16, {}}), bad);     // past the end
  EXPECT_EQ(kind({strand::ExportScope::segments, 1, -1, -1, {}}), bad);  // none
  EXPECT_EQ(kind({strand::ExportScope::segments, 1, -1, -1, {2}}), bad);
  EXPECT_EQ(kind({strand::ExportScope::segments, 1, -1, -1, {0, 0}}), bad);
  EXPECT_EQ(kind({strand::ExportScope::in_out, 1, 3, -1, {}}), 0);  // open end
  EXPECT_EQ(strand::parse_segment_list("0,2,10"), (std::vector<int>{0, 2, 10}));
  for (const char* text : {"", "1,", ",1", "a", "-1", "1;2"})
    EXPECT_EQ(error_kind([&] { (void)strand::parse_segment_list(text); }), bad) << text;
  EXPECT_EQ(strand::file_stem_for("take 2/ü"), "take_2___");
  EXPECT_EQ(strand::file_stem_for(".."), "branch..");
}

// Cancelling mid-export and a full disk (a file-size limit: writes past it fail with EFBIG)
// leave no output and the project byte-identical.
TEST(ExportPlan, CancelAndFullDiskLeaveNothingAndTheProjectUntouched) {
  if (!strand::find_preset("ffv1").available || !strand::find_preset("png").available)
    GTEST_SKIP() << "FFmpeg encoders not built in";
  strand::test::TempDir dir("strand-project");
  const std::string folder = dir.file("p");
  make_project(folder, 4);
  const auto before = tree_contents(folder);
  const strand::Project project = strand::read_project(folder);
  strand::ProjectFrameReader reader(project);
  const strand::ExportFrameSource source = [&](int id, int64_t f) {
    return reader.path_frame(id, f);
  };
  const strand::ExportPlan plan = strand::plan_export(project, {});
  const fs::path out_dir = dir.path() / "out";
  fs::create_directories(out_dir);

  for (const char* preset : {"ffv1", "png"}) {
    const bool sequence = strand::find_preset(preset).sequence;
    const std::string out = (out_dir / (sequence ? "seq" : "clip.mkv")).string();
    strand::ExportSettings settings;
    settings.preset = preset;
    std::atomic<bool> cancel{false};
    int64_t seen = 0;
    strand::ExportControl control{&cancel, [&](int64_t done, int64_t total) {
                                    seen = done;
                                    EXPECT_EQ(total, 12);
                                    if (done == 5) cancel.store(true);
                                  }};
    EXPECT_EQ(error_kind([&] {
                strand::export_item(plan.items[0], source, {12, 1}, out, settings, control);
              }),
              int(ErrorKind::cancelled));
    EXPECT_EQ(seen, 5);
    EXPECT_TRUE(fs::is_empty(out_dir)) << preset;

    // Full disk: 4 KB per file is less than the media and than one upscaled PNG frame.
    settings.width = 256;
    settings.height = 128;
    struct rlimit old_limit {};
    ::getrlimit(RLIMIT_FSIZE, &old_limit);
    auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = old_limit;
    limit.rlim_cur = 4 * 1024;
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::string message;
    const int kind = error_kind(
        [&] {
          strand::export_item(plan.items[0], source, {12, 1}, out, settings, {});
        },
        &message);
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    ::signal(SIGXFSZ, old_handler);
    EXPECT_EQ(kind, int(ErrorKind::io)) << preset << ": " << message;
    EXPECT_TRUE(fs::is_empty(out_dir)) << preset;
  }
  EXPECT_EQ(tree_contents(folder), before);
  // And a complete export works from the same reader.
  strand::ExportSettings settings;
  settings.preset = "ffv1";
  strand::export_item(plan.items[0], source, {12, 1}, (out_dir / "ok.mkv").string(), settings);
  EXPECT_TRUE(fs::exists(out_dir / "ok.mkv"));
  EXPECT_TRUE(fs::exists(out_dir / "ok.json"));
  EXPECT_EQ(tree_contents(folder), before);
}
