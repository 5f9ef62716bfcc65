// Where the desktop app finds its bundled model when --model is not given.
#pragma once
#include <QString>
#include <QStringList>

namespace strand::desktop {

inline constexpr const char* kBundledModelFile = "strand-world-v1.safetensors";

// Candidate paths for the bundled model, most specific first: next to an installed executable
// (<prefix>/share/strand/models/), then the source tree this binary was built from
// (STRAND_SOURCE_DIR/resources/models/).
QStringList bundledModelCandidates(const QString& executable_dir);

// The first candidate that exists; if none does, the last one, so that the error message the user
// sees names a concrete path.
QString defaultModelPath(const QString& executable_dir);

}  // namespace strand::desktop
