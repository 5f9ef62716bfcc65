#!/usr/bin/env bash
# Builds and runs one kernel emulator: slices the device code out of a kernel source with its
# slicer, compiles the emulator against it (g++, the CUDA headers for types only) and runs it.
# Usage: tools/gpu/run_emulator.sh SLICER.py KERNEL.cu EMULATOR.cpp [emulator arguments...]
# (paths relative to the repository root; CUDA_INCLUDE or CUDA_HOME points at the CUDA headers).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
slicer="$1" source="$2" emulator="$3"
shift 3
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$root/$slicer" "$root/$source" "$work/kernels.inc"
cuda_include="${CUDA_INCLUDE:-${CUDA_HOME:-/usr/local/cuda}/include}"
g++ -std=c++20 -O2 -pthread -Wno-unknown-pragmas -I"$work" -I"$root" -isystem "$cuda_include" \
  "$root/$emulator" -o "$work/emulator"
"$work/emulator" "$@"
