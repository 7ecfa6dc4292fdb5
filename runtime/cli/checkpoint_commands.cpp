// `dsv4 synth`, `convert`, `check`, `check-hf`: checkpoints and converted weights (one process, no MPI).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "model.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/engine/weight_store.hpp"
#include "tools/checkpoint/check_hf.hpp"
#include "tools/checkpoint/convert.hpp"
#include "tools/checkpoint/synth.hpp"
#include "tools/config/config_json.hpp"
#include "weights.hpp"

namespace dsv4::cli {
namespace {

ShapeConfig builtin_config() { return parse_shape_config(gen::kConfigJson, gen::kConfigName, "built-in config"); }

// One-line progress bar with bytes and ETA on stderr.
void progress_bar(const char* what, uint64_t done, uint64_t total, std::chrono::steady_clock::time_point t0) {
  static auto last = std::chrono::steady_clock::time_point{};
  const auto now = std::chrono::steady_clock::now();
  if (now - last < std::chrono::milliseconds(500) && done < total) return;
  last = now;
  const double s = std::chrono::duration<double>(now - t0).count(), rate = done / std::max(s, 1e-9);
  std::fprintf(stderr, "\r%s %8.1f / %.1f MiB  %6.1f MiB/s  ETA %4.0fs", what, done / 1048576.0, total / 1048576.0,
               rate / 1048576.0, rate > 0 ? (total - done) / rate : 0.0);
  if (done >= total) std::fputc('\n', stderr);
}

}  // namespace

Subcommand add_synth(CLI::App& app) {
  struct Opt {
    uint64_t seed = 0, align = 1;
    std::string out;
  };
  auto o = std::make_shared<Opt>();
  auto* c = app.add_subcommand("synth", "write a synthetic checkpoint of the built-in config in the official HF format");
  c->add_option("--seed", o->seed, "random seed")->required();
  c->add_option("-o,--out", o->out, "output checkpoint folder")->required();
  c->add_option("--align", o->align,
                "tensor data alignment: 1 = the official back-to-back layout (default); N > 1 pads tensors to N bytes, "
                "which the official safetensors crate rejects");
  return {c, [o](ProcessArgs) {
            const auto t0 = std::chrono::steady_clock::now();
            SynthOptions opt;
            opt.tokenizer_dir = DSV4_DATA_DIR "/tokenizer";
            opt.data_align = o->align;
            opt.progress = [&](uint64_t d, uint64_t t) { progress_bar("synth", d, t, t0); };
            const auto s = write_synthetic_checkpoint(builtin_config().model, o->seed, o->out, opt);
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            std::printf("wrote %s: %lld tensors in %lld shards, %.1f MiB in %.2f s (%.1f MB/s)\n", o->out.c_str(),
                        (long long)s.tensors, (long long)s.shards, s.tensor_bytes / 1048576.0, sec,
                        s.tensor_bytes / 1e6 / std::max(sec, 1e-9));
            return 0;
          }};
}

Subcommand add_convert(CLI::App& app) {
  struct Opt {
    std::string hf, out;
  };
  auto o = std::make_shared<Opt>();
  auto* c = app.add_subcommand("convert", "convert an HF checkpoint into this plan's per-rank weight files");
  c->add_option("--hf", o->hf, "HF checkpoint folder (safetensors shards + index)")->required();
  c->add_option("-o,--out", o->out, "output weights folder (must not exist)")->required();
  return {c, [o](ProcessArgs) {
            const auto s = convert_checkpoint(o->hf, o->out, plan_weights_target());
            std::printf("wrote %s for plan %016llx (%s, %lld ranks): %lld tensors in %lld files, %.1f MiB\n",
                        o->out.c_str(), (unsigned long long)gen::kPlanHash, gen::kConfigName, (long long)gen::kRanks,
                        (long long)s.tensors, (long long)s.files, s.bytes / 1048576.0);
            std::printf("skipped %lld MTP tensor(s) and %zu unknown tensor(s)\n", (long long)s.mtp_skipped,
                        s.unknown.size());
            std::printf("conversion: %.2f s, %.1f MB/s, peak RSS %.1f MiB\n", s.seconds, s.mb_per_s,
                        s.peak_rss_bytes / 1048576.0);
            return 0;
          }};
}

Subcommand add_check(CLI::App& app) {
  struct Opt {
    std::string weights;
    int64_t rank = -1;
    bool checksums = false;
  };
  auto o = std::make_shared<Opt>();
  auto* c = app.add_subcommand("check", "validate a converted weights folder against this plan");
  c->add_option("--weights,-w", o->weights, "weights folder")->required();
  c->add_option("--rank", o->rank, "check one rank (default: all)");
  c->add_flag("--checksums", o->checksums,
              "verify every tensor's XXH3 checksum (default: only norms, scales, biases and other small tensors)");
  return {c, [o](ProcessArgs) {
            const int64_t r0 = o->rank < 0 ? 0 : o->rank, r1 = o->rank < 0 ? gen::kRanks : o->rank + 1;
            const WeightVerify how = o->checksums ? WeightVerify::Full : WeightVerify::Small;
            uint64_t all_t = 0, all_b = 0, ver_t = 0, ver_b = 0;
            double sec = 0;
            for (int64_t r = r0; r < r1; ++r) {
              const auto ws = WeightStore::open(o->weights, r, how);
              for (size_t k = 0; k < ws.files().size(); ++k) {
                const auto& f = ws.files()[k];
                std::printf("rank %lld  %-40s %6llu tensors %14llu bytes  %llu tensors (%llu bytes) checksummed%s\n",
                            (long long)r, f.path.c_str(), (unsigned long long)f.tensors, (unsigned long long)f.bytes,
                            (unsigned long long)f.tensors_verified, (unsigned long long)f.bytes_verified,
                            f.tensors > 0 && f.checksums_verified ? ": checksums ok" : "");
                if (k == 0 && r != r0) continue;  // the replicated file counts once in the totals
                all_t += f.tensors, all_b += f.bytes, ver_t += f.tensors_verified, ver_b += f.bytes_verified;
                sec += f.verify_seconds;
              }
            }
            std::printf("verified: headers and tensor tables in full; XXH3 of %llu of %llu tensors (%llu of %llu bytes, "
                        "%.3f s, %.0f MB/s)\n",
                        (unsigned long long)ver_t, (unsigned long long)all_t, (unsigned long long)ver_b,
                        (unsigned long long)all_b, sec, ver_b / 1e6 / std::max(sec, 1e-9));
            if (ver_t < all_t)
              std::printf("not verified: %llu tensors (%llu bytes): FP8/FP4 weight codes and 2-D BF16 matrices; "
                          "run with --checksums to hash every tensor\n",
                          (unsigned long long)(all_t - ver_t), (unsigned long long)(all_b - ver_b));
            std::printf("ok: %s matches plan %016llx (%s)\n", o->weights.c_str(), (unsigned long long)gen::kPlanHash,
                        gen::kConfigName);
            return 0;
          }};
}

Subcommand add_check_hf(CLI::App& app) {
  struct Opt {
    std::string hf, config;
  };
  auto o = std::make_shared<Opt>();
  auto* c = app.add_subcommand("check-hf", "check an HF checkpoint folder against a config's tensor contract");
  c->add_option("--hf", o->hf, "HF checkpoint folder")->required();
  c->add_option("--config", o->config, "shape config .json (default: the built-in config)");
  return {c, [o](ProcessArgs) {
            const auto cfg = o->config.empty() ? builtin_config() : load_shape_config(o->config);
            const auto rep = check_hf_checkpoint(o->hf, cfg.model);
            std::printf("%s\n", rep.summary().c_str());
            return rep.ok() ? 0 : 1;
          }};
}

}  // namespace dsv4::cli
