// `strand-cli export`: edit-ready media (and a timeline) from a Strand project folder.
//
//   strand-cli export --list-presets
//   strand-cli export --project P --list
//   strand-cli export --project P [--branch B] [--in F] [--out F] [--segments i,j]
//                     [--all-branches] --preset NAME --out PATH [--timeline otio|fcpxml|edl]
//                     [--fps native|23.976|24|25|30] [--size WxH] [--model M]
//
// `--out` is both the output path and, next to `--in`, the out frame: with --in, an all-digit
// --out is the out frame (`--out-frame F` says it explicitly; write an all-digit path as ./123).
// The project is only read: an export never changes a byte of it. Everything is checked before the
// first frame is read; the media are written through .part names; on any error or Ctrl-C every
// output of the run is removed (an --all-branches folder is built as PATH.part/ and renamed at the
// very end).
#include "strand/export.h"

#include <filesystem>
#include <iostream>
#include <optional>

#include "cli.h"
#include "strand/error.h"
#include "strand/export_plan.h"
#include "strand/project.h"

namespace strand::cli {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void usage_error(const std::string& message) {
  throw Error(ErrorKind::invalid_argument, message);
}

bool all_digits(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
}

std::string absolute_normal(const std::string& path) {
  std::error_code ec;
  const fs::path absolute = fs::absolute(path, ec);
  return (ec ? fs::path(path) : absolute).lexically_normal().string();
}

// True when `path` is `folder` or lies inside it (after normalising both).
bool is_inside(const std::string& path, const std::string& folder) {
  std::string p = absolute_normal(path), f = absolute_normal(folder);
  while (f.size() > 1 && f.back() == '/') f.pop_back();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p == f || p.starts_with(f + "/");
}

std::pair<int, int> parse_size(const std::string& text) {
  const size_t x = text.find('x');
  if (x == std::string::npos)
    usage_error("--size expects WxH (e.g. 1920x1080), got '" + text + "'");
  const int w = static_cast<int>(parse_int(text.substr(0, x), "size", 16, 8192));
  const int h = static_cast<int>(parse_int(text.substr(x + 1), "size", 16, 8192));
  return {w, h};
}

int list_presets() {
  for (const ExportPresetInfo& p : strand::list_presets()) {
    std::cout << p.name << "\t" << p.description << "\n"
              << "\tcodec " << p.codec << (p.profile.empty() ? "" : " (profile " + p.profile + ")")
              << ", pixel format " << p.pixel_format << ", "
              << (p.sequence ? "image sequence DIR/frame_000000" + p.extension
                             : p.container + " file (" + p.extension + ")")
              << (p.even_size ? ", even size" : "")
              << (p.min_width > 1 ? ", at least " + std::to_string(p.min_width) + "x" +
                                        std::to_string(p.min_height)
                                  : "")
              << (p.available ? "" : ", NOT AVAILABLE in this build") << "\n";
  }
  return 0;
}

int list_project(const Project& project) {
  std::cout << "project " << project.folder << ": model " << project.model_path << " ("
            << project.model_id << "), " << project.frames_per_block << " frames per block"
            << (project.fps > 0 ? ", " + std::to_string(project.fps) + " fps" : "") << "\n";
  for (const ProjectBranch& b : project.branches) {
    std::cout << "branch " << b.id << " '" << b.name << "'"
              << (b.id == project.active_branch ? " (active)" : "") << ": "
              << project.path_frames(b.id) << " frames";
    if (b.parent_id != -1)
      std::cout << ", forks from branch " << b.parent_id << " at block " << b.fork_block;
    if (b.in_frame >= 0 || b.out_frame >= 0)
      std::cout << ", in/out " << b.in_frame << "/" << b.out_frame;
    std::cout << "\n";
    const auto segments = project.prompt_segments(b.id);
    for (size_t i = 0; i < segments.size(); ++i) {
      const auto& s = segments[i];
      std::cout << "  segment " << i << ": frames " << s.first_block * project.frames_per_block
                << "-" << (s.last_block + 1) * project.frames_per_block - 1 << " \"" << s.prompt
                << "\"\n";
    }
  }
  return 0;
}

}  // namespace

int run_export(std::span<const std::string> args) {
  const Options options(args, {{"project"},
                               {"branch"},
                               {"in"},
                               {"out", true, true},
                               {"out-frame"},
                               {"segments"},
                               {"all-branches", false},
                               {"preset"},
                               {"timeline"},
                               {"fps"},
                               {"size"},
                               {"model"},
                               {"list", false},
                               {"list-presets", false}});
  if (options.has("list-presets")) {
    if (args.size() != 1) usage_error("--list-presets takes no other option");
    return list_presets();
  }

  // ---- 1. Options on their own. ----
  if (!options.has("project")) usage_error("export needs --project DIR (a Strand project folder)");
  const std::string project_folder = *options.get("project");
  if (project_folder.empty()) usage_error("--project needs a folder");

  std::optional<std::string> out_path;
  std::optional<int64_t> out_frame;
  constexpr int64_t kMaxFrame = 1'000'000'000'000;
  if (options.has("out-frame"))
    out_frame = parse_int(*options.get("out-frame"), "out-frame", 0, kMaxFrame);
  for (const std::string& value : options.all("out")) {
    // With --in, an all-digit --out is the out frame (the "--in F --out F" form).
    if (options.has("in") && !out_frame && all_digits(value)) {
      out_frame = parse_int(value, "out", 0, kMaxFrame);
    } else if (!out_path) {
      out_path = value;
    } else {
      usage_error(
          "--out given twice (a second --out is the out frame only next to --in; or use "
          "--out-frame F)");
    }
  }
  if (options.has("list")) {
    return list_project(read_project(project_folder));
  }
  if (!out_path) usage_error("export needs --out PATH (a file, or a folder for image sequences)");
  if (out_path->empty()) usage_error("--out needs a path");
  if (!options.has("preset"))
    usage_error("export needs --preset NAME (strand-cli export --list-presets lists them)");
  ExportSettings settings;
  settings.preset = *options.get("preset");
  ExportPresetInfo preset;
  try {
    preset = find_preset(settings.preset);
  } catch (const Error&) {
    usage_error("unknown preset '" + settings.preset +
                "' (strand-cli export --list-presets lists them)");
  }
  if (!preset.available)
    throw Error(ErrorKind::unsupported, "preset '" + preset.name + "' needs FFmpeg's " +
                                            preset.codec +
                                            " encoder, which this build does not have");
  if (options.has("fps")) {
    try {
      settings.target_rate = parse_frame_rate(*options.get("fps"));
    } catch (const Error& e) {
      usage_error("--fps expects native, 23.976, 24, 25 or 30, got '" + *options.get("fps") + "'");
    }
  }
  if (options.has("size"))
    std::tie(settings.width, settings.height) = parse_size(*options.get("size"));
  std::optional<std::string> timeline_format = options.get("timeline");
  if (timeline_format && *timeline_format != "otio" && *timeline_format != "fcpxml" &&
      *timeline_format != "edl")
    usage_error("--timeline expects otio, fcpxml or edl, got '" + *timeline_format + "'");

  const bool all_branches = options.has("all-branches");
  const bool has_range = options.has("in") || out_frame.has_value();
  if (all_branches && (options.has("branch") || has_range || options.has("segments")))
    usage_error(
        "--all-branches exports every whole branch: it takes no --branch, --in/--out or "
        "--segments");
  if (options.has("segments") && has_range) usage_error("give --segments or --in/--out, not both");

  // ---- 2. The project and the plan. ----
  if (is_inside(*out_path, project_folder) || is_inside(project_folder, *out_path))
    usage_error("--out " + *out_path +
                " is inside the project folder (an export never writes "
                "into the project)");
  if (!fs::is_directory(project_folder) || !is_project_folder(project_folder))
    throw Error(ErrorKind::io,
                project_folder + " is not a Strand project folder (no project.json)");
  const Project project = read_project(project_folder);

  ExportSelection selection;
  if (options.has("branch")) {
    const ProjectBranch* branch = project.find_branch(*options.get("branch"));
    if (branch == nullptr)
      usage_error("the project has no branch '" + *options.get("branch") +
                  "' (give an id or a unique name; strand-cli export --project P --list)");
    selection.branch_id = branch->id;
  }
  if (all_branches) {
    selection.scope = ExportScope::all_branches;
  } else if (options.has("segments")) {
    selection.scope = ExportScope::segments;
    selection.segments = parse_segment_list(*options.get("segments"));
  } else if (has_range) {
    selection.scope = ExportScope::in_out;
    if (options.has("in")) selection.in_frame = parse_int(*options.get("in"), "in", 0, kMaxFrame);
    if (out_frame) selection.out_frame = *out_frame;
  }
  const ExportPlan plan = plan_export(project, selection);

  // The native rate: recorded by strand-cli projects, else the model's.
  std::shared_ptr<const Model> model;
  const std::string model_path = options.get("model").value_or(project.model_path);
  const auto load_project_model = [&] {
    if (!model) {
      if (model_path.empty())
        throw Error(ErrorKind::invalid_file, "the project names no model file: pass --model");
      model = load_model(model_path);
      if (!project.model_id.empty() && model->id() != project.model_id)
        throw Error(ErrorKind::model_mismatch,
                    "model " + model_path + " is not the model this project was made with");
    }
    return model;
  };
  const int fps = project.fps > 0 ? project.fps : load_project_model()->config().fps;
  const FrameRate source_rate{fps, 1};

  // ---- 3. Output paths. ----
  std::vector<std::string> item_paths;   // where each item is written now
  std::vector<std::string> final_paths;  // where it will be after the run (timeline media)
  std::string timeline_path;
  std::string folder_part;  // --all-branches: PATH.part/, renamed to PATH at the end
  const std::string ext = preset.sequence ? "" : preset.extension;
  if (all_branches) {
    std::error_code ec;
    if (fs::exists(*out_path, ec) &&
        (!fs::is_directory(*out_path, ec) || !fs::is_empty(*out_path, ec)))
      throw Error(ErrorKind::io, "--out " + *out_path + " exists and is not an empty folder");
    folder_part = absolute_normal(*out_path) + ".part";
    if (fs::exists(fs::symlink_status(folder_part, ec)))
      throw Error(ErrorKind::io,
                  folder_part + " exists (left by an interrupted export?): remove it");
    for (const ExportItem& item : plan.items) {
      item_paths.push_back((fs::path(folder_part) / (item.file_stem + ext)).string());
      final_paths.push_back(
          (fs::path(absolute_normal(*out_path)) / (item.file_stem + ext)).string());
    }
    if (timeline_format)
      timeline_path =
          (fs::path(folder_part) / (file_stem_for(plan.name) + "." + *timeline_format)).string();
  } else {
    item_paths.push_back(*out_path);
    final_paths.push_back(absolute_normal(*out_path));
    if (timeline_format)
      timeline_path = timeline_path_for(*out_path, preset.sequence, *timeline_format);
    if (!preset.sequence) prepare_output_file(*out_path, "--out");
  }

  // ---- 4. Export. ----
  std::atomic<bool> cancel{false};
  InterruptGuard interrupt([&cancel] { cancel.store(true); });
  RunOutputs outputs;
  if (all_branches) {
    std::error_code ec;
    fs::create_directories(folder_part, ec);
    if (ec) throw Error(ErrorKind::io, "cannot create " + folder_part + ": " + ec.message());
    outputs.add(folder_part);
  }
  std::unique_ptr<Session> decoder;
  ProjectFrameReader reader(project, [&]() -> Session* {
    if (!decoder) decoder = std::make_unique<Session>(load_project_model(), SessionOptions{});
    return decoder.get();
  });
  const ExportFrameSource source = [&](int branch_id, int64_t path_frame) {
    return reader.path_frame(branch_id, path_frame);
  };
  ExportedMedia media;  // the last item's (all items share size and rate)
  int64_t output_frames = 0;
  for (size_t i = 0; i < plan.items.size(); ++i) {
    media = export_item(plan.items[i], source, source_rate, item_paths[i], settings,
                        ExportControl{&cancel, {}});
    if (!all_branches) {
      outputs.add(item_paths[i]);
      outputs.add(sidecar_path(item_paths[i], preset.sequence));
    }
    output_frames += media.frames;
  }
  const FrameRate output_rate = media.rate;
  const int width = media.width, height = media.height;
  if (timeline_format) {
    write_timeline(timeline_path, *timeline_format,
                   plan_timeline(plan, final_paths, source_rate, output_rate, width, height));
    if (!all_branches) outputs.add(timeline_path);
  }
  if (cancel.load()) throw Error(ErrorKind::cancelled, "cancelled");
  if (all_branches) {
    std::error_code ec;
    if (fs::exists(*out_path, ec)) fs::remove(*out_path, ec);  // an empty folder (checked above)
    fs::rename(folder_part, absolute_normal(*out_path), ec);
    if (ec)
      throw Error(ErrorKind::io,
                  "cannot rename " + folder_part + " to " + *out_path + ": " + ec.message());
  }
  outputs.keep();

  std::cout << "exported " << plan.items.size() << (plan.items.size() == 1 ? " file" : " files")
            << " (" << output_frames << " frames at " << output_rate.num
            << (output_rate.den != 1 ? "/" + std::to_string(output_rate.den) : "") << " fps, "
            << width << "x" << height << ", preset " << preset.name << ") to " << *out_path << "\n";
  if (timeline_format)
    std::cout << "timeline: "
              << (all_branches ? (fs::path(*out_path) / fs::path(timeline_path).filename()).string()
                               : timeline_path)
              << "\n";
  if (reader.blocks_decoded_from_latents() > 0)
    std::cout << reader.blocks_decoded_from_latents()
              << " damaged block(s) were decoded again from their stored latents\n";
  return 0;
}

}  // namespace strand::cli
