#include "kernels/cpu/threading.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

#if STRAND_HAVE_OPENBLAS
// OpenBLAS's own setter; declared here so that no OpenBLAS-specific header is needed.
extern "C" void openblas_set_num_threads(int num_threads);
#endif

namespace strand::cpu {
namespace {

int hardware_threads() {
#ifdef _OPENMP
  // Honours OMP_NUM_THREADS when set, else the number of processors.
  return std::max(1, omp_get_max_threads());
#else
  return std::max(1U, std::thread::hardware_concurrency());
#endif
}

// All parallelism in these kernels comes from OpenMP loops; OpenBLAS runs single-threaded inside
// them (large GEMMs are split across the OpenMP threads by gemm()). Two pools on the same cores
// (OpenBLAS's workers spin-wait after each call while OpenMP's wait for their next region) made a
// 432-token attention 30x slower on 2 cores when they alternated.
void make_blas_single_threaded() {
  static std::once_flag once;
#if STRAND_HAVE_OPENBLAS
  std::call_once(once, [] { openblas_set_num_threads(1); });
#else
  std::call_once(once, [] {});  // the fallback BLAS (kernels/cpu/blas.h) has no threads
#endif
}

// 0 = not chosen yet. Kept here rather than in OpenMP's per-thread ICV so that kernels called from
// any application thread (not only the one that called set_num_threads) use the same count: each
// parallel loop passes it in a num_threads() clause.
std::atomic<int> g_threads{0};

}  // namespace

void set_num_threads(int threads) {
  const int count = threads > 0 ? threads : hardware_threads();
  g_threads.store(count, std::memory_order_relaxed);
#ifdef _OPENMP
  omp_set_num_threads(count);
#endif
  make_blas_single_threaded();
}

int num_threads() {
  int count = g_threads.load(std::memory_order_relaxed);
  if (count <= 0) {
    // First use without set_num_threads: size the OpenMP loops from the environment.
    count = hardware_threads();
    g_threads.store(count, std::memory_order_relaxed);
    make_blas_single_threaded();
  }
  return count;
}

}  // namespace strand::cpu
