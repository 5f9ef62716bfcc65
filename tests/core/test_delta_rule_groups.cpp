// The grouped form of the gated delta rule (kernels/cpu/delta_rule.h, gated_delta_update_grouped):
// each run of chunks is the affine map S -> M S + N built from the chunk update of [I | 0] with
// values [0 | V], composed run after run. It must give the sequential rule's state, for partial
// last chunks and runs, every group count, and full resets (alpha == 0) must stay exact. It is the
// algebra the GPU grouped path (kernels/cuda/delta_rule.cu) relies on.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "delta_rule_inputs.h"
#include "kernels/cpu/delta_rule.h"
#include "parity.h"

// In the namespace of the shared inputs (delta_rule_inputs.h) and of rel_error (parity.h).
namespace strand::test::delta_rule {
namespace {

using Vec = std::vector<float>;

Vec grouped(const Inputs& in, int groups, const Vec& s0) {
  Vec s = s0;
  cpu::gated_delta_update_grouped(s.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                  in.alpha.data(), in.beta.data(), in.tokens, in.heads, in.dk,
                                  in.dv, groups);
  return s;
}

struct Case {
  int tokens, heads, dk, dv, pad, groups;
  bool harsh;
};

// Token counts with partial last chunks (65, 301, 333, 1170) and group counts that do not divide
// the chunk count (partial last runs), one group (the plain chunked form), more groups than
// chunks (clamped), dk != dv both ways, odd dims.
const std::vector<Case> kCases = {
    {1, 1, 32, 32, 0, 4, false},    {64, 1, 16, 16, 0, 1, false},   {65, 2, 32, 32, 3, 2, false},
    {301, 3, 16, 24, 5, 3, false},  {300, 2, 24, 16, 0, 4, true},   {333, 2, 128, 64, 0, 3, false},
    {257, 3, 40, 128, 1, 5, true},  {520, 2, 32, 32, 0, 9, false},  {200, 2, 64, 64, 0, 8, false},
    {1170, 2, 128, 128, 0, 8, false}, {600, 1, 100, 36, 0, 7, true}, {700, 1, 32, 32, 0, 11, false},
};

TEST(DeltaRuleGroups, GroupedMatchesSequential) {
  for (const Case& c : kCases) {
    const Inputs in = make_inputs(c.tokens, c.heads, c.dk, c.dv, c.pad, c.harsh,
                                  static_cast<unsigned>(c.tokens * 7 + c.dk + c.dv + c.groups));
    const double err = rel_error(grouped(in, c.groups, in.s0), cpu_sequential(in));
    EXPECT_LE(err, 1e-5) << "T" << c.tokens << " h" << c.heads << " dk" << c.dk << " dv" << c.dv
                         << " groups " << c.groups << (c.harsh ? " harsh" : "");
  }
}

// The group count changes only the rounding: every split gives the same state to float accuracy.
TEST(DeltaRuleGroups, GroupCountOnlyChangesRounding) {
  const Inputs in = make_inputs(4680 / 4, 2, 64, 64, 0, false, 11);
  const Vec one = grouped(in, 1, in.s0);
  for (const int groups : {2, 3, 5, 8, 19}) {
    EXPECT_LE(rel_error(grouped(in, groups, in.s0), one), 1e-5) << "groups " << groups;
  }
}

// Short chunks (8 tokens) and few tokens against a wide key dim: the starting state is far from
// forgotten by the end, so the M S_in part of every run is really tested, and a composition that
// dropped it (every run from zero) would be caught by the tolerance above.
TEST(DeltaRuleGroups, StartingStateIsCarriedThroughEveryRun) {
  const Inputs in = make_inputs(44, 2, 64, 32, 0, false, 21);  // 6 chunks of 8, the last of 4
  const Vec want = cpu_sequential(in);
  for (const int groups : {2, 3, 4, 6}) {
    Vec got = in.s0;
    cpu::gated_delta_update_grouped(got.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                    in.alpha.data(), in.beta.data(), in.tokens, in.heads, in.dk,
                                    in.dv, groups, 8);
    EXPECT_LE(rel_error(got, want), 1e-5) << "groups " << groups;
  }
  Inputs zero_start = in;
  std::fill(zero_start.s0.begin(), zero_start.s0.end(), 0.0f);
  EXPECT_GT(rel_error(cpu_sequential(zero_start), want), 1e-2);
}

// A full reset (alpha == 0 at one token of every head) inside a later run: the final state cannot
// depend on the state before it, bit for bit: M of that run is exactly zero.
TEST(DeltaRuleGroups, ResetInsideALaterRunIsExact) {
  Inputs in = make_inputs(700, 2, 32, 48, 0, false, 31);
  const int reset_token = 455;  // chunk 7 of 11: inside run 2 of 3 (chunks 7..10)
  for (int h = 0; h < in.heads; ++h)
    in.alpha[static_cast<size_t>(reset_token) * in.heads + h] = 0.0f;
  Vec other_start = in.s0;
  for (auto& x : other_start) x = -3.0f * x + 0.25f;
  const Vec a = grouped(in, 3, in.s0);
  const Vec b = grouped(in, 3, other_start);
  EXPECT_EQ(a, b);
  EXPECT_LE(rel_error(a, cpu_sequential(in)), 1e-5);
  // ... and the sequential rule agrees that the reset wiped the start.
  Inputs tail = in;
  tail.s0 = other_start;
  EXPECT_LE(rel_error(a, cpu_sequential(tail)), 1e-5);
}

}  // namespace
}  // namespace strand::test::delta_rule
