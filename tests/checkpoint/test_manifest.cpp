// hf_tensor_manifest against the golden tiny checkpoint and the real Flash tensor list; HF config.json I/O.
#include <set>

#include "ckpt_test_util.hpp"

namespace dsv4::test {
namespace {

TEST(HfManifest, TinyMatchesGoldenCheckpoint) {
  const ModelConfig cfg = tiny_config();
  const auto m = hf_tensor_manifest(cfg, false);
  const st::Checkpoint ck = st::Checkpoint::open(kTinyCkpt, false);
  ASSERT_EQ(m.size(), ck.tensors().size());
  EXPECT_EQ(m.size(), 786u);
  uint64_t bytes = 0;
  for (const HfTensor& t : m) {
    const auto* e = ck.find(t.name);
    ASSERT_NE(e, nullptr) << t.name;
    EXPECT_EQ(e->info->dtype, t.dtype) << t.name;
    EXPECT_EQ(e->info->shape, t.shape) << t.name;
    EXPECT_FALSE(t.mtp);
    bytes += uint64_t(t.bytes());
  }
  EXPECT_EQ(bytes, 11420476u);  // index metadata.total_size
  // tiny has num_nextn_predict_layers 0: asking for MTP adds nothing.
  EXPECT_EQ(hf_tensor_manifest(cfg, true).size(), m.size());
}

TEST(HfManifest, FlashMatchesReferenceTensorList) {
  const auto tsv = load_flash_tsv();
  ASSERT_EQ(tsv.size(), 69187u);
  const auto all = hf_tensor_manifest(flash_config(), true);
  ASSERT_EQ(all.size(), 69187u);
  std::map<std::string, const HfTensor*> by;
  for (auto& t : all) ASSERT_TRUE(by.emplace(t.name, &t).second) << "duplicate " << t.name;
  uint64_t total = 0;
  for (auto& [name, r] : tsv) {
    auto it = by.find(name);
    ASSERT_NE(it, by.end()) << name;
    EXPECT_EQ(hf_dtype_name(it->second->dtype), r.dtype) << name;
    EXPECT_EQ(it->second->shape, r.shape) << name;
    EXPECT_EQ(uint64_t(it->second->bytes()), r.bytes) << name;
    EXPECT_EQ(it->second->mtp, name.rfind("mtp.", 0) == 0) << name;
    total += r.bytes;
  }
  EXPECT_EQ(total, 159609485896u);

  const auto main = hf_tensor_manifest(flash_config(), false);
  EXPECT_EQ(main.size(), 67612u);
  uint64_t main_bytes = 0;
  std::map<HfDtype, int> per_dtype;
  for (auto& t : main) main_bytes += uint64_t(t.bytes());
  for (auto& t : all) per_dtype[t.dtype]++;
  EXPECT_EQ(main_bytes, 156015698140u);
  EXPECT_EQ(per_dtype[HfDtype::F8_E8M0], 34167);
  EXPECT_EQ(per_dtype[HfDtype::I8], 33792);
  EXPECT_EQ(per_dtype[HfDtype::BF16], 433);
  EXPECT_EQ(per_dtype[HfDtype::F32], 417);
  EXPECT_EQ(per_dtype[HfDtype::F8_E4M3], 375);
  EXPECT_EQ(per_dtype[HfDtype::I64], 3);
}

TEST(HfManifest, RolesLayersAndHashGates) {
  const ModelConfig cfg = flash_config();
  int tid = 0, bias = 0;
  for (const HfTensor& t : hf_tensor_manifest(cfg, true)) {
    switch (t.role) {
      case HfRole::Fp8Weight: EXPECT_EQ(t.dtype, HfDtype::F8_E4M3); break;
      case HfRole::Fp4Weight:
        EXPECT_EQ(t.dtype, HfDtype::I8);
        EXPECT_EQ(t.shape, (std::vector<int64_t>{t.out, t.in / 2}));
        break;
      case HfRole::Fp8Scale:
        EXPECT_EQ(t.dtype, HfDtype::F8_E8M0);
        EXPECT_EQ(t.shape, (std::vector<int64_t>{(t.out + 127) / 128, (t.in + 127) / 128}));
        break;
      case HfRole::Fp4Scale:
        EXPECT_EQ(t.dtype, HfDtype::F8_E8M0);
        EXPECT_EQ(t.shape, (std::vector<int64_t>{t.out, t.in / 32}));
        break;
      case HfRole::Bf16: EXPECT_EQ(t.dtype, HfDtype::BF16); break;
      case HfRole::F32: EXPECT_EQ(t.dtype, HfDtype::F32); break;
      case HfRole::I64: EXPECT_EQ(t.dtype, HfDtype::I64); break;
    }
    if (t.name.find("gate.tid2eid") != std::string::npos) {
      ++tid;
      EXPECT_LT(t.layer, cfg.num_hash_layers) << t.name;
    }
    if (t.name.find("gate.bias") != std::string::npos) {
      ++bias;
      EXPECT_GE(t.layer, cfg.num_hash_layers) << t.name;
    }
    if (t.name.rfind("layers.", 0) == 0) {
      EXPECT_EQ(t.name.rfind("layers." + std::to_string(t.layer) + ".", 0), 0u) << t.name;
    }
    if (t.mtp) {
      EXPECT_EQ(t.layer, 43) << t.name;
    }
  }
  EXPECT_EQ(tid, 3);
  EXPECT_EQ(bias, 41);  // layers 3..42 + mtp.0
}

TEST(HfManifest, RejectsInconsistentConfig) {
  ModelConfig c = tiny_config();
  c.compress_ratios[2] = 3;
  expect_error([&] { hf_tensor_manifest(c, false); }, {"compress_ratios[2] = 3", "expected 0, 4 or 128"});
  c = tiny_config();
  c.compress_ratios.resize(4);
  expect_error([&] { hf_tensor_manifest(c, false); }, {"compress_ratios has 4 entries", "num_hidden_layers = 6"});
  c = tiny_config();
  c.o_groups = 3;
  expect_error([&] { hf_tensor_manifest(c, false); }, {"o_groups (3)"});
}

TEST(HfDtypes, NamesSizesAndCrateOrder) {
  for (HfDtype d : kAllHfDtypes) EXPECT_EQ(hf_dtype_from_name(hf_dtype_name(d)), d);
  EXPECT_FALSE(hf_dtype_from_name("F16").has_value());
  EXPECT_FALSE(hf_dtype_from_name("bf16").has_value());
  EXPECT_EQ(hf_dtype_size(HfDtype::I64), 8);
  EXPECT_EQ(hf_dtype_size(HfDtype::F32), 4);
  EXPECT_EQ(hf_dtype_size(HfDtype::I32), 4);
  EXPECT_EQ(hf_dtype_size(HfDtype::BF16), 2);
  EXPECT_EQ(hf_dtype_size(HfDtype::F8_E8M0), 1);
  // Descending crate order = the official serializer's data order.
  const HfDtype order[] = {HfDtype::I64, HfDtype::F32, HfDtype::I32, HfDtype::BF16,
                           HfDtype::F8_E8M0, HfDtype::F8_E4M3, HfDtype::I8, HfDtype::U8};
  for (size_t i = 1; i < std::size(order); ++i)
    EXPECT_GT(hf_dtype_crate_rank(order[i - 1]), hf_dtype_crate_rank(order[i])) << hf_dtype_name(order[i]);
}

TEST(HfConfig, TinyConfigRoundTripsByteExact) {
  const std::string text = read_file(kTinyCkpt + "/config.json");
  EXPECT_EQ(model_config_to_json(tiny_config()).dump(2), text);
}

TEST(HfConfig, FlashNumberStyleMatchesOfficial) {
  const std::string t = model_config_to_json(flash_config()).dump();
  for (const char* s : {"\"rope_theta\":10000,", "\"compress_rope_theta\":160000,", "\"swiglu_limit\":10.0,",
                        "\"hc_eps\":1e-06,", "\"attention_dropout\":0.0,", "\"factor\":16,", "\"beta_slow\":1,",
                        "\"routed_scaling_factor\":1.5,", "\"initializer_range\":0.02,"})
    EXPECT_NE(t.find(s), std::string::npos) << s << " in " << t;
  // Parsing it back gives the same config.
  const ModelConfig back = model_config_from_json(nlohmann::json::parse(t), "flash");
  EXPECT_EQ(model_config_to_json(back).dump(), t);
}

TEST(HfConfig, StrictParsing) {
  nlohmann::json j = nlohmann::json::parse(read_file(kTinyCkpt + "/config.json"));
  auto bad = j;
  bad["rope_type"] = "x";
  expect_error([&] { model_config_from_json(bad, "cfg.json"); }, {"cfg.json", "rope_type", "unknown key"});
  bad = j;
  bad.erase("vocab_size");
  expect_error([&] { model_config_from_json(bad, "cfg.json"); }, {"vocab_size", "missing key"});
  bad = j;
  bad["hidden_size"] = 256.5;
  expect_error([&] { model_config_from_json(bad, "cfg.json"); }, {"hidden_size", "expected an integer"});
  bad = j;
  bad["rope_scaling"]["extra"] = 1;
  expect_error([&] { model_config_from_json(bad, "cfg.json"); }, {"rope_scaling.extra", "unknown key"});
  bad = j;
  bad["compress_ratios"][0] = "0";
  expect_error([&] { model_config_from_json(bad, "cfg.json"); }, {"compress_ratios", "array of integers"});
}

}  // namespace
}  // namespace dsv4::test
