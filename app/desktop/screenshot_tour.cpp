#include "screenshot_tour.h"

#include <QApplication>
#include <QLineEdit>
#include <QDir>
#include <QDockWidget>
#include <QSpinBox>
#include <QTimer>
#include <QTreeWidget>
#include <cstdio>

#include "export_dialog.h"
#include "export_queue.h"
#include "export_queue_dock.h"
#include "main_window.h"
#include "ui/prompt_edit.h"
#include "ui/timeline_widget.h"

namespace strand::desktop {

ScreenshotTour::ScreenshotTour(MainWindow* window, QString output_dir)
    : QObject(window), window_(window), output_dir_(std::move(output_dir)) {
  ProjectModel* project = window_->project();
  const auto generate = [this](const QString& prompt, int blocks) {
    window_->promptEdit()->setText(prompt);
    window_->applyPrompt();
    window_->blocksSpin()->setValue(blocks);
    window_->startGeneration();
    next();
  };
  steps_ = {
      [this] { waitFor([this] { return window_->modelLoaded(); }, [this] { next(); }); },
      [generate] { generate(QStringLiteral("a red balloon over snowy mountains at dusk"), 4); },
      [this, project] {
        waitFor([this, project] { return idle() && project->pathLength(ProjectModel::kRootId) >= 4; }, [this] { next(); });
      },
      [generate] { generate(QStringLiteral("birds over a green forest at dawn"), 4); },
      [this, project] {
        waitFor([this, project] { return idle() && project->pathLength(ProjectModel::kRootId) >= 8; }, [this] {
          window_->seek(10);
          save(window_, QStringLiteral("app-main.png"));
          save(window_->timeline(), QStringLiteral("app-timeline.png"));
          next();
        });
      },
      [this, generate] {
        window_->branchFromBoundary(2);
        generate(QStringLiteral("a lighthouse on a stormy sea"), 4);
      },
      [this, project] {
        waitFor([this, project] { return idle() && project->pathLength(project->activeBranch()) >= 6; }, [this] {
          window_->seek(7);
          save(window_, QStringLiteral("app-branch.png"));
          if (auto* dock = window_->findChild<QDockWidget*>(QStringLiteral("branches"))) {
            save(dock, QStringLiteral("app-branches.png"));
          }
          next();
        });
      },
      [this] {
        // An unknown word (not in the vocabulary) to show the prompt highlighting.
        window_->promptEdit()->setText(QStringLiteral("a lighthouse on a stormy sea with a жар firebird"));
        QTimer::singleShot(200, this, [this] {
          save(window_->promptEdit()->parentWidget(), QStringLiteral("app-prompt.png"));
          next();
        });
      },
      [this] {
        // File > Export with the Final Cut preset, then the queue once the export is done. The
        // media goes to a scratch folder, never next to the screenshots.
        window_->showExportDialog();
        QTimer::singleShot(300, this, [this] {
          auto* dialog = window_->findChild<ExportDialog*>();
          if (dialog == nullptr) return next();
          QDir().mkpath(exportScratch());
          dialog->setTarget(ExportTarget::final_cut);
          dialog->pathEdit()->setText(QDir(exportScratch()).filePath(QStringLiteral("balloon.mov")));
          save(dialog, QStringLiteral("app-export-dialog.png"));
          dialog->setConfirmOverwrite([](const QStringList&) { return true; });
          dialog->setRememberSettings(false);  // the user's own export choices stay as they were
          dialog->accept();
          if (dialog->result() != QDialog::Accepted) dialog->reject();  // e.g. no ProRes encoder
          next();
        });
      },
      [this] {
        waitFor([this] { return !window_->exportQueue()->hasActiveJobs(); }, [this] {
          window_->exportDock()->show();
          QTimer::singleShot(200, this, [this] {
            save(window_->exportDock(), QStringLiteral("app-export-queue.png"));
            QDir(exportScratch()).removeRecursively();
            next();
          });
        });
      },
      [] { QApplication::quit(); },
  };
}

QString ScreenshotTour::exportScratch() const {
  return QDir::temp().filePath(QStringLiteral("strand-tour-export-%1").arg(QCoreApplication::applicationPid()));
}

void ScreenshotTour::start() {
  QDir().mkpath(output_dir_);
  step_ = 0;
  QTimer::singleShot(0, this, [this] { steps_[0](); });
}

void ScreenshotTour::next() {
  if (++step_ < steps_.size()) QTimer::singleShot(100, this, [this] { steps_[step_](); });
}

bool ScreenshotTour::idle() const { return window_->engine()->state() == EngineState::ready; }

void ScreenshotTour::waitFor(std::function<bool()> done, std::function<void()> then) {
  auto* poll = new QTimer(this);
  connect(poll, &QTimer::timeout, this, [poll, done = std::move(done), then = std::move(then)] {
    if (!done()) return;
    poll->stop();
    poll->deleteLater();
    then();
  });
  poll->start(50);
}

void ScreenshotTour::save(QWidget* widget, const QString& name) {
  const QString path = QDir(output_dir_).filePath(name);
  const bool ok = widget->grab().save(path);
  std::fprintf(ok ? stdout : stderr, "%s %s\n", ok ? "wrote" : "FAILED to write", qPrintable(path));
}

}  // namespace strand::desktop
