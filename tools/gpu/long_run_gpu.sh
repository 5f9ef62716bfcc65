#!/usr/bin/env bash
# Issue 3's 10000-frame long run on a GPU machine: strand-cli renders the bundled model on the GPU
# (fp32), training/evaluate.py scores 1000-frame windows, training/long_run.py writes the report
# and the strip. The same steps as docs/bench/model-long-run.md's CPU run, minus the CPU benches.
# The full text encoder cannot travel (64 MiB per call), so the vocabulary-pruned one
# (.deps/gpu-train, carried for training) is expanded back to the engine's format; its rows for
# the prompt's tokens are the full file's (training/prune_text_encoder.py --expand checks that).
#
#   OUT=/path BUILD=build-cuda [PROMPT=...] [FRAMES=10000] [WINDOWS="0 5000 9000"] bash tools/gpu/long_run_gpu.sh
#   OUT=/tmp/lr BUILD=build-lead DEVICE=cpu FRAMES=90 WINDOW=30 WINDOWS="0 60" bash tools/gpu/long_run_gpu.sh  # dry run
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:?set OUT}"
BUILD="${BUILD:-build-cuda}"
PROMPT="${PROMPT:-snowy mountains at dusk}"
FRAMES="${FRAMES:-10000}"
WINDOWS="${WINDOWS:-0 5000 9000}"   # window starts; the first and the last are the drift pair
WINDOW="${WINDOW:-1000}"            # frames per scored window
DEVICE="${DEVICE:-cuda}"            # cpu for a dry run here
MODEL="${MODEL:-resources/models/strand-world-v1.safetensors}"
PY="${STRAND_PYTHON:-python3}"
WORK="$(mktemp -d /tmp/strand-longrun.XXXXXX)"
mkdir -p "$OUT"
say() { printf '[long run %4ds] %s\n' "$SECONDS" "$*"; }

"$PY" training/prune_text_encoder.py --expand .deps/gpu-train/text-encoder-minilm-l6-v2.pruned.safetensors \
  --out "$WORK/encoder/text-encoder-minilm-l6-v2.safetensors" --prompt "$PROMPT" || exit 1
printf '[{"frame": 0, "prompt": "%s"}]\n' "$PROMPT" > "$WORK/schedule.json"
say "render $FRAMES frames on the GPU"
STRAND_MODELS_DIR="$WORK/encoder" "$BUILD/bin/strand-cli" render --model "$MODEL" \
  --schedule "$WORK/schedule.json" --frames "$FRAMES" --seed 1 --device "$DEVICE" --precision fp32 \
  --out "$WORK/frames" --stats "$OUT/stats.json" > "$OUT/render.log" 2>&1 &
pid=$!
: > "$OUT/rss_samples.txt"
while kill -0 "$pid" 2>/dev/null; do  # seconds, frames written, VmRSS kB (as long_run.py reads)
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  n=$(ls "$WORK"/frames*/ 2>/dev/null | wc -l)
  [[ -n "$rss" ]] && echo "$SECONDS $n $rss" >> "$OUT/rss_samples.txt"
  sleep 2
done
wait "$pid" || { say "render failed"; tail -n 5 "$OUT/render.log"; exit 1; }
say "scoring windows: $WINDOWS"
args=()
for w in $WINDOWS; do
  d="$WORK/win-$w"
  mkdir -p "$d"
  for ((i = w; i < w + WINDOW && i < FRAMES; i++)); do
    f=$(printf 'frame_%06d.png' "$i")
    ln -s "$WORK/frames/$f" "$d/$f"
  done
  "$PY" training/evaluate.py --frames "$d" --schedule "$WORK/schedule.json" --json "$OUT/eval-$w.json" \
    --seed 1 --block-frames 3 --threads 8 > "$OUT/eval-$w.log" 2>&1 || say "window $w: evaluate failed"
  args+=(--eval-window "$w=$OUT/eval-$w.json")
done
first=${WINDOWS%% *}
last=${WINDOWS##* }
"$PY" training/long_run.py report --stats "$OUT/stats.json" --rss "$OUT/rss_samples.txt" \
  --eval-first "$OUT/eval-$first.json" --eval-last "$OUT/eval-$last.json" "${args[@]}" \
  --frames "$WORK/frames" --plot "$OUT/long-run.png" --json "$OUT/long-run.json" \
  --command "FRAMES=$FRAMES bash tools/gpu/long_run_gpu.sh (render --device $DEVICE --precision fp32)" \
  > "$OUT/report.log" 2>&1 || say "report failed"
"$PY" training/long_run.py strip --frames "$WORK/frames" \
  --indices "0,$((FRAMES / 4)),$((FRAMES / 2)),$((3 * FRAMES / 4)),$((FRAMES - 1))" \
  --prompt "$PROMPT" --seed 1 --out "$OUT/strip.png" >> "$OUT/report.log" 2>&1 || say "strip failed"
say "done"
tail -n 5 "$OUT/report.log"
