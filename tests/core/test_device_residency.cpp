// Device-resident memory (engine.cpp): on a GPU the engine keeps each hybrid layer's state, the
// softmax_kv blocks and the prompt's K/V on the device between passes, and syncs the host copy
// once per clean pass. A pretend device whose memory is separate host memory (every op computed by
// the CPU backend, every transfer counted) must give exactly the CPU engine's results through
// snapshots, restores, undo and prompt changes, and must not re-send what the device already has.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "engine.h"
#include "strand/backend.h"
#include "strand/error.h"
#include "test_support.h"

namespace strand {
namespace {

struct Transfers {
  size_t upload_floats = 0, download_floats = 0, downloads = 0;
};

// Device memory is separate host memory; ops run on the CPU backend. It can record like the CUDA
// backend: while recording, ops and device copies are kept (positions copied, as the CUDA backend
// copies them to the device) and run on replay; anything else aborts the recording.
class SeparateMemoryDevice final : public Backend {
 public:
  class Mem final : public Buffer {
   public:
    Mem(size_t n, uint64_t* generation) : values_(n, 0.0f), generation_(generation) {}
    ~Mem() override { ++*generation_; }  // a freed address may come back holding other data
    Mem(const Mem&) = delete;
    Mem& operator=(const Mem&) = delete;
    [[nodiscard]] DeviceKind device() const override { return DeviceKind::cuda; }
    [[nodiscard]] size_t count() const override { return values_.size(); }
    [[nodiscard]] float* data() override { return values_.data(); }

   private:
    std::vector<float> values_;
    uint64_t* generation_;
  };
  class Tape final : public Recording {
   public:
    std::vector<std::function<void()>> ops;
    uint64_t generation = 0;
  };

  SeparateMemoryDevice(Transfers* transfers, bool can_record)
      : transfers_(transfers), can_record_(can_record) {}
  [[nodiscard]] std::string_view name() const override { return "separate-memory"; }
  [[nodiscard]] DeviceKind device() const override { return DeviceKind::cuda; }
  [[nodiscard]] bool supports(Op) const override { return true; }
  std::unique_ptr<Buffer> allocate(size_t n) override {
    not_while_recording();
    return std::make_unique<Mem>(n, generation_.get());
  }
  void upload(float* d, const float* s, size_t n) override {
    not_while_recording();
    transfers_->upload_floats += n;
    std::memcpy(d, s, n * sizeof(float));
  }
  void download(float* d, const float* s, size_t n) override {
    not_while_recording();
    transfers_->download_floats += n;
    ++transfers_->downloads;
    std::memcpy(d, s, n * sizeof(float));
  }
  void copy(float* d, const float* s, size_t n) override {
    run([=] { std::memmove(d, s, n * sizeof(float)); });
  }
  [[nodiscard]] bool can_record() const override { return can_record_; }
  void begin_recording() override {
    tape_ = std::make_unique<Tape>();
    tape_->generation = *generation_;
  }
  std::unique_ptr<Recording> end_recording() override {
    if (!tape_) throw Error(ErrorKind::invalid_argument, "not recording");
    return std::move(tape_);
  }
  void replay(Recording& recording) override {
    auto& tape = dynamic_cast<Tape&>(recording);
    if (tape.generation != *generation_) throw Error(ErrorKind::invalid_argument, "stale");
    ++replays;
    for (auto& op : tape.ops) op();
  }
  [[nodiscard]] uint64_t generation() const override { return *generation_; }

  void linear(const float* x, const float* w, const float* b, float* y, int r, int i, int o) override {
    run([=, this] { cpu_->linear(x, w, b, y, r, i, o); });
  }
  void layer_norm(const float* x, float* y, int r, int d, const float* w, const float* b,
                  float e) override {
    run([=, this] { cpu_->layer_norm(x, y, r, d, w, b, e); });
  }
  void layer_norm_modulate(const float* x, float* y, int r, int d, const float* sh, const float* sc,
                           int g, int gs, float e) override {
    run([=, this] { cpu_->layer_norm_modulate(x, y, r, d, sh, sc, g, gs, e); });
  }
  void rms_norm(const float* x, float* y, int r, int d, const float* w, float e) override {
    run([=, this] { cpu_->rms_norm(x, y, r, d, w, e); });
  }
  void l2_normalize_heads(float* x, int r, int h, int d, float e) override {
    run([=, this] { cpu_->l2_normalize_heads(x, r, h, d, e); });
  }
  void gelu_tanh(float* x, size_t n) override { run([=, this] { cpu_->gelu_tanh(x, n); }); }
  void gelu_erf(float* x, size_t n) override { run([=, this] { cpu_->gelu_erf(x, n); }); }
  void silu(float* x, size_t n) override { run([=, this] { cpu_->silu(x, n); }); }
  void gated_residual(float* x, const float* y, const float* g, int r, int d, int rg,
                      int gs) override {
    run([=, this] { cpu_->gated_residual(x, y, g, r, d, rg, gs); });
  }
  void gated_residual_heads(float* x, const float* y, const float* g, int r, int h, int d,
                            int rs) override {
    run([=, this] { cpu_->gated_residual_heads(x, y, g, r, h, d, rs); });
  }
  void rope_3d(float* x, int t, int h, int d, int rs, const int* pt, const int* pr, const int* pc,
               float theta) override {
    // Positions are host arrays read at call time: keep their values, not the pointers.
    std::vector<int> vt(pt, pt + t), vr(pr, pr + t), vc(pc, pc + t);
    run([=, this] { cpu_->rope_3d(x, t, h, d, rs, vt.data(), vr.data(), vc.data(), theta); });
  }
  void attention(const float* q, int qs, const float* k, int ks, const float* v, int vs, float* o,
                 int os, int tq, int tk, int h, int d, float scale) override {
    run([=, this] { cpu_->attention(q, qs, k, ks, v, vs, o, os, tq, tk, h, d, scale); });
  }
  void gated_delta_update(float* s, const float* k, int ks, const float* v, int vs,
                          const float* alpha, const float* beta, int t, int h, int dk,
                          int dv) override {
    run([=, this] { cpu_->gated_delta_update(s, k, ks, v, vs, alpha, beta, t, h, dk, dv); });
  }
  void memory_read(const float* s, const float* q, int qs, float* o, int os, int t, int h, int dk,
                   int dv, float scale) override {
    run([=, this] { cpu_->memory_read(s, q, qs, o, os, t, h, dk, dv, scale); });
  }
  void conv2d_3x3(const float* in, int ci, int h, int w, const float* wt, const float* b, int co,
                  int stride, float* out) override {
    run([=, this] { cpu_->conv2d_3x3(in, ci, h, w, wt, b, co, stride, out); });
  }
  void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) override {
    run([=, this] { cpu_->upsample_nearest_2x(in, c, h, w, out); });
  }
  void memory_gates(const float* raw, const float* a_log, const float* dt_bias, float* alpha,
                    float* beta, float* gamma, int t, int h) override {
    run([=, this] { cpu_->memory_gates(raw, a_log, dt_bias, alpha, beta, gamma, t, h); });
  }

  int replays = 0;

 private:
  template <class F>
  void run(F&& op) {
    if (tape_) {
      tape_->ops.emplace_back(std::forward<F>(op));
    } else {
      op();
    }
  }
  void not_while_recording() {
    if (!tape_) return;
    tape_.reset();
    throw Error(ErrorKind::unsupported, "not recordable");
  }

  Transfers* transfers_;
  bool can_record_;
  std::unique_ptr<Backend> cpu_ = make_cpu_backend();
  std::unique_ptr<Tape> tape_;
  std::shared_ptr<uint64_t> generation_ = std::make_shared<uint64_t>(0);
};

std::vector<float> latent_block(const ModelConfig& c, uint32_t seed) {
  std::vector<float> x(static_cast<size_t>(c.frames_per_block) * c.latent_channels *
                       c.latent_height() * c.latent_width());
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  return x;
}

// The same calls on the CPU engine and on the pretend device, compared bit for bit.
class Residency : public ::testing::TestWithParam<bool> {  // param: the device can record
 protected:
  void SetUp() override {
    model_ = test::random_model(
        test::tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv, AttentionKind::hybrid},
                          /*window=*/2, /*sink=*/1),
        23);
    cpu_ = std::make_unique<Engine>(model_, make_cpu_backend());
    auto device = std::make_unique<SeparateMemoryDevice>(&transfers_, GetParam());
    device_backend_ = device.get();
    device_ = std::make_unique<Engine>(model_, std::move(device));
    cpu_memory_ = cpu_->empty_memory();
    device_memory_ = device_->empty_memory();
  }

  // One block as a session runs it: denoising passes that only read the memory, then the clean
  // pass; returns the dropped blocks of the device run for undo tests.
  std::vector<std::vector<KvBlock>> block(int64_t index, const TextContext& cpu_text,
                                          const TextContext& device_text) {
    const ModelConfig& c = model_->config();
    for (float sigma : c.sigmas) {
      const auto x = latent_block(c, static_cast<uint32_t>(index * 10 + 1));
      EXPECT_EQ(cpu_->dit(x, sigma, cpu_text, cpu_memory_, index, false),
                device_->dit(x, sigma, device_text, device_memory_, index, false))
          << "block " << index << " sigma " << sigma;
    }
    const auto x0 = latent_block(c, static_cast<uint32_t>(index * 10 + 2));
    std::vector<std::vector<KvBlock>> cpu_dropped, device_dropped;
    EXPECT_EQ(cpu_->dit(x0, 0.0f, cpu_text, cpu_memory_, index, true, nullptr, &cpu_dropped),
              device_->dit(x0, 0.0f, device_text, device_memory_, index, true, nullptr,
                           &device_dropped));
    EXPECT_EQ(cpu_memory_, device_memory_) << "memory after block " << index;
    EXPECT_EQ(cpu_dropped, device_dropped);
    return device_dropped;
  }

  std::shared_ptr<const Model> model_;
  Transfers transfers_;
  SeparateMemoryDevice* device_backend_ = nullptr;
  std::unique_ptr<Engine> cpu_, device_;
  MemoryState cpu_memory_, device_memory_;
};

TEST_P(Residency, BlocksMatchTheCpuEngineAndTheHostCopyStaysCurrent) {
  const TextContext ct = cpu_->encode_prompt("a red balloon at dusk");
  const TextContext dt = device_->encode_prompt("a red balloon at dusk");
  for (int64_t n = 0; n < 5; ++n) block(n, ct, dt);  // window 2 + sink 1: blocks get dropped
  EXPECT_EQ(device_memory_.layers[1].kv_blocks.size(), 3u);
  const Engine::RecordingStats& stats = device_->recording_stats();
  if (GetParam()) {
    // Each block's cache differs, so its first denoising pass runs op by op and its second is
    // recorded and replayed; softmax_kv clean passes are never recorded.
    EXPECT_EQ(stats.recorded, 5);
    EXPECT_EQ(stats.replayed, 5);
    EXPECT_EQ(stats.failed, 0);
    EXPECT_EQ(device_backend_->replays, 5);
  } else {
    EXPECT_EQ(stats.recorded + stats.replayed + stats.direct, 0);
  }
}

TEST_P(Residency, AllHybridPassesAreReplayedAcrossBlocks) {
  auto model = test::random_model(test::tiny_config({AttentionKind::hybrid, AttentionKind::hybrid}), 5);
  Transfers transfers;
  auto device = std::make_unique<SeparateMemoryDevice>(&transfers, GetParam());
  SeparateMemoryDevice* backend = device.get();
  Engine on_device(model, std::move(device));
  Engine cpu(model, make_cpu_backend());
  MemoryState dm = on_device.empty_memory(), cm = cpu.empty_memory();
  const TextContext dt = on_device.encode_prompt("dawn"), ct = cpu.encode_prompt("dawn");
  const ModelConfig& c = model->config();
  MemoryState saved_d, saved_c;
  for (int64_t n = 0; n < 6; ++n) {
    if (n == 4) {  // a branch from block 2: the host state changes under the recordings
      dm = saved_d;
      cm = saved_c;
    }
    for (float sigma : c.sigmas) {
      const auto x = latent_block(c, static_cast<uint32_t>(n + 40));
      ASSERT_EQ(cpu.dit(x, sigma, ct, cm, n, false), on_device.dit(x, sigma, dt, dm, n, false));
    }
    const auto x0 = latent_block(c, static_cast<uint32_t>(n + 80));
    ASSERT_EQ(cpu.dit(x0, 0.0f, ct, cm, n, true), on_device.dit(x0, 0.0f, dt, dm, n, true));
    ASSERT_EQ(cm, dm) << "block " << n;
    if (n == 2) {
      saved_d = dm;
      saved_c = cm;
    }
  }
  if (GetParam()) {
    // Two kinds of pass: denoising (both sigmas: the modulation rows are copied into one place
    // first) and clean. The first of each runs op by op, the second is recorded, and every pass
    // from then on is a replay: 12 - 1 denoising and 6 - 1 clean passes.
    EXPECT_EQ(on_device.recording_stats().failed, 0);
    EXPECT_EQ(on_device.recording_stats().recorded, 2);
    EXPECT_EQ(on_device.recording_stats().replayed, 11 + 5);
    EXPECT_EQ(backend->replays, 11 + 5);
  }
}

TEST_P(Residency, ReadOnlyPassesSendOnlyTheirInput) {
  const ModelConfig& c = model_->config();
  const TextContext dt = device_->encode_prompt("green forest at dawn");
  const TextContext ct = cpu_->encode_prompt("green forest at dawn");
  block(0, ct, dt);
  block(1, ct, dt);
  const auto x = latent_block(c, 99);
  device_->dit(x, c.sigmas[0], dt, device_memory_, 2, false);  // warm: every sigma seen before
  transfers_ = {};
  device_->dit(x, c.sigmas[0], dt, device_memory_, 2, false);
  // Only the patchified latents go up (state, cached blocks, prompt K/V, modulation stay there)
  // and only the output comes down, in one wait.
  EXPECT_EQ(transfers_.upload_floats, x.size());
  EXPECT_EQ(transfers_.download_floats, x.size());
  EXPECT_EQ(transfers_.downloads, 1u);
}

TEST_P(Residency, RestoringAnOlderSnapshotUploadsItAndMatches) {
  const TextContext ct = cpu_->encode_prompt("snowy mountains");
  const TextContext dt = device_->encode_prompt("snowy mountains");
  block(0, ct, dt);
  block(1, ct, dt);
  const MemoryState cpu_saved = cpu_memory_, device_saved = device_memory_;
  block(2, ct, dt);
  block(3, ct, dt);
  // Branch from block 2: the device still holds block 3's memory and must notice.
  cpu_memory_ = cpu_saved;
  device_memory_ = device_saved;
  block(2, ct, dt);
  block(3, ct, dt);
  // A snapshot that went through a file has no device identities at all.
  cpu_memory_ = deserialize_snapshot(serialize_snapshot(cpu_saved));
  device_memory_ = deserialize_snapshot(serialize_snapshot(device_saved));
  block(2, ct, dt);
}

TEST_P(Residency, UndoingACleanPassThenReplayingItMatches) {
  const TextContext ct = cpu_->encode_prompt("birds over the sea");
  const TextContext dt = device_->encode_prompt("birds over the sea");
  for (int64_t n = 0; n < 3; ++n) block(n, ct, dt);
  // Undo block 3's clean pass as Session::undo does: states assigned back in place (same
  // vectors, same addresses), the new kv block popped, the dropped ones put back after the sink.
  const MemoryState cpu_before = cpu_memory_, device_before = device_memory_;
  const auto dropped = block(3, ct, dt);
  for (MemoryState* m : {&cpu_memory_, &device_memory_}) {
    const MemoryState& before = m == &cpu_memory_ ? cpu_before : device_before;
    for (size_t i = 0; i < m->layers.size(); ++i) {
      m->layers[i].state = before.layers[i].state;
      if (m->layers[i].kv_blocks.empty()) continue;
      m->layers[i].kv_blocks.pop_back();
      const auto& back = dropped[i];
      m->layers[i].kv_blocks.insert(m->layers[i].kv_blocks.begin() + 1, back.begin(), back.end());
    }
  }
  EXPECT_EQ(cpu_memory_, cpu_before);
  // Replay under another prompt (a re-cache), then go on under a third and back to the first:
  // more prompts than the device keeps.
  const TextContext ct2 = cpu_->encode_prompt("dusk");
  const TextContext dt2 = device_->encode_prompt("dusk");
  block(3, ct2, dt2);
  const TextContext ct3 = cpu_->encode_prompt("a green balloon");
  const TextContext dt3 = device_->encode_prompt("a green balloon");
  block(4, ct3, dt3);
  block(5, ct, dt);
}

std::string recording_name(const ::testing::TestParamInfo<bool>& param) {
  return param.param ? "recorded" : "op_by_op";
}
INSTANTIATE_TEST_SUITE_P(Recording, Residency, ::testing::Bool(), recording_name);

}  // namespace
}  // namespace strand
