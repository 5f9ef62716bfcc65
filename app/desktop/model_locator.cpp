#include "model_locator.h"

#include <QDir>
#include <QFileInfo>

namespace strand::desktop {

QStringList bundledModelCandidates(const QString& executable_dir) {
  const QString file = QString::fromLatin1(kBundledModelFile);
  const QDir exe(executable_dir);
  QStringList candidates;
  candidates << QDir::cleanPath(exe.filePath(QStringLiteral("../share/strand/models/") + file));
  candidates << QDir::cleanPath(exe.filePath(QStringLiteral("../resources/models/") + file));
#ifdef STRAND_SOURCE_DIR
  candidates << QDir::cleanPath(QStringLiteral(STRAND_SOURCE_DIR "/resources/models/") + file);
#endif
  candidates.removeDuplicates();
  return candidates;
}

QString defaultModelPath(const QString& executable_dir) {
  const QStringList candidates = bundledModelCandidates(executable_dir);
  for (const QString& path : candidates) {
    if (QFileInfo(path).isFile()) return path;
  }
  return candidates.isEmpty() ? QString() : candidates.last();
}

}  // namespace strand::desktop
