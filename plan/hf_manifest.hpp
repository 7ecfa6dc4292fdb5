// The official HF checkpoint's tensor list for any ModelConfig (spec §2): name, dtype, shape and format
// family of every tensor, main model and MTP. Header-only; plangen builds the weights manifest from it,
// the checkpoint tools check and synthesise checkpoints against it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plan/config.hpp"
#include "plan/error.hpp"

namespace dsv4 {

// safetensors dtype strings used by the V4 checkpoint (plus I32 / U8, which convert outputs may use).
enum class HfDtype : uint8_t { BF16, F32, I64, I32, I8, U8, F8_E4M3, F8_E8M0 };

inline constexpr HfDtype kAllHfDtypes[] = {HfDtype::BF16, HfDtype::F32, HfDtype::I64,     HfDtype::I32,
                                           HfDtype::I8,   HfDtype::U8,  HfDtype::F8_E4M3, HfDtype::F8_E8M0};

constexpr const char* hf_dtype_name(HfDtype d) {
  switch (d) {
    case HfDtype::BF16: return "BF16";
    case HfDtype::F32: return "F32";
    case HfDtype::I64: return "I64";
    case HfDtype::I32: return "I32";
    case HfDtype::I8: return "I8";
    case HfDtype::U8: return "U8";
    case HfDtype::F8_E4M3: return "F8_E4M3";
    case HfDtype::F8_E8M0: return "F8_E8M0";
  }
  return "?";
}

// Exact, case-sensitive match of the safetensors spelling; nullopt for anything else.
constexpr std::optional<HfDtype> hf_dtype_from_name(std::string_view s) {
  for (HfDtype d : kAllHfDtypes)
    if (s == hf_dtype_name(d)) return d;
  return std::nullopt;
}

// Bytes per stored element (an I8 FP4 byte holds two logical values).
constexpr int64_t hf_dtype_size(HfDtype d) {
  switch (d) {
    case HfDtype::I64: return 8;
    case HfDtype::F32:
    case HfDtype::I32: return 4;
    case HfDtype::BF16: return 2;
    case HfDtype::I8:
    case HfDtype::U8:
    case HfDtype::F8_E4M3:
    case HfDtype::F8_E8M0: return 1;
  }
  return 0;
}

// Rank in the safetensors crate's `Dtype` enum (safetensors/src/tensor.rs). The official serializer
// orders a file's tensors by descending rank, then by name: I64, F32, I32, BF16, F8_E8M0, F8_E4M3, I8, U8.
constexpr int hf_dtype_crate_rank(HfDtype d) {
  // crate order: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, ..., BF16, I32, U32, F32, ..., I64
  switch (d) {
    case HfDtype::U8: return 4;
    case HfDtype::I8: return 5;
    case HfDtype::F8_E4M3: return 7;
    case HfDtype::F8_E8M0: return 8;
    case HfDtype::BF16: return 14;
    case HfDtype::I32: return 15;
    case HfDtype::F32: return 17;
    case HfDtype::I64: return 20;
  }
  return 0;
}

// Storage format family of a checkpoint tensor: what a loader / converter / generator does with it.
enum class HfRole : uint8_t {
  Fp8Weight,  // F8_E4M3 [out, in]
  Fp8Scale,   // F8_E8M0 [ceil(out/128), ceil(in/128)], one 2^(b-127) per 128x128 block of its weight
  Fp4Weight,  // I8 [out, in/2], e2m1 codes: low nibble = element 2j, high nibble = 2j+1
  Fp4Scale,   // F8_E8M0 [out, in/32], one per 32 consecutive inputs of a row
  Bf16,       // BF16 plain values (embed, head, norms, gate.weight, compressor / indexer bf16 linears)
  F32,        // F32 plain values (hc_*, attn_sink, ape, gate.bias)
  I64,        // I64 token -> expert ids (gate.tid2eid)
};

constexpr const char* hf_role_name(HfRole r) {
  switch (r) {
    case HfRole::Fp8Weight: return "fp8_weight";
    case HfRole::Fp8Scale: return "fp8_scale";
    case HfRole::Fp4Weight: return "fp4_weight";
    case HfRole::Fp4Scale: return "fp4_scale";
    case HfRole::Bf16: return "bf16";
    case HfRole::F32: return "f32";
    case HfRole::I64: return "i64";
  }
  return "?";
}

// One tensor of the official checkpoint.
struct HfTensor {
  std::string name;            // official name, e.g. "layers.3.attn.wq_a.scale"
  HfDtype dtype;               // stored dtype
  std::vector<int64_t> shape;  // stored shape (FP4 weights: [out, in/2])
  HfRole role;                 // format family
  bool mtp = false;            // part of an MTP block (`mtp.{i}.…`): not used by the main model
  int64_t layer = -1;          // block id: L for layers.L, num_hidden_layers + i for mtp.i, -1 top level
  int64_t out = 0, in = 0;     // logical [out, in] of the linear, for fp8/fp4 weights and their scales

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t bytes() const { return numel() * hf_dtype_size(dtype); }
};

// "[a, b]" for messages.
inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

namespace hf_manifest_detail {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Builder {
  std::vector<HfTensor>* out;
  bool mtp;
  int64_t layer;

  void add(std::string name, HfDtype dt, std::vector<int64_t> shape, HfRole role, int64_t o = 0, int64_t i = 0) {
    out->push_back(HfTensor{std::move(name), dt, std::move(shape), role, mtp, layer, o, i});
  }
  // FP8 linear: e4m3 weight [out, in] + e8m0 scale per 128x128 block (model.py Linear, fp8 branch).
  void fp8(const std::string& p, int64_t o, int64_t i) {
    add(p + ".weight", HfDtype::F8_E4M3, {o, i}, HfRole::Fp8Weight, o, i);
    add(p + ".scale", HfDtype::F8_E8M0, {ceil_div(o, 128), ceil_div(i, 128)}, HfRole::Fp8Scale, o, i);
  }
  // FP4 linear (routed experts): packed e2m1 [out, in/2] + e8m0 scale per 32 inputs.
  void fp4(const std::string& p, int64_t o, int64_t i) {
    add(p + ".weight", HfDtype::I8, {o, i / 2}, HfRole::Fp4Weight, o, i);
    add(p + ".scale", HfDtype::F8_E8M0, {o, i / 32}, HfRole::Fp4Scale, o, i);
  }
  void bf16(const std::string& n, std::vector<int64_t> s) { add(n, HfDtype::BF16, std::move(s), HfRole::Bf16); }
  void f32(const std::string& n, std::vector<int64_t> s) { add(n, HfDtype::F32, std::move(s), HfRole::F32); }
};

// One transformer block (model.py Block): spec §2.2 + §2.3. `p` ends with '.'.
inline void add_block(Builder& b, const ModelConfig& c, const std::string& p, int64_t layer_id, int64_t ratio) {
  const int64_t dim = c.hidden_size, hc = c.hc_mult, mix_hc = (2 + hc) * hc, hc_dim = hc * dim;
  const int64_t hd = c.head_dim, nh = c.num_attention_heads, inter = c.moe_intermediate_size;
  b.f32(p + "hc_attn_fn", {mix_hc, hc_dim});
  b.f32(p + "hc_ffn_fn", {mix_hc, hc_dim});
  b.f32(p + "hc_attn_base", {mix_hc});
  b.f32(p + "hc_ffn_base", {mix_hc});
  b.f32(p + "hc_attn_scale", {3});
  b.f32(p + "hc_ffn_scale", {3});
  b.bf16(p + "attn_norm.weight", {dim});
  b.bf16(p + "ffn_norm.weight", {dim});

  const std::string a = p + "attn.";
  b.f32(a + "attn_sink", {nh});
  b.fp8(a + "wq_a", c.q_lora_rank, dim);
  b.bf16(a + "q_norm.weight", {c.q_lora_rank});
  b.fp8(a + "wq_b", nh * hd, c.q_lora_rank);
  b.fp8(a + "wkv", hd, dim);
  b.bf16(a + "kv_norm.weight", {hd});
  b.fp8(a + "wo_a", c.o_groups * c.o_lora_rank, nh * hd / c.o_groups);
  b.fp8(a + "wo_b", dim, c.o_groups * c.o_lora_rank);
  if (ratio > 0) {
    const int64_t coff = ratio == 4 ? 2 : 1;  // ratio 4 compresses overlapping windows (model.py Compressor)
    b.f32(a + "compressor.ape", {ratio, coff * hd});
    b.bf16(a + "compressor.wkv.weight", {coff * hd, dim});
    b.bf16(a + "compressor.wgate.weight", {coff * hd, dim});
    b.bf16(a + "compressor.norm.weight", {hd});
  }
  if (ratio == 4) {  // CSA layers carry the indexer (its compressor always overlaps: ratio 4)
    const int64_t ih = c.index_n_heads, id = c.index_head_dim;
    b.fp8(a + "indexer.wq_b", ih * id, c.q_lora_rank);
    b.bf16(a + "indexer.weights_proj.weight", {ih, dim});
    b.f32(a + "indexer.compressor.ape", {ratio, 2 * id});
    b.bf16(a + "indexer.compressor.wkv.weight", {2 * id, dim});
    b.bf16(a + "indexer.compressor.wgate.weight", {2 * id, dim});
    b.bf16(a + "indexer.compressor.norm.weight", {id});
  }

  const std::string f = p + "ffn.";
  b.bf16(f + "gate.weight", {c.n_routed_experts, dim});
  if (layer_id < c.num_hash_layers)
    b.add(f + "gate.tid2eid", HfDtype::I64, {c.vocab_size, c.num_experts_per_tok}, HfRole::I64);
  else
    b.f32(f + "gate.bias", {c.n_routed_experts});
  // model.py MoE: the shared expert is one Expert of width moe_inter_dim, FP8.
  b.fp8(f + "shared_experts.w1", inter, dim);
  b.fp8(f + "shared_experts.w2", dim, inter);
  b.fp8(f + "shared_experts.w3", inter, dim);
  for (int64_t e = 0; e < c.n_routed_experts; ++e) {
    const std::string x = f + "experts." + std::to_string(e) + ".";
    b.fp4(x + "w1", inter, dim);
    b.fp4(x + "w2", dim, inter);
    b.fp4(x + "w3", inter, dim);
  }
}

inline int64_t ratio_of(const ModelConfig& c, int64_t layer_id) {
  if (layer_id < int64_t(c.compress_ratios.size())) return c.compress_ratios[size_t(layer_id)];
  return 0;  // MTP blocks past the list are plain sliding-window blocks
}

inline void validate(const ModelConfig& c) {
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw Error("config.json: " + what);
  };
  need(c.num_hidden_layers > 0, "num_hidden_layers must be > 0, got " + std::to_string(c.num_hidden_layers));
  need(int64_t(c.compress_ratios.size()) >= c.num_hidden_layers,
       "compress_ratios has " + std::to_string(c.compress_ratios.size()) + " entries, expected at least " +
           "num_hidden_layers = " + std::to_string(c.num_hidden_layers));
  for (size_t i = 0; i < c.compress_ratios.size(); ++i) {
    const int64_t r = c.compress_ratios[i];
    need(r == 0 || r == 4 || r == 128,
         "compress_ratios[" + std::to_string(i) + "] = " + std::to_string(r) + ", expected 0, 4 or 128");
  }
  const std::pair<const char*, int64_t> pos[] = {
      {"hidden_size", c.hidden_size},       {"vocab_size", c.vocab_size},
      {"head_dim", c.head_dim},             {"num_attention_heads", c.num_attention_heads},
      {"q_lora_rank", c.q_lora_rank},       {"o_groups", c.o_groups},
      {"o_lora_rank", c.o_lora_rank},       {"moe_intermediate_size", c.moe_intermediate_size},
      {"n_routed_experts", c.n_routed_experts}, {"num_experts_per_tok", c.num_experts_per_tok},
      {"hc_mult", c.hc_mult},               {"index_n_heads", c.index_n_heads},
      {"index_head_dim", c.index_head_dim}};
  for (auto& [k, v] : pos) need(v > 0, std::string(k) + " must be > 0, got " + std::to_string(v));
  need(c.num_hash_layers >= 0, "num_hash_layers must be >= 0");
  need(c.num_nextn_predict_layers >= 0, "num_nextn_predict_layers must be >= 0");
  need(c.num_attention_heads % c.o_groups == 0, "num_attention_heads (" + std::to_string(c.num_attention_heads) +
                                                    ") must be a multiple of o_groups (" +
                                                    std::to_string(c.o_groups) + ")");
  need(c.hidden_size % 32 == 0 && c.moe_intermediate_size % 32 == 0,
       "hidden_size and moe_intermediate_size must be multiples of 32 (FP4 expert scales cover 32 inputs)");
  need(c.num_experts_per_tok <= c.n_routed_experts, "num_experts_per_tok must be <= n_routed_experts");
}

}  // namespace hf_manifest_detail

// Every tensor of the official checkpoint for `c`, in model order: top level, layers 0..N-1, then (when
// include_mtp) the num_nextn_predict_layers MTP blocks. Throws dsv4::Error on an inconsistent config.
inline std::vector<HfTensor> hf_tensor_manifest(const ModelConfig& c, bool include_mtp) {
  using namespace hf_manifest_detail;
  validate(c);
  std::vector<HfTensor> out;
  const int64_t dim = c.hidden_size, hc = c.hc_mult;
  Builder top{&out, false, -1};
  top.bf16("embed.weight", {c.vocab_size, dim});
  for (int64_t L = 0; L < c.num_hidden_layers; ++L) {
    Builder b{&out, false, L};
    add_block(b, c, "layers." + std::to_string(L) + ".", L, ratio_of(c, L));
  }
  top.bf16("norm.weight", {dim});
  top.bf16("head.weight", {c.vocab_size, dim});
  top.f32("hc_head_fn", {hc, hc * dim});
  top.f32("hc_head_base", {hc});
  top.f32("hc_head_scale", {1});
  if (include_mtp) {
    for (int64_t i = 0; i < c.num_nextn_predict_layers; ++i) {
      const int64_t id = c.num_hidden_layers + i;  // model.py MTPBlock(n_layers + i)
      const std::string p = "mtp." + std::to_string(i) + ".";
      Builder b{&out, true, id};
      add_block(b, c, p, id, ratio_of(c, id));
      b.fp8(p + "e_proj", dim, dim);
      b.fp8(p + "h_proj", dim, dim);
      b.bf16(p + "enorm.weight", {dim});
      b.bf16(p + "hnorm.weight", {dim});
      b.bf16(p + "norm.weight", {dim});
      b.f32(p + "hc_head_fn", {hc, hc * dim});
      b.f32(p + "hc_head_base", {hc});
      b.f32(p + "hc_head_scale", {1});
    }
  }
  return out;
}

}  // namespace dsv4
