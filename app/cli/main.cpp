// strand-cli: command-line front end of the Strand engine (no Qt).
//
//   strand-cli info   [--model M]
//   strand-cli render [--model M] (--prompt P | --schedule S.json) --frames N --seed S --out PATH
//                     [--save-snapshot-at FRAME:FILE]... [--from-snapshot FILE] [--stats FILE.json]
//                     [--recache K] [--device cpu|cuda[:N]] [--precision fp32|bf16]
//   strand-cli bench  [--model M] [--blocks N] [--warmup N] [--threads T] [--json FILE] [--ops]
//                     [--device cpu|cuda[:N]] [--precision fp32|bf16] [--max-seconds S]
//                     [--max-state-bytes B] [--prompt P | --prompt-tokens N] [--seed S]
//                     [--latents-out FILE.safetensors]
//
// Exit codes: 0 success; 2 any error (one line on stderr: "strand-cli: error: ..."), with no
// output left behind; 130 cancelled by Ctrl-C (SIGINT) or SIGTERM, partial outputs removed.
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "cli.h"
#include "strand/error.h"

namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  strand-cli info   [--model M]\n"
    "  strand-cli render [--model M] (--prompt P | --schedule S.json) --frames N --seed S --out "
    "PATH\n"
    "                    [--save-snapshot-at FRAME:FILE]... [--from-snapshot FILE] [--stats "
    "FILE.json]\n"
    "                    [--recache K] [--device cpu|cuda[:N]] [--precision fp32|bf16]\n"
    "  strand-cli bench  [--model M] [--blocks N] [--warmup N] [--threads T] [--json FILE] [--ops]\n"
    "                    [--device cpu|cuda[:N]] [--precision fp32|bf16] [--max-seconds S]\n"
    "                    [--max-state-bytes B] [--prompt P | --prompt-tokens N] [--seed S]\n"
    "                    [--latents-out FILE.safetensors] [--no-graphs] [--no-overlap]\n"
    "\n"
    "render writes a folder of PNGs (PATH/frame_000000.png ...) or, for PATH ending in .mp4, an "
    "H.264\n"
    "video. A schedule is a JSON list of {\"frame\": F, \"prompt\": \"...\"}; each prompt applies "
    "from the\n"
    "block containing its frame. The default model is the bundled strand-world-v1.\n"
    "--device picks the CPU (default, fp32) or a CUDA GPU (default precision bf16: GEMM operands\n"
    "in bfloat16 with float32 accumulation; --precision fp32 for float32 throughout).\n"
    "bench --ops times every op (synchronised) with its least FLOPs and bytes; --max-seconds and\n"
    "--max-state-bytes end a long run early, reporting why; --prompt-tokens N benchmarks with a\n"
    "prompt of N text tokens; --latents-out writes every block's clean latents (float32 tensors\n"
    "block.N [F, C, h, w], warm-up blocks included) to a safetensors file. On a GPU each kind of\n"
    "DiT pass is recorded once as a CUDA graph and replayed; --no-graphs launches op by op. On a\n"
    "GPU a block's frames are decoded (on a second stream) while its clean pass runs; --no-overlap\n"
    "decodes first, then runs the clean pass.\n";

// Error text on one line, whatever the engine put in it.
std::string one_line(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

int fail(const std::string& message) {
  std::cerr << "strand-cli: error: " << one_line(message) << std::endl;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  if (args.empty()) return fail("no command given (try: strand-cli --help)");
  const std::string& command = args[0];
  if (command == "-h" || command == "--help" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  const std::span<const std::string> rest(args.data() + 1, args.size() - 1);
  for (const auto& arg : rest) {
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
  }
  try {
    if (command == "info") return strand::cli::run_info(rest);
    if (command == "render") return strand::cli::run_render(rest);
    if (command == "bench") return strand::cli::run_bench(rest);
    if (command == "export") return strand::cli::run_export(rest);
    return fail("unknown command '" + command + "' (commands: info, render, bench, export)");
  } catch (const strand::Error& e) {
    if (e.kind() == strand::ErrorKind::cancelled) {
      std::cerr << "strand-cli: cancelled; partial outputs removed" << std::endl;
      return 130;
    }
    return fail(e.what());
  } catch (const std::bad_alloc&) {
    return fail("out of memory");
  } catch (const std::exception& e) {
    return fail(e.what());
  }
}
