#include "project_model.h"

#include <QRandomGenerator>
#include <QSet>
#include <QUndoCommand>
#include <algorithm>
#include <functional>
#include <utility>

namespace strand::desktop {

namespace {

constexpr int kPromptHistoryLimit = 30;

// An undo step made of two closures (Kdenlive's undo/redo lambda pair).
class LambdaCommand : public QUndoCommand {
 public:
  LambdaCommand(const QString& text, std::function<void()> redo, std::function<void()> undo)
      : QUndoCommand(text), redo_(std::move(redo)), undo_(std::move(undo)) {}
  void redo() override { redo_(); }
  void undo() override { undo_(); }

 private:
  std::function<void()> redo_;
  std::function<void()> undo_;
};

bool isBlank(const QString& text) { return text.trimmed().isEmpty(); }

}  // namespace

ProjectModel::ProjectModel(QObject* parent) : QObject(parent) {
  undo_stack_.setUndoLimit(0);  // unlimited: edits are small (blocks live in shared records)
}

ProjectModel::~ProjectModel() = default;

void ProjectModel::reset(SnapshotPtr initial_state, int frames_per_block, quint64 seed,
                         const QString& prompt) {
  undo_stack_.clear();
  branches_.clear();
  Branch root;
  root.id = kRootId;
  root.name = tr("main");
  root.seed = seed;
  root.prompt = prompt;
  branches_.emplace(root.id, std::move(root));
  next_id_ = kRootId + 1;
  active_id_ = kRootId;
  frames_per_block_ = std::max(frames_per_block, 1);
  initial_state_ = std::move(initial_state);
  prompt_history_.clear();
  ++content_revision_;
  emit projectReset();
  emit branchesChanged();
  emit activeBranchChanged(active_id_);
}

void ProjectModel::loadState(std::map<int, Branch> branches, int next_id, int active_id,
                             SnapshotPtr initial_state, int frames_per_block,
                             QStringList prompt_history) {
  undo_stack_.clear();
  branches_ = std::move(branches);
  next_id_ = next_id;
  active_id_ = branches_.count(active_id) ? active_id : kRootId;
  initial_state_ = std::move(initial_state);
  frames_per_block_ = std::max(frames_per_block, 1);
  prompt_history_ = std::move(prompt_history);
  ++content_revision_;
  emit projectReset();
  emit branchesChanged();
  emit activeBranchChanged(active_id_);
}

// ---------------------------------------------------------------------------------------------
// Queries

QList<int> ProjectModel::branchIds() const {
  QList<int> ids;
  for (const auto& entry : branches_) ids << entry.first;
  return ids;
}

const Branch* ProjectModel::branch(int id) const {
  const auto it = branches_.find(id);
  return it == branches_.end() ? nullptr : &it->second;
}

Branch* ProjectModel::mutableBranch(int id) {
  const auto it = branches_.find(id);
  return it == branches_.end() ? nullptr : &it->second;
}

QList<int> ProjectModel::children(int id) const {
  QList<int> ids;
  for (const auto& [child_id, b] : branches_) {
    if (b.parent_id == id) ids << child_id;
  }
  return ids;
}

qint64 ProjectModel::pathLength(int id) const {
  const Branch* b = branch(id);
  if (b == nullptr) return 0;
  return b->fork_block + static_cast<qint64>(b->blocks.size());
}

const BlockRecord* ProjectModel::pathBlock(int id, qint64 block_index) const {
  // Walk up: a block before the fork point belongs to the parent's path (which may itself be
  // forked further up). Depth is the branch nesting, small in practice.
  const Branch* b = branch(id);
  while (b != nullptr) {
    if (block_index < 0) return nullptr;
    if (block_index >= b->fork_block) {
      const qint64 local = block_index - b->fork_block;
      if (local >= static_cast<qint64>(b->blocks.size())) return nullptr;
      return &b->blocks[static_cast<size_t>(local)];
    }
    b = branch(b->parent_id);
  }
  return nullptr;
}

SnapshotPtr ProjectModel::snapshotAtBoundary(int id, qint64 boundary) const {
  if (boundary == 0) return branch(id) != nullptr ? initial_state_ : nullptr;
  const BlockRecord* block = pathBlock(id, boundary - 1);
  return block != nullptr ? block->state_after : nullptr;
}

QImage ProjectModel::frame(int id, qint64 frame_index) const {
  if (frame_index < 0) return {};
  const BlockRecord* block = pathBlock(id, frame_index / frames_per_block_);
  if (block == nullptr) return {};
  const auto local = static_cast<qsizetype>(frame_index % frames_per_block_);
  return local < block->frames.size() ? block->frames[local] : QImage();
}

QList<PromptSegment> ProjectModel::promptSegments(int id) const {
  QList<PromptSegment> segments;
  const qint64 length = pathLength(id);
  // Owner of each block: walk the path once from the branch up, then emit in block order.
  for (qint64 k = 0; k < length; ++k) {
    const BlockRecord* block = pathBlock(id, k);
    if (block == nullptr) break;
    if (!segments.isEmpty() && segments.back().prompt == block->prompt &&
        segments.back().last_block == k - 1) {
      segments.back().last_block = k;
      continue;
    }
    int owner = id;
    for (const Branch* b = branch(id); b != nullptr; b = branch(b->parent_id)) {
      owner = b->id;
      if (k >= b->fork_block) break;
    }
    segments.push_back({k, k, block->prompt, owner});
  }
  return segments;
}

QString ProjectModel::checkInvariants() const {
  if (branches_.count(kRootId) == 0) return QStringLiteral("the root branch is missing");
  if (branches_.count(active_id_) == 0) return QStringLiteral("active branch %1 missing").arg(active_id_);
  for (const auto& [id, b] : branches_) {
    if (b.id != id) return QStringLiteral("branch %1 stored under id %2").arg(b.id).arg(id);
    if (id >= next_id_) return QStringLiteral("branch id %1 >= next id %2").arg(id).arg(next_id_);
    if (isBlank(b.name)) return QStringLiteral("branch %1 has no name").arg(id);
    if (id == kRootId) {
      if (b.parent_id != -1 || b.fork_block != 0) return QStringLiteral("root has a parent");
    } else {
      const Branch* parent = branch(b.parent_id);
      if (parent == nullptr) return QStringLiteral("branch %1: parent %2 missing").arg(id).arg(b.parent_id);
      if (b.parent_id >= id) return QStringLiteral("branch %1: parent is younger").arg(id);
      if (b.fork_block < 0 || b.fork_block > pathLength(b.parent_id))
        return QStringLiteral("branch %1: fork block %2 beyond parent path").arg(id).arg(b.fork_block);
    }
    for (size_t i = 0; i < b.blocks.size(); ++i) {
      const BlockRecord& block = b.blocks[i];
      const qint64 expected = b.fork_block + static_cast<qint64>(i);
      if (block.index != expected)
        return QStringLiteral("branch %1: block %2 stored as %3").arg(id).arg(expected).arg(block.index);
      if (!block.state_after || block.state_after->next_block != expected + 1)
        return QStringLiteral("branch %1: block %2 snapshot missing or misplaced").arg(id).arg(expected);
      if (block.frames.size() != frames_per_block_)
        return QStringLiteral("branch %1: block %2 has %3 frames").arg(id).arg(expected).arg(block.frames.size());
    }
    const qint64 frames = pathFrames(id);
    if (b.in_frame >= frames || b.out_frame >= frames ||
        (b.in_frame >= 0 && b.out_frame >= 0 && b.in_frame > b.out_frame))
      return QStringLiteral("branch %1: in/out %2/%3 outside 0..%4").arg(id).arg(b.in_frame).arg(b.out_frame).arg(frames);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Primitive mutations

void ProjectModel::touch(int id) {
  ++content_revision_;
  emit branchContentChanged(id);
}

void ProjectModel::insertSubtree(std::vector<Branch> subtree) {
  for (Branch& b : subtree) {
    const int id = b.id;
    branches_[id] = std::move(b);
  }
  emit branchesChanged();
}

std::vector<Branch> ProjectModel::removeSubtree(int id) {
  // Collect the subtree breadth-first, so parents come before their children.
  std::vector<int> order{id};
  for (size_t i = 0; i < order.size(); ++i) {
    for (int child : children(order[i])) order.push_back(child);
  }
  std::vector<Branch> removed;
  removed.reserve(order.size());
  for (int branch_id : order) {
    auto node = branches_.extract(branch_id);
    removed.push_back(std::move(node.mapped()));
  }
  emit branchesChanged();
  return removed;
}

// ---------------------------------------------------------------------------------------------
// Edits

bool ProjectModel::requestCreateBranch(int parent_id, qint64 fork_block, const QString& name,
                                       quint64 seed, const QString& prompt, int* new_id) {
  if (branch(parent_id) == nullptr || isBlank(name)) return false;
  if (fork_block < 0 || fork_block > pathLength(parent_id)) return false;
  Branch created;
  created.id = next_id_++;  // never reused, even if this creation is undone
  created.name = name.trimmed();
  created.parent_id = parent_id;
  created.fork_block = fork_block;
  created.seed = seed;
  created.prompt = prompt;
  const int id = created.id;
  // Holds the branch while it is not in the project (before redo, after undo), with any blocks
  // generated on it in between, so redo restores it exactly.
  auto parked = std::make_shared<std::vector<Branch>>();
  parked->push_back(std::move(created));
  const int previous_active = active_id_;
  undo_stack_.push(new LambdaCommand(
      tr("Create branch \"%1\"").arg(name.trimmed()),
      [this, parked] { insertSubtree(std::exchange(*parked, {})); },
      [this, parked, id, previous_active] {
        *parked = removeSubtree(id);
        if (branch(active_id_) == nullptr) setActiveBranch(branch(previous_active) ? previous_active : kRootId);
      }));
  if (new_id != nullptr) *new_id = id;
  return true;
}

bool ProjectModel::requestDeleteBranch(int id) {
  const Branch* b = branch(id);
  if (b == nullptr || id == kRootId) return false;
  const int parent_id = b->parent_id;
  auto parked = std::make_shared<std::vector<Branch>>();
  auto active_before = std::make_shared<int>(active_id_);
  undo_stack_.push(new LambdaCommand(
      tr("Delete branch \"%1\"").arg(b->name),
      [this, parked, id, parent_id, active_before] {
        *active_before = active_id_;
        *parked = removeSubtree(id);
        if (branch(active_id_) == nullptr) setActiveBranch(parent_id);
      },
      [this, parked, active_before] {
        insertSubtree(std::exchange(*parked, {}));
        if (*active_before != active_id_ && branch(*active_before) != nullptr) setActiveBranch(*active_before);
      }));
  return true;
}

bool ProjectModel::requestRenameBranch(int id, const QString& name) {
  const Branch* b = branch(id);
  if (b == nullptr || isBlank(name) || b->name == name.trimmed()) return false;
  const QString before = b->name;
  const QString after = name.trimmed();
  auto apply = [this, id](const QString& value) {
    mutableBranch(id)->name = value;
    emit branchesChanged();
  };
  undo_stack_.push(new LambdaCommand(tr("Rename branch to \"%1\"").arg(after),
                                     [apply, after] { apply(after); },
                                     [apply, before] { apply(before); }));
  return true;
}

bool ProjectModel::requestSetPrompt(int id, const QString& prompt) {
  const Branch* b = branch(id);
  if (b == nullptr || isBlank(prompt) || b->prompt == prompt) return false;
  const QString before = b->prompt;
  auto apply = [this, id](const QString& value) {
    mutableBranch(id)->prompt = value;
    touch(id);
  };
  undo_stack_.push(new LambdaCommand(tr("Change prompt"), [apply, prompt] { apply(prompt); },
                                     [apply, before] { apply(before); }));
  return true;
}

bool ProjectModel::requestSetSeed(int id, quint64 seed) {
  const Branch* b = branch(id);
  if (b == nullptr || b->seed == seed) return false;
  const quint64 before = b->seed;
  auto apply = [this, id](quint64 value) {
    mutableBranch(id)->seed = value;
    touch(id);
  };
  undo_stack_.push(new LambdaCommand(tr("Change seed"), [apply, seed] { apply(seed); },
                                     [apply, before] { apply(before); }));
  return true;
}

bool ProjectModel::requestSetInOut(int id, qint64 in_frame, qint64 out_frame) {
  const Branch* b = branch(id);
  if (b == nullptr || in_frame < -1 || out_frame < -1) return false;
  const qint64 frames = pathFrames(id);
  if (in_frame >= frames || out_frame >= frames) return false;
  if (in_frame >= 0 && out_frame >= 0 && in_frame > out_frame) return false;
  if (b->in_frame == in_frame && b->out_frame == out_frame) return false;
  const std::pair<qint64, qint64> before{b->in_frame, b->out_frame};
  const std::pair<qint64, qint64> after{in_frame, out_frame};
  auto apply = [this, id](std::pair<qint64, qint64> value) {
    Branch* target = mutableBranch(id);
    target->in_frame = value.first;
    target->out_frame = value.second;
    touch(id);
  };
  undo_stack_.push(new LambdaCommand(tr("Set in/out"), [apply, after] { apply(after); },
                                     [apply, before] { apply(before); }));
  return true;
}

const BlockRecord* ProjectModel::blockByKey(const QString& key) const {
  for (const auto& [id, b] : branches_) {
    for (const BlockRecord& block : b.blocks) {
      if (block.key == key) return &block;
    }
  }
  return nullptr;
}

QStringList ProjectModel::blocksToRegenerate() const {
  QStringList keys;
  for (const auto& [id, b] : branches_) {
    for (const BlockRecord& block : b.blocks) {
      if (block.frames_missing && !block.latents.empty()) keys << block.key;
    }
  }
  return keys;
}

bool ProjectModel::restoreBlockFrames(const QString& key, const QList<QImage>& frames) {
  if (frames.size() != frames_per_block_) return false;
  for (auto& [id, b] : branches_) {
    for (BlockRecord& block : b.blocks) {
      if (block.key != key) continue;
      if (!block.frames_missing) return false;
      block.frames = frames;
      block.frames_missing = false;
      touch(id);  // a save must now write the repaired cache file
      return true;
    }
  }
  return false;
}

bool ProjectModel::appendBlock(int id, BlockRecord block) {
  Branch* b = mutableBranch(id);
  if (b == nullptr || block.index != pathLength(id) || !block.state_after) return false;
  if (block.frames.size() != frames_per_block_) return false;
  if (block.state_after->next_block != block.index + 1) return false;
  if (block.key.isEmpty()) block.key = newBlockKey();
  b->blocks.push_back(std::move(block));
  // The new block's state_after already holds what the re-cache did.
  b->recached_end.reset();
  b->recached_key.clear();
  touch(id);
  return true;
}

bool ProjectModel::setRecachedEnd(int id, SnapshotPtr state, QString key) {
  Branch* b = mutableBranch(id);
  if (b == nullptr || !state || state->next_block != pathLength(id)) return false;
  b->recached_end = std::move(state);
  b->recached_key = key.isEmpty() ? newBlockKey() : std::move(key);
  touch(id);
  return true;
}

SnapshotPtr ProjectModel::endState(int id) const {
  const Branch* b = branch(id);
  if (b == nullptr) return nullptr;
  const qint64 length = pathLength(id);
  if (b->recached_end && b->recached_end->next_block == length &&
      QString::fromStdString(b->recached_end->prompt) == b->prompt) {
    return b->recached_end;
  }
  return snapshotAtBoundary(id, length);
}

bool ProjectModel::setActiveBranch(int id) {
  if (branch(id) == nullptr) return false;
  if (id == active_id_) return true;
  active_id_ = id;
  emit activeBranchChanged(id);
  return true;
}

QString ProjectModel::newBlockKey() {
  return QStringLiteral("%1").arg(QRandomGenerator::global()->generate64(), 16, 16, QLatin1Char('0'));
}

void ProjectModel::addToPromptHistory(const QString& prompt) {
  if (isBlank(prompt)) return;
  prompt_history_.removeAll(prompt);
  prompt_history_.prepend(prompt);
  while (prompt_history_.size() > kPromptHistoryLimit) prompt_history_.removeLast();
}

}  // namespace strand::desktop
