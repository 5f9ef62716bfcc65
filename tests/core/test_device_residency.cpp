// Device-resident memory (engine.cpp): on a GPU the engine keeps each hybrid layer's state, the
// softmax_kv blocks and the prompt's K/V on the device between passes. It syncs the hybrid states'
// host copy once per clean pass; new cache blocks stay on the device (their host copy pending)
// until a snapshot reads them, in buffers reused from a spare pool. A pretend device whose memory
// is separate host memory (every op computed by the CPU backend, every transfer counted) must give
// exactly the CPU engine's results through snapshots, restores, undo and prompt changes, and must
// not re-send what the device already has.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "engine.h"
#include "strand/backend.h"
#include "strand/error.h"
#include "strand/session.h"
#include "temp_dir.h"
#include "test_support.h"

namespace strand {
namespace {

struct Transfers {
  size_t upload_floats = 0, download_floats = 0, downloads = 0, allocations = 0;
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
    ++transfers_->allocations;
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
    if (fail_delta_updates_after >= 0 && fail_delta_updates_after-- == 0) {
      throw Error(ErrorKind::device, "injected device failure");
    }
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
  // >= 0: that many more gated_delta_update calls (one per hybrid layer of a clean pass) succeed,
  // then one throws Error(device) (a failure in the middle of a clean pass).
  int fail_delta_updates_after = -1;

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

// What a snapshot of memory on `engine` holds: a copy with every pending host copy filled in
// (the original stays pending).
MemoryState host_view(Engine& engine, const MemoryState& memory) {
  MemoryState copy = memory;
  engine.download_kv_blocks(copy);
  return copy;
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
    EXPECT_EQ(cpu_memory_, host_view(*device_, device_memory_)) << "memory after block " << index;
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
  device_->download_kv_blocks(device_memory_);  // as Session::snapshot() does before copying
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

// ---- Cache blocks: host copies made only when read, device buffers reused --------------------

size_t block_floats(const ModelConfig& c) {  // one cache block's K (or V)
  return static_cast<size_t>(c.tokens_per_block()) * c.dim;
}

// One block through an engine as Session runs it (denoising passes, then the clean pass keeping
// what the window drops), on the CPU and on the device; outputs compared bit for bit.
void run_block(Engine& cpu, MemoryState& cm, const TextContext& ct, Engine& device,
               MemoryState& dm, const TextContext& dt, int64_t index) {
  const ModelConfig& c = cpu.model().config();
  const auto x = latent_block(c, static_cast<uint32_t>(index * 3 + 5));
  for (float sigma : c.sigmas) {
    ASSERT_EQ(cpu.dit(x, sigma, ct, cm, index, false), device.dit(x, sigma, dt, dm, index, false))
        << "block " << index << " sigma " << sigma;
  }
  std::vector<std::vector<KvBlock>> cpu_dropped, device_dropped;
  ASSERT_EQ(cpu.dit(x, 0.0f, ct, cm, index, true, nullptr, &cpu_dropped),
            device.dit(x, 0.0f, dt, dm, index, true, nullptr, &device_dropped))
      << "clean pass of block " << index;
  ASSERT_EQ(cpu_dropped, device_dropped) << "block " << index;  // kept for undo: on the host
}

// A pretend device engine (recording on, transfers counted) beside a CPU engine on one model, each
// with empty memory and the prompt encoded, constructed in that order. The tests bind the members
// to local names: auto& [transfers, device, cpu, dm, cm, dt, ct] = rig.
struct DeviceBesideCpu {
  DeviceBesideCpu(const std::shared_ptr<const Model>& model, const std::string& prompt)
      : device(model, std::make_unique<SeparateMemoryDevice>(&transfers, true)),
        cpu(model, make_cpu_backend()),
        dm(device.empty_memory()),
        cm(cpu.empty_memory()),
        dt(device.encode_prompt(prompt)),
        ct(cpu.encode_prompt(prompt)) {}
  Transfers transfers;
  Engine device, cpu;
  MemoryState dm, cm;
  TextContext dt, ct;
};

// A full cache (window 0), as in the 22 hybrid + 8 softmax_kv model: generation downloads each
// pass's output and the hybrid states, never a cache block; a snapshot then downloads each block
// once, and the next one nothing.
TEST(KvResidency, FullCacheBlocksStayOnTheDeviceUntilASnapshotReadsThem) {
  auto model = test::random_model(
      test::tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv, AttentionKind::softmax_kv}),
      31);
  const ModelConfig& c = model->config();
  DeviceBesideCpu rig(model, "a red balloon");
  auto& [transfers, device, cpu, dm, cm, dt, ct] = rig;
  const size_t n = block_floats(c), state = dm.layers[0].state.size();
  const size_t output = latent_block(c, 0).size(), passes = c.sigmas.size() + 1;
  constexpr size_t kBlocks = 6;
  for (size_t b = 0; b < kBlocks; ++b) {
    transfers = {};
    run_block(cpu, cm, ct, device, dm, dt, static_cast<int64_t>(b));
    for (size_t i : {1, 2}) {
      EXPECT_EQ(dm.layers[i].kv_blocks.size(), b + 1);
      EXPECT_TRUE(dm.layers[i].kv_blocks.back().host_copy_pending()) << "block " << b;
    }
    if (b == 0) continue;  // block 0 also downloads each sigma's time embedding once
    EXPECT_EQ(transfers.download_floats, passes * output + state) << "block " << b;
    EXPECT_EQ(transfers.downloads, passes + 1) << "block " << b;
    // What goes up: each pass's input; the cache is already there.
    EXPECT_EQ(transfers.upload_floats, passes * output) << "block " << b;
  }
  transfers = {};
  device.download_kv_blocks(dm);
  EXPECT_EQ(transfers.downloads, kBlocks * 2 * 2);  // K and V of every block of both layers
  EXPECT_EQ(transfers.download_floats, kBlocks * 2 * 2 * n);
  EXPECT_EQ(dm, cm);
  transfers = {};
  device.download_kv_blocks(dm);
  EXPECT_EQ(transfers.downloads, 0u);
  // The cache grows: each block needed new buffers (K, V per layer) and none was freed.
  const Engine::KvBufferStats stats = device.kv_buffer_stats();
  EXPECT_EQ(stats.allocated, static_cast<int64_t>(kBlocks * 2 * 2));
  EXPECT_EQ(stats.reused + stats.freed, 0);
  // Blocks with a host copy still stay on the device: the next block sends none of them.
  transfers = {};
  run_block(cpu, cm, ct, device, dm, dt, kBlocks);
  EXPECT_EQ(transfers.upload_floats, passes * output);
  EXPECT_EQ(host_view(device, dm), cm);
}

// A windowed cache (sink 1 + window 2): once the window is full, each clean pass takes the buffers
// its new blocks need from those the previous pass released, so a block allocates no device
// memory at all; the block the window drops is downloaded once, because the caller keeps it for
// undo (a pass without `dropped` downloads no cache block).
TEST(KvResidency, AWindowedCacheInSteadyStateAllocatesNothing) {
  auto model = test::random_model(
      test::tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv}, /*window=*/2, /*sink=*/1),
      37);
  const ModelConfig& c = model->config();
  DeviceBesideCpu rig(model, "dusk");
  auto& [transfers, device, cpu, dm, cm, dt, ct] = rig;
  const size_t n = block_floats(c), state = dm.layers[0].state.size();
  const size_t output = latent_block(c, 0).size(), passes = c.sigmas.size() + 1;
  constexpr int64_t kBlocks = 10;
  for (int64_t b = 0; b < kBlocks; ++b) {
    transfers = {};
    run_block(cpu, cm, ct, device, dm, dt, b);
    // Blocks 0-2 fill sink + window; block 3 is the first to drop one (and to release buffers).
    if (b >= 4) {
      EXPECT_EQ(transfers.allocations, 0u) << "block " << b;
      EXPECT_EQ(transfers.download_floats, passes * output + state + 2 * n) << "block " << b;
    }
    EXPECT_EQ(host_view(device, dm), cm) << "block " << b;
  }
  const Engine::KvBufferStats stats = device.kv_buffer_stats();
  EXPECT_EQ(stats.allocated, 4 * 2);               // blocks 0-3: K and V each
  EXPECT_EQ(stats.reused, (kBlocks - 4) * 2);      // every block from 4 on
  EXPECT_EQ(stats.freed, 0);
  EXPECT_EQ(stats.spare, 2u);                      // one clean pass's worth, no more
  // Without a caller keeping the dropped blocks, nothing of the cache comes down.
  const auto x = latent_block(c, 77);
  transfers = {};
  device.dit(x, 0.0f, dt, dm, kBlocks, true);
  cpu.dit(x, 0.0f, ct, cm, kBlocks, true);
  EXPECT_EQ(transfers.download_floats, output + state);
  EXPECT_EQ(transfers.allocations, 0u);
  EXPECT_EQ(host_view(device, dm), cm);
}

// Reused buffers and recordings: a branch back to an earlier boundary makes the same denoising
// pass (same cache blocks, same ages) whose recording read buffers that now hold other blocks.
// The recording must not be replayed.
TEST(KvResidency, ARecordingIsNotReplayedOverReusedBuffers) {
  auto model = test::random_model(
      test::tiny_config({AttentionKind::softmax_kv, AttentionKind::hybrid}, /*window=*/2, /*sink=*/1),
      41);
  Transfers transfers;
  auto backend = std::make_unique<SeparateMemoryDevice>(&transfers, true);
  SeparateMemoryDevice* device_backend = backend.get();
  Engine device(model, std::move(backend));
  Engine cpu(model, make_cpu_backend());
  MemoryState dm = device.empty_memory(), cm = cpu.empty_memory();
  const TextContext dt = device.encode_prompt("snowy mountains");
  const TextContext ct = cpu.encode_prompt("snowy mountains");
  for (int64_t b = 0; b < 6; ++b) run_block(cpu, cm, ct, device, dm, dt, b);
  device.download_kv_blocks(dm);  // a snapshot at block 6 (keeps the device identities)
  const MemoryState device_at_6 = dm, cpu_at_6 = cm;
  run_block(cpu, cm, ct, device, dm, dt, 6);
  run_block(cpu, cm, ct, device, dm, dt, 7);  // reuses block 4's buffers, which block 6 read
  dm = device_at_6;
  cm = cpu_at_6;
  const int replays_before = device_backend->replays;
  run_block(cpu, cm, ct, device, dm, dt, 6);
  run_block(cpu, cm, ct, device, dm, dt, 7);
  EXPECT_EQ(host_view(device, dm), cm);
  EXPECT_GT(device_backend->replays, replays_before);  // recordings still serve what they can
  EXPECT_EQ(device.recording_stats().failed, 0);
}

// The same session on the CPU and on the pretend device (param: the kv window; 0 is a full cache):
// generation, snapshots, snapshot files, branches, re-caches (undo and replay over blocks whose
// host copy is pending) and a re-cache that fails midway all leave the CPU session's memory.
class KvSession : public ::testing::TestWithParam<int> {};

TEST_P(KvSession, SnapshotsBranchesAndRecachesMatchTheCpuSession) {
  const int window = GetParam();
  auto model = test::random_model(
      test::tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv, AttentionKind::hybrid},
                        window, window > 0 ? 1 : 0),
      43);
  const ModelConfig& c = model->config();
  SessionOptions options;
  options.seed = 9;
  options.recache_history = 4;
  Transfers transfers;
  auto backend = std::make_unique<SeparateMemoryDevice>(&transfers, true);
  SeparateMemoryDevice* device_backend = backend.get();
  Session device(model, options, std::move(backend));
  Session cpu(model, options);
  auto generate = [&](int blocks) {
    for (int i = 0; i < blocks; ++i) {
      const BlockResult want = cpu.generate_next_block();
      const BlockResult got = device.generate_next_block();
      ASSERT_EQ(got.latents, want.latents) << "block " << want.block_index;
      ASSERT_EQ(got.frames.size(), want.frames.size());
      for (size_t f = 0; f < want.frames.size(); ++f) ASSERT_EQ(got.frames[f].rgb, want.frames[f].rgb);
      // Pending blocks count: the accounting is the same as on the CPU.
      EXPECT_EQ(device.memory_state_bytes(), cpu.memory_state_bytes());
    }
  };
  for (Session* s : {&cpu, &device}) s->set_prompt("a red balloon at dusk");
  generate(3);

  // Block 3: what comes down is the passes' outputs, the two hybrid states and the frames, plus
  // (windowed) the block the window drops, kept for undo. No new cache block.
  transfers = {};
  generate(1);
  const size_t output = latent_block(c, 0).size(), n = block_floats(c);
  const size_t state = static_cast<size_t>(c.heads) * c.head_dim() * c.head_dim();
  const size_t frames = static_cast<size_t>(c.frames_per_block) * 3 * c.width * c.height;
  EXPECT_EQ(transfers.download_floats,
            (c.sigmas.size() + 1) * output + 2 * state + frames + (window > 0 ? 2 * n : 0));

  // A snapshot is the CPU's memory; the pending blocks come down once.
  transfers = {};
  const MemoryState at_4 = device.snapshot();
  EXPECT_EQ(at_4, cpu.snapshot());
  EXPECT_EQ(transfers.download_floats, 2 * n * (window > 0 ? 3 : 4));  // sink + window, or all
  transfers = {};
  EXPECT_EQ(device.snapshot(), at_4);
  EXPECT_EQ(transfers.downloads, 0u);
  // Saved: byte for byte the CPU's file.
  test::TempDir dir;
  save_snapshot(dir.file("at_4.snap"), at_4);
  EXPECT_EQ(serialize_snapshot(at_4), serialize_snapshot(cpu.snapshot()));

  generate(2);  // blocks 4 and 5: pending again
  for (Session* s : {&cpu, &device}) s->set_prompt("green forest at dawn", 2);
  EXPECT_EQ(device.snapshot(), cpu.snapshot());
  generate(2);  // blocks 6 and 7: pending

  // A re-cache that fails in its second replayed clean pass: the first one has already taken
  // blocks 6 and 7 out of the memory, and they exist only on the device. All must come back.
  device_backend->fail_delta_updates_after = 2;  // the first replayed pass's two hybrid layers
  EXPECT_THROW(device.set_prompt("birds over the sea", 2), Error);
  device_backend->fail_delta_updates_after = -1;
  EXPECT_EQ(device.prompt(), cpu.prompt());
  generate(1);
  EXPECT_EQ(device.snapshot(), cpu.snapshot());

  // Branches: back to block 4's boundary from memory, then from the file (no device identities).
  for (Session* s : {&cpu, &device}) s->restore(at_4);
  generate(2);
  EXPECT_EQ(device.snapshot(), cpu.snapshot());
  const MemoryState from_file = load_snapshot(dir.file("at_4.snap"), model->id());
  for (Session* s : {&cpu, &device}) s->restore(from_file);
  generate(2);
  EXPECT_EQ(device.snapshot(), cpu.snapshot());
}

std::string window_name(const ::testing::TestParamInfo<int>& param) {
  return param.param == 0 ? "full_cache" : "window_" + std::to_string(param.param);
}
INSTANTIATE_TEST_SUITE_P(Cache, KvSession, ::testing::Values(0, 2), window_name);

}  // namespace
}  // namespace strand
