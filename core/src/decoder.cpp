// The autoencoder's decoder over a block of frames, and the thread a Session decodes on.
#include "decoder.h"

#include <algorithm>
#include <utility>

#include "strand/error.h"

namespace strand {
namespace {

enum ScratchSlot { kLatents = 0, kActivations, kUpsampled, kRgb };

}  // namespace

Decoder::Decoder(std::shared_ptr<const Model> model, Backend& backend)
    : model_(std::move(model)), backend_(&backend) {}

Decoder::Decoder(std::shared_ptr<const Model> model, std::unique_ptr<Backend> backend)
    : model_(std::move(model)), owned_backend_(std::move(backend)), backend_(owned_backend_.get()) {
  if (backend_ == nullptr) throw Error(ErrorKind::invalid_argument, "decoder without a backend");
}

Decoder::~Decoder() {
  // Device buffers go before the backend that made them.
  weights_.clear();
  for (auto& slot : scratch_) slot.reset();
}

const float* Decoder::weight(const std::string& name) {
  const std::vector<float>& host = model_->weight(name);
  if (backend_->device() == DeviceKind::cpu) return host.data();
  auto it = weights_.find(name);
  if (it == weights_.end()) {
    auto buffer = backend_->allocate(host.size());
    backend_->upload(buffer->data(), host.data(), host.size());
    it = weights_.emplace(name, std::move(buffer)).first;
  }
  return it->second->data();
}

float* Decoder::scratch(int slot, size_t count) {
  auto& buffer = scratch_[slot];
  if (!buffer || buffer->count() < count) {
    buffer.reset();  // free first: the old and new sizes need not fit together
    buffer = backend_->allocate(std::max<size_t>(count, 1));
  }
  return buffer->data();
}

std::vector<float> Decoder::decode(const float* latents, int frames,
                                   const std::function<void()>& before_frame) {
  const ModelConfig& c = model_->config();
  const int S = c.stages();
  const auto& ch = c.ae_channels;
  Backend& b = *backend_;
  const size_t latent_count =
      static_cast<size_t>(c.latent_channels) * c.latent_height() * c.latent_width();
  const size_t rgb_count = static_cast<size_t>(3) * c.width * c.height;
  const size_t frame_count = static_cast<size_t>(std::max(frames, 0));
  float* in = scratch(kLatents, latent_count * frame_count);
  float* out = scratch(kRgb, rgb_count * frame_count);
  const size_t max_count = static_cast<size_t>(*std::max_element(ch.begin(), ch.end())) *
                           static_cast<size_t>(c.width) * c.height;
  float* x = scratch(kActivations, max_count);
  float* up = scratch(kUpsampled, max_count);
  b.upload(in, latents, latent_count * frame_count);
  for (size_t f = 0; f < frame_count; ++f) {
    if (before_frame) before_frame();
    int h = c.latent_height(), wd = c.latent_width();
    b.conv2d_3x3(in + f * latent_count, c.latent_channels, h, wd, weight("decoder.conv_in.weight"),
                 weight("decoder.conv_in.bias"), ch[S], 1, x);
    b.silu(x, static_cast<size_t>(ch[S]) * h * wd);
    for (int s = 0; s < S; ++s) {
      const int cin = ch[S - s], cout = ch[S - s - 1];
      b.upsample_nearest_2x(x, cin, h, wd, up);
      h *= 2;
      wd *= 2;
      const std::string p = "decoder.up." + std::to_string(s) + ".conv.";
      b.conv2d_3x3(up, cin, h, wd, weight(p + "weight"), weight(p + "bias"), cout, 1, x);
      b.silu(x, static_cast<size_t>(cout) * h * wd);
    }
    b.conv2d_3x3(x, ch[0], h, wd, weight("decoder.conv_out.weight"),
                 weight("decoder.conv_out.bias"), 3, 1, out + f * rgb_count);
  }
  std::vector<float> rgb(rgb_count * frame_count);
  b.download(rgb.data(), out, rgb.size());
  return rgb;
}

DecodeThread::DecodeThread() : thread_([this] { loop(); }) {}

DecodeThread::~DecodeThread() {
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !has_job_; });
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void DecodeThread::run(std::function<void()> job) {
  {
    std::lock_guard lock(mutex_);
    if (has_job_) throw Error(ErrorKind::invalid_argument, "the decode thread is busy");
    job_ = std::move(job);
    error_ = nullptr;
    has_job_ = true;
  }
  changed_.notify_all();
}

void DecodeThread::wait() {
  std::exception_ptr error;
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !has_job_; });
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

void DecodeThread::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || (has_job_ && job_); });
    if (stopping_) return;
    std::function<void()> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    job = nullptr;  // whatever the job holds goes before it is reported finished
    lock.lock();
    error_ = error;
    has_job_ = false;
    changed_.notify_all();
  }
}

}  // namespace strand
