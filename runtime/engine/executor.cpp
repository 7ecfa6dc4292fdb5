#include "runtime/engine/executor.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "kernels/attention.hpp"
#include "kernels/compressor.hpp"
#include "kernels/hc.hpp"
#include "kernels/indexer.hpp"
#include "kernels/linear.hpp"
#include "kernels/moe.hpp"
#include "kernels/norm_rope.hpp"
#include "kernels/quant.hpp"
#include "layout.hpp"
#include "model.hpp"
#include "plan.hpp"
#include "plan/error.hpp"
#include "weights.hpp"

namespace dsv4 {
namespace {

namespace k = kernels;
using plan::OpKind;

constexpr int64_t T = gen::kMaxTokensPerStep, R = gen::kMaxRequestsPerRank, D = gen::kHiddenSize;
constexpr int64_t H = gen::kNumHeads, HD = gen::kHeadDim, RD = gen::kRopeDim, WIN = gen::kWindow;
constexpr int64_t KV_BLOCK = gen::kKvBlock, POOL_BASE = gen::kStagingRows + gen::kRingRows;
constexpr int64_t E_LOCAL = gen::kExpertsPerRank, TOPK = gen::kNumActivated, INTER = gen::kMoeInterDim;
constexpr int64_t IH = gen::kIndexHeads, ID = gen::kIndexHeadDim;

// MoE row: FP8 codes [D] | fp32 scales [D/128] | expert id | routing weight | source row (t * k + j).
constexpr int64_t kRowScales = D, kRowExpert = D + D / 128 * 4, kRowWeight = kRowExpert + 4, kRowSrc = kRowWeight + 4;

const k::HcDims kHc{int(gen::kHcMult), int(D), int(gen::kHcSinkhornIters), float(gen::kNormEps), float(gen::kHcEps)};

// Largest K of any fp32 GEMM input (compressor / gate read D; the head reads D).
constexpr int64_t kMaxF32Rows = std::max<int64_t>(T, gen::kLogitsRowsAll);

int64_t rows_of(const plan::Buffer& b) { return b.shape[0]; }

}  // namespace

Executor::Executor(const Comm& comm, Arena& arena, const WeightStore& weights)
    : comm_(comm), arena_(arena), w_(weights) {
  DSV4_ASSERT(comm.size() == gen::kRanks, "world size checked by the caller");
  for (int t = 0; t < 2; ++t) {
    freqs_[t].resize(RD / 2);
    // ratio-0 layers: base rope_theta without YaRN; compressed layers: compress_rope_theta with YaRN.
    k::rope_inv_freqs(freqs_[t], int(RD), t == 0 ? gen::kRopeTheta : gen::kCompressRopeTheta,
                      t == 0 ? 0 : gen::kRopeOriginalSeqLen, gen::kRopeFactor, gen::kBetaFast, gen::kBetaSlow);
    rope_[t].resize(size_t(T * RD));
  }
  pos64_.resize(T);
  xf32_.resize(size_t(kMaxF32Rows * D));
  entries_.resize(size_t((T / 4 + 2) * HD));
  entry_ids_.resize(size_t(T / 4 + 2));
  keys_.resize(size_t(std::max<int64_t>(1, gen::kMaxContext / 4) * ID));
  grp_q_.resize(size_t(gen::kMoeRecvRows * D));
  grp_s_.resize(size_t(gen::kMoeRecvRows * D / 128));
  grp_w_.resize(size_t(gen::kMoeRecvRows));
  grp_rows_.resize(size_t(gen::kMoeRecvRows));
  grp_out_.resize(size_t(gen::kMoeRecvRows * D));
  for (auto& v : a2a_) v.resize(size_t(gen::kRanks));
  dest_count_.resize(size_t(gen::kRanks));
  recv_count_.resize(size_t(gen::kRanks));
  pack_off_.resize(size_t(gen::kRanks));
  topk_tmp_.resize(size_t(T * gen::kIndexTopk));
  logits_all_.resize(size_t(gen::kRanks * R * gen::kVocabShard));
  rows_local_.resize(size_t(R * D));
  head_rows_.resize(size_t(gen::kRanks * R));  // the head input holds at most every rank's rows
  op_s_.assign(gen::kNumOps, 0.0);
}

void Executor::reset_profile() {
  std::fill(op_s_.begin(), op_s_.end(), 0.0);
  profiled_steps_ = 0;
}

// All-to-all byte counts from the row counts of MoeDispatch ([0, P): sent, [P, 2P): received);
// `back` swaps the directions for the return trip.
void Executor::set_a2a(const int32_t* counts, int64_t row_bytes, bool back) {
  const int64_t P = gen::kRanks;
  for (int64_t p = 0, so = 0, ro = 0; p < P; ++p) {
    a2a_[0][p] = int64_t(counts[(back ? P : 0) + p]) * row_bytes;
    a2a_[2][p] = int64_t(counts[(back ? 0 : P) + p]) * row_bytes;
    a2a_[1][p] = so, a2a_[3][p] = ro;
    so += a2a_[0][p], ro += a2a_[2][p];
  }
}

void Executor::build_rope_tables(int64_t n) {
  const auto pos = arena_.span<int32_t>(gen::kBuf_meta_positions);
  for (int64_t t = 0; t < n; ++t) {
    pos64_[t] = pos[t];
    for (int r = 0; r < 2; ++r)
      k::rope_table(std::span(rope_[r]).subspan(size_t(t * RD), size_t(RD)), freqs_[r], pos[t], 1);
  }
}

void Executor::run_step(const StepMeta& meta, const OpHook& after_op) {
  const double t0 = comm_.wtime();
  comm_s_ = 0;
  build_rope_tables(meta.n_tokens);
  if (profiling_) {
    using Clock = std::chrono::steady_clock;
    auto prev = Clock::now();
    for (uint32_t i = 0; i < gen::kNumOps; ++i) {
      run_op(i, meta);
      const auto now = Clock::now();
      op_s_[i] += std::chrono::duration<double>(now - prev).count();
      if (after_op) {
        after_op(i);
        prev = Clock::now();
      } else {
        prev = now;
      }
    }
    ++profiled_steps_;
  } else {
    for (uint32_t i = 0; i < gen::kNumOps; ++i) {
      run_op(i, meta);
      if (after_op) after_op(i);
    }
  }
  step_s_ = comm_.wtime() - t0;
}

void Executor::run_op(uint32_t i, const StepMeta& meta) {
  const plan::Op& op = gen::kOps[i];
  const int64_t n = meta.n_tokens;
  auto buf = [&](uint32_t id) { return arena_.data(id); };
  auto bf = [&](uint32_t id) { return reinterpret_cast<bf16*>(arena_.data(id)); };
  auto f32 = [&](uint32_t id) { return reinterpret_cast<float*>(arena_.data(id)); };
  auto i32 = [&](uint32_t id) { return reinterpret_cast<int32_t*>(arena_.data(id)); };
  auto wspan = [&](uint32_t id) { return std::span<const uint8_t>(w_.data(id), size_t(gen::kWeights[id].bytes)); };
  auto wbf = [&](uint32_t id) {
    return std::span<const bf16>(w_.as<bf16>(id), size_t(gen::kWeights[id].bytes / 2));
  };
  auto wf = [&](uint32_t id) {
    return std::span<const float>(w_.as<float>(id), size_t(gen::kWeights[id].bytes / 4));
  };
  const int32_t* tok_req = i32(gen::kBuf_meta_token_request);
  const int32_t* positions = i32(gen::kBuf_meta_positions);
  const size_t n_work = meta.cu_q_lens.size() - 1;

  switch (op.kind) {
    case OpKind::Embed: {
      const auto* ids = i32(op.in[0]);
      const bf16* emb = w_.as<bf16>(op.w[0]);
      for (int64_t t = 0; t < n; ++t) std::memcpy(bf(op.out[0]) + t * D, emb + int64_t(ids[t]) * D, D * 2);
      break;
    }
    case OpKind::HcExpand:  // 5.1: hc_mult identical copies of the embedding
      for (int64_t t = 0; t < n; ++t)
        for (int64_t h = 0; h < gen::kHcMult; ++h)
          std::memcpy(bf(op.out[0]) + (t * gen::kHcMult + h) * D, bf(op.in[0]) + t * D, D * 2);
      break;
    case OpKind::HcPre:
      k::hc_pre({bf(op.out[0]), size_t(n * D)}, {f32(op.out[1]), size_t(n * kHc.hc)},
                {f32(op.out[2]), size_t(n * kHc.hc * kHc.hc)}, {bf(op.in[0]), size_t(n * kHc.hc * D)}, wf(op.w[0]),
                wf(op.w[2]), wf(op.w[1]), kHc);
      break;
    case OpKind::HcPost:
      k::hc_post({bf(op.out[0]), size_t(n * kHc.hc * D)}, {bf(op.in[0]), size_t(n * D)},
                 {bf(op.in[1]), size_t(n * kHc.hc * D)}, {f32(op.in[2]), size_t(n * kHc.hc)},
                 {f32(op.in[3]), size_t(n * kHc.hc * kHc.hc)}, kHc);
      break;
    case OpKind::HcHead:
      k::hc_head({bf(op.out[0]), size_t(n * D)}, {bf(op.in[0]), size_t(n * kHc.hc * D)}, wf(op.w[0]), wf(op.w[2]),
                 wf(op.w[1]), kHc);
      break;
    case OpKind::RmsNorm: {
      const int64_t dim = gen::kWeights[op.w[0]].shape[0];
      k::rms_norm({bf(op.out[0]), size_t(n * dim)}, {bf(op.in[0]), size_t(n * dim)}, wbf(op.w[0]), int(dim), op.p.eps);
      break;
    }
    case OpKind::ActQuantFp8: {
      const int64_t cols = gen::kBuffers[op.out[0]].shape[1];
      k::act_quant_fp8({buf(op.out[0]), size_t(n * cols)}, {f32(op.out[1]), size_t(n * cols / 128)},
                       {bf(op.in[0]), size_t(n * cols)}, n, cols);
      break;
    }
    case OpKind::LinearFp8: {
      const auto& w = gen::kWeights[op.w[0]];
      const int64_t N = w.shape[0], K = w.shape[1];
      k::linear_fp8({bf(op.out[0]), size_t(n * N)}, {buf(op.in[0]), size_t(n * K)}, {f32(op.in[1]), size_t(n * K / 128)},
                    wspan(op.w[0]), wspan(op.w[0] + 1), n, N, K);
      break;
    }
    case OpKind::LinearBf16: {
      const auto& w = gen::kWeights[op.w[0]];
      const int64_t N = w.shape[0], K = w.shape[1];
      k::linear_bf16({bf(op.out[0]), size_t(n * N)}, {bf(op.in[0]), size_t(n * K)}, wbf(op.w[0]), n, N, K);
      break;
    }
    case OpKind::LinearGroupedFp8w: {  // wo_a: o viewed as [n, groups, heads/groups * hd]
      const auto& w = gen::kWeights[op.w[0]];
      const int64_t G = op.p.dim, N = w.shape[0] / G, K = w.shape[1];
      k::linear_bf16_fp8w_grouped({bf(op.out[0]), size_t(n * G * N)}, {bf(op.in[0]), size_t(n * G * K)},
                                  wspan(op.w[0]), wspan(op.w[0] + 1), n, G, N, K);
      break;
    }
    case OpKind::LinearF32: {  // fp32(x) @ fp32(W)^T: compressor wkv / wgate, gate
      const auto& w = gen::kWeights[op.w[0]];
      const int64_t N = w.shape[0], K = w.shape[1];
      for (int64_t j = 0; j < n * K; ++j) xf32_[j] = bf16_to_f32(bf(op.in[0])[j]);
      k::linear_f32({f32(op.out[0]), size_t(n * N)}, {xf32_.data(), size_t(n * K)}, wbf(op.w[0]), n, N, K);
      break;
    }
    case OpKind::QHeadNorm:
      std::memcpy(bf(op.out[0]), bf(op.in[0]), size_t(n * H * HD * 2));
      k::q_head_rms({bf(op.out[0]), size_t(n * H * HD)}, int(HD), op.p.eps);
      break;
    case OpKind::Rope: {
      const int64_t heads = gen::kBuffers[op.out[0]].shape[1];
      std::memcpy(bf(op.out[0]), bf(op.in[0]), size_t(n * heads * HD * 2));
      k::apply_rope({bf(op.out[0]), size_t(n * heads * HD)}, rope_[op.p.rope_table], n, int(heads), int(HD), int(RD),
                    (op.p.flags & plan::kFlagInverse) != 0);
      break;
    }
    case OpKind::KvFinish: {  // RoPE on the rope dims, FP8 round trip (block 64) of the others
      std::memcpy(bf(op.out[0]), bf(op.in[0]), size_t(n * HD * 2));
      k::apply_rope({bf(op.out[0]), size_t(n * HD)}, rope_[op.p.rope_table], n, 1, int(HD), int(RD), false);
      for (int64_t t = 0; t < n; ++t) k::fp8_round_trip_inplace({bf(op.out[0]) + t * HD, size_t(HD - RD)}, 64);
      break;
    }
    case OpKind::KvStage:  // this step's rows become rows [0, n) of the layer's KV table
      std::memcpy(bf(op.out[0]), bf(op.in[0]), size_t(n * HD * 2));
      break;
    case OpKind::WindowWrite: {  // after attention: the last `window` rows of each chunk go to the ring
      bf16* cache = bf(op.out[0]);
      for (size_t c = 0; c < n_work; ++c) {
        const int64_t a = meta.cu_q_lens[c], b = meta.cu_q_lens[c + 1];
        for (int64_t t = std::max(a, b - WIN); t < b; ++t)
          std::memcpy(cache + (gen::kStagingRows + tok_req[t] * WIN + positions[t] % WIN) * HD, bf(op.in[0]) + t * HD,
                      HD * 2);
      }
      break;
    }
    case OpKind::Compressor: {
      const bool rotate = (op.p.flags & plan::kFlagRotate) != 0;
      const k::CompressorDims dims{op.p.ratio, op.p.dim, int(RD), rotate, op.p.eps};
      const int64_t w = dims.proj_dim(), state = int64_t(dims.state_rows()) * w;
      const int32_t* bt = i32(op.in[4]);
      const int64_t bt_w = gen::kBuffers[op.in[4]].shape[1];
      const int64_t base = rotate ? 0 : POOL_BASE;  // indexer keys live in their own pool
      for (size_t c = 0; c < n_work; ++c) {
        const int64_t a = meta.cu_q_lens[c], b = meta.cu_q_lens[c + 1], slot = tok_req[a];
        const int64_t ne = k::compressor_step(
            entries_, entry_ids_, {f32(op.out[1]) + slot * state, size_t(state)},
            {f32(op.out[2]) + slot * state, size_t(state)}, {f32(op.in[0]) + a * w, size_t((b - a) * w)},
            {f32(op.in[1]) + a * w, size_t((b - a) * w)}, {pos64_.data() + a, size_t(b - a)}, wf(op.w[0]),
            wbf(op.w[1]), freqs_[1], dims);
        for (int64_t e = 0; e < ne; ++e) {
          const int64_t id = entry_ids_[e], blk = bt[slot * bt_w + id / KV_BLOCK];
          DSV4_ASSERT(blk >= 0, "compressed entry without a block (KV manager did not reserve)");
          std::memcpy(bf(op.out[0]) + (base + blk * KV_BLOCK + id % KV_BLOCK) * dims.head_dim,
                      entries_.data() + e * dims.head_dim, size_t(dims.head_dim * 2));
        }
      }
      break;
    }
    case OpKind::IndexerQ:
      std::memcpy(bf(op.out[0]), bf(op.in[0]), size_t(n * IH * ID * 2));
      k::indexer_q_post({bf(op.out[0]), size_t(n * IH * ID)}, rope_[1], n, int(IH), int(RD));
      k::fp4_round_trip_inplace({bf(op.out[0]), size_t(n * IH * ID)});  // fp4_act_quant(q, 32, inplace)
      break;
    case OpKind::IndexerScale: {
      // The reference multiplies by the python float softmax_scale * n_heads**-0.5, i.e. fp32 of a double.
      const float scale = float(std::pow(double(ID), -0.5) * std::pow(double(IH), -0.5));
      k::indexer_weights({bf(op.out[0]), size_t(n * IH)}, {bf(op.in[0]), size_t(n * IH)}, scale);
      break;
    }
    case OpKind::IndexerTopK: {
      const bf16* keys_pool = bf(op.in[2]);
      const int32_t* bt = i32(op.in[5]);
      const int64_t bt_w = gen::kBuffers[op.in[5]].shape[1], topk = gen::kIndexTopk;
      int32_t* out = i32(op.out[0]);
      bf16* scores = bf(op.out[1]);
      const int64_t score_stride = gen::kBuffers[op.out[1]].shape[1];
      for (size_t c = 0; c < n_work; ++c) {
        const int64_t a = meta.cu_q_lens[c], b = meta.cu_q_lens[c + 1], slot = tok_req[a];
        const int64_t n_keys = (positions[b - 1] + 1) / 4;  // entries complete by the chunk's end
        std::fill(out + a * topk, out + b * topk, -1);
        if (n_keys == 0) continue;
        for (int64_t t = 0; t < n_keys; ++t)
          std::memcpy(keys_.data() + t * ID, keys_pool + (bt[slot * bt_w + t / KV_BLOCK] * KV_BLOCK + t % KV_BLOCK) * ID,
                      ID * 2);
        // Scores of the chunk as one [rows, n_keys] block at row a (the golden layout for one request).
        const std::span<bf16> sc(scores + a * score_stride, size_t((b - a) * n_keys));
        k::indexer_scores(sc, {bf(op.in[0]) + a * IH * ID, size_t((b - a) * IH * ID)},
                          {bf(op.in[1]) + a * IH, size_t((b - a) * IH)}, {keys_.data(), size_t(n_keys * ID)},
                          {pos64_.data() + a, size_t(b - a)}, int(IH), int(ID), 4);
        const int64_t kk = std::min(topk, n_keys);
        // indexer_topk writes [rows, kk]; spread into the fixed [rows, topk] rows, -1 padded.
        std::vector<int32_t>& tmp = topk_tmp_;
        k::indexer_topk({tmp.data(), size_t((b - a) * kk)}, sc, {pos64_.data() + a, size_t(b - a)}, n_keys, int(kk), 4,
                        0);
        for (int64_t t = 0; t < b - a; ++t) std::copy_n(tmp.data() + t * kk, kk, out + (a + t) * topk);
      }
      break;
    }
    case OpKind::AttnIndices: {  // window rows, then compressed rows (indexer top-k, or all visible entries)
      const int64_t K = gen::kBuffers[op.out[0]].shape[1];
      int32_t* idx = i32(op.out[0]);
      const int32_t* win = i32(op.in[0]);
      for (int64_t t = 0; t < n; ++t) {
        int32_t* row = idx + t * K;
        std::copy_n(win + t * WIN, WIN, row);
        const int64_t slot = tok_req[t];
        if (op.p.ratio == 4) {
          const int32_t* sel = i32(op.in[3]) + t * gen::kIndexTopk;
          const int32_t* bt = i32(gen::kBuf_meta_block_table_r4);
          for (int64_t j = 0; j < gen::kIndexTopk; ++j)
            row[WIN + j] = sel[j] < 0 ? -1
                                      : int32_t(POOL_BASE + bt[slot * gen::kBlockTableWidthR4 + sel[j] / KV_BLOCK] * KV_BLOCK +
                                                sel[j] % KV_BLOCK);
        } else if (op.p.ratio == 128) {
          const int32_t* bt = i32(op.in[3]);
          const int64_t visible = (positions[t] + 1) / 128;
          for (int64_t j = 0; j < K - WIN; ++j)
            row[WIN + j] = j < visible ? int32_t(POOL_BASE + bt[slot * gen::kBlockTableWidthR128 + j / KV_BLOCK] * KV_BLOCK +
                                                 j % KV_BLOCK)
                                       : -1;
        }
      }
      break;
    }
    case OpKind::SparseAttention: {
      const int64_t K = gen::kBuffers[op.in[2]].shape[1];
      const float scale = float(std::pow(double(HD), -0.5));  // softmax_scale = head_dim ** -0.5
      k::sparse_attn({bf(op.out[0]), size_t(n * H * HD)}, {bf(op.in[0]), size_t(n * H * HD)},
                     arena_.span<const bf16>(op.in[1]), wf(op.w[0]), {i32(op.in[2]), size_t(n * K)}, int(H), int(HD),
                     int(K), scale);
      break;
    }
    case OpKind::GateScores: {
      const bool hash = (op.p.flags & plan::kFlagHash) != 0;
      const int64_t E = gen::kNumExperts;
      std::span<const float> bias;
      std::span<const int64_t> tid2eid;
      if (hash) tid2eid = {w_.as<int64_t>(op.w[0]), size_t(gen::kWeights[op.w[0]].bytes / 8)};
      else bias = wf(op.w[0]);
      k::moe_gate({f32(op.out[1]), size_t(n * TOPK)}, {i32(op.out[2]), size_t(n * TOPK)}, {f32(op.out[0]), size_t(n * E)},
                  {f32(op.in[0]), size_t(n * E)}, bias, tid2eid, {i32(op.in[1]), size_t(n)}, int(E), int(TOPK),
                  float(gen::kRouteScale));
      break;
    }
    case OpKind::MoeDispatch: {
      // Pack one row per (token, chosen expert), grouped by destination rank; exchange counts, then rows.
      const uint8_t* xq = buf(op.in[0]);
      const float* xs = f32(op.in[1]);
      const float* wts = f32(op.in[2]);
      const int32_t* ind = i32(op.in[3]);
      uint8_t* send = buf(op.out[0]);
      int32_t* counts = i32(op.out[2]);
      const int64_t P = gen::kRanks, RB = gen::kMoeRowBytes;
      auto dest = [&](int32_t e) { return gen::kMoeEp > 1 ? e / E_LOCAL : comm_.rank(); };
      std::fill(dest_count_.begin(), dest_count_.end(), 0);
      for (int64_t r = 0; r < n * TOPK; ++r) dest_count_[dest(ind[r])]++;
      std::vector<int64_t>& off = pack_off_;
      for (int64_t p = 0, o = 0; p < P; ++p) off[p] = o, o += dest_count_[p];
      for (int64_t t = 0; t < n; ++t)
        for (int64_t j = 0; j < TOPK; ++j) {
          const int32_t e = ind[t * TOPK + j], src = int32_t(t * TOPK + j);
          uint8_t* row = send + (off[dest(e)]++) * RB;
          std::memcpy(row, xq + t * D, D);
          std::memcpy(row + kRowScales, xs + t * (D / 128), D / 128 * 4);
          std::memcpy(row + kRowExpert, &e, 4);
          std::memcpy(row + kRowWeight, &wts[t * TOPK + j], 4);
          std::memcpy(row + kRowSrc, &src, 4);
        }
      const double c0 = comm_.wtime();
      comm_.alltoall_i64(dest_count_, recv_count_);
      for (int64_t p = 0; p < P; ++p) counts[p] = int32_t(dest_count_[p]), counts[P + p] = int32_t(recv_count_[p]);
      set_a2a(counts, RB, false);
      comm_.alltoallv(send, a2a_[0], a2a_[1], buf(op.out[1]), a2a_[2], a2a_[3]);
      comm_s_ += comm_.wtime() - c0;
      break;
    }
    case OpKind::Experts: {
      // Received rows grouped by local expert, ascending; each group: w1/w3 (FP4), weighted SwiGLU, w2.
      const uint8_t* recv = buf(op.in[0]);
      const int32_t* counts = i32(op.in[1]);
      const int64_t P = gen::kRanks, RB = gen::kMoeRowBytes;
      int64_t n_recv = 0;
      for (int64_t p = 0; p < P; ++p) n_recv += counts[P + p];
      bf16* eo = bf(op.out[0]);
      bf16* gu = bf(op.out[1]);
      uint8_t* aq = buf(op.out[2]);
      float* as = f32(op.out[3]);
      const int32_t first_e = int32_t(gen::kMoeEp > 1 ? comm_.rank() * E_LOCAL : 0);
      for (int64_t el = 0; el < E_LOCAL; ++el) {
        int64_t m = 0;
        for (int64_t r = 0; r < n_recv; ++r) {
          int32_t e;
          std::memcpy(&e, recv + r * RB + kRowExpert, 4);
          if (e != first_e + el) continue;
          std::memcpy(grp_q_.data() + m * D, recv + r * RB, D);
          std::memcpy(grp_s_.data() + m * (D / 128), recv + r * RB + kRowScales, D / 128 * 4);
          std::memcpy(grp_w_.data() + m, recv + r * RB + kRowWeight, 4);
          grp_rows_[m++] = int32_t(r);
        }
        if (m == 0) continue;
        const uint32_t wid = op.w[0] + uint32_t(6 * el);  // w1.weight, w1.scale, w2.weight, w2.scale, w3.weight, w3.scale
        const std::span<const uint8_t> q{grp_q_.data(), size_t(m * D)};
        const std::span<const float> s{grp_s_.data(), size_t(m * D / 128)};
        const std::span<bf16> g{gu, size_t(m * INTER)}, u{gu + m * INTER, size_t(m * INTER)};
        k::linear_fp4(g, q, s, wspan(wid), wspan(wid + 1), m, INTER, D);
        k::linear_fp4(u, q, s, wspan(wid + 4), wspan(wid + 5), m, INTER, D);
        k::swiglu(g, g, u, {grp_w_.data(), size_t(m)}, int(INTER), float(gen::kSwigluLimit));
        k::act_quant_fp8({aq, size_t(m * INTER)}, {as, size_t(m * INTER / 128)}, g, m, INTER);
        k::linear_fp4({grp_out_.data(), size_t(m * D)}, {aq, size_t(m * INTER)}, {as, size_t(m * INTER / 128)},
                      wspan(wid + 2), wspan(wid + 3), m, D, INTER);
        for (int64_t r = 0; r < m; ++r) std::memcpy(eo + grp_rows_[r] * D, grp_out_.data() + r * D, D * 2);
      }
      break;
    }
    case OpKind::MoeReturn: {
      // Expert outputs go back in the order they came; each lands at its source (token, slot) row.
      const int32_t* counts = i32(op.in[1]);
      const uint8_t* send = buf(op.in[2]);
      const int64_t RB = gen::kMoeRowBytes;
      set_a2a(counts, D * 2, true);
      const double c0 = comm_.wtime();
      comm_.alltoallv(bf(op.in[0]), a2a_[0], a2a_[1], grp_out_.data(), a2a_[2], a2a_[3]);
      comm_s_ += comm_.wtime() - c0;
      for (int64_t r = 0; r < n * TOPK; ++r) {
        int32_t src;
        std::memcpy(&src, send + r * RB + kRowSrc, 4);
        std::memcpy(bf(op.out[0]) + int64_t(src) * D, grp_out_.data() + r * D, D * 2);
      }
      break;
    }
    case OpKind::SharedExpert: {
      bf16* gu = bf(op.out[1]);
      const std::span<const uint8_t> q{buf(op.in[0]), size_t(n * D)};
      const std::span<const float> s{f32(op.in[1]), size_t(n * D / 128)};
      const std::span<bf16> g{gu, size_t(n * INTER)}, u{gu + n * INTER, size_t(n * INTER)};
      k::linear_fp8(g, q, s, wspan(op.w[0]), wspan(op.w[0] + 1), n, INTER, D);
      k::linear_fp8(u, q, s, wspan(op.w[2]), wspan(op.w[2] + 1), n, INTER, D);
      k::swiglu(g, g, u, {}, int(INTER), float(gen::kSwigluLimit));  // shared expert: no routing weight
      k::act_quant_fp8({buf(op.out[2]), size_t(n * INTER)}, {f32(op.out[3]), size_t(n * INTER / 128)}, g, n, INTER);
      k::linear_fp8({bf(op.out[0]), size_t(n * D)}, {buf(op.out[2]), size_t(n * INTER)},
                    {f32(op.out[3]), size_t(n * INTER / 128)}, wspan(op.w[1]), wspan(op.w[1] + 1), n, D, INTER);
      break;
    }
    case OpKind::MoeCombine:
      k::moe_combine({bf(op.out[0]), size_t(n * D)}, {bf(op.in[0]), size_t(n * TOPK * D)}, {i32(op.in[1]), size_t(n * TOPK)},
                     {bf(op.in[2]), size_t(n * D)}, int(TOPK), int(D));
      break;
    case OpKind::LogitsRowsGather: {
      const int32_t* lr = i32(op.in[1]);
      for (int64_t j = 0; j < R; ++j) {
        if (lr[j] >= 0) std::memcpy(rows_local_.data() + j * D, bf(op.in[0]) + int64_t(lr[j]) * D, D * 2);
        else std::fill_n(rows_local_.data() + j * D, D, bf16{0});  // zero: LmHeadShard skips such rows
      }
      const double c0 = comm_.wtime();
      if (gen::kLmHeadTp > 1) comm_.allgather(rows_local_.data(), R * D * 2, bf(op.out[0]));
      else std::memcpy(bf(op.out[0]), rows_local_.data(), size_t(R * D * 2));
      comm_s_ += comm_.wtime() - c0;
      break;
    }
    case OpKind::LmHeadShard: {
      // Only the rows somebody asked for go through the head. LogitsRowsGather zero-fills the others, and a
      // zero row's logits are +0 exactly (every product is ±0 and the sequential sum starts at +0); the
      // kernel is batch-invariant, so a live row's logits do not depend on how many others there are.
      const int64_t rows = rows_of(gen::kBuffers[op.in[0]]), V = gen::kVocabShard;
      const bf16* x = bf(op.in[0]);
      float* y = f32(op.out[0]);
      int64_t live = 0;
      for (int64_t r = 0; r < rows; ++r)
        if (std::any_of(x + r * D, x + (r + 1) * D, [](bf16 v) { return (v.bits & 0x7fff) != 0; })) {
          for (int64_t j = 0; j < D; ++j) xf32_[live * D + j] = bf16_to_f32(x[r * D + j]);
          head_rows_[live++] = r;
        }
      k::linear_f32({y, size_t(live * V)}, {xf32_.data(), size_t(live * D)}, wbf(op.w[0]), live, V, D);
      for (int64_t i = live - 1; i >= 0; --i)  // spread the packed rows out (row head_rows_[i] >= i)
        if (head_rows_[i] != i) std::memcpy(y + head_rows_[i] * V, y + i * V, size_t(V) * sizeof(float));
      for (int64_t r = 0, i = 0; r < rows; ++r)
        if (i < live && head_rows_[i] == r) ++i;
        else std::fill_n(y + r * V, V, 0.f);
      break;
    }
    case OpKind::LogitsGather: {  // shard rows of owner o -> o; o assembles its rows on the full vocabulary
      const int64_t V = gen::kVocabShard, P = gen::kLmHeadTp;
      float* logits = f32(op.out[0]);
      if (P == 1) {
        std::memcpy(logits, f32(op.in[0]), size_t(R * gen::kVocabSize * 4));
        break;
      }
      for (int64_t p = 0; p < P; ++p) a2a_[0][p] = R * V * 4, a2a_[1][p] = p * R * V * 4;
      const double c0 = comm_.wtime();
      comm_.alltoallv(f32(op.in[0]), a2a_[0], a2a_[1], logits_all_.data(), a2a_[0], a2a_[1]);
      comm_s_ += comm_.wtime() - c0;
      for (int64_t j = 0; j < R; ++j)
        for (int64_t p = 0; p < P; ++p) {
          const int64_t v0 = p * V, nv = std::min(V, gen::kVocabSize - v0);
          if (nv > 0) std::memcpy(logits + j * gen::kVocabSize + v0, logits_all_.data() + (p * R + j) * V, size_t(nv * 4));
        }
      break;
    }
    case OpKind::TokenChoice: {  // greedy: the first maximum, as torch.argmax
      const float* logits = f32(op.in[0]);
      int32_t* next = i32(op.out[0]);
      for (int64_t j = 0; j < R; ++j) {
        if (i32(op.in[1])[j] < 0) {
          next[j] = -1;
          continue;
        }
        const float* row = logits + j * gen::kVocabSize;
        next[j] = int32_t(std::max_element(row, row + gen::kVocabSize) - row);
      }
      break;
    }
  }
}

}  // namespace dsv4
