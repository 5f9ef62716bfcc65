// Thread count for the CPU kernels (OpenMP loops and OpenBLAS). Defaults to the hardware threads.
#pragma once

namespace strand::cpu {

void set_num_threads(int threads);  // <= 0: hardware default
int num_threads();

}  // namespace strand::cpu
