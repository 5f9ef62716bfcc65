// EngineWorker on a failing GPU (tests/app/fake_gpu.h: no GPU needed). Out of memory stops
// generation with the unfinished block dropped and the session where it was; "continue on the
// CPU" resumes from the last good boundary and gives the frames a CPU-only run gives from there.
// A sticky device error fails the engine: every command is refused (no crash) until setDevice()
// rebuilds it from the last good boundary. A device change mid-generation loses no block.
#include <QSignalSpy>
#include <QtTest>
#include <cmath>

#include "engine_worker.h"
#include "fake_gpu.h"
#include "strand/devices.h"
#include "strand/model.h"
#include "strand/session.h"

using namespace strand::desktop;
using strand::desktop::test::FakeGpu;

namespace {

constexpr int kTimeoutMs = 30000;
const QString kModel = QStringLiteral(STRAND_SOURCE_DIR "/tests/data/golden-model.safetensors");
const QString kPrompt = QStringLiteral("a red balloon over snowy mountains");

CommittedBlock blockAt(const QSignalSpy& committed, int i) {
  return committed[i][0].value<CommittedBlock>();
}

// What a CPU-only session makes from `start`: `blocks` blocks, compared with `got` frame by frame.
void expectCpuContinuation(const std::shared_ptr<const strand::Model>& model,
                           const strand::MemoryState& start, const QList<CommittedBlock>& got,
                           const QString& prompt = {}) {
  strand::Session session(model, {});
  session.restore(start);
  if (!prompt.isEmpty()) session.set_prompt(prompt.toStdString());
  for (const CommittedBlock& block : got) {
    const strand::BlockResult expected = session.generate_next_block();
    QCOMPARE(block.block_index, expected.block_index);
    QVERIFY(block.latents == expected.latents);
    QCOMPARE(block.frames.size(), qsizetype(expected.frames.size()));
    for (qsizetype f = 0; f < block.frames.size(); ++f) {
      QCOMPARE(block.frames[f], toQImage(expected.frames[size_t(f)]));
    }
    QVERIFY(*block.state_after == session.snapshot());
  }
}

// ||a - b|| / ||b||.
double relativeError(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return a.size() == b.size() ? std::sqrt(diff / std::max(norm, 1e-30)) : 1e30;
}

}  // namespace

class TestEngineDeviceFaults : public QObject {
  Q_OBJECT

 private slots:
  void outOfMemoryStopsCleanlyAndContinuesOnCpu() {
    auto gpu = std::make_shared<FakeGpu>();
    EngineWorker worker(test::fakeGpuOptions(gpu));
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    QSignalSpy committed(&worker, &EngineWorker::blockCommitted);
    QSignalSpy failed(&worker, &EngineWorker::deviceFailed);
    QSignalSpy changed(&worker, &EngineWorker::deviceChanged);
    worker.loadModel(kModel, 7);
    QVERIFY(loaded.wait(kTimeoutMs));
    QTRY_COMPARE_WITH_TIMEOUT(changed.count(), 1, kTimeoutMs);
    QVERIFY(changed[0][0].value<EngineDevice>().isGpu());
    const auto model = loaded[0][0].value<ModelInfo>().model;

    gpu->out_of_memory_at_block = 2;
    worker.setPrompt(kPrompt);
    worker.generate(4);
    QVERIFY(failed.wait(kTimeoutMs));
    const auto failure = failed[0][0].value<DeviceFailure>();
    QCOMPARE(failure.kind, DeviceFailureKind::out_of_memory);
    QVERIFY(failure.device.isGpu());
    QVERIFY(failure.reason.contains(QStringLiteral("out of memory")));
    QCOMPARE(failure.next_block, qint64{2});
    QVERIFY(failure.interrupted_generation);
    // Stopped cleanly: the two good blocks, nothing of the third, the session still usable.
    QTRY_COMPARE_WITH_TIMEOUT(worker.state(), EngineState::ready, kTimeoutMs);
    QTest::qWait(50);
    QCOMPARE(committed.count(), 2);
    QCOMPARE(worker.blocksGenerated(), qint64{2});
    QVERIFY(worker.device().isGpu());
    const CommittedBlock last_good = blockAt(committed, 1);

    // Continue on the CPU: the remaining two blocks of the four asked for, from boundary 2.
    worker.setDevice(cpuEngineDevice(), /*resume_interrupted=*/true);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 4, kTimeoutMs);
    QTRY_COMPARE_WITH_TIMEOUT(worker.state(), EngineState::ready, kTimeoutMs);
    QVERIFY(!worker.device().isGpu());
    QVERIFY(!changed.last()[0].value<EngineDevice>().isGpu());
    QVERIFY(gpu->built() == (std::vector{strand::DeviceKind::cuda, strand::DeviceKind::cpu}));
    expectCpuContinuation(model, *last_good.state_after,
                          {blockAt(committed, 2), blockAt(committed, 3)});
    QCOMPARE(failed.count(), 1);
  }

  void deviceErrorFailsTheEngineUntilRebuilt() {
    auto gpu = std::make_shared<FakeGpu>();
    EngineWorker worker(test::fakeGpuOptions(gpu));
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    QSignalSpy committed(&worker, &EngineWorker::blockCommitted);
    QSignalSpy failed(&worker, &EngineWorker::deviceFailed);
    QSignalSpy errors(&worker, &EngineWorker::error);
    QSignalSpy rejected(&worker, &EngineWorker::promptRejected);
    QSignalSpy decode_failed(&worker, &EngineWorker::latentsDecodeFailed);
    QSignalSpy snapshots(&worker, &EngineWorker::snapshotReady);
    worker.loadModel(kModel, 11);
    QVERIFY(loaded.wait(kTimeoutMs));
    const auto model = loaded[0][0].value<ModelInfo>().model;

    gpu->device_error_at_block = 1;
    worker.setPrompt(kPrompt);
    worker.generate(3);
    QVERIFY(failed.wait(kTimeoutMs));
    QCOMPARE(failed[0][0].value<DeviceFailure>().kind, DeviceFailureKind::device_lost);
    QCOMPARE(failed[0][0].value<DeviceFailure>().next_block, qint64{1});
    QTRY_COMPARE_WITH_TIMEOUT(worker.state(), EngineState::failed, kTimeoutMs);
    QCOMPARE(committed.count(), 1);
    const CommittedBlock last_good = blockAt(committed, 0);

    // Every engine command is refused with a message that says how to go on.
    errors.clear();
    worker.generate(1);
    worker.setPrompt(QStringLiteral("green forest"));
    worker.requestSnapshot();
    worker.continueFrom(last_good.state_after, 11, kPrompt);
    worker.decodeLatents(QStringLiteral("tag"), last_good.latents, 0);
    QTRY_COMPARE_WITH_TIMEOUT(decode_failed.count(), 1, kTimeoutMs);
    QCOMPARE(errors.count(), 4);  // generate, prompt, snapshot, continue
    for (const QList<QVariant>& e : errors) {
      QVERIFY2(e[0].toString().contains(QStringLiteral("Switch to the CPU")),
               qPrintable(e[0].toString()));
    }
    QCOMPARE(rejected.count(), 1);
    QCOMPARE(snapshots.count(), 0);
    QTest::qWait(50);
    QCOMPARE(committed.count(), 1);
    QCOMPARE(worker.state(), EngineState::failed);

    // Switch to the CPU: back at the last good boundary, nothing resumed until asked.
    worker.setDevice(cpuEngineDevice());
    QTRY_COMPARE_WITH_TIMEOUT(worker.state(), EngineState::ready, kTimeoutMs);
    QTest::qWait(50);
    QCOMPARE(committed.count(), 1);
    worker.generate(2);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 3, kTimeoutMs);
    expectCpuContinuation(model, *last_good.state_after,
                          {blockAt(committed, 1), blockAt(committed, 2)});
  }

  void outOfMemoryWhileLoadingRetriesOnCpu() {
    auto gpu = std::make_shared<FakeGpu>();
    gpu->out_of_memory_on_create = true;
    EngineWorker worker(test::fakeGpuOptions(gpu));
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    QSignalSpy failed(&worker, &EngineWorker::deviceFailed);
    worker.loadModel(kModel, 1);
    QVERIFY(failed.wait(kTimeoutMs));
    QCOMPARE(failed[0][0].value<DeviceFailure>().kind, DeviceFailureKind::out_of_memory);
    QVERIFY(!failed[0][0].value<DeviceFailure>().interrupted_generation);
    QTRY_COMPARE_WITH_TIMEOUT(worker.state(), EngineState::no_model, kTimeoutMs);
    QCOMPARE(loaded.count(), 0);

    worker.setDevice(cpuEngineDevice(), true);
    QVERIFY(loaded.wait(kTimeoutMs));
    QTRY_COMPARE_WITH_TIMEOUT(worker.state(), EngineState::ready, kTimeoutMs);
    QVERIFY(!worker.device().isGpu());
  }

  // Settings > Device while generating: the session moves at its block boundary; the block in
  // flight is made again there. Every block arrives once, in order, as a single-device run gives.
  // A device that cannot be used leaves the engine where it was, still generating.
  void deviceChangeMidGenerationLosesNothing() {
    auto gpu = std::make_shared<FakeGpu>();
    EngineWorker worker(test::fakeGpuOptions(gpu, /*start_on_gpu=*/false));
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    QSignalSpy committed(&worker, &EngineWorker::blockCommitted);
    QSignalSpy errors(&worker, &EngineWorker::error);
    QSignalSpy changed(&worker, &EngineWorker::deviceChanged);
    worker.loadModel(kModel, 5);
    QVERIFY(loaded.wait(kTimeoutMs));
    const ModelInfo info = loaded[0][0].value<ModelInfo>();

    worker.setPrompt(kPrompt);
    gpu->holdAt(1);
    worker.generate(5);
    QVERIFY(gpu->waitUntilHeld(1, kTimeoutMs));
    worker.setDevice(test::fakeGpuDevice());  // block 1 is in flight (held): made again on the GPU
    gpu->holdAt(3);
    gpu->release();
    QVERIFY(gpu->waitUntilHeld(3, kTimeoutMs));
    QTRY_COMPARE_WITH_TIMEOUT(changed.count(), 2, kTimeoutMs);
    QVERIFY(changed.last()[0].value<EngineDevice>().isGpu());
    gpu->out_of_memory_on_create = true;  // the GPU cannot take another session
    worker.setDevice(cpuEngineDevice());
    worker.setDevice(test::fakeGpuDevice());
    gpu->release();
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 5, kTimeoutMs);
    QTRY_COMPARE_WITH_TIMEOUT(worker.state(), EngineState::ready, kTimeoutMs);
    QVERIFY(!worker.device().isGpu());
    QCOMPARE(errors.count(), 1);
    QVERIFY(errors[0][0].toString().contains(QStringLiteral("Staying on")));
    using strand::DeviceKind;
    // CPU, GPU, CPU, GPU (refused), then back to the CPU.
    QVERIFY(gpu->built() == (std::vector{DeviceKind::cpu, DeviceKind::cuda, DeviceKind::cpu,
                                         DeviceKind::cuda, DeviceKind::cpu}));

    QList<CommittedBlock> blocks;
    for (int i = 0; i < committed.count(); ++i) {
      blocks << blockAt(committed, i);
      QCOMPARE(blocks.last().block_index, qint64(i));
    }
    expectCpuContinuation(info.model, *info.initial_state, blocks, kPrompt);
  }

  // Only where a GPU is usable (skipped elsewhere): the worker on a real CUDA session in fp32
  // matches the CPU to float rounding, reports its memory, and moves to the CPU mid-video.
  void realGpuWhenPresent() {
    const EngineDevice gpu = resolveDeviceForTest();
    if (!gpu.isGpu()) QSKIP("no GPU usable by this build's engine");
    EngineWorker worker([&] {
      EngineWorkerOptions options;
      options.device = gpu;
      return options;
    }());
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    QSignalSpy committed(&worker, &EngineWorker::blockCommitted);
    QSignalSpy failed(&worker, &EngineWorker::deviceFailed);
    worker.loadModel(kModel, 3);
    QVERIFY(loaded.wait(kTimeoutMs));
    const ModelInfo info = loaded[0][0].value<ModelInfo>();
    const auto usage = strand::gpu_memory_usage(gpu.index);
    QVERIFY(usage.has_value() && usage->used_bytes > 0 && usage->used_bytes <= usage->total_bytes);
    worker.setPrompt(kPrompt);
    worker.generate(2);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 2, kTimeoutMs);
    worker.setDevice(cpuEngineDevice());
    worker.generate(1);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 3, kTimeoutMs);
    QCOMPARE(failed.count(), 0);

    strand::Session cpu(info.model, {});
    cpu.restore(*info.initial_state);
    cpu.set_prompt(kPrompt.toStdString());
    for (int i = 0; i < 2; ++i) {
      const strand::BlockResult expected = cpu.generate_next_block();
      const double error = relativeError(blockAt(committed, i).latents, expected.latents);
      QVERIFY2(error < 1e-3, qPrintable(QStringLiteral("block %1: %2").arg(i).arg(error)));
    }
    // After the move the CPU continues from the GPU's boundary exactly.
    expectCpuContinuation(info.model, *blockAt(committed, 1).state_after, {blockAt(committed, 2)});
  }

 private:
  static EngineDevice resolveDeviceForTest() {
    for (const strand::ComputeDevice& device : strand::compute_devices()) {
      if (device.kind == "cuda" && device.usable_by_engine) {
        EngineDevice gpu;
        gpu.kind = strand::DeviceKind::cuda;
        gpu.index = device.index;
        gpu.precision = strand::ComputePrecision::fp32;
        gpu.name = QString::fromStdString(device.description);
        return gpu;
      }
    }
    return cpuEngineDevice();
  }
};

QTEST_MAIN(TestEngineDeviceFaults)
#include "test_engine_device_faults.moc"
