// Strand projects without Qt: reads and extends the project folders the desktop app writes
// (app/desktop/project_file.h is the app's side; both must agree byte for byte on the formats).
//
//   project.json            {"format": "strand-project", "version": 1, "model": {"path", "id"},
//                           "frames_per_block", "initial_state", "next_branch_id",
//                           "active_branch", "prompt_history", "branches": [...], ...}
//   snapshots/initial.snap  memory at boundary 0
//   snapshots/<key>.snap    memory after each block (and a branch's re-cached end)
//   cache/<key>.blk         a block's frames (RGB8) in the block-cache format below
//   cache/<key>.lat         a block's clean latents, same format with 0 frames
//
// Block-cache format: "STRNBLK1", u32 LE header length, compact JSON header {"frames", "height",
// "latents", "width"}, payload (frames as packed RGB rows, then latents as float32 LE), SHA-256 of
// everything before it.
//
// A branch shares the first `fork_block` blocks of its parent's path and continues with its own
// blocks, numbered fork_block, fork_block + 1, ... "Path" means the blocks from the root to a
// branch's end; frame f of a path is frame f % frames_per_block of path block f / frames_per_block.
//
// Every file is written with strand::write_file_atomic (snapshots with save_snapshot, also
// atomic). A ProjectWriter writes the new blocks' files first and project.json last, so until
// commit() the project reads exactly as before; abort() (or destroying an uncommitted writer)
// removes the files it wrote. Unknown JSON fields anywhere are kept. Older project versions are
// migrated like the app does; newer ones can be read but not written.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "strand/memory_state.h"
#include "strand/session.h"  // Frame

namespace strand {

inline constexpr int kProjectFormatVersion = 1;

// One block of a branch (metadata only; frames are read on demand).
struct ProjectBlock {
  int64_t index = 0;   // block index on the path
  std::string key;     // names its files: snapshots/<key>.snap, cache/<key>.blk / .lat
  std::string prompt;  // prompt it was generated with
  uint64_t seed = 0;   // noise seed it was generated with
};

struct ProjectBranch {
  int id = 0;
  std::string name;
  int parent_id = -1;      // -1 for the root (id 1)
  int64_t fork_block = 0;  // shares blocks [0, fork_block) of the parent's path
  uint64_t seed = 0;       // seed of its next block
  std::string prompt;      // prompt of its next block
  int64_t in_frame = -1;   // the app's in/out marks on the path, inclusive (-1: unset)
  int64_t out_frame = -1;
  std::vector<ProjectBlock> blocks;  // own blocks
  std::string recached_end_key;      // snapshot key of a re-cached end, or ""
};

// A run of consecutive path blocks with the same prompt (the app's timeline bands, in order).
struct ProjectPromptSegment {
  int64_t first_block = 0;
  int64_t last_block = 0;  // inclusive
  std::string prompt;
  int branch_id = 0;  // branch owning the first block of the run
};

// A project's structure. Plain data: the app can fill one from its own model to reuse the export
// planner (strand/export_plan.h) without any file I/O.
struct Project {
  std::string folder;                   // "" when built in memory
  int version = kProjectFormatVersion;  // version of the file read (newer: read-only)
  std::string model_path;
  std::string model_id;
  int frames_per_block = 1;
  int fps = 0;  // "fps" field written by strand-cli (0: not recorded)
  int next_branch_id = 2;
  int active_branch = 1;
  std::vector<ProjectBranch> branches;  // ascending ids; the root has id 1

  [[nodiscard]] const ProjectBranch* branch(int id) const;
  // By id ("3") or by exact name; nullptr if none (or if a name matches several branches).
  [[nodiscard]] const ProjectBranch* find_branch(const std::string& id_or_name) const;
  [[nodiscard]] std::vector<int> children(int id) const;  // ascending
  [[nodiscard]] int64_t path_length(int id) const;        // blocks on the path of `id`
  [[nodiscard]] int64_t path_frames(int id) const { return path_length(id) * frames_per_block; }
  // The block at `block_index` on the path of `id`, nullptr if outside it.
  [[nodiscard]] const ProjectBlock* path_block(int id, int64_t block_index) const;
  // The branch that owns path block `block_index` of `id` (id itself or an ancestor); 0 if none.
  [[nodiscard]] int block_owner(int id, int64_t block_index) const;
  [[nodiscard]] std::vector<ProjectPromptSegment> prompt_segments(int id) const;
  // Empty when the structure is consistent (root, parents, fork points, contiguous indices,
  // active branch, in/out within the path), else what is wrong. read_project calls it.
  [[nodiscard]] std::string check() const;
};

// Reads `folder`/project.json (migrating older versions). Error(io) if unreadable,
// Error(invalid_file) if it is not a valid project (the message says what is wrong). Frames and
// snapshots are not read here.
[[nodiscard]] Project read_project(const std::string& folder);
// True when `folder`/project.json exists.
[[nodiscard]] bool is_project_folder(const std::string& folder);
// True when project.autosave.json is newer than project.json (the app would offer the autosave).
[[nodiscard]] bool project_has_newer_autosave(const std::string& folder);

// Block-cache files (exposed for tests and tools).
struct BlockCache {
  int width = 0;
  int height = 0;
  std::vector<Frame> frames;  // Frame::index counts from 0 within the file
  std::vector<float> latents;
};
[[nodiscard]] std::vector<uint8_t> encode_block_cache(const std::vector<Frame>& frames,
                                                      const std::vector<float>& latents);
// Error(invalid_file) for a bad magic, checksum, or sizes.
[[nodiscard]] BlockCache decode_block_cache(std::span<const uint8_t> bytes);

// Reads frames of project blocks: cache/<key>.blk, checked; when that file is missing or damaged
// and cache/<key>.lat is intact, the frames are decoded again from the latents with `decoder`
// (a Session of the project's model; see Session::decode_latents), without writing anything.
class ProjectFrameReader {
 public:
  // `decoder` is asked for a Session of the project's model the first time a block must be
  // decoded from latents (so a model is loaded only when needed). It may be empty or return null:
  // a damaged block is then Error(invalid_file) naming the block. `project` must outlive this.
  using DecoderProvider = std::function<Session*()>;
  explicit ProjectFrameReader(const Project& project, DecoderProvider decoder = {});
  // The frames_per_block frames of `block`, Frame::index = block.index * fpb + f.
  [[nodiscard]] std::vector<Frame> block_frames(const ProjectBlock& block);
  // Frame `path_frame` of the path of branch `branch_id` (keeps the last block read).
  [[nodiscard]] Frame path_frame(int branch_id, int64_t path_frame);
  // Blocks whose frames had to be decoded from latents so far.
  [[nodiscard]] int64_t blocks_decoded_from_latents() const { return decoded_; }

 private:
  const Project& project_;
  DecoderProvider decoder_;
  std::string cached_key_;
  std::vector<Frame> cached_frames_;
  int64_t decoded_ = 0;
};

// Loads snapshots/<key>.snap (or initial.snap for key "initial") checked against model_id.
[[nodiscard]] MemoryState load_project_snapshot(const Project& project, const std::string& key);

// One generated block to record.
struct NewProjectBlock {
  std::string prompt;          // prompt it was generated with
  uint64_t seed = 0;           // seed it was generated with
  std::vector<Frame> frames;   // frames_per_block frames, all of the same size
  std::vector<float> latents;  // BlockResult::latents (may be empty)
  MemoryState state_after;     // Session::snapshot() after the block (next_block = index + 1)
};

// What a new branch starts with. For a new project this is the root branch (parent -1, fork 0).
struct NewProjectBranch {
  std::string name = "main";
  int parent_id = -1;
  int64_t fork_block = 0;
  uint64_t seed = 0;   // seed of its next block (written as the branch's seed)
  std::string prompt;  // prompt of its next block
};

// Writes one new branch (and, for a new project, the project itself). Usage: create or
// append_branch, add_block * n, commit. Not thread-safe.
class ProjectWriter {
 public:
  struct NewProject {
    std::string model_path;  // written as model.path (made absolute)
    std::string model_id;
    int frames_per_block = 1;
    int fps = 0;                // recorded as "fps" (the app keeps unknown fields)
    MemoryState initial_state;  // memory of a fresh session: snapshots/initial.snap
  };
  // A new project in `folder`, which must not exist or be an empty folder (Error(invalid_argument)
  // otherwise). `root` becomes branch 1 (its parent / fork are ignored).
  static ProjectWriter create(const std::string& folder, NewProject project, NewProjectBranch root);
  // A new branch of an existing project. Error(invalid_argument) when the parent does not exist,
  // the fork block is outside its path, the name is blank, the project is newer than this build
  // or has a newer autosave (the app would open that instead and lose the branch).
  static ProjectWriter append_branch(const std::string& folder, NewProjectBranch branch);

  ProjectWriter(ProjectWriter&&) noexcept;
  ProjectWriter& operator=(ProjectWriter&&) = delete;
  ProjectWriter(const ProjectWriter&) = delete;
  ~ProjectWriter();  // aborts unless committed

  // The project as it will be after commit (the new branch included, its blocks so far).
  [[nodiscard]] const Project& project() const { return project_; }
  [[nodiscard]] int branch_id() const { return branch_id_; }
  // Index of the next block this branch expects.
  [[nodiscard]] int64_t next_block_index() const;
  // Writes the block's snapshot and cache files at once. Error(invalid_argument) for a wrong frame
  // count, sizes, or a state that does not follow the previous block; Error(io) on write errors.
  void add_block(const NewProjectBlock& block);
  // Sets the branch's seed / prompt for its next block (what the app continues with).
  void set_next(uint64_t seed, const std::string& prompt);
  // Writes project.json (the previous one kept as project.json.bak, like the app's save).
  void commit();
  // Removes every file this writer wrote (and the project folder if create() made it). Never
  // throws.
  void abort() noexcept;

 private:
  ProjectWriter() = default;
  std::string folder_;
  std::string json_text_;  // project.json as read (append) or "" (create)
  bool created_folder_ = false;
  bool committed_ = false;
  bool active_ = false;
  Project project_;
  int branch_id_ = 0;
  std::vector<std::string> written_;  // files to remove on abort
  std::vector<std::string> made_dirs_;
  std::optional<std::vector<uint8_t>> previous_backup_;  // project.json.bak before commit()
  bool wrote_project_json_ = false;
};

}  // namespace strand
