// `strand-cli render`: generates a video (PNG sequence or MP4) from a prompt or a prompt schedule,
// optionally continuing from a snapshot and saving snapshots at block boundaries.
//
// Order of work: parse and check every option, load and check every input file, check that every
// output can be written, and only then generate. Outputs are committed at the very end (snapshots,
// stats, the video's rename, then the project's project.json); on any error or Ctrl-C whatever was
// written is removed.
//
// --project DIR records every block (frames, latents, the snapshot after it) in a project folder
// the desktop app opens (strand/project.h): DIR becomes a new project when it is not one, else the
// render is a new branch of it, continuing from the end of --branch (default: the active branch)
// or from boundary --from-block, with that branch's model, seed and prompt unless given.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "cli.h"
#include "strand/error.h"
#include "strand/media.h"
#include "strand/memory_state.h"
#include "strand/project.h"

namespace strand::cli {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kMaxFrames = 1'000'000'000;
constexpr int64_t kMaxRecache = 1000;

[[noreturn]] void usage_error(const std::string& message) {
  throw Error(ErrorKind::invalid_argument, message);
}

struct SnapshotRequest {
  int64_t frame = 0;
  std::string path;
};

SnapshotRequest parse_snapshot_request(const std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    usage_error("--save-snapshot-at expects FRAME:FILE, got '" + text + "'");
  }
  SnapshotRequest request;
  request.frame = parse_int(text.substr(0, colon), "save-snapshot-at", 0, kMaxFrames * 2);
  request.path = text.substr(colon + 1);
  return request;
}

// A progress line on an interactive stderr ("block 2/6, step 3/5"); nothing when redirected, so
// logs and tests see only results and errors.
class ProgressLine {
 public:
  ProgressLine() : enabled_(::isatty(STDERR_FILENO) == 1) {}
  ~ProgressLine() { close(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  void show(int64_t block, int64_t blocks, int step, int steps) {
    if (!enabled_) return;
    std::cerr << "\rblock " << block << "/" << blocks << ", step " << step << "/" << steps << "   "
              << std::flush;
    open_ = true;
  }
  void close() {
    if (open_) std::cerr << "\r\033[K" << std::flush;
    open_ = false;
  }

 private:
  bool enabled_;
  bool open_ = false;
};

std::string normalized(const std::string& path) {
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec);
  return (ec ? fs::path(path) : absolute).lexically_normal().string();
}

}  // namespace

int run_render(std::span<const std::string> args) {
  std::vector<OptionSpec> specs = {{"model"},
                                   {"prompt"},
                                   {"schedule"},
                                   {"frames"},
                                   {"seed"},
                                   {"out"},
                                   {"save-snapshot-at", true, true},
                                   {"from-snapshot"},
                                   {"stats"},
                                   {"recache"},
                                   {"project"},
                                   {"branch"},
                                   {"from-block"},
                                   {"name"}};
  for (auto& spec : device_option_specs()) specs.push_back(std::move(spec));
  const Options options(args, specs);

  // ---- 1. Options on their own. ----
  if (!options.has("frames")) usage_error("render needs --frames N");
  const int64_t frame_count = parse_int(*options.get("frames"), "frames", 1, kMaxFrames);
  const std::optional<std::string> project_dir = options.get("project");
  if (project_dir && project_dir->empty()) usage_error("--project needs a folder");
  for (const char* option : {"branch", "from-block", "name"}) {
    if (options.has(option) && !project_dir)
      usage_error(std::string("--") + option + " needs --project DIR");
  }
  // An existing project supplies what a snapshot would: the start state, seed and prompt.
  const bool extend_project = project_dir && is_project_folder(*project_dir);
  if (!options.has("out") && !project_dir)
    usage_error("render needs --out PATH (a folder of PNGs, or a .mp4 file) or --project DIR");
  const std::string out_path = options.get("out").value_or("");
  if (options.has("out") && out_path.empty()) usage_error("--out needs a path");
  const std::optional<std::string> snapshot_in = options.get("from-snapshot");
  if (snapshot_in && project_dir)
    usage_error("--project continues from the project's own snapshots: it takes no --from-snapshot");
  std::optional<uint64_t> seed;
  if (options.has("seed")) seed = parse_u64(*options.get("seed"), "seed");
  if (!seed && !snapshot_in && !extend_project)
    usage_error("render needs --seed S (or --from-snapshot, which carries its seed)");
  if (options.has("prompt") && options.has("schedule"))
    usage_error("give --prompt or --schedule, not both");
  if (!options.has("prompt") && !options.has("schedule") && !snapshot_in && !extend_project) {
    usage_error("render needs --prompt P or --schedule S.json");
  }
  std::optional<std::string> prompt = options.get("prompt");
  const std::optional<std::string> branch_name = options.get("name");
  if (branch_name && branch_name->find_first_not_of(" \t\r\n") == std::string::npos)
    usage_error("--name needs a non-blank branch name");
  if (prompt) validate_prompt(*prompt, "--prompt");
  const int recache =
      options.has("recache")
          ? static_cast<int>(parse_int(*options.get("recache"), "recache", 0, kMaxRecache))
          : 0;
  const std::optional<std::string> stats_path = options.get("stats");
  const DeviceChoice device = parse_device_options(options);

  std::vector<SnapshotRequest> snapshot_requests;
  for (const auto& text : options.all("save-snapshot-at"))
    snapshot_requests.push_back(parse_snapshot_request(text));
  // ---- 2. Inputs. ----
  std::optional<Project> project;
  if (extend_project) project = read_project(*project_dir);
  const std::string model_path = project && !options.has("model") && !project->model_path.empty()
                                     ? project->model_path
                                     : model_path_or_default(options.get("model"));
  {
    // Two outputs on one path would overwrite each other; an output on an input would destroy it.
    std::set<std::string> paths{normalized(model_path)};
    if (options.has("schedule")) paths.insert(normalized(*options.get("schedule")));
    if (snapshot_in) paths.insert(normalized(*snapshot_in));
    const auto claim = [&](const std::string& path, const std::string& what) {
      if (!paths.insert(normalized(path)).second)
        usage_error(what + " " + path + " is also the path of another input or output");
    };
    if (!out_path.empty()) claim(out_path, "--out");
    if (stats_path) claim(*stats_path, "--stats");
    for (const auto& request : snapshot_requests) claim(request.path, "--save-snapshot-at");
  }
  std::unique_ptr<FrameSink> sink;
  if (!out_path.empty()) sink = make_sink(out_path);  // .mp4 without FFmpeg fails here
  const std::shared_ptr<const Model> model = load_model(model_path);
  const ModelConfig& config = model->config();
  const int64_t frames_per_block = config.frames_per_block;

  std::vector<ScheduleEntry> schedule;
  const std::string schedule_path = options.get("schedule").value_or("");
  if (options.has("schedule")) schedule = load_schedule(schedule_path);

  std::optional<MemoryState> start_state;
  if (snapshot_in) {
    try {
      start_state = load_snapshot(*snapshot_in, model->id());
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::model_mismatch) {
        throw Error(e.kind(),
                    "snapshot " + *snapshot_in + " was made by another model than " + model_path);
      }
      throw Error(e.kind(), "cannot load snapshot " + *snapshot_in + ": " +
                                without_path_prefix(e.what(), *snapshot_in));
    }
    if (!prompt && schedule.empty()) validate_prompt(start_state->prompt, "the snapshot's prompt");
  }

  // The branch a render into an existing project starts from, and where.
  NewProjectBranch new_branch;
  if (project) {
    if (!project->model_id.empty() && project->model_id != model->id())
      throw Error(ErrorKind::model_mismatch,
                  "model " + model_path + " is not the model project " + *project_dir +
                      " was made with");
    const ProjectBranch* parent = project->find_branch(
        options.get("branch").value_or(std::to_string(project->active_branch)));
    if (parent == nullptr)
      usage_error("project " + *project_dir + " has no branch '" + *options.get("branch") + "'");
    const int64_t length = project->path_length(parent->id);
    const int64_t fork = options.has("from-block")
                             ? parse_int(*options.get("from-block"), "from-block", 0, kMaxFrames)
                             : length;
    if (fork > length)
      usage_error("--from-block " + std::to_string(fork) + " is beyond branch '" + parent->name +
                  "' (blocks 0 to " + std::to_string(length) + ")");
    try {
      // As the app continues a branch end: its re-cached memory if that still applies.
      std::optional<MemoryState> recached;
      if (fork == length && !parent->recached_end_key.empty()) {
        try {
          recached = load_project_snapshot(*project, parent->recached_end_key);
        } catch (const Error&) {
          // The app drops a lost re-cached end too and continues from the last block.
        }
      }
      if (recached && recached->next_block == fork && recached->prompt == parent->prompt) {
        start_state = std::move(recached);
      } else {
        start_state = load_project_snapshot(
            *project, fork == 0 ? "initial" : project->path_block(parent->id, fork - 1)->key);
      }
    } catch (const Error& e) {
      throw Error(e.kind(), "project " + *project_dir + ": cannot load the memory at block " +
                                std::to_string(fork) + " of '" + parent->name + "': " + e.what());
    }
    if (!seed) seed = parent->seed;
    if (!prompt && !options.has("schedule")) {
      prompt = fork == length && !parent->prompt.empty() ? parent->prompt : start_state->prompt;
      validate_prompt(*prompt, "the prompt of branch '" + parent->name + "'");
    }
    new_branch.parent_id = parent->id;
    new_branch.fork_block = fork;
    new_branch.name = branch_name.value_or("render " + std::to_string(project->next_branch_id));
  } else if (project_dir) {
    new_branch.name = branch_name.value_or("main");
  }

  // ---- 3. The plan: which blocks, which prompt from which block, where snapshots go. ----
  const int64_t start_block = start_state ? start_state->next_block : 0;
  if (start_block < 0 || start_block > kMaxFrames) {
    throw Error(ErrorKind::invalid_file,
                "snapshot " + *snapshot_in + " has an unusable block index");
  }
  const int64_t start_frame = start_block * frames_per_block;
  const int64_t block_count =
      (frame_count + frames_per_block - 1) / frames_per_block;  // whole blocks
  const int64_t end_frame = start_frame + block_count * frames_per_block;

  // block index -> prompt that takes effect at that block (after the first).
  std::map<int64_t, std::string> prompt_switches;
  if (!schedule.empty()) {
    if (schedule.front().frame != start_frame) {
      usage_error("schedule " + schedule_path + ": the first entry must be at frame " +
                  std::to_string(start_frame) +
                  (start_state ? " (where the snapshot continues)" : "") + ", not " +
                  std::to_string(schedule.front().frame));
    }
    for (size_t i = 1; i < schedule.size(); ++i) {
      const int64_t block = schedule[i].frame / frames_per_block;
      if (block == schedule[i - 1].frame / frames_per_block) {
        usage_error("schedule " + schedule_path + ": frames " +
                    std::to_string(schedule[i - 1].frame) + " and " +
                    std::to_string(schedule[i].frame) + " fall in the same block (" +
                    std::to_string(frames_per_block) +
                    " frames per block); a prompt applies from the block "
                    "containing its frame");
      }
      prompt_switches[block] = schedule[i].prompt;
    }
  }

  std::map<int64_t, std::string> snapshot_paths;  // frame -> file
  for (const auto& request : snapshot_requests) {
    if (request.frame % frames_per_block != 0) {
      usage_error("--save-snapshot-at " + std::to_string(request.frame) +
                  ": the frame must be a block boundary (" + "a multiple of " +
                  std::to_string(frames_per_block) + ")");
    }
    if (request.frame < start_frame || request.frame > end_frame) {
      usage_error("--save-snapshot-at " + std::to_string(request.frame) +
                  ": outside this render (frames " + std::to_string(start_frame) + " to " +
                  std::to_string(end_frame) + ")");
    }
    if (!snapshot_paths.emplace(request.frame, request.path).second) {
      usage_error("--save-snapshot-at " + std::to_string(request.frame) + " given twice");
    }
  }

  // ---- 4. Outputs must be writable before any work. ----
  if (stats_path) prepare_output_file(*stats_path, "--stats");
  for (const auto& [frame, path] : snapshot_paths) prepare_output_file(path, "--save-snapshot-at");

  SessionOptions session_options;
  session_options.seed = seed.value_or(0);
  session_options.recache_history = std::max(SessionOptions{}.recache_history, recache);
  apply_device(device, session_options);
  Session session(model, session_options);
  // A new project records the memory of a fresh session as its boundary 0, as the app does.
  std::optional<ProjectWriter> project_writer;
  if (project_dir) {
    if (extend_project) {
      project_writer.emplace(ProjectWriter::append_branch(*project_dir, new_branch));
    } else {
      ProjectWriter::NewProject info;
      info.model_path = model_path;
      info.model_id = model->id();
      info.frames_per_block = config.frames_per_block;
      info.fps = config.fps;
      info.initial_state = session.snapshot();
      new_branch.seed = seed.value_or(0);
      new_branch.prompt = !schedule.empty() ? schedule.front().prompt : prompt.value_or("");
      project_writer.emplace(ProjectWriter::create(*project_dir, std::move(info), new_branch));
    }
  }
  if (start_state) {
    session.restore(*start_state);
    if (seed) session.set_seed(*seed);  // a different seed branches from the snapshot
  }
  if (!schedule.empty()) {
    session.set_prompt(schedule.front().prompt);
  } else if (prompt) {
    session.set_prompt(*prompt);
  }

  // Installed before the .part output exists, so that Ctrl-C from here on always cleans up.
  InterruptGuard interrupt(session);
  if (sink) sink->begin(config.width, config.height, config.fps);  // creates the .part output

  // ---- 5. Generate. ----
  ProgressLine progress;
  int64_t current_block = 0;
  session.set_progress_callback(
      [&](int step, int steps) { progress.show(current_block + 1, block_count, step, steps); });

  std::map<int64_t, MemoryState> snapshots;  // frame -> state, written at the end
  nlohmann::json block_stats = nlohmann::json::array();
  BlockTimings totals;
  int64_t frames_written = 0;
  const auto wall_start = std::chrono::steady_clock::now();
  for (current_block = 0; current_block < block_count; ++current_block) {
    const int64_t block = start_block + current_block;
    if (const auto it = prompt_switches.find(block); it != prompt_switches.end()) {
      session.set_prompt(it->second, recache);
    }
    // Taken after the block's prompt switch, so that continuing from it reproduces this run.
    if (snapshot_paths.count(block * frames_per_block) != 0)
      snapshots[block * frames_per_block] = session.snapshot();

    const std::string block_prompt = session.prompt();
    BlockResult result = session.generate_next_block();
    for (const Frame& frame : result.frames) {
      if (frames_written < frame_count) {
        if (sink) sink->write(frame);
        ++frames_written;
      }
    }
    if (project_writer) {
      NewProjectBlock record;
      record.prompt = block_prompt;
      record.seed = session.seed();
      record.frames = std::move(result.frames);
      record.latents = std::move(result.latents);
      record.state_after = session.snapshot();
      project_writer->add_block(record);
    }
    const BlockTimings& t = result.timings;
    totals.denoise_ms += t.denoise_ms;
    totals.clean_ms += t.clean_ms;
    totals.decode_ms += t.decode_ms;
    totals.text_ms += t.text_ms;
    totals.recache_ms += t.recache_ms;
    totals.total_ms += t.total_ms;
    if (stats_path) {
      block_stats.push_back({{"block", result.block_index},
                             {"first_frame", result.block_index * frames_per_block},
                             {"prompt", session.prompt()},
                             {"ms", timings_to_json(t)},
                             {"memory_state_bytes", session.snapshot().size_bytes()}});
    }
  }
  if (snapshot_paths.count(end_frame) != 0) snapshots[end_frame] = session.snapshot();
  progress.close();
  if (interrupt.interrupted()) throw Error(ErrorKind::cancelled, "cancelled");
  const double wall_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - wall_start)
          .count();

  // ---- 6. Commit: snapshots, stats, then the video (its rename is the last step). ----
  RunOutputs committed;
  for (const auto& [frame, state] : snapshots) {
    save_snapshot(snapshot_paths.at(frame), state);
    committed.add(snapshot_paths.at(frame));
  }
  if (stats_path) {
    const int64_t frames_generated = block_count * frames_per_block;
    nlohmann::json stats = {
        {"model", {{"name", config.name}, {"id", model->id()}, {"path", model_path}}},
        {"seed", session.seed()},
        {"device", device.describe()},
        {"start_frame", start_frame},
        {"frames_per_block", frames_per_block},
        {"frames_requested", frame_count},
        {"frames_written", frames_written},
        {"frames_generated", frames_generated},
        {"blocks", block_stats},
        {"totals_ms", timings_to_json(totals)},
        {"wall_ms", wall_ms},
        // Engine throughput (generation, decoding included) and end-to-end (with output writing).
        {"frames_per_second",
         totals.total_ms > 0 ? frames_generated / (totals.total_ms / 1000.0) : 0.0},
        {"frames_per_second_wall", wall_ms > 0 ? frames_written / (wall_ms / 1000.0) : 0.0},
        {"peak_rss_bytes", peak_rss_bytes()},
        {"memory_state_bytes_fixed", model->fixed_state_bytes()},
        {"memory_state_bytes_per_block_growth", model->state_bytes_per_block()},
    };
    write_json_file(*stats_path, stats);
    committed.add(*stats_path);
  }
  if (interrupt.interrupted()) throw Error(ErrorKind::cancelled, "cancelled");
  if (sink) {
    sink->finish();
    committed.add(out_path);
  }
  // Last: the project's project.json names the new blocks only once everything else is done.
  if (project_writer) {
    project_writer->set_next(session.seed(), session.prompt());
    project_writer->commit();
  }
  committed.keep();

  std::cout << "wrote " << frames_written << " frames (" << block_count << " blocks, frames "
            << start_frame << " to " << start_frame + frames_written - 1 << ")"
            << (out_path.empty() ? "" : " to " + out_path) << "\n";
  if (project_writer) {
    const ProjectBranch& b = *project_writer->project().branch(project_writer->branch_id());
    std::cout << "project " << *project_dir << ": branch " << b.id << " '" << b.name << "'"
              << (b.parent_id > 0 ? " (from branch " + std::to_string(b.parent_id) + " at block " +
                                        std::to_string(b.fork_block) + ")"
                                  : "")
              << ", blocks " << b.fork_block << " to " << b.fork_block + int64_t(b.blocks.size()) - 1
              << "\n";
  }
  for (const auto& [frame, path] : snapshot_paths)
    std::cout << "snapshot at frame " << frame << ": " << path << "\n";
  if (stats_path) std::cout << "stats: " << *stats_path << "\n";
  return 0;
}

}  // namespace strand::cli
