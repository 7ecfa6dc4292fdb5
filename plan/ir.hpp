// Plan IR: the records plangen emits as constexpr tables and the runtime executor walks.
// Plain structs, 64-bit offsets, every field commented. Header-only, no dependencies.
#pragma once
#include <cstdint>

namespace dsv4::plan {

inline constexpr uint32_t kFormatVersion = 1;  // bump on any change of these records
inline constexpr int kMaxDims = 4;
inline constexpr uint32_t kNone = 0xffffffffu;  // "no buffer / no weight" in an op slot

// Element types of buffers and weights. F8_E4M3 / F8_E8M0 are raw bytes; FP4_X2 is the official
// I8 packing of two e2m1 codes per byte (low nibble = even element).
enum class DType : uint8_t { BF16, F32, I32, I64, U8, F8_E4M3, F8_E8M0, FP4_X2 };

constexpr int64_t dtype_bytes(DType t) {
  switch (t) {
    case DType::BF16: return 2;
    case DType::F32: return 4;
    case DType::I32: return 4;
    case DType::I64: return 8;
    default: return 1;
  }
}
constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::BF16: return "bf16";
    case DType::F32: return "f32";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
    case DType::F8_E4M3: return "f8_e4m3";
    case DType::F8_E8M0: return "f8_e8m0";
    case DType::FP4_X2: return "fp4x2";
  }
  return "?";
}

// How long a buffer's contents must survive.
enum class Lifetime : uint8_t {
  Step,        // an op output: live from its first writer to its last reader within one step
  Persistent,  // KV pools, compressor state, step metadata: live for the whole run
};

// One region of the per-rank arena.
struct Buffer {
  const char* name;         // stable op-output name, e.g. "L07.attn.kv_norm_out" (same as traces/golden)
  DType dtype;              // element type
  int32_t ndim;             // number of used dims in shape
  int64_t shape[kMaxDims];  // logical shape for the fixed step (token dims at their maximum)
  int64_t bytes;            // size in bytes (product(shape) * dtype bytes)
  int64_t offset;           // byte offset in the rank's arena (aligned to `align`)
  int64_t align;            // alignment of offset in bytes
  Lifetime lifetime;        // Step buffers may share memory when their live ranges do not overlap
  int32_t first_op;         // first op index that touches it (-1 for Persistent)
  int32_t last_op;          // last op index that touches it (-1 for Persistent)
};

// Which ranks hold a weight and which part.
enum class Shard : uint8_t {
  Replicated,      // whole tensor in the replicated file, read by every rank
  ExpertParallel,  // routed expert tensor: in the rank file of the rank owning the expert
  VocabParallel,   // head rows [rank * vocab_shard, ...): in every rank file, this rank's slice
};

enum class WeightFile : uint8_t { Replicated = 0, Rank = 1 };

// One tensor of the converted weight files.
struct Weight {
  const char* name;         // checkpoint name; experts use the local slot: "layers.3.ffn.experts.{e}.w1.weight" with e = rank's first expert + expert_local
  DType dtype;              // stored element type, as in the checkpoint
  int32_t ndim;             // number of used dims
  int64_t shape[kMaxDims];  // stored shape (vocab shard rows for VocabParallel; packed bytes for FP4_X2)
  int64_t bytes;            // payload bytes
  WeightFile file;          // which file of the weights dir holds it
  int64_t offset;           // byte offset from the start of that file's data section (aligned to 64)
  Shard shard;              // sharding rule
  int32_t layer;            // layer index, -1 for top-level tensors
  int32_t expert_local;     // expert slot within the rank (ExpertParallel), else -1
};

// Every step of the forward pass (spec §5), plus the collectives as explicit ops.
enum class OpKind : uint8_t {
  Embed,            // token rows of embed.weight -> bf16 [T, D]
  HcExpand,         // [T, D] -> [T, hc, D]: hc identical copies (Transformer.forward)
  HcPre,            // hyper-connection mix + Sinkhorn (Block.hc_pre) -> y, post, comb
  RmsNorm,          // weighted RMSNorm, fp32 internals, bf16 out
  ActQuantFp8,      // per-row 128-block FP8 e4m3 quantisation of a GEMM input (kernel.act_quant)
  LinearFp8,        // FP8 weight x FP8 activation, 128x128 block scales, bf16 out
  LinearBf16,       // bf16 x bf16, exact sum rounded once (weights_proj)
  LinearGroupedFp8w,// grouped bf16 einsum (wo_a) on FP8-stored weights: o[g] @ dequant(wo_a[g])^T
  LinearF32,        // fp32 x fp32 (compressor wkv/wgate, gate, head)
  QHeadNorm,        // weightless per-head RMS in bf16 steps (Attention.forward step 3)
  Rope,             // interleaved RoPE on the last rope dims at each token's position (or inverse)
  KvFinish,         // RoPE on kv + FP8 round trip (block 64) of the non-rope dims
  KvStage,          // copy this step's kv rows into the staging rows of the layer's KV table
  WindowWrite,      // after attention: commit this step's kv rows to each request's window ring
  Compressor,       // pooled compression of projected rows (ratio, overlap, rotate) into a KV pool
  IndexerQ,         // indexer q: RoPE, Hadamard-128, FP4 round trip (block 32)
  IndexerScale,     // weights_proj output x index_head_dim^-1/2 * index_n_heads^-1/2, bf16
  IndexerTopK,      // relu(q.k) weighted scores over compressed keys, causal mask, top-k (ties: lower index)
  AttnIndices,      // per-token KV row list: window rows, then compressed rows (all, or the indexer's top-k)
  SparseAttention,  // sparse attention with sink over the row list, online softmax in blocks of 64
  HcPost,           // hyper-connection post (Block.hc_post): new residual streams
  GateScores,       // sqrt(softplus(logits)); top-k with bias (or tid2eid hash); normalise; x route scale
  MoeDispatch,      // collective: count exchange, then all-to-all-v of FP8 rows + expert ids + weights
  Experts,          // local routed experts (FP4) on received rows grouped by expert, weighted SwiGLU
  MoeReturn,        // collective: all-to-all-v of expert outputs back to the tokens' ranks
  SharedExpert,     // shared expert (FP8) SwiGLU on the token's own rank
  MoeCombine,       // fp32 sum in ascending expert id, + shared expert, -> bf16
  HcHead,           // hyper-connection head mix (ParallelHead.hc_head)
  LogitsRowsGather, // collective: all-gather of the final hidden rows that need logits
  LmHeadShard,      // fp32 logits of this rank's vocabulary shard
  LogitsGather,     // collective: full-vocabulary logits rows to each request's owner rank
  TokenChoice,      // greedy / sampled token from full logits
};

// The enumerator's name ("LinearFp8"): plan.hpp, plan.txt and the runtime's profile all print this.
constexpr const char* op_kind_name(OpKind k) {
  switch (k) {
#define DSV4_OP_KIND_NAME(x) \
  case OpKind::x: return #x;
    DSV4_OP_KIND_NAME(Embed) DSV4_OP_KIND_NAME(HcExpand) DSV4_OP_KIND_NAME(HcPre) DSV4_OP_KIND_NAME(RmsNorm)
    DSV4_OP_KIND_NAME(ActQuantFp8) DSV4_OP_KIND_NAME(LinearFp8) DSV4_OP_KIND_NAME(LinearBf16)
    DSV4_OP_KIND_NAME(LinearGroupedFp8w) DSV4_OP_KIND_NAME(LinearF32) DSV4_OP_KIND_NAME(QHeadNorm)
    DSV4_OP_KIND_NAME(Rope) DSV4_OP_KIND_NAME(KvFinish) DSV4_OP_KIND_NAME(KvStage) DSV4_OP_KIND_NAME(WindowWrite)
    DSV4_OP_KIND_NAME(Compressor) DSV4_OP_KIND_NAME(IndexerQ) DSV4_OP_KIND_NAME(IndexerScale)
    DSV4_OP_KIND_NAME(IndexerTopK) DSV4_OP_KIND_NAME(AttnIndices) DSV4_OP_KIND_NAME(SparseAttention)
    DSV4_OP_KIND_NAME(HcPost) DSV4_OP_KIND_NAME(GateScores) DSV4_OP_KIND_NAME(MoeDispatch) DSV4_OP_KIND_NAME(Experts)
    DSV4_OP_KIND_NAME(MoeReturn) DSV4_OP_KIND_NAME(SharedExpert) DSV4_OP_KIND_NAME(MoeCombine) DSV4_OP_KIND_NAME(HcHead)
    DSV4_OP_KIND_NAME(LogitsRowsGather) DSV4_OP_KIND_NAME(LmHeadShard) DSV4_OP_KIND_NAME(LogitsGather)
    DSV4_OP_KIND_NAME(TokenChoice)
#undef DSV4_OP_KIND_NAME
  }
  return "?";
}

// Small per-op parameters; fields an op kind does not use are zero.
struct OpParams {
  int32_t ratio = 0;      // compress ratio of the layer (0, 4, 128)
  int32_t dim = 0;        // a head/row dim the op works on (e.g. 512 for kv, 128 for indexer keys)
  int32_t rope_table = 0; // 0: base rope_theta, no YaRN (ratio-0 layers); 1: compress_rope_theta with YaRN
  int32_t flags = 0;      // kFlag* bits
  float eps = 0;          // norm epsilon where used
};
inline constexpr int32_t kFlagInverse = 1;  // Rope: conjugate rotation (attention output)
inline constexpr int32_t kFlagRotate = 2;   // Compressor: indexer variant (Hadamard + FP4 instead of FP8)
inline constexpr int32_t kFlagHash = 4;     // GateScores: hash routing through tid2eid
inline constexpr int32_t kFlagFfn = 8;      // HcPre/HcPost: the FFN half of the block

inline constexpr int kMaxOpIo = 6;

struct Op {
  OpKind kind;             // what to run
  int32_t layer;           // layer index, -1 for embedding / head ops
  const char* label;       // readable name, e.g. "L07.attn.wq_a"
  uint32_t in[kMaxOpIo];   // input buffer ids (kNone = unused)
  uint32_t out[kMaxOpIo];  // output buffer ids (kNone = unused)
  uint32_t w[kMaxOpIo];    // weight ids (kNone = unused)
  OpParams p;              // op parameters
};

}  // namespace dsv4::plan
