// Small text formatting helpers shared by the desktop widgets (pure functions, unit-tested).
#pragma once
#include <QString>
#include <QtGlobal>

namespace strand::ui {

// "HH:MM:SS:FF" (SMPTE-style, non-drop-frame) for a 0-based frame index at `fps` frames per
// second. fps <= 0 or a negative index gives "--:--:--:--".
QString timeCode(qint64 frame_index, int fps);

// Binary units with one decimal above KiB: "512 B", "1.5 KiB", "3.2 MiB", "1.0 GiB".
QString formatBytes(qint64 bytes);

}  // namespace strand::ui
