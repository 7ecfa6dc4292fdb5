#include "tools/config/config_json.hpp"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "plan/error.hpp"
#include "tools/config/hf_config.hpp"
#include "tools/config/strict_json.hpp"

namespace dsv4 {
namespace {

using json = nlohmann::ordered_json;

#define DSV4_DEPLOY_FIELDS(X)                                                              \
  X(ranks) X(attn_dp) X(moe_ep) X(lmhead_tp) X(max_tokens_per_step) X(max_requests_per_rank) \
  X(max_context) X(kv_block)

std::string type_name(const json& v) { return v.type_name(); }

// Reads j[key] into out with a type check that names the field.
template <class T>
void read(const json& j, const char* key, T& out, const std::string& where) {
  if (!j.contains(key)) throw Error(where + ": missing key \"" + key + "\"");
  const json& v = j.at(key);
  const std::string field = where + "." + key;
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) throw Error(field + ": expected a boolean, got " + type_name(v) + " " + v.dump());
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) throw Error(field + ": expected an integer, got " + type_name(v) + " " + v.dump());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) throw Error(field + ": expected a number, got " + type_name(v) + " " + v.dump());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) throw Error(field + ": expected a string, got " + type_name(v) + " " + v.dump());
  } else {
    if (!v.is_array()) throw Error(field + ": expected an array, got " + type_name(v) + " " + v.dump());
    for (const json& e : v)
      if (!(e.is_number_integer() || e.is_string()))
        throw Error(field + ": unexpected element " + e.dump());
  }
  out = v.get<T>();
}

void reject_unknown(const json& j, const std::set<std::string>& known, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": expected a JSON object, got " + type_name(j));
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key())) throw Error(where + ": unknown key \"" + it.key() + "\"");
}

void require(bool ok, const std::string& where, const std::string& field, const std::string& what) {
  if (!ok) throw Error(where + ": " + field + ": " + what);
}

std::string str(int64_t v) { return std::to_string(v); }
// Shortest text that reads back as v ("0", "-1.5", "1e-06"), as the user would have written it.
std::string num(double v) {
  std::string s = nlohmann::json(v).dump();
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

}  // namespace

DeployConfig deploy_from_json(const json& j, const std::string& where) {
  std::set<std::string> known;
#define X(f) known.insert(#f);
  DSV4_DEPLOY_FIELDS(X)
#undef X
  reject_unknown(j, known, where);
  DeployConfig d;
#define X(f) read(j, #f, d.f, where);
  DSV4_DEPLOY_FIELDS(X)
#undef X
  return d;
}

json deploy_to_json(const DeployConfig& d) {
  json j;
#define X(f) j[#f] = d.f;
  DSV4_DEPLOY_FIELDS(X)
#undef X
  return j;
}

ShapeConfig parse_shape_config(const std::string& text, const std::string& name, const std::string& where) {
  const json j = parse_json_no_duplicates<json>(text, where);
  reject_unknown(j, {"model", "deploy"}, where);
  if (!j.contains("model")) throw Error(where + ": missing key \"model\" (the HF config.json fields)");
  if (!j.contains("deploy")) throw Error(where + ": missing key \"deploy\"");
  ShapeConfig c;
  c.name = name;
  c.model = model_config_from_json(nlohmann::json::parse(j.at("model").dump()), where + ": model");
  c.deploy = deploy_from_json(j.at("deploy"), where + ": deploy");
  validate_shape_config(c, where);
  return c;
}

ShapeConfig load_shape_config(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open config file");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string name = path;
  if (auto slash = name.find_last_of('/'); slash != std::string::npos) name = name.substr(slash + 1);
  if (auto dot = name.rfind(".json"); dot != std::string::npos && dot + 5 == name.size()) name.resize(dot);
  return parse_shape_config(ss.str(), name, path);
}

std::string shape_config_to_text(const ShapeConfig& c) {
  json j;
  j["model"] = model_config_to_json(c.model);
  j["deploy"] = deploy_to_json(c.deploy);
  return j.dump(2) + "\n";
}

void validate_shape_config(const ShapeConfig& c, const std::string& where) {
  const ModelConfig& m = c.model;
  const DeployConfig& d = c.deploy;
  const std::string w = where;
  // Every size in range before anything multiplies them: with these bounds no byte count plangen forms
  // overflows int64 (the largest products are checked below against kMaxBytes).
  auto range = [&](int64_t v, int64_t lo, int64_t hi, const std::string& f) {
    require(v >= lo && v <= hi, w, f, "must be in [" + str(lo) + ", " + str(hi) + "], got " + str(v));
  };
  constexpr int64_t K = 1024, M = 1024 * 1024;
  range(m.num_hidden_layers, 1, K, "model.num_hidden_layers");
  range(m.hidden_size, 1, 64 * K, "model.hidden_size");
  range(m.num_attention_heads, 1, K, "model.num_attention_heads");
  range(m.vocab_size, 1, 16 * M, "model.vocab_size");
  range(m.n_routed_experts, 1, 4 * K, "model.n_routed_experts");
  range(m.num_experts_per_tok, 1, K, "model.num_experts_per_tok");
  range(m.sliding_window, 1, 64 * K, "model.sliding_window");
  range(m.index_topk, 1, 64 * K, "model.index_topk");
  range(m.index_n_heads, 1, K, "model.index_n_heads");
  range(m.hc_mult, 1, 64, "model.hc_mult");
  range(m.hc_sinkhorn_iters, 1, 1000, "model.hc_sinkhorn_iters");
  range(m.o_groups, 1, K, "model.o_groups");
  range(m.head_dim, 1, 4 * K, "model.head_dim");
  range(m.qk_rope_head_dim, 1, m.head_dim - 1, "model.qk_rope_head_dim");
  range(m.q_lora_rank, 1, 64 * K, "model.q_lora_rank");
  range(m.o_lora_rank, 1, 64 * K, "model.o_lora_rank");
  range(m.moe_intermediate_size, 1, 64 * K, "model.moe_intermediate_size");
  range(m.max_position_embeddings, 1, 16 * M, "model.max_position_embeddings");
  range(m.num_nextn_predict_layers, 0, 16, "model.num_nextn_predict_layers");
  range(m.rope_scaling.original_max_position_embeddings, 1, 16 * M, "model.rope_scaling.original_max_position_embeddings");
  // Token ids the engine acts on must be tokens: an EOS outside the vocabulary never stops generation.
  range(m.bos_token_id, 0, m.vocab_size - 1, "model.bos_token_id");
  range(m.eos_token_id, 0, m.vocab_size - 1, "model.eos_token_id");
  auto positive = [&](double v, const std::string& f) {
    require(std::isfinite(v) && v > 0, w, f, "must be a finite number > 0, got " + num(v));
  };
  positive(m.rms_norm_eps, "model.rms_norm_eps");
  positive(m.hc_eps, "model.hc_eps");
  positive(m.rope_theta, "model.rope_theta");
  positive(m.compress_rope_theta, "model.compress_rope_theta");
  positive(m.rope_scaling.factor, "model.rope_scaling.factor");
  positive(m.rope_scaling.beta_fast, "model.rope_scaling.beta_fast");
  positive(m.rope_scaling.beta_slow, "model.rope_scaling.beta_slow");
  positive(m.routed_scaling_factor, "model.routed_scaling_factor");
  positive(m.swiglu_limit, "model.swiglu_limit");
  // YaRN's factor stretches the trained context; below 1 it would shrink it.
  require(m.rope_scaling.factor >= 1, w, "model.rope_scaling.factor", "must be >= 1, got " + num(m.rope_scaling.factor));
  require(m.rms_norm_eps < 1, w, "model.rms_norm_eps", "must be < 1, got " + num(m.rms_norm_eps));
  require(m.hc_eps < 1, w, "model.hc_eps", "must be < 1, got " + num(m.hc_eps));
  // compress_ratios: one entry per layer; entries for MTP layers may follow and are ignored.
  const int64_t L = m.num_hidden_layers, n = int64_t(m.compress_ratios.size());
  require(n == L || n == L + m.num_nextn_predict_layers, w, "model.compress_ratios",
          "length must be num_hidden_layers (" + str(L) + ") or num_hidden_layers + num_nextn_predict_layers (" +
              str(L + m.num_nextn_predict_layers) + "), got " + str(n));
  for (int64_t i = 0; i < L; ++i) {
    const int64_t r = m.compress_ratios[i];
    require(r == 0 || r == 4 || r == 128, w, "model.compress_ratios[" + str(i) + "]",
            "must be 0, 4 or 128, got " + str(r));
  }
  require(m.num_hash_layers >= 0 && m.num_hash_layers <= L, w, "model.num_hash_layers",
          "must be in [0, num_hidden_layers=" + str(L) + "], got " + str(m.num_hash_layers));
  require(m.num_experts_per_tok <= m.n_routed_experts, w, "model.num_experts_per_tok",
          "must be <= n_routed_experts (" + str(m.n_routed_experts) + "), got " + str(m.num_experts_per_tok));

  // Block sizes of the reference kernels.
  auto mult = [&](int64_t v, int64_t k, const std::string& f, const std::string& why) {
    require(v % k == 0, w, f, "must be a multiple of " + str(k) + " (" + why + "), got " + str(v));
  };
  mult(m.hidden_size, 128, "model.hidden_size", "FP8 activation blocks of 128");
  mult(m.q_lora_rank, 128, "model.q_lora_rank", "FP8 activation blocks of 128");
  mult(m.moe_intermediate_size, 128, "model.moe_intermediate_size", "FP8 activation blocks of 128");
  mult(m.head_dim - m.qk_rope_head_dim, 64, "model.head_dim - model.qk_rope_head_dim",
       "FP8 kv round trip in blocks of 64 on the non-rope dims");
  require(m.qk_rope_head_dim > 0 && m.qk_rope_head_dim % 2 == 0, w, "model.qk_rope_head_dim",
          "must be even and > 0 (interleaved pairs), got " + str(m.qk_rope_head_dim));
  require(m.index_head_dim == 128, w, "model.index_head_dim",
          "must be 128 (Hadamard-128 on indexer q and keys), got " + str(m.index_head_dim));
  require(m.num_attention_heads % m.o_groups == 0, w, "model.num_attention_heads",
          "must be divisible by o_groups (" + str(m.o_groups) + "), got " + str(m.num_attention_heads));
  mult(m.num_attention_heads / m.o_groups * m.head_dim, 128, "model.num_attention_heads / o_groups * head_dim",
       "wo_a input dim in 128x128 blocks");
  mult(m.o_groups * m.o_lora_rank, 128, "model.o_groups * model.o_lora_rank",
       "wo_a rows in 128x128 blocks and wo_b input in FP8 blocks of 128");
  require(m.num_key_value_heads == 1, w, "model.num_key_value_heads",
          "must be 1 (one latent KV head), got " + str(m.num_key_value_heads));
  require(m.n_shared_experts == 1, w, "model.n_shared_experts", "must be 1, got " + str(m.n_shared_experts));
  require(m.scoring_func == "sqrtsoftplus", w, "model.scoring_func", "must be \"sqrtsoftplus\", got \"" + m.scoring_func + "\"");
  require(m.expert_dtype == "fp4", w, "model.expert_dtype", "must be \"fp4\", got \"" + m.expert_dtype + "\"");
  require(m.hidden_act == "silu", w, "model.hidden_act", "must be \"silu\", got \"" + m.hidden_act + "\"");
  require(!m.tie_word_embeddings, w, "model.tie_word_embeddings", "must be false (separate head.weight)");
  require(m.rope_scaling.type == "yarn", w, "model.rope_scaling.type", "must be \"yarn\", got \"" + m.rope_scaling.type + "\"");
  const auto& q = m.quantization_config;
  require(q.fmt == "e4m3" && q.scale_fmt == "ue8m0" && q.quant_method == "fp8", w, "model.quantization_config",
          "must be fp8 e4m3 with ue8m0 scales, got " + q.quant_method + "/" + q.fmt + "/" + q.scale_fmt);
  require(q.weight_block_size == std::vector<int64_t>{128, 128}, w, "model.quantization_config.weight_block_size",
          "must be [128, 128]");

  // Deploy block.
  range(d.ranks, 1, 4 * K, "deploy.ranks");
  auto mode = [&](int64_t v, const char* f) {
    require(v == 1 || v == d.ranks, w, f, "must be 1 or deploy.ranks (" + str(d.ranks) + "), got " + str(v));
  };
  mode(d.attn_dp, "deploy.attn_dp");
  mode(d.moe_ep, "deploy.moe_ep");
  mode(d.lmhead_tp, "deploy.lmhead_tp");
  require(m.n_routed_experts % d.moe_ep == 0, w, "model.n_routed_experts",
          "must be divisible by deploy.moe_ep (" + str(d.moe_ep) + "), got " + str(m.n_routed_experts));
  range(d.max_tokens_per_step, 1, 64 * K, "deploy.max_tokens_per_step");
  range(d.max_requests_per_rank, 1, 4 * K, "deploy.max_requests_per_rank");
  range(d.max_context, 1, 16 * M, "deploy.max_context");
  range(d.kv_block, 1, 64 * K, "deploy.kv_block");
  require(d.max_requests_per_rank <= d.max_tokens_per_step, w, "deploy.max_requests_per_rank",
          "must be <= max_tokens_per_step (" + str(d.max_tokens_per_step) + "), got " + str(d.max_requests_per_rank));
  require(d.max_context <= m.max_position_embeddings, w, "deploy.max_context",
          "must be <= model.max_position_embeddings (" + str(m.max_position_embeddings) + "), got " + str(d.max_context));

  // The largest byte counts plangen forms, each bounded well below int64 so that sums of them cannot wrap.
  constexpr __int128 kMaxBytes = __int128(1) << 50;  // 1 PiB
  auto bytes = [&](__int128 v, const std::string& what) {
    if (v <= kMaxBytes) return;
    std::string digits;
    for (__int128 x = v; x > 0; x /= 10) digits.insert(digits.begin(), char('0' + int(x % 10)));
    require(false, w, what, "is " + digits + " bytes, more than the 2^50-byte limit");
  };
  const __int128 L128 = L;
  bytes(__int128(m.vocab_size) * m.hidden_size * 4, "model.vocab_size * model.hidden_size (embedding / head)");
  bytes(L128 * m.n_routed_experts * 3 * m.hidden_size * m.moe_intermediate_size,
        "layers * experts * 3 * hidden_size * moe_intermediate_size (routed experts)");
  bytes(L128 * m.num_attention_heads * m.head_dim * std::max(m.q_lora_rank, m.o_lora_rank * m.o_groups) * 2,
        "layers * heads * head_dim * lora rank (attention)");
  bytes(L128 * d.max_context * d.max_requests_per_rank * (m.head_dim + m.index_head_dim) * 4,
        "layers * max_context * max_requests_per_rank * head_dim (KV caches)");
  bytes(__int128(d.max_tokens_per_step) * m.hc_mult * m.hidden_size * m.num_experts_per_tok * 16 +
            __int128(d.max_tokens_per_step) * d.ranks * std::max<int64_t>(m.vocab_size, m.index_topk * m.num_attention_heads) * 4,
        "max_tokens_per_step * activation width (the step's buffers)");
}

int64_t vocab_shard_rows(const ShapeConfig& c) {
  return (c.model.vocab_size + c.deploy.lmhead_tp - 1) / c.deploy.lmhead_tp;
}

}  // namespace dsv4
