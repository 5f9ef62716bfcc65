// An untitled project's autosave is offered at the next start: a window generates on an untitled
// project (the milestone autosave writes it to the data folder) and goes away without saving, as
// after a crash; the next window offers it, and accepting it brings back the same blocks, still
// untitled. Declining sets it aside so it is not offered again; a Save of the recovered work
// removes it. The data folder is a temporary XDG_DATA_HOME.
#include <QDir>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest>

#include "main_window.h"
#include "project_file.h"
#include "project_test_support.h"

using namespace strand::desktop;

namespace {

constexpr int kTimeoutMs = 30000;

MainWindow::Options optionsOffering(QStringList* offered, bool accept) {
  MainWindow::Options options;
  options.model_path = test::goldenModelPath();
  options.seed = 4;
  options.initial_prompt = QStringLiteral("a red balloon over snowy mountains");
  options.autosave_interval_ms = 0;  // only the milestone autosave (generation stopped)
  options.remember_recent = false;
  options.offer_autosave = [offered, accept](const QString& folder) {
    *offered << folder;
    return accept;
  };
  return options;
}

QString autosaveFile() {
  return QDir(MainWindow::untitledAutosaveFolder()).filePath(QLatin1String(kAutosaveFile));
}

}  // namespace

class TestUntitledAutosave : public QObject {
  Q_OBJECT

  QTemporaryDir data_dir_;

 private slots:
  void initTestCase() {
    QVERIFY(data_dir_.isValid());
    qputenv("XDG_DATA_HOME", data_dir_.path().toUtf8());
    QVERIFY(MainWindow::untitledAutosaveFolder().startsWith(data_dir_.path()));
  }

  void offeredAtNextStartAndRecovered() {
    QList<QImage> frames;
    QStringList offered;
    {
      MainWindow first(optionsOffering(&offered, true));
      QTRY_VERIFY_WITH_TIMEOUT(first.modelLoaded(), kTimeoutMs);
      QVERIFY(offered.isEmpty());  // nothing to offer yet
      first.blocksSpin()->setValue(2);
      first.startGeneration();
      QTRY_VERIFY_WITH_TIMEOUT(first.project()->pathLength(ProjectModel::kRootId) == 2 &&
                                   first.engine()->state() == EngineState::ready,
                               kTimeoutMs);
      QTRY_VERIFY_WITH_TIMEOUT(QFileInfo::exists(autosaveFile()), kTimeoutMs);
      frames = test::pathFrames(*first.project(), ProjectModel::kRootId);
    }  // gone without saving

    MainWindow second(optionsOffering(&offered, true));
    QTRY_VERIFY_WITH_TIMEOUT(second.modelLoaded(), kTimeoutMs);
    QCOMPARE(offered, QStringList{MainWindow::untitledAutosaveFolder()});
    QCOMPARE(second.project()->pathLength(ProjectModel::kRootId), qint64{2});
    QCOMPARE(test::pathFrames(*second.project(), ProjectModel::kRootId), frames);
    QVERIFY(second.projectFolder().isEmpty());  // still untitled: Save asks where
    QVERIFY(second.isProjectModified());

    // Saving it gives it a folder: the untitled autosave is no longer needed.
    QTemporaryDir saved;
    QVERIFY(second.saveProjectTo(saved.path()));
    QVERIFY(!QFileInfo::exists(autosaveFile()));
  }

  void declinedIsSetAsideNotOfferedAgain() {
    QStringList offered;
    {
      MainWindow first(optionsOffering(&offered, false));
      QTRY_VERIFY_WITH_TIMEOUT(first.modelLoaded(), kTimeoutMs);
      first.blocksSpin()->setValue(1);
      first.startGeneration();
      QTRY_VERIFY_WITH_TIMEOUT(QFileInfo::exists(autosaveFile()), kTimeoutMs);
    }
    {
      MainWindow second(optionsOffering(&offered, false));
      QTRY_VERIFY_WITH_TIMEOUT(second.modelLoaded(), kTimeoutMs);
      QCOMPARE(offered.size(), 1);
      QCOMPARE(second.project()->pathLength(ProjectModel::kRootId), qint64{0});
      QVERIFY(!QFileInfo::exists(autosaveFile()));
      QVERIFY(QFileInfo::exists(autosaveFile() + QStringLiteral(".declined")));
    }
    MainWindow third(optionsOffering(&offered, false));
    QTRY_VERIFY_WITH_TIMEOUT(third.modelLoaded(), kTimeoutMs);
    QCOMPARE(offered.size(), 1);  // not offered again
  }
};

QTEST_MAIN(TestUntitledAutosave)
#include "test_untitled_autosave.moc"
