// dsv4: the static inference binary, built for one shape config (see `dsv4 info`).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "model.hpp"
#include "plan/error.hpp"
#include "runtime/comm.hpp"
#include "runtime/eval.hpp"
#include "runtime/generate.hpp"
#include "runtime/plan_info.hpp"
#include "runtime/weight_store.hpp"
#include "tools/checkpoint/check_hf.hpp"
#include "tools/checkpoint/convert.hpp"
#include "tools/checkpoint/synth.hpp"
#include "tools/config/config_json.hpp"
#include "weights.hpp"

namespace {

dsv4::ShapeConfig builtin_config() { return dsv4::parse_shape_config(dsv4::gen::kConfigJson, dsv4::gen::kConfigName, "built-in config"); }

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

int main(int argc, char** argv) {
  CLI::App app{"dsv4: DeepSeek-V4-Flash inference engine (static plan)"};
  app.require_subcommand(1);

  bool info_json = false;
  auto* info = app.add_subcommand("info", "print the built-in config, plan hash, bytes per rank, ops per layer kind");
  info->add_flag("--json", info_json, "print as JSON");

  uint64_t seed = 0;
  std::string out, hf, weights, config_path;
  auto* synth = app.add_subcommand("synth", "write a synthetic checkpoint of the built-in config in the official HF format");
  synth->add_option("--seed", seed, "random seed")->required();
  synth->add_option("-o,--out", out, "output checkpoint folder")->required();
  uint64_t synth_align = 1;
  synth->add_option("--align", synth_align,
                    "tensor data alignment: 1 = the official back-to-back layout (default); N > 1 pads tensors to N bytes, "
                    "which the official safetensors crate rejects");

  auto* convert = app.add_subcommand("convert", "convert an HF checkpoint into this plan's per-rank weight files");
  convert->add_option("--hf", hf, "HF checkpoint folder (safetensors shards + index)")->required();
  convert->add_option("-o,--out", out, "output weights folder (must not exist)")->required();

  int64_t rank = -1;
  bool checksums = false;
  auto* check = app.add_subcommand("check", "validate a converted weights folder against this plan");
  check->add_option("--weights,-w", weights, "weights folder")->required();
  check->add_option("--rank", rank, "check one rank (default: all)");
  check->add_flag("--checksums", checksums, "also verify every tensor's XXH3 checksum");

  auto* check_hf = app.add_subcommand("check-hf", "check an HF checkpoint folder against a config's tensor contract");
  check_hf->add_option("--hf", hf, "HF checkpoint folder")->required();
  check_hf->add_option("--config", config_path, "shape config .json (default: the built-in config)");

  dsv4::EvalOptions ev;
  std::vector<std::string> ev_ids, ev_forced, ev_logits, ev_tokens;
  auto* eval = app.add_subcommand("eval", "teacher-forced prefill + decode of one or more prompts, logits to .npy (run under mpirun for several ranks)");
  eval->add_option("-w,--weights", ev.weights, "converted weights folder")->required();
  eval->add_option("--input-ids", ev_ids, "prompt token ids (.npy int32/int64 [L]); repeat for several requests")->required();
  eval->add_option("--forced-tokens", ev_forced, "tokens fed at decode steps (.npy [N]: N-1 steps, step i feeds tokens[i-1]); none or one per request (- for greedy)");
  eval->add_option("--decode-steps", ev.decode_steps, "greedy decode steps without --forced-tokens (default 16)");
  eval->add_option("--logits-out", ev_logits, "float32 logits [1 + steps, vocab] (.npy); one per request")->required();
  eval->add_option("--tokens-out", ev_tokens, "greedy tokens (.npy int32); none or one per request");
  eval->add_option("--chunk", ev.chunk, "prefill chunk length (default: max_tokens_per_step)");
  eval->add_option("--assign", ev.assign, "requests to DP ranks: rr (request i -> rank i % ranks, default) or tokens (balance tokens)");
  eval->add_option("--step-logits-out", ev.step_logits_out, "folder: full logits rows of every step, per rank (step-S-rank-R.npy)");
  eval->add_option("--trace-out", ev.trace_out, "write every op output per step, named as the golden dumps (one request)");
  eval->add_option("--inject-from", ev.inject_from, "golden dump folder: replace each layer's input with its value (one request)");
  eval->add_option("--prefix", ev.prefix, "step folder prefix for --trace-out / --inject-from (e.g. len7_)");
  eval->add_flag("--inject-ops", ev.inject_ops, "inject every dumped op output (op-level checks), not only layer inputs");
  eval->add_flag("--checksums", ev.verify_checksums, "verify weight checksums at start-up");
  eval->add_option("--report-json", ev.report_json, "timing report (TTFT, tokens/s, collective share, memory) as JSON");
  int threads = 0;
  eval->add_option("--threads", threads, "kernel threads per rank (default: cores / ranks on the node)");

  dsv4::GenerateOptions gen_opt;
  int run_threads = 0;
  auto* run = app.add_subcommand("run", "generate text for chat prompts (the main job; run under mpirun with the plan's ranks)");
  run->add_option("-w,--weights", gen_opt.weights, "converted weights folder")->required();
  run->add_option("--prompt", gen_opt.prompts, "user message (one request each; repeat for several)");
  run->add_option("--prompts-file", gen_opt.prompts_file, "more user messages, one per line");
  run->add_option("--max-new-tokens", gen_opt.max_new_tokens, "tokens to generate per request (default 64)");
  run->add_option("--temperature", gen_opt.temperature, "sampling temperature, 0 = argmax (default 0.6)");
  run->add_option("--seed", gen_opt.seed, "sampling seed (default 33377335)");
  run->add_flag("--thinking", gen_opt.thinking, "thinking mode: the prompt ends with <think> instead of </think>");
  run->add_option("--json-report", gen_opt.json_report, "timing report and per-request outputs as JSON");
  run->add_option("--tokenizer", gen_opt.tokenizer, "tokenizer.json or its folder (default: <weights>/tokenizer.json, else data/tokenizer)");
  run->add_flag("--checksums", gen_opt.verify_checksums, "verify weight checksums at start-up");
  run->add_option("--threads", run_threads, "kernel threads per rank (default: cores / ranks on the node)");

  CLI11_PARSE(app, argc, argv);
  if (run->parsed()) {
    dsv4::Comm comm(&argc, &argv);
    if (comm.size() != dsv4::gen::kRanks)
      comm.abort("the plan is built for " + std::to_string(dsv4::gen::kRanks) + " ranks (config " +
                 dsv4::gen::kConfigName + "), the job has " + std::to_string(comm.size()));
    comm.configure_threads(run_threads);
    try {
      return dsv4::run_generate(comm, gen_opt);
    } catch (const std::exception& e) {
      if (comm.size() > 1) comm.abort(e.what());  // ends every rank, none waits in a collective
      std::fprintf(stderr, "dsv4: error: %s\n", e.what());
      return 1;
    }
  }
  if (eval->parsed()) {
    dsv4::Comm comm(&argc, &argv);
    if (comm.size() != dsv4::gen::kRanks)
      comm.abort("the plan is built for " + std::to_string(dsv4::gen::kRanks) + " ranks (config " +
                 dsv4::gen::kConfigName + "), the job has " + std::to_string(comm.size()));
    comm.configure_threads(threads);
    try {
      const size_t n = ev_ids.size();
      auto one_per_request = [&](const std::vector<std::string>& v, const char* opt, bool optional) {
        if (v.size() != n && !(optional && v.empty()))
          throw dsv4::Error(std::string(opt) + ": " + std::to_string(v.size()) + " given for " + std::to_string(n) +
                            " --input-ids (expected " + (optional ? "none or " : "") + "one per request)");
      };
      one_per_request(ev_forced, "--forced-tokens", true);
      one_per_request(ev_logits, "--logits-out", false);
      one_per_request(ev_tokens, "--tokens-out", true);
      for (size_t i = 0; i < n; ++i)
        ev.requests.push_back({ev_ids[i], ev_forced.empty() || ev_forced[i] == "-" ? "" : ev_forced[i], ev_logits[i],
                               ev_tokens.empty() ? "" : ev_tokens[i]});
      return dsv4::run_eval(comm, ev);
    } catch (const std::exception& e) {
      if (comm.size() > 1) comm.abort(e.what());  // ends every rank, none waits in a collective
      std::fprintf(stderr, "dsv4: error: %s\n", e.what());
      return 1;
    }
  }
  try {
    if (info->parsed()) {
      const auto j = dsv4::plan_info();
      std::fputs(info_json ? (j.dump(2) + "\n").c_str() : dsv4::plan_info_text(j).c_str(), stdout);
    } else if (synth->parsed()) {
      const auto t0 = std::chrono::steady_clock::now();
      dsv4::SynthOptions opt;
      opt.tokenizer_dir = DSV4_DATA_DIR "/tokenizer";
      opt.data_align = synth_align;
      opt.progress = [&](uint64_t d, uint64_t t) { progress_bar("synth", d, t, t0); };
      const auto s = dsv4::write_synthetic_checkpoint(builtin_config().model, seed, out, opt);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("wrote %s: %lld tensors in %lld shards, %.1f MiB in %.2f s (%.1f MB/s)\n", out.c_str(),
                  (long long)s.tensors, (long long)s.shards, s.tensor_bytes / 1048576.0, sec,
                  s.tensor_bytes / 1e6 / std::max(sec, 1e-9));
    } else if (convert->parsed()) {
      const auto s = dsv4::convert_checkpoint(hf, out, dsv4::plan_weights_target());
      std::printf("wrote %s for plan %016llx (%s, %lld ranks): %lld tensors in %lld files, %.1f MiB\n", out.c_str(),
                  (unsigned long long)dsv4::gen::kPlanHash, dsv4::gen::kConfigName, (long long)dsv4::gen::kRanks,
                  (long long)s.tensors, (long long)s.files, s.bytes / 1048576.0);
      std::printf("skipped %lld MTP tensor(s) and %zu unknown tensor(s)\n", (long long)s.mtp_skipped, s.unknown.size());
      std::printf("conversion: %.2f s, %.1f MB/s, peak RSS %.1f MiB\n", s.seconds, s.mb_per_s,
                  s.peak_rss_bytes / 1048576.0);
    } else if (check->parsed()) {
      const int64_t r0 = rank < 0 ? 0 : rank, r1 = rank < 0 ? dsv4::gen::kRanks : rank + 1;
      for (int64_t r = r0; r < r1; ++r) {
        const auto ws = dsv4::WeightStore::open(weights, r, checksums);
        for (const auto& f : ws.files())
          std::printf("rank %lld  %-40s %6llu tensors %14llu bytes%s\n", (long long)r, f.path.c_str(),
                      (unsigned long long)f.tensors, (unsigned long long)f.bytes, f.checksums_verified ? "  checksums ok" : "");
      }
      std::printf("ok: %s matches plan %016llx (%s)\n", weights.c_str(), (unsigned long long)dsv4::gen::kPlanHash,
                  dsv4::gen::kConfigName);
    } else if (check_hf->parsed()) {
      const auto cfg = config_path.empty() ? builtin_config() : dsv4::load_shape_config(config_path);
      const auto rep = dsv4::check_hf_checkpoint(hf, cfg.model);
      std::printf("%s\n", rep.summary().c_str());
      if (!rep.ok()) return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsv4: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
