// Random inputs of the gated delta rule as the model makes them, and the CPU sequential rule as
// the reference: shared by the CPU grouped-form tests (tests/core/test_delta_rule_groups.cpp) and
// the CUDA kernel tests (tests/cuda/test_cuda_delta_rule.cpp), so that both check the same inputs.
#pragma once
#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "kernels/cpu/delta_rule.h"

namespace strand::test::delta_rule {

struct Inputs {
  int tokens, heads, dk, dv, ks, vs;  // ks, vs: row strides of k and v (elements)
  std::vector<float> k, v, alpha, beta, s0;
};

// L2-normalised keys, alpha in (alpha_low, 1) (harsh: [0, 1) with exact zeros, every 37th),
// beta in (0, 2), s0 in (-0.5, 0.5); row strides padded by `pad` (k) and 2 `pad` (v) elements.
// The same seed gives the same inputs.
inline Inputs make_inputs(int tokens, int heads, int dk, int dv, int pad, bool harsh, unsigned seed,
                          float alpha_low = 0.9f) {
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
      for (int i = 0; i < dk; ++i)
        kv[i] = static_cast<float>(static_cast<double>(kv[i]) / std::sqrt(ss + 1e-6));
    }
  }
  in.v.resize(static_cast<size_t>(tokens) * in.vs);
  for (auto& x : in.v) x = normal(rng);
  std::uniform_real_distribution<float> a_dist(harsh ? 0.0f : alpha_low, 1.0f);
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

// The state after the CPU sequential rule (kernels/cpu/delta_rule.h) from s0 over all tokens.
inline std::vector<float> cpu_sequential(const Inputs& in) {
  std::vector<float> s = in.s0;
  cpu::gated_delta_update_sequential(s.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                     in.alpha.data(), in.beta.data(), in.tokens, in.heads, in.dk,
                                     in.dv);
  return s;
}

}  // namespace strand::test::delta_rule
