// check_hf on the golden tiny checkpoint, a header-only fake of the real Flash checkpoint and broken
// checkpoints; the synthetic writer against the golden layout, its value recipe and determinism.
#include <omp.h>
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <set>

#include "ckpt_test_util.hpp"
#include "kernels/numerics.hpp"
#include "tools/checkpoint/check_hf.hpp"
#include "tools/checkpoint/synth.hpp"

namespace dsv4::test {
namespace {

TEST(CheckHf, GoldenTinyPasses) {
  const HfCheckReport r = check_hf_checkpoint(kTinyCkpt, tiny_config());
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.expected_main, 786);
  EXPECT_EQ(r.found_main, 786);
  EXPECT_EQ(r.mtp_skipped, 0);
  EXPECT_EQ(r.main_bytes, 11420476u);
  EXPECT_EQ(r.shards, 1);
}

TEST(CheckHf, FlashHeaderOnlyFakeOfRealIndexPasses) {
  std::vector<st::TensorSpec> specs;
  for (auto& [name, row] : load_flash_tsv()) specs.push_back({name, *hf_dtype_from_name(row.dtype), row.shape});
  TempDir d;
  write_fake_checkpoint(d.path.string(), specs, 46);  // sparse shards: headers only on disk
  const HfCheckReport r = check_hf_checkpoint(d.path.string(), flash_config());
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.shards, 46);
  EXPECT_EQ(r.expected_main, 67612);
  EXPECT_EQ(r.found_main, 67612);
  EXPECT_EQ(r.mtp_skipped, 1575);
  EXPECT_EQ(r.main_bytes, 156015698140u);
  EXPECT_EQ(r.total_bytes, 159609485896u);
}

TEST(CheckHf, ReportsWrongMissingAndUnknownTensors) {
  const ModelConfig cfg = tiny_config();
  auto specs = specs_of(hf_tensor_manifest(cfg, false));
  std::vector<st::TensorSpec> bad;
  int dropped = 0;
  for (auto s : specs) {
    if (s.name.find(".experts.1") != std::string::npos) {  // experts 1, 10..15: 7 experts x 6 tensors
      ++dropped;
      continue;
    }
    if (s.name == "layers.2.attn.wkv.scale") s.dtype = HfDtype::F32;            // wrong dtype
    if (s.name == "layers.3.ffn.gate.bias") s.shape = {17};                      // wrong shape
    bad.push_back(s);
  }
  bad.push_back({"layers.0.attn.extra.weight", HfDtype::BF16, {4}});  // unknown
  bad.push_back({"mtp.0.e_proj.weight", HfDtype::F8_E4M3, {256, 256}});  // MTP: unknown for tiny (0 MTP layers)
  TempDir d;
  write_fake_checkpoint(d.path.string(), bad, 2);
  const HfCheckReport r = check_hf_checkpoint(d.path.string(), cfg);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(dropped, 7 * 6 * 6);
  EXPECT_EQ(r.missing.size(), size_t(dropped));
  EXPECT_EQ(r.missing[0], "layers.0.ffn.experts.1.w1.weight");
  ASSERT_EQ(r.mismatched.size(), 2u);
  EXPECT_EQ(r.mismatched[0], "layers.2.attn.wkv.scale: dtype expected F8_E8M0, got F32");
  EXPECT_EQ(r.mismatched[1], "layers.3.ffn.gate.bias: shape expected [16], got [17]");
  EXPECT_EQ(r.unknown, (std::vector<std::string>{"layers.0.attn.extra.weight", "mtp.0.e_proj.weight"}));
  EXPECT_EQ(r.found_main, 786 - dropped - 2);
  const std::string s = r.summary(3);
  for (const char* part : {"FAILED", "252 missing tensor(s)", "layers.0.ffn.experts.1.w1.weight", "... and 249 more",
                           "2 tensor(s) with the wrong dtype or shape", "2 unknown tensor(s)"})
    EXPECT_NE(s.find(part), std::string::npos) << part << "\n" << s;
  expect_error([&] { require_hf_checkpoint(d.path.string(), cfg); }, {"252 missing tensor(s)"});
}

TEST(CheckHf, MtpTensorsAreSkipped) {
  ModelConfig cfg = tiny_config();
  cfg.num_nextn_predict_layers = 1;
  cfg.compress_ratios.push_back(0);
  TempDir d;
  write_fake_checkpoint(d.path.string(), specs_of(hf_tensor_manifest(cfg, true)), 3);
  const HfCheckReport r = check_hf_checkpoint(d.path.string(), cfg);
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.found_main, 786);
  EXPECT_GT(r.mtp_skipped, 0);
  EXPECT_EQ(size_t(r.mtp_skipped), hf_tensor_manifest(cfg, true).size() - 786);
}

// ---- synth ------------------------------------------------------------------------------------------

SynthOptions quiet() { return SynthOptions{}; }

TEST(Synth, TinyMatchesGoldenLayoutExactly) {
  TempDir d;
  const SynthSummary s = write_synthetic_checkpoint(tiny_config(), 7, d.path.string(), quiet());
  EXPECT_EQ(s.tensors, 786);
  EXPECT_EQ(s.shards, 1);
  EXPECT_EQ(s.tensor_bytes, 11420476u);
  // Same tensors, dtypes, shapes and the official order: the header, config and index are byte-identical
  // to the golden checkpoint; only the payload differs.
  const std::string mine = read_file(d / "model.safetensors"), gold = read_file(kTinyCkpt + "/model.safetensors");
  ASSERT_EQ(mine.size(), gold.size());
  uint64_t n = 0;
  std::memcpy(&n, gold.data(), 8);
  EXPECT_TRUE(mine.compare(0, 8 + n, gold, 0, 8 + n) == 0);
  EXPECT_EQ(read_file(d / "config.json"), read_file(kTinyCkpt + "/config.json"));
  EXPECT_EQ(read_file(d / "model.safetensors.index.json"), read_file(kTinyCkpt + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(d / "tokenizer.json"));  // not the real vocabulary
  const HfCheckReport r = check_hf_checkpoint(d.path.string(), tiny_config());
  EXPECT_TRUE(r.ok()) << r.summary();
}

// Decodes every quantized tensor and compares with the generator's fp32 values: checks the scale layouts,
// the block scale rule, rounding and the FP4 nibble order.
TEST(Synth, ValuesFollowTheRecipe) {
  const ModelConfig cfg = tiny_config();
  TempDir d;
  const uint64_t seed = 11;
  write_synthetic_checkpoint(cfg, seed, d.path.string(), quiet());
  const auto f = st::SafetensorsFile::open(d / "model.safetensors");
  for (const HfTensor& t : hf_tensor_manifest(cfg, false)) {
    const auto* info = f.find(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    const uint8_t* p = f.data(*info).data();
    if (t.role == HfRole::Fp8Weight) {
      const uint8_t* s = f.data(*f.find(t.name.substr(0, t.name.size() - 7) + ".scale")).data();
      const int64_t SI = (t.in + 127) / 128;
      std::vector<float> bmax(size_t(((t.out + 127) / 128) * SI), 0.f);
      for (int64_t r = 0; r < t.out; r += 37) {  // a sample of rows: every element of them
        const auto v = synth_row_values(t, cfg, seed, r);
        for (int64_t c = 0; c < t.in; ++c) {
          const uint8_t sb = s[(r / 128) * SI + c / 128];
          const float scale = std::ldexp(1.f, int(sb) - 127);
          EXPECT_EQ(p[r * t.in + c], f32_to_e4m3(v[size_t(c)] / scale)) << t.name << " [" << r << "," << c << "]";
        }
      }
      for (int64_t r = 0; r < t.out; ++r)
        for (int64_t c = 0; c < t.in; ++c) {
          float& m = bmax[size_t((r / 128) * SI + c / 128)];
          m = std::max(m, std::fabs(e4m3_to_f32(p[r * t.in + c])));
        }
      for (float m : bmax) {  // amax/scale in (224, 448]: the scale is the smallest power of two that fits
        EXPECT_GE(m, 224.f) << t.name;
        EXPECT_LE(m, 448.f) << t.name;
      }
    } else if (t.role == HfRole::Fp4Weight) {
      const uint8_t* s = f.data(*f.find(t.name.substr(0, t.name.size() - 7) + ".scale")).data();
      for (int64_t r = 0; r < t.out; r += 29) {
        const auto v = synth_row_values(t, cfg, seed, r);
        for (int64_t b = 0; b < t.in / 32; ++b) {
          const int e = int(s[r * (t.in / 32) + b]) - 127;
          float amax = 0, qmax = 0;
          for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(v[size_t(b * 32 + k)]));
          EXPECT_EQ(e, ceil_log2_bits(amax / 6.f)) << t.name;
          for (int k = 0; k < 32; ++k) {
            const int64_t c = b * 32 + k;
            const uint8_t byte = p[r * (t.in / 2) + c / 2];
            const uint8_t code = c % 2 == 0 ? byte & 0xf : byte >> 4;  // low nibble = even element
            EXPECT_EQ(code, f32_to_e2m1(std::ldexp(v[size_t(c)], -e))) << t.name << " [" << r << "," << c << "]";
            qmax = std::max(qmax, std::fabs(e2m1_to_f32(code)));
          }
          EXPECT_GE(qmax, 3.f);
        }
      }
    } else if (t.role == HfRole::Bf16) {
      const auto v = synth_row_values(t, cfg, seed, t.shape.size() == 2 ? t.shape[0] - 1 : 0);
      const int64_t cols = t.shape.back(), row = t.shape.size() == 2 ? t.shape[0] - 1 : 0;
      for (int64_t c = 0; c < cols; ++c) {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * (row * cols + c), 2);
        EXPECT_EQ(bits, f32_to_bf16(v[size_t(c)]).bits) << t.name;
      }
    } else if (t.role == HfRole::I64) {
      const int64_t* ids = reinterpret_cast<const int64_t*>(p);
      for (int64_t r = 0; r < t.shape[0]; ++r) {
        std::set<int64_t> row(ids + r * t.shape[1], ids + (r + 1) * t.shape[1]);
        EXPECT_EQ(row.size(), size_t(t.shape[1])) << "tid2eid row " << r << " repeats an expert";
        EXPECT_GE(*row.begin(), 0);
        EXPECT_LT(*row.rbegin(), cfg.n_routed_experts);
      }
    }
  }
  // Spot statistics of the recipe: embed ~N(0,1), head ~N(0, 4/sqrt(256)), norms ~1.
  auto stats = [&](const std::string& n) {
    const auto* i = f.find(n);
    const auto data = f.data(*i);
    double s = 0, s2 = 0;
    const size_t cnt = data.size() / 2;
    for (size_t k = 0; k < cnt; ++k) {
      uint16_t b;
      std::memcpy(&b, data.data() + 2 * k, 2);
      const double x = bf16_to_f32(bf16{b});
      s += x;
      s2 += x * x;
    }
    const double mean = s / double(cnt);
    return std::pair{mean, std::sqrt(s2 / double(cnt) - mean * mean)};
  };
  EXPECT_NEAR(stats("embed.weight").second, 1.0, 0.02);
  EXPECT_NEAR(stats("head.weight").second, 0.25, 0.01);
  EXPECT_NEAR(stats("norm.weight").first, 1.0, 0.03);
}

TEST(Synth, DeterministicAndIndependentOfThreadsAndSharding) {
  const ModelConfig cfg = tiny_config();
  TempDir a, b, c, s;
  write_synthetic_checkpoint(cfg, 5, a.path.string(), quiet());
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  write_synthetic_checkpoint(cfg, 5, b.path.string(), quiet());
  omp_set_num_threads(threads);
  write_synthetic_checkpoint(cfg, 6, c.path.string(), quiet());
  for (const char* f : {"model.safetensors", "model.safetensors.index.json", "config.json"})
    EXPECT_TRUE(read_file(a / f) == read_file(b / f)) << f;
  EXPECT_FALSE(read_file(a / "model.safetensors") == read_file(c / "model.safetensors"));

  SynthOptions o;
  o.max_shard_bytes = 2 << 20;
  const SynthSummary sum = write_synthetic_checkpoint(cfg, 5, s.path.string(), o);
  EXPECT_GT(sum.shards, 4);
  char first[64];
  std::snprintf(first, sizeof first, "model-00001-of-%05lld.safetensors", (long long)sum.shards);
  EXPECT_TRUE(fs::exists(s / first));
  for (auto& e : fs::directory_iterator(s.path))
    if (e.path().extension() == ".safetensors") {
      const auto f = st::SafetensorsFile::open(e.path().string(), false);
      EXPECT_LE(f.file_size() - f.data_offset(), 2u << 20) << e.path();  // payload within the limit
    }
  const HfCheckReport r = check_hf_checkpoint(s.path.string(), cfg);
  EXPECT_TRUE(r.ok()) << r.summary();
  EXPECT_EQ(r.shards, sum.shards);
  // Tensor by tensor, the sharded payloads equal the single-file ones.
  const auto one = st::Checkpoint::open(a.path.string()), many = st::Checkpoint::open(s.path.string());
  ASSERT_EQ(one.tensors().size(), many.tensors().size());
  for (auto& [name, e] : one.tensors()) {
    const auto* m = many.find(name);
    ASSERT_NE(m, nullptr) << name;
    auto x = e.file->data(*e.info), y = m->file->data(*m->info);
    EXPECT_TRUE(std::equal(x.begin(), x.end(), y.begin(), y.end())) << name;
  }
}

// The generator uses basic IEEE operations only (no libm, no FMA contraction): the bytes are the same on
// every machine and ISA. This pins them; a deliberate change of the value recipe updates the constant.
TEST(Synth, PinnedBytesForSeed9) {
  TempDir d;
  write_synthetic_checkpoint(tiny_config(), 9, d.path.string(), quiet());
  const std::string b = read_file(d / "model.safetensors");
  EXPECT_EQ(XXH3_64bits(b.data(), b.size()), 0xf4a2ea9f906dd34eull) << std::hex << XXH3_64bits(b.data(), b.size());
}

TEST(Synth, ProgressAlign64AndOverwrite) {
  const ModelConfig cfg = tiny_config();
  TempDir d;
  uint64_t last = 0, calls = 0, total = 0;
  SynthOptions o;
  o.data_align = 64;
  o.progress = [&](uint64_t done, uint64_t tot) {
    EXPECT_GT(done, last);
    last = done;
    total = tot;
    ++calls;
  };
  const SynthSummary s = write_synthetic_checkpoint(cfg, 3, d.path.string(), o);
  EXPECT_EQ(last, s.tensor_bytes);
  EXPECT_EQ(total, s.tensor_bytes);
  EXPECT_GE(calls, 786u);
  const auto f = st::SafetensorsFile::open(d / "model.safetensors");
  for (auto& t : f.tensors()) EXPECT_EQ((f.data_offset() + t.begin) % 64, 0u) << t.name;
  EXPECT_TRUE(check_hf_checkpoint(d.path.string(), cfg).ok());

  expect_error([&] { write_synthetic_checkpoint(cfg, 3, d.path.string(), quiet()); }, {"is not empty"});
  SynthOptions ow;
  ow.overwrite = true;
  write_synthetic_checkpoint(cfg, 3, d.path.string(), ow);  // replaces the aligned files
  EXPECT_EQ(st::SafetensorsFile::open(d / "model.safetensors").tensors().front().begin, 0u);
  write_file(d / "notes.txt", "mine");
  expect_error([&] { write_synthetic_checkpoint(cfg, 3, d.path.string(), ow); }, {"notes.txt", "refusing"});
}

TEST(Synth, RealVocabularyCopiesTokenizer) {
  ModelConfig cfg = tiny_config();
  cfg.vocab_size = 129280;
  cfg.hidden_size = 128;  // keeps embed + head at 66 MB
  cfg.num_hidden_layers = 1;
  cfg.num_hash_layers = 1;
  cfg.compress_ratios = {0};
  cfg.n_routed_experts = 8;
  TempDir d;
  expect_error([&] { write_synthetic_checkpoint(cfg, 1, d.path.string(), quiet()); }, {"tokenizer_dir"});
  SynthOptions o;
  o.tokenizer_dir = kTokenizerDir;
  write_synthetic_checkpoint(cfg, 1, d.path.string(), o);
  EXPECT_TRUE(read_file(d / "tokenizer.json") == read_file(kTokenizerDir + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(d / "tokenizer_config.json"));
  EXPECT_TRUE(check_hf_checkpoint(d.path.string(), cfg).ok());
  EXPECT_EQ(load_hf_config(d / "config.json").vocab_size, 129280);
}

}  // namespace
}  // namespace dsv4::test
