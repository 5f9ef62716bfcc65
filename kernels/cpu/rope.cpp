#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "kernels/cpu/threading.h"

namespace strand::cpu {
namespace {

constexpr std::ptrdiff_t kParallelMinElements = std::ptrdiff_t{32} * 1024;

// cos/sin of pos * theta^(-j/n) for one part (temporal, row or column) of the rotary pairs.
// Positions repeat a lot in a block (every token of a frame shares pos_t, every token of a row
// shares pos_r), so when the positions span fewer values than there are tokens the table is
// indexed by position; otherwise by token. Either way, at most min(range, tokens) * n angles are
// evaluated, in double precision (the angle grows with the position; float would lose digits).
class PartTable {
 public:
  PartTable(const int* pos, int tokens, int pairs, float theta) : pairs_(pairs) {
    if (pairs == 0 || tokens == 0) return;
    const auto [lo_it, hi_it] = std::minmax_element(pos, pos + tokens);
    const long long range = static_cast<long long>(*hi_it) - *lo_it + 1;
    by_position_ = range <= tokens;
    lo_ = *lo_it;
    const int entries = by_position_ ? static_cast<int>(range) : tokens;
    std::vector<double> freq(static_cast<size_t>(pairs));
    for (int j = 0; j < pairs; ++j) {
      freq[static_cast<size_t>(j)] =
          std::pow(static_cast<double>(theta), -static_cast<double>(j) / pairs);
    }
    cos_sin_.resize(static_cast<size_t>(entries) * pairs * 2);
    for (int e = 0; e < entries; ++e) {
      const double p = by_position_ ? static_cast<double>(lo_ + e) : static_cast<double>(pos[e]);
      float* row = cos_sin_.data() + static_cast<std::ptrdiff_t>(e) * pairs * 2;
      for (std::ptrdiff_t j = 0; j < pairs; ++j) {
        const double angle = p * freq[static_cast<size_t>(j)];
        row[2 * j] = static_cast<float>(std::cos(angle));
        row[2 * j + 1] = static_cast<float>(std::sin(angle));
      }
    }
  }

  // Interleaved (cos, sin) for the `pairs` frequencies of token t.
  const float* for_token(int t, const int* pos) const {
    const int e = by_position_ ? pos[t] - lo_ : t;
    return cos_sin_.data() + static_cast<std::ptrdiff_t>(e) * pairs_ * 2;
  }

 private:
  int pairs_;
  int lo_ = 0;
  bool by_position_ = true;
  std::vector<float> cos_sin_;
};

// Rotates `pairs` consecutive (x[2j], x[2j+1]) pairs by the angles in cs.
inline void rotate_pairs(float* x, const float* cs, int pairs) {
  for (std::ptrdiff_t j = 0; j < pairs; ++j) {
    const float x0 = x[2 * j];
    const float x1 = x[2 * j + 1];
    const float c = cs[2 * j];
    const float s = cs[2 * j + 1];
    x[2 * j] = x0 * c - x1 * s;
    x[2 * j + 1] = x0 * s + x1 * c;
  }
}

}  // namespace

void rope_3d(float* x, int tokens, int heads, int head_dim, int row_stride, const int* pos_t,
             const int* pos_r, const int* pos_c, float theta) {
  if (tokens <= 0 || heads <= 0 || head_dim < 2) return;
  const int pairs = head_dim / 2;
  const int spatial_pairs = pairs / 3;
  const int temporal_pairs = pairs - 2 * spatial_pairs;
  const PartTable temporal(pos_t, tokens, temporal_pairs, theta);
  const PartTable row(pos_r, tokens, spatial_pairs, theta);
  const PartTable column(pos_c, tokens, spatial_pairs, theta);

  // Float offsets of the row and column parts within a head vector.
  const std::ptrdiff_t row_part_offset = std::ptrdiff_t{2} * temporal_pairs;
  const std::ptrdiff_t column_part_offset = row_part_offset + std::ptrdiff_t{2} * spatial_pairs;
  const bool parallel =
      static_cast<std::ptrdiff_t>(tokens) * heads * head_dim > kParallelMinElements;
#pragma omp parallel for schedule(static) num_threads(num_threads()) if (parallel)
  for (int t = 0; t < tokens; ++t) {
    const float* cs_t = temporal.for_token(t, pos_t);
    const float* cs_r = row.for_token(t, pos_r);
    const float* cs_c = column.for_token(t, pos_c);
    for (int h = 0; h < heads; ++h) {
      float* v = x + static_cast<std::ptrdiff_t>(t) * row_stride +
                 static_cast<std::ptrdiff_t>(h) * head_dim;
      rotate_pairs(v, cs_t, temporal_pairs);
      rotate_pairs(v + row_part_offset, cs_r, spatial_pairs);
      rotate_pairs(v + column_part_offset, cs_c, spatial_pairs);
    }
  }
}

}  // namespace strand::cpu
