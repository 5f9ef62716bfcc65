// Event-loop stall measurement shared by the main-window tests.
#pragma once
#include <QElapsedTimer>
#include <QEventLoop>
#include <QObject>
#include <QTimer>
#include <algorithm>
#include <cstdio>
#include <functional>

namespace strand::desktop::test {

// Measures the longest gap between ticks of a 1 ms timer: how long the event loop was blocked.
// A gap is the GUI thread running, waiting (a lock, a sleep), or runnable but not given a core by
// the OS. The last part (Linux: run_delay in /proc/thread-self/schedstat) depends on what else
// the machine runs, so it is reported apart: `own` = gap minus that runqueue wait is what our
// code is responsible for.
class StallMonitor {
 public:
  StallMonitor() {
    timer_.setTimerType(Qt::PreciseTimer);
    timer_.setInterval(1);
    QObject::connect(&timer_, &QTimer::timeout, [this] {
      const auto gap_ms = static_cast<double>(clock_.nsecsElapsed()) / 1e6;
      clock_.restart();
      const double wait_ms = runQueueWaitMs();
      const double own_ms = gap_ms - (wait_ms - last_wait_ms_);
      last_wait_ms_ = wait_ms;
      max_gap_ms_ = std::max(max_gap_ms_, gap_ms);
      max_own_ms_ = std::max(max_own_ms_, own_ms);
      ++ticks_;
    });
    last_wait_ms_ = runQueueWaitMs();
    clock_.start();
    timer_.start();
  }
  [[nodiscard]] double maxGapMs() const { return max_gap_ms_; }
  [[nodiscard]] double maxOwnMs() const { return max_own_ms_; }
  [[nodiscard]] qint64 ticks() const { return ticks_; }

 private:
  // Total time this thread spent runnable but waiting for a CPU (0 where unavailable).
  static double runQueueWaitMs() {
    std::FILE* file = std::fopen("/proc/thread-self/schedstat", "r");
    if (file == nullptr) return 0;
    unsigned long long run_ns = 0, wait_ns = 0;
    const int fields = std::fscanf(file, "%llu %llu", &run_ns, &wait_ns);
    std::fclose(file);
    return fields == 2 ? static_cast<double>(wait_ns) / 1e6 : 0.0;
  }

  QTimer timer_;
  QElapsedTimer clock_;
  double max_gap_ms_ = 0;
  double max_own_ms_ = 0;
  double last_wait_ms_ = 0;
  qint64 ticks_ = 0;
};

// Runs the event loop until `done()` holds (checked every 5 ms) or the timeout passes. Unlike
// QTRY_* / QTest::qWait, which sleep 10 ms between event batches, this leaves the loop free, so
// the stall measurement sees only the app's own delays.
inline bool spinUntil(const std::function<bool()>& done, int timeout_ms) {
  QEventLoop loop;
  QTimer poll;
  QObject::connect(&poll, &QTimer::timeout, &loop, [&] {
    if (done()) loop.quit();
  });
  QTimer::singleShot(timeout_ms, &loop, &QEventLoop::quit);
  poll.start(5);
  if (!done()) loop.exec();
  return done();
}

}  // namespace strand::desktop::test
