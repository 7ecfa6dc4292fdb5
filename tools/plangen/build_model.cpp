// Config -> the static per-step op sequence, its buffers and its weights. Reads like the reference's
// model.py: Transformer.forward, then Block.forward per layer (Attention, Compressor, Indexer, MoE),
// then ParallelHead. Every op output gets a stable name, e.g. "L07.attn.kv_norm_out".
#include <cstdio>

#include "plan/error.hpp"
#include "tools/config/config_json.hpp"
#include "tools/plangen/program.hpp"

namespace dsv4::plangen {
namespace {

using plan::DType;
using plan::Lifetime;
using plan::OpKind;
using plan::Shard;
using plan::WeightFile;
constexpr uint32_t N = plan::kNone;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string layer_prefix(int L) {
  char b[16];
  std::snprintf(b, sizeof b, "L%02d.", L);
  return b;
}

class Builder {
 public:
  explicit Builder(Program& p) : p_(p), m_(p.cfg.model), d_(p.dims) {}

  uint32_t step(const std::string& name, DType t, std::vector<int64_t> shape) {
    return add_buffer(name, t, std::move(shape), Lifetime::Step);
  }
  uint32_t persistent(const std::string& name, DType t, std::vector<int64_t> shape) {
    return add_buffer(name, t, std::move(shape), Lifetime::Persistent);
  }
  uint32_t weight(const std::string& name, DType t, std::vector<int64_t> shape, int layer,
                  Shard shard = Shard::Replicated, int expert_local = -1) {
    WeightSpec w{name, t, std::move(shape), shard == Shard::Replicated ? WeightFile::Replicated : WeightFile::Rank,
                 shard, layer, expert_local};
    p_.weights.push_back(std::move(w));
    return uint32_t(p_.weights.size() - 1);
  }
  // An FP8 linear's weight and its 128x128 block scale, stored as in the checkpoint.
  uint32_t fp8_weight(const std::string& name, int64_t out, int64_t in, int layer) {
    uint32_t w = weight(name + ".weight", DType::F8_E4M3, {out, in}, layer);
    weight(name + ".scale", DType::F8_E8M0, {ceil_div(out, 128), ceil_div(in, 128)}, layer);
    return w;  // the scale is always the next weight id
  }
  void op(OpKind k, int layer, const std::string& label, std::vector<uint32_t> in, std::vector<uint32_t> out,
          std::vector<uint32_t> w = {}, plan::OpParams prm = {}) {
    p_.ops.push_back(OpSpec{k, layer, label, std::move(in), std::move(out), std::move(w), prm});
  }
  // act_quant of a bf16 [T, K] input: FP8 codes + one fp32 scale per 128 (spec §4.2).
  std::pair<uint32_t, uint32_t> act_quant(int layer, const std::string& name, uint32_t x, int64_t rows, int64_t k) {
    uint32_t q = step(name, DType::F8_E4M3, {rows, k});
    uint32_t s = step(name + ".scale", DType::F32, {rows, k / 128});
    op(OpKind::ActQuantFp8, layer, name, {x}, {q, s});
    return {q, s};
  }

 private:
  uint32_t add_buffer(const std::string& name, DType t, std::vector<int64_t> shape, Lifetime life) {
    for (const auto& b : p_.buffers) DSV4_ASSERT(b.name != name, "duplicate buffer name " + name);
    p_.buffers.push_back(BufferSpec{name, t, std::move(shape), life});
    return uint32_t(p_.buffers.size() - 1);
  }
  Program& p_;
  const ModelConfig& m_;
  const StepDims& d_;
};

// Persistent per-step metadata written by the runtime's metadata builder before each step.
struct Meta {
  uint32_t token_ids, positions, token_request, window_rows, logits_rows, block_table_r4, block_table_r128;
};

void build_attention(Builder& b, const Program& p, const Meta& meta, int L, uint32_t x /*attn_norm_out*/,
                     uint32_t& attn_out) {
  const ModelConfig& m = p.cfg.model;
  const StepDims& d = p.dims;
  const std::string P = layer_prefix(L);
  const std::string W = "layers." + std::to_string(L) + ".attn.";
  const int64_t T = d.T, D = m.hidden_size, H = m.num_attention_heads, hd = m.head_dim, ql = m.q_lora_rank;
  const int64_t G = m.o_groups, ol = m.o_lora_rank, win = m.sliding_window;
  const int64_t ratio = m.compress_ratios[L];
  const int32_t rope_table = ratio == 0 ? 0 : 1;  // ratio-0 layers: base rope_theta, no YaRN (spec §4.4)
  const float eps = float(m.rms_norm_eps);

  // 1. qr = q_norm(wq_a(x)); 2. q = wq_b(qr)
  auto [xq, xs] = b.act_quant(L, P + "attn_norm_q", x, T, D);
  uint32_t q_a = b.step(P + "attn.q_a", DType::BF16, {T, ql});
  b.op(OpKind::LinearFp8, L, P + "attn.wq_a", {xq, xs}, {q_a}, {b.fp8_weight(W + "wq_a", ql, D, L)});
  uint32_t qr = b.step(P + "attn.qr", DType::BF16, {T, ql});
  b.op(OpKind::RmsNorm, L, P + "attn.q_norm", {q_a}, {qr}, {b.weight(W + "q_norm.weight", DType::BF16, {ql}, L)},
       {.eps = eps});
  auto [qrq, qrs] = b.act_quant(L, P + "attn.qr_q", qr, T, ql);
  uint32_t q = b.step(P + "attn.q", DType::BF16, {T, H, hd});
  b.op(OpKind::LinearFp8, L, P + "attn.wq_b", {qrq, qrs}, {q}, {b.fp8_weight(W + "wq_b", H * hd, ql, L)});
  // 3. weightless per-head RMS in bf16 steps; 4. RoPE on the last rd dims
  uint32_t qn = b.step(P + "attn.q_headnorm", DType::BF16, {T, H, hd});
  b.op(OpKind::QHeadNorm, L, P + "attn.q_headnorm", {q}, {qn}, {}, {.dim = int32_t(hd), .eps = eps});
  uint32_t qrope = b.step(P + "attn.q_rope", DType::BF16, {T, H, hd});
  b.op(OpKind::Rope, L, P + "attn.q_rope", {qn, meta.positions}, {qrope}, {},
       {.ratio = int32_t(ratio), .dim = int32_t(hd), .rope_table = rope_table});

  // 5. kv = kv_norm(wkv(x)); RoPE; FP8 round trip of the non-rope dims (block 64)
  uint32_t kvp = b.step(P + "attn.kv_proj", DType::BF16, {T, hd});
  b.op(OpKind::LinearFp8, L, P + "attn.wkv", {xq, xs}, {kvp}, {b.fp8_weight(W + "wkv", hd, D, L)});
  uint32_t kvn = b.step(P + "attn.kv_norm_out", DType::BF16, {T, hd});
  b.op(OpKind::RmsNorm, L, P + "attn.kv_norm", {kvp}, {kvn}, {b.weight(W + "kv_norm.weight", DType::BF16, {hd}, L)},
       {.eps = eps});
  uint32_t kv = b.step(P + "attn.kv", DType::BF16, {T, hd});
  b.op(OpKind::KvFinish, L, P + "attn.kv", {kvn, meta.positions}, {kv}, {},
       {.ratio = int32_t(ratio), .dim = int32_t(hd), .rope_table = rope_table});

  // KV table of the layer: [staging rows of this step | window rings | compressed pool].
  const int64_t pool_rows = ratio ? d.pool_blocks(ratio) * d.kv_block : 0;
  uint32_t cache = b.persistent(P + "attn.kv_cache", DType::BF16, {d.staging_rows + d.ring_rows + pool_rows, hd});
  b.op(OpKind::KvStage, L, P + "attn.kv_stage", {kv}, {cache}, {}, {.dim = int32_t(hd)});

  uint32_t topk_c = N;  // indexer selection (ratio 4)
  if (ratio > 0) {
    // Compressor (spec §5.5): fp32 projections, pooled entries appended to the compressed pool.
    const int64_t coff = ratio == 4 ? 2 : 1;
    const std::string C = W + "compressor.";
    uint32_t ckv = b.step(P + "attn.compressor.kv", DType::F32, {T, coff * hd});
    uint32_t csc = b.step(P + "attn.compressor.score", DType::F32, {T, coff * hd});
    uint32_t wkv = b.weight(C + "wkv.weight", DType::BF16, {coff * hd, D}, L);
    uint32_t wgate = b.weight(C + "wgate.weight", DType::BF16, {coff * hd, D}, L);
    b.op(OpKind::LinearF32, L, P + "attn.compressor.wkv", {x}, {ckv}, {wkv});
    b.op(OpKind::LinearF32, L, P + "attn.compressor.wgate", {x}, {csc}, {wgate});
    uint32_t kst = b.persistent(P + "attn.compressor.kv_state", DType::F32, {d.R, coff * ratio, coff * hd});
    uint32_t sst = b.persistent(P + "attn.compressor.score_state", DType::F32, {d.R, coff * ratio, coff * hd});
    uint32_t bt = ratio == 4 ? meta.block_table_r4 : meta.block_table_r128;
    b.op(OpKind::Compressor, L, P + "attn.compressor", {ckv, csc, meta.positions, meta.token_request, bt},
         {cache, kst, sst},
         {b.weight(C + "ape", DType::F32, {ratio, coff * hd}, L), b.weight(C + "norm.weight", DType::BF16, {hd}, L)},
         {.ratio = int32_t(ratio), .dim = int32_t(hd), .rope_table = 1, .eps = eps});

    if (ratio == 4) {
      // Indexer (spec §5.6).
      const std::string I = W + "indexer.";
      const int64_t IH = m.index_n_heads, ID = m.index_head_dim, pool4 = d.pool_blocks(4) * d.kv_block;
      uint32_t iq = b.step(P + "indexer.q_proj", DType::BF16, {T, IH, ID});
      b.op(OpKind::LinearFp8, L, P + "indexer.wq_b", {qrq, qrs}, {iq}, {b.fp8_weight(I + "wq_b", IH * ID, ql, L)});
      uint32_t iqf = b.step(P + "indexer.q", DType::BF16, {T, IH, ID});
      b.op(OpKind::IndexerQ, L, P + "indexer.q", {iq, meta.positions}, {iqf}, {},
           {.ratio = 4, .dim = int32_t(ID), .rope_table = 1});
      uint32_t ikv = b.step(P + "indexer.compressor.kv", DType::F32, {T, 2 * ID});
      uint32_t isc = b.step(P + "indexer.compressor.score", DType::F32, {T, 2 * ID});
      b.op(OpKind::LinearF32, L, P + "indexer.compressor.wkv", {x}, {ikv},
           {b.weight(I + "compressor.wkv.weight", DType::BF16, {2 * ID, D}, L)});
      b.op(OpKind::LinearF32, L, P + "indexer.compressor.wgate", {x}, {isc},
           {b.weight(I + "compressor.wgate.weight", DType::BF16, {2 * ID, D}, L)});
      uint32_t keys = b.persistent(P + "indexer.kv_cache", DType::BF16, {pool4, ID});
      uint32_t ikst = b.persistent(P + "indexer.compressor.kv_state", DType::F32, {d.R, 8, 2 * ID});
      uint32_t isst = b.persistent(P + "indexer.compressor.score_state", DType::F32, {d.R, 8, 2 * ID});
      b.op(OpKind::Compressor, L, P + "indexer.compressor",
           {ikv, isc, meta.positions, meta.token_request, meta.block_table_r4}, {keys, ikst, isst},
           {b.weight(I + "compressor.ape", DType::F32, {4, 2 * ID}, L),
            b.weight(I + "compressor.norm.weight", DType::BF16, {ID}, L)},
           {.ratio = 4, .dim = int32_t(ID), .rope_table = 1, .flags = plan::kFlagRotate, .eps = eps});
      uint32_t wp = b.step(P + "indexer.weights_proj_out", DType::BF16, {T, IH});
      b.op(OpKind::LinearBf16, L, P + "indexer.weights_proj", {x}, {wp},
           {b.weight(I + "weights_proj.weight", DType::BF16, {IH, D}, L)});
      uint32_t ws = b.step(P + "indexer.weights", DType::BF16, {T, IH});
      b.op(OpKind::IndexerScale, L, P + "indexer.weights", {wp}, {ws}, {}, {.dim = int32_t(IH)});
      topk_c = b.step(P + "indexer.topk_idxs", DType::I32, {T, m.index_topk});
      uint32_t scores = b.step(P + "indexer.scores", DType::BF16, {T, d.C / 4});
      b.op(OpKind::IndexerTopK, L, P + "indexer.topk", {iqf, ws, keys, meta.positions, meta.token_request, meta.block_table_r4},
           {topk_c, scores}, {}, {.ratio = 4, .dim = int32_t(ID)});
    }
  }

  // 6-7. KV row list per token: window rows, then compressed rows; 9. sparse attention with sink.
  const int64_t K = win + (ratio == 4 ? m.index_topk : ratio == 128 ? d.C / 128 : 0);
  uint32_t idx = b.step(P + "sparse_attn_topk_idxs", DType::I32, {T, K});
  std::vector<uint32_t> idx_in = {meta.window_rows, meta.positions, meta.token_request};
  if (ratio == 4) idx_in.push_back(topk_c);
  if (ratio == 128) idx_in.push_back(meta.block_table_r128);
  b.op(OpKind::AttnIndices, L, P + "sparse_attn_topk_idxs", idx_in, {idx}, {}, {.ratio = int32_t(ratio)});
  uint32_t o = b.step(P + "attn.sparse_attn_out", DType::BF16, {T, H, hd});
  b.op(OpKind::SparseAttention, L, P + "attn.sparse_attn", {qrope, cache, idx}, {o},
       {b.weight(W + "attn_sink", DType::F32, {H}, L)}, {.dim = int32_t(hd)});
  b.op(OpKind::WindowWrite, L, P + "attn.window_write", {kv, meta.positions, meta.token_request}, {cache}, {},
       {.dim = int32_t(hd)});

  // 10. inverse RoPE; 11. grouped wo_a (a bf16 einsum; its weight stays FP8 + block scales, as dequantising
  // is exact) then wo_b (FP8)
  uint32_t oi = b.step(P + "attn.o_inv_rope", DType::BF16, {T, H, hd});
  b.op(OpKind::Rope, L, P + "attn.o_inv_rope", {o, meta.positions}, {oi}, {},
       {.ratio = int32_t(ratio), .dim = int32_t(hd), .rope_table = rope_table, .flags = plan::kFlagInverse});
  uint32_t za = b.step(P + "attn.wo_a_out", DType::BF16, {T, G, ol});
  b.op(OpKind::LinearGroupedFp8w, L, P + "attn.wo_a", {oi}, {za}, {b.fp8_weight(W + "wo_a", G * ol, H / G * hd, L)},
       {.dim = int32_t(G)});
  auto [zq, zs] = b.act_quant(L, P + "attn.wo_a_q", za, T, G * ol);
  attn_out = b.step(P + "attn_out", DType::BF16, {T, D});
  b.op(OpKind::LinearFp8, L, P + "attn.wo_b", {zq, zs}, {attn_out}, {b.fp8_weight(W + "wo_b", D, G * ol, L)});
}

uint32_t build_moe(Builder& b, const Program& p, const Meta& meta, int L, uint32_t x /*ffn_norm_out*/) {
  const ModelConfig& m = p.cfg.model;
  const StepDims& d = p.dims;
  const std::string P = layer_prefix(L);
  const std::string W = "layers." + std::to_string(L) + ".ffn.";
  const int64_t T = d.T, D = m.hidden_size, E = m.n_routed_experts, k = m.num_experts_per_tok;
  const int64_t I = m.moe_intermediate_size;
  const bool hash = L < m.num_hash_layers;

  // Gate (spec §5.7): fp32 logits, sqrt(softplus), bias for selection only or tid2eid hash routing.
  uint32_t logits = b.step(P + "gate.logits", DType::F32, {T, E});
  b.op(OpKind::LinearF32, L, P + "gate.linear", {x}, {logits}, {b.weight(W + "gate.weight", DType::BF16, {E, D}, L)});
  uint32_t scores = b.step(P + "gate.scores", DType::F32, {T, E});
  uint32_t weights = b.step(P + "gate.weights", DType::F32, {T, k});
  uint32_t indices = b.step(P + "gate.indices", DType::I32, {T, k});
  uint32_t route = hash ? b.weight(W + "gate.tid2eid", DType::I64, {m.vocab_size, k}, L)
                        : b.weight(W + "gate.bias", DType::F32, {E}, L);
  b.op(OpKind::GateScores, L, P + "gate", {logits, meta.token_ids}, {scores, weights, indices}, {route},
       {.flags = hash ? plan::kFlagHash : 0});

  // The FP8 quantised rows are what travels: every expert's w1/w3 quantises the same x identically.
  auto [xq, xs] = b.act_quant(L, P + "ffn_norm_q", x, T, D);
  uint32_t send = b.step(P + "moe.send", DType::U8, {d.moe_send_rows, d.moe_row_bytes});
  uint32_t recv = b.step(P + "moe.recv", DType::U8, {d.moe_recv_rows, d.moe_row_bytes});
  uint32_t counts = b.step(P + "moe.counts", DType::I32, {2, p.cfg.deploy.ranks});
  b.op(OpKind::MoeDispatch, L, P + "moe.dispatch", {xq, xs, weights, indices}, {send, recv, counts});

  // Routed experts of this rank (FP4): w1/w3 ids are first_w1 + 6*e (w1.weight, w1.scale, w2..., w3...).
  uint32_t first = N;
  for (int64_t e = 0; e < d.experts_per_rank; ++e) {
    const Shard sh = p.cfg.deploy.moe_ep > 1 ? Shard::ExpertParallel : Shard::Replicated;
    const std::string X = W + "experts.{e}.";
    for (const char* wn : {"w1", "w2", "w3"}) {
      const int64_t out = std::string(wn) == "w2" ? D : I, in = std::string(wn) == "w2" ? I : D;
      uint32_t id = b.weight(X + wn + ".weight", DType::FP4_X2, {out, in / 2}, L, sh, int(e));
      b.weight(X + wn + ".scale", DType::F8_E8M0, {out, in / 32}, L, sh, int(e));
      if (first == N) first = id;
    }
  }
  uint32_t gu = b.step(P + "moe.gate_up", DType::BF16, {d.moe_recv_rows, 2, I});
  uint32_t aq = b.step(P + "moe.act_q", DType::F8_E4M3, {d.moe_recv_rows, I});
  uint32_t as = b.step(P + "moe.act_q.scale", DType::F32, {d.moe_recv_rows, I / 128});
  uint32_t eo = b.step(P + "moe.expert_out", DType::BF16, {d.moe_recv_rows, D});
  b.op(OpKind::Experts, L, P + "moe.experts", {recv, counts}, {eo, gu, aq, as}, {first});
  uint32_t back = b.step(P + "moe.back", DType::BF16, {d.moe_send_rows, D});
  b.op(OpKind::MoeReturn, L, P + "moe.return", {eo, counts, send}, {back});

  // Shared expert (FP8, clamped SwiGLU without routing weight).
  const std::string S = W + "shared_experts.";
  uint32_t sgu = b.step(P + "shared.gate_up", DType::BF16, {T, 2, I});
  uint32_t saq = b.step(P + "shared.act_q", DType::F8_E4M3, {T, I});
  uint32_t sas = b.step(P + "shared.act_q.scale", DType::F32, {T, I / 128});
  uint32_t so = b.step(P + "shared_out", DType::BF16, {T, D});
  uint32_t w1 = b.fp8_weight(S + "w1", I, D, L);
  uint32_t w2 = b.fp8_weight(S + "w2", D, I, L);
  uint32_t w3 = b.fp8_weight(S + "w3", I, D, L);
  b.op(OpKind::SharedExpert, L, P + "shared_experts", {xq, xs}, {so, sgu, saq, sas}, {w1, w2, w3});

  uint32_t moe_out = b.step(P + "moe_out", DType::BF16, {T, D});
  b.op(OpKind::MoeCombine, L, P + "moe.combine", {back, indices, so}, {moe_out});
  return moe_out;
}

}  // namespace

int64_t StepDims::pool_blocks(int64_t ratio) const { return R * block_table_width(ratio); }
int64_t StepDims::block_table_width(int64_t ratio) const { return ceil_div(ceil_div(C, ratio), kv_block); }

StepDims step_dims(const ShapeConfig& c) {
  const ModelConfig& m = c.model;
  const DeployConfig& dp = c.deploy;
  StepDims d{};
  d.T = dp.max_tokens_per_step;
  d.R = dp.max_requests_per_rank;
  d.C = dp.max_context;
  d.kv_block = dp.kv_block;
  d.experts_per_rank = m.n_routed_experts / dp.moe_ep;
  d.vocab_shard = vocab_shard_rows(c);
  // Rows that need logits: at most one per request per step (last prefill token or the decode token).
  d.logits_rows_all = (dp.lmhead_tp > 1 ? dp.ranks : 1) * d.R;
  // MoE rows: one per (token, chosen expert). Worst case for a receiver: every token of every
  // rank sends it min(k, experts it owns) rows.
  d.moe_send_rows = d.T * m.num_experts_per_tok;
  d.moe_recv_rows = dp.moe_ep > 1 ? dp.ranks * d.T * std::min(m.num_experts_per_tok, d.experts_per_rank)
                                  : d.moe_send_rows;
  // Row = FP8 codes [D] | fp32 scales [D/128] | expert id i32 | routing weight f32 | source row i32 | pad.
  d.moe_row_bytes = ceil_div(m.hidden_size + m.hidden_size / 128 * 4 + 12, 16) * 16;
  d.staging_rows = d.T;
  d.ring_rows = d.R * m.sliding_window;
  return d;
}

Program build_program(const ShapeConfig& c) {
  Program p;
  p.cfg = c;
  p.dims = step_dims(c);
  const ModelConfig& m = c.model;
  const StepDims& d = p.dims;
  Builder b(p);
  const int64_t T = d.T, D = m.hidden_size, HC = m.hc_mult, R = d.R;
  const int64_t mix = (2 + HC) * HC;
  const float eps = float(m.rms_norm_eps);

  Meta meta{};
  meta.token_ids = b.persistent("meta.token_ids", DType::I32, {T});
  meta.positions = b.persistent("meta.positions", DType::I32, {T});
  meta.token_request = b.persistent("meta.token_request", DType::I32, {T});
  meta.window_rows = b.persistent("meta.window_rows", DType::I32, {T, m.sliding_window});
  meta.logits_rows = b.persistent("meta.logits_rows", DType::I32, {R});
  meta.block_table_r4 = b.persistent("meta.block_table_r4", DType::I32, {R, d.block_table_width(4)});
  meta.block_table_r128 = b.persistent("meta.block_table_r128", DType::I32, {R, d.block_table_width(128)});

  // 5.1 embedding, expanded to hc_mult identical streams.
  uint32_t emb = b.step("embed_out", DType::BF16, {T, D});
  b.op(OpKind::Embed, -1, "embed", {meta.token_ids}, {emb},
       {b.weight("embed.weight", DType::BF16, {m.vocab_size, D}, -1)});
  uint32_t h = b.step("L00.h_in", DType::BF16, {T, HC, D});
  b.op(OpKind::HcExpand, -1, "hc_expand", {emb}, {h});

  for (int L = 0; L < m.num_hidden_layers; ++L) {
    const std::string P = layer_prefix(L);
    const std::string W = "layers." + std::to_string(L) + ".";
    auto hc_pre = [&](const char* which, uint32_t in, int32_t flags) {
      const std::string n = P + "hc_pre_" + which;
      uint32_t y = b.step(n + ".y", DType::BF16, {T, D});
      uint32_t post = b.step(n + ".post", DType::F32, {T, HC});
      uint32_t comb = b.step(n + ".comb", DType::F32, {T, HC, HC});
      const std::string wn = W + "hc_" + which + "_";
      b.op(OpKind::HcPre, L, n, {in}, {y, post, comb},
           {b.weight(wn + "fn", DType::F32, {mix, HC * D}, L), b.weight(wn + "base", DType::F32, {mix}, L),
            b.weight(wn + "scale", DType::F32, {3}, L)},
           {.flags = flags, .eps = eps});
      return std::tuple{y, post, comb};
    };
    // Block.forward: attention half
    auto [ya, posta, comba] = hc_pre("attn", h, 0);
    uint32_t an = b.step(P + "attn_norm_out", DType::BF16, {T, D});
    b.op(OpKind::RmsNorm, L, P + "attn_norm", {ya}, {an},
         {b.weight(W + "attn_norm.weight", DType::BF16, {D}, L)}, {.eps = eps});
    uint32_t attn_out = N;
    build_attention(b, p, meta, L, an, attn_out);
    uint32_t h_mid = b.step(P + "h_mid", DType::BF16, {T, HC, D});
    b.op(OpKind::HcPost, L, P + "hc_post_attn", {attn_out, h, posta, comba}, {h_mid});
    // FFN half
    auto [yf, postf, combf] = hc_pre("ffn", h_mid, plan::kFlagFfn);
    uint32_t fn = b.step(P + "ffn_norm_out", DType::BF16, {T, D});
    b.op(OpKind::RmsNorm, L, P + "ffn_norm", {yf}, {fn}, {b.weight(W + "ffn_norm.weight", DType::BF16, {D}, L)},
         {.eps = eps});
    uint32_t moe_out = build_moe(b, p, meta, L, fn);
    uint32_t out = b.step(P + "block_out", DType::BF16, {T, HC, D});
    b.op(OpKind::HcPost, L, P + "hc_post_ffn", {moe_out, h_mid, postf, combf}, {out}, {}, {.flags = plan::kFlagFfn});
    h = out;
  }

  // 5.8 head: hc_head, final norm, then the vocab-parallel head over the rows that need logits.
  uint32_t hh = b.step("hc_head_out", DType::BF16, {T, D});
  b.op(OpKind::HcHead, -1, "hc_head", {h}, {hh},
       {b.weight("hc_head_fn", DType::F32, {HC, HC * D}, -1), b.weight("hc_head_base", DType::F32, {HC}, -1),
        b.weight("hc_head_scale", DType::F32, {1}, -1)},
       {.eps = eps});
  uint32_t fno = b.step("final_norm_out", DType::BF16, {T, D});
  b.op(OpKind::RmsNorm, -1, "norm", {hh}, {fno}, {b.weight("norm.weight", DType::BF16, {D}, -1)}, {.eps = eps});
  uint32_t rows_all = b.step("head.rows_all", DType::BF16, {d.logits_rows_all, D});
  b.op(OpKind::LogitsRowsGather, -1, "head.rows_gather", {fno, meta.logits_rows}, {rows_all});
  const Shard head_shard = c.deploy.lmhead_tp > 1 ? Shard::VocabParallel : Shard::Replicated;
  uint32_t shard = b.step("logits.shard", DType::F32, {d.logits_rows_all, d.vocab_shard});
  b.op(OpKind::LmHeadShard, -1, "head", {rows_all}, {shard},
       {b.weight("head.weight", DType::BF16, {d.vocab_shard, D}, -1, head_shard)});
  uint32_t logits = b.persistent("logits", DType::F32, {R, m.vocab_size});
  b.op(OpKind::LogitsGather, -1, "logits.gather", {shard}, {logits});
  uint32_t next = b.persistent("next_tokens", DType::I32, {R});
  b.op(OpKind::TokenChoice, -1, "token_choice", {logits, meta.logits_rows}, {next});

  for (auto& buf : p.buffers) {
    int64_t n = 1;
    for (int64_t s : buf.shape) n *= s;
    buf.bytes = n * plan::dtype_bytes(buf.dtype);
  }
  for (auto& w : p.weights) {
    int64_t n = 1;
    for (int64_t s : w.shape) n *= s;
    w.bytes = n * plan::dtype_bytes(w.dtype);
  }
  compute_liveness(p);
  plan_arena(p);
  verify_arena(p);
  assign_weight_offsets(p);
  p.hash = plan_hash(p);
  return p;
}

}  // namespace dsv4::plangen
