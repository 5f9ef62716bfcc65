#!/usr/bin/env bash
# Runs the real device code of kernels/cuda/attention.cu on the CPU (no GPU needed): slices the
# kernels out of the source, compiles them against tools/gpu/attention_emulator.cpp (PTX semantics
# of ldmatrix / mma.m16n8k16 / cp.async from the PTX ISA tables, one std::thread per CUDA thread)
# and checks every kernel variant (AttentionVariant) against a double-precision reference. Takes a
# few minutes on two cores; `emulate_attention.sh quick` runs one shape per variant, and variant
# names (e.g. `emulate_attention.sh tuned_128x8_n64`) restrict the run to those variants.
# Usage: tools/gpu/emulate_attention.sh [quick | variant-name...]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$root/tools/gpu/slice_attention_kernels.py" "$root/kernels/cuda/attention.cu" "$work/kernels.inc"
cuda_include="${CUDA_INCLUDE:-${CUDA_HOME:-/usr/local/cuda}/include}"
g++ -std=c++20 -O2 -pthread -Wno-unknown-pragmas -I"$work" -I"$root" -isystem "$cuda_include" \
  "$root/tools/gpu/attention_emulator.cpp" -o "$work/attention_emulator"
"$work/attention_emulator" "$@"
