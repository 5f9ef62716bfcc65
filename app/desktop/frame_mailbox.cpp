#include "frame_mailbox.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace strand::desktop {

FrameMailbox::FrameMailbox(size_t capacity, FrameOverflow overflow)
    : capacity_(std::max<size_t>(capacity, 1)), overflow_(overflow) {}

FrameMailbox::PushResult FrameMailbox::push(PendingFrame frame,
                                            const std::function<bool()>& abandon) {
  std::unique_lock lock(mutex_);
  if (frames_.size() >= capacity_) {
    if (overflow_ == FrameOverflow::drop_oldest) {
      frames_.pop_front();
      ++dropped_;
    } else {
      // The timeout is a safety net only: whoever changes the abandon condition calls wakeAll().
      while (frames_.size() >= capacity_) {
        if (abandon && abandon()) return PushResult::abandoned;
        space_available_.wait_for(lock, std::chrono::milliseconds(50));
      }
    }
  }
  frames_.push_back(std::move(frame));
  if (notify_pending_) return PushResult::queued;
  notify_pending_ = true;
  return PushResult::queued_notify;
}

std::vector<PendingFrame> FrameMailbox::takeAll() {
  std::vector<PendingFrame> taken;
  {
    std::lock_guard lock(mutex_);
    taken.reserve(frames_.size());
    for (auto& frame : frames_) taken.push_back(std::move(frame));
    frames_.clear();
    notify_pending_ = false;
  }
  space_available_.notify_all();
  return taken;
}

void FrameMailbox::wakeAll() {
  // Taking the lock orders the predicate change before the waiter's next check.
  { std::lock_guard lock(mutex_); }
  space_available_.notify_all();
}

size_t FrameMailbox::size() const {
  std::lock_guard lock(mutex_);
  return frames_.size();
}

qint64 FrameMailbox::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

}  // namespace strand::desktop
