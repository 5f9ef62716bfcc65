#!/usr/bin/env bash
# Runs the real device code of the delta rule's prepare kernel, tensor-core single-pass recurrence
# and FMA recurrence (kernels/cuda/delta_rule.cu) on the CPU, no GPU needed: one std::thread per
# CUDA thread, std::barrier for __syncthreads, per-warp barriers for mma.sync and shuffles,
# cp.async landing early or late; checked against a double model of the prepare kernel and the
# sequential rule (tools/gpu/delta_rule_emulator.cpp). Under a minute on two cores.
# Usage: tools/gpu/emulate_delta_rule.sh
set -euo pipefail
exec bash "$(dirname "$0")/run_emulator.sh" tools/gpu/slice_delta_kernels.py kernels/cuda/delta_rule.cu tools/gpu/delta_rule_emulator.cpp "$@"
