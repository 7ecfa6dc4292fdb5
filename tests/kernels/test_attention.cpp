// sparse_attn vs its scalar twin (single block) and vs a double-precision softmax (several blocks).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/attention.hpp"
#include "reference/ops_ref.hpp"

namespace dsv4 {
namespace {

struct Case {
  int tokens, heads, d, n_kv, k;
  std::vector<bf16> q, kv;
  std::vector<float> sink;
  std::vector<int32_t> idx;
};

Case make_case(int tokens, int heads, int d, int n_kv, int k, uint32_t seed, double p_masked) {
  Case c{tokens, heads, d, n_kv, k, {}, {}, {}, {}};
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<double> u;
  c.q.resize(size_t(tokens) * heads * d);
  c.kv.resize(size_t(n_kv) * d);
  for (auto& v : c.q) v = f32_to_bf16(nd(g));
  for (auto& v : c.kv) v = f32_to_bf16(nd(g));
  for (int h = 0; h < heads; ++h) c.sink.push_back(nd(g));
  for (int t = 0; t < tokens; ++t)
    for (int j = 0; j < k; ++j) c.idx.push_back(u(g) < p_masked ? -1 : int32_t(g() % uint32_t(n_kv)));
  for (int t = 0; t < tokens; ++t) c.idx[size_t(t) * k + k - 1] = t % n_kv;  // at least one valid index
  return c;
}

TEST(Attention, SingleBlockMatchesTwinBitExactly) {
  auto c = make_case(5, 4, 128, 40, 48, 1, 0.3);
  const float scale = float(std::pow(128.0, -0.5));
  std::vector<bf16> o(c.q.size()), want(c.q.size());
  kernels::sparse_attn(o, c.q, c.kv, c.sink, c.idx, c.heads, c.d, c.k, scale);
  for (int t = 0; t < c.tokens; ++t)
    for (int h = 0; h < c.heads; ++h)
      ref::attn_one_block(want.data() + (t * c.heads + h) * c.d, c.q.data() + (t * c.heads + h) * c.d, c.kv.data(),
                          c.idx.data() + t * c.k, c.k, c.d, scale, c.sink[h]);
  for (size_t i = 0; i < o.size(); ++i) ASSERT_EQ(o[i].bits, want[i].bits) << "element " << i;
}

TEST(Attention, SeveralBlocksMatchExactSoftmax) {
  auto c = make_case(3, 2, 64, 300, 200, 2, 0.2);
  for (int j = 0; j < 64; ++j) c.idx[size_t(j)] = -1;  // token 0: a fully masked first block
  const float scale = 0.125f;
  std::vector<bf16> o(c.q.size());
  kernels::sparse_attn(o, c.q, c.kv, c.sink, c.idx, c.heads, c.d, c.k, scale);
  for (int t = 0; t < c.tokens; ++t)
    for (int h = 0; h < c.heads; ++h) {
      std::vector<double> s(size_t(c.k));
      double m = -INFINITY;
      for (int j = 0; j < c.k; ++j) {
        const int32_t id = c.idx[size_t(t) * c.k + j];
        if (id < 0) continue;
        double dot = 0;
        for (int e = 0; e < c.d; ++e)
          dot += double(bf16_to_f32(c.q[(t * c.heads + h) * c.d + e])) * bf16_to_f32(c.kv[size_t(id) * c.d + e]);
        s[size_t(j)] = dot * scale;
        m = std::max(m, s[size_t(j)]);
      }
      double den = std::exp(c.sink[size_t(h)] - m);
      for (int j = 0; j < c.k; ++j) den += c.idx[size_t(t) * c.k + j] < 0 ? 0 : std::exp(s[size_t(j)] - m);
      for (int e = 0; e < c.d; ++e) {
        double acc = 0, mass = 0;
        for (int j = 0; j < c.k; ++j) {
          const int32_t id = c.idx[size_t(t) * c.k + j];
          if (id < 0) continue;
          const double v = std::exp(s[size_t(j)] - m) * bf16_to_f32(c.kv[size_t(id) * c.d + e]);
          acc += v;
          mass += std::fabs(v);
        }
        // Error budget: each P term rounded to bf16 (relative 2^-9), the output rounded to bf16 (2^-9), and
        // fp32 noise; nothing more.
        const double want = acc / den, got = bf16_to_f32(o[(t * c.heads + h) * c.d + e]);
        const double tol = 0x1p-9 * mass / den * 1.01 + 0x1p-8 * std::fabs(want) + 1e-6;
        ASSERT_NEAR(got, want, tol) << t << "," << h << "," << e;
      }
    }
}

TEST(Attention, SinkOnlyInTheDenominator) {
  auto c = make_case(1, 2, 64, 8, 8, 3, 0.0);
  c.sink = {-INFINITY, 50.0f};  // head 0: no sink; head 1: the sink takes almost all the mass
  std::vector<bf16> o(c.q.size()), want(c.q.size());
  kernels::sparse_attn(o, c.q, c.kv, c.sink, c.idx, 2, 64, 8, 0.125f);
  ref::attn_one_block(want.data(), c.q.data(), c.kv.data(), c.idx.data(), 8, 64, 0.125f, -INFINITY);
  for (int e = 0; e < 64; ++e) ASSERT_EQ(o[size_t(e)].bits, want[size_t(e)].bits);
  for (int e = 0; e < 64; ++e) ASSERT_LT(std::fabs(bf16_to_f32(o[size_t(64 + e)])), 1e-12f);
}

}  // namespace
}  // namespace dsv4
