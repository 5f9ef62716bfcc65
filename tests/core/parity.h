// The normalised error every parity check in the C++ tests uses (engine, kernels, CUDA backend).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace strand::test {

// ||a - b|| / ||b||, accumulated in double.
inline double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, ref = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double x = a[i], y = b[i];
    diff += (x - y) * (x - y);
    ref += y * y;
  }
  return std::sqrt(diff / std::max(ref, 1e-30));
}

}  // namespace strand::test
