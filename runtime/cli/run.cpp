#include "runtime/cli/run.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "layout.hpp"
#include "model.hpp"
#include "plan/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/profile.hpp"
#include "runtime/io/output_file.hpp"
#include "runtime/serving/engine_loop.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kEos = int32_t(gen::kEosTokenId);

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// --prompt values, then the prompts file's lines ("-": stdin). A blank prompt is an error naming it:
// skipping it would shift every later request's index (and its sampling stream).
std::vector<std::string> read_prompts(const GenerateOptions& opt) {
  std::vector<std::string> prompts = opt.prompts;
  for (size_t i = 0; i < prompts.size(); ++i)
    if (blank(prompts[i])) throw Error("--prompt number " + std::to_string(i + 1) + " is empty");
  if (!opt.prompts_file.empty()) {
    std::ifstream file;
    if (opt.prompts_file != "-") {
      file.open(opt.prompts_file);
      if (!file) throw Error(opt.prompts_file + ": cannot open prompts file");
    }
    std::istream& in = opt.prompts_file == "-" ? std::cin : file;
    const std::string name = opt.prompts_file == "-" ? "stdin" : opt.prompts_file;
    int64_t n = 0;
    for (std::string line; std::getline(in, line);) {
      ++n;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (blank(line)) throw Error(name + ":" + std::to_string(n) + ": empty prompt (one user message per line, no blank lines)");
      prompts.push_back(line);
    }
    if (in.bad()) throw Error(name + ": read error");
  }
  if (prompts.empty()) throw Error("run: no prompts (give --prompt TEXT or --prompts-file FILE, - for stdin)");
  return prompts;
}

// At most `n` bytes of s, cut at a character boundary, for one-line previews.
std::string preview(const std::string& s, size_t n) {
  std::string r = s.substr(0, std::min(n, s.size()));
  while (r.size() < s.size() && !r.empty() && (static_cast<unsigned char>(s[r.size()]) & 0xC0) == 0x80) r.pop_back();
  for (char& c : r)
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  if (r.size() < s.size()) r.append("...");
  return r;
}

// Rank 0's view of every request: streaming decoder, timing, output text.
struct Shown {
  std::string prompt;
  int64_t id = -1;                // the loop's request id
  int64_t prompt_tokens = 0;
  std::unique_ptr<StreamDecoder> dec;
  std::string text;
  size_t printed = 0;             // bytes of text already on stdout (one request: streamed)
  int64_t tokens = 0;
  double ttft = -1;
  std::string stop;               // why it ended (empty: running)
};

const char* stop_name(FinishReason r, int32_t last_token) {
  switch (r) {
    case FinishReason::Stop: return last_token == kEos ? "eos" : "stop_token";
    case FinishReason::Length: return "max_new_tokens";
    case FinishReason::Context: return "max_context";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Rejected: return "rejected";
    default: return "running";
  }
}

}  // namespace

std::string resolve_tokenizer_path(const std::string& tokenizer, const std::string& weights) {
  if (!tokenizer.empty()) {
    const std::string p = fs::is_directory(tokenizer) ? tokenizer + "/tokenizer.json" : tokenizer;
    if (!fs::is_regular_file(p)) throw Error("--tokenizer: " + p + " does not exist");
    return p;
  }
  if (!weights.empty() && fs::is_regular_file(weights + "/tokenizer.json")) return weights + "/tokenizer.json";
  return DSV4_DATA_DIR "/tokenizer/tokenizer.json";
}

int run_generate(const Comm& comm, const GenerateOptions& opt) {
  const int P = comm.size();
  const bool root = comm.rank() == 0;
  if (opt.max_new_tokens < 1) throw Error("--max-new-tokens must be at least 1");
  SamplingParams sp;
  sp.temperature = opt.temperature, sp.top_p = opt.top_p, sp.top_k = opt.top_k, sp.seed = opt.seed;
  if (!std::isfinite(opt.temperature) || opt.temperature < 0)
    throw Error("--temperature must be a number >= 0, got " + std::to_string(opt.temperature));
  if (!(opt.top_p > 0 && opt.top_p <= 1)) throw Error("--top-p must be in (0, 1], got " + std::to_string(opt.top_p));
  if (opt.top_k < 0) throw Error("--top-k must be >= 0 (0 = off), got " + std::to_string(opt.top_k));
  check_sampling(sp);
  for (const auto& s : opt.stop)
    if (s.empty()) throw Error("--stop: empty stop string");
  const double t_start = comm.wtime();
  const std::atomic<bool>& stop = cli::install_stop_handlers();

  // Rank 0 reads, templates and tokenizes the prompts (only it loads the tokenizer and submits).
  std::unique_ptr<Tokenizer> tok;
  std::vector<Shown> shown;
  std::vector<std::vector<int32_t>> ids;
  OutputFile report;
  double tok_load_s = 0;
  if (root) {
    if (!opt.json_report.empty()) report = OutputFile(opt.json_report, "JSON report");
    const auto texts = read_prompts(opt);
    const std::string path = resolve_tokenizer_path(opt.tokenizer, opt.weights);
    const double t0 = comm.wtime();
    tok = std::make_unique<Tokenizer>(Tokenizer::load(path));
    tok_load_s = comm.wtime() - t0;
    std::fprintf(stderr, "%s: tokenizer %s\n", "run", path.c_str());
    if (tok->size() > gen::kVocabSize)
      throw Error(path + ": the tokenizer has " + std::to_string(tok->size()) + " ids, the model's vocabulary " +
                  std::to_string(gen::kVocabSize));
    const ThinkingMode mode = opt.thinking ? ThinkingMode::Thinking : ThinkingMode::Chat;
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<ChatMessage> msgs(opt.system.empty() ? 1 : 2);
      if (!opt.system.empty()) msgs.front().role = ChatRole::System, msgs.front().content = opt.system;
      msgs.back().role = ChatRole::User, msgs.back().content = texts[i];
      ids.push_back(tokenize_chat(*tok, msgs, ChatOptions{.mode = mode}));
      if (int64_t(ids.back().size()) > gen::kMaxContext)
        throw Error("prompt " + std::to_string(i) + ": " + std::to_string(ids.back().size()) +
                    " tokens do not fit max_context " + std::to_string(gen::kMaxContext));
      Shown s;
      s.prompt = texts[i];
      s.prompt_tokens = int64_t(ids.back().size());
      s.dec = std::make_unique<StreamDecoder>(*tok);
      shown.push_back(std::move(s));
    }
  }

  Engine engine(comm, opt.weights, opt.verify_checksums);
  LoopOptions lo;
  lo.exit_when_idle = true;
  lo.max_queue = 0;  // every prompt is queued up front
  lo.drain_timeout_s = 0;  // SIGTERM: cancel what runs now, report what was generated
  EngineLoop loop(comm, engine, plan_limits(P), lo);
  const int64_t N = int64_t(shown.size());

  double t0 = 0;
  if (root) {
    std::fprintf(stderr, "run: %lld request(s) on %d rank(s) (config %s), tokenizer loaded in %.2f s, start-up %.2f s\n",
                 (long long)N, P, gen::kConfigName, tok_load_s, comm.wtime() - t_start);
    for (int64_t i = 0; i < N; ++i) {
      GenerationRequest req;
      req.prompt = ids[size_t(i)];
      req.max_new_tokens = opt.max_new_tokens;
      req.sampling = sp;
      req.stop_tokens = {kEos};
      std::string why;
      const auto sink = [&, i](const TokenEvent& ev) {
        Shown& s = shown[size_t(i)];
        if (!s.stop.empty()) return;  // ended by a stop string; the cancellation's event follows
        if (ev.token >= 0) {
          if (s.tokens++ == 0) s.ttft = comm.wtime() - t0;
          s.text += s.dec->push(ev.token);
        }
        if (ev.finish != FinishReason::None) {
          s.text += s.dec->finish();
          s.stop = stop_name(ev.finish, ev.token);
        }
        for (const auto& stop : opt.stop)  // a stop string ends the text where it starts
          if (const size_t at = s.text.find(stop); at != std::string::npos) {
            s.text.resize(at);
            if (s.stop.empty()) loop.cancel(s.id);
            s.stop = "stop_string";
          }
        // Stream when there is one request; hold back what could be the start of a stop string.
        size_t hold = 0;
        if (s.stop.empty())
          for (const auto& stop : opt.stop) hold = std::max(hold, std::min(stop.size() - 1, s.text.size()));
        if (N == 1 && s.text.size() - hold > s.printed) {
          std::fwrite(s.text.data() + s.printed, 1, s.text.size() - hold - s.printed, stdout);
          s.printed = s.text.size() - hold;
          std::fflush(stdout);
        }
        if (s.stop.empty()) return;
        if (N == 1) {
          std::fputs("\n", stdout);
          std::fflush(stdout);
          std::fprintf(stderr, "=== request 0: %lld new tokens, stop: %s ===\n", (long long)s.tokens, s.stop.c_str());
        } else {
          std::fprintf(stderr, "=== request %lld (rank %d, %lld prompt tokens): %s ===\n", (long long)i, loop.owner(s.id),
                       (long long)s.prompt_tokens, preview(s.prompt, 60).c_str());
          std::fflush(stderr);
          std::printf("%s\n", s.text.c_str());
          std::fflush(stdout);
          std::fprintf(stderr, "=== request %lld: %lld new tokens, stop: %s ===\n", (long long)i, (long long)s.tokens, s.stop.c_str());
        }
      };
      shown[size_t(i)].id = loop.submit_local(std::move(req), i, -1, sink, why);
      if (shown[size_t(i)].id < 0) throw Error("prompt " + std::to_string(i) + ": " + why);
    }
    if (N == 1)
      std::fprintf(stderr, "=== request 0 (%lld prompt tokens): %s ===\n", (long long)shown[0].prompt_tokens,
                   preview(shown[0].prompt, 60).c_str());
  }

  engine.executor().set_profiling(opt.profile);
  comm.barrier();
  t0 = comm.wtime();
  loop.run(&stop);
  const double loop_s = comm.wtime() - t0;
  const LoopStats& st = loop.loop_stats();
  const int rc = loop.stopped() ? cli::kStoppedExit : 0;

  // Per-rank figures for the report: peak RSS, plan collectives, scheduler exchange.
  struct RankStats {
    double rss, comm, exchange;
  } mine{double(peak_rss_bytes()), st.comm_s, st.exchange_s};
  std::vector<RankStats> ranks(static_cast<size_t>(P));
  comm.allgather(&mine, sizeof mine, ranks.data());
  const std::vector<double> prof =
      opt.profile ? profile_mean_over_ranks(comm, engine.executor().op_seconds()) : std::vector<double>{};
  if (!root) return rc;

  double rss_max = 0, comm_mean = 0, exchange_mean = 0, ttft_sum = 0, ttft_max = 0;
  for (const auto& r : ranks) rss_max = std::max(rss_max, r.rss), comm_mean += r.comm / P, exchange_mean += r.exchange / P;
  int64_t generated = 0;
  for (const auto& s : shown) ttft_sum += s.ttft, ttft_max = std::max(ttft_max, s.ttft), generated += s.tokens;
  const double rate_prefill = st.prefill_s > 0 ? double(st.prefill_tokens) / st.prefill_s : 0.0;
  const double rate_decode = st.decode_s > 0 ? double(st.decode_only_tokens) / st.decode_s : 0.0;
  std::fprintf(stderr,
               "run: %lld request(s), %lld steps in %.3f s on %d rank(s)\n"
               "  TTFT         mean %.3f s, max %.3f s\n"
               "  prefill      %lld prompt tokens, %.1f tokens/s (%.3f s of steps with prefill chunks)\n"
               "  decode       %lld tokens, %.1f tokens/s (%.3f s of decode-only steps)\n"
               "  generated    %lld tokens, %.1f tokens/s overall\n"
               "  collectives  %.1f%% of the loop (plan collectives, mean over ranks) + %.1f%% plan/token exchange\n"
               "  memory       peak RSS %.1f MiB (max over ranks), arena %.1f MiB per rank\n",
               (long long)N, (long long)st.steps, loop_s, P, ttft_sum / double(N), ttft_max, (long long)st.prefill_tokens,
               rate_prefill, st.prefill_s, (long long)st.decode_only_tokens, rate_decode, st.decode_s, (long long)generated,
               double(generated) / std::max(loop_s, 1e-9), 100 * comm_mean / std::max(loop_s, 1e-9),
               100 * exchange_mean / std::max(loop_s, 1e-9), rss_max / 1048576.0, gen::kArenaBytes / 1048576.0);

  if (opt.profile) print_profile(stderr, "every step of the run", prof, engine.executor().profiled_steps());
  if (report.is_open()) {
    nlohmann::ordered_json r;
    r["config"] = gen::kConfigName;
    r["ranks"] = P;
    r["requests"] = N;
    r["interrupted"] = loop.stopped();  // SIGTERM/SIGINT: unfinished requests end with stop "cancelled"
    r["temperature"] = opt.temperature;
    r["top_p"] = opt.top_p;
    r["top_k"] = opt.top_k;
    r["seed"] = opt.seed;
    r["steps"] = st.steps;
    r["loop_s"] = loop_s;
    r["tokenizer_load_s"] = tok_load_s;
    r["ttft_mean_s"] = ttft_sum / double(N);
    r["ttft_max_s"] = ttft_max;
    r["prompt_tokens"] = st.prefill_tokens;
    r["prefill_steps_s"] = st.prefill_s;
    r["prefill_tokens_per_s"] = rate_prefill;
    r["decode_tokens"] = st.decode_tokens;
    r["decode_only_tokens"] = st.decode_only_tokens;
    r["decode_steps_s"] = st.decode_s;
    r["decode_tokens_per_s"] = rate_decode;
    r["generated_tokens"] = generated;
    r["collective_s_mean"] = comm_mean;
    r["collective_share"] = comm_mean / std::max(loop_s, 1e-9);
    r["exchange_s_mean"] = exchange_mean;
    r["peak_rss_bytes_max"] = int64_t(rss_max);
    r["arena_bytes"] = gen::kArenaBytes;
    if (opt.profile) r["profile"] = profile_json(prof);
    auto& reqs = r["per_request"] = nlohmann::ordered_json::array();
    for (int64_t i = 0; i < N; ++i) {
      const Shown& s = shown[size_t(i)];
      reqs.push_back({{"index", i},
                      {"rank", loop.owner(s.id)},
                      {"prompt_tokens", s.prompt_tokens},
                      {"new_tokens", s.tokens},
                      {"stop", s.stop},
                      {"ttft_s", s.ttft},
                      {"text", s.text}});
    }
    report.commit(r.dump(2) + "\n");
  }
  if (loop.stopped()) std::fprintf(stderr, "run: interrupted by a signal; unfinished requests were cancelled\n");
  return rc;
}

}  // namespace dsv4

namespace dsv4::cli {

Subcommand add_run(CLI::App& app) {
  struct Opt {
    GenerateOptions gen;
    int threads = 0;
  };
  auto o = std::make_shared<Opt>();
  GenerateOptions& g = o->gen;
  auto* c = app.add_subcommand("run", "generate text for chat prompts (the main job; run under mpirun with the plan's ranks)");
  c->add_option("-w,--weights", g.weights, "converted weights folder")->required();
  c->add_option("--prompt", g.prompts, "user message (one request each; repeat for several)");
  c->add_option("--prompts-file", g.prompts_file, "more user messages, one per line (- for stdin; a blank line is an error)");
  c->add_option("--system", g.system, "system prompt before each user message");
  c->add_option("--max-new-tokens", g.max_new_tokens, "tokens to generate per request (default 64)");
  c->add_option("--temperature", g.temperature, "sampling temperature, 0 = argmax (default 0.6)");
  c->add_option("--top-p", g.top_p, "nucleus sampling: keep the most likely tokens up to this probability mass (default 1 = off)");
  c->add_option("--top-k", g.top_k, "keep the k most likely tokens (default 0 = off)");
  c->add_option("--stop", g.stop, "stop string: the text ends before it (repeat for several)");
  c->add_option("--seed", g.seed, "sampling seed (default 33377335)");
  c->add_flag("--thinking", g.thinking, "thinking mode: the prompt ends with <think> instead of </think>");
  c->add_option("--json-report", g.json_report, "timing report and per-request outputs as JSON");
  c->add_option("--tokenizer", g.tokenizer, "tokenizer.json or its folder (default: <weights>/tokenizer.json, else data/tokenizer)");
  c->add_flag("--checksums", g.verify_checksums, "verify weight checksums at start-up");
  c->add_flag("--profile", g.profile, "time every op: a table by op kind, layer kind and op on stderr (and in the JSON report)");
  c->add_option("--threads", o->threads, kThreadsHelp);
  return {c, [o](ProcessArgs args) {
            return on_ranks(args, o->threads, [&](const Comm& comm) { return run_generate(comm, o->gen); });
          }};
}

}  // namespace dsv4::cli
