// EngineWorker::blockCommitted and continueFrom, on the golden model: every committed block
// arrives with all its frames, latents and the snapshot after it; continuing from a snapshot with
// a seed and prompt gives what a plain Session gives from the same snapshot, seed and prompt.
#include <QSignalSpy>
#include <QtTest>

#include "engine_worker.h"
#include "strand/model.h"
#include "strand/session.h"

using namespace strand::desktop;

namespace {

constexpr int kTimeoutMs = 30000;
const QString kModel = QStringLiteral(STRAND_SOURCE_DIR "/tests/data/golden-model.safetensors");

}  // namespace

class TestEngineWorkerCommits : public QObject {
  Q_OBJECT

 private slots:
  void commitsCarryEverythingAndContinueFromReproduces() {
    EngineWorker worker;
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    QSignalSpy committed(&worker, &EngineWorker::blockCommitted);
    worker.loadModel(kModel, 3);
    QVERIFY(loaded.wait(kTimeoutMs));
    const ModelInfo info = loaded[0][0].value<ModelInfo>();
    QVERIFY(info.initial_state);
    QCOMPARE(info.initial_state->next_block, 0);
    QVERIFY(info.model != nullptr);
    QCOMPARE(info.steps, int(info.model->config().sigmas.size()));

    worker.setPrompt(QStringLiteral("a red balloon"));
    worker.generate(2);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 2, kTimeoutMs);
    for (int i = 0; i < 2; ++i) {
      const auto block = committed[i][0].value<CommittedBlock>();
      QCOMPARE(block.block_index, qint64(i));
      QCOMPARE(block.frames.size(), info.frames_per_block);
      QVERIFY(!block.latents.empty());
      QVERIFY(block.state_after);
      QCOMPARE(block.state_after->next_block, qint64(i + 1));
      QCOMPARE(block.prompt, QStringLiteral("a red balloon"));
      QCOMPARE(block.seed, quint64{3});
    }
    const SnapshotPtr after_first = committed[0][0].value<CommittedBlock>().state_after;

    // Continue from boundary 1 with another seed and prompt, on the worker and on a plain Session.
    const quint64 epoch = worker.continueFrom(after_first, 42, QStringLiteral("green forest"));
    worker.generate(1);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 3, kTimeoutMs);
    const auto branched = committed[2][0].value<CommittedBlock>();
    QCOMPARE(branched.epoch, epoch);
    QCOMPARE(branched.block_index, qint64{1});
    QCOMPARE(branched.seed, quint64{42});
    QCOMPARE(branched.prompt, QStringLiteral("green forest"));

    strand::Session session(info.model, {});
    session.restore(*after_first);
    session.set_seed(42);
    session.set_prompt("green forest");
    const strand::BlockResult expected = session.generate_next_block();
    QVERIFY(expected.latents == branched.latents);
    for (int f = 0; f < branched.frames.size(); ++f) {
      QCOMPARE(branched.frames[f], toQImage(expected.frames[size_t(f)]));
    }
    QVERIFY(*branched.state_after == session.snapshot());
  }

  // decodeLatents rebuilds a committed block's frames from its latents alone (what repairs a
  // damaged frame cache): the frames equal those the block was committed with, the result comes
  // back as a queued signal (never inside the call), and a wrong size is reported, not thrown.
  void decodeLatentsRebuildsCommittedFrames() {
    EngineWorker worker;
    QSignalSpy loaded(&worker, &EngineWorker::modelLoaded);
    QSignalSpy committed(&worker, &EngineWorker::blockCommitted);
    QSignalSpy decoded(&worker, &EngineWorker::latentsDecoded);
    QSignalSpy failed(&worker, &EngineWorker::latentsDecodeFailed);
    worker.loadModel(kModel, 5);
    QVERIFY(loaded.wait(kTimeoutMs));
    worker.setPrompt(QStringLiteral("a red balloon"));
    worker.generate(2);
    QTRY_COMPARE_WITH_TIMEOUT(committed.count(), 2, kTimeoutMs);
    const auto block = committed[1][0].value<CommittedBlock>();
    const qint64 first_frame = block.block_index * block.frames.size();

    const QThread* gui = QThread::currentThread();
    const QThread* receiving_thread = nullptr;
    connect(&worker, &EngineWorker::latentsDecoded, this,
            [&] { receiving_thread = QThread::currentThread(); }, Qt::DirectConnection);
    worker.decodeLatents(QStringLiteral("k1"), block.latents, first_frame);
    QCOMPARE(decoded.count(), 0);  // queued: the caller never waits for the decode
    QVERIFY(decoded.wait(kTimeoutMs));
    QCOMPARE(receiving_thread, gui);
    QCOMPARE(decoded[0][0].toString(), QStringLiteral("k1"));
    QCOMPARE(decoded[0][1].toLongLong(), first_frame);
    const auto frames = decoded[0][2].value<QList<QImage>>();
    QCOMPARE(frames.size(), block.frames.size());
    for (int f = 0; f < frames.size(); ++f) QCOMPARE(frames[f], block.frames[f]);

    std::vector<float> short_latents(block.latents.begin(), block.latents.end() - 1);
    worker.decodeLatents(QStringLiteral("bad"), short_latents, 0);
    QVERIFY(failed.wait(kTimeoutMs));
    QCOMPARE(failed[0][0].toString(), QStringLiteral("bad"));
    QCOMPARE(decoded.count(), 1);
  }
};

QTEST_MAIN(TestEngineWorkerCommits)
#include "test_engine_worker_commits.moc"
