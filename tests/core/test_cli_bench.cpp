// strand-cli's device options (--device, --precision) and bench's extensions for the GPU benchmarks
// (tools/gpu/bench_all.sh): --warmup, --ops with per-shape FLOPs and bytes, --prompt-tokens,
// --max-state-bytes and --max-seconds, --prompt / --seed and --latents-out (checked against the
// golden rollout of training/make_golden.py). Run as a user runs them: the built binary in a child
// process, on the small golden model.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "cli_process.h"
#include "parity.h"
#include "strand/devices.h"
#include "strand/safetensors.h"

namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(STRAND_TEST_DATA) + "/golden-model.safetensors";

using strand::test::CliRun;
using strand::test::read_text;

class CliBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("strand_cli_bench_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  CliRun run(const std::vector<std::string>& args) { return strand::test::run_cli(args, dir_); }

  void expect_error(const std::vector<std::string>& args, const std::string& in_message) {
    const CliRun r = run(args);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(r.err.starts_with("strand-cli: error: ")) << r.err;
    EXPECT_NE(r.err.find(in_message), std::string::npos) << r.err;
  }

  nlohmann::json bench_json(std::vector<std::string> extra) {
    const std::string json = (dir_ / "bench.json").string();
    std::vector<std::string> args{"bench", "--model", kModel, "--json", json};
    args.insert(args.end(), extra.begin(), extra.end());
    const CliRun r = run(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(read_text(json));
  }

  fs::path dir_;
};

bool cuda_device_present() {
  for (const auto& d : strand::compute_devices()) {
    if (d.kind == "cuda") return true;
  }
  return false;
}

TEST_F(CliBenchTest, RejectsBadDeviceOptions) {
  expect_error({"bench", "--model", kModel, "--device", "gpu"}, "--device expects cpu, cuda");
  expect_error({"bench", "--model", kModel, "--device", "cuda:x"}, "cuda:N");
  expect_error({"bench", "--model", kModel, "--precision", "fp16"}, "--precision expects fp32");
  expect_error({"bench", "--model", kModel, "--precision", "bf16"}, "needs --device cuda");
  const std::string out = (dir_ / "frames").string();
  expect_error({"render", "--model", kModel, "--prompt", "a fox", "--seed", "1", "--frames", "3",
                "--out", out, "--precision", "bf16"},
               "needs --device cuda");
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliBenchTest, CudaWithoutAGpuIsOneClearError) {
  if (cuda_device_present()) GTEST_SKIP() << "a CUDA GPU is present";
  const std::string message =
      strand::built_with_cuda() ? "no CUDA GPU found" : "built without CUDA";
  expect_error({"bench", "--model", kModel, "--device", "cuda"}, message);
  const std::string out = (dir_ / "frames").string();
  expect_error({"render", "--model", kModel, "--prompt", "a fox", "--seed", "1", "--frames", "3",
                "--out", out, "--device", "cuda:0", "--precision", "fp32"},
               message);
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(CliBenchTest, AGpuIndexBeyondTheLastIsRejected) {
  if (!cuda_device_present()) GTEST_SKIP() << "no CUDA GPU";
  expect_error({"bench", "--model", kModel, "--device", "cuda:1023"}, "cuda:1023");
}

// --ops reports every op and shape with the op's least work; the linear entries are checked
// against the shape in their own key (2 r in out FLOPs; x, w, bias and y at 4 bytes).
TEST_F(CliBenchTest, OpsProfileCountsFlopsAndBytesPerShape) {
  const auto j = bench_json({"--blocks", "2", "--warmup", "1", "--ops", "--prompt-tokens", "9"});
  EXPECT_EQ(j["blocks_timed"], 2);
  ASSERT_EQ(j["blocks"].size(), 2u);
  EXPECT_EQ(j["blocks"][0]["block"], 1);  // block 0 was the warm-up
  EXPECT_EQ(j["text_tokens"], 9);
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["precision"], "fp32");
  EXPECT_TRUE(j["stopped"].is_null());
  const auto& shapes = j["ops_by_shape"];
  ASSERT_FALSE(shapes.empty());
  const std::regex linear_key(R"(linear r(\d+) in(\d+) out(\d+))");
  int linear_shapes = 0;
  double linear_calls = 0;
  for (auto it = shapes.begin(); it != shapes.end(); ++it) {
    const auto& e = it.value();
    EXPECT_GT(e["calls"].get<int64_t>(), 0) << it.key();
    EXPECT_GT(e["bytes_f32"].get<double>(), 0) << it.key();
    std::smatch m;
    const std::string key = it.key();
    if (!std::regex_match(key, m, linear_key)) continue;
    ++linear_shapes;
    const double r = std::stod(m[1]), in = std::stod(m[2]), out = std::stod(m[3]);
    const double calls = e["calls"].get<double>();
    linear_calls += calls;
    EXPECT_DOUBLE_EQ(e["flops"].get<double>(), calls * 2 * r * in * out) << key;
    // One shape may mix calls with and without a bias (q has one, mem_q has none).
    const double weights = e["weight_bytes_f32"].get<double>() / calls;
    EXPECT_GE(weights, 4 * out * in) << key;
    EXPECT_LE(weights, 4 * (out * in + out)) << key;
    EXPECT_DOUBLE_EQ(e["bytes_f32"].get<double>() / calls, 4 * (r * in + r * out) + weights) << key;
  }
  EXPECT_GT(linear_shapes, 3);
  EXPECT_DOUBLE_EQ(j["ops_ms"]["linear"]["calls"].get<double>(), linear_calls);
  // The intra-block attention of the golden model: 96 tokens, 4 heads of 16.
  ASSERT_TRUE(shapes.contains("attention q96 k96 h4 d16"));
  const auto& a = shapes["attention q96 k96 h4 d16"];
  EXPECT_DOUBLE_EQ(a["flops"].get<double>(), a["calls"].get<double>() * 4.0 * 96 * 96 * 4 * 16);
}

TEST_F(CliBenchTest, MemoryStateBudgetStopsBeforeTheFirstBlockAndSaysWhy) {
  const auto j = bench_json({"--blocks", "5", "--max-state-bytes", "1"});
  EXPECT_EQ(j["blocks_timed"], 0);
  EXPECT_TRUE(j["blocks"].empty());
  ASSERT_TRUE(j["stopped"].is_string());
  EXPECT_NE(j["stopped"].get<std::string>().find("--max-state-bytes"), std::string::npos);
}

TEST_F(CliBenchTest, TimeBudgetEndsALongRunWithAReport) {
  const auto j = bench_json({"--blocks", "100000", "--max-seconds", "1"});
  const int64_t timed = j["blocks_timed"].get<int64_t>();
  EXPECT_GE(timed, 1);
  EXPECT_LT(timed, 100000);
  EXPECT_EQ(j["blocks"].size(), static_cast<size_t>(timed));
  ASSERT_TRUE(j["stopped"].is_string());
  EXPECT_NE(j["stopped"].get<std::string>().find("time budget"), std::string::npos);
}

// The decode overlaps the clean pass only on a GPU (off on the CPU by default); --no-overlap is
// accepted and reported, and the decode time is reported either way.
TEST_F(CliBenchTest, OverlappedDecodeIsReportedAndNoOverlapIsAccepted) {
  for (const bool no_overlap : {false, true}) {
    const auto j = bench_json(no_overlap ? std::vector<std::string>{"--blocks", "1", "--no-overlap"}
                                         : std::vector<std::string>{"--blocks", "1"});
    EXPECT_EQ(j["overlapped_decode"], false);
    ASSERT_EQ(j["blocks"].size(), 1u);
    EXPECT_GT(j["blocks"][0]["ms"]["decode"].get<double>(), 0.0);
  }
}

TEST_F(CliBenchTest, PromptTokensBeyondTheEncoderAreRejected) {
  expect_error({"bench", "--model", kModel, "--prompt-tokens", "500"}, "takes 32 tokens at most");
}

// --latents-out holds each block's clean latents: with the golden rollout's prompt and seed, blocks
// 0 and 1 are the reference's (run1, before its prompt switch) within the parity tolerance.
TEST_F(CliBenchTest, LatentsOutHoldsEveryBlocksCleanLatents) {
  const std::string prompt = "a red balloon over snowy mountains at dusk";  // make_golden PROMPT_A
  const fs::path latents = dir_ / "sub" / "latents.safetensors";
  const auto j = bench_json({"--blocks", "1", "--warmup", "1", "--prompt", prompt, "--seed", "1234",
                             "--latents-out", latents.string()});
  EXPECT_EQ(j["prompt"], prompt);
  EXPECT_EQ(j["seed"], 1234);
  const auto file = strand::SafetensorsFile::load(latents.string());
  EXPECT_EQ(file.metadata().at("format"), "strand-latents");
  EXPECT_EQ(file.metadata().at("prompt"), prompt);
  EXPECT_EQ(file.metadata().at("seed"), "1234");
  EXPECT_EQ(file.metadata().at("device"), "cpu");
  EXPECT_EQ(file.metadata().at("precision"), "fp32");
  EXPECT_EQ(file.metadata().at("blocks"), "2");
  ASSERT_EQ(file.tensors().size(), 2u);  // the warm-up block is written too
  const auto rollout =
      strand::SafetensorsFile::load(std::string(STRAND_TEST_DATA) + "/golden-rollout.safetensors");
  for (int b = 0; b < 2; ++b) {
    const strand::TensorInfo* got = file.find("block." + std::to_string(b));
    ASSERT_NE(got, nullptr) << b;
    EXPECT_EQ(got->dtype, strand::DType::F32);
    EXPECT_EQ(got->shape, (std::vector<int64_t>{3, 4, 4, 8}));  // [F, C, h, w] of the golden model
    const strand::TensorInfo* want = rollout.find("run1.b" + std::to_string(b) + ".latents");
    ASSERT_NE(want, nullptr);
    EXPECT_LT(strand::test::rel_error(file.to_f32(*got), rollout.to_f32(*want)), 1e-4) << b;
  }
  // Another seed gives other latents (the option reaches the session).
  const fs::path other = dir_ / "other.safetensors";
  bench_json(
      {"--blocks", "1", "--prompt", prompt, "--seed", "1235", "--latents-out", other.string()});
  const auto other_file = strand::SafetensorsFile::load(other.string());
  EXPECT_GT(strand::test::rel_error(other_file.to_f32(*other_file.find("block.0")),
                                    file.to_f32(*file.find("block.0"))),
            0.1);
}

TEST_F(CliBenchTest, BadPromptSeedAndLatentsOptionsAreOneClearErrorAndWriteNothing) {
  const fs::path latents = dir_ / "latents.safetensors";
  expect_error({"bench", "--model", kModel, "--prompt", "a", "--prompt-tokens", "5"},
               "exclude each other");
  expect_error({"bench", "--model", kModel, "--prompt", "  ", "--latents-out", latents.string()},
               "--prompt");
  expect_error({"bench", "--model", kModel, "--seed", "-1", "--latents-out", latents.string()},
               "--seed expects an integer");
  EXPECT_FALSE(fs::exists(latents));
  const fs::path blocker = dir_ / "file";
  std::ofstream(blocker) << "x";
  expect_error({"bench", "--model", kModel, "--latents-out", (blocker / "l.safetensors").string()},
               "--latents-out");
}

}  // namespace
