// Compressor: chunking invariance (all at once = token by token = random chunks) and a twin of model.py's
// prefill formula (blocks, overlap_transform, softmax over slots) for ratio 4 (overlap) and ratio 128.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/compressor.hpp"
#include "kernels/norm_rope.hpp"
#include "kernels/quant.hpp"
#include "reference/ops_ref.hpp"

namespace dsv4 {
namespace {

using kernels::CompressorDims;

struct Inputs {
  std::vector<float> kv, score, ape, freqs;
  std::vector<bf16> norm_w;
};

Inputs make_inputs(const CompressorDims& dm, int tokens, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  Inputs in;
  const int w = dm.proj_dim();
  in.kv.resize(size_t(tokens) * w);
  in.score.resize(in.kv.size());
  in.ape.resize(size_t(dm.ratio) * w);
  for (auto& v : in.kv) v = nd(g);
  for (auto& v : in.score) v = 2.0f * nd(g);
  for (auto& v : in.ape) v = nd(g);
  for (int i = 0; i < dm.head_dim; ++i) in.norm_w.push_back(f32_to_bf16(1.0f + 0.1f * nd(g)));
  in.freqs.resize(size_t(dm.rope_dim / 2));
  kernels::rope_inv_freqs(in.freqs, dm.rope_dim, 160000.0, 65536, 16, 32, 1);
  return in;
}

// Feeds tokens [0, tokens) in chunks of the given sizes; returns all entries (bf16 [n, d]) in order.
std::vector<bf16> run_chunks(const CompressorDims& dm, const Inputs& in, int tokens, const std::vector<int>& chunks) {
  const int w = dm.proj_dim();
  std::vector<float> ks(size_t(dm.state_rows()) * w), ss(ks.size());
  kernels::compressor_reset(ks, ss);
  std::vector<bf16> all, ent(size_t(tokens / dm.ratio + 1) * dm.head_dim);
  std::vector<int64_t> ids(size_t(tokens / dm.ratio + 1));
  int t0 = 0;
  for (size_t c = 0; t0 < tokens; ++c) {
    const int n = std::min(chunks[c % chunks.size()], tokens - t0);
    std::vector<int64_t> pos;
    for (int i = 0; i < n; ++i) pos.push_back(t0 + i);
    const int64_t ne = kernels::compressor_step(
        ent, ids, ks, ss, std::span<const float>(in.kv).subspan(size_t(t0) * w, size_t(n) * w),
        std::span<const float>(in.score).subspan(size_t(t0) * w, size_t(n) * w), pos, in.ape, in.norm_w, in.freqs, dm);
    for (int64_t e = 0; e < ne; ++e) EXPECT_EQ(ids[size_t(e)], int64_t(all.size() / dm.head_dim) + e);
    all.insert(all.end(), ent.begin(), ent.begin() + ne * dm.head_dim);
    t0 += n;
  }
  return all;
}

// model.py Compressor.forward with start_pos = 0 (prefill), written as the reference writes it.
std::vector<bf16> prefill_twin(const CompressorDims& dm, const Inputs& in, int tokens) {
  const int r = dm.ratio, d = dm.head_dim, w = dm.proj_dim(), nb = tokens / r;
  const bool overlap = r == 4;
  const int slots = overlap ? 2 * r : r;
  std::vector<bf16> out;
  for (int n = 0; n < nb; ++n) {
    std::vector<bf16> e(static_cast<size_t>(d));
    for (int c = 0; c < d; ++c) {
      std::vector<float> kvs(static_cast<size_t>(slots)), scs(static_cast<size_t>(slots));
      for (int sl = 0; sl < slots; ++sl) {
        int tok, ch;
        if (!overlap) tok = n * r + sl, ch = c;
        else if (sl >= r) tok = n * r + sl - r, ch = d + c;  // this block, second half
        else tok = (n - 1) * r + sl, ch = c;                 // previous block, first half
        if (tok < 0) {
          kvs[size_t(sl)] = 0.0f, scs[size_t(sl)] = -INFINITY;  // overlap_transform fill for block 0
          continue;
        }
        kvs[size_t(sl)] = in.kv[size_t(tok) * w + ch];
        scs[size_t(sl)] = in.score[size_t(tok) * w + ch] + in.ape[size_t(tok % r) * w + ch];
      }
      float mx = -INFINITY, sum = 0, acc = 0;
      for (float v : scs) mx = std::max(mx, v);
      for (float v : scs) sum += std::exp(v - mx);
      for (int sl = 0; sl < slots; ++sl) acc += ref::opaque(kvs[size_t(sl)] * (std::exp(scs[size_t(sl)] - mx) / sum));
      e[size_t(c)] = f32_to_bf16(acc);
    }
    kernels::rms_norm(e, e, in.norm_w, d, 1e-6f);
    std::vector<float> tab(static_cast<size_t>(dm.rope_dim));
    kernels::rope_table(tab, in.freqs, int64_t(n) * r, 1);
    ref::rope_row(e.data(), tab.data(), d, dm.rope_dim, false);
    if (dm.rotate) {
      e = ref::hadamard(e, d);
      kernels::fp4_round_trip_inplace(e);
    } else {
      kernels::fp8_round_trip_inplace(std::span<bf16>(e).first(size_t(d - dm.rope_dim)), 64);
    }
    out.insert(out.end(), e.begin(), e.end());
  }
  return out;
}

void check(const CompressorDims& dm, int tokens) {
  const auto in = make_inputs(dm, tokens, uint32_t(dm.ratio * 7 + dm.head_dim + dm.rotate));
  const auto once = run_chunks(dm, in, tokens, {tokens});
  const auto single = run_chunks(dm, in, tokens, {1});
  const auto mixed = run_chunks(dm, in, tokens, {3, 1, 7, 2, 5});
  const auto twin = prefill_twin(dm, in, tokens);
  ASSERT_EQ(once.size(), size_t(tokens / dm.ratio) * dm.head_dim);
  ASSERT_EQ(twin.size(), once.size());
  for (size_t i = 0; i < once.size(); ++i) {
    ASSERT_EQ(once[i].bits, single[i].bits) << "token-by-token differs at " << i;
    ASSERT_EQ(once[i].bits, mixed[i].bits) << "chunked differs at " << i;
    ASSERT_EQ(once[i].bits, twin[i].bits) << "prefill twin differs at " << i;
  }
}

TEST(Compressor, Ratio4OverlapMain) { check({4, 128, 64, false, 1e-6f}, 23); }
TEST(Compressor, Ratio4OverlapMainHeadDim512) { check({4, 512, 64, false, 1e-6f}, 13); }
TEST(Compressor, Ratio4IndexerRotate) { check({4, 128, 64, true, 1e-6f}, 21); }
TEST(Compressor, Ratio128) { check({128, 128, 64, false, 1e-6f}, 300); }

}  // namespace
}  // namespace dsv4
