// The grouped form of the gated delta rule (kernels/cpu/delta_rule.h, gated_delta_update_grouped):
// each run of chunks is the affine map S -> M S + N built from the chunk update of [I | 0] with
// values [0 | V], composed run after run. It must give the sequential rule's state, for partial
// last chunks and runs, every group count, and full resets (alpha == 0) must stay exact. It is the
// algebra the GPU grouped path (kernels/cuda/delta_rule.cu) relies on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/delta_rule.h"

namespace strand {
namespace {

using Vec = std::vector<float>;

double rel_error(const Vec& a, const Vec& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double x = a[i], y = b[i];
    diff += (x - y) * (x - y);
    ref += y * y;
  }
  return a.size() == b.size() ? std::sqrt(diff / std::max(ref, 1e-30)) : 1e30;
}

struct Inputs {
  int tokens, heads, dk, dv, ks, vs;
  Vec k, v, alpha, beta, s0;
};

// As the model makes them: L2-normalised keys, alpha in (0.9, 1) (harsh: [0, 1) with exact zeros),
// beta in (0, 2); padded row strides.
Inputs make_inputs(int tokens, int heads, int dk, int dv, int pad, bool harsh, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Inputs in{tokens, heads, dk, dv, heads * dk + pad, heads * dv + 2 * pad, {}, {}, {}, {}, {}};
  in.k.resize(static_cast<size_t>(tokens) * in.ks);
  for (auto& x : in.k) x = normal(rng);
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* kv = &in.k[static_cast<size_t>(t) * in.ks + static_cast<size_t>(h) * dk];
      double ss = 0.0;
      for (int i = 0; i < dk; ++i) ss += static_cast<double>(kv[i]) * static_cast<double>(kv[i]);
      for (int i = 0; i < dk; ++i) kv[i] = static_cast<float>(static_cast<double>(kv[i]) / std::sqrt(ss + 1e-6));
    }
  }
  in.v.resize(static_cast<size_t>(tokens) * in.vs);
  for (auto& x : in.v) x = normal(rng);
  std::uniform_real_distribution<float> a_dist(harsh ? 0.0f : 0.9f, 1.0f);
  std::uniform_real_distribution<float> b_dist(0.0f, 2.0f);
  std::uniform_real_distribution<float> s_dist(-0.5f, 0.5f);
  in.alpha.resize(static_cast<size_t>(tokens) * heads);
  in.beta.resize(in.alpha.size());
  for (auto& x : in.alpha) x = a_dist(rng);
  if (harsh) {
    for (size_t i = 0; i < in.alpha.size(); i += 37) in.alpha[i] = 0.0f;
  }
  for (auto& x : in.beta) x = b_dist(rng);
  in.s0.resize(static_cast<size_t>(heads) * dk * dv);
  for (auto& x : in.s0) x = s_dist(rng);
  return in;
}

Vec sequential(const Inputs& in) {
  Vec s = in.s0;
  cpu::gated_delta_update_sequential(s.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                     in.alpha.data(), in.beta.data(), in.tokens, in.heads, in.dk,
                                     in.dv);
  return s;
}

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
    const double err = rel_error(grouped(in, c.groups, in.s0), sequential(in));
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
  const Vec want = sequential(in);
  for (const int groups : {2, 3, 4, 6}) {
    Vec got = in.s0;
    cpu::gated_delta_update_grouped(got.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                    in.alpha.data(), in.beta.data(), in.tokens, in.heads, in.dk,
                                    in.dv, groups, 8);
    EXPECT_LE(rel_error(got, want), 1e-5) << "groups " << groups;
  }
  Inputs zero_start = in;
  std::fill(zero_start.s0.begin(), zero_start.s0.end(), 0.0f);
  EXPECT_GT(rel_error(sequential(zero_start), want), 1e-2);
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
  EXPECT_LE(rel_error(a, sequential(in)), 1e-5);
  // ... and the sequential rule agrees that the reset wiped the start.
  Inputs tail = in;
  tail.s0 = other_start;
  EXPECT_LE(rel_error(a, sequential(tail)), 1e-5);
}

}  // namespace
}  // namespace strand
