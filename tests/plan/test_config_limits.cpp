// Config values out of range (issue 23, defect 6): every error names the field, the expected range and
// the value, before plangen multiplies anything.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "plan/error.hpp"
#include "tools/config/config_json.hpp"
#include "tools/config/hf_config.hpp"
#include "tools/plangen/program.hpp"

namespace {

using json = nlohmann::ordered_json;

std::string tiny_text() {
  std::ifstream f(DSV4_SOURCE_DIR "/config/tiny.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
json tiny() { return json::parse(tiny_text()); }

std::string error_of_text(const std::string& text) {
  try {
    dsv4::parse_shape_config(text, "x", "x.json");
  } catch (const dsv4::Error& e) {
    return e.what();
  }
  return "(no error)";
}
std::string error_of(const json& j) { return error_of_text(j.dump()); }

TEST(ConfigLimits, SizesThatWouldOverflowInt64) {
  json j = tiny();
  j["model"]["hidden_size"] = int64_t(1) << 62;  // used to give a negative weight byte count
  EXPECT_EQ(error_of(j), "x.json: model.hidden_size: must be in [1, 65536], got 4611686018427387904");
  j = tiny();
  j["model"]["vocab_size"] = int64_t(1) << 40;
  EXPECT_EQ(error_of(j), "x.json: model.vocab_size: must be in [1, 16777216], got 1099511627776");
  j = tiny();
  j["deploy"]["max_context"] = int64_t(1) << 40;
  EXPECT_EQ(error_of(j), "x.json: deploy.max_context: must be in [1, 16777216], got 1099511627776");
  // Each value in range, their product not: the byte-count guard names the product.
  j = tiny();
  j["model"]["num_hidden_layers"] = 1024;
  j["model"]["compress_ratios"] = std::vector<int64_t>(1024, 0);
  j["model"]["n_routed_experts"] = 4096;
  j["model"]["hidden_size"] = 65536;
  j["model"]["moe_intermediate_size"] = 65536;
  const std::string e = error_of(j);
  EXPECT_NE(e.find("x.json: layers * experts * 3 * hidden_size * moe_intermediate_size (routed experts): is 54043195528445952 bytes, more than the 2^50-byte limit"), std::string::npos) << e;
  EXPECT_NE(e.find("bytes, more than the 2^50-byte limit"), std::string::npos) << e;
}

TEST(ConfigLimits, ZeroAndNegativeDims) {
  for (const char* f : {"head_dim", "q_lora_rank", "o_lora_rank", "moe_intermediate_size", "num_hidden_layers"}) {
    json j = tiny();
    j["model"][f] = 0;
    EXPECT_EQ(error_of(j).rfind(std::string("x.json: model.") + f + ": must be in [1, ", 0), 0u) << f << ": " << error_of(j);
    j["model"][f] = -128;  // a multiple of 128: the old checks let it through to the arena verifier
    EXPECT_NE(error_of(j).find(std::string("model.") + f + ": must be in [1, "), std::string::npos) << error_of(j);
    EXPECT_NE(error_of(j).find("got -128"), std::string::npos) << error_of(j);
  }
  json j = tiny();
  j["model"]["qk_rope_head_dim"] = 128;  // = head_dim: no dims left for the FP8 part
  EXPECT_EQ(error_of(j), "x.json: model.qk_rope_head_dim: must be in [1, 127], got 128");
  j = tiny();
  j["deploy"]["kv_block"] = -16;
  EXPECT_EQ(error_of(j), "x.json: deploy.kv_block: must be in [1, 65536], got -16");
  j = tiny();
  j["model"]["num_nextn_predict_layers"] = -1;
  EXPECT_EQ(error_of(j), "x.json: model.num_nextn_predict_layers: must be in [0, 16], got -1");
}

TEST(ConfigLimits, TokenIdsMustBeInTheVocabulary) {
  json j = tiny();
  j["model"]["eos_token_id"] = 1024;  // vocab_size 1024: generation could never stop at EOS
  EXPECT_EQ(error_of(j), "x.json: model.eos_token_id: must be in [0, 1023], got 1024");
  j = tiny();
  j["model"]["bos_token_id"] = -1;
  EXPECT_EQ(error_of(j), "x.json: model.bos_token_id: must be in [0, 1023], got -1");
}

TEST(ConfigLimits, EpsThetaAndFactorsMustBePositive) {
  const std::pair<const char*, const char*> cases[] = {
      {"rms_norm_eps", "model.rms_norm_eps"},         {"hc_eps", "model.hc_eps"},
      {"rope_theta", "model.rope_theta"},             {"compress_rope_theta", "model.compress_rope_theta"},
      {"routed_scaling_factor", "model.routed_scaling_factor"}, {"swiglu_limit", "model.swiglu_limit"}};
  for (auto [key, field] : cases) {
    json j = tiny();
    j["model"][key] = 0;
    EXPECT_EQ(error_of(j), std::string("x.json: ") + field + ": must be a finite number > 0, got 0") << key;
    j["model"][key] = -1.5;
    EXPECT_EQ(error_of(j), std::string("x.json: ") + field + ": must be a finite number > 0, got -1.5") << key;
  }
  json j = tiny();
  j["model"]["rope_scaling"]["factor"] = 0.5;
  EXPECT_EQ(error_of(j), "x.json: model.rope_scaling.factor: must be >= 1, got 0.5");
  j = tiny();
  j["model"]["rope_scaling"]["beta_slow"] = 0;
  EXPECT_EQ(error_of(j), "x.json: model.rope_scaling.beta_slow: must be a finite number > 0, got 0");
  j = tiny();
  j["model"]["rms_norm_eps"] = 2;
  EXPECT_EQ(error_of(j), "x.json: model.rms_norm_eps: must be < 1, got 2");
}

TEST(ConfigLimits, DuplicateKeysAreErrors) {
  std::string t = tiny_text();
  // A second hidden_size inside "model" (nlohmann would keep the last one).
  const size_t at = t.find("\"hidden_size\"");
  ASSERT_NE(at, std::string::npos);
  t.insert(at, "\"hidden_size\": 4096, ");
  EXPECT_EQ(error_of_text(t),
            "x.json: duplicate key \"hidden_size\" in \"model\" (JSON readers disagree on which one counts)");
  std::string top = tiny_text();
  top.insert(top.rfind('}'), ", \"deploy\": {}");
  EXPECT_EQ(error_of_text(top), "x.json: duplicate key \"deploy\" (JSON readers disagree on which one counts)");
  std::string nested = tiny_text();
  const size_t f = nested.find("\"factor\"");
  ASSERT_NE(f, std::string::npos);
  nested.insert(f, "\"factor\": 1, ");
  EXPECT_EQ(error_of_text(nested),
            "x.json: duplicate key \"factor\" in \"model.rope_scaling\" (JSON readers disagree on which one counts)");
}

TEST(ConfigLimits, HfConfigDuplicateKeys) {
  const std::string p = ::testing::TempDir() + "/dup_config.json";
  std::string t = tiny().at("model").dump();
  t.insert(1, "\"vocab_size\": 7, ");
  std::ofstream(p) << t;
  try {
    dsv4::load_hf_config(p);
    ADD_FAILURE() << "no error";
  } catch (const dsv4::Error& e) {
    EXPECT_EQ(std::string(e.what()), p + ": duplicate key \"vocab_size\" (JSON readers disagree on which one counts)");
  }
}

// Shipped configs are far inside every limit and still build.
TEST(ConfigLimits, ShippedConfigsPass) {
  for (const char* n : {"tiny", "tiny2", "tiny4", "tiny16", "demo", "flash", "flash4"})
    EXPECT_NO_THROW(dsv4::load_shape_config(std::string(DSV4_SOURCE_DIR "/config/") + n + ".json")) << n;
}

}  // namespace
