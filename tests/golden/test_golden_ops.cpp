// Op-level golden tests on the tiny reference dumps (tests/golden/tiny/README.md): each op is fed its dumped
// inputs and its output is compared bit for bit with the dump (bf16 as uint16 bits, fp32 as bits).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/golden/st_mini.hpp"
#include "kernels/attention.hpp"
#include "kernels/compressor.hpp"
#include "kernels/exact.hpp"
#include "kernels/hc.hpp"
#include "kernels/indexer.hpp"
#include "kernels/linear.hpp"
#include "kernels/moe.hpp"
#include "kernels/norm_rope.hpp"
#include "kernels/quant.hpp"
#include "runtime/io/npy.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
using kernels::CompressorDims;

// Tiny config (tests/golden/tiny/tiny_ckpt/inference_config.json).
constexpr int kLayers = 6, kDim = 256, kHeads = 8, kHeadDim = 128, kRope = 64, kWin = 16;
constexpr int kIdxHeads = 4, kIdxDim = 128, kIdxTopk = 8, kExperts = 16, kTopk = 6, kHc = 4;
constexpr int kRatio[kLayers] = {0, 4, 128, 4, 128, 0};
constexpr float kEps = 1e-6f;

struct Phase {
  const char* tag;   // debug dump folder
  const char* name;  // case folder (input_ids, tokens)
  int64_t pos0;      // first position
  int64_t s;         // tokens in the phase
  int decode_step;   // −1 for prefill, else i: the fed token is tokens[i]
};
const Phase kPhases[] = {{"len7_prefill", "len7", 0, 7, -1},
                         {"len7_decode0", "len7", 7, 1, 0},
                         {"len7_decode1", "len7", 8, 1, 1},
                         {"len130_prefill", "len130", 0, 130, -1},
                         {"len130_decode0", "len130", 130, 1, 0}};

std::string dump_path(const Phase& ph, const std::string& name) {
  return std::string(DSV4_GOLDEN_DIR) + "/debug/" + ph.tag + "/" + name + ".npy";
}
bool has_dump(const Phase& ph, const std::string& name) { return fs::exists(dump_path(ph, name)); }

std::vector<bf16> load_bf16(const std::string& path, std::vector<int64_t>* shape = nullptr) {
  auto u = npy::read_as<uint16_t>(path, shape);
  std::vector<bf16> v(u.size());
  for (size_t i = 0; i < u.size(); ++i) v[i] = bf16{u[i]};
  return v;
}
std::vector<bf16> dump_bf16(const Phase& ph, const std::string& name, std::vector<int64_t>* shape = nullptr) {
  return load_bf16(dump_path(ph, name), shape);
}
std::vector<float> dump_f32(const Phase& ph, const std::string& name) {
  return npy::read_as<float>(dump_path(ph, name));
}
std::vector<int32_t> dump_i32(const Phase& ph, const std::string& name, std::vector<int64_t>* shape = nullptr) {
  return npy::read_as<int32_t>(dump_path(ph, name), shape);
}

const test::SafeTensorsFile& ckpt() {
  static const test::SafeTensorsFile f(DSV4_TINY_CKPT);
  return f;
}
std::vector<bf16> w_bf16(const std::string& name) {
  auto u = ckpt().get<uint16_t>(name, "BF16");
  std::vector<bf16> v(u.size());
  for (size_t i = 0; i < u.size(); ++i) v[i] = bf16{u[i]};
  return v;
}
std::vector<float> w_f32(const std::string& name) { return ckpt().get<float>(name, "F32"); }

std::string lname(int L, const std::string& s) {
  std::string r = "L";
  r += std::to_string(L);
  r += '.';
  r += s;
  return r;
}

// Mismatch tally of one test: elements compared, elements differing, largest distance in units in the last
// place (bf16 ulps for bf16 tensors, fp32 ulps for fp32 tensors, 1 per wrong index).
struct Tally {
  int64_t n = 0, ndiff = 0, max_ulp = 0;
};

int64_t ulp_distance(int32_t a, int32_t b) {  // on sign-magnitude IEEE bit patterns
  auto ord = [](int32_t v) { return v < 0 ? int64_t(INT32_MIN) - v : int64_t(v); };
  return std::abs(ord(a) - ord(b));
}

// Compares bit patterns; on mismatch prints the op name, the first differing elements and the max difference.
void compare_bf16(Tally& tl, const std::string& op, const std::vector<bf16>& got, const std::vector<bf16>& want) {
  ASSERT_EQ(got.size(), want.size()) << op;
  int64_t ndiff = 0, first = -1, mu = 0;
  double maxd = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].bits != want[i].bits) {
      ++ndiff;
      if (first < 0) first = int64_t(i);
      maxd = std::max(maxd, double(std::fabs(bf16_to_f32(got[i]) - bf16_to_f32(want[i]))));
      mu = std::max(mu, ulp_distance(int32_t(uint32_t(got[i].bits) << 16), int32_t(uint32_t(want[i].bits) << 16)) >> 16);
    }
  }
  tl.n += int64_t(want.size());
  tl.ndiff += ndiff;
  tl.max_ulp = std::max(tl.max_ulp, mu);
  if (ndiff) {
    std::string s;
    for (int64_t i = first; i < std::min<int64_t>(first + 3, int64_t(got.size())); ++i)
      s += " [" + std::to_string(i) + "] got " + std::to_string(bf16_to_f32(got[i])) + " want " +
           std::to_string(bf16_to_f32(want[i]));
    std::printf("  %s: %lld of %zu bf16 elements differ, max |diff| %g (%lld ulp); first:%s\n", op.c_str(),
                (long long)ndiff, want.size(), maxd, (long long)mu, s.c_str());
  }
}

void compare_f32(Tally& tl, const std::string& op, const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size()) << op;
  int64_t ndiff = 0, first = -1, mu = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const int32_t a = std::bit_cast<int32_t>(got[i]), b = std::bit_cast<int32_t>(want[i]);
    if (a != b) {
      ++ndiff;
      if (first < 0) first = int64_t(i);
      mu = std::max(mu, ulp_distance(a, b));
    }
  }
  tl.n += int64_t(want.size());
  tl.ndiff += ndiff;
  tl.max_ulp = std::max(tl.max_ulp, mu);
  if (ndiff)
    std::printf("  %s: %lld of %zu fp32 elements differ, max %lld ulp; first [%lld] got %.9g want %.9g\n",
                op.c_str(), (long long)ndiff, want.size(), (long long)mu, (long long)first, got[first], want[first]);
}

template <class T>
void compare_ints(Tally& tl, const std::string& op, const std::vector<T>& got, const std::vector<T>& want) {
  ASSERT_EQ(got.size(), want.size()) << op;
  int64_t ndiff = 0;
  for (size_t i = 0; i < got.size(); ++i) ndiff += got[i] != want[i];
  tl.n += int64_t(want.size());
  tl.ndiff += ndiff;
  if (ndiff) {
    tl.max_ulp = std::max<int64_t>(tl.max_ulp, 1);
    std::string s;
    for (size_t i = 0; i < std::min<size_t>(got.size(), 12); ++i)
      s.append(" ").append(std::to_string(got[i])).append("/").append(std::to_string(want[i]));
    std::printf("  %s: %lld of %zu indices differ; got/want:%s\n", op.c_str(), (long long)ndiff, want.size(),
                s.c_str());
  }
}

// Bit-exact: no element may differ.
void expect_exact(const Tally& tl, const char* what) {
  EXPECT_EQ(tl.ndiff, 0) << what << ": " << tl.ndiff << " of " << tl.n << " elements differ (max " << tl.max_ulp
                         << " ulp)";
}
// Not bit-exact yet: the measured state is pinned (count and distance may not grow); see the report.
void expect_known(const Tally& tl, const char* what, int64_t max_ndiff, int64_t max_ulp) {
  std::printf("%s: %lld of %lld elements differ, max %lld ulp (pinned: <= %lld elements, <= %lld ulp)\n", what,
              (long long)tl.ndiff, (long long)tl.n, (long long)tl.max_ulp, (long long)max_ndiff, (long long)max_ulp);
  EXPECT_LE(tl.ndiff, max_ndiff) << what;
  EXPECT_LE(tl.max_ulp, max_ulp) << what;
}

// The layer's rotary frequencies: base 10000 plain for ratio-0 layers, else 160000 with YaRN (spec §4.4).
std::vector<float> layer_freqs(int L) {
  std::vector<float> f(kRope / 2);
  if (kRatio[L] == 0) kernels::rope_inv_freqs(f, kRope, 10000.0, 0, 16.0, 32.0, 1.0);
  else kernels::rope_inv_freqs(f, kRope, 160000.0, 65536, 16.0, 32.0, 1.0);
  return f;
}
std::vector<float> phase_table(int L, const Phase& ph) {
  auto f = layer_freqs(L);
  std::vector<float> t(size_t(ph.s) * kRope);
  kernels::rope_table(t, f, ph.pos0, ph.s);
  return t;
}
std::vector<int64_t> positions(const Phase& ph) {
  std::vector<int64_t> p(size_t(ph.s));
  for (int64_t i = 0; i < ph.s; ++i) p[size_t(i)] = ph.pos0 + i;
  return p;
}

TEST(GoldenOps, AttnNormAndFfnNorm) {
  Tally tl;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      for (auto [in, out, w] : {std::tuple{"hc_pre_attn.y", "attn_norm_out", "attn_norm"},
                                std::tuple{"hc_pre_ffn.y", "ffn_norm_out", "ffn_norm"}}) {
        auto x = dump_bf16(ph, lname(L, in));
        std::vector<bf16> y(x.size());
        kernels::rms_norm(y, x, w_bf16("layers." + std::to_string(L) + "." + w + ".weight"), kDim, kEps);
        compare_bf16(tl, std::string(ph.tag) + " " + lname(L, out), y, dump_bf16(ph, lname(L, out)));
      }
    }
  expect_exact(tl, "attn_norm / ffn_norm");
}

TEST(GoldenOps, QRope) {
  Tally tl;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      auto q = dump_bf16(ph, lname(L, "attn.q_headnorm"));
      kernels::apply_rope(q, phase_table(L, ph), ph.s, kHeads, kHeadDim, kRope, false);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "attn.q_rope"), q, dump_bf16(ph, lname(L, "attn.q_rope")));
    }
  expect_exact(tl, "q RoPE");
}

TEST(GoldenOps, OInverseRope) {
  Tally tl;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      auto o = dump_bf16(ph, lname(L, "attn.sparse_attn_out"));
      kernels::apply_rope(o, phase_table(L, ph), ph.s, kHeads, kHeadDim, kRope, true);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "attn.o_inv_rope"), o,
                   dump_bf16(ph, lname(L, "attn.o_inv_rope")));
    }
  expect_exact(tl, "o inverse RoPE");
}

// wo_a: the grouped bf16 einsum on the checkpoint's FP8 weight and block scales (the engine keeps wo_a in FP8;
// convert.py's bf16 dequantisation is exact), from the dumped o_inv_rope.
TEST(GoldenOps, WoA) {
  constexpr int kGroups = 2;
  Tally tl;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      const std::string pre = "layers." + std::to_string(L) + ".attn.wo_a";
      const auto w = ckpt().get<uint8_t>(pre + ".weight", "F8_E4M3");
      const auto ws = ckpt().get<uint8_t>(pre + ".scale", "F8_E8M0");
      const int64_t k = kHeads * kHeadDim / kGroups, n = int64_t(w.size()) / k / kGroups;
      std::vector<bf16> z(size_t(ph.s * kGroups * n));
      kernels::linear_bf16_fp8w_grouped(z, dump_bf16(ph, lname(L, "attn.o_inv_rope")), w, ws, ph.s, kGroups, n, k);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "attn.wo_a_out"), z,
                   dump_bf16(ph, lname(L, "attn.wo_a_out")));
    }
  expect_exact(tl, "wo_a");
}

TEST(GoldenOps, KvRopeFp8) {
  Tally tl;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      auto kv = dump_bf16(ph, lname(L, "attn.kv_norm_out"));
      kernels::apply_rope(kv, phase_table(L, ph), ph.s, 1, kHeadDim, kRope, false);
      for (int64_t t = 0; t < ph.s; ++t)  // act_quant(kv[..., :-rd], 64, inplace): the nope dims only
        kernels::fp8_round_trip_inplace(std::span<bf16>(kv.data() + t * kHeadDim, kHeadDim - kRope), 64);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "attn.kv"), kv, dump_bf16(ph, lname(L, "attn.kv")));
    }
  expect_exact(tl, "kv RoPE + FP8");
}

TEST(GoldenOps, SparseAttn) {
  Tally tl;
  const float scale = float(std::pow(double(kHeadDim), -0.5));
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      std::vector<bf16> kv;
      if (ph.decode_step < 0) {
        kv = dump_bf16(ph, lname(L, "attn.kv"));
        if (has_dump(ph, lname(L, "attn.compressed_kv"))) {
          auto c = dump_bf16(ph, lname(L, "attn.compressed_kv"));
          kv.insert(kv.end(), c.begin(), c.end());
        }
      } else {
        kv = dump_bf16(ph, lname(L, "attn.sparse_attn_kv"));
      }
      std::vector<int64_t> ishape;
      auto idx = dump_i32(ph, lname(L, "sparse_attn_topk_idxs"), &ishape);
      auto q = dump_bf16(ph, lname(L, "attn.q_rope"));
      std::vector<bf16> o(q.size());
      kernels::sparse_attn(o, q, kv, w_f32("layers." + std::to_string(L) + ".attn.attn_sink"), idx, kHeads, kHeadDim,
                           int(ishape.back()), scale);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "attn.sparse_attn_out"), o,
                   dump_bf16(ph, lname(L, "attn.sparse_attn_out")));
    }
  // 2 outputs sit on an fp32 rounding midpoint of bf16 (len130_prefill L0 and L5); see the report.
  expect_known(tl, "sparse_attn", 2, 1);
}

TEST(GoldenOps, IndexerQkScoresTopk) {
  Tally tl;
  const float wscale = float(std::pow(double(kIdxDim), -0.5) * std::pow(double(kIdxHeads), -0.5));
  int checked = 0;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      if (!has_dump(ph, lname(L, "indexer.keys"))) continue;
      ++checked;
      const std::string tag = std::string(ph.tag) + " ";
      std::vector<int64_t> kshape;
      auto keys = dump_bf16(ph, lname(L, "indexer.keys"), &kshape);
      const int64_t T = kshape[1];
      auto q = dump_bf16(ph, lname(L, "indexer.q"));
      // q·k per head: exact dot, one bf16 rounding (the golden's exact einsum).
      std::vector<bf16> qk(size_t(ph.s) * kIdxHeads * T);
      for (int64_t t = 0; t < ph.s; ++t)
        for (int h = 0; h < kIdxHeads; ++h)
          for (int64_t j = 0; j < T; ++j) {
            double acc = 0;
            for (int c = 0; c < kIdxDim; ++c)
              acc += double(bf16_to_f32(q[(t * kIdxHeads + h) * kIdxDim + c])) *
                     double(bf16_to_f32(keys[j * kIdxDim + c]));
            qk[(t * kIdxHeads + h) * T + j] = kernels::f64_to_bf16(acc);
          }
      compare_bf16(tl, tag + lname(L, "indexer.qk"), qk, dump_bf16(ph, lname(L, "indexer.qk")));

      auto wp = dump_bf16(ph, lname(L, "indexer.weights_proj_out"));
      std::vector<bf16> w(wp.size());
      kernels::indexer_weights(w, wp, wscale);
      const auto pos = positions(ph);
      std::vector<bf16> scores(size_t(ph.s * T));
      kernels::indexer_scores(scores, q, w, keys, pos, kIdxHeads, kIdxDim, 4);
      auto want_scores = dump_bf16(ph, lname(L, "indexer.scores"));
      compare_bf16(tl, tag + lname(L, "indexer.scores"), scores, want_scores);

      const int k = int(std::min<int64_t>(kIdxTopk, T));
      const int32_t offset = ph.decode_step < 0 ? int32_t(ph.s) : kWin;
      std::vector<int32_t> idx(size_t(ph.s) * k);
      kernels::indexer_topk(idx, want_scores, pos, T, k, 4, offset);  // from the dumped scores
      auto want_idx = dump_i32(ph, lname(L, "indexer.topk_idxs"));
      compare_ints(tl, tag + lname(L, "indexer.topk_idxs") + " (from golden scores)", idx, want_idx);
      kernels::indexer_topk(idx, scores, pos, T, k, 4, offset);  // from our scores: the whole chain
      compare_ints(tl, tag + lname(L, "indexer.topk_idxs") + " (chain)", idx, want_idx);
    }
  EXPECT_GT(checked, 0);
  expect_exact(tl, "indexer qk / scores / topk");
}

TEST(GoldenOps, Gate) {
  Tally tl, ti;
  for (const auto& ph : kPhases) {
    std::vector<int32_t> ids;
    const std::string cdir = std::string(DSV4_GOLDEN_DIR) + "/" + ph.name + "/";
    if (ph.decode_step < 0) ids = npy::read_as<int32_t>(cdir + "input_ids.npy");
    else ids = {npy::read_as<int32_t>(cdir + "tokens.npy")[size_t(ph.decode_step)]};
    ASSERT_EQ(int64_t(ids.size()), ph.s);
    for (int L = 0; L < kLayers; ++L) {
      const std::string pre = "layers." + std::to_string(L) + ".ffn.gate.";
      const bool hash = ckpt().has(pre + "tid2eid");
      std::vector<int64_t> tid;
      std::vector<float> bias;
      if (hash) tid = ckpt().get<int64_t>(pre + "tid2eid", "I64");
      else bias = w_f32(pre + "bias");
      auto logits = dump_f32(ph, lname(L, "gate.logits"));
      std::vector<float> wts(size_t(ph.s) * kTopk), sc(logits.size());
      std::vector<int32_t> ix(size_t(ph.s) * kTopk);
      kernels::moe_gate(wts, ix, sc, logits, bias, tid, ids, kExperts, kTopk, 1.5f);
      const std::string tag = std::string(ph.tag) + " ";
      compare_f32(tl, tag + lname(L, "gate.scores"), sc, dump_f32(ph, lname(L, "gate.scores")));
      compare_ints(ti, tag + lname(L, "gate.indices"), ix, dump_i32(ph, lname(L, "gate.indices")));
      compare_f32(tl, tag + lname(L, "gate.weights"), wts, dump_f32(ph, lname(L, "gate.weights")));
    }
  }
  expect_exact(ti, "gate.indices");
  // softplus (torch: Sleef expf/log1pf) and the 6-term weight sum order are not reproduced bit for bit.
  expect_known(tl, "gate.scores / gate.weights (fp32)", 2327, 4);
}

// hc chain of one block from dumped tensors: hc_pre_attn(block input) → hc_post(attn_out) → hc_pre_ffn →
// hc_post(moe_out) = block_out.
TEST(GoldenOps, HyperConnections) {
  Tally tl, tf;
  const kernels::HcDims d{kHc, kDim, 20, kEps, kEps};
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      const std::string tag = std::string(ph.tag) + " ";
      const std::string pre = "layers." + std::to_string(L) + ".";
      std::vector<bf16> h;
      if (L == 0) {
        auto e = dump_bf16(ph, "embed_out");
        h.resize(e.size() * kHc);
        for (int64_t t = 0; t < ph.s; ++t)
          for (int j = 0; j < kHc; ++j)
            std::copy_n(e.begin() + t * kDim, kDim, h.begin() + (t * kHc + j) * kDim);
      } else {
        h = dump_bf16(ph, lname(L - 1, "block_out"));
      }
      const size_t s = size_t(ph.s);
      std::vector<bf16> y(s * kDim), h2(s * kHc * kDim), out(s * kHc * kDim);
      std::vector<float> post(s * kHc), comb(s * kHc * kHc);
      kernels::hc_pre(y, post, comb, h, w_f32(pre + "hc_attn_fn"), w_f32(pre + "hc_attn_scale"),
                      w_f32(pre + "hc_attn_base"), d);
      compare_bf16(tl, tag + lname(L, "hc_pre_attn.y"), y, dump_bf16(ph, lname(L, "hc_pre_attn.y")));
      compare_f32(tf, tag + lname(L, "hc_pre_attn.post"), post, dump_f32(ph, lname(L, "hc_pre_attn.post")));
      compare_f32(tf, tag + lname(L, "hc_pre_attn.comb"), comb, dump_f32(ph, lname(L, "hc_pre_attn.comb")));
      // hc_post with the dumped post/comb, so that this check is independent of hc_pre's fp32 ulps.
      kernels::hc_post(h2, dump_bf16(ph, lname(L, "attn_out")), h, dump_f32(ph, lname(L, "hc_pre_attn.post")),
                       dump_f32(ph, lname(L, "hc_pre_attn.comb")), d);
      kernels::hc_pre(y, post, comb, h2, w_f32(pre + "hc_ffn_fn"), w_f32(pre + "hc_ffn_scale"),
                      w_f32(pre + "hc_ffn_base"), d);
      compare_bf16(tl, tag + lname(L, "hc_pre_ffn.y"), y, dump_bf16(ph, lname(L, "hc_pre_ffn.y")));
      compare_f32(tf, tag + lname(L, "hc_pre_ffn.post"), post, dump_f32(ph, lname(L, "hc_pre_ffn.post")));
      compare_f32(tf, tag + lname(L, "hc_pre_ffn.comb"), comb, dump_f32(ph, lname(L, "hc_pre_ffn.comb")));
      kernels::hc_post(out, dump_bf16(ph, lname(L, "moe_out")), h2, dump_f32(ph, lname(L, "hc_pre_ffn.post")),
                       dump_f32(ph, lname(L, "hc_pre_ffn.comb")), d);
      compare_bf16(tl, tag + lname(L, "block_out"), out, dump_bf16(ph, lname(L, "block_out")));
    }
  // post/comb come from an fp32 GEMM of unknown order followed by 20 Sinkhorn rounds: fp32 ulps differ.
  expect_known(tf, "hc_pre post/comb (fp32)", 28257, 62);
  expect_known(tl, "hc_pre y, block_out (bf16)", 5, 1);
}

TEST(GoldenOps, HcHeadAndFinalNorm) {
  Tally tl, tn;
  const kernels::HcDims d{kHc, kDim, 20, kEps, kEps};
  for (const auto& ph : kPhases) {
    auto h = dump_bf16(ph, lname(kLayers - 1, "block_out"));
    std::vector<bf16> y(size_t(ph.s) * kDim), z(y.size());
    kernels::hc_head(y, h, w_f32("hc_head_fn"), w_f32("hc_head_scale"), w_f32("hc_head_base"), d);
    compare_bf16(tl, std::string(ph.tag) + " hc_head_out", y, dump_bf16(ph, "hc_head_out"));
    auto hy = dump_bf16(ph, "hc_head_out");
    kernels::rms_norm(z, hy, w_bf16("norm.weight"), kDim, kEps);
    compare_bf16(tn, std::string(ph.tag) + " final_norm_out", z, dump_bf16(ph, "final_norm_out"));
  }
  expect_known(tl, "hc_head_out", 1, 1);
  expect_exact(tn, "final_norm_out");
}

// The compressor's fp32 projection fp32(x) @ W^T (W bf16 [out, in] widened), through kernels::linear_f32.
std::vector<float> proj_f32(const std::vector<bf16>& x, const std::vector<bf16>& w, int in) {
  const int64_t rows = int64_t(x.size()) / in, out = int64_t(w.size()) / in;
  std::vector<float> xf(x.size()), y(size_t(rows * out));
  for (size_t i = 0; i < x.size(); ++i) xf[i] = bf16_to_f32(x[i]);
  kernels::linear_f32(y, xf, w, rows, out, in);
  return y;
}

// FP8 linear from the checkpoint (act_quant block 128, then kernels::linear_fp8): y bf16 [rows, out].
std::vector<bf16> fp8_linear(const std::vector<bf16>& x, const std::string& wname, int64_t in) {
  const auto w = ckpt().get<uint8_t>(wname + ".weight", "F8_E4M3");
  const auto ws = ckpt().get<uint8_t>(wname + ".scale", "F8_E8M0");
  const int64_t rows = int64_t(x.size()) / in, out = int64_t(w.size()) / in;
  std::vector<uint8_t> xq(x.size());
  std::vector<float> xs(size_t(rows * in / 128));
  kernels::act_quant_fp8(xq, xs, x, rows, in);
  std::vector<bf16> y(size_t(rows * out));
  kernels::linear_fp8(y, xq, xs, w, ws, rows, out, in);
  return y;
}

// Per-head q RMS (bf16 op by op) from wq_b(attn.qr).
TEST(GoldenOps, QHeadNorm) {
  Tally tl;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      auto q = fp8_linear(dump_bf16(ph, lname(L, "attn.qr")), "layers." + std::to_string(L) + ".attn.wq_b", 128);
      kernels::q_head_rms(q, kHeadDim, kEps);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "attn.q_headnorm"), q,
                   dump_bf16(ph, lname(L, "attn.q_headnorm")));
    }
  expect_exact(tl, "q per-head RMS");
}

// Indexer q: indexer.wq_b(attn.qr) → RoPE → Hadamard → FP4; and weights_proj(attn_norm_out).
TEST(GoldenOps, IndexerQAndWeightsProj) {
  Tally tl;
  int checked = 0;
  for (const auto& ph : kPhases)
    for (int L = 0; L < kLayers; ++L) {
      if (kRatio[L] != 4) continue;
      ++checked;
      const std::string pre = "layers." + std::to_string(L) + ".attn.indexer.";
      auto q = fp8_linear(dump_bf16(ph, lname(L, "attn.qr")), pre + "wq_b", 128);
      kernels::indexer_q_post(q, phase_table(L, ph), ph.s, kIdxHeads, kRope);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "indexer.q"), q, dump_bf16(ph, lname(L, "indexer.q")));
      auto x = dump_bf16(ph, lname(L, "attn_norm_out"));
      std::vector<bf16> wp(size_t(ph.s) * kIdxHeads);
      kernels::linear_bf16(wp, x, w_bf16(pre + "weights_proj.weight"), ph.s, kIdxHeads, kDim);
      compare_bf16(tl, std::string(ph.tag) + " " + lname(L, "indexer.weights_proj_out"), wp,
                   dump_bf16(ph, lname(L, "indexer.weights_proj_out")));
    }
  EXPECT_GT(checked, 0);
  expect_exact(tl, "indexer q / weights_proj");
}

// Compressor outputs (attn.compressed_kv, indexer.compressed_kv): each case's phases run in order through one
// carried state, from the dumped attn_norm_out.
TEST(GoldenOps, Compressors) {
  Tally tl;
  int checked = 0;
  for (const char* cs : {"len7", "len130"})
    for (int L = 0; L < kLayers; ++L) {
      if (kRatio[L] == 0) continue;
      for (bool idx : {false, true}) {
        if (idx && kRatio[L] != 4) continue;
        const std::string pre =
            "layers." + std::to_string(L) + (idx ? ".attn.indexer.compressor." : ".attn.compressor.");
        const CompressorDims dm{kRatio[L], idx ? kIdxDim : kHeadDim, kRope, idx, kEps};
        std::vector<float> kvs(size_t(dm.state_rows()) * dm.proj_dim()), scs(kvs.size());
        kernels::compressor_reset(kvs, scs);
        const auto wkv = w_bf16(pre + "wkv.weight"), wg = w_bf16(pre + "wgate.weight");
        const auto ape = w_f32(pre + "ape");
        const auto nw = w_bf16(pre + "norm.weight");
        const auto freqs = layer_freqs(L);
        for (const auto& ph : kPhases) {
          if (std::string(ph.name) != cs) continue;
          auto x = dump_bf16(ph, lname(L, "attn_norm_out"));
          auto kv = proj_f32(x, wkv, kDim), sc = proj_f32(x, wg, kDim);
          const auto pos = positions(ph);
          std::vector<bf16> ent(size_t(ph.s / dm.ratio + 1) * dm.head_dim);
          std::vector<int64_t> ids(size_t(ph.s / dm.ratio + 1));
          const int64_t n = kernels::compressor_step(ent, ids, kvs, scs, kv, sc, pos, ape, nw, freqs, dm);
          ent.resize(size_t(n) * dm.head_dim);
          const std::string name = lname(L, idx ? "indexer.compressed_kv" : "attn.compressed_kv");
          if (!has_dump(ph, name)) {
            EXPECT_EQ(n, 0) << ph.tag << " " << name << ": entries emitted but none dumped";
            continue;
          }
          ++checked;
          compare_bf16(tl, std::string(ph.tag) + " " + name, ent, dump_bf16(ph, name));
        }
      }
    }
  EXPECT_GT(checked, 0);
  expect_known(tl, "compressed_kv (main + indexer)", 0, 0);  // bit-exact since linear_f32 sums in torch's order
}

}  // namespace
}  // namespace dsv4
