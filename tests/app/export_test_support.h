// Shared by the export tests: a project built from synthetic blocks (no model needed), settings in
// a temporary scope, and small file helpers.
#pragma once
#include <QCoreApplication>
#include <QCryptographicHash>
#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QImage>
#include <QMap>
#include <QProcess>
#include <QSettings>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <memory>

#include "project_model.h"

namespace strand::desktop::test {

inline constexpr int kNativeFps = 8;

// A frame whose colours encode (branch, frame): each is recognisable after a lossless export.
inline QImage syntheticFrame(int branch_id, qint64 frame, QSize size) {
  QImage image(size, QImage::Format_RGB888);
  for (int y = 0; y < size.height(); ++y) {
    for (int x = 0; x < size.width(); ++x) {
      image.setPixel(x, y,
                     qRgb(int(frame * 7 % 256), (x * 255) / std::max(size.width() - 1, 1),
                          (branch_id * 60 + y) % 256));
    }
  }
  return image;
}

// Appends `blocks` synthetic blocks to branch `id`; prompts[i] is block i's prompt (cycled).
inline bool appendSyntheticBlocks(ProjectModel& project, int id, int blocks,
                                  const QStringList& prompts, QSize size = QSize(32, 24)) {
  for (int i = 0; i < blocks; ++i) {
    BlockRecord record;
    record.index = project.pathLength(id);
    record.prompt = prompts[i % prompts.size()];
    record.seed = 7;
    for (int f = 0; f < project.framesPerBlock(); ++f) {
      record.frames << syntheticFrame(id, record.index * project.framesPerBlock() + f, size);
    }
    auto state = std::make_shared<strand::MemoryState>();
    state->next_block = record.index + 1;
    state->seed = 7;
    state->prompt = record.prompt.toStdString();
    record.state_after = std::move(state);
    if (!project.appendBlock(id, std::move(record))) return false;
  }
  return true;
}

// Root "main": 3 blocks of 4 frames, prompts A, A, B (two segments). With a branch: "side" forks
// at block 1 and adds 2 blocks with prompt C (its path: 3 blocks, 12 frames).
inline int makeProject(ProjectModel& project, bool with_branch, QSize size = QSize(32, 24),
                       int blocks = 3) {
  auto initial = std::make_shared<strand::MemoryState>();
  project.reset(initial, 4, 7, QStringLiteral("a red balloon"));
  appendSyntheticBlocks(project, ProjectModel::kRootId, blocks,
                        {QStringLiteral("a red balloon"), QStringLiteral("a red balloon"),
                         QStringLiteral("birds over a forest")},
                        size);
  int side = 0;
  if (with_branch) {
    project.requestCreateBranch(ProjectModel::kRootId, 1, QStringLiteral("side"), 9,
                                QStringLiteral("a lighthouse"), &side);
    appendSyntheticBlocks(project, side, 2, {QStringLiteral("a lighthouse")}, size);
  }
  return side;
}

// QSettings goes to an INI file in `dir` under a test organisation, never the user's settings.
inline void isolateSettings(const QTemporaryDir& dir) {
  QCoreApplication::setOrganizationName(QStringLiteral("strand-tests"));
  QCoreApplication::setApplicationName(QStringLiteral("export-tests"));
  QSettings::setDefaultFormat(QSettings::IniFormat);
  QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, dir.path());
  QSettings().clear();
}

// Relative path -> SHA-256 of every file under `folder`.
inline QMap<QString, QByteArray> hashFolder(const QString& folder) {
  QMap<QString, QByteArray> hashes;
  QDirIterator it(folder, QDir::Files | QDir::Hidden | QDir::System, QDirIterator::Subdirectories);
  while (it.hasNext()) {
    const QString path = it.next();
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) continue;
    hashes[QDir(folder).relativeFilePath(path)] =
        QCryptographicHash::hash(file.readAll(), QCryptographicHash::Sha256);
  }
  return hashes;
}

// Every entry under `folder` (files and folders, relative), sorted.
inline QStringList listTree(const QString& folder) {
  QStringList entries;
  QDirIterator it(folder, QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden,
                  QDirIterator::Subdirectories);
  while (it.hasNext()) entries << QDir(folder).relativeFilePath(it.next());
  entries.sort();
  return entries;
}

// Frames ffprobe decodes from `path`, or -1 when ffprobe is not installed or fails.
inline qint64 probeFrameCount(const QString& path) {
  const QString ffprobe = QStandardPaths::findExecutable(QStringLiteral("ffprobe"));
  if (ffprobe.isEmpty()) return -1;
  QProcess process;
  process.start(
      ffprobe, {QStringLiteral("-v"), QStringLiteral("error"), QStringLiteral("-count_frames"),
                QStringLiteral("-select_streams"), QStringLiteral("v:0"),
                QStringLiteral("-show_entries"), QStringLiteral("stream=nb_read_frames"),
                QStringLiteral("-of"), QStringLiteral("default=nokey=1:noprint_wrappers=1"), path});
  if (!process.waitForFinished(30000) || process.exitCode() != 0) return -1;
  bool ok = false;
  const qint64 frames = process.readAllStandardOutput().trimmed().toLongLong(&ok);
  return ok ? frames : -1;
}

}  // namespace strand::desktop::test
