// strand-app: the Strand desktop application.
#include <QApplication>
#include <QCommandLineParser>
#include <QIcon>

#include "main_window.h"
#include "model_locator.h"
#include "screenshot_tour.h"
#include "settings_dialog.h"
#include "ui/dark_theme.h"

int main(int argc, char* argv[]) {
  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("Strand"));
  QApplication::setApplicationVersion(QStringLiteral(STRAND_VERSION));
  QApplication::setOrganizationDomain(QStringLiteral("strand.io"));
  QApplication::setDesktopFileName(QStringLiteral("io.strand.Strand"));
  QApplication::setWindowIcon(QIcon::fromTheme(QStringLiteral("io.strand.Strand")));

  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("Interactive long-video generation."));
  parser.addHelpOption();
  parser.addVersionOption();
  const QCommandLineOption model_option(
      {QStringLiteral("m"), QStringLiteral("model")},
      QStringLiteral("Strand model file (.safetensors). Default: the bundled model."),
      QStringLiteral("path"));
  const QCommandLineOption seed_option(QStringLiteral("seed"),
                                       QStringLiteral("Noise seed of the video (default 0)."),
                                       QStringLiteral("n"), QStringLiteral("0"));
  const QCommandLineOption prompt_option({QStringLiteral("p"), QStringLiteral("prompt")},
                                         QStringLiteral("Initial prompt text."),
                                         QStringLiteral("text"));
  const QCommandLineOption project_option(QStringLiteral("project"),
                                          QStringLiteral("Project folder to open."),
                                          QStringLiteral("folder"));
  const QCommandLineOption screenshots_option(
      QStringLiteral("screenshots"),
      QStringLiteral("Run the screenshot tour, save images into this folder and quit."),
      QStringLiteral("folder"));
  parser.addOption(project_option);
  parser.addOption(screenshots_option);
  parser.addOption(model_option);
  parser.addOption(seed_option);
  parser.addOption(prompt_option);
  parser.process(app);

  bool seed_ok = false;
  const quint64 seed = parser.value(seed_option).toULongLong(&seed_ok);
  if (!seed_ok) parser.showHelp(2);  // exits

  strand::ui::applyDarkFusionTheme(app);

  strand::desktop::MainWindow::Options options;
  options.model_path = parser.isSet(model_option)
                           ? parser.value(model_option)
                           : strand::desktop::defaultModelPath(QApplication::applicationDirPath());
  options.seed = seed;
  options.initial_prompt = parser.value(prompt_option);
  options.project_folder = parser.value(project_option);
  // Settings > Device (default: the first usable GPU, else the CPU).
  options.engine.device = strand::desktop::resolveDevice(strand::desktop::loadDeviceSettings());
  const bool tour = parser.isSet(screenshots_option);
  if (tour) {
    options.autosave_interval_ms = 0;
    options.remember_recent = false;
    options.offer_autosave = [](const QString&) { return false; };
  }

  strand::desktop::MainWindow window(options);
  window.resize(1180, 760);
  window.show();
  if (tour) (new strand::desktop::ScreenshotTour(&window, parser.value(screenshots_option)))->start();
  return QApplication::exec();
}
