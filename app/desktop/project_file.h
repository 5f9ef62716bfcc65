// Projects on disk. A project is a folder:
//
//   project.json            "format": "strand-project", integer "version" (kProjectVersion)
//   project.json.bak        the previous project.json, kept by every save
//   project.autosave.json   written by autosave; removed by an explicit save
//   snapshots/initial.snap  memory at boundary 0 (strand snapshot file)
//   snapshots/<key>.snap    memory at the boundary after each block (save_snapshot), and a
//                           branch's re-cached end ("recached_end": key, Branch::recached_end)
//   cache/<key>.blk         each block's frames (RGB8), SHA-256 checked (projects saved before
//                           cache/<key>.lat existed hold the latents here too; still read)
//   cache/<key>.lat         each block's clean latents, same checked format: a damaged or missing
//                           .blk opens with placeholder frames (BlockRecord::frames_missing) that
//                           the app decodes again from these (EngineWorker::decodeLatents)
//
// Every file is written atomically (strand::write_file_atomic: temp file, checked writes, fsync,
// rename, folder fsync), and project.json is read back and parsed before a save reports success.
// Snapshot and cache files are immutable and named by their block's unique key, so a save only
// writes the blocks that are new; an explicit save then removes files no longer referenced.
// Unknown JSON fields (top level, branches, blocks) are kept and written back. Older versions
// migrate through a chain of pure vN -> vN+1 steps (migrateProjectJson); a file from a newer
// version opens read-only.
#pragma once
#include <QDateTime>
#include <QJsonObject>
#include <QString>
#include <QImage>
#include <QList>
#include <QStringList>
#include <vector>

namespace strand::desktop {

class ProjectModel;

inline constexpr int kProjectVersion = 1;
inline constexpr const char* kProjectFormat = "strand-project";
inline constexpr const char* kProjectFile = "project.json";
inline constexpr const char* kAutosaveFile = "project.autosave.json";

// What a project records besides the branch tree.
struct ProjectMeta {
  QString model_path;      // model file the project was made with
  QString model_id;        // its weights hash (snapshots are checked against it)
  QJsonObject extra;       // unknown top-level fields, written back
  int loaded_version = kProjectVersion;  // version of the file that was opened
  bool read_only = false;  // opened from a newer version: Save refuses, Save As is allowed
  QStringList warnings;    // non-fatal problems found while opening (e.g. damaged frame cache)
};

enum class SaveKind { explicit_save = 1, autosave };

// Writes `model` into `folder` (created if needed). kind=autosave writes project.autosave.json
// instead of project.json and removes nothing. Returns false with *error set on failure; the
// previous project.json is then untouched.
bool saveProject(const ProjectModel& model, const ProjectMeta& meta, const QString& folder,
                 SaveKind kind, QString* error);

// Reads the project in `folder` into `model` (replacing its content and clearing its undo stack).
// from_autosave reads project.autosave.json. expected_model_id non-empty: snapshots made by
// another model are refused. On failure returns false with *error and leaves `model` unchanged.
bool loadProject(const QString& folder, bool from_autosave, const QString& expected_model_id,
                 ProjectModel* model, ProjectMeta* meta, QString* error);

// True when `folder` holds an autosave written after project.json (offer it on open).
bool hasNewerAutosave(const QString& folder);

// Brings a project JSON of any older version up to kProjectVersion, one pure step at a time.
// Returns an empty object with *error set if the file is not a project or a step fails. Objects of
// kProjectVersion (or newer) are returned unchanged.
QJsonObject migrateProjectJson(QJsonObject json, QString* error);

// Block cache files: frames and latents with a checksum (exposed for tests).
QByteArray encodeBlockCache(const QList<QImage>& frames, const std::vector<float>& latents);
bool decodeBlockCache(const QByteArray& bytes, QList<QImage>* frames, std::vector<float>* latents,
                      QString* error);

}  // namespace strand::desktop
