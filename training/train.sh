#!/usr/bin/env bash
# Trains the Strand model on a GPU machine (docs/model-card.md, "How to train").
#
#   bash training/train.sh [--minutes M] [--out DIR] [--resume MODEL.safetensors]
#                          [--stage ae|dit|selfforce|all] [--gpus N] [more train.py options]
#
# --minutes is the budget of EACH stage; the model is exported to DIR/model.safetensors at the
# end of every stage and every --checkpoint-minutes (default 5), so a short slot loses little.
# --gpus N > 1 runs N data-parallel processes (torchrun, DDP); the default is every visible GPU.
# Baselines of the same size: --layers softmax_kv [--window W].
# Everything after the options above goes to training/train.py (python3 training/train.py -h).
#
# The text encoder is the converted all-MiniLM-L6-v2 (.deps/models/, made by
# training/convert_minilm.py, also with --f16 for machines that only take small uploads);
# STRAND_TEXT_ENCODER=FILE points elsewhere. Without it, training warns and falls back to the
# model's own small encoder. STRAND_PYTHON picks the interpreter (default: the first of python3
# and .venv/bin/python whose torch sees a GPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf 'train.sh: %s\n' "$*" >&2; }

gpus=""
args=()
while (($#)); do
  case "$1" in
    --gpus) gpus="$2"; shift 2 ;;
    --gpus=*) gpus="${1#--gpus=}"; shift ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done

pick_python() {
  local c
  for c in ${STRAND_PYTHON:-} python3 "$ROOT/.venv/bin/python"; do
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
      echo "$c"; return
    fi
  done
  for c in ${STRAND_PYTHON:-} "$ROOT/.venv/bin/python" python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch' 2>/dev/null; then
      say "no GPU visible to PyTorch: training on the CPU (fine for a smoke test only)"
      echo "$c"; return
    fi
  done
  say "no Python with PyTorch found (set STRAND_PYTHON)"; exit 1
}
PY="$(pick_python)"

encoder="${STRAND_TEXT_ENCODER:-$ROOT/.deps/models/text-encoder-minilm-l6-v2.safetensors}"
if [[ ! -f "$encoder" ]] && [[ -z "${STRAND_TEXT_ENCODER:-}" ]]; then
  "$PY" "$ROOT/training/convert_minilm.py" --out "$encoder" >&2 ||
    say "could not convert the MiniLM text encoder: train.py falls back to its own small encoder"
fi
[[ -f "$encoder" ]] && args=(--text-encoder "$encoder" "${args[@]}")

if [[ -z "$gpus" ]]; then
  gpus="$("$PY" -c 'import torch; print(max(1, torch.cuda.device_count()))')"
fi
# NVLink multicast stays off: on shared hosts it can take GPUs out of service.
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}" TORCH_SYMM_MEM_DISABLE_MULTICAST=1
export PYTHONUNBUFFERED=1
if ((gpus > 1)); then
  say "$gpus data-parallel processes ($PY)"
  exec "$PY" -m torch.distributed.run --standalone --nproc_per_node "$gpus" \
    "$ROOT/training/train.py" "${args[@]}"
fi
exec "$PY" "$ROOT/training/train.py" "${args[@]}"
