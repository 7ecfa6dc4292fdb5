// Config validation: every bad-config class gets a clear, exact error naming the field.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "plan/error.hpp"
#include "tools/config/config_json.hpp"

namespace {

using json = nlohmann::ordered_json;

json tiny() {
  std::ifstream f(DSV4_SOURCE_DIR "/config/tiny.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return json::parse(ss.str());
}

std::string error_of(const json& j) {
  try {
    dsv4::parse_shape_config(j.dump(), "x", "x.json");
  } catch (const dsv4::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Config, ShippedConfigsLoad) {
  for (const char* n : {"tiny", "tiny2", "tiny4", "tiny16", "demo", "flash"}) {
    const auto c = dsv4::load_shape_config(std::string(DSV4_SOURCE_DIR "/config/") + n + ".json");
    EXPECT_EQ(c.name, n);
  }
}

TEST(Config, FlashIsTheOfficialConfig) {
  const auto c = dsv4::load_shape_config(DSV4_SOURCE_DIR "/config/flash.json");
  const auto& m = c.model;
  EXPECT_EQ(m.hidden_size, 4096);
  EXPECT_EQ(m.num_hidden_layers, 43);
  EXPECT_EQ(m.vocab_size, 129280);
  EXPECT_EQ(m.n_routed_experts, 256);
  EXPECT_EQ(m.head_dim, 512);
  EXPECT_EQ(m.index_topk, 512);
  EXPECT_EQ(m.sliding_window, 128);
  ASSERT_EQ(m.compress_ratios.size(), 44u);  // 43 layers + the MTP entry (ignored)
  EXPECT_EQ(m.compress_ratios[0], 0);
  EXPECT_EQ(m.compress_ratios[1], 0);
  for (int L = 2; L < 43; ++L) EXPECT_EQ(m.compress_ratios[L], L % 2 == 0 ? 4 : 128) << L;
  EXPECT_EQ(c.deploy.ranks, 16);
  EXPECT_EQ(c.deploy.attn_dp, 16);
  EXPECT_EQ(c.deploy.moe_ep, 16);
  EXPECT_EQ(c.deploy.lmhead_tp, 16);
}

TEST(Config, RoundTripIsCanonical) {
  const auto c = dsv4::load_shape_config(DSV4_SOURCE_DIR "/config/tiny.json");
  const std::string t = dsv4::shape_config_to_text(c);
  EXPECT_EQ(dsv4::shape_config_to_text(dsv4::parse_shape_config(t, "tiny", "t")), t);
}

TEST(ConfigErrors, ExpertsNotDivisibleByEp) {
  json j = tiny();
  j["deploy"]["ranks"] = 3;
  j["deploy"]["moe_ep"] = 3;
  EXPECT_EQ(error_of(j), "x.json: model.n_routed_experts: must be divisible by deploy.moe_ep (3), got 16");
}

TEST(ConfigErrors, ParallelModeMustBeOneOrRanks) {
  json j = tiny();
  j["deploy"]["ranks"] = 4;
  j["deploy"]["attn_dp"] = 2;
  EXPECT_EQ(error_of(j), "x.json: deploy.attn_dp: must be 1 or deploy.ranks (4), got 2");
  j = tiny();
  j["deploy"]["lmhead_tp"] = 2;
  EXPECT_EQ(error_of(j), "x.json: deploy.lmhead_tp: must be 1 or deploy.ranks (1), got 2");
}

TEST(ConfigErrors, VocabNotDivisibleByTpIsPadded) {
  json j = tiny();
  j["model"]["vocab_size"] = 1000;
  j["deploy"]["ranks"] = 16;
  j["deploy"]["attn_dp"] = 16;
  j["deploy"]["moe_ep"] = 16;
  j["deploy"]["lmhead_tp"] = 16;
  const auto c = dsv4::parse_shape_config(j.dump(), "x", "x.json");
  EXPECT_EQ(dsv4::vocab_shard_rows(c), 63);  // ceil(1000 / 16); the last shard has 55 real rows
}

TEST(ConfigErrors, Fp8BlockSizes) {
  json j = tiny();
  j["model"]["hidden_size"] = 200;
  EXPECT_EQ(error_of(j), "x.json: model.hidden_size: must be a multiple of 128 (FP8 activation blocks of 128), got 200");
  j = tiny();
  j["model"]["q_lora_rank"] = 96;
  EXPECT_EQ(error_of(j), "x.json: model.q_lora_rank: must be a multiple of 128 (FP8 activation blocks of 128), got 96");
  j = tiny();
  j["model"]["moe_intermediate_size"] = 160;
  EXPECT_EQ(error_of(j),
            "x.json: model.moe_intermediate_size: must be a multiple of 128 (FP8 activation blocks of 128), got 160");
}

TEST(ConfigErrors, NonRopeHeadDimsMultipleOf64) {
  json j = tiny();
  j["model"]["head_dim"] = 160;
  EXPECT_EQ(error_of(j),
            "x.json: model.head_dim - model.qk_rope_head_dim: must be a multiple of 64 (FP8 kv round trip in blocks "
            "of 64 on the non-rope dims), got 96");
}

TEST(ConfigErrors, CompressRatios) {
  json j = tiny();
  j["model"]["compress_ratios"] = {0, 4, 128};
  EXPECT_EQ(error_of(j),
            "x.json: model.compress_ratios: length must be num_hidden_layers (6) or num_hidden_layers + "
            "num_nextn_predict_layers (6), got 3");
  j = tiny();
  j["model"]["compress_ratios"][2] = 16;
  EXPECT_EQ(error_of(j), "x.json: model.compress_ratios[2]: must be 0, 4 or 128, got 16");
  j = tiny();
  j["model"]["num_nextn_predict_layers"] = 1;
  j["model"]["compress_ratios"].push_back(0);  // the MTP entry is accepted and ignored
  EXPECT_EQ(error_of(j), "(no error)");
}

TEST(ConfigErrors, UnknownAndMissingKeys) {
  json j = tiny();
  j["model"]["rope_thetaa"] = 1;
  EXPECT_EQ(error_of(j), "x.json: model: rope_thetaa: unknown key (not in the official config.json)");
  j = tiny();
  j["deploy"]["max_batch"] = 1;
  EXPECT_EQ(error_of(j), "x.json: deploy: unknown key \"max_batch\"");
  j = tiny();
  j["extra"] = 1;
  EXPECT_EQ(error_of(j), "x.json: unknown key \"extra\"");
  j = tiny();
  j["model"].erase("vocab_size");
  EXPECT_EQ(error_of(j), "x.json: model: vocab_size: missing key");
  j = tiny();
  j["model"]["rope_scaling"]["kind"] = "yarn";
  EXPECT_EQ(error_of(j), "x.json: model: rope_scaling.kind: unknown key (not in the official config.json)");
}

TEST(ConfigErrors, WrongTypesAndSyntax) {
  json j = tiny();
  j["model"]["hidden_size"] = "256";
  EXPECT_EQ(error_of(j), "x.json: model: hidden_size: expected an integer, got \"256\"");
  EXPECT_NE(std::string(error_of(json())).find("x.json: expected a JSON object"), std::string::npos);
  try {
    dsv4::parse_shape_config("{\"model\": ", "x", "x.json");
    FAIL();
  } catch (const dsv4::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("x.json: invalid JSON: ", 0), 0u) << e.what();
  }
  EXPECT_THROW(dsv4::load_shape_config("/nonexistent/c.json"), dsv4::Error);
}

TEST(ConfigErrors, ModelConstraints) {
  json j = tiny();
  j["model"]["index_head_dim"] = 64;
  EXPECT_EQ(error_of(j), "x.json: model.index_head_dim: must be 128 (Hadamard-128 on indexer q and keys), got 64");
  j = tiny();
  j["deploy"]["max_context"] = 2000000;
  EXPECT_EQ(error_of(j), "x.json: deploy.max_context: must be <= model.max_position_embeddings (1048576), got 2000000");
  j = tiny();
  j["model"]["num_experts_per_tok"] = 17;
  EXPECT_EQ(error_of(j), "x.json: model.num_experts_per_tok: must be <= n_routed_experts (16), got 17");
}

}  // namespace
