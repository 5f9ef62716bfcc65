// FrameMailbox: the bounded hand-off of decoded frames from the engine thread to the GUI thread.
//
// Live preview must never make the engine wait for a slow GUI, nor let frames pile up without
// bound: with FrameOverflow::drop_oldest a full box discards its oldest frame (counted in
// dropped()). Consumers that need every frame (tests, export) use FrameOverflow::wait: the
// producer blocks until the consumer takes frames, or until its `abandon` predicate turns true
// (cancel, edit, shutdown; call wakeAll() after changing what the predicate reads).
//
// The consumer never blocks: takeAll() only holds the lock to swap the queue out.
#pragma once
#include <QImage>
#include <QtGlobal>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

namespace strand::desktop {

enum class FrameOverflow { drop_oldest = 1, wait };

struct PendingFrame {
  QImage image;
  qint64 index = 0;   // frame number in the video
  quint64 epoch = 0;  // edit epoch the frame was generated under (see EngineWorker)
};

class FrameMailbox {
 public:
  // capacity >= 1 frames.
  FrameMailbox(size_t capacity, FrameOverflow overflow);

  enum class PushResult {
    queued,         // stored; a consumer notification is already pending
    queued_notify,  // stored into an idle box: the caller must notify the consumer once
    abandoned,      // wait policy only: `abandon` turned true while waiting; frame not stored
  };
  // Producer side. `abandon` is only consulted by the wait policy (may be empty for drop_oldest).
  PushResult push(PendingFrame frame, const std::function<bool()>& abandon = {});

  // Consumer side: everything queued, oldest first; re-arms the notification.
  std::vector<PendingFrame> takeAll();

  // Wakes producers blocked in push() so they re-check their abandon predicate.
  void wakeAll();

  [[nodiscard]] size_t size() const;
  [[nodiscard]] size_t capacity() const { return capacity_; }
  [[nodiscard]] FrameOverflow overflow() const { return overflow_; }
  [[nodiscard]] qint64 dropped() const;  // frames discarded by drop_oldest overflow

 private:
  const size_t capacity_;
  const FrameOverflow overflow_;
  mutable std::mutex mutex_;
  std::condition_variable space_available_;
  std::deque<PendingFrame> frames_;
  bool notify_pending_ = false;  // a consumer wake-up was requested and takeAll() not yet run
  qint64 dropped_ = 0;
};

}  // namespace strand::desktop
