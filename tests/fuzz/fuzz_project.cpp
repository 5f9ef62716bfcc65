// libFuzzer target for the project loader (app/desktop/project_file.cpp: loadProject,
// migrateProjectJson, decodeBlockCache). The loader needs QtCore/QtGui (JSON, QImage,
// QUndoStack) but no widgets. At start-up a valid fixture project is made with the golden model
// (two blocks, so snapshot and cache files exist for the keys it names). The first input byte
// picks what the rest of the input replaces:
//   0: project.json (reaches migration, branch/block parsing, key checks, invariants);
//   1: the bytes go straight into decodeBlockCache;
//   2: the first block's frame cache (.blk), then the fixture project is loaded;
//   3: the first block's latents (.lat), then the fixture project is loaded.
// Checks: no crash, hang or sanitizer report; a load that fails leaves the target model
// untouched; a load that succeeds gives a model whose invariants hold; decodeBlockCache results
// survive an encode/decode round trip.
#include <QByteArray>
#include <QDir>
#include <QFile>
#include <QImage>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unistd.h>

#include "project_file.h"
#include "project_model.h"
#include "strand/model.h"
#include "strand/session.h"

using namespace strand::desktop;

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

QString g_folder;     // the fixture project (rewritten in part by each input)
QByteArray g_json;    // its project.json
QString g_blk, g_lat;  // its first block's cache files
QByteArray g_blk_bytes, g_lat_bytes;

QImage toImage(const strand::Frame& frame) {
  QImage image(frame.width, frame.height, QImage::Format_RGB888);
  for (int y = 0; y < frame.height; ++y) {
    std::memcpy(image.scanLine(y), frame.rgb.data() + size_t(y) * size_t(frame.width) * 3,
                size_t(frame.width) * 3);
  }
  return image;
}

void writeFile(const QString& path, const QByteArray& bytes) {
  QFile file(path);
  check(file.open(QIODevice::WriteOnly | QIODevice::Truncate));
  check(file.write(bytes) == bytes.size());
}

QByteArray readFile(const QString& path) {
  QFile file(path);
  check(file.open(QIODevice::ReadOnly));
  return file.readAll();
}

void makeFixture() {
  const char* base = std::getenv("TMPDIR");
  g_folder = QStringLiteral("%1/strand-fuzz-project-%2")
                 .arg(QString::fromLocal8Bit(base != nullptr ? base : "/tmp"))
                 .arg(getpid());
  auto model = strand::Model::load(STRAND_SOURCE_DIR "/tests/data/golden-model.safetensors");
  strand::Session session(model, {});
  ProjectModel project;
  project.reset(std::make_shared<const strand::MemoryState>(session.snapshot()),
                model->config().frames_per_block, 3, QStringLiteral("a red balloon"));
  session.set_prompt("a red balloon");
  for (int i = 0; i < 2; ++i) {
    BlockRecord record;
    record.prompt = QStringLiteral("a red balloon");
    const strand::BlockResult result = session.generate_next_block();
    record.index = result.block_index;
    record.latents = result.latents;
    for (const strand::Frame& frame : result.frames) record.frames << toImage(frame);
    record.state_after = std::make_shared<const strand::MemoryState>(session.snapshot());
    check(project.appendBlock(ProjectModel::kRootId, std::move(record)));
  }
  ProjectMeta meta;
  QString error;
  check(saveProject(project, meta, g_folder, SaveKind::explicit_save, &error));
  const QString key = project.pathBlock(ProjectModel::kRootId, 0)->key;
  g_json = readFile(g_folder + QStringLiteral("/project.json"));
  g_blk = g_folder + QStringLiteral("/cache/%1.blk").arg(key);
  g_lat = g_folder + QStringLiteral("/cache/%1.lat").arg(key);
  g_blk_bytes = readFile(g_blk);
  g_lat_bytes = readFile(g_lat);
}

void loadAndCheck() {
  ProjectModel model;
  model.reset(nullptr, 3, 0);
  const QList<int> before = model.branchIds();
  ProjectMeta meta;
  QString error;
  if (loadProject(g_folder, false, {}, &model, &meta, &error)) {
    check(model.checkInvariants().isEmpty());
  } else {
    check(!error.isEmpty());
    check(model.branchIds() == before);  // refused whole: the target is unchanged
  }
}

}  // namespace

// STRAND_FUZZ_PROJECT_SEEDS=DIR writes one seed per mode (the fixture's own files) into DIR.
void writeSeeds(const QString& dir) {
  QDir().mkpath(dir);
  const QByteArray files[] = {g_json, g_blk_bytes, g_blk_bytes, g_lat_bytes};
  for (int mode = 0; mode < 4; ++mode) {
    writeFile(QStringLiteral("%1/seed-%2").arg(dir).arg(mode), QByteArray(1, char(mode)) + files[mode]);
  }
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  makeFixture();
  if (const char* seeds = std::getenv("STRAND_FUZZ_PROJECT_SEEDS")) writeSeeds(QString::fromLocal8Bit(seeds));
  std::atexit([] { QDir(g_folder).removeRecursively(); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const QByteArray rest(reinterpret_cast<const char*>(data + 1), qsizetype(size - 1));
  switch (data[0] % 4) {
    case 0:
      writeFile(g_folder + QStringLiteral("/project.json"), rest);
      loadAndCheck();
      writeFile(g_folder + QStringLiteral("/project.json"), g_json);
      break;
    case 1: {
      QList<QImage> frames;
      std::vector<float> latents;
      QString error;
      if (decodeBlockCache(rest, &frames, &latents, &error)) {
        // What was accepted survives a round trip (headers may be spelled differently).
        QList<QImage> frames2;
        std::vector<float> latents2;
        check(decodeBlockCache(encodeBlockCache(frames, latents), &frames2, &latents2, &error));
        check(frames2 == frames);
        check(latents2.size() == latents.size() &&
              (latents.empty() || std::memcmp(latents.data(), latents2.data(), latents.size() * 4) == 0));
      } else {
        check(!error.isEmpty());
      }
      break;
    }
    case 2:
      writeFile(g_blk, rest);
      loadAndCheck();
      writeFile(g_blk, g_blk_bytes);
      break;
    case 3:
      writeFile(g_lat, rest);
      loadAndCheck();
      writeFile(g_lat, g_lat_bytes);
      break;
  }
  return 0;
}
