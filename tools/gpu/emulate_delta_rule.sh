#!/usr/bin/env bash
# Runs the real device code of the delta rule's prepare kernel, tensor-core single-pass recurrence
# and FMA recurrence (kernels/cuda/delta_rule.cu) on the CPU, no GPU needed: one std::thread per
# CUDA thread, std::barrier for __syncthreads, per-warp barriers for mma.sync and shuffles,
# cp.async landing early or late; checked against a double model of the prepare kernel and the
# sequential rule (tools/gpu/delta_rule_emulator.cpp). Under a minute on two cores.
# Usage: tools/gpu/emulate_delta_rule.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$root/tools/gpu/slice_delta_kernels.py" "$root/kernels/cuda/delta_rule.cu" "$work/kernel.inc"
cuda_include="${CUDA_INCLUDE:-${CUDA_HOME:-/usr/local/cuda}/include}"
g++ -std=c++20 -O2 -pthread -Wno-unknown-pragmas -I"$work" -I"$root" -isystem "$cuda_include" \
  "$root/tools/gpu/delta_rule_emulator.cpp" -o "$work/delta_rule_emulator"
"$work/delta_rule_emulator" "$@"
