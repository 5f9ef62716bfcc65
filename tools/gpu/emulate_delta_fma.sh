#!/usr/bin/env bash
# Runs the real device code of the FMA recurrence kernel (kernels/cuda/delta_rule.cu,
# DeltaSchedule::fma_single_pass) on the CPU, no GPU needed: one std::thread per CUDA thread,
# std::barrier for __syncthreads, cp.async landing early or late; X and the decay factors come from
# a double-precision model of the prepare kernel, and the final state is checked against the
# sequential rule. A few seconds on two cores. Usage: tools/gpu/emulate_delta_fma.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 "$root/tools/gpu/slice_delta_fma_kernel.py" "$root/kernels/cuda/delta_rule.cu" "$work/kernel.inc"
cuda_include="${CUDA_INCLUDE:-${CUDA_HOME:-/usr/local/cuda}/include}"
g++ -std=c++20 -O2 -pthread -Wno-unknown-pragmas -I"$work" -I"$root" -isystem "$cuda_include" \
  "$root/tools/gpu/delta_fma_emulator.cpp" -o "$work/delta_fma_emulator"
"$work/delta_fma_emulator" "$@"
