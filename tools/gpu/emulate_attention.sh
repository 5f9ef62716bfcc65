#!/usr/bin/env bash
# Runs the real device code of kernels/cuda/attention.cu on the CPU (no GPU needed): slices the
# kernels out of the source, compiles them against tools/gpu/attention_emulator.cpp (PTX semantics
# of ldmatrix / mma.m16n8k16 / cp.async from the PTX ISA tables, one std::thread per CUDA thread)
# and checks every kernel variant (AttentionVariant) against a double-precision reference. Takes a
# few minutes on two cores; `emulate_attention.sh quick` runs one shape per variant, and variant
# names (e.g. `emulate_attention.sh tuned_128x8_n64`) restrict the run to those variants.
# Usage: tools/gpu/emulate_attention.sh [quick | variant-name...]
set -euo pipefail
exec bash "$(dirname "$0")/run_emulator.sh" tools/gpu/slice_attention_kernels.py kernels/cuda/attention.cu tools/gpu/attention_emulator.cpp "$@"
