#include "tools/config/hf_config.hpp"

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "plan/error.hpp"
#include "tools/config/strict_json.hpp"

namespace dsv4 {
namespace {

using ojson = nlohmann::ordered_json;

// How a double is printed: the official file writes some floats as integers (rope_theta: 10000).
enum class Num { Plain, IntIfIntegral };

// Every key in the official config.json order (spec §1). One list serves writing and strict reading.
template <class C, class V>
void model_fields(C& c, V&& v) {
  v("architectures", c.architectures);
  v("attention_bias", c.attention_bias);
  v("attention_dropout", c.attention_dropout);
  v("bos_token_id", c.bos_token_id);
  v("eos_token_id", c.eos_token_id);
  v("expert_dtype", c.expert_dtype);
  v("hc_eps", c.hc_eps);
  v("hc_mult", c.hc_mult);
  v("hc_sinkhorn_iters", c.hc_sinkhorn_iters);
  v("head_dim", c.head_dim);
  v("hidden_act", c.hidden_act);
  v("hidden_size", c.hidden_size);
  v("index_head_dim", c.index_head_dim);
  v("index_n_heads", c.index_n_heads);
  v("index_topk", c.index_topk);
  v("initializer_range", c.initializer_range);
  v("max_position_embeddings", c.max_position_embeddings);
  v("model_type", c.model_type);
  v("moe_intermediate_size", c.moe_intermediate_size);
  v("n_routed_experts", c.n_routed_experts);
  v("n_shared_experts", c.n_shared_experts);
  v("norm_topk_prob", c.norm_topk_prob);
  v("num_attention_heads", c.num_attention_heads);
  v("num_experts_per_tok", c.num_experts_per_tok);
  v("num_hidden_layers", c.num_hidden_layers);
  v("num_hash_layers", c.num_hash_layers);
  v("num_key_value_heads", c.num_key_value_heads);
  v("num_nextn_predict_layers", c.num_nextn_predict_layers);
  v("o_groups", c.o_groups);
  v("o_lora_rank", c.o_lora_rank);
  v("q_lora_rank", c.q_lora_rank);
  v("qk_rope_head_dim", c.qk_rope_head_dim);
  v("quantization_config", c.quantization_config);
  v("rms_norm_eps", c.rms_norm_eps);
  v("rope_scaling", c.rope_scaling);
  v("rope_theta", c.rope_theta, Num::IntIfIntegral);
  v("routed_scaling_factor", c.routed_scaling_factor);
  v("scoring_func", c.scoring_func);
  v("sliding_window", c.sliding_window);
  v("swiglu_limit", c.swiglu_limit);
  v("tie_word_embeddings", c.tie_word_embeddings);
  v("topk_method", c.topk_method);
  v("torch_dtype", c.torch_dtype);
  v("transformers_version", c.transformers_version);
  v("use_cache", c.use_cache);
  v("vocab_size", c.vocab_size);
  v("compress_rope_theta", c.compress_rope_theta, Num::IntIfIntegral);
  v("compress_ratios", c.compress_ratios);
}

// Nested objects: keys sorted, as in the official file.
template <class C, class V>
void quant_fields(C& q, V&& v) {
  v("activation_scheme", q.activation_scheme);
  v("fmt", q.fmt);
  v("quant_method", q.quant_method);
  v("scale_fmt", q.scale_fmt);
  v("weight_block_size", q.weight_block_size);
}
template <class C, class V>
void rope_fields(C& r, V&& v) {
  v("beta_fast", r.beta_fast, Num::IntIfIntegral);
  v("beta_slow", r.beta_slow, Num::IntIfIntegral);
  v("factor", r.factor, Num::IntIfIntegral);
  v("original_max_position_embeddings", r.original_max_position_embeddings);
  v("type", r.type);
}

struct Writer {
  ojson* j;
  template <class T>
  void operator()(const char* k, const T& x, Num n = Num::Plain) {
    if constexpr (std::is_same_v<T, double>) {
      if (n == Num::IntIfIntegral && std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9e15)
        (*j)[k] = int64_t(x);
      else
        (*j)[k] = x;
    } else if constexpr (std::is_same_v<T, QuantizationConfig>) {
      ojson o = ojson::object();
      quant_fields(x, Writer{&o});
      (*j)[k] = std::move(o);
    } else if constexpr (std::is_same_v<T, RopeScaling>) {
      ojson o = ojson::object();
      rope_fields(x, Writer{&o});
      (*j)[k] = std::move(o);
    } else {
      (*j)[k] = x;
    }
  }
};


struct Reader {
  const nlohmann::json* j;
  std::string where;  // "file: key path prefix"
  std::set<std::string>* seen;

  [[noreturn]] void fail(const std::string& k, const std::string& what) const {
    throw Error(where + k + ": " + what);
  }
  template <class T>
  void operator()(const char* k, T& x, Num = Num::Plain) {
    seen->insert(k);
    auto it = j->find(k);
    if (it == j->end()) fail(k, "missing key");
    const nlohmann::json& v = *it;
    if constexpr (std::is_same_v<T, bool>) {
      if (!v.is_boolean()) fail(k, std::string("expected a boolean, got ") + v.type_name());
      x = v.get<bool>();
    } else if constexpr (std::is_same_v<T, int64_t>) {
      if (!v.is_number_integer()) fail(k, std::string("expected an integer, got ") + v.dump());
      x = v.get<int64_t>();
    } else if constexpr (std::is_same_v<T, double>) {
      if (!v.is_number()) fail(k, std::string("expected a number, got ") + v.type_name());
      x = v.get<double>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!v.is_string()) fail(k, std::string("expected a string, got ") + v.type_name());
      x = v.get<std::string>();
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (!v.is_array()) fail(k, std::string("expected an array of strings, got ") + v.type_name());
      x.clear();
      for (auto& e : v) {
        if (!e.is_string()) fail(k, "expected an array of strings, found element " + e.dump());
        x.push_back(e.get<std::string>());
      }
    } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
      if (!v.is_array()) fail(k, std::string("expected an array of integers, got ") + v.type_name());
      x.clear();
      for (auto& e : v) {
        if (!e.is_number_integer()) fail(k, "expected an array of integers, found element " + e.dump());
        x.push_back(e.get<int64_t>());
      }
    } else if constexpr (std::is_same_v<T, QuantizationConfig>) {
      read_object(v, where + k + ".", [&](Reader& r) { quant_fields(x, r); });
    } else if constexpr (std::is_same_v<T, RopeScaling>) {
      read_object(v, where + k + ".", [&](Reader& r) { rope_fields(x, r); });
    }
  }

  template <class F>
  static void read_object(const nlohmann::json& v, const std::string& where, F&& fields) {
    if (!v.is_object()) throw Error(where + " expected a JSON object, got " + std::string(v.type_name()));
    std::set<std::string> seen;
    Reader r{&v, where, &seen};
    fields(r);
    for (auto it = v.begin(); it != v.end(); ++it)
      if (!seen.count(it.key())) throw Error(where + it.key() + ": unknown key (not in the official config.json)");
  }
};

}  // namespace

nlohmann::ordered_json model_config_to_json(const ModelConfig& c) {
  ojson j = ojson::object();
  model_fields(c, Writer{&j});
  return j;
}

ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& where) {
  ModelConfig c;
  Reader::read_object(j, where + ": ", [&](Reader& r) { model_fields(c, r); });
  return c;
}

ModelConfig load_hf_config(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(path + ": cannot open config.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return model_config_from_json(parse_json_no_duplicates(ss.str(), path), path);
}

void save_hf_config(const ModelConfig& c, const std::string& path) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot create file");
  f << model_config_to_json(c).dump(2);  // no trailing newline, like the golden tiny config.json
  if (!f) throw Error(path + ": write failed");
}

}  // namespace dsv4
