#!/usr/bin/env bash
# One timed GPU slot: continue training the Strand model and hand everything back in $OUT.
#
#   OUT=/path TOTAL_MIN=8.5 bash training/gpu_run.sh
#
# Uses every visible GPU for about TOTAL_MIN minutes of wall time (default 8.5), then packs:
#   $OUT/hybrid.safetensors    the default model (all-hybrid), resumed from $RESUME
#   $OUT/kv-full.safetensors   softmax_kv baseline, full cache      (>= 2 GPUs)
#   $OUT/kv-win4.safetensors   softmax_kv baseline, window 4 blocks (>= 4 GPUs)
#   $OUT/logs.tar.gz           losses.json, loss curves (PNG), held_out.json, full logs per run
#   $OUT/<run>.train.log, $OUT/<run>.losses.json   each run's log and losses, copied every few
#                              seconds while it trains (there even when the slot is cut short)
# GPU split: with G >= 4 GPUs the hybrid model trains data-parallel on G-2 of them and each
# baseline on one; with G = 2 or 3 the hybrid takes G-1 and only the full-cache baseline runs;
# with one GPU only the hybrid trains. The baselines start from $RESUME's autoencoder
# (--init-from) and a fresh DiT. Stages: dec only when DEC_MIN > 0 (the decoder alone, subject-weighted; the encoder
# and so the DiT's latents unchanged), dit (teacher forcing), then selfforce; the DiT stages'
# loss is weighted SUBJECT_WEIGHT times on the latent cells that show a subject.
# Models are exported every CKPT_MIN minutes and copied into $OUT as they appear, and a watchdog
# stops training before the deadline, so a slot cut short still returns weights.
#
# New autoencoder (run 9): with AE_MIN > 0 the hybrid model is a new one, not resumed: an ae stage
# of AE_MIN minutes trains a fresh autoencoder of AE_ARGS on every GPU (DDP), then dit and
# selfforce train the DiT on its latents, all in one train.py process (one start-up). The DiT
# starts from scratch (DIT_INIT=fresh) or from $RESUME's DiT (DIT_INIT=shipped: --init-dit-from,
# every DiT tensor whose shape still fits; at patch 4 all but the patch embedding's weight and
# the head's output layer). Fresh is the default: on the CPU (120 dit steps, batch 4, same data
# and noise) the shipped DiT's loss stayed 0.05-0.09 above a fresh one's from step 20 on. As
# soon as the ae stage ends, its export is copied to $OUT/ae.safetensors and scored by
# training/ae_ceiling.py on the CPU while the DiT trains ($OUT/ae_ceiling.json, CEIL_FRAMES
# frames; the shipped 8x model scores 0.757 on its 96); $OUT/hybrid.safetensors is the new model.
# Baselines, DEC_MIN and the LOSSES history are skipped in this mode (a new model's lineage).
#
# Environment (defaults in brackets):
#   OUT [out/gpu-run]  TOTAL_MIN [8.5]  RESUME [resources/models/strand-world-v1.safetensors: the
#            shipped model is the resume point]  LOSSES [training/checkpoints/strand-world-v1.losses.json:
#            its loss history, continued by the new run]
#   ENCODER [.deps/gpu-train/text-encoder-minilm-l6-v2.pruned.safetensors; made by
#            training/prune_text_encoder.py; the exported models name the full encoder file]
#   DIT_SHARE [0.7] share of the training minutes after the dec stage for dit (rest: selfforce)
#   DEC_MIN [0]     minutes of the dec stage (0: none; 1.0 tries it: check with ae_ceiling.py)
#   DECGEN_MIN [0]  minutes of a decgen stage after selfforce (the decoder on the DiT's own
#                   predictions, against grain; 0: none; judge with evaluate_model.sh's flicker)
#   SUBJECT_WEIGHT [6] loss weight of subject cells / pixels (1: the unweighted recipe of runs 1-7)
#   HYBRID_ONLY [0] 1: every GPU trains the hybrid model (no baselines)
#   CKPT_MIN [1.5]  EXTRA_ARGS [] more train.py options for every run (e.g. for a CPU dry run:
#   "--max-steps 2 --pool 2 --batch 2")
#   AE_MIN [0]      minutes of a fresh autoencoder's ae stage (0: resume $RESUME as above)
#   AE_ARGS ["--ae-channels 16,32,64 --latent-channels 8 --patch 4"] its config (AE_MIN > 0)
#   DIT_INIT [fresh] fresh | shipped: the DiT's start when AE_MIN > 0
#   CEIL_FRAMES [96] frames ae_ceiling.py scores the new autoencoder on
# Run 9, 2 or 4 GPUs: OUT=... TOTAL_MIN=9 AE_MIN=2 bash training/gpu_run.sh
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
T0=$(date +%s)
OUT="${OUT:-$ROOT/out/gpu-run}"
TOTAL_MIN="${TOTAL_MIN:-8.5}"
RESUME="${RESUME:-$ROOT/resources/models/strand-world-v1.safetensors}"
LOSSES="${LOSSES:-$ROOT/training/checkpoints/strand-world-v1.losses.json}"
ENCODER="${ENCODER:-$ROOT/.deps/gpu-train/text-encoder-minilm-l6-v2.pruned.safetensors}"
DIT_SHARE="${DIT_SHARE:-0.7}"
DEC_MIN="${DEC_MIN:-0}"
DECGEN_MIN="${DECGEN_MIN:-0}"
SUBJECT_WEIGHT="${SUBJECT_WEIGHT:-6}"
CKPT_MIN="${CKPT_MIN:-1.5}"
AE_MIN="${AE_MIN:-0}"
AE_ARGS="${AE_ARGS:---ae-channels 16,32,64 --latent-channels 8 --patch 4}"
DIT_INIT="${DIT_INIT:-fresh}"
CEIL_FRAMES="${CEIL_FRAMES:-96}"
EXTRA_ARGS="${EXTRA_ARGS:-}"
PY="${STRAND_PYTHON:-python3}"
say() { printf 'gpu_run: %s\n' "$*"; }
NEW_AE=0
awk -v a="$AE_MIN" 'BEGIN { exit !(a > 0) }' && NEW_AE=1
[[ "$DIT_INIT" == shipped || "$DIT_INIT" == fresh ]] || { say "DIT_INIT is shipped or fresh"; exit 2; }
mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/strand-gpu-run.XXXXXX")"

[[ -f "$ENCODER" ]] || { say "text encoder $ENCODER missing (python3 training/prune_text_encoder.py)"; exit 2; }
[[ -f "$RESUME" ]] || { say "checkpoint $RESUME missing"; exit 2; }

GPUS="$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')"
say "$("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])')"
say "$GPUS GPU(s), $(nproc) CPU cores, budget $TOTAL_MIN min, work folder $WORK"

# Minutes: ~1.3 for start-up (imports, CUDA/NCCL, clip pools, batch probe) and the final packing,
# the rest split between the stages. The watchdog stops everything 25 s before the deadline.
# The dec and decgen stages take DEC_MIN and DECGEN_MIN, at most a quarter of the training
# minutes each; an ae stage (AE_MIN, at most half of them) adds 0.2 min of start-up (its own
# clip pool).
((NEW_AE)) && DEC_MIN=0
read -r AE_MIN DEC_MIN DIT_MIN SF_MIN DECGEN_MIN KILL_S < <(awk -v t="$TOTAL_MIN" \
    -v s="$DIT_SHARE" -v d="$DEC_MIN" -v g="$DECGEN_MIN" -v a="$AE_MIN" -v n="$NEW_AE" 'BEGIN {
  train = t - 1.3 - 0.2 * n; if (train < 0.1) train = 0.1
  if (a > train / 2) a = train / 2; if (a < 0 || !n) a = 0
  if (d > train / 4) d = train / 4; if (d < 0) d = 0
  if (g > train / 4) g = train / 4; if (g < 0) g = 0
  rest = train - d - a - g
  printf "%.2f %.2f %.2f %.2f %.2f %d\n", a, d, rest * s, rest * (1 - s), g, t * 60 - 25 }')
STAGES="dit,selfforce"
STAGE_MIN="dit=$DIT_MIN,selfforce=$SF_MIN"
if awk -v g="$DECGEN_MIN" 'BEGIN { exit !(g > 0) }'; then
  STAGES="$STAGES,decgen"; STAGE_MIN="$STAGE_MIN,decgen=$DECGEN_MIN"
fi
if awk -v d="$DEC_MIN" 'BEGIN { exit !(d > 0) }'; then
  STAGES="dec,$STAGES"; STAGE_MIN="dec=$DEC_MIN,$STAGE_MIN"
fi
if ((NEW_AE)); then
  STAGES="ae,$STAGES"; STAGE_MIN="ae=$AE_MIN,$STAGE_MIN"
fi
say "stages $STAGES, minutes $STAGE_MIN; subject weight $SUBJECT_WEIGHT; watchdog at ${KILL_S}s"

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}" PYTHONUNBUFFERED=1
# NVLink multicast stays off: on shared hosts it can take GPUs out of service.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
COMMON=(--text-encoder "$ENCODER" --require-text-encoder --require-world
        --stage "$STAGES" --stage-minutes "$STAGE_MIN" --subject-weight "$SUBJECT_WEIGHT"
        --batch 0 --lr-batch-ref 128 --warmup 30 --clip-blocks 4 --selfforce-blocks 6
        --ae-batch 64 --ae-clips 16
        --checkpoint-minutes "$CKPT_MIN" --log-every 5 --print-every 4)
# shellcheck disable=SC2206
EXTRA=($EXTRA_ARGS)

# GPU numbers below count the GPUs this script may use. When CUDA_VISIBLE_DEVICES names some
# (e.g. "1,2,3" while a benchmark has GPU 0), number i is the i-th of those.
IFS=',' read -r -a VISIBLE <<<"${CUDA_VISIBLE_DEVICES:-}"
visible_list() {
  local list="$1" out="" i
  [[ ${#VISIBLE[@]} -eq 0 || -z "$list" ]] && { echo "$list"; return; }
  for i in ${list//,/ }; do out+="${out:+,}${VISIBLE[$i]}"; done
  echo "$out"
}

# run NAME GPU_LIST NPROC train.py-args...: starts one training run in the background.
PIDS=()
NAMES=()
run() {
  local name="$1" gpus nproc="$3"
  gpus="$(visible_list "$2")"
  shift 3
  local dir="$WORK/$name" launcher=("$PY")
  mkdir -p "$dir"
  if ((nproc > 1)); then
    launcher=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$nproc")
  fi
  say "$name on GPU(s) [${gpus:-cpu}] x$nproc"
  (
    if [[ -n "$gpus" ]]; then export CUDA_VISIBLE_DEVICES="$gpus"; fi
    exec "${launcher[@]}" training/train.py "${COMMON[@]}" --out "$dir" "$@" "${EXTRA[@]}"
  ) >"$dir/train.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

seq_list() { local a="$1" b="$2" s=""; for ((i = a; i <= b; i++)); do s+="${s:+,}$i"; done; echo "$s"; }
# The hybrid run continues the checkpoint's loss log, so its curves show the whole history.
mkdir -p "$WORK/hybrid"
((NEW_AE)) || { [[ -f "$LOSSES" ]] && cp "$LOSSES" "$WORK/hybrid/losses.json"; }
if ((NEW_AE)); then
  # A new model: fresh autoencoder (AE_ARGS), the DiT from $RESUME or fresh; its own loss log.
  # shellcheck disable=SC2206
  NEW=(--keep-stage-exports $AE_ARGS)
  [[ "$DIT_INIT" == shipped ]] && NEW+=(--init-dit-from "$RESUME")
  say "new autoencoder: $AE_ARGS; DiT $DIT_INIT; baselines skipped"
  if ((GPUS >= 1)); then
    run hybrid "$(seq_list 0 $((GPUS - 1)))" "$GPUS" "${NEW[@]}"
  else
    say "no GPU: CPU dry run (tiny budgets only)"
    run hybrid "" 1 "${NEW[@]}" --device cpu
  fi
elif [[ "${HYBRID_ONLY:-0}" == 1 ]] && ((GPUS >= 1)); then
  run hybrid "$(seq_list 0 $((GPUS - 1)))" "$GPUS" --resume "$RESUME"
  say "baselines skipped: HYBRID_ONLY=1"
elif ((GPUS >= 4)); then
  run hybrid "$(seq_list 0 $((GPUS - 3)))" $((GPUS - 2)) --resume "$RESUME"
  run kv-full "$((GPUS - 2))" 1 --init-from "$RESUME" --layers softmax_kv --name strand-world-v1-kv-full
  run kv-win4 "$((GPUS - 1))" 1 --init-from "$RESUME" --layers softmax_kv --window 4 --name strand-world-v1-kv-win4
elif ((GPUS >= 2)); then
  run hybrid "$(seq_list 0 $((GPUS - 2)))" $((GPUS - 1)) --resume "$RESUME"
  run kv-full "$((GPUS - 1))" 1 --init-from "$RESUME" --layers softmax_kv --name strand-world-v1-kv-full
  say "kv-win4 skipped: fewer than 4 GPUs"
elif ((GPUS == 1)); then
  run hybrid 0 1 --resume "$RESUME"
  say "baselines skipped: one GPU"
else
  say "no GPU: CPU dry run of all three runs (tiny budgets only)"
  run hybrid "" 1 --resume "$RESUME" --device cpu
  run kv-full "" 1 --init-from "$RESUME" --layers softmax_kv --name strand-world-v1-kv-full --device cpu
  run kv-win4 "" 1 --init-from "$RESUME" --layers softmax_kv --window 4 --name strand-world-v1-kv-win4 --device cpu
fi

# Copies each run's latest export, log and losses into $OUT (rename in place: a cut never
# leaves half a file).
collect() {
  local name src
  for name in "${NAMES[@]}"; do
    src="$WORK/$name/model.safetensors"
    if [[ -f "$src" && ( ! -f "$OUT/$name.safetensors" || "$src" -nt "$OUT/$name.safetensors" ) ]]; then
      cp "$src" "$OUT/.$name.tmp" && mv -f "$OUT/.$name.tmp" "$OUT/$name.safetensors"
    fi
    for src in train.log losses.json; do
      [[ -f "$WORK/$name/$src" ]] &&
        cp "$WORK/$name/$src" "$OUT/.$name.$src.tmp" && mv -f "$OUT/.$name.$src.tmp" "$OUT/$name.$src"
    done
  done
  if [[ -n "$CEIL_PID" && ! -f "$OUT/ae_ceiling.json" && -s "$WORK/ae_ceiling.json" ]] &&
     ! kill -0 "$CEIL_PID" 2>/dev/null; then
    cp "$WORK/ae_ceiling.json" "$OUT/.ae_ceiling.tmp" && mv -f "$OUT/.ae_ceiling.tmp" "$OUT/ae_ceiling.json"
  fi
}
# AE_MIN > 0: once the ae stage's own export (train.py --keep-stage-exports) is there, copies
# it to $OUT/ae.safetensors and scores it on the CPU in the background while the DiT trains.
CEIL_PID=""
ceiling() {
  ((NEW_AE)) && [[ -z "$CEIL_PID" && -f "$WORK/hybrid/model.ae.safetensors" ]] || return 0
  cp "$WORK/hybrid/model.ae.safetensors" "$OUT/.ae.tmp" && mv -f "$OUT/.ae.tmp" "$OUT/ae.safetensors"
  say "ae stage done: $OUT/ae.safetensors; ae_ceiling.py on $CEIL_FRAMES frames"
  "$PY" training/ae_ceiling.py "$OUT/ae.safetensors" --frames "$CEIL_FRAMES" --threads 4 \
    --text-encoder "$ENCODER" >"$WORK/ae_ceiling.json" 2>"$WORK/ae_ceiling.log" &
  CEIL_PID=$! CEIL_T0=$(date +%s)
}
pack() {
  collect
  local name
  for name in "${NAMES[@]}"; do
    # PNG curves here when the GPU machine lacks matplotlib but this one has it.
    ls "$WORK/$name"/train-*.png >/dev/null 2>&1 || { [[ -f "$WORK/$name/losses.json" ]] &&
      "$PY" training/train_lib/logbook.py "$WORK/$name/losses.json" >/dev/null 2>&1; }
  done
  (cd "$WORK" && find . -type f ! -name '*.safetensors' ! -name '.*' -print0 |
     tar -czf "$OUT/.logs.tmp" --null -T -) && mv -f "$OUT/.logs.tmp" "$OUT/logs.tar.gz"
}

alive() { local p; for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
last_print=0
while alive; do
  sleep 5
  now=$(( $(date +%s) - T0 ))
  collect
  ceiling
  if ((now - last_print >= 30)); then
    last_print=$now
    for name in "${NAMES[@]}"; do
      line="$(grep -E '^train: (.* step |stage .* done|.*batch per GPU)' "$WORK/$name/train.log" 2>/dev/null | tail -1)"
      say "[$name ${now}s] ${line:-starting}"
    done
  fi
  if ((now >= KILL_S)); then
    say "watchdog: ${now}s, stopping the runs (their last checkpoints are kept)"
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 3
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    break
  fi
done
ceiling
if [[ -n "$CEIL_PID" ]]; then
  # The ceiling takes well under a minute; it may not hold the slot past its end.
  while kill -0 "$CEIL_PID" 2>/dev/null && (( $(date +%s) - T0 < KILL_S + 15 )); do sleep 1; done
  kill -TERM "$CEIL_PID" 2>/dev/null
  wait "$CEIL_PID" 2>/dev/null || say "ae_ceiling.py failed or was stopped: $(tail -3 "$WORK/ae_ceiling.log")"
  say "ae ceiling ($(( $(stat -c %Y "$WORK/ae_ceiling.json") - CEIL_T0 ))s): $(cat "$WORK/ae_ceiling.json" 2>/dev/null)"
elif ((NEW_AE)); then
  say "no ae stage export: the ae stage did not finish"
fi
status=0
for i in "${!PIDS[@]}"; do
  wait "${PIDS[$i]}" 2>/dev/null; rc=$?
  name="${NAMES[$i]}"
  say "[$name] exit $rc; last lines:"
  grep -E '^train: ' "$WORK/$name/train.log" | tail -4 | sed 's/^/    /'
  if ((rc != 0)); then grep -v '^train: ' "$WORK/$name/train.log" | tail -15 | sed 's/^/    ! /'; status=1; fi
done
pack
say "$OUT:"; ls -l "$OUT"
say "done in $(( $(date +%s) - T0 ))s"
exit $status
