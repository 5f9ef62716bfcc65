#!/usr/bin/env bash
# One 4-GPU slot doing three jobs at once (device time is counted per machine, not per GPU):
#   GPU 0: bench_all.sh's build, roofline, default models, per-op profile, the all-hybrid
#          300-block run and PyTorch (the figures compared with each other come from one card);
#   GPU 1: tests, microbenchmarks, all-hybrid without graphs, the 921-frame comparison (mixed,
#          all softmax_kv), bf16 error;
#   GPUs 2-3: training (training/gpu_run.sh, HYBRID_ONLY=1: the hybrid model, DDP on 2 GPUs).
# Everything shares one build and one folder of generated 1.3B-shape models, made first on GPU 0.
# Results come back as at most 7 files in $OUT, re-packed every minute so a cut run still returns
# what it had: bench-a.tar.gz, bench-b.tar.gz, train.tar.gz, hybrid.safetensors, longrun.tar.gz
# (LONGRUN_GPU set), run.log.
#
#   OUT=/path TRAIN_MIN=8.3 DEADLINE_S=520 bash tools/gpu/parallel_run.sh
# STAGES_A / STAGES_B override the stage lists of the two halves (bench_all.sh's ONLY_STAGES);
# other bench_all.sh variables (HYBRID_BLOCKS...) pass through.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export OUT="${OUT:?set OUT}"
TRAIN_MIN="${TRAIN_MIN:-8.3}"
DEADLINE_S="${DEADLINE_S:-520}"
T0=$(date +%s)
STAGING="$(mktemp -d /tmp/strand-parallel.XXXXXX)"
mkdir -p "$STAGING/a" "$STAGING/b" "$STAGING/train"
exec > >(tee "$OUT/run.log") 2>&1
say() { printf '[%4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
nvidia-smi --query-gpu=index,name,memory.used --format=csv,noheader || true

pack() {
  local d
  for d in a b; do
    (cd "$STAGING/$d" && tar -czf "$OUT/.bench-$d.tmp" .) && mv -f "$OUT/.bench-$d.tmp" "$OUT/bench-$d.tar.gz"
  done
  (cd "$STAGING/train" && tar -czf "$OUT/.train.tmp" --exclude='*.safetensors' .) &&
    mv -f "$OUT/.train.tmp" "$OUT/train.tar.gz"
  if [[ -d "$STAGING/longrun" ]]; then
    (cd "$STAGING/longrun" && tar -czf "$OUT/.longrun.tmp" .) && mv -f "$OUT/.longrun.tmp" "$OUT/longrun.tar.gz"
  fi
  if [[ -f "$STAGING/train/hybrid.safetensors" ]]; then
    cp "$STAGING/train/hybrid.safetensors" "$OUT/.hybrid.tmp" && mv -f "$OUT/.hybrid.tmp" "$OUT/hybrid.safetensors"
  fi
}

GPUS=$(nvidia-smi -L 2>/dev/null | wc -l)
# TRAIN_GPUS: the GPUs that train (default 2,3 on a 4-GPU host, none on fewer; "1" on a 2-GPU
# host trades the second benchmark half for training).
TRAIN_GPUS="${TRAIN_GPUS:-$( ((GPUS >= 4)) && echo 2,3)}"
TRAIN_PID=""
if [[ -n "$TRAIN_GPUS" ]]; then
  say "training on GPUs $TRAIN_GPUS for $TRAIN_MIN min"
  CUDA_VISIBLE_DEVICES="$TRAIN_GPUS" HYBRID_ONLY=1 TOTAL_MIN="$TRAIN_MIN" OUT="$STAGING/train" \
    bash training/gpu_run.sh > "$STAGING/train/gpu_run.log" 2>&1 &
  TRAIN_PID=$!
fi

# Shared build and models first (GPU 0), then the two benchmark halves side by side.
say "build + models on GPU 0"
CUDA_VISIBLE_DEVICES=0 ONLY_STAGES="env build models" DEADLINE_S=200 OUT="$STAGING/a/prep" \
  bash tools/gpu/bench_all.sh > /dev/null 2>&1
# Attention kernel variants (kernels/cuda/attention.cu): time them all once on GPU 0, then run
# every stage with the fastest per shape class (STRAND_ATTENTION_VARIANTS), so that one run
# measures the engine with them. ATTENTION_PICK=0 keeps the kernel's own defaults.
BUILD_PATH="${BUILD_DIR:-build-cuda}"
if [[ "${ATTENTION_PICK:-1}" == 1 && -x "$BUILD_PATH/bin/strand-bench-attention" ]]; then
  CUDA_VISIBLE_DEVICES=0 "$BUILD_PATH/bin/strand-bench-attention" 10 > "$STAGING/a/attention-variants.log" 2>&1
  STRAND_ATTENTION_VARIANTS=$(python3 tools/gpu/pick_attention_variants.py "$STAGING/a/attention-variants.log" 2>/dev/null)
  export STRAND_ATTENTION_VARIANTS
  say "attention variants: ${STRAND_ATTENTION_VARIANTS:-kernel defaults}"
fi
# LONGRUN_GPU: issue 3's 10000-frame long run of the bundled model (tools/gpu/long_run_gpu.sh).
LR_PID=""
if [[ -n "${LONGRUN_GPU:-}" ]]; then
  mkdir -p "$STAGING/longrun"
  say "long run on GPU $LONGRUN_GPU"
  CUDA_VISIBLE_DEVICES="$LONGRUN_GPU" OUT="$STAGING/longrun" BUILD="$BUILD_PATH" \
    bash tools/gpu/long_run_gpu.sh > "$STAGING/longrun/long_run.log" 2>&1 &
  LR_PID=$!
fi
pack
LEFT=$(( DEADLINE_S - ($(date +%s) - T0) ))
say "benchmarks: ${LEFT}s left"
CUDA_VISIBLE_DEVICES=0 DEADLINE_S="$LEFT" OUT="$STAGING/a/main" \
  ONLY_STAGES="${STAGES_A:-env roofline default_model reference_check ops hybrid_300 pytorch}" \
  bash tools/gpu/bench_all.sh > /dev/null 2>&1 &
A_PID=$!
B_PID=""
if ((GPUS >= 2)) && [[ ",$TRAIN_GPUS," != *",1,"* ]]; then
  CUDA_VISIBLE_DEVICES=1 DEADLINE_S="$LEFT" OUT="$STAGING/b" \
    ONLY_STAGES="${STAGES_B:-env tests attention_microbench delta_microbench hybrid_nographs mixed_921 kv_921 bf16_error}" \
    bash tools/gpu/bench_all.sh > /dev/null 2>&1 &
  B_PID=$!
fi
while kill -0 "$A_PID" 2>/dev/null || { [[ -n "$B_PID" ]] && kill -0 "$B_PID" 2>/dev/null; } ||
      { [[ -n "$TRAIN_PID" ]] && kill -0 "$TRAIN_PID" 2>/dev/null; } ||
      { [[ -n "$LR_PID" ]] && kill -0 "$LR_PID" 2>/dev/null; }; do
  sleep 20
  (( ($(date +%s) - T0) % 60 < 20 )) && pack
done
pack
say "done"
