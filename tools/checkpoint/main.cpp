// dsv4_ckpt: write a synthetic official-format checkpoint, or check a checkpoint against the manifest.
//   dsv4_ckpt synth --hf-config path/config.json --out DIR [--seed N] [--layers N] [--mtp] ...
//   dsv4_ckpt synth --flash --layers 4 --out DIR --tokenizer-dir data/tokenizer
//   dsv4_ckpt check DIR [--hf-config path]     (default: DIR/config.json)
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "plan/error.hpp"
#include "tools/checkpoint/check_hf.hpp"
#include "tools/config/hf_config.hpp"
#include "tools/checkpoint/synth.hpp"

namespace {

// The official V4-Flash compress_ratios (spec §1): 0, 0, then 4/128 alternating, last layer 0, MTP 0.
std::vector<int64_t> flash_ratios() {
  std::vector<int64_t> r = {0, 0};
  for (int L = 2; L < 43; ++L) r.push_back(L % 2 == 0 ? 4 : 128);
  r.push_back(0);  // MTP block
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsv4 HF checkpoint tool: synthetic checkpoints and manifest checks"};
  app.require_subcommand(1);

  auto* syn = app.add_subcommand("synth", "write a synthetic checkpoint in the official format");
  std::string hf_config, out, tokenizer_dir;
  bool flash = false, mtp = false, overwrite = false;
  uint64_t seed = 1, align = 1;
  int64_t layers = -1;
  double shard_gb = 4.0;
  syn->add_option("--hf-config", hf_config, "HF config.json to take the model from");
  syn->add_flag("--flash", flash, "use the official V4-Flash config (spec §1)");
  syn->add_option("--layers", layers, "keep only the first N layers (compress_ratios truncated)");
  syn->add_option("--out", out, "output directory")->required();
  syn->add_option("--seed", seed, "PRNG seed");
  syn->add_option("--align", align, "tensor data alignment: 1 = official layout, 64 = padded (not crate-readable)");
  syn->add_option("--max-shard-gb", shard_gb, "shard size limit in GiB");
  syn->add_option("--tokenizer-dir", tokenizer_dir, "dir with tokenizer.json (needed for vocab 129280)");
  syn->add_flag("--mtp", mtp, "include the MTP tensors");
  syn->add_flag("--overwrite", overwrite, "replace an existing synthetic checkpoint in --out");

  auto* chk = app.add_subcommand("check", "check a checkpoint's index and headers against the manifest");
  std::string dir, chk_config;
  chk->add_option("dir", dir, "checkpoint directory")->required();
  chk->add_option("--hf-config", chk_config, "config.json to check against (default: DIR/config.json)");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*syn) {
      if (flash == !hf_config.empty()) throw dsv4::Error("synth: give exactly one of --flash or --hf-config");
      dsv4::ModelConfig cfg;
      if (flash) cfg.compress_ratios = flash_ratios();
      else cfg = dsv4::load_hf_config(hf_config);
      if (layers > 0) {
        if (layers > cfg.num_hidden_layers) throw dsv4::Error("synth: --layers exceeds num_hidden_layers");
        cfg.num_hidden_layers = layers;
        cfg.num_hash_layers = std::min(cfg.num_hash_layers, layers);
        cfg.compress_ratios.resize(size_t(layers));
        cfg.num_nextn_predict_layers = 0;
      }
      dsv4::SynthOptions opt;
      opt.max_shard_bytes = uint64_t(shard_gb * double(1ull << 30));
      opt.data_align = align;
      opt.include_mtp = mtp;
      opt.overwrite = overwrite;
      opt.tokenizer_dir = tokenizer_dir;
      const auto t0 = std::chrono::steady_clock::now();
      double last = -1;
      opt.progress = [&](uint64_t done, uint64_t total) {
        const double pct = 100.0 * double(done) / double(total);
        if (pct - last >= 5 || done == total) {
          last = pct;
          std::fprintf(stderr, "\r%6.1f%%  %.2f / %.2f GB", pct, done / 1e9, total / 1e9);
        }
      };
      const dsv4::SynthSummary s = dsv4::write_synthetic_checkpoint(cfg, seed, out, opt);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "\n");
      std::printf("%s: %lld tensors, %lld shard(s), %llu bytes in %.1f s (%.1f MB/s)\n", out.c_str(),
                  (long long)s.tensors, (long long)s.shards, (unsigned long long)s.tensor_bytes, sec,
                  double(s.tensor_bytes) / 1e6 / sec);
      return 0;
    }
    const std::string cpath = chk_config.empty() ? (std::filesystem::path(dir) / "config.json").string() : chk_config;
    const dsv4::HfCheckReport r = dsv4::check_hf_checkpoint(dir, dsv4::load_hf_config(cpath));
    std::printf("%s\n", r.summary(20).c_str());
    return r.ok() ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
