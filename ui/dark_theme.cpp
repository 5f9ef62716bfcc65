#include "ui/dark_theme.h"

#include <QApplication>
#include <QColor>
#include <QPalette>
#include <QStyleFactory>

namespace strand::ui {

void applyDarkFusionTheme(QApplication& app) {
  app.setStyle(QStyleFactory::create(QStringLiteral("Fusion")));

  const QColor window(45, 45, 48);
  const QColor base(30, 30, 32);
  const QColor text(220, 220, 220);
  const QColor disabled_text(128, 128, 128);
  const QColor accent(66, 133, 214);

  QPalette palette;
  palette.setColor(QPalette::Window, window);
  palette.setColor(QPalette::WindowText, text);
  palette.setColor(QPalette::Base, base);
  palette.setColor(QPalette::AlternateBase, window);
  palette.setColor(QPalette::ToolTipBase, base);
  palette.setColor(QPalette::ToolTipText, text);
  palette.setColor(QPalette::PlaceholderText, disabled_text);
  palette.setColor(QPalette::Text, text);
  palette.setColor(QPalette::Button, window);
  palette.setColor(QPalette::ButtonText, text);
  palette.setColor(QPalette::BrightText, QColor(255, 80, 80));
  palette.setColor(QPalette::Link, accent);
  palette.setColor(QPalette::Highlight, accent);
  palette.setColor(QPalette::HighlightedText, Qt::white);
  palette.setColor(QPalette::Disabled, QPalette::Text, disabled_text);
  palette.setColor(QPalette::Disabled, QPalette::ButtonText, disabled_text);
  palette.setColor(QPalette::Disabled, QPalette::WindowText, disabled_text);
  palette.setColor(QPalette::Disabled, QPalette::Highlight, QColor(80, 80, 80));
  app.setPalette(palette);
}

}  // namespace strand::ui
