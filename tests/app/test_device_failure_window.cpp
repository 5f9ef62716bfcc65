// The window on a failing GPU (tests/app/fake_gpu.h: no GPU needed). Out of memory: a clear
// message with "Continue on CPU"; the project and its files stay exactly as they were (hashes);
// continuing gives the frames a CPU-only run gives from the last snapshot. A sticky device error:
// the engine is stopped and refuses work, the project is autosaved, "Switch to CPU" brings it
// back. And the device settings: persisted, resolved (automatic = first usable GPU, else the CPU),
// offered in the Settings dialog.
#include <QComboBox>
#include <QCryptographicHash>
#include <QDir>
#include <QDirIterator>
#include <QMessageBox>
#include <QPushButton>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QtTest>

#include "fake_gpu.h"
#include "main_window.h"
#include "project_file.h"
#include "project_test_support.h"
#include "settings_dialog.h"

using namespace strand::desktop;
using strand::desktop::test::FakeGpu;

namespace {

constexpr int kTimeoutMs = 30000;
const QString kPrompt = QStringLiteral("a red balloon over snowy mountains");

MainWindow::Options optionsOnFakeGpu(const std::shared_ptr<FakeGpu>& gpu) {
  MainWindow::Options options;
  options.model_path = test::goldenModelPath();
  options.seed = 9;
  options.initial_prompt = kPrompt;
  options.autosave_interval_ms = 0;
  options.remember_recent = false;
  options.offer_autosave = [](const QString&) { return false; };
  options.engine = test::fakeGpuOptions(gpu);
  return options;
}

// SHA-256 over every file of `folder` (relative names and contents, in name order).
QByteArray folderHash(const QString& folder) {
  QStringList files;
  QDirIterator it(folder, QDir::Files | QDir::Hidden, QDirIterator::Subdirectories);
  while (it.hasNext()) files << QDir(folder).relativeFilePath(it.next());
  files.sort();
  QCryptographicHash hash(QCryptographicHash::Sha256);
  for (const QString& name : files) {
    QFile file(QDir(folder).filePath(name));
    if (!file.open(QIODevice::ReadOnly)) return {};
    hash.addData(name.toUtf8());
    hash.addData(file.readAll());
  }
  return hash.result();
}

QPushButton* cpuButton(const MainWindow& window) {
  QMessageBox* box = window.deviceFailureBox();
  return box != nullptr ? box->findChild<QPushButton*>(QStringLiteral("continueOnCpu")) : nullptr;
}

// The frames of blocks [from, to) of the root branch equal a CPU-only session's from the
// snapshot at boundary `from` (its seed and prompt).
void expectCpuFrames(const ProjectModel& project, qint64 from, qint64 to) {
  test::Engine cpu;
  cpu.session->restore(*project.snapshotAtBoundary(ProjectModel::kRootId, from));
  const int fpb = project.framesPerBlock();
  for (qint64 block = from; block < to; ++block) {
    const strand::BlockResult expected = cpu.session->generate_next_block();
    QCOMPARE(expected.block_index, block);
    for (int f = 0; f < fpb; ++f) {
      QCOMPARE(project.frame(ProjectModel::kRootId, block * fpb + f),
               toQImage(expected.frames[size_t(f)]));
    }
  }
}

strand::ComputeDevice listed(const char* kind, int index, bool usable, const char* description) {
  strand::ComputeDevice device;
  device.kind = kind;
  device.index = index;
  device.usable_by_engine = usable;
  device.description = description;
  return device;
}

}  // namespace

class TestDeviceFailureWindow : public QObject {
  Q_OBJECT

  QTemporaryDir home_;

 private slots:
  void initTestCase() {
    QVERIFY(home_.isValid());
    // Autosaves and settings go to this temporary home, never the user's.
    qputenv("XDG_DATA_HOME", QDir(home_.path()).filePath(QStringLiteral("data")).toUtf8());
    qputenv("XDG_CONFIG_HOME", QDir(home_.path()).filePath(QStringLiteral("config")).toUtf8());
    QCoreApplication::setOrganizationName(QStringLiteral("strand-tests"));
    QCoreApplication::setApplicationName(QStringLiteral("test_device_failure_window"));
  }

  void outOfMemoryKeepsTheProjectAndContinuesOnCpu() {
    auto gpu = std::make_shared<FakeGpu>();
    MainWindow window(optionsOnFakeGpu(gpu));
    QTRY_VERIFY_WITH_TIMEOUT(window.modelLoaded(), kTimeoutMs);
    QTRY_VERIFY_WITH_TIMEOUT(window.deviceText().startsWith(QStringLiteral("Fake GPU (bf16)")),
                             kTimeoutMs);
    window.blocksSpin()->setValue(2);
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(window.project()->pathLength(ProjectModel::kRootId) == 2 &&
                                 window.engine()->state() == EngineState::ready,
                             kTimeoutMs);
    QTemporaryDir folder;
    QVERIFY(window.saveProjectTo(folder.path()));
    const QByteArray files_before = folderHash(folder.path());
    QVERIFY(!files_before.isEmpty());
    const quint64 revision_before = window.project()->contentRevision();

    gpu->out_of_memory_at_block = 2;
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(cpuButton(window) != nullptr, kTimeoutMs);
    QVERIFY(window.deviceFailureBox()->text().contains(QStringLiteral("ran out of memory")));
    QCOMPARE(cpuButton(window)->text(), QStringLiteral("Continue on CPU"));
    QVERIFY(window.lastError().contains(QStringLiteral("Out of GPU memory")));
    QTRY_COMPARE_WITH_TIMEOUT(window.engine()->state(), EngineState::ready, kTimeoutMs);
    QTest::qWait(50);
    QCOMPARE(window.project()->pathLength(ProjectModel::kRootId), qint64{2});
    QCOMPARE(window.project()->contentRevision(), revision_before);
    QVERIFY(!window.isProjectModified());
    QCOMPARE(folderHash(folder.path()), files_before);

    cpuButton(window)->click();
    QTRY_VERIFY_WITH_TIMEOUT(window.project()->pathLength(ProjectModel::kRootId) == 4 &&
                                 window.engine()->state() == EngineState::ready,
                             kTimeoutMs);
    QTRY_COMPARE_WITH_TIMEOUT(window.deviceText(), QStringLiteral("CPU"), kTimeoutMs);  // label follows a queued signal
    expectCpuFrames(*window.project(), 2, 4);
  }

  void deviceErrorStopsTheEngineAndSwitchesToCpu() {
    QDir(MainWindow::untitledAutosaveFolder()).removeRecursively();
    auto gpu = std::make_shared<FakeGpu>();
    MainWindow window(optionsOnFakeGpu(gpu));
    QTRY_VERIFY_WITH_TIMEOUT(window.modelLoaded(), kTimeoutMs);
    gpu->device_error_at_block = 1;
    window.blocksSpin()->setValue(3);
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(cpuButton(window) != nullptr, kTimeoutMs);
    QCOMPARE(cpuButton(window)->text(), QStringLiteral("Switch to CPU"));
    QVERIFY(window.deviceFailureBox()->text().contains(QStringLiteral("restart Strand")));
    QTRY_COMPARE_WITH_TIMEOUT(window.engine()->state(), EngineState::failed, kTimeoutMs);
    QTRY_VERIFY_WITH_TIMEOUT(!window.generateButton()->isEnabled(), kTimeoutMs);
    QCOMPARE(window.project()->pathLength(ProjectModel::kRootId), qint64{1});
    // The untitled project was autosaved with its block.
    const QString autosave = MainWindow::untitledAutosaveFolder();
    QVERIFY(QFileInfo::exists(QDir(autosave).filePath(QLatin1String(kAutosaveFile))));
    const QByteArray autosave_files = folderHash(autosave);

    // Refused, not crashed: the project and its autosave do not move.
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(window.lastError().contains(QStringLiteral("Switch to the CPU")),
                             kTimeoutMs);
    QTest::qWait(50);
    QCOMPARE(window.project()->pathLength(ProjectModel::kRootId), qint64{1});
    QCOMPARE(folderHash(autosave), autosave_files);

    cpuButton(window)->click();
    QTRY_COMPARE_WITH_TIMEOUT(window.engine()->state(), EngineState::ready, kTimeoutMs);
    QTRY_COMPARE_WITH_TIMEOUT(window.deviceText(), QStringLiteral("CPU"), kTimeoutMs);  // label follows a queued signal
    QVERIFY(window.generateButton()->isEnabled());
    window.blocksSpin()->setValue(2);
    window.startGeneration();
    QTRY_VERIFY_WITH_TIMEOUT(window.project()->pathLength(ProjectModel::kRootId) == 3 &&
                                 window.engine()->state() == EngineState::ready,
                             kTimeoutMs);
    expectCpuFrames(*window.project(), 1, 3);
  }

  void deviceSettingsPersistAndResolve() {
    const DeviceSettings chosen{QStringLiteral("cuda:1"), QStringLiteral("fp32")};
    saveDeviceSettings(chosen);
    QCOMPARE(loadDeviceSettings(), chosen);
    QSettings().clear();
    QCOMPARE(loadDeviceSettings(), DeviceSettings{});  // default: automatic, bf16

    const std::vector<strand::ComputeDevice> cpu_only{listed("cpu", 0, true, "8 threads")};
    const std::vector<strand::ComputeDevice> two_gpus{listed("cpu", 0, true, "8 threads"),
                                                      listed("cuda", 0, true, "GPU A"),
                                                      listed("cuda", 1, true, "GPU B")};
    const std::vector<strand::ComputeDevice> unusable{listed("cpu", 0, true, "8 threads"),
                                                      listed("cuda", 0, false, "GPU A")};
    QVERIFY(!resolveDevice(DeviceSettings{}, cpu_only).isGpu());
    QVERIFY(!resolveDevice(DeviceSettings{}, unusable).isGpu());
    QVERIFY(!resolveDevice({QStringLiteral("cuda:0"), QStringLiteral("bf16")}, unusable).isGpu());
    const EngineDevice automatic = resolveDevice(DeviceSettings{}, two_gpus);
    QVERIFY(automatic.isGpu());
    QCOMPARE(automatic.index, 0);
    QCOMPARE(automatic.precision, strand::ComputePrecision::bf16);
    QCOMPARE(automatic.name, QStringLiteral("GPU A"));
    const EngineDevice second = resolveDevice(chosen, two_gpus);
    QCOMPARE(second.index, 1);
    QCOMPARE(second.precision, strand::ComputePrecision::fp32);
    QCOMPARE(resolveDevice({QStringLiteral("cuda:7"), QStringLiteral("fp32")}, two_gpus).index,
             0);  // gone: auto
    QVERIFY(!resolveDevice({QStringLiteral("cpu"), QStringLiteral("bf16")}, two_gpus).isGpu());
    QCOMPARE(resolveDevice({QStringLiteral("cpu"), QStringLiteral("bf16")}, two_gpus).precision,
             strand::ComputePrecision::fp32);

    // The dialog offers automatic, the CPU and each GPU; precision only where a GPU is chosen.
    SettingsDialog::Values values;
    values.device = chosen;
    SettingsDialog dialog(values, 4, two_gpus);
    QComboBox* devices = dialog.deviceCombo();
    QCOMPARE(devices->count(), 4);
    QCOMPARE(devices->currentData().toString(), QStringLiteral("cuda:1"));
    QCOMPARE(dialog.precisionCombo()->currentData().toString(), QStringLiteral("fp32"));
    QVERIFY(dialog.precisionCombo()->isEnabled());
    devices->setCurrentIndex(devices->findData(QStringLiteral("cpu")));
    QVERIFY(!dialog.precisionCombo()->isEnabled());
    devices->setCurrentIndex(devices->findData(QStringLiteral("auto")));
    QVERIFY(dialog.precisionCombo()->isEnabled());
    dialog.precisionCombo()->setCurrentIndex(
        dialog.precisionCombo()->findData(QStringLiteral("bf16")));
    QCOMPARE(dialog.values().device, DeviceSettings{});

    SettingsDialog without_gpu(SettingsDialog::Values{}, 4, unusable);
    QVERIFY(!without_gpu.precisionCombo()->isEnabled());  // automatic is the CPU here
    const int gpu_row = without_gpu.deviceCombo()->findData(QStringLiteral("cuda:0"));
    QVERIFY(gpu_row > 0);
    QCOMPARE(without_gpu.deviceCombo()->itemData(gpu_row, Qt::UserRole - 1).toInt(),
             0);  // disabled
  }
};

QTEST_MAIN(TestDeviceFailureWindow)
#include "test_device_failure_window.moc"
