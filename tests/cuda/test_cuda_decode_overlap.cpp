// SessionOptions::overlap_decode on the GPU: the decoder on a second CUDA backend (its own stream)
// and the decode thread, beside the clean pass on the engine's stream, give bit for bit the frames,
// latents and memory of the serial order (decode, then clean pass, on the engine's backend), in
// fp32 and bf16, over blocks, a re-cached prompt change and a restore. Skips without a GPU.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "strand/devices.h"
#include "strand/model.h"
#include "strand/session.h"

namespace strand {
namespace {

constexpr const char* kTinyModel = STRAND_SOURCE_DIR "/tests/data/strand-tiny-random.safetensors";

bool gpu_present() {
  for (const ComputeDevice& d : compute_devices()) {
    if (d.kind == "cuda" && d.usable_by_engine) return true;
  }
  return false;
}

SessionOptions gpu_options(ComputePrecision precision, bool overlap) {
  SessionOptions options;
  options.seed = 42;
  options.device = DeviceKind::cuda;
  options.precision = precision;
  options.overlap_decode = overlap;
  return options;
}

void expect_identical(const BlockResult& got, const BlockResult& want) {
  ASSERT_EQ(got.block_index, want.block_index);
  EXPECT_EQ(got.latents, want.latents) << "block " << got.block_index;
  ASSERT_EQ(got.frames.size(), want.frames.size());
  for (size_t f = 0; f < got.frames.size(); ++f) {
    EXPECT_EQ(got.frames[f].index, want.frames[f].index);
    EXPECT_EQ(got.frames[f].rgb, want.frames[f].rgb)
        << "block " << got.block_index << " frame " << f;
  }
}

TEST(CudaDecodeOverlap, SameFramesLatentsAndMemoryAsTheSerialOrder) {
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device (or built without CUDA)";
  const auto model = Model::load(kTinyModel);
  EXPECT_TRUE(Session(model,
                      [] {
                        SessionOptions o;
                        o.device = DeviceKind::cuda;
                        return o;
                      }())
                  .overlaps_decode())
      << "on by default on a GPU";
  for (ComputePrecision precision : {ComputePrecision::fp32, ComputePrecision::bf16}) {
    SCOPED_TRACE(precision == ComputePrecision::bf16 ? "bf16" : "fp32");
    Session on(model, gpu_options(precision, true)), off(model, gpu_options(precision, false));
    ASSERT_TRUE(on.overlaps_decode());
    ASSERT_FALSE(off.overlaps_decode());
    on.set_prompt("a red balloon over snowy mountains at dusk");
    off.set_prompt("a red balloon over snowy mountains at dusk");
    auto step = [&](int blocks) {
      for (int i = 0; i < blocks; ++i) {
        const BlockResult a = on.generate_next_block();
        const BlockResult b = off.generate_next_block();
        std::printf(
            "[ overlap  ] block %lld: decode %.2f ms, clean %.2f ms, total %.2f ms "
            "(serial: %.2f, %.2f, %.2f)\n",
            static_cast<long long>(a.block_index), a.timings.decode_ms, a.timings.clean_ms,
            a.timings.total_ms, b.timings.decode_ms, b.timings.clean_ms, b.timings.total_ms);
        expect_identical(a, b);
        EXPECT_EQ(on.snapshot(), off.snapshot()) << "after block " << a.block_index;
      }
    };
    step(3);  // the second clean pass is recorded (a CUDA graph) while the decode runs beside it
    const MemoryState at_three = on.snapshot();
    on.set_prompt("birds over a green forest at dawn", 2);
    off.set_prompt("birds over a green forest at dawn", 2);
    EXPECT_EQ(on.snapshot(), off.snapshot());
    step(2);
    on.restore(at_three);
    off.restore(at_three);
    step(2);
    const BlockResult last = off.generate_next_block();
    const BlockResult mine = on.generate_next_block();
    expect_identical(mine, last);
    const std::vector<Frame> again = on.decode_latents(last.latents, last.frames[0].index);
    ASSERT_EQ(again.size(), last.frames.size());
    for (size_t f = 0; f < again.size(); ++f) EXPECT_EQ(again[f].rgb, last.frames[f].rgb);
  }
}

}  // namespace
}  // namespace strand
