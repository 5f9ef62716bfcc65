#include "project_file.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QSet>
#include <QtEndian>
#include <cstring>
#include <exception>
#include <span>
#include <stdexcept>

#include "project_model.h"
#include "strand/file_io.h"
#include "strand/memory_state.h"

namespace strand::desktop {

namespace {

constexpr char kBlockCacheMagic[8] = {'S', 'T', 'R', 'N', 'B', 'L', 'K', '1'};
constexpr qsizetype kDigestBytes = 32;  // SHA-256
const QString kInitialSnapshot = QStringLiteral("snapshots/initial.snap");

QString snapshotPath(const QString& key) { return QStringLiteral("snapshots/%1.snap").arg(key); }
QString cachePath(const QString& key) { return QStringLiteral("cache/%1.blk").arg(key); }
// Latents live in their own file so that a damaged frame cache can be rebuilt from them.
QString latentsPath(const QString& key) { return QStringLiteral("cache/%1.lat").arg(key); }

// Keys become file names: accept only what newBlockKey() makes (hex), never a path.
bool isValidKey(const QString& key) {
  static const QRegularExpression pattern(QStringLiteral("^[0-9a-f]{1,32}$"));
  return pattern.match(key).hasMatch();
}

std::string nativePath(const QString& path) { return QFile::encodeName(path).toStdString(); }

void writeAtomic(const QString& path, const QByteArray& bytes) {
  strand::write_file_atomic(
      nativePath(path),
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.constData()),
                               static_cast<size_t>(bytes.size())));
}

QByteArray readAll(const QString& path) {
  const std::vector<uint8_t> bytes = strand::read_file(nativePath(path));
  return QByteArray(reinterpret_cast<const char*>(bytes.data()), static_cast<qsizetype>(bytes.size()));
}

QString seedText(quint64 seed) { return QString::number(seed); }

bool parseSeed(const QJsonValue& value, quint64* seed) {
  bool ok = false;
  *seed = value.toString().toULongLong(&ok);
  return ok;
}

// Copies `object` without the keys we write ourselves: what is left is unknown and round-trips.
QJsonObject withoutKeys(QJsonObject object, std::initializer_list<const char*> keys) {
  for (const char* key : keys) object.remove(QLatin1String(key));
  return object;
}

// --- Migration steps: pure functions, one per version. ---

// v0 (the 0.0 prototype): one numeric project "seed" shared by all branches, a branch forked at a
// frame ("fork_frame"), blocks implied by position, "model" a plain path, no in/out, "active".
// v1: per-branch and per-block seeds as decimal strings (exact 64-bit), "fork_block", explicit
// block "index", "model": {"path","id"}, in/out, "active_branch", "next_branch_id".
QJsonObject migrateV0ToV1(const QJsonObject& v0, QString* error) {
  QJsonObject v1 = withoutKeys(v0, {"version", "seed", "model", "model_id", "active", "branches"});
  const int fpb = v0.value(QLatin1String("frames_per_block")).toInt(0);
  if (fpb <= 0) {
    *error = QObject::tr("version 0 project without frames_per_block");
    return {};
  }
  const auto seed = static_cast<quint64>(v0.value(QLatin1String("seed")).toDouble(0));
  v1.insert(QLatin1String("version"), 1);
  v1.insert(QLatin1String("model"),
            QJsonObject{{QLatin1String("path"), v0.value(QLatin1String("model")).toString()},
                        {QLatin1String("id"), v0.value(QLatin1String("model_id")).toString()}});
  v1.insert(QLatin1String("active_branch"), v0.value(QLatin1String("active")).toInt(1));
  int max_id = 0;
  QJsonArray branches;
  for (const QJsonValue& value : v0.value(QLatin1String("branches")).toArray()) {
    const QJsonObject old_branch = value.toObject();
    QJsonObject branch = withoutKeys(old_branch, {"fork_frame", "blocks"});
    const int fork_frame = old_branch.value(QLatin1String("fork_frame")).toInt(0);
    if (fork_frame % fpb != 0) {
      *error = QObject::tr("version 0 branch forks inside a block (frame %1)").arg(fork_frame);
      return {};
    }
    const int fork_block = fork_frame / fpb;
    branch.insert(QLatin1String("fork_block"), fork_block);
    branch.insert(QLatin1String("seed"), seedText(seed));
    branch.insert(QLatin1String("in"), -1);
    branch.insert(QLatin1String("out"), -1);
    QJsonArray blocks;
    int index = fork_block;
    for (const QJsonValue& block_value : old_branch.value(QLatin1String("blocks")).toArray()) {
      QJsonObject block = block_value.toObject();
      block.insert(QLatin1String("index"), index++);
      block.insert(QLatin1String("seed"), seedText(seed));
      blocks.append(block);
    }
    branch.insert(QLatin1String("blocks"), blocks);
    max_id = std::max(max_id, branch.value(QLatin1String("id")).toInt());
    branches.append(branch);
  }
  v1.insert(QLatin1String("branches"), branches);
  v1.insert(QLatin1String("next_branch_id"), max_id + 1);
  return v1;
}

using MigrationStep = QJsonObject (*)(const QJsonObject&, QString*);
// kMigrations[n] turns version n into version n + 1.
constexpr MigrationStep kMigrations[] = {&migrateV0ToV1};
static_assert(std::size(kMigrations) == kProjectVersion, "one migration step per older version");

QJsonObject blockToJson(const BlockRecord& block) {
  QJsonObject json = block.extra;
  json.insert(QLatin1String("index"), block.index);
  json.insert(QLatin1String("key"), block.key);
  json.insert(QLatin1String("prompt"), block.prompt);
  json.insert(QLatin1String("seed"), seedText(block.seed));
  return json;
}

QJsonObject projectToJson(const ProjectModel& model, const ProjectMeta& meta) {
  QJsonObject json = meta.extra;
  json.insert(QLatin1String("format"), QLatin1String(kProjectFormat));
  json.insert(QLatin1String("version"), kProjectVersion);
  json.insert(QLatin1String("saved_at"),
              QDateTime::currentDateTimeUtc().toString(Qt::ISODateWithMs));
  json.insert(QLatin1String("model"), QJsonObject{{QLatin1String("path"), meta.model_path},
                                                  {QLatin1String("id"), meta.model_id}});
  json.insert(QLatin1String("frames_per_block"), model.framesPerBlock());
  json.insert(QLatin1String("initial_state"), kInitialSnapshot);
  json.insert(QLatin1String("next_branch_id"), model.nextBranchId());
  json.insert(QLatin1String("active_branch"), model.activeBranch());
  json.insert(QLatin1String("prompt_history"), QJsonArray::fromStringList(model.promptHistory()));
  QJsonArray branches;
  for (const auto& [id, b] : model.branches()) {
    QJsonObject branch = b.extra;
    branch.insert(QLatin1String("id"), id);
    branch.insert(QLatin1String("name"), b.name);
    branch.insert(QLatin1String("parent"), b.parent_id);
    branch.insert(QLatin1String("fork_block"), b.fork_block);
    branch.insert(QLatin1String("seed"), seedText(b.seed));
    branch.insert(QLatin1String("prompt"), b.prompt);
    branch.insert(QLatin1String("in"), b.in_frame);
    branch.insert(QLatin1String("out"), b.out_frame);
    QJsonArray blocks;
    for (const BlockRecord& block : b.blocks) blocks.append(blockToJson(block));
    branch.insert(QLatin1String("blocks"), blocks);
    if (b.recached_end) branch.insert(QLatin1String("recached_end"), b.recached_key);
    branches.append(branch);
  }
  json.insert(QLatin1String("branches"), branches);
  return json;
}

// Removes files in snapshots/ and cache/ that `referenced` does not name (after an explicit save).
void removeUnreferenced(const QDir& dir, const QSet<QString>& referenced) {
  for (const QString& sub : {QStringLiteral("snapshots"), QStringLiteral("cache")}) {
    const QDir folder(dir.filePath(sub));
    for (const QString& name : folder.entryList(QDir::Files)) {
      const QString relative = sub + QLatin1Char('/') + name;
      if (!referenced.contains(relative)) QFile::remove(folder.filePath(name));
    }
  }
}

}  // namespace

namespace {
// Reads and decodes one cache file; a missing or unreadable file is an error like a damaged one.
bool readBlockCache(const QString& path, QList<QImage>* frames, std::vector<float>* latents,
                    QString* error) {
  QByteArray bytes;
  try {
    bytes = readAll(path);
  } catch (const std::exception& e) {
    *error = QString::fromUtf8(e.what());
    return false;
  }
  return decodeBlockCache(bytes, frames, latents, error);
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Block cache: magic, u32 header length, header JSON, payload (frames RGB8 packed rows, then
// latents float32 little-endian), SHA-256 of everything before it.

QByteArray encodeBlockCache(const QList<QImage>& frames, const std::vector<float>& latents) {
  const int width = frames.isEmpty() ? 0 : frames.front().width();
  const int height = frames.isEmpty() ? 0 : frames.front().height();
  const QByteArray header = QJsonDocument(QJsonObject{{QLatin1String("frames"), frames.size()},
                                                      {QLatin1String("width"), width},
                                                      {QLatin1String("height"), height},
                                                      {QLatin1String("latents"), qint64(latents.size())}})
                                .toJson(QJsonDocument::Compact);
  QByteArray bytes(kBlockCacheMagic, sizeof(kBlockCacheMagic));
  char length[4];
  qToLittleEndian<quint32>(static_cast<quint32>(header.size()), length);
  bytes.append(length, 4);
  bytes.append(header);
  for (const QImage& frame : frames) {
    const QImage rgb = frame.convertToFormat(QImage::Format_RGB888);
    for (int y = 0; y < height; ++y) {
      bytes.append(reinterpret_cast<const char*>(rgb.constScanLine(y)), qsizetype(width) * 3);
    }
  }
  for (float value : latents) {
    char le[4];
    qToLittleEndian<float>(value, le);
    bytes.append(le, 4);
  }
  bytes.append(QCryptographicHash::hash(bytes, QCryptographicHash::Sha256));
  return bytes;
}

bool decodeBlockCache(const QByteArray& bytes, QList<QImage>* frames, std::vector<float>* latents,
                      QString* error) {
  const qsizetype fixed = qsizetype(sizeof(kBlockCacheMagic)) + 4 + kDigestBytes;
  if (bytes.size() < fixed || std::memcmp(bytes.constData(), kBlockCacheMagic, 8) != 0) {
    *error = QObject::tr("not a block cache file");
    return false;
  }
  const QByteArray body = bytes.left(bytes.size() - kDigestBytes);
  if (QCryptographicHash::hash(body, QCryptographicHash::Sha256) != bytes.right(kDigestBytes)) {
    *error = QObject::tr("checksum mismatch (damaged file)");
    return false;
  }
  const auto header_size = qFromLittleEndian<quint32>(body.constData() + 8);
  if (header_size > static_cast<quint64>(body.size() - 12)) {
    *error = QObject::tr("header length beyond the file");
    return false;
  }
  const QJsonObject header = QJsonDocument::fromJson(body.mid(12, header_size)).object();
  const qint64 count = header.value(QLatin1String("frames")).toInteger(-1);
  const qint64 width = header.value(QLatin1String("width")).toInteger(-1);
  const qint64 height = header.value(QLatin1String("height")).toInteger(-1);
  const qint64 latent_count = header.value(QLatin1String("latents")).toInteger(-1);
  const qint64 payload = body.size() - 12 - header_size;
  constexpr qint64 kMaxSide = 1 << 15;
  if (count < 0 || count > 4096 || width < 0 || width > kMaxSide || height < 0 ||
      height > kMaxSide || latent_count < 0 ||
      count * width * height * 3 + latent_count * 4 != payload) {
    *error = QObject::tr("sizes in the header do not match the file");
    return false;
  }
  const char* cursor = body.constData() + 12 + header_size;
  frames->clear();
  for (qint64 f = 0; f < count; ++f) {
    QImage image(int(width), int(height), QImage::Format_RGB888);
    for (qint64 y = 0; y < height; ++y) {
      std::memcpy(image.scanLine(int(y)), cursor, size_t(width) * 3);
      cursor += width * 3;
    }
    frames->append(image);
  }
  latents->resize(static_cast<size_t>(latent_count));
  for (qint64 i = 0; i < latent_count; ++i) {
    (*latents)[size_t(i)] = qFromLittleEndian<float>(cursor);
    cursor += 4;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

QJsonObject migrateProjectJson(QJsonObject json, QString* error) {
  if (json.value(QLatin1String("format")).toString() != QLatin1String(kProjectFormat)) {
    *error = QObject::tr("not a Strand project (\"format\" is not \"%1\")").arg(QLatin1String(kProjectFormat));
    return {};
  }
  const QJsonValue version_value = json.value(QLatin1String("version"));
  if (!version_value.isDouble() || version_value.toDouble() != double(version_value.toInt()) ||
      version_value.toInt() < 0) {
    *error = QObject::tr("the project's \"version\" is not a non-negative integer");
    return {};
  }
  for (int version = version_value.toInt(); version < kProjectVersion; ++version) {
    json = kMigrations[version](json, error);
    if (json.isEmpty()) {
      if (error->isEmpty()) *error = QObject::tr("migration from version %1 failed").arg(version);
      return {};
    }
  }
  return json;
}

bool saveProject(const ProjectModel& model, const ProjectMeta& meta, const QString& folder,
                 SaveKind kind, QString* error) {
  if (kind == SaveKind::explicit_save && meta.read_only) {
    *error = QObject::tr("this project was made by a newer Strand and is open read-only; use "
                         "Save As to save a copy");
    return false;
  }
  const QDir dir(folder);
  if (!QDir().mkpath(dir.filePath(QStringLiteral("snapshots"))) ||
      !QDir().mkpath(dir.filePath(QStringLiteral("cache")))) {
    *error = QObject::tr("cannot create the project folder %1").arg(folder);
    return false;
  }
  QSet<QString> referenced{kInitialSnapshot};
  try {
    if (model.initialState()) {
      save_snapshot(nativePath(dir.filePath(kInitialSnapshot)), *model.initialState());
    }
    // Blocks are immutable and their keys unique: a file that exists is already this block's.
    for (const auto& [id, b] : model.branches()) {
      if (b.recached_end && isValidKey(b.recached_key)) {
        const QString snap = snapshotPath(b.recached_key);
        referenced << snap;
        if (!QFileInfo::exists(dir.filePath(snap))) {
          save_snapshot(nativePath(dir.filePath(snap)), *b.recached_end);
        }
      }
      for (const BlockRecord& block : b.blocks) {
        const QString snap = snapshotPath(block.key);
        const QString cache = cachePath(block.key);
        const QString latents = latentsPath(block.key);
        referenced << snap << cache << latents;
        if (!QFileInfo::exists(dir.filePath(snap))) {
          save_snapshot(nativePath(dir.filePath(snap)), *block.state_after);
        }
        // Placeholder frames are never written: the damaged file stays until the frames are
        // regenerated (a missing one stays missing), so the next open tries again.
        if (!block.frames_missing &&
            (block.cache_file_stale || !QFileInfo::exists(dir.filePath(cache)))) {
          writeAtomic(dir.filePath(cache), encodeBlockCache(block.frames, {}));
        }
        if (!block.latents.empty() && !QFileInfo::exists(dir.filePath(latents))) {
          writeAtomic(dir.filePath(latents), encodeBlockCache({}, block.latents));
        }
      }
    }
    const QByteArray json = QJsonDocument(projectToJson(model, meta)).toJson(QJsonDocument::Indented);
    const QString target = dir.filePath(QLatin1String(
        kind == SaveKind::autosave ? kAutosaveFile : kProjectFile));
    if (kind == SaveKind::explicit_save && QFileInfo::exists(target)) {
      writeAtomic(target + QStringLiteral(".bak"), readAll(target));
    }
    writeAtomic(target, json);
    // Read back and parse before claiming success (what Krita does after every save).
    QJsonParseError parse_error{};
    const QByteArray back = readAll(target);
    if (back != json || QJsonDocument::fromJson(back, &parse_error).isNull()) {
      *error = QObject::tr("the saved project did not read back identically");
      return false;
    }
  } catch (const std::exception& e) {
    *error = QObject::tr("could not save the project: %1").arg(QString::fromUtf8(e.what()));
    return false;
  }
  if (kind == SaveKind::explicit_save) {
    QFile::remove(dir.filePath(QLatin1String(kAutosaveFile)));
    removeUnreferenced(dir, referenced);
  }
  return true;
}

bool hasNewerAutosave(const QString& folder) {
  const QDir dir(folder);
  const QFileInfo autosave(dir.filePath(QLatin1String(kAutosaveFile)));
  const QFileInfo saved(dir.filePath(QLatin1String(kProjectFile)));
  if (!autosave.exists()) return false;
  return !saved.exists() || autosave.lastModified() > saved.lastModified();
}

bool loadProject(const QString& folder, bool from_autosave, const QString& expected_model_id,
                 ProjectModel* model, ProjectMeta* meta, QString* error) {
  const QDir dir(folder);
  const QString file = dir.filePath(QLatin1String(from_autosave ? kAutosaveFile : kProjectFile));
  QJsonObject json;
  try {
    QJsonParseError parse_error{};
    const QJsonDocument document = QJsonDocument::fromJson(readAll(file), &parse_error);
    if (!document.isObject()) {
      *error = QObject::tr("%1 is not valid JSON: %2").arg(file, parse_error.errorString());
      return false;
    }
    json = document.object();
  } catch (const std::exception& e) {
    *error = QObject::tr("cannot read %1: %2").arg(file, QString::fromUtf8(e.what()));
    return false;
  }
  ProjectMeta loaded;
  loaded.loaded_version = json.value(QLatin1String("version")).toInt(-1);
  json = migrateProjectJson(json, error);
  if (json.isEmpty()) return false;
  loaded.read_only = loaded.loaded_version > kProjectVersion;
  if (loaded.read_only) {
    loaded.warnings << QObject::tr("Made by a newer Strand (project version %1): opened read-only.")
                           .arg(loaded.loaded_version);
  }
  const QJsonObject model_json = json.value(QLatin1String("model")).toObject();
  loaded.model_path = model_json.value(QLatin1String("path")).toString();
  loaded.model_id = model_json.value(QLatin1String("id")).toString();
  loaded.extra = withoutKeys(json, {"format", "version", "saved_at", "model", "frames_per_block",
                                    "initial_state", "next_branch_id", "active_branch",
                                    "prompt_history", "branches"});
  const std::string model_id =
      (expected_model_id.isEmpty() ? loaded.model_id : expected_model_id).toStdString();
  const int fpb = json.value(QLatin1String("frames_per_block")).toInt(0);
  if (fpb <= 0) {
    *error = QObject::tr("frames_per_block missing or invalid");
    return false;
  }

  std::map<int, Branch> branches;
  SnapshotPtr initial;
  try {
    const QString initial_path = dir.filePath(kInitialSnapshot);
    if (QFileInfo::exists(initial_path)) {
      initial = std::make_shared<const MemoryState>(load_snapshot(nativePath(initial_path), model_id));
    }
    for (const QJsonValue& value : json.value(QLatin1String("branches")).toArray()) {
      const QJsonObject bj = value.toObject();
      Branch b;
      b.id = bj.value(QLatin1String("id")).toInt(0);
      b.name = bj.value(QLatin1String("name")).toString();
      b.parent_id = bj.value(QLatin1String("parent")).toInt(-1);
      b.fork_block = bj.value(QLatin1String("fork_block")).toInteger(-1);
      b.prompt = bj.value(QLatin1String("prompt")).toString();
      b.in_frame = bj.value(QLatin1String("in")).toInteger(-1);
      b.out_frame = bj.value(QLatin1String("out")).toInteger(-1);
      if (!parseSeed(bj.value(QLatin1String("seed")), &b.seed) || b.id <= 0 || branches.count(b.id)) {
        *error = QObject::tr("branch entry %1 is invalid (id or seed)").arg(b.id);
        return false;
      }
      b.extra = withoutKeys(bj, {"id", "name", "parent", "fork_block", "seed", "prompt", "in",
                                 "out", "blocks", "recached_end"});
      if (bj.contains(QLatin1String("recached_end"))) {
        // Optional: without it the branch continues from its last block's memory.
        const QString key = bj.value(QLatin1String("recached_end")).toString();
        try {
          if (!isValidKey(key)) throw std::runtime_error("invalid key");
          b.recached_end = std::make_shared<const MemoryState>(
              load_snapshot(nativePath(dir.filePath(snapshotPath(key))), model_id));
          b.recached_key = key;
        } catch (const std::exception& e) {
          loaded.warnings << QObject::tr("The re-cached memory at the end of \"%1\" is lost (%2).")
                                 .arg(b.name, QString::fromUtf8(e.what()));
        }
      }
      for (const QJsonValue& block_value : bj.value(QLatin1String("blocks")).toArray()) {
        const QJsonObject blj = block_value.toObject();
        BlockRecord block;
        block.index = blj.value(QLatin1String("index")).toInteger(-1);
        block.key = blj.value(QLatin1String("key")).toString();
        block.prompt = blj.value(QLatin1String("prompt")).toString();
        if (!isValidKey(block.key) || !parseSeed(blj.value(QLatin1String("seed")), &block.seed)) {
          *error = QObject::tr("branch %1 has a block with an invalid key or seed").arg(b.id);
          return false;
        }
        block.extra = withoutKeys(blj, {"index", "key", "prompt", "seed"});
        block.state_after = std::make_shared<const MemoryState>(
            load_snapshot(nativePath(dir.filePath(snapshotPath(block.key))), model_id));
        // Latents: their own file (current layout); projects saved before it keep them inside
        // the frame cache file, read below.
        const QString latents_file = dir.filePath(latentsPath(block.key));
        if (QFileInfo::exists(latents_file)) {
          QList<QImage> no_frames;
          QString latents_error;
          const bool read = readBlockCache(latents_file, &no_frames, &block.latents, &latents_error);
          if (read && !no_frames.isEmpty()) latents_error = QObject::tr("not a latents file");
          if (!latents_error.isEmpty()) {
            block.latents.clear();
            loaded.warnings << QObject::tr("Latents of block %1 on \"%2\" are damaged (%3).")
                                   .arg(block.index).arg(b.name, latents_error);
          }
        }
        QString cache_error;
        std::vector<float> cache_latents;
        if (readBlockCache(dir.filePath(cachePath(block.key)), &block.frames, &cache_latents,
                           &cache_error) &&
            block.frames.size() != fpb) {
          cache_error = QObject::tr("holds %1 frames, expected %2").arg(block.frames.size()).arg(fpb);
        }
        if (cache_error.isEmpty() && block.latents.empty()) block.latents = std::move(cache_latents);
        if (!cache_error.isEmpty()) {
          // The memory snapshot is intact, so the project stays usable; the frames are shown
          // as grey placeholders until they are decoded again from the latents (the app does
          // that at once on the engine thread) or the block is regenerated.
          const QString next = block.latents.empty()
                                   ? QObject::tr("grey placeholders are shown")
                                   : QObject::tr("its frames are rebuilt from the stored latents");
          loaded.warnings << QObject::tr("Frame cache of block %1 on \"%2\" is damaged (%3): %4.")
                                 .arg(block.index).arg(b.name, cache_error, next);
          QImage grey(16, 16, QImage::Format_RGB888);
          grey.fill(Qt::darkGray);
          block.frames = QList<QImage>(fpb, grey);
          block.frames_missing = true;
          block.cache_file_stale = true;
        }
        b.blocks.push_back(std::move(block));
      }
      branches.emplace(b.id, std::move(b));
    }
  } catch (const std::exception& e) {
    *error = QObject::tr("cannot open the project: %1").arg(QString::fromUtf8(e.what()));
    return false;
  }

  QStringList history;
  for (const QJsonValue& value : json.value(QLatin1String("prompt_history")).toArray()) {
    history << value.toString();
  }
  int next_id = json.value(QLatin1String("next_branch_id")).toInt(0);
  for (const auto& entry : branches) next_id = std::max(next_id, entry.first + 1);

  // Build into a scratch model first: a project that breaks an invariant is refused whole.
  ProjectModel scratch;
  scratch.loadState(branches, next_id, json.value(QLatin1String("active_branch")).toInt(ProjectModel::kRootId),
                    initial, fpb, history);
  const QString problem = scratch.checkInvariants();
  if (!problem.isEmpty()) {
    *error = QObject::tr("the project is inconsistent: %1").arg(problem);
    return false;
  }
  model->loadState(std::move(branches), next_id,
                   json.value(QLatin1String("active_branch")).toInt(ProjectModel::kRootId),
                   std::move(initial), fpb, std::move(history));
  *meta = std::move(loaded);
  return true;
}

}  // namespace strand::desktop
