// ProjectModel: the document of the desktop app (no widgets). A project is a tree of branches; each
// branch is a video that shares the first `fork_block` blocks of its parent's path and continues
// with blocks of its own, generated with its own seed and prompts.
//
// Blocks are immutable once recorded: a block holds its frames (the frame cache the timeline
// paints from), its clean latents and the memory snapshot at the boundary after it, so "branch
// from boundary k" needs nothing but the stored snapshot, and generating on one branch can never
// change another branch's blocks.
//
// Edits follow Kdenlive's pattern: the GUI calls requestX(), which returns false and changes
// nothing when the edit is not allowed, or pushes one QUndoCommand onto undoStack() and returns
// true. Every edit is undoable (prompt, seed, create/delete/rename branch, in/out). Recording a
// generated block (appendBlock) is not an edit: it is the engine's output and is not undone, but
// undoing the creation or deletion of a branch keeps or restores that branch's blocks exactly.
// Branch ids are never reused within a project, so undo/redo can refer to branches by id.
#pragma once
#include <QImage>
#include <QJsonObject>
#include <QList>
#include <QObject>
#include <QString>
#include <QStringList>
#include <QUndoStack>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "strand/memory_state.h"

namespace strand::desktop {

using SnapshotPtr = std::shared_ptr<const strand::MemoryState>;

// One generated block of a branch.
struct BlockRecord {
  qint64 index = 0;             // block index in the video (the path from the root)
  QString key;                  // unique id of the record: names its files in a project folder
  QString prompt;               // prompt it was generated with
  quint64 seed = 0;             // noise seed it was generated with
  QList<QImage> frames;         // decoded frames (RGB888), frames_per_block of them
  std::vector<float> latents;   // clean latents x0 [F, C, h, w] (BlockResult::latents)
  SnapshotPtr state_after;      // memory at the boundary after this block (never null)
  QJsonObject extra;            // unknown JSON fields read from a project file, written back
  // Frame-cache repair (set by loadProject). frames_missing: `frames` are grey placeholders
  // because the block's frame cache file was damaged or missing; they are rebuilt from `latents`
  // (EngineWorker::decodeLatents) when those survived. cache_file_stale: the frame cache file on
  // disk is not this block's frames, so the next save must rewrite it even though it exists.
  bool frames_missing = false;
  bool cache_file_stale = false;
};

struct Branch {
  int id = 0;
  QString name;
  int parent_id = -1;           // -1 for the root
  qint64 fork_block = 0;        // shares blocks [0, fork_block) of the parent's path
  quint64 seed = 0;             // noise seed of its own blocks
  QString prompt;               // prompt for its next block
  qint64 in_frame = -1;         // in/out range on the branch's path (-1: unset)
  qint64 out_frame = -1;
  std::vector<BlockRecord> blocks;  // own blocks: indices fork_block, fork_block + 1, ...
  QJsonObject extra;            // unknown JSON fields, written back on save
  // A prompt change applied with re-cache replays past blocks under the new prompt, so the memory
  // at the branch end is no longer the last block's state_after. It is kept here (with a key that
  // names its snapshot file) so that moving the engine back to this branch continues from it. Used
  // only while it is still at the branch end and its prompt is the branch's prompt (an undone
  // prompt edit falls back to the plain end; redo uses it again). See endState().
  SnapshotPtr recached_end;
  QString recached_key;
};

// A run of consecutive blocks with the same prompt on a branch's path (timeline bands).
struct PromptSegment {
  qint64 first_block = 0;
  qint64 last_block = 0;        // inclusive
  QString prompt;
  int branch_id = 0;            // branch owning the first block of the run
};

class ProjectModel : public QObject {
  Q_OBJECT

 public:
  static constexpr int kRootId = 1;

  explicit ProjectModel(QObject* parent = nullptr);
  ~ProjectModel() override;

  // Starts an empty project: one root branch "main" at boundary 0 with `initial_state` (the
  // memory of a fresh session; may be null until a model is loaded). Clears the undo stack.
  void reset(SnapshotPtr initial_state, int frames_per_block, quint64 seed,
             const QString& prompt = {});
  void setInitialState(SnapshotPtr initial_state) { initial_state_ = std::move(initial_state); }
  void setFramesPerBlock(int frames_per_block) { frames_per_block_ = frames_per_block; }

  // --- Edits (undoable). false: refused, nothing changed. ---
  // Creates a branch of `parent_id` at boundary `fork_block` (0 <= fork_block <= pathLength).
  bool requestCreateBranch(int parent_id, qint64 fork_block, const QString& name, quint64 seed,
                           const QString& prompt, int* new_id = nullptr);
  // Deletes the branch and its sub-branches (not the root).
  bool requestDeleteBranch(int id);
  bool requestRenameBranch(int id, const QString& name);  // non-blank name
  bool requestSetPrompt(int id, const QString& prompt);   // prompt for the branch's next block
  bool requestSetSeed(int id, quint64 seed);
  // -1 clears a side; otherwise 0 <= in <= out < pathFrames(id).
  bool requestSetInOut(int id, qint64 in_frame, qint64 out_frame);

  // --- Engine output (not undoable). ---
  // Appends a generated block to `id`. Refused unless block.index == pathLength(id), it has
  // frames_per_block frames and a snapshot. Returns false when refused.
  bool appendBlock(int id, BlockRecord block);
  // Puts regenerated frames (decoded from the block's stored latents) in place of the
  // placeholders of the block with `key`, and clears its frames_missing. Refused (false) for an
  // unknown key, a block whose frames are not missing, or a wrong frame count. Not undoable: the
  // frames are what the block always was, only the cache is repaired.
  bool restoreBlockFrames(const QString& key, const QList<QImage>& frames);
  // Records the memory after a re-cached prompt change at the end of branch `id` (engine output,
  // not undoable). Refused unless state->next_block == pathLength(id). A later block replaces it.
  bool setRecachedEnd(int id, SnapshotPtr state, QString key = {});
  // The memory the engine continues from at the end of `id`: the re-cached state when it applies
  // (see Branch::recached_end), else snapshotAtBoundary(id, pathLength(id)).
  [[nodiscard]] SnapshotPtr endState(int id) const;
  // Keys of the blocks whose frames are placeholders but whose latents are present (what can be
  // regenerated), in branch then block order.
  [[nodiscard]] QStringList blocksToRegenerate() const;
  [[nodiscard]] const BlockRecord* blockByKey(const QString& key) const;

  // Selection (not an edit): the branch the timeline shows and generation continues.
  bool setActiveBranch(int id);
  [[nodiscard]] int activeBranch() const { return active_id_; }

  // --- Queries ---
  [[nodiscard]] QList<int> branchIds() const;  // ascending
  [[nodiscard]] const Branch* branch(int id) const;
  [[nodiscard]] QList<int> children(int id) const;
  [[nodiscard]] qint64 pathLength(int id) const;  // blocks on the path from the root
  [[nodiscard]] qint64 pathFrames(int id) const { return pathLength(id) * frames_per_block_; }
  // The block at `block_index` on the path of `id` (nullptr if out of range).
  [[nodiscard]] const BlockRecord* pathBlock(int id, qint64 block_index) const;
  // Memory at boundary k of the path (0: the initial state). Null if out of range or unknown.
  [[nodiscard]] SnapshotPtr snapshotAtBoundary(int id, qint64 boundary) const;
  [[nodiscard]] QImage frame(int id, qint64 frame_index) const;  // null if not generated
  [[nodiscard]] QList<PromptSegment> promptSegments(int id) const;
  [[nodiscard]] int framesPerBlock() const { return frames_per_block_; }
  [[nodiscard]] SnapshotPtr initialState() const { return initial_state_; }
  [[nodiscard]] int nextBranchId() const { return next_id_; }

  // Checks every structural invariant (ids, parents, fork points, contiguous block indices,
  // snapshots present and at the right block, active branch exists). Empty string when
  // consistent, else what is wrong. Used by tests after every step.
  [[nodiscard]] QString checkInvariants() const;

  QUndoStack* undoStack() { return &undo_stack_; }

  // Prompts the user applied, most recent first, without duplicates (at most 30).
  [[nodiscard]] const QStringList& promptHistory() const { return prompt_history_; }
  void addToPromptHistory(const QString& prompt);

  // A fresh random key for a new BlockRecord (16 hex digits).
  static QString newBlockKey();

  // Counts changes not tracked by the undo stack (appended blocks), for "modified" state.
  [[nodiscard]] quint64 contentRevision() const { return content_revision_; }

  // --- Used by project I/O (project_file.cpp) to build a model from disk. ---
  void loadState(std::map<int, Branch> branches, int next_id, int active_id,
                 SnapshotPtr initial_state, int frames_per_block, QStringList prompt_history);
  [[nodiscard]] const std::map<int, Branch>& branches() const { return branches_; }

 signals:
  void branchesChanged();                  // a branch was added, removed or renamed
  void branchContentChanged(int id);       // blocks, prompt, seed or in/out of `id` changed
  void activeBranchChanged(int id);
  void projectReset();

 private:
  // Primitive mutations used by the undo commands (no checks, no undo entries).
  void insertSubtree(std::vector<Branch> subtree);    // parents first
  std::vector<Branch> removeSubtree(int id);          // returns parents first
  Branch* mutableBranch(int id);
  void touch(int id);

  std::map<int, Branch> branches_;
  int next_id_ = kRootId + 1;
  int active_id_ = kRootId;
  int frames_per_block_ = 1;
  SnapshotPtr initial_state_;
  QUndoStack undo_stack_;
  QStringList prompt_history_;
  quint64 content_revision_ = 0;
};

}  // namespace strand::desktop
