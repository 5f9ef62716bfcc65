// The app's look: Qt's Fusion style with a dark palette (readable on any desktop theme, and a
// neutral surround for judging video colours).
#pragma once

class QApplication;

namespace strand::ui {

void applyDarkFusionTheme(QApplication& app);

}  // namespace strand::ui
