#include "ui/formatting.h"

#include <array>

namespace strand::ui {

QString timeCode(qint64 frame_index, int fps) {
  if (fps <= 0 || frame_index < 0) return QStringLiteral("--:--:--:--");
  const qint64 frames = frame_index % fps;
  const qint64 total_seconds = frame_index / fps;
  const qint64 seconds = total_seconds % 60;
  const qint64 minutes = (total_seconds / 60) % 60;
  const qint64 hours = total_seconds / 3600;
  return QStringLiteral("%1:%2:%3:%4")
      .arg(hours, 2, 10, QLatin1Char('0'))
      .arg(minutes, 2, 10, QLatin1Char('0'))
      .arg(seconds, 2, 10, QLatin1Char('0'))
      .arg(frames, 2, 10, QLatin1Char('0'));
}

QString formatBytes(qint64 bytes) {
  if (bytes < 1024) return QStringLiteral("%1 B").arg(bytes);
  static constexpr std::array<const char*, 4> kUnits = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < kUnits.size()) {
    value /= 1024.0;
    ++unit;
  }
  return QStringLiteral("%1 %2").arg(value, 0, 'f', 1).arg(QLatin1String(kUnits[unit]));
}

}  // namespace strand::ui
