// Shape config: the model's HF config.json fields (reference names, spec §1) plus the deploy block.
// Plain data shared by plangen (which fills it from JSON) and the tools; the runtime sees the same
// values as constexpr in generated/<config>/model.hpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv4 {

struct RopeScaling {
  std::string type = "yarn";                   // rope_scaling.type (only "yarn" exists in V4)
  double factor = 16;                          // rope_scaling.factor
  int64_t original_max_position_embeddings = 65536;
  double beta_fast = 32;
  double beta_slow = 1;
};

struct QuantizationConfig {
  std::string activation_scheme = "dynamic";
  std::string fmt = "e4m3";
  std::string quant_method = "fp8";
  std::string scale_fmt = "ue8m0";
  std::vector<int64_t> weight_block_size = {128, 128};
};

// Every key of the official config.json, verbatim names (spec §1).
struct ModelConfig {
  std::vector<std::string> architectures = {"DeepseekV4ForCausalLM"};
  bool attention_bias = false;
  double attention_dropout = 0.0;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  std::string expert_dtype = "fp4";
  double hc_eps = 1e-6;
  int64_t hc_mult = 4;
  int64_t hc_sinkhorn_iters = 20;
  int64_t head_dim = 512;
  std::string hidden_act = "silu";
  int64_t hidden_size = 4096;
  int64_t index_head_dim = 128;
  int64_t index_n_heads = 64;
  int64_t index_topk = 512;
  double initializer_range = 0.02;
  int64_t max_position_embeddings = 1048576;
  std::string model_type = "deepseek_v4";
  int64_t moe_intermediate_size = 2048;
  int64_t n_routed_experts = 256;
  int64_t n_shared_experts = 1;
  bool norm_topk_prob = true;
  int64_t num_attention_heads = 64;
  int64_t num_experts_per_tok = 6;
  int64_t num_hidden_layers = 43;
  int64_t num_hash_layers = 3;
  int64_t num_key_value_heads = 1;
  int64_t num_nextn_predict_layers = 1;
  int64_t o_groups = 8;
  int64_t o_lora_rank = 1024;
  int64_t q_lora_rank = 1024;
  int64_t qk_rope_head_dim = 64;
  QuantizationConfig quantization_config;
  double rms_norm_eps = 1e-6;
  RopeScaling rope_scaling;
  double rope_theta = 10000;
  double routed_scaling_factor = 1.5;
  std::string scoring_func = "sqrtsoftplus";
  int64_t sliding_window = 128;
  double swiglu_limit = 10.0;
  bool tie_word_embeddings = false;
  std::string topk_method = "noaux_tc";
  std::string torch_dtype = "bfloat16";
  std::string transformers_version = "4.57.1";
  bool use_cache = true;
  int64_t vocab_size = 129280;
  double compress_rope_theta = 160000;
  std::vector<int64_t> compress_ratios;  // one per layer, plus one per MTP layer (ignored)
};

// How one step is laid out over the ranks (ARCHITECTURE.md "Parallel modes").
struct DeployConfig {
  int64_t ranks = 1;                  // MPI world size the plan is built for
  int64_t attn_dp = 1;                // attention data-parallel degree: ranks, or 1 (debug: one DP shard)
  int64_t moe_ep = 1;                 // expert-parallel degree: ranks, or 1 (every rank holds all experts)
  int64_t lmhead_tp = 1;              // vocab-parallel degree of the head: ranks, or 1
  int64_t max_tokens_per_step = 64;   // fixed token slab per rank per step
  int64_t max_requests_per_rank = 4;  // concurrent requests one rank's caches hold
  int64_t max_context = 4096;         // longest request (prompt + generated), sizes the KV pools
  int64_t kv_block = 64;              // entries per KV pool block (paged caches)
};

struct ShapeConfig {
  std::string name;  // config name (file stem)
  ModelConfig model;
  DeployConfig deploy;
};

// Layer kinds by compress ratio (spec §1): 0 = sliding window only, 4 = CSA (compressor + indexer),
// 128 = HCA (compressor, all compressed entries).
enum class LayerKind : uint8_t { Window = 0, Csa = 4, Hca = 128 };

inline LayerKind layer_kind(int64_t ratio) {
  return ratio == 0 ? LayerKind::Window : ratio == 4 ? LayerKind::Csa : LayerKind::Hca;
}
inline const char* layer_kind_name(LayerKind k) {
  return k == LayerKind::Window ? "window" : k == LayerKind::Csa ? "csa" : "hca";
}

}  // namespace dsv4
