#!/usr/bin/env bash
# Evaluates a Strand model on prompt schedules held out of training (issue 3, section 5):
# renders each schedule with strand-cli (C++ engine, PNG frames), scores it with
# training/evaluate.py, and writes OUTDIR/summary.json with adherence per attribute and mean,
# switch latency, flicker relative to the world's own, drift over the longest clip and revisit
# consistency (training/eval_model.py says how the schedules and the summary are made).
#
#   training/evaluate_model.sh MODEL OUTDIR [--frames N] [--seed S] [--threads T] [--cli PATH]
#                              [--keep-frames] [--recache K]
#
# MODEL    a .safetensors model, or "world" for world.py's ground truth of the same schedules
#          (the upper reference). A model names its text encoder file; strand-cli looks for it
#          next to the model, in $STRAND_MODELS_DIR, then in <repo>/.deps/models (./strand setup);
#          this script sets STRAND_MODELS_DIR to <repo>/.deps/models when unset.
# --frames N  frames of the switches and revisit clips (default 240); the long clip has 1.5 N.
# --seed S    strand-cli's seed, and the world seed of the ground truth (default 1).
# --threads T CPU threads of strand-cli and evaluate.py (default 1: on a shared machine two
#             OpenMP threads contending with other work ran 13x slower than one).
# --cli PATH  strand-cli binary (default: build/bin/strand-cli, else the newest build-*/bin one).
# --keep-frames  keep OUTDIR/frames/ (PNG) for strips; otherwise removed once scored.
# --recache K    at each prompt change, replay the last K blocks' clean passes under the new
#             prompt (strand-cli render --recache; default 0: a hard switch, as the runs above).
#
# Everything written goes under OUTDIR: schedules/, frames/, stats/ (strand-cli --stats),
# eval/ (evaluate.py reports, per frame), summary.json, log.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${STRAND_PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 2 ]] || usage
MODEL="$1"; OUTDIR="$2"; shift 2
FRAMES=240; SEED=1; CLI=""; KEEP=0; THREADS=1; RECACHE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --frames) FRAMES="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --cli) CLI="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --keep-frames) KEEP=1; shift ;;
    --recache) RECACHE="$2"; shift 2 ;;
    *) echo "evaluate_model.sh: unknown option '$1'" >&2; usage ;;
  esac
done
[[ "$FRAMES" =~ ^[0-9]+$ ]] || { echo "evaluate_model.sh: --frames needs a number" >&2; exit 2; }
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || { echo "evaluate_model.sh: --threads needs a number" >&2; exit 2; }
[[ "$RECACHE" =~ ^[0-9]+$ ]] || { echo "evaluate_model.sh: --recache needs a number" >&2; exit 2; }
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"

if [[ "$MODEL" != "world" ]]; then
  [[ -f "$MODEL" ]] || { echo "evaluate_model.sh: no model file '$MODEL'" >&2; exit 2; }
  if [[ -z "$CLI" ]]; then
    if [[ -x "$ROOT/build/bin/strand-cli" ]]; then CLI="$ROOT/build/bin/strand-cli"
    else CLI="$(ls -t "$ROOT"/build-*/bin/strand-cli 2>/dev/null | head -n1 || true)"; fi
  fi
  [[ -n "$CLI" && -x "$CLI" ]] || { echo "evaluate_model.sh: no strand-cli (./strand setup builds it, or pass --cli)" >&2; exit 2; }
  export STRAND_MODELS_DIR="${STRAND_MODELS_DIR:-$ROOT/.deps/models}"
  # frames per block, from the model's own config (a switch is scored in blocks of it)
  BLOCK_FRAMES="$("$CLI" info --model "$MODEL" | sed -n 's/.* \([0-9][0-9]*\) frames per block.*/\1/p' | head -n1)"
  [[ -n "$BLOCK_FRAMES" ]] || BLOCK_FRAMES=3
else
  BLOCK_FRAMES=3
fi

mkdir -p "$OUTDIR"/{schedules,frames,stats,eval}
LOG="$OUTDIR/log.txt"
: > "$LOG"
note() { echo "$*" | tee -a "$LOG"; }
note "model: $MODEL  cli: ${CLI:-none}  frames: $FRAMES  seed: $SEED  threads: $THREADS  block frames: $BLOCK_FRAMES  recache: $RECACHE"

"$PY" "$ROOT/training/eval_model.py" schedules --frames "$FRAMES" --out "$OUTDIR/schedules" | tee -a "$LOG"

for name in switches revisit long; do
  schedule="$OUTDIR/schedules/$name.json"
  n="$(cat "$OUTDIR/schedules/$name.frames")"
  frames_dir="$OUTDIR/frames/$name"
  rm -rf "$frames_dir"
  start=$(date +%s.%N)
  if [[ "$MODEL" == "world" ]]; then
    "$PY" "$ROOT/training/world.py" render --schedule "$schedule" --frames "$n" --seed "$SEED" \
      --out "$frames_dir" --threads "$THREADS" >/dev/null
    rm -f "$frames_dir/labels.json"
  else
    "$CLI" render --model "$MODEL" --schedule "$schedule" --frames "$n" --seed "$SEED" \
      --out "$frames_dir" --stats "$OUTDIR/stats/$name.json" --recache "$RECACHE" >/dev/null
  fi
  mid=$(date +%s.%N)
  "$PY" "$ROOT/training/evaluate.py" --frames "$frames_dir" --schedule "$schedule" \
    --json "$OUTDIR/eval/$name.json" --seed "$SEED" --block-frames "$BLOCK_FRAMES" --per-frame --threads "$THREADS"
  end=$(date +%s.%N)
  note "$name: $n frames, render $(echo "$mid - $start" | bc) s, evaluate $(echo "$end - $mid" | bc) s"
  [[ $KEEP -eq 1 ]] || rm -rf "$frames_dir"
done

"$PY" "$ROOT/training/eval_model.py" summary "$OUTDIR" --block-frames "$BLOCK_FRAMES" \
  --name "$(basename "$MODEL")" | tee -a "$LOG"
echo "summary: $OUTDIR/summary.json"
