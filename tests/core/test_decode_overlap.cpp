// SessionOptions::overlap_decode on the CPU backend (forced on, so the decode thread and the
// decoder's own backend run here): the same frames, latents and memory as the serial order over
// blocks, a re-cached prompt change and a restore; a decode error or a cancel seen by the decode
// thread undoes the clean pass that ran beside it and leaves the session at the last committed
// block; the next call works.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "decoder.h"
#include "engine.h"
#include "strand/backend.h"
#include "strand/error.h"
#include "strand/session.h"
#include "test_support.h"

namespace strand {
namespace {

using test::random_model;
using test::tiny_config;

const std::string kPromptA = "a red balloon over snowy mountains at dusk";
const std::string kPromptB = "birds over a green forest at dawn";

// Hybrid + windowed softmax_kv (sink 1, window 1): an undone clean pass must restore a hybrid
// state and a dropped cache block.
std::shared_ptr<const Model> test_model() {
  return random_model(tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv}, 1, 1), 23);
}

// Forwards every call to `inner`; before each conv2d_3x3 runs `before_conv` (which may throw).
class HookedBackend final : public Backend {
 public:
  HookedBackend(std::unique_ptr<Backend> inner, std::function<void()> before_conv)
      : inner_(std::move(inner)), before_conv_(std::move(before_conv)) {}
  [[nodiscard]] std::string_view name() const override { return "hooked"; }
  [[nodiscard]] DeviceKind device() const override { return inner_->device(); }
  [[nodiscard]] bool supports(Op op) const override { return inner_->supports(op); }
  std::unique_ptr<Buffer> allocate(size_t n) override { return inner_->allocate(n); }
  void upload(float* d, const float* s, size_t n) override { inner_->upload(d, s, n); }
  void download(float* d, const float* s, size_t n) override { inner_->download(d, s, n); }
  void copy(float* d, const float* s, size_t n) override { inner_->copy(d, s, n); }
  void linear(const float* x, const float* w, const float* b, float* y, int r, int i,
              int o) override {
    inner_->linear(x, w, b, y, r, i, o);
  }
  void layer_norm(const float* x, float* y, int r, int d, const float* w, const float* b,
                  float eps) override {
    inner_->layer_norm(x, y, r, d, w, b, eps);
  }
  void layer_norm_modulate(const float* x, float* y, int r, int d, const float* shift,
                           const float* scale, int rpg, int gs, float eps) override {
    inner_->layer_norm_modulate(x, y, r, d, shift, scale, rpg, gs, eps);
  }
  void rms_norm(const float* x, float* y, int r, int d, const float* w, float eps) override {
    inner_->rms_norm(x, y, r, d, w, eps);
  }
  void l2_normalize_heads(float* x, int r, int h, int hd, float eps) override {
    inner_->l2_normalize_heads(x, r, h, hd, eps);
  }
  void gelu_tanh(float* x, size_t n) override { inner_->gelu_tanh(x, n); }
  void gelu_erf(float* x, size_t n) override { inner_->gelu_erf(x, n); }
  void silu(float* x, size_t n) override { inner_->silu(x, n); }
  void gated_residual(float* x, const float* y, const float* g, int r, int d, int rpg,
                      int gs) override {
    inner_->gated_residual(x, y, g, r, d, rpg, gs);
  }
  void gated_residual_heads(float* x, const float* y, const float* g, int r, int h, int hd,
                            int rs) override {
    inner_->gated_residual_heads(x, y, g, r, h, hd, rs);
  }
  void rope_3d(float* x, int t, int h, int hd, int rs, const int* pt, const int* pr, const int* pc,
               float theta) override {
    inner_->rope_3d(x, t, h, hd, rs, pt, pr, pc, theta);
  }
  void attention(const float* q, int qs, const float* k, int ks, const float* v, int vs, float* o,
                 int os, int tq, int tk, int h, int hd, float scale) override {
    inner_->attention(q, qs, k, ks, v, vs, o, os, tq, tk, h, hd, scale);
  }
  void gated_delta_update(float* s, const float* k, int ks, const float* v, int vs, const float* a,
                          const float* b, int t, int h, int dk, int dv) override {
    inner_->gated_delta_update(s, k, ks, v, vs, a, b, t, h, dk, dv);
  }
  void memory_read(const float* s, const float* q, int qs, float* o, int os, int t, int h, int dk,
                   int dv, float scale) override {
    inner_->memory_read(s, q, qs, o, os, t, h, dk, dv, scale);
  }
  void conv2d_3x3(const float* in, int ci, int h, int w, const float* wt, const float* b, int co,
                  int stride, float* out) override {
    before_conv_();
    inner_->conv2d_3x3(in, ci, h, w, wt, b, co, stride, out);
  }
  void upsample_nearest_2x(const float* in, int c, int h, int w, float* out) override {
    inner_->upsample_nearest_2x(in, c, h, w, out);
  }
  void memory_gates(const float* raw, const float* al, const float* dt, float* a, float* b,
                    float* g, int t, int h) override {
    inner_->memory_gates(raw, al, dt, a, b, g, t, h);
  }

 private:
  std::unique_ptr<Backend> inner_;
  std::function<void()> before_conv_;
};

SessionOptions serial(uint64_t seed) {
  SessionOptions o;
  o.seed = seed;
  o.overlap_decode = false;
  return o;
}

SessionOptions overlapped(uint64_t seed, std::function<void()> before_decoder_conv = {}) {
  SessionOptions o;
  o.seed = seed;
  o.overlap_decode = true;
  if (before_decoder_conv) {
    o.wrap_decoder_backend = [hook = std::move(before_decoder_conv)](std::unique_ptr<Backend> b) {
      return std::unique_ptr<Backend>(std::make_unique<HookedBackend>(std::move(b), hook));
    };
  }
  return o;
}

void expect_same_block(const BlockResult& a, const BlockResult& b) {
  ASSERT_EQ(a.block_index, b.block_index);
  EXPECT_EQ(a.latents, b.latents);
  ASSERT_EQ(a.frames.size(), b.frames.size());
  for (size_t i = 0; i < a.frames.size(); ++i) {
    EXPECT_EQ(a.frames[i].index, b.frames[i].index);
    EXPECT_EQ(a.frames[i].width, b.frames[i].width);
    EXPECT_EQ(a.frames[i].rgb, b.frames[i].rgb);
  }
}

// Generates `count` blocks on both sessions, checking blocks and memory after each.
void step_both(Session& a, Session& b, int count) {
  for (int i = 0; i < count; ++i) {
    const BlockResult ra = a.generate_next_block();
    const BlockResult rb = b.generate_next_block();
    expect_same_block(ra, rb);
    EXPECT_EQ(a.snapshot(), b.snapshot()) << "after block " << ra.block_index;
  }
}

// The next block of `s` must end in a cancel that leaves the memory as it was before the call.
void expect_cancel_keeps_memory(Session& s) {
  const MemoryState before = s.snapshot();
  try {
    (void)s.generate_next_block();
    FAIL() << "expected a cancel";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::cancelled);
  }
  EXPECT_EQ(s.snapshot(), before);
}

TEST(DecodeOverlap, OnlyWhereAskedOnTheCpu) {
  const auto model = test_model();
  EXPECT_FALSE(Session(model, SessionOptions{}).overlaps_decode());
  EXPECT_TRUE(Session(model, overlapped(1)).overlaps_decode());
  OpProfile profile;
  SessionOptions profiled = overlapped(1);
  profiled.op_profile = &profile;  // op timing is serial
  EXPECT_FALSE(Session(model, profiled).overlaps_decode());
}

TEST(DecodeOverlap, SameBlocksAndMemoryAsTheSerialOrder) {
  const auto model = test_model();
  Session on(model, overlapped(7)), off(model, serial(7));
  ASSERT_TRUE(on.overlaps_decode());
  ASSERT_FALSE(off.overlaps_decode());
  on.set_prompt(kPromptA);
  off.set_prompt(kPromptA);
  step_both(on, off, 2);
  const MemoryState at_two = on.snapshot();
  on.set_prompt(kPromptB, 2);  // re-cache replays clean passes recorded by the overlapped path
  off.set_prompt(kPromptB, 2);
  EXPECT_EQ(on.snapshot(), off.snapshot());
  step_both(on, off, 2);
  on.restore(at_two);
  off.restore(at_two);
  step_both(on, off, 2);
  const BlockResult last = off.generate_next_block();
  expect_same_block(on.generate_next_block(), last);
  // Decoding stored latents (on the decoder's own backend here) gives the same frames.
  const std::vector<Frame> again = on.decode_latents(last.latents, last.frames[0].index);
  ASSERT_EQ(again.size(), last.frames.size());
  for (size_t f = 0; f < again.size(); ++f) EXPECT_EQ(again[f].rgb, last.frames[f].rgb);
}

TEST(DecodeOverlap, BlockDecodeEqualsFrameByFrame) {
  const auto model = test_model();
  const ModelConfig& c = model->config();
  Session s(model, serial(3));
  s.set_prompt(kPromptA);
  const BlockResult block = s.generate_next_block();
  Engine engine(model, make_cpu_backend());
  Decoder decoder(model, make_cpu_backend());
  const std::vector<float> all = decoder.decode(block.latents.data(), c.frames_per_block);
  const size_t latent = block.latents.size() / static_cast<size_t>(c.frames_per_block);
  const size_t rgb = all.size() / static_cast<size_t>(c.frames_per_block);
  for (int f = 0; f < c.frames_per_block; ++f) {
    const std::vector<float> one = engine.decode(block.latents.data() + f * latent);
    EXPECT_EQ(one, std::vector<float>(all.begin() + static_cast<std::ptrdiff_t>(f * rgb),
                                      all.begin() + static_cast<std::ptrdiff_t>((f + 1) * rgb)));
  }
}

TEST(DecodeOverlap, ADecodeErrorUndoesTheCleanPassAndTheNextCallWorks) {
  const auto model = test_model();
  Session reference(model, serial(4));
  reference.set_prompt(kPromptA);
  std::atomic<bool> fail{false};
  Session s(model, overlapped(4, [&] {
              if (fail.load()) throw Error(ErrorKind::out_of_memory, "injected decoder failure");
            }));
  s.set_prompt(kPromptA);
  expect_same_block(s.generate_next_block(), reference.generate_next_block());
  const MemoryState before = s.snapshot();
  fail = true;
  try {
    (void)s.generate_next_block();
    FAIL() << "expected the decoder's error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::out_of_memory);
    EXPECT_STREQ(e.what(), "injected decoder failure");
  }
  EXPECT_EQ(s.snapshot(), before);  // the clean pass that ran beside the decode was undone
  EXPECT_EQ(s.next_block(), 1);
  fail = false;
  expect_same_block(s.generate_next_block(), reference.generate_next_block());
  // The failed block left nothing in the re-cache history: re-caching 2 blocks replays exactly
  // the two committed ones.
  s.set_prompt(kPromptB, 2);
  reference.set_prompt(kPromptB, 2);
  EXPECT_EQ(s.snapshot(), reference.snapshot());
  expect_same_block(s.generate_next_block(), reference.generate_next_block());
}

TEST(DecodeOverlap, CancelBeforeADitPassKeepsTheLastCommittedBlock) {
  const auto model = test_model();
  Session reference(model, serial(5));
  reference.set_prompt(kPromptA);
  Session s(model, overlapped(5));
  s.set_prompt(kPromptA);
  expect_same_block(s.generate_next_block(), reference.generate_next_block());
  s.set_progress_callback([&](int step, int) {
    if (step == 1) s.cancel();
  });
  expect_cancel_keeps_memory(s);
  s.set_progress_callback({});
  expect_same_block(s.generate_next_block(), reference.generate_next_block());
}

TEST(DecodeOverlap, CancelSeenByTheDecodeThreadUndoesTheCleanPass) {
  const auto model = test_model();
  ASSERT_GE(model->config().frames_per_block, 2);  // the flag is checked before the second frame
  Session reference(model, serial(6));
  reference.set_prompt(kPromptA);
  std::atomic<bool> cancel_in_decode{false};
  Session* session = nullptr;
  Session s(model, overlapped(6, [&] {
              if (cancel_in_decode.exchange(false)) session->cancel();
            }));
  session = &s;
  s.set_prompt(kPromptA);
  expect_same_block(s.generate_next_block(), reference.generate_next_block());
  cancel_in_decode = true;  // during the first frame's decode, while the clean pass runs
  expect_cancel_keeps_memory(s);
  expect_same_block(s.generate_next_block(), reference.generate_next_block());  // flag cleared
}

}  // namespace
}  // namespace strand
