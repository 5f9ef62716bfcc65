// FrameMailbox: the bounded frame hand-off between the engine thread and the GUI (no model needed).
#include <QtTest>
#include <atomic>
#include <chrono>
#include <thread>

#include "frame_mailbox.h"

using strand::desktop::FrameMailbox;
using strand::desktop::FrameOverflow;
using strand::desktop::PendingFrame;

namespace {
PendingFrame frame(qint64 index) {
  return PendingFrame{QImage(4, 2, QImage::Format_RGB888), index, 1};
}
}  // namespace

class TestFrameMailbox : public QObject {
  Q_OBJECT

 private slots:
  void notifiesOncePerBatch() {
    FrameMailbox box(4, FrameOverflow::drop_oldest);
    QCOMPARE(box.push(frame(0)), FrameMailbox::PushResult::queued_notify);
    QCOMPARE(box.push(frame(1)), FrameMailbox::PushResult::queued);
    QCOMPARE(box.takeAll().size(), size_t{2});
    // After a take the consumer must be woken again for the next frame.
    QCOMPARE(box.push(frame(2)), FrameMailbox::PushResult::queued_notify);
  }

  void dropOldestKeepsNewestInOrder() {
    FrameMailbox box(3, FrameOverflow::drop_oldest);
    for (qint64 i = 0; i < 10; ++i) box.push(frame(i));
    QCOMPARE(box.size(), size_t{3});
    QCOMPARE(box.dropped(), qint64{7});
    const auto taken = box.takeAll();
    QCOMPARE(taken.size(), size_t{3});
    QCOMPARE(taken[0].index, qint64{7});
    QCOMPARE(taken[1].index, qint64{8});
    QCOMPARE(taken[2].index, qint64{9});
    QCOMPARE(box.size(), size_t{0});
  }

  void waitPolicyBlocksUntilConsumerTakes() {
    FrameMailbox box(2, FrameOverflow::wait);
    box.push(frame(0));
    box.push(frame(1));
    std::atomic<bool> third_pushed{false};
    std::thread producer([&] {
      box.push(frame(2), [] { return false; });
      third_pushed = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    QVERIFY2(!third_pushed.load(), "push into a full wait-policy box must block");
    auto first = box.takeAll();
    producer.join();
    QVERIFY(third_pushed.load());
    QCOMPARE(first.size(), size_t{2});
    auto second = box.takeAll();
    QCOMPARE(second.size(), size_t{1});
    QCOMPARE(second[0].index, qint64{2});
    QCOMPARE(box.dropped(), qint64{0});
  }

  void waitPolicyAbandonsWhenAsked() {
    FrameMailbox box(1, FrameOverflow::wait);
    box.push(frame(0));
    std::atomic<bool> give_up{false};
    FrameMailbox::PushResult result = FrameMailbox::PushResult::queued;
    std::thread producer([&] { result = box.push(frame(1), [&] { return give_up.load(); }); });
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    QElapsedTimer timer;
    timer.start();
    give_up = true;
    box.wakeAll();
    producer.join();
    QVERIFY(timer.elapsed() < 1000);
    QCOMPARE(result, FrameMailbox::PushResult::abandoned);
    QCOMPARE(box.size(), size_t{1});  // the abandoned frame was not stored
  }
};

QTEST_GUILESS_MAIN(TestFrameMailbox)
#include "test_frame_mailbox.moc"
