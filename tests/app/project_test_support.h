// Shared by the project tests: drives a strand::Session synchronously the way the app drives the
// EngineWorker (continue from the branch's end snapshot with its seed and prompt, generate, record
// the block), so the tests exercise the real engine without threads.
#pragma once
#include <QString>
#include <QTemporaryDir>
#include <memory>

#include "engine_worker.h"
#include "project_model.h"
#include "strand/model.h"
#include "strand/session.h"

namespace strand::desktop::test {

inline QString goldenModelPath() {
  return QStringLiteral(STRAND_SOURCE_DIR "/tests/data/golden-model.safetensors");
}

struct Engine {
  std::shared_ptr<const strand::Model> model;
  std::unique_ptr<strand::Session> session;

  Engine() {
    model = strand::Model::load(goldenModelPath().toStdString());
    strand::SessionOptions options;
    session = std::make_unique<strand::Session>(model, options);
  }
  SnapshotPtr initialState() const {
    return std::make_shared<const strand::MemoryState>(session->snapshot());
  }
  // Generates `blocks` blocks at the end of branch `id` and records them. Returns false if the
  // model refused a block.
  bool generate(ProjectModel& project, int id, int blocks) {
    const Branch* b = project.branch(id);
    session->restore(*project.snapshotAtBoundary(id, project.pathLength(id)));
    session->set_seed(b->seed);
    session->set_prompt(b->prompt.toStdString());
    for (int i = 0; i < blocks; ++i) {
      BlockRecord record;
      record.prompt = QString::fromStdString(session->prompt());
      record.seed = session->seed();
      strand::BlockResult result = session->generate_next_block();
      record.index = result.block_index;
      record.latents = result.latents;
      for (const strand::Frame& frame : result.frames) record.frames << toQImage(frame);
      record.state_after = std::make_shared<const strand::MemoryState>(session->snapshot());
      if (!project.appendBlock(id, std::move(record))) return false;
    }
    return true;
  }
};

// Frames of the path of `id`, in order.
inline QList<QImage> pathFrames(const ProjectModel& project, int id) {
  QList<QImage> frames;
  for (qint64 f = 0; f < project.pathFrames(id); ++f) frames << project.frame(id, f);
  return frames;
}

}  // namespace strand::desktop::test
