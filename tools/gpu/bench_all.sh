#!/usr/bin/env bash
# One GPU job for issue 6: build (cmake preset `cuda`), run the tests, and time everything, writing
# at most 8 files into $OUT:
#   summary.md, summary.json      what docs/performance.md's GPU section is filled from
#   ops_vs_floor.png, long_run.png, compare_921.png   plots (tools/gpu/report.py)
#   raw.tar.gz                    every JSON result and log (re-plot: tools/gpu/report.py --work)
#   bench.log                     this script's own output
#
#   OUT=/path bash tools/gpu/bench_all.sh            # on the GPU machine (7-9 minutes, < 10)
#   OUT=/tmp/dry bash tools/gpu/bench_all.sh --dry-run   # anywhere: CPU, tiny shapes, same steps
#
# Stages, in order of importance, each under its own time limit; a stage that fails or runs out of
# time is reported and the rest still runs; a stage that no longer fits before DEADLINE_S is
# skipped (and reported so):
#   env, build, tests (ctest), roofline (tools/gpu/roofline.py), default-model fps (fp32 + bf16,
#   with and without CUDA graphs, and the trained model when present), PyTorch reference self-check, 1.3B-shape model files
#   (generated here: 2.6 GB each, too big to upload), per-op profile vs floors, all-hybrid 300
#   blocks, all-hybrid without CUDA graphs (a few blocks), PyTorch reference per-block time, 22 hybrid + 8 softmax_kv over 77 blocks (921 frames),
#   all softmax_kv towards 77 blocks (stops at its time or memory budget; report.py extrapolates),
#   the CUDA attention microbenchmark when built, bf16 error of the engine vs PyTorch's
#   (tools/gpu/bf16_error.py: bundled model, then the 1.3B-shape mixed model, a few blocks each;
#   last, so it runs when time is left: give it time with ONLY_STAGES), report.
#
# Environment: OUT [out/gpu-bench], DEADLINE_S [540] (no stage starts after it; the report and
# packing take ~20 s more), BUILD_DIR [build-cuda], MODELS_DIR [/tmp/strand-gpu-models],
# STRAND_PYTHON [python3], TEST_REGEX [all tests], HYBRID_BLOCKS [300], COMMIT [git HEAD],
# ONLY_STAGES [all; e.g. "env build models bf16_error": the others are skipped],
# BF16_BLOCKS ["4 3": blocks of the bf16_error runs on the bundled and the 1.3B-shape model].
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "bench_all.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

export OUT="${OUT:-$ROOT/out/gpu-bench}"
mkdir -p "$OUT"
exec > >(tee "$OUT/bench.log") 2>&1
T0=$(date +%s)
DEADLINE_S="${DEADLINE_S:-540}"
RESERVE_S=20
TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/strand-gpu-bench.XXXXXX")"
export WORK="$TMP_ROOT/raw"
mkdir -p "$WORK"
export BUILD="${BUILD_DIR:-$ROOT/build-cuda}"
export MODELS="${MODELS_DIR:-/tmp/strand-gpu-models}"
mkdir -p "$MODELS"
export CLI="$BUILD/bin/strand-cli"
export TINY="$ROOT/tests/data/strand-tiny-random.safetensors"  # the random test model (no text encoder needed)

PY="${STRAND_PYTHON:-python3}"
if ! "$PY" -c 'import torch' 2>/dev/null && [[ -x "$ROOT/.venv/bin/python" ]]; then
  PY="$ROOT/.venv/bin/python"
fi
export PY PYTHONUNBUFFERED=1

if (( DRY )); then
  export DEVICE=cpu TORCH_DEVICE=cpu SCALE=tiny PRECISIONS="fp32" TEXT_TOKENS=40
  export SMALL_BLOCKS=3 OPS_BLOCKS=1 MIXED_BLOCKS=6 HYBRID_BLOCKS="${HYBRID_BLOCKS:-12}"
  export KV_BLOCKS=6 TORCH_BLOCKS=2 TEST_REGEX="${TEST_REGEX:-CliTest.Rejects}" NOGRAPH_BLOCKS=2
  export BF16_BLOCKS="${BF16_BLOCKS:-2 2}"
else
  export DEVICE=cuda TORCH_DEVICE=cuda SCALE=ref PRECISIONS="fp32 bf16" TEXT_TOKENS=512
  export SMALL_BLOCKS=20 OPS_BLOCKS=2 MIXED_BLOCKS=77 HYBRID_BLOCKS="${HYBRID_BLOCKS:-300}"
  export KV_BLOCKS=77 TORCH_BLOCKS=10 TEST_REGEX="${TEST_REGEX:-}" NOGRAPH_BLOCKS=8
  export BF16_BLOCKS="${BF16_BLOCKS:-4 3}"
fi
export KV_MAX_STATE_BYTES=$((60 * 1024 * 1024 * 1024))  # host + device safety for the full cache
export LARGE_PREC=bf16
(( DRY )) && LARGE_PREC=fp32

say() { printf '[%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# ---- stage runner ----------------------------------------------------------------------------
STAGES_TSV="$WORK/stages.tsv"
SPANS_TSV="$WORK/stage_times.tsv"
: > "$STAGES_TSV"
: > "$SPANS_TSV"

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$STAGES_TSV"; }

# run_stage NAME CAP_S NEED_S FUNCTION: runs FUNCTION (a stage_* below) with a time limit, its
# output in $WORK/NAME.log; STAGE_CAP tells it how long it may take.
run_stage() {
  local name=$1 cap=$2 need=$3 fn=$4
  if [[ -n "${ONLY_STAGES:-}" && " $ONLY_STAGES " != *" $name "* ]]; then
    record "$name" skipped 0 "not in ONLY_STAGES"
    return 0
  fi
  local left=$(( DEADLINE_S - ($(date +%s) - T0) - RESERVE_S ))
  if (( left < need )); then
    say "-- $name: skipped (${left}s left, needs ${need}s)"
    record "$name" skipped 0 "no time left (${left}s, needs ${need}s)"
    return 0
  fi
  (( cap > left )) && cap=$left
  export STAGE_CAP=$cap
  say "== $name (limit ${cap}s)"
  local begin end rc
  begin=$(date +%s.%N)
  timeout --kill-after=15 "$cap" bash -c "$fn" >> "$WORK/$name.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  printf '%s\t%s\t%s\n' "$name" "$begin" "$end" >> "$SPANS_TSV"
  local secs
  secs=$(awk -v a="$begin" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  local last
  last=$(grep -v '^\s*$' "$WORK/$name.log" 2>/dev/null | tail -n 1 | tr '\t' ' ' | cut -c1-160)
  if (( rc == 0 )); then
    record "$name" ok "$secs" "${STAGE_NOTE:-}"
    say "   $name ok (${secs}s)"
  elif (( rc == 124 || rc == 137 )); then
    record "$name" timeout "$secs" "stopped at its ${cap}s limit; last line: $last"
    say "   $name TIMED OUT after ${secs}s: $last"
  else
    record "$name" failed "$secs" "exit $rc; last line: $last"
    say "   $name FAILED (exit $rc): $last"
  fi
  return 0
}

# Seconds a bench may spend generating within its stage (the rest: loading, uploading, exiting).
budget() { local b=$(( STAGE_CAP - $1 )); (( b < 5 )) && b=5; echo "$b"; }
export -f budget

# ---- stages ----------------------------------------------------------------------------------
stage_env() {
  "$PY" - <<'PYEOF'
import json, os, subprocess, datetime
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:
        return f"unavailable ({exc})"
env = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
       "mode": "dry-run (CPU, tiny shapes)" if os.environ.get("DEVICE") == "cpu" else "gpu",
       "commit": os.environ.get("COMMIT") or sh("git rev-parse --short HEAD 2>/dev/null") or "unknown",
       "gpu": sh("nvidia-smi --query-gpu=name --format=csv,noheader | head -n1") or "none",
       "driver": sh("nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n1"),
       "nvidia_smi": sh("nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv"),
       "nvcc": sh("nvcc --version | tail -n 2"), "cmake": sh("cmake --version | head -n1"),
       "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"), "cores": os.cpu_count(),
       "torch": sh(os.environ["PY"] + " -c 'import torch; print(torch.__version__, torch.version.cuda)'")}
json.dump(env, open(os.path.join(os.environ["WORK"], "env.json"), "w"), indent=1)
print(json.dumps(env, indent=1))
PYEOF
}

stage_build() {
  cmake --preset cuda -B "$BUILD" || return 1
  local targets="strand-cli strand_core_tests strand_cuda_tests"
  local t
  for t in strand-bench-attention strand-bench-delta-rule strand-bench-gemm strand-bench-elementwise; do
    if ninja -C "$BUILD" -t targets all 2>/dev/null | grep -q "^$t:"; then targets="$targets $t"; fi
  done
  cmake --build "$BUILD" -j "$(nproc)" --target $targets
}

stage_tests() {
  local args=(--test-dir "$BUILD" -j "$(nproc)" --timeout 120 --output-on-failure)
  [[ -n "$TEST_REGEX" ]] && args+=(-R "$TEST_REGEX")
  ctest "${args[@]}" > "$WORK/ctest.log" 2>&1
  local rc=$?
  grep -E "tests passed|tests failed" "$WORK/ctest.log" | tail -n 1
  return $rc
}

stage_roofline() {
  local q=""
  [[ "$DEVICE" == cpu ]] && q="--quick"
  "$PY" tools/gpu/roofline.py --json "$WORK/roofline.json" $q
}

stage_attention_microbench() {
  [[ -x "$BUILD/bin/strand-bench-attention" ]] || { echo "strand-bench-attention not built"; return 0; }
  "$BUILD/bin/strand-bench-attention" 20 | tee "$WORK/bench-attention.log"
}

stage_delta_microbench() {
  [[ -x "$BUILD/bin/strand-bench-delta-rule" ]] || { echo "strand-bench-delta-rule not built"; return 0; }
  "$BUILD/bin/strand-bench-delta-rule" 50 | tee "$WORK/bench-delta-rule.log"
}

stage_gemm_microbench() {
  [[ -x "$BUILD/bin/strand-bench-gemm" ]] || { echo "strand-bench-gemm not built"; return 0; }
  "$BUILD/bin/strand-bench-gemm" 20 | tee "$WORK/bench-gemm.log"
}

stage_elementwise_microbench() {
  [[ -x "$BUILD/bin/strand-bench-elementwise" ]] || { echo "strand-bench-elementwise not built"; return 0; }
  "$BUILD/bin/strand-bench-elementwise" 50 | tee "$WORK/bench-elementwise.log"
}

# compute-sanitizer on the kernels new since the last sanitizer run (SANITIZE_MEMCHECK and
# SANITIZE_RACECHECK: gtest filters of strand_cuda_tests), half the stage's time each.
export SANITIZE_MEMCHECK="${SANITIZE_MEMCHECK:-CudaAttentionVariant.*:Precision/CudaOps.FeedForward/*:Precision/CudaOps.Norms/*:Precision/CudaOps.LayerNormModulate/*:Precision/CudaOps.GatedDeltaUpdateAndMemoryRead/*:LtGemmTest.*:Shapes/CudaDeltaRule.GroupedFp32*T901*:Shapes/CudaDeltaRule.GroupedFp32*T1100*:Shapes/CudaDeltaRule.GroupedTf32*T777*:CudaDeltaRuleGrouped.ResetInALaterGroupForgetsTheStart:CudaDecodeOverlap.*:Shapes/CudaDeltaRule.FoldedSinglePass*T901*:CudaDeltaRuleWorkspace.FoldedSizes:Shapes/CudaDeltaRule.OverlappedSinglePass*T901*:CudaDeltaRuleOverlapped.*:Precision/CudaOps.GatedResidual*:Precision/CudaOps.Rope*:Precision/CudaOps.L2NormalizeHeads/*:Precision/CudaOps.Activations/*:Precision/CudaOps.MemoryGates/*:*QkNormRope*:*L2NormalizeHeadsRows*:*MemoryGatesRows*}"
export SANITIZE_RACECHECK="${SANITIZE_RACECHECK:-CudaAttentionVariant.*:Shapes/CudaDeltaRule.GroupedFp32*T901*:Shapes/CudaDeltaRule.GroupedFp32*T777*:Shapes/CudaDeltaRule.ChunkedTf32*T777*:Shapes/CudaDeltaRule.FoldedSinglePass*T777*:Shapes/CudaDeltaRule.OverlappedSinglePass*T777*:Precision/CudaOps.Norms/*:*QkNormRope*}"
stage_sanitize() {
  local cs
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
  [[ -n "$cs" && -x "$cs" ]] || { echo "compute-sanitizer not found"; return 1; }
  local half=$(( (STAGE_CAP - 4) / 2 )) rc=0
  timeout "$half" "$cs" --tool memcheck --error-exitcode 9 "$BUILD/bin/strand_cuda_tests" \
    --gtest_filter="$SANITIZE_MEMCHECK" > "$WORK/memcheck.log" 2>&1 || rc=$?
  echo "memcheck exit $rc: $(grep -E 'ERROR SUMMARY|tests? (ran|passed)|FAILED' "$WORK/memcheck.log" | tr '\n' ' ')"
  local rc2=0
  timeout "$half" "$cs" --tool racecheck --error-exitcode 9 "$BUILD/bin/strand_cuda_tests" \
    --gtest_filter="$SANITIZE_RACECHECK" > "$WORK/racecheck.log" 2>&1 || rc2=$?
  echo "racecheck exit $rc2: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY|tests? (ran|passed)|FAILED' "$WORK/racecheck.log" | tr '\n' ' ')"
  (( rc == 0 && rc2 == 0 ))
}

# The text encoder of the trained model: the real one if it travelled, else a random stand-in of
# the same shape (the encoder runs once per prompt: its weights do not change the DiT's speed).
trained_encoder_dir() {
  local name="text-encoder-minilm-l6-v2.safetensors"
  for d in "${STRAND_MODELS_DIR:-}" .deps/gpu .deps/models; do
    [[ -n "$d" && -f "$d/$name" ]] && { echo "$d"; return; }
  done
  mkdir -p "$MODELS/encoder"
  if [[ ! -f "$MODELS/encoder/$name" ]]; then
    "$PY" tools/gpu/make_large_model.py --text-encoder-like \
      resources/models/strand-world-v1.safetensors --out "$MODELS/encoder/$name" \
      --device "$TORCH_DEVICE" >&2 || return 1
    echo "stand-in" > "$MODELS/encoder/STAND_IN"
  fi
  echo "$MODELS/encoder"
}
export -f trained_encoder_dir

stage_small() {
  local rc=0 p
  for p in $PRECISIONS; do
    "$CLI" bench --model "$TINY" --device "$DEVICE" --precision "$p" --blocks "$SMALL_BLOCKS" \
      --warmup 2 --json "$WORK/small-tiny-$p.json" || rc=1
    # The same with every op launched on its own (no CUDA graphs): what recording passes buys.
    "$CLI" bench --model "$TINY" --device "$DEVICE" --precision "$p" --blocks "$SMALL_BLOCKS" \
      --warmup 2 --no-graphs --json "$WORK/small-tiny-$p-nographs.json" || rc=1
  done
  local trained=resources/models/strand-world-v1.safetensors
  if [[ -f "$trained" ]]; then
    local enc
    enc=$(trained_encoder_dir) || return 1
    [[ -f "$enc/STAND_IN" ]] && echo "trained model: random stand-in text encoder ($enc)"
    for p in $PRECISIONS; do
      STRAND_MODELS_DIR="$enc" "$CLI" bench --model "$trained" --device "$DEVICE" \
        --precision "$p" --blocks "$SMALL_BLOCKS" --warmup 2 --json "$WORK/small-trained-$p.json" || rc=1
    done
    # Decode run beside the clean pass (the default on a GPU) vs after it: what the overlap buys.
    p="${PRECISIONS##* }"
    STRAND_MODELS_DIR="$enc" "$CLI" bench --model "$trained" --device "$DEVICE" --precision "$p" \
      --blocks "$SMALL_BLOCKS" --warmup 2 --no-overlap --json "$WORK/small-trained-$p-nooverlap.json" ||
      rc=1
  fi
  return $rc
}

stage_reference_check() {
  "$PY" training/bench_gpu.py --self-check --device "$TORCH_DEVICE" --json "$WORK/ref-selfcheck.json"
}

stage_models() {
  local avail_kb
  avail_kb=$(df -Pk "$MODELS" | awk 'NR==2 {print $4}')
  echo "free space in $MODELS: $((avail_kb / 1024 / 1024)) GiB"
  local l rc=0
  for l in mixed hybrid softmax_kv; do
    [[ -f "$MODELS/$SCALE-$l.safetensors" ]] && continue
    "$PY" tools/gpu/make_large_model.py --scale "$SCALE" --layers "$l" \
      --out "$MODELS/$SCALE-$l.safetensors" --device "$TORCH_DEVICE" || rc=1
  done
  ls -la "$MODELS"
  return $rc
}

large() {  # large VARIANT OUTNAME BLOCKS WARMUP LOAD_S [extra strand-cli args...]
  local variant=$1 name=$2 blocks=$3 warmup=$4 load_s=$5
  shift 5
  "$CLI" bench --model "$MODELS/$SCALE-$variant.safetensors" --device "$DEVICE" \
    --precision "$LARGE_PREC" --blocks "$blocks" --warmup "$warmup" --prompt-tokens "$TEXT_TOKENS" \
    --max-seconds "$(budget "$load_s")" --json "$WORK/$name.json" "$@"
}
export -f large

stage_ops() { large mixed ops-mixed "$OPS_BLOCKS" 1 25 --ops; }
stage_ops_hybrid() { large hybrid ops-hybrid "$OPS_BLOCKS" 1 25 --ops; }
stage_hybrid_long() { large hybrid e2e-hybrid "$HYBRID_BLOCKS" 0 25; }
# All-hybrid 1.3B with op-by-op launches, a few blocks: the same model as hybrid_300 without graphs.
stage_hybrid_nographs() { large hybrid e2e-hybrid-nographs "$NOGRAPH_BLOCKS" 1 25 --no-graphs; }
stage_mixed_921() { large mixed e2e-mixed "$MIXED_BLOCKS" 0 25; }
stage_kv_921() { large softmax_kv e2e-kv "$KV_BLOCKS" 0 25 --max-state-bytes "$KV_MAX_STATE_BYTES"; }

stage_pytorch() {
  local half=$(( (STAGE_CAP - 10) / 2 )) rc=0 v
  for v in mixed hybrid; do
    "$PY" training/bench_gpu.py --model "$MODELS/$SCALE-$v.safetensors" --device "$TORCH_DEVICE" \
      --dtype "$LARGE_PREC" --blocks "$TORCH_BLOCKS" --warmup 1 --text-tokens "$TEXT_TOKENS" \
      --max-seconds $(( half > 25 ? half - 20 : 5 )) --json "$WORK/torch-$v.json" > /dev/null || rc=1
  done
  return $rc
}

# Engine bf16 error vs PyTorch's bf16 error, both against fp32 (issue 6, section 2). The engine's
# latents go to $MODELS (scratch), the reports to $WORK/bf16-error-*.json. On the CPU (dry run)
# the engine has no bf16: fp32 parity and torch's bf16 error only.
stage_bf16_error() {
  local blocks=($BF16_BLOCKS) rc=0
  "$PY" tools/gpu/bf16_error.py --cli "$CLI" --device "$DEVICE" --blocks "${blocks[0]}" \
    --json "$WORK/bf16-error-tiny.json" --work "$MODELS/bf16-work-tiny" || rc=1
  local large="$MODELS/$SCALE-mixed.safetensors"
  if [[ -f "$large" ]]; then
    "$PY" tools/gpu/bf16_error.py --cli "$CLI" --device "$DEVICE" --blocks "${blocks[1]}" \
      --model "$large" --json "$WORK/bf16-error-$SCALE-mixed.json" \
      --work "$MODELS/bf16-work-$SCALE-mixed" || rc=1
  else
    echo "no $large (models stage): 1.3B-shape bf16 error not measured"
  fi
  return $rc
}

export -f stage_env stage_build stage_tests stage_roofline stage_attention_microbench stage_delta_microbench stage_gemm_microbench stage_elementwise_microbench stage_sanitize stage_small \
  stage_reference_check stage_models stage_ops stage_ops_hybrid stage_hybrid_long stage_hybrid_nographs stage_mixed_921 stage_kv_921 \
  stage_pytorch stage_bf16_error

# ---- run -------------------------------------------------------------------------------------
say "Strand GPU benchmark ($([[ $DRY == 1 ]] && echo dry-run || echo gpu)); raw results in $WORK"
SMI_PID=""
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu,clocks.sm --format=csv,noheader,nounits \
    -lms 250 > "$WORK/smi.csv" 2>/dev/null &
  SMI_PID=$!
fi

run_stage env 30 5 stage_env
run_stage build 300 30 stage_build
if [[ ! -x "$CLI" ]]; then
  say "no strand-cli: the engine stages cannot run"
fi
run_stage tests 75 20 stage_tests
run_stage attention_microbench 25 10 stage_attention_microbench
run_stage delta_microbench 25 10 stage_delta_microbench
run_stage gemm_microbench 25 10 stage_gemm_microbench
run_stage elementwise_microbench 20 5 stage_elementwise_microbench
run_stage roofline 45 15 stage_roofline
run_stage default_model 120 10 stage_small
run_stage reference_check 30 10 stage_reference_check
run_stage models 90 20 stage_models
run_stage ops 50 35 stage_ops
run_stage ops_hybrid 50 35 stage_ops_hybrid
run_stage hybrid_300 220 45 stage_hybrid_long
run_stage hybrid_nographs 60 30 stage_hybrid_nographs
run_stage pytorch 70 40 stage_pytorch
run_stage mixed_921 100 35 stage_mixed_921
run_stage kv_921 55 35 stage_kv_921
run_stage bf16_error 150 60 stage_bf16_error
run_stage sanitize 150 40 stage_sanitize

[[ -n "$SMI_PID" ]] && kill "$SMI_PID" 2>/dev/null
say "== report"
"$PY" tools/gpu/report.py --work "$WORK" --out "$OUT" > "$WORK/report.out" 2>&1 \
  || say "report FAILED: $(tail -n 3 "$WORK/report.out")"
tar -czf "$OUT/raw.tar.gz" -C "$TMP_ROOT" raw
say "done in $(( $(date +%s) - T0 ))s; files in $OUT:"
ls -la "$OUT"
echo "---- summary ----"
cat "$WORK/report.out"
