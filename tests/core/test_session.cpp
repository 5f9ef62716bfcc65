// Session behaviour on small random models: determinism, snapshot continuation, cancel,
// re-cache, bad prompts, model mismatch, and the memory size contract.
#include <gtest/gtest.h>

#include <string>

#include "engine.h"
#include "strand/error.h"
#include "strand/session.h"
#include "test_support.h"

namespace strand {
namespace {

using test::random_model;
using test::tiny_config;

const std::string kPromptA = "a red balloon over snowy mountains at dusk";
const std::string kPromptB = "birds over a green forest at dawn";

std::shared_ptr<const Model> hybrid_kv_model() {
  return random_model(tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv}), 11);
}

std::vector<BlockResult> run_blocks(Session& session, int count) {
  std::vector<BlockResult> out;
  for (int i = 0; i < count; ++i) out.push_back(session.generate_next_block());
  return out;
}

void expect_same_block(const BlockResult& a, const BlockResult& b) {
  ASSERT_EQ(a.block_index, b.block_index);
  EXPECT_EQ(a.latents, b.latents);
  ASSERT_EQ(a.frames.size(), b.frames.size());
  for (size_t i = 0; i < a.frames.size(); ++i) {
    EXPECT_EQ(a.frames[i].index, b.frames[i].index);
    EXPECT_EQ(a.frames[i].rgb, b.frames[i].rgb);
  }
}

TEST(Session, SameSeedAndPromptGiveIdenticalBlocks) {
  auto model = hybrid_kv_model();
  Session a(model, {.seed = 5}), b(model, {.seed = 5}), c(model, {.seed = 6});
  a.set_prompt(kPromptA);
  b.set_prompt(kPromptA);
  c.set_prompt(kPromptA);
  const auto ra = run_blocks(a, 3), rb = run_blocks(b, 3), rc = run_blocks(c, 1);
  for (int i = 0; i < 3; ++i) expect_same_block(ra[i], rb[i]);
  EXPECT_NE(ra[0].latents, rc[0].latents);
  EXPECT_EQ(ra[2].frames[1].index, 5);
  EXPECT_EQ(ra[0].frames[0].rgb.size(), static_cast<size_t>(32 * 16 * 3));
}

TEST(Session, ContinuingFromASnapshotMatchesTheUninterruptedRun) {
  auto model = hybrid_kv_model();
  Session full(model, {.seed = 9});
  full.set_prompt(kPromptA);
  const auto reference = run_blocks(full, 4);

  Session first(model, {.seed = 9});
  first.set_prompt(kPromptA);
  run_blocks(first, 2);
  const MemoryState snap = first.snapshot();
  EXPECT_EQ(snap.next_block, 2);

  Session resumed(model, {.seed = 1});  // the snapshot's seed wins
  resumed.restore(snap);
  EXPECT_EQ(resumed.prompt(), kPromptA);
  const auto rest = run_blocks(resumed, 2);
  expect_same_block(rest[0], reference[2]);
  expect_same_block(rest[1], reference[3]);
}

TEST(Session, DifferentPromptsGiveDifferentFrames) {
  auto model = hybrid_kv_model();
  Session a(model, {.seed = 3}), b(model, {.seed = 3});
  a.set_prompt(kPromptA);
  b.set_prompt(kPromptB);
  EXPECT_NE(a.generate_next_block().latents, b.generate_next_block().latents);
}

TEST(Session, CancelMidBlockKeepsTheLastCommittedBlock) {
  auto model = hybrid_kv_model();
  Session reference(model, {.seed = 4});
  reference.set_prompt(kPromptA);
  const auto expected = run_blocks(reference, 2);

  Session s(model, {.seed = 4});
  s.set_prompt(kPromptA);
  s.generate_next_block();
  const MemoryState before = s.snapshot();
  int calls = 0;
  s.set_progress_callback([&](int step, int) {
    ++calls;
    if (step == 1) s.cancel();
  });
  try {
    s.generate_next_block();
    FAIL() << "expected a cancel";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::cancelled);
  }
  EXPECT_EQ(calls, 1);  // stopped before the next DiT pass
  EXPECT_EQ(s.snapshot(), before);
  s.set_progress_callback({});
  expect_same_block(s.generate_next_block(), expected[1]);
}

TEST(Session, RecacheWithTheSamePromptReproducesTheMemoryExactly) {
  // Windowed softmax_kv (sink 1, window 1) so undo must restore dropped cache blocks too.
  auto model = random_model(
      tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv, AttentionKind::hybrid}, 1, 1), 21);
  Session s(model, {.seed = 2});
  s.set_prompt(kPromptA);
  run_blocks(s, 4);
  const MemoryState before = s.snapshot();
  EXPECT_EQ(before.layers[1].kv_blocks.size(), 2u);
  s.set_prompt(kPromptA, 3);
  EXPECT_EQ(s.snapshot(), before);
}

TEST(Session, RecacheRewritesMemoryUnderTheNewPrompt) {
  auto model = hybrid_kv_model();
  Session hard(model, {.seed = 8}), soft(model, {.seed = 8});
  for (Session* s : {&hard, &soft}) {
    s->set_prompt(kPromptA);
    run_blocks(*s, 2);
  }
  hard.set_prompt(kPromptB, 0);
  soft.set_prompt(kPromptB, 1);
  const MemoryState h = hard.snapshot(), r = soft.snapshot();
  EXPECT_EQ(h.next_block, r.next_block);
  // The first layer's memory input precedes any cross-attention, so no prompt reaches it.
  EXPECT_EQ(h.layers[0].state, r.layers[0].state);
  EXPECT_EQ(h.layers[1].kv_blocks[0].k, r.layers[1].kv_blocks[0].k);  // block 0 untouched
  EXPECT_NE(h.layers[1].kv_blocks[1].k, r.layers[1].kv_blocks[1].k);  // block 1 replayed

  // Independent check: re-cache k=1 == the memory after block 0 plus block 1's clean pass
  // replayed on its latents under prompt B, computed directly with the engine.
  Session replay(model, {.seed = 8});
  replay.set_prompt(kPromptA);
  replay.generate_next_block();
  MemoryState expected = replay.snapshot();
  const BlockResult block1 = replay.generate_next_block();
  Engine engine(model, make_cpu_backend());
  engine.dit(block1.latents, 0.0f, engine.encode_prompt(kPromptB), expected, 1, true);
  for (size_t i = 0; i < expected.layers.size(); ++i) {
    EXPECT_EQ(expected.layers[i].state, r.layers[i].state);
    ASSERT_EQ(expected.layers[i].kv_blocks.size(), r.layers[i].kv_blocks.size());
    for (size_t j = 0; j < expected.layers[i].kv_blocks.size(); ++j) {
      EXPECT_EQ(expected.layers[i].kv_blocks[j].k, r.layers[i].kv_blocks[j].k);
    }
  }
}

TEST(Session, DecodingStoredLatentsGivesTheSameFrames) {
  auto model = hybrid_kv_model();
  Session s(model, {.seed = 12});
  s.set_prompt(kPromptA);
  s.generate_next_block();
  const BlockResult r = s.generate_next_block();
  const MemoryState before = s.snapshot();
  const std::vector<Frame> frames = s.decode_latents(r.latents, r.frames[0].index);
  ASSERT_EQ(frames.size(), r.frames.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].index, r.frames[i].index);
    EXPECT_EQ(frames[i].rgb, r.frames[i].rgb);
  }
  EXPECT_EQ(s.snapshot(), before);
  EXPECT_THROW((void)s.decode_latents(std::vector<float>(3), 0), Error);
}

TEST(Session, BadPromptsAreRejectedAndChangeNothing) {
  auto model = hybrid_kv_model();
  Session s(model, {.seed = 1});
  EXPECT_THROW(s.generate_next_block(), Error);  // no prompt yet
  s.set_prompt(kPromptA);
  const MemoryState before = s.snapshot();
  for (const std::string& bad : {std::string(), std::string("   \t\n"), std::string(5000, 'a'),
                                 std::string("bad \xff\xfe utf8"), std::string("\xc0\xaf")}) {
    try {
      s.set_prompt(bad);
      FAIL() << "accepted a bad prompt";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_argument) << e.what();
    }
  }
  EXPECT_EQ(s.prompt(), kPromptA);
  EXPECT_EQ(s.snapshot(), before);
}

TEST(Session, RestoringAnotherModelsSnapshotIsAnError) {
  auto config = tiny_config({AttentionKind::hybrid, AttentionKind::softmax_kv});
  auto m1 = random_model(config, 1, "model-one");
  auto m2 = random_model(config, 2, "model-two");
  Session a(m1, {.seed = 1}), b(m2, {.seed = 1});
  a.set_prompt(kPromptA);
  a.generate_next_block();
  try {
    b.restore(a.snapshot());
    FAIL() << "restored a foreign snapshot";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::model_mismatch);
  }
  EXPECT_EQ(b.next_block(), 0);
}

TEST(Session, AllHybridMemoryHasAConstantSizeAndKvGrows) {
  auto hybrid = random_model(tiny_config({AttentionKind::hybrid, AttentionKind::hybrid}), 3);
  auto kv = random_model(tiny_config({AttentionKind::softmax_kv}), 3);
  auto windowed = random_model(tiny_config({AttentionKind::softmax_kv}, 2, 1), 3);
  Session h(hybrid, {.seed = 1}), k(kv, {.seed = 1}), w(windowed, {.seed = 1});
  std::vector<size_t> hs, ks, ws;
  for (Session* s : {&h, &k, &w}) s->set_prompt(kPromptA);
  for (int i = 0; i < 5; ++i) {
    h.generate_next_block();
    k.generate_next_block();
    w.generate_next_block();
    hs.push_back(h.snapshot().size_bytes());
    ks.push_back(k.snapshot().size_bytes());
    ws.push_back(w.snapshot().size_bytes());
  }
  EXPECT_EQ(hs.front(), hs.back());
  EXPECT_EQ(hs.front(), hybrid->fixed_state_bytes());
  EXPECT_EQ(ks.back() - ks.front(), 4 * kv->state_bytes_per_block());
  EXPECT_EQ(ws[2], ws[4]);  // sink 1 + window 2 = 3 blocks at most
}

TEST(Session, LengthIsUnbounded) {
  auto model = hybrid_kv_model();
  Session s(model, {.seed = 1});
  s.set_prompt(kPromptA);
  s.generate_next_block();
  MemoryState far = s.snapshot();
  far.next_block = 5'000'000;  // ~10^7 frames in: no position table to run out of
  s.restore(far);
  const BlockResult r = s.generate_next_block();
  EXPECT_EQ(r.frames[0].index, 10'000'000);
  for (float v : r.latents) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace strand
