// CPU kernels against independent double-precision references written here.
// "Backend ops" style: every case runs one op on random inputs (fixed-seed std::mt19937) and
// reports the normalised error max|got - want| / max|want| over the whole output buffer, padding
// included, so writes outside the contract are caught too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/conv.h"
#include "kernels/cpu/delta_rule.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/threading.h"

namespace {

namespace cpu = strand::cpu;
using Vec = std::vector<float>;
using DVec = std::vector<double>;

constexpr double kPi = 3.14159265358979323846;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Explicit widening (the build warns on implicit float -> double promotion).
inline double wide(float x) {
  return static_cast<double>(x);
}

Vec uniform(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec out(n);
  for (float& x : out) x = dist(rng);
  return out;
}

Vec normal(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Vec out(n);
  for (float& x : out) x = dist(rng);
  return out;
}

DVec to_double(const Vec& v) {
  return DVec(v.begin(), v.end());
}

// max |got - want| / max |want|: an error relative to the output's scale, robust to outputs near 0.
double rel_error(const Vec& got, const DVec& want) {
  EXPECT_EQ(got.size(), want.size());
  double max_diff = 0.0;
  double max_ref = 0.0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    const double diff = std::abs(static_cast<double>(got[i]) - want[i]);
    max_diff = std::isnan(diff) ? kInf : std::max(max_diff, diff);
    max_ref = std::max(max_ref, std::abs(want[i]));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

// Test sizes are small: index arithmetic in int, converted once at the subscript.
size_t idx(int i) {
  return static_cast<size_t>(i);
}

// ---------------------------------------------------------------- references (double precision)

void ref_gemm(const DVec& a, const DVec& b, DVec& c, int m, int n, int k, bool trans_b,
              double alpha, double beta, int lda, int ldb, int ldc) {
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int p = 0; p < k; ++p) {
        const double bv = trans_b ? b[idx(j * ldb + p)] : b[idx(p * ldb + j)];
        acc += a[idx(i * lda + p)] * bv;
      }
      double& out = c[idx(i * ldc + j)];
      out = alpha * acc + (beta == 0.0 ? 0.0 : beta * out);
    }
  }
}

// y = (x - mean) / sqrt(var + eps) * w + b per row, with optional per-row (1 + scale) / shift.
void ref_layer_norm_row(const double* x, double* y, int dim, const double* w, const double* b,
                        const double* scale, const double* shift, double eps) {
  double mean = 0.0;
  for (int j = 0; j < dim; ++j) mean += x[j];
  mean /= dim;
  double var = 0.0;
  for (int j = 0; j < dim; ++j) var += (x[j] - mean) * (x[j] - mean);
  var /= dim;
  for (int j = 0; j < dim; ++j) {
    double out = (x[j] - mean) / std::sqrt(var + eps);
    if (w != nullptr) out *= w[j];
    if (b != nullptr) out += b[j];
    if (scale != nullptr) out = out * (1.0 + scale[j]) + shift[j];
    y[j] = out;
  }
}

// Pair j of a head: (part size n, index within the part, position array selector 0/1/2).
void ref_rope(DVec& x, int tokens, int heads, int head_dim, int stride, const std::vector<int>& pt,
              const std::vector<int>& pr, const std::vector<int>& pc, double theta) {
  const int c = head_dim / 2;
  const int cr = c / 3;
  const int ct = c - 2 * cr;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      for (int j = 0; j < c; ++j) {
        int n = ct;
        int local = j;
        int pos = pt[idx(t)];
        if (j >= ct + cr) {
          n = cr;
          local = j - ct - cr;
          pos = pc[idx(t)];
        } else if (j >= ct) {
          n = cr;
          local = j - ct;
          pos = pr[idx(t)];
        }
        const double angle = pos * std::pow(theta, -static_cast<double>(local) / n);
        double* p = &x[idx(t * stride + h * head_dim + 2 * j)];
        const double x0 = p[0];
        const double x1 = p[1];
        p[0] = x0 * std::cos(angle) - x1 * std::sin(angle);
        p[1] = x0 * std::sin(angle) + x1 * std::cos(angle);
      }
    }
  }
}

void ref_attention(const DVec& q, int qs, const DVec& k, int ks, const DVec& v, int vs, DVec& out,
                   int os, int tq, int tk, int heads, int hd, double scale) {
  DVec p(idx(tk));
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < tq; ++i) {
      double mx = -INFINITY;
      for (int j = 0; j < tk; ++j) {
        double dot = 0.0;
        for (int d = 0; d < hd; ++d)
          dot += q[idx(i * qs + h * hd + d)] * k[idx(j * ks + h * hd + d)];
        p[idx(j)] = dot * scale;
        mx = std::max(mx, p[idx(j)]);
      }
      double sum = 0.0;
      for (int j = 0; j < tk; ++j) sum += (p[idx(j)] = std::exp(p[idx(j)] - mx));
      for (int d = 0; d < hd; ++d) {
        double acc = 0.0;
        for (int j = 0; j < tk; ++j) acc += p[idx(j)] * v[idx(j * vs + h * hd + d)];
        out[idx(i * os + h * hd + d)] = acc / sum;
      }
    }
  }
}

void ref_conv(const DVec& in, int ci, int h, int w, const DVec& wt, const DVec* bias, int co,
              int stride, DVec& out) {
  const int ho = (h - 1) / stride + 1;
  const int wo = (w - 1) / stride + 1;
  for (int o = 0; o < co; ++o) {
    for (int r = 0; r < ho; ++r) {
      for (int c = 0; c < wo; ++c) {
        double acc = bias != nullptr ? (*bias)[idx(o)] : 0.0;
        for (int i = 0; i < ci; ++i) {
          for (int ky = 0; ky < 3; ++ky) {
            for (int kx = 0; kx < 3; ++kx) {
              const int y = r * stride + ky - 1;
              const int x = c * stride + kx - 1;
              if (y < 0 || y >= h || x < 0 || x >= w) continue;
              acc += wt[idx(((o * ci + i) * 3 + ky) * 3 + kx)] * in[idx((i * h + y) * w + x)];
            }
          }
        }
        out[idx((o * ho + r) * wo + c)] = acc;
      }
    }
  }
}

// The gated delta rule exactly as docs/model-spec.md writes it, in double.
void ref_delta(DVec& s, const Vec& k, int ks, const Vec& v, int vs, const Vec& alpha,
               const Vec& beta, int tokens, int heads, int dk, int dv) {
  DVec u(idx(dv));
  for (int h = 0; h < heads; ++h) {
    double* st = &s[idx(h * dk * dv)];
    for (int t = 0; t < tokens; ++t) {
      const double a = alpha[idx(t * heads + h)];
      const double b = beta[idx(t * heads + h)];
      const float* kt = &k[idx(t * ks + h * dk)];
      const float* vt = &v[idx(t * vs + h * dv)];
      for (int i = 0; i < dk * dv; ++i) st[i] *= a;
      for (int j = 0; j < dv; ++j) {
        double stk = 0.0;
        for (int i = 0; i < dk; ++i) stk += st[i * dv + j] * wide(kt[i]);
        u[idx(j)] = b * (wide(vt[j]) - stk);
      }
      for (int i = 0; i < dk; ++i) {
        for (int j = 0; j < dv; ++j) st[i * dv + j] += wide(kt[i]) * u[idx(j)];
      }
    }
  }
}

// ---------------------------------------------------------------- the op table

struct OpCase {
  std::string name;
  double tolerance;
  std::function<double()> run;  // returns the normalised error against the reference
};

std::ostream& operator<<(std::ostream& os, const OpCase& c) {
  return os << c.name;
}

OpCase gemm_case(int m, int n, int k, bool trans_b, float alpha, float beta, int pad) {
  return {"gemm_" + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
              (trans_b ? "_bt" : "_bn") + (beta != 0.0f ? "_acc" : "") + (pad ? "_strided" : ""),
          2e-6 * std::sqrt(k) + 1e-6, [=] {
            std::mt19937 rng(static_cast<unsigned>(m * 131 + n * 7 + k));
            const int lda = k + pad;
            const int ldb = (trans_b ? k : n) + pad;
            const int ldc = n + pad;
            const Vec a = uniform(idx(m * lda), rng);
            const Vec b = uniform(idx((trans_b ? n : k) * ldb), rng);
            Vec c = uniform(idx(m * ldc), rng);
            DVec want = to_double(c);
            ref_gemm(to_double(a), to_double(b), want, m, n, k, trans_b, alpha, beta, lda, ldb,
                     ldc);
            cpu::gemm(a.data(), b.data(), c.data(), m, n, k, trans_b, alpha, beta, pad ? lda : 0,
                      pad ? ldb : 0, pad ? ldc : 0);
            return rel_error(c, want);
          }};
}

OpCase linear_case(int rows, int in, int out, bool with_bias) {
  return {"linear_" + std::to_string(rows) + "x" + std::to_string(in) + "x" + std::to_string(out) +
              (with_bias ? "_bias" : ""),
          2e-6 * std::sqrt(in) + 1e-6, [=] {
            std::mt19937 rng(static_cast<unsigned>(rows + in + out));
            const Vec x = uniform(idx(rows * in), rng);
            const Vec w = uniform(idx(out * in), rng);
            const Vec b = uniform(idx(out), rng);
            Vec y(idx(rows * out), NAN);  // the kernel must overwrite everything
            DVec want(idx(rows * out));
            for (int r = 0; r < rows; ++r) {
              for (int o = 0; o < out; ++o) {
                double acc = with_bias ? wide(b[idx(o)]) : 0.0;
                for (int i = 0; i < in; ++i)
                  acc += wide(x[idx(r * in + i)]) * wide(w[idx(o * in + i)]);
                want[idx(r * out + o)] = acc;
              }
            }
            cpu::linear(x.data(), w.data(), with_bias ? b.data() : nullptr, y.data(), rows, in,
                        out);
            return rel_error(y, want);
          }};
}

// affine: 0 none, 1 weight only, 2 bias only, 3 both. in_place: y aliases x.
OpCase layer_norm_case(int rows, int dim, int affine, bool in_place) {
  return {"layer_norm_" + std::to_string(rows) + "x" + std::to_string(dim) + "_affine" +
              std::to_string(affine) + (in_place ? "_inplace" : ""),
          1e-5, [=] {
            std::mt19937 rng(static_cast<unsigned>(rows * dim + affine));
            Vec x = uniform(idx(rows * dim), rng, -3.0f, 5.0f);  // nonzero mean on purpose
            const Vec w = uniform(idx(dim), rng);
            const Vec b = uniform(idx(dim), rng);
            const DVec xd = to_double(x);
            const DVec wd = to_double(w);
            const DVec bd = to_double(b);
            DVec want(x.size());
            const bool use_w = (affine & 1) != 0;
            const bool use_b = (affine & 2) != 0;
            for (int r = 0; r < rows; ++r) {
              ref_layer_norm_row(&xd[idx(r * dim)], &want[idx(r * dim)], dim,
                                 use_w ? wd.data() : nullptr, use_b ? bd.data() : nullptr, nullptr,
                                 nullptr, 1e-6);
            }
            Vec y(x.size(), NAN);
            float* dst = in_place ? x.data() : y.data();
            cpu::layer_norm(x.data(), dst, rows, dim, use_w ? w.data() : nullptr,
                            use_b ? b.data() : nullptr, 1e-6f);
            return rel_error(in_place ? x : y, want);
          }};
}

OpCase layer_norm_modulate_case(int rows, int dim, int rows_per_group, bool in_place) {
  return {"layer_norm_modulate_" + std::to_string(rows) + "x" + std::to_string(dim) + "_g" +
              std::to_string(rows_per_group) + (in_place ? "_inplace" : ""),
          1e-5, [=] {
            std::mt19937 rng(static_cast<unsigned>(rows * 3 + dim));
            const int groups = (rows + rows_per_group - 1) / rows_per_group;
            // [groups, 6, dim] like the per-frame modulation rows: shift row 0, scale row 1.
            const int group_stride = 6 * dim;
            Vec x = uniform(idx(rows * dim), rng, -2.0f, 2.0f);
            const Vec mod = uniform(idx(groups * group_stride), rng);
            const DVec xd = to_double(x);
            const DVec md = to_double(mod);
            DVec want(x.size());
            for (int r = 0; r < rows; ++r) {
              const double* base = &md[idx((r / rows_per_group) * group_stride)];
              ref_layer_norm_row(&xd[idx(r * dim)], &want[idx(r * dim)], dim, nullptr, nullptr,
                                 base + dim, base, 1e-6);
            }
            Vec y(x.size(), NAN);
            float* dst = in_place ? x.data() : y.data();
            cpu::layer_norm_modulate(x.data(), dst, rows, dim, mod.data(), mod.data() + dim,
                                     rows_per_group, group_stride, 1e-6f);
            return rel_error(in_place ? x : y, want);
          }};
}

OpCase rms_norm_case(int rows, int dim, bool with_weight, bool in_place) {
  return {"rms_norm_" + std::to_string(rows) + "x" + std::to_string(dim) +
              (with_weight ? "_w" : "") + (in_place ? "_inplace" : ""),
          1e-5, [=] {
            std::mt19937 rng(static_cast<unsigned>(rows + 5 * dim));
            Vec x = uniform(idx(rows * dim), rng, -2.0f, 3.0f);
            const Vec w = uniform(idx(dim), rng);
            DVec want(x.size());
            for (int r = 0; r < rows; ++r) {
              double ms = 0.0;
              for (int j = 0; j < dim; ++j)
                ms += wide(x[idx(r * dim + j)]) * wide(x[idx(r * dim + j)]);
              ms /= dim;
              for (int j = 0; j < dim; ++j) {
                want[idx(r * dim + j)] = wide(x[idx(r * dim + j)]) / std::sqrt(ms + 1e-6) *
                                         (with_weight ? static_cast<double>(w[idx(j)]) : 1.0);
              }
            }
            Vec y(x.size(), NAN);
            float* dst = in_place ? x.data() : y.data();
            cpu::rms_norm(x.data(), dst, rows, dim, with_weight ? w.data() : nullptr, 1e-6f);
            return rel_error(in_place ? x : y, want);
          }};
}

OpCase l2_normalize_case(int rows, int heads, int head_dim) {
  return {"l2_normalize_heads_" + std::to_string(rows) + "x" + std::to_string(heads) + "x" +
              std::to_string(head_dim),
          1e-5, [=] {
            std::mt19937 rng(static_cast<unsigned>(rows + heads + head_dim));
            Vec x = uniform(idx(rows * heads * head_dim), rng);
            DVec want(x.size());
            for (int r = 0; r < rows * heads; ++r) {
              double ss = 0.0;
              for (int j = 0; j < head_dim; ++j)
                ss += wide(x[idx(r * head_dim + j)]) * wide(x[idx(r * head_dim + j)]);
              for (int j = 0; j < head_dim; ++j)
                want[idx(r * head_dim + j)] = wide(x[idx(r * head_dim + j)]) / std::sqrt(ss + 1e-6);
            }
            cpu::l2_normalize_heads(x.data(), rows, heads, head_dim, 1e-6f);
            return rel_error(x, want);
          }};
}

OpCase activation_case(const std::string& name, void (*op)(float*, size_t), double (*ref)(double),
                       size_t n) {
  return {name + "_" + std::to_string(n), 2e-6, [=] {
            std::mt19937 rng(static_cast<unsigned>(n));
            Vec x = uniform(n, rng, -8.0f, 8.0f);
            // Extremes where a naive formula overflows or loses its sign.
            if (n >= 4) {
              x[0] = -100.0f;
              x[1] = 100.0f;
              x[2] = 0.0f;
              x[3] = -1e-3f;
            }
            DVec want(n);
            for (size_t i = 0; i < n; ++i) want[i] = ref(x[i]);
            op(x.data(), n);
            // Relative per element with an absolute floor: activations are compared pointwise.
            double worst = 0.0;
            for (size_t i = 0; i < n; ++i) {
              const double err = std::abs(wide(x[i]) - want[i]) / std::max(std::abs(want[i]), 1e-3);
              worst = std::isnan(err) ? kInf : std::max(worst, err);
            }
            return worst;
          }};
}

double ref_gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / kPi) * (x + 0.044715 * x * x * x)));
}
double ref_gelu_erf(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
double ref_silu(double x) {
  return x / (1.0 + std::exp(-x));
}

OpCase gated_residual_case(int rows, int dim, int rows_per_group, bool with_gate) {
  return {"gated_residual_" + std::to_string(rows) + "x" + std::to_string(dim) + "_g" +
              std::to_string(rows_per_group) + (with_gate ? "" : "_nogate"),
          1e-6, [=] {
            std::mt19937 rng(static_cast<unsigned>(rows * dim + rows_per_group));
            const int groups = (rows + rows_per_group - 1) / rows_per_group;
            const int group_stride = 6 * dim;  // gate rows inside a [groups, 6, dim] tensor
            Vec x = uniform(idx(rows * dim), rng);
            const Vec y = uniform(idx(rows * dim), rng);
            const Vec mod = uniform(idx(groups * group_stride), rng);
            const float* gate = &mod[idx(2 * dim)];
            DVec want(x.size());
            for (int r = 0; r < rows; ++r) {
              for (int j = 0; j < dim; ++j) {
                const double g =
                    with_gate ? wide(gate[(r / rows_per_group) * group_stride + j]) : 1.0;
                want[idx(r * dim + j)] = wide(x[idx(r * dim + j)]) + g * wide(y[idx(r * dim + j)]);
              }
            }
            cpu::gated_residual(x.data(), y.data(), with_gate ? gate : nullptr, rows, dim,
                                rows_per_group, group_stride);
            return rel_error(x, want);
          }};
}

OpCase gated_residual_heads_case(int rows, int heads, int head_dim, int pad) {
  return {"gated_residual_heads_" + std::to_string(rows) + "_h" + std::to_string(heads) + "x" +
              std::to_string(head_dim) + "_pad" + std::to_string(pad),
          1e-6, [=] {
            std::mt19937 rng(static_cast<unsigned>(rows * heads + head_dim + pad));
            const int stride = heads * head_dim + pad;
            Vec x = uniform(idx(rows * stride), rng);
            const Vec y = uniform(idx(rows * stride), rng);
            const Vec gate = uniform(idx(rows * heads), rng);
            DVec want(x.size());
            for (size_t i = 0; i < x.size(); ++i) want[i] = wide(x[i]);  // padding must stay
            for (int r = 0; r < rows; ++r) {
              for (int h = 0; h < heads; ++h) {
                for (int j = 0; j < head_dim; ++j) {
                  const size_t i = idx(r * stride + h * head_dim + j);
                  want[i] += wide(gate[idx(r * heads + h)]) * wide(y[i]);
                }
              }
            }
            cpu::gated_residual_heads(x.data(), y.data(), gate.data(), rows, heads, head_dim, stride);
            return rel_error(x, want);
          }};
}

// Positions as in a block: frames (possibly far in the past: negative), rows, columns in raster
// order. wide_positions spreads pos_t over a range larger than the token count.
OpCase rope_case(int frames, int grid_h, int grid_w, int heads, int head_dim, int pad,
                 int frame_offset, bool wide_positions) {
  return {"rope_3d_f" + std::to_string(frames) + "_" + std::to_string(grid_h) + "x" +
              std::to_string(grid_w) + "_h" + std::to_string(heads) + "x" +
              std::to_string(head_dim) + "_pad" + std::to_string(pad) + "_t" +
              (frame_offset < 0 ? "m" : "") + std::to_string(std::abs(frame_offset)) +
              (wide_positions ? "_wide" : ""),
          2e-6, [=] {
            std::mt19937 rng(static_cast<unsigned>(frames * 7 + heads * head_dim + pad));
            const int tokens = frames * grid_h * grid_w;
            const int stride = heads * head_dim + pad;
            std::vector<int> pt(idx(tokens));
            std::vector<int> pr(idx(tokens));
            std::vector<int> pc(idx(tokens));
            for (int t = 0; t < tokens; ++t) {
              pt[idx(t)] = t / (grid_h * grid_w) + frame_offset;
              if (wide_positions) pt[idx(t)] += 1000 * t;
              pr[idx(t)] = (t / grid_w) % grid_h;
              pc[idx(t)] = t % grid_w;
            }
            Vec x = uniform(idx(tokens * stride), rng);
            DVec want = to_double(x);
            ref_rope(want, tokens, heads, head_dim, stride, pt, pr, pc, 10000.0);
            cpu::rope_3d(x.data(), tokens, heads, head_dim, stride, pt.data(), pr.data(), pc.data(),
                         10000.0f);
            return rel_error(x, want);
          }};
}

OpCase attention_case(int tq, int tk, int heads, int hd, int pad) {
  return {"attention_" + std::to_string(tq) + "x" + std::to_string(tk) + "_h" +
              std::to_string(heads) + "x" + std::to_string(hd) + "_pad" + std::to_string(pad),
          1e-5, [=] {
            std::mt19937 rng(static_cast<unsigned>(tq * 3 + tk + heads + hd));
            const int qs = heads * hd + pad;
            const int ks = heads * hd + 2 * pad;
            const int vs = heads * hd + 3 * pad;
            const int os = heads * hd + pad;
            // Scaled so that the softmax is neither flat nor one-hot.
            const Vec q = uniform(idx(tq * qs), rng, -2.0f, 2.0f);
            const Vec k = uniform(idx(tk * ks), rng, -2.0f, 2.0f);
            const Vec v = uniform(idx(tk * vs), rng);
            Vec out = uniform(idx(tq * os), rng);  // padding must survive
            DVec want = to_double(out);
            const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
            ref_attention(to_double(q), qs, to_double(k), ks, to_double(v), vs, want, os, tq, tk,
                          heads, hd, scale);
            cpu::attention(q.data(), qs, k.data(), ks, v.data(), vs, out.data(), os, tq, tk, heads,
                           hd, static_cast<float>(scale));
            return rel_error(out, want);
          }};
}

OpCase conv_case(int ci, int h, int w, int co, int stride, bool with_bias) {
  return {"conv2d_3x3_" + std::to_string(ci) + "x" + std::to_string(h) + "x" + std::to_string(w) +
              "_to" + std::to_string(co) + "_s" + std::to_string(stride) +
              (with_bias ? "_bias" : ""),
          2e-6 * std::sqrt(9.0 * ci) + 1e-6, [=] {
            std::mt19937 rng(static_cast<unsigned>(ci * h + w * co + stride));
            const Vec in = uniform(idx(ci * h * w), rng);
            const Vec wt = uniform(idx(co * ci * 9), rng);
            const Vec b = uniform(idx(co), rng);
            const int ho = (h - 1) / stride + 1;
            const int wo = (w - 1) / stride + 1;
            Vec out(idx(co * ho * wo), NAN);
            DVec want(out.size());
            const DVec bd = to_double(b);
            ref_conv(to_double(in), ci, h, w, to_double(wt), with_bias ? &bd : nullptr, co, stride,
                     want);
            cpu::conv2d_3x3(in.data(), ci, h, w, wt.data(), with_bias ? b.data() : nullptr, co,
                            stride, out.data());
            return rel_error(out, want);
          }};
}

OpCase upsample_case(int c, int h, int w) {
  return {"upsample_nearest_2x_" + std::to_string(c) + "x" + std::to_string(h) + "x" +
              std::to_string(w),
          0.0, [=] {
            std::mt19937 rng(static_cast<unsigned>(c + h + w));
            const Vec in = uniform(idx(c * h * w), rng);
            Vec out(idx(4 * c * h * w), NAN);
            DVec want(out.size());
            for (int ch = 0; ch < c; ++ch) {
              for (int y = 0; y < 2 * h; ++y) {
                for (int x = 0; x < 2 * w; ++x) {
                  want[idx((ch * 2 * h + y) * 2 * w + x)] = in[idx((ch * h + y / 2) * w + x / 2)];
                }
              }
            }
            cpu::upsample_nearest_2x(in.data(), c, h, w, out.data());
            return rel_error(out, want);
          }};
}

// Inputs as the model produces them: L2-normalised keys, alpha in (0.9, 1), beta in (0, 2).
// harsh_decay also draws alpha from [0, 1) with some exact zeros (full resets).
struct DeltaInputs {
  int tokens, heads, dk, dv, ks, vs;
  Vec k, v, alpha, beta, s0;
};

DeltaInputs delta_inputs(int tokens, int heads, int dk, int dv, int pad, bool harsh_decay,
                         unsigned seed) {
  std::mt19937 rng(seed);
  DeltaInputs in{tokens, heads, dk, dv, heads * dk + pad, heads * dv + 2 * pad, {}, {}, {}, {}, {}};
  in.k = normal(idx(tokens * in.ks), rng);
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* kv = &in.k[idx(t * in.ks + h * dk)];
      double ss = 0.0;
      for (int i = 0; i < dk; ++i) ss += wide(kv[i]) * wide(kv[i]);
      for (int i = 0; i < dk; ++i) kv[i] = static_cast<float>(wide(kv[i]) / std::sqrt(ss + 1e-6));
    }
  }
  in.v = normal(idx(tokens * in.vs), rng);
  in.alpha = harsh_decay ? uniform(idx(tokens * heads), rng, 0.0f, 1.0f)
                         : uniform(idx(tokens * heads), rng, 0.9f, 1.0f);
  if (harsh_decay) {
    for (size_t i = 0; i < in.alpha.size(); i += 37) in.alpha[i] = 0.0f;
  }
  in.beta = uniform(idx(tokens * heads), rng, 0.0f, 2.0f);
  in.s0 = uniform(idx(heads * dk * dv), rng, -0.5f, 0.5f);
  return in;
}

// kind: 0 sequential, 1 chunked (with `chunk`).
OpCase delta_case(int kind, int tokens, int heads, int dk, int dv, int pad, int chunk,
                  bool harsh_decay) {
  return {std::string(kind == 0 ? "delta_sequential" : "delta_chunked_c" + std::to_string(chunk)) +
              "_T" + std::to_string(tokens) + "_h" + std::to_string(heads) + "_dk" +
              std::to_string(dk) + "_dv" + std::to_string(dv) + "_pad" + std::to_string(pad) +
              (harsh_decay ? "_harsh" : ""),
          1e-5, [=] {
            const DeltaInputs in = delta_inputs(tokens, heads, dk, dv, pad, harsh_decay,
                                                static_cast<unsigned>(tokens + dk * 3 + dv));
            DVec want = to_double(in.s0);
            ref_delta(want, in.k, in.ks, in.v, in.vs, in.alpha, in.beta, tokens, heads, dk, dv);
            Vec s = in.s0;
            if (kind == 0) {
              cpu::gated_delta_update_sequential(s.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                                 in.alpha.data(), in.beta.data(), tokens, heads, dk,
                                                 dv);
            } else {
              cpu::gated_delta_update_chunked(s.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                              in.alpha.data(), in.beta.data(), tokens, heads, dk,
                                              dv, chunk);
            }
            return rel_error(s, want);
          }};
}

OpCase memory_read_case(int tokens, int heads, int dk, int dv, int pad) {
  return {"memory_read_T" + std::to_string(tokens) + "_h" + std::to_string(heads) + "_dk" +
              std::to_string(dk) + "_dv" + std::to_string(dv) + "_pad" + std::to_string(pad),
          1e-5, [=] {
            std::mt19937 rng(static_cast<unsigned>(tokens + heads + dk + dv));
            const int qs = heads * dk + pad;
            const int os = heads * dv + pad;
            const Vec s = uniform(idx(heads * dk * dv), rng);
            const Vec q = uniform(idx(tokens * qs), rng);
            Vec out = uniform(idx(tokens * os), rng);
            DVec want = to_double(out);
            const double scale = 1.0 / std::sqrt(static_cast<double>(dk));
            for (int t = 0; t < tokens; ++t) {
              for (int h = 0; h < heads; ++h) {
                for (int j = 0; j < dv; ++j) {
                  double acc = 0.0;
                  for (int i = 0; i < dk; ++i) {
                    acc += wide(s[idx((h * dk + i) * dv + j)]) * wide(q[idx(t * qs + h * dk + i)]);
                  }
                  want[idx(t * os + h * dv + j)] = scale * acc;
                }
              }
            }
            cpu::memory_read(s.data(), q.data(), qs, out.data(), os, tokens, heads, dk, dv,
                             static_cast<float>(scale));
            return rel_error(out, want);
          }};
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cases;
  for (const bool tb : {false, true}) {
    cases.push_back(gemm_case(1, 1, 1, tb, 1.0f, 0.0f, 0));
    cases.push_back(gemm_case(37, 29, 53, tb, 1.0f, 0.0f, 0));
    cases.push_back(gemm_case(64, 96, 128, tb, 0.5f, 0.0f, 0));
    cases.push_back(gemm_case(33, 17, 65, tb, -1.5f, 0.75f, 3));
    cases.push_back(gemm_case(5, 130, 7, tb, 1.0f, 1.0f, 1));
  }
  cases.push_back(linear_case(1, 8, 3, true));
  cases.push_back(linear_case(45, 67, 23, true));
  cases.push_back(linear_case(45, 67, 23, false));
  for (const int affine : {0, 1, 2, 3}) cases.push_back(layer_norm_case(7, 129, affine, false));
  cases.push_back(layer_norm_case(300, 128, 3, true));  // parallel path, aliased
  cases.push_back(layer_norm_case(3, 5, 0, true));
  cases.push_back(layer_norm_modulate_case(12, 64, 4, false));
  cases.push_back(layer_norm_modulate_case(301, 131, 100, true));
  cases.push_back(rms_norm_case(9, 67, true, false));
  cases.push_back(rms_norm_case(9, 67, false, true));
  cases.push_back(rms_norm_case(400, 128, true, true));
  cases.push_back(l2_normalize_case(5, 3, 7));
  cases.push_back(l2_normalize_case(500, 4, 32));
  for (const size_t n : {size_t{5}, size_t{1001}, size_t{70001}}) {
    cases.push_back(activation_case("gelu_tanh", cpu::gelu_tanh, ref_gelu_tanh, n));
    cases.push_back(activation_case("gelu_erf", cpu::gelu_erf, ref_gelu_erf, n));
    cases.push_back(activation_case("silu", cpu::silu, ref_silu, n));
  }
  cases.push_back(gated_residual_case(10, 33, 3, true));
  cases.push_back(gated_residual_case(10, 33, 3, false));
  cases.push_back(gated_residual_case(432, 128, 144, true));
  cases.push_back(gated_residual_heads_case(7, 3, 5, 2));
  cases.push_back(gated_residual_heads_case(432, 4, 32, 0));
  cases.push_back(rope_case(3, 4, 5, 2, 32, 0, 0, false));
  cases.push_back(rope_case(3, 4, 5, 3, 12, 5, -7, false));    // negative temporal positions
  cases.push_back(rope_case(2, 3, 3, 1, 10, 1, -3, false));    // c = 5: parts 3, 1, 1
  cases.push_back(rope_case(1, 1, 1, 2, 2, 2, 4, false));      // c = 1: temporal only
  cases.push_back(rope_case(3, 9, 16, 4, 32, 16, -9, false));  // parallel path
  cases.push_back(rope_case(2, 2, 3, 2, 18, 3, -4, true));     // positions spread wide
  cases.push_back(attention_case(1, 1, 1, 4, 0));
  cases.push_back(attention_case(17, 23, 3, 8, 5));
  cases.push_back(attention_case(96, 96, 4, 32, 0));
  cases.push_back(attention_case(40, 77, 2, 16, 16));
  cases.push_back(attention_case(400, 2700, 1, 4, 1));  // several query tiles
  for (const int stride : {1, 2}) {
    cases.push_back(conv_case(1, 1, 1, 1, stride, true));
    cases.push_back(conv_case(3, 7, 9, 5, stride, true));
    cases.push_back(conv_case(4, 8, 6, 3, stride, false));
    cases.push_back(conv_case(16, 19, 13, 8, stride, true));
    cases.push_back(conv_case(2, 1, 5, 2, stride, true));
  }
  cases.push_back(upsample_case(1, 1, 1));
  cases.push_back(upsample_case(3, 5, 7));
  cases.push_back(upsample_case(16, 40, 30));
  cases.push_back(delta_case(0, 520, 2, 32, 32, 3, 0, false));
  cases.push_back(delta_case(0, 200, 3, 16, 24, 0, 0, true));
  for (const int chunk : {1, 7, 64, 1000})
    cases.push_back(delta_case(1, 520, 2, 32, 32, 3, chunk, false));
  cases.push_back(delta_case(1, 301, 3, 16, 24, 5, 32, false));
  cases.push_back(delta_case(1, 300, 2, 24, 16, 0, 64, true));
  cases.push_back(delta_case(1, 600, 1, 128, 128, 0, 64, false));
  cases.push_back(memory_read_case(1, 1, 1, 1, 0));
  cases.push_back(memory_read_case(37, 3, 16, 24, 5));
  return cases;
}

class KernelOps : public ::testing::TestWithParam<OpCase> {};

TEST_P(KernelOps, MatchesDoubleReference) {
  const OpCase& c = GetParam();
  const double err = c.run();
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", err);
  RecordProperty("normalised_error", text);  // visible with --gtest_output=xml
  EXPECT_LE(err, c.tolerance) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Cpu, KernelOps, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& param_info) {
                           return param_info.param.name;
                         });

// The chunked (WY) form and the sequential rule on the same float inputs: both approximate the
// same exact update, so they must agree to float rounding, including for partial last chunks.
TEST(KernelDeltaRule, ChunkedMatchesSequential) {
  for (const int chunk : {16, 64}) {
    const DeltaInputs in = delta_inputs(541, 4, 32, 32, 0, false, 99);
    Vec seq = in.s0;
    Vec chk = in.s0;
    cpu::gated_delta_update_sequential(seq.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                       in.alpha.data(), in.beta.data(), in.tokens, in.heads, in.dk,
                                       in.dv);
    cpu::gated_delta_update_chunked(chk.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                    in.alpha.data(), in.beta.data(), in.tokens, in.heads, in.dk,
                                    in.dv, chunk);
    EXPECT_LE(rel_error(chk, to_double(seq)), 1e-5) << "chunk " << chunk;
  }
}

// Splitting one update into two calls (as consecutive blocks do) gives the same state.
TEST(KernelDeltaRule, ChunkedComposesAcrossCalls) {
  const DeltaInputs in = delta_inputs(130, 2, 16, 16, 0, false, 5);
  Vec whole = in.s0;
  cpu::gated_delta_update_chunked(whole.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                  in.alpha.data(), in.beta.data(), 130, 2, 16, 16, 64);
  Vec split = in.s0;
  const int first = 50;
  cpu::gated_delta_update_chunked(split.data(), in.k.data(), in.ks, in.v.data(), in.vs,
                                  in.alpha.data(), in.beta.data(), first, 2, 16, 16, 64);
  cpu::gated_delta_update_chunked(split.data(), &in.k[idx(first * in.ks)], in.ks,
                                  &in.v[idx(first * in.vs)], in.vs, &in.alpha[idx(first * 2)],
                                  &in.beta[idx(first * 2)], 130 - first, 2, 16, 16, 64);
  EXPECT_LE(rel_error(split, to_double(whole)), 1e-5);
}

// Gate inputs [3, tokens, heads] (rows a, b, g) drawn over [-lo, hi], so both branches of the
// softplus (threshold 20) and the saturated tails of exp and sigmoid are hit.
struct GateInputs {
  int tokens, heads;
  Vec raw, a_log, dt_bias;
};

GateInputs gate_inputs(int tokens, int heads, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  return {tokens, heads, uniform(idx(3 * tokens * heads), rng, lo, hi),
          uniform(idx(heads), rng, -3.0f, 2.0f), uniform(idx(heads), rng, -4.0f, 4.0f)};
}

// The engine's former host loop, verbatim in float: cpu::memory_gates must equal it bit for bit.
void host_gates_float(const GateInputs& in, Vec& alpha, Vec& beta, Vec& gamma) {
  const auto softplus = [](float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); };
  const auto sigmoid = [](float x) { return 1.0f / (1.0f + std::exp(-x)); };
  const int n = in.tokens * in.heads;
  for (int t = 0; t < in.tokens; ++t) {
    for (int h = 0; h < in.heads; ++h) {
      const int i = t * in.heads + h;
      const float decay =
          -std::exp(in.a_log[idx(h)]) * softplus(in.raw[idx(i)] + in.dt_bias[idx(h)]);
      alpha[idx(i)] = std::exp(decay);
      beta[idx(i)] = 2.0f * sigmoid(in.raw[idx(n + i)]);
      gamma[idx(i)] = sigmoid(in.raw[idx(2 * n + i)]);
    }
  }
}

// Checks the float gates against the formulas in double: alpha through its logarithm (the decay,
// whose float rounding grows with its size), beta and gamma relative to their value (so the
// exp-small tails count), all in range and never NaN.
void expect_gates_match_double(const GateInputs& in, const Vec& alpha, const Vec& beta,
                               const Vec& gamma) {
  const auto softplus = [](double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); };
  const auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  const int n = in.tokens * in.heads;
  for (int i = 0; i < n; ++i) {
    const int h = i % in.heads;
    // a + dt_bias rounded to float as the op's input (its rounding is not the kernel's error).
    const double a = wide(in.raw[idx(i)] + in.dt_bias[idx(h)]), b = wide(in.raw[idx(n + i)]),
                 g = wide(in.raw[idx(2 * n + i)]);
    const double decay = -std::exp(wide(in.a_log[idx(h)])) * softplus(a);
    const double want_beta = 2.0 * sigmoid(b), want_gamma = sigmoid(g);
    const double got_alpha = wide(alpha[idx(i)]), got_beta = wide(beta[idx(i)]),
                 got_gamma = wide(gamma[idx(i)]);
    ASSERT_TRUE(got_alpha >= 0.0 && got_alpha <= 1.0) << "alpha " << got_alpha << " at " << i;
    ASSERT_TRUE(got_beta >= 0.0 && got_beta <= 2.0) << "beta " << got_beta << " at " << i;
    ASSERT_TRUE(got_gamma >= 0.0 && got_gamma <= 1.0) << "gamma " << got_gamma << " at " << i;
    // Float exp underflows below about -87 (denormals to -103): compare logs only above that.
    if (decay > -80.0) {
      EXPECT_NEAR(std::log(got_alpha), decay, 1e-6 * (1.0 + std::abs(decay))) << "alpha at " << i;
    } else {
      EXPECT_LE(got_alpha, 1e-34) << "alpha at " << i;
    }
    const auto near_relative = [](double got, double want) {
      return want < 1e-37 ? got < 1e-36 : std::abs(got - want) <= 1e-6 * want;
    };
    EXPECT_TRUE(near_relative(got_beta, want_beta))
        << "beta " << got_beta << " vs " << want_beta << " (b " << b << ")";
    EXPECT_TRUE(near_relative(got_gamma, want_gamma))
        << "gamma " << got_gamma << " vs " << want_gamma << " (g " << g << ")";
  }
}

TEST(KernelDeltaRule, MemoryGatesMatchTheFormulas) {
  struct Shape {
    int tokens, heads;
    float lo, hi;
  };
  // The last shape is large enough for the parallel path (> 32K gates).
  for (const Shape s : {Shape{1, 1, -1.0f, 1.0f}, Shape{37, 3, -40.0f, 40.0f},
                        Shape{432, 4, -30.0f, 30.0f}, Shape{4680, 12, -60.0f, 60.0f}}) {
    const GateInputs in =
        gate_inputs(s.tokens, s.heads, s.lo, s.hi, static_cast<unsigned>(s.tokens + s.heads));
    const size_t n = idx(s.tokens * s.heads);
    Vec alpha(n, 7.0f), beta(n, 7.0f), gamma(n, 7.0f);
    cpu::memory_gates(in.raw.data(), in.a_log.data(), in.dt_bias.data(), alpha.data(), beta.data(),
                      gamma.data(), s.tokens, s.heads);
    expect_gates_match_double(in, alpha, beta, gamma);
    Vec host_alpha(n), host_beta(n), host_gamma(n);
    host_gates_float(in, host_alpha, host_beta, host_gamma);
    EXPECT_EQ(alpha, host_alpha) << s.tokens << "x" << s.heads;
    EXPECT_EQ(beta, host_beta) << s.tokens << "x" << s.heads;
    EXPECT_EQ(gamma, host_gamma) << s.tokens << "x" << s.heads;
  }
}

// Hand-picked inputs: the softplus threshold from both sides, and values far past where exp
// overflows or underflows in float, which must saturate to the gates' limits without NaN.
TEST(KernelDeltaRule, MemoryGatesEdgeValues) {
  const Vec edges = {0.0f,  19.99f, 20.0f,  20.01f, 25.0f,   88.0f,   89.0f, 100.0f, 1e4f,
                     1e30f, -20.0f, -88.0f, -89.0f, -104.0f, -200.0f, -1e4f, -1e30f, 1.0f};
  const int tokens = static_cast<int>(edges.size()), heads = 2;
  // Head 1 decays slowly (exp(a_log) = 0.018), so large a still gives a visible alpha.
  GateInputs in{tokens, heads, Vec(idx(3 * tokens * heads)), {0.0f, -4.0f}, {0.0f, 0.25f}};
  const int n = tokens * heads;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      in.raw[idx(t * heads + h)] = edges[idx(t)] - in.dt_bias[idx(h)];  // a + dt_bias = edge
      in.raw[idx(n + t * heads + h)] = edges[idx(t)];
      in.raw[idx(2 * n + t * heads + h)] = -edges[idx(t)];
    }
  }
  Vec alpha(idx(n), 7.0f), beta(idx(n), 7.0f), gamma(idx(n), 7.0f);
  cpu::memory_gates(in.raw.data(), in.a_log.data(), in.dt_bias.data(), alpha.data(), beta.data(),
                    gamma.data(), tokens, heads);
  expect_gates_match_double(in, alpha, beta, gamma);
  Vec host_alpha(idx(n)), host_beta(idx(n)), host_gamma(idx(n));
  host_gates_float(in, host_alpha, host_beta, host_gamma);
  EXPECT_EQ(alpha, host_alpha);
  EXPECT_EQ(beta, host_beta);
  EXPECT_EQ(gamma, host_gamma);
  const auto at = [&](float edge) {  // head 0: a_log = 0 (rate 1), dt_bias = 0
    const auto t = std::find(edges.begin(), edges.end(), edge) - edges.begin();
    return idx(static_cast<int>(t) * heads);
  };
  // Around the threshold both branches round to the same float (log1p(e^x) = x above ~17); the
  // branch is there because exp(x) overflows above 88.7: softplus(89) must be 89, not inf.
  EXPECT_EQ(alpha[at(20.01f)], std::exp(-20.01f));
  EXPECT_EQ(alpha[at(20.0f)], std::exp(-20.0f));
  EXPECT_FLOAT_EQ(alpha[at(0.0f)], 0.5f);  // exp(-log 2)
  for (const float a : {89.0f, 100.0f, 1e4f}) {
    EXPECT_FLOAT_EQ(alpha[at(a) + 1], std::exp(-std::exp(-4.0f) * a)) << "a + dt_bias = " << a;
  }
  // Saturation: no decay for a -> -inf, full reset for a -> +inf; sigmoids at their limits.
  EXPECT_EQ(alpha[at(-1e30f)], 1.0f);
  EXPECT_EQ(alpha[at(1e30f)], 0.0f);
  EXPECT_EQ(beta[at(1e30f)], 2.0f);
  EXPECT_EQ(beta[at(-1e30f)], 0.0f);
  EXPECT_EQ(gamma[at(-1e30f)], 1.0f);  // gamma's row holds -edge
  EXPECT_EQ(gamma[at(1e30f)], 0.0f);
  // Nothing written for an empty call.
  Vec untouched(4, 7.0f);
  cpu::memory_gates(in.raw.data(), in.a_log.data(), in.dt_bias.data(), untouched.data(),
                    untouched.data() + 1, untouched.data() + 2, 0, heads);
  EXPECT_EQ(untouched, Vec(4, 7.0f));
}

// Results must not depend on the thread count (no races, no thread-dependent reduction order).
TEST(KernelThreads, ResultsIndependentOfThreadCount) {
  const int saved = cpu::num_threads();
  std::mt19937 rng(11);
  const Vec x = uniform(idx(400 * 128), rng);
  const Vec w = uniform(128, rng);
  Vec one(x.size());
  Vec many(x.size());
  cpu::set_num_threads(1);
  EXPECT_EQ(cpu::num_threads(), 1);
  cpu::rms_norm(x.data(), one.data(), 400, 128, w.data(), 1e-6f);
  cpu::set_num_threads(4);
  EXPECT_EQ(cpu::num_threads(), 4);
  cpu::rms_norm(x.data(), many.data(), 400, 128, w.data(), 1e-6f);
  EXPECT_EQ(one, many);
  cpu::set_num_threads(0);
  EXPECT_GE(cpu::num_threads(), 1);
  cpu::set_num_threads(saved);
}

}  // namespace
