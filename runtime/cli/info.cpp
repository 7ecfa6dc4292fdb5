#include "runtime/cli/info.hpp"

#include <memory>

#include <cinttypes>
#include <cstdio>
#include <algorithm>
#include <map>

#include "layout.hpp"
#include "model.hpp"
#include "plan.hpp"
#include "plan/config.hpp"
#include "runtime/cli/commands.hpp"
#include "weights.hpp"

namespace dsv4 {

nlohmann::ordered_json plan_info() {
  using nlohmann::ordered_json;
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016" PRIx64, gen::kPlanHash);
  ordered_json j;
  j["config"] = gen::kConfigName;
  j["plan_hash"] = hash;
  j["model"] = {{"layers", gen::kNumLayers}, {"hidden_size", gen::kHiddenSize}, {"heads", gen::kNumHeads},
                {"head_dim", gen::kHeadDim}, {"vocab_size", gen::kVocabSize}, {"experts", gen::kNumExperts},
                {"experts_per_token", gen::kNumActivated}, {"window", gen::kWindow}};
  j["deploy"] = {{"ranks", gen::kRanks}, {"attn_dp", gen::kAttnDp}, {"moe_ep", gen::kMoeEp},
                 {"lmhead_tp", gen::kLmHeadTp}, {"max_tokens_per_step", gen::kMaxTokensPerStep},
                 {"max_requests_per_rank", gen::kMaxRequestsPerRank}, {"max_context", gen::kMaxContext},
                 {"kv_block", gen::kKvBlock}};
  j["arena_bytes_per_rank"] = gen::kArenaBytes;
  j["arena_persistent_bytes"] = gen::kPersistentBytes;
  j["weight_bytes_replicated"] = gen::kReplicatedWeightBytes;
  j["weight_bytes_rank_file"] = gen::kRankWeightBytes;
  j["weight_bytes_per_rank"] = gen::kReplicatedWeightBytes + gen::kRankWeightBytes;
  j["ops"] = gen::kNumOps;
  j["buffers"] = gen::kNumBuffers;
  j["weights"] = gen::kNumWeights;

  // Layers per kind and ops per layer of each kind (all layers of one kind have the same op count).
  std::map<std::string, std::pair<int64_t, int64_t>> kinds;  // kind -> (layers, ops per layer)
  std::map<int32_t, int64_t> ops_per_layer;
  int64_t top = 0;
  for (const auto& op : gen::kOps) (op.layer < 0 ? top : ops_per_layer[op.layer]) += 1;
  for (int64_t L = 0; L < gen::kNumLayers; ++L) {
    auto& k = kinds[layer_kind_name(layer_kind(gen::kCompressRatio[L]))];
    k.first += 1;
    k.second = ops_per_layer[int32_t(L)];
  }
  ordered_json per_kind;
  for (const auto& [name, v] : kinds) per_kind[name] = {{"layers", v.first}, {"ops_per_layer", v.second}};
  j["ops_per_layer_kind"] = per_kind;
  j["ops_top_level"] = top;

  // Rank contracts: which experts, which vocabulary rows and which attention requests each rank owns.
  ordered_json ranks = ordered_json::array();
  for (int64_t r = 0; r < gen::kRanks; ++r) {
    const int64_t e0 = gen::kMoeEp > 1 ? r * gen::kExpertsPerRank : 0;
    const int64_t v0 = gen::kLmHeadTp > 1 ? r * gen::kVocabShard : 0;
    const int64_t v1 = std::min(gen::kVocabSize, v0 + gen::kVocabShard);
    ranks.push_back({{"rank", r},
                     {"experts", {e0, e0 + gen::kExpertsPerRank}},
                     {"vocab", {v0, v1}},
                     {"attention", gen::kAttnDp > 1 ? "own requests (data-parallel)" : (r == 0 ? "all requests" : "none")}});
  }
  j["rank_contracts"] = ranks;
  return j;
}

std::string plan_info_text(const nlohmann::ordered_json& j) {
  auto gib = [](int64_t b) {
    char s[32];
    std::snprintf(s, sizeof s, "%.3f GiB", double(b) / double(1ll << 30));
    return std::string(s);
  };
  std::string o;
  o += "config              " + j["config"].get<std::string>() + "\n";
  o += "plan hash (xxh3-64) " + j["plan_hash"].get<std::string>() + "\n";
  o += "model               " + j["model"].dump() + "\n";
  o += "deploy              " + j["deploy"].dump() + "\n";
  o += "arena per rank      " + std::to_string(j["arena_bytes_per_rank"].get<int64_t>()) + " bytes (" +
       gib(j["arena_bytes_per_rank"]) + "), persistent " + gib(j["arena_persistent_bytes"]) + "\n";
  o += "weights per rank    " + std::to_string(j["weight_bytes_per_rank"].get<int64_t>()) + " bytes (" +
       gib(j["weight_bytes_per_rank"]) + "): replicated " + gib(j["weight_bytes_replicated"]) + " + rank file " +
       gib(j["weight_bytes_rank_file"]) + "\n";
  o += "plan                " + std::to_string(j["ops"].get<int64_t>()) + " ops, " +
       std::to_string(j["buffers"].get<int64_t>()) + " buffers, " + std::to_string(j["weights"].get<int64_t>()) +
       " weight tensors per rank\n";
  for (const auto& [kind, v] : j["ops_per_layer_kind"].items())
    o += "  " + kind + std::string(8 - kind.size(), ' ') + std::to_string(v["layers"].get<int64_t>()) + " layers x " +
         std::to_string(v["ops_per_layer"].get<int64_t>()) + " ops\n";
  o += "  top     " + std::to_string(j["ops_top_level"].get<int64_t>()) + " ops (embedding, head, logits)\n";
  o += "rank contracts      rank: experts [first, end), vocabulary rows [first, end), attention\n";
  for (const auto& r : j["rank_contracts"]) {
    char line[160];
    std::snprintf(line, sizeof line, "  %4lld: experts [%lld, %lld)  vocab [%lld, %lld)  %s\n",
                  (long long)r["rank"].get<int64_t>(), (long long)r["experts"][0].get<int64_t>(),
                  (long long)r["experts"][1].get<int64_t>(), (long long)r["vocab"][0].get<int64_t>(),
                  (long long)r["vocab"][1].get<int64_t>(), r["attention"].get<std::string>().c_str());
    o += line;
  }
  return o;
}

}  // namespace dsv4

namespace dsv4::cli {

Subcommand add_info(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto* c = app.add_subcommand("info", "print the built-in config, plan hash, bytes per rank, ops per layer kind");
  c->add_flag("--json", *json, "print as JSON");
  return {c, [json](ProcessArgs) {
            const auto j = plan_info();
            std::fputs(*json ? (j.dump(2) + "\n").c_str() : plan_info_text(j).c_str(), stdout);
            return 0;
          }};
}

}  // namespace dsv4::cli
