#include "runtime/cli/run.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "layout.hpp"
#include "model.hpp"
#include "plan/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kEos = int32_t(gen::kEosTokenId);
constexpr int64_t kSlots = gen::kMaxRequestsPerRank;

enum Stop : int32_t { kRunning = 0, kStopEos = 1, kStopLength = 2, kStopContext = 3 };
const char* stop_name(int32_t s) {
  return s == kStopEos ? "eos" : s == kStopLength ? "max_new_tokens" : s == kStopContext ? "max_context" : "running";
}

// One request on its owner rank.
struct Request {
  Request(int64_t i, std::vector<int32_t> p, Sampler s) : index(i), prompt(std::move(p)), sampler(std::move(s)) {}
  int64_t index;                // global request index (owner = index % ranks)
  std::vector<int32_t> prompt;  // chat-encoded prompt ids
  Sampler sampler;
  int32_t slot = -1;            // KV slot while admitted
  int64_t prefilled = 0;        // prompt tokens already in the cache
  std::vector<int32_t> out;     // generated ids; out.back() is fed at the next decode step
  int32_t stop = kRunning;
};

// What every rank tells every other after each step (one allgather): whether it still has work, its
// token counts, and the tokens it sampled, so rank 0 can stream them and all ranks agree to go on.
struct StepRecord {
  int32_t busy;            // pending or running requests remain on this rank
  int32_t prefill_tokens;  // prompt tokens this rank ran in the step
  int32_t decode_tokens;   // decode tokens this rank ran in the step
  int32_t sampled;         // entries used below
  int32_t request[kSlots], token[kSlots], stop[kSlots];
};

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}

std::vector<std::string> read_prompts(const GenerateOptions& opt) {
  std::vector<std::string> prompts = opt.prompts;
  if (!opt.prompts_file.empty()) {
    std::ifstream f(opt.prompts_file);
    if (!f) throw Error(opt.prompts_file + ": cannot open prompts file");
    for (std::string line; std::getline(f, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") != std::string::npos) prompts.push_back(line);
    }
  }
  if (prompts.empty()) throw Error("run: no prompts (give --prompt TEXT or --prompts-file FILE)");
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

// Rank 0 tokenizes every prompt and broadcasts the ids (only rank 0 loads the tokenizer).
std::vector<std::vector<int32_t>> share_prompts(const Comm& comm, const std::vector<std::vector<int32_t>>& mine) {
  int64_t n = int64_t(mine.size());
  comm.broadcast(&n, sizeof n, 0);
  std::vector<int64_t> lens(static_cast<size_t>(n));
  if (comm.rank() == 0)
    for (int64_t i = 0; i < n; ++i) lens[size_t(i)] = int64_t(mine[size_t(i)].size());
  comm.broadcast(lens.data(), n * int64_t(sizeof(int64_t)), 0);
  std::vector<int32_t> flat;
  for (int64_t i = 0; i < n && comm.rank() == 0; ++i) flat.insert(flat.end(), mine[size_t(i)].begin(), mine[size_t(i)].end());
  int64_t total = 0;
  for (int64_t l : lens) total += l;
  flat.resize(size_t(total));
  comm.broadcast(flat.data(), total * int64_t(sizeof(int32_t)), 0);
  std::vector<std::vector<int32_t>> all(static_cast<size_t>(n));
  for (int64_t i = 0, at = 0; i < n; at += lens[size_t(i)], ++i)
    all[size_t(i)].assign(flat.begin() + at, flat.begin() + at + lens[size_t(i)]);
  return all;
}

// Rank 0's view of every request: streaming decoder, timing, output text.
struct Shown {
  std::string prompt;
  int64_t prompt_tokens = 0;
  std::unique_ptr<StreamDecoder> dec;
  std::string text;
  int64_t tokens = 0;
  double ttft = -1;
  int32_t stop = kRunning;
};

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

Sampler::Sampler(uint64_t seed, int64_t request) {
  std::seed_seq s{uint32_t(seed), uint32_t(seed >> 32), uint32_t(request), uint32_t(uint64_t(request) >> 32)};
  rng_.seed(s);
}

int32_t Sampler::sample(std::span<const float> logits, double temperature) {
  const size_t n = logits.size();
  if (temperature <= 0) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const float t = float(std::max(temperature, 1e-5));
  p_.resize(n);
  float m = -INFINITY;
  for (size_t i = 0; i < n; ++i) m = std::max(m, p_[i] = logits[i] / t);
  float sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p_[i] = std::exp(p_[i] - m);
  int32_t best = 0;
  float best_v = -1;
  for (size_t i = 0; i < n; ++i) {
    // E ~ Exp(1) from a uniform in [0, 1) built from the top 53 bits (distributions in <random> are
    // implementation-defined; this is not).
    const double u = double(rng_() >> 11) * 0x1.0p-53;
    const float e = float(std::max(-std::log1p(-u), 1e-30));
    const float v = (p_[i] / sum) / e;
    if (v > best_v) best_v = v, best = int32_t(i);
  }
  return best;
}

int run_generate(const Comm& comm, const GenerateOptions& opt) {
  const int P = comm.size(), me = comm.rank();
  const bool root = me == 0;
  if (opt.max_new_tokens < 1) throw Error("--max-new-tokens must be at least 1");
  const double t_start = comm.wtime();

  // Prompts: rank 0 reads, templates and tokenizes them; every rank gets every prompt's ids.
  std::unique_ptr<Tokenizer> tok;
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;
  double tok_load_s = 0;
  if (root) {
    texts = read_prompts(opt);
    const std::string path = resolve_tokenizer_path(opt.tokenizer, opt.weights);
    const double t0 = comm.wtime();
    tok = std::make_unique<Tokenizer>(Tokenizer::load(path));
    tok_load_s = comm.wtime() - t0;
    if (tok->size() > gen::kVocabSize)
      throw Error(path + ": the tokenizer has " + std::to_string(tok->size()) + " ids, the model's vocabulary " +
                  std::to_string(gen::kVocabSize));
    const ThinkingMode mode = opt.thinking ? ThinkingMode::Thinking : ThinkingMode::Chat;
    for (const auto& t : texts) ids.push_back(tokenize_user_prompt(*tok, t, mode));
    for (size_t i = 0; i < ids.size(); ++i)
      if (int64_t(ids[i].size()) > gen::kMaxContext)
        throw Error("prompt " + std::to_string(i) + ": " + std::to_string(ids[i].size()) +
                    " tokens do not fit max_context " + std::to_string(gen::kMaxContext));
  }
  ids = share_prompts(comm, ids);
  const int64_t N = int64_t(ids.size());

  Engine engine(comm, opt.weights, opt.verify_checksums);

  std::deque<Request> owned;  // stable addresses
  std::deque<Request*> pending;
  std::vector<Request*> running;
  for (int64_t i = me; i < N; i += P) {
    owned.emplace_back(i, ids[size_t(i)], Sampler(opt.seed, i));
    pending.push_back(&owned.back());
  }

  std::vector<Shown> shown;
  if (root) {
    shown.resize(size_t(N));
    for (int64_t i = 0; i < N; ++i) {
      shown[size_t(i)].prompt = texts[size_t(i)];
      shown[size_t(i)].prompt_tokens = int64_t(ids[size_t(i)].size());
      shown[size_t(i)].dec = std::make_unique<StreamDecoder>(*tok);
    }
    std::fprintf(stderr, "run: %lld request(s) on %d rank(s) (config %s), tokenizer loaded in %.2f s, start-up %.2f s\n",
                 (long long)N, P, gen::kConfigName, tok_load_s, comm.wtime() - t_start);
    if (N == 1)
      std::printf("=== request 0 (rank 0, %lld prompt tokens): %s ===\n", (long long)shown[0].prompt_tokens,
                  preview(shown[0].prompt, 60).c_str());
    std::fflush(stdout);
  }

  comm.barrier();
  const double t0 = comm.wtime();
  double comm_s = 0, exchange_s = 0, prefill_s = 0, decode_s = 0;
  int64_t steps = 0, prompt_tokens = 0, decode_tokens = 0, decode_only_tokens = 0;
  std::vector<StepRecord> all(static_cast<size_t>(P));
  for (bool go = true; go; ++steps) {
    const double ts = comm.wtime();
    // Admit new requests as slots free up.
    while (!pending.empty() && int64_t(running.size()) < kSlots) {
      Request* r = pending.front();
      pending.pop_front();
      r->slot = engine.start_request();
      running.push_back(r);
    }
    // Decode tokens first (one slab row each), then prefill chunks in the remaining budget.
    std::vector<StepWork> work;
    std::vector<Request*> logits_of;  // request of each logits row, in work order
    std::vector<int64_t> chunk(running.size(), 0);
    int64_t budget = gen::kMaxTokensPerStep;
    StepRecord rec{};
    for (Request* r : running)
      if (r->prefilled == int64_t(r->prompt.size()) && budget > 0) {
        work.push_back({r->slot, int64_t(r->prompt.size() + r->out.size()) - 1, std::span(&r->out.back(), 1), true});
        logits_of.push_back(r);
        --budget, ++rec.decode_tokens;
      }
    for (size_t k = 0; k < running.size(); ++k) {
      Request* r = running[k];
      const int64_t left = int64_t(r->prompt.size()) - r->prefilled;
      if (left == 0 || budget == 0) continue;
      const int64_t len = std::min(left, budget);
      const bool last = len == left;
      work.push_back({r->slot, r->prefilled, std::span(r->prompt).subspan(size_t(r->prefilled), size_t(len)), last});
      if (last) logits_of.push_back(r);
      chunk[k] = len;
      budget -= len, rec.prefill_tokens += int32_t(len);
    }

    engine.step(work);
    comm_s += engine.executor().last_comm_seconds();

    for (size_t k = 0; k < running.size(); ++k) running[k]->prefilled += chunk[k];
    for (size_t j = 0; j < logits_of.size(); ++j) {
      Request* r = logits_of[j];
      const int32_t t = opt.temperature <= 0 ? engine.greedy_token(int64_t(j))
                                             : r->sampler.sample(engine.logits(int64_t(j)), opt.temperature);
      r->out.push_back(t);
      if (t == kEos) r->stop = kStopEos;
      else if (int64_t(r->out.size()) >= opt.max_new_tokens) r->stop = kStopLength;
      else if (int64_t(r->prompt.size() + r->out.size()) >= gen::kMaxContext) r->stop = kStopContext;
      rec.request[rec.sampled] = int32_t(r->index), rec.token[rec.sampled] = t, rec.stop[rec.sampled] = r->stop;
      ++rec.sampled;
    }
    for (auto it = running.begin(); it != running.end();)
      if ((*it)->stop != kRunning) {
        engine.finish_request((*it)->slot);
        it = running.erase(it);
      } else {
        ++it;
      }
    rec.busy = !pending.empty() || !running.empty();

    const double tx = comm.wtime();
    comm.allgather(&rec, sizeof rec, all.data());
    const double te = comm.wtime();
    exchange_s += te - tx;

    go = false;
    int64_t step_prefill = 0, step_decode = 0;
    for (const StepRecord& a : all) {
      go = go || a.busy;
      step_prefill += a.prefill_tokens, step_decode += a.decode_tokens;
    }
    prompt_tokens += step_prefill, decode_tokens += step_decode;
    if (step_prefill > 0) {
      prefill_s += te - ts;
    } else {
      decode_s += te - ts;
      decode_only_tokens += step_decode;
    }
    if (!root) continue;
    for (const StepRecord& a : all)
      for (int32_t k = 0; k < a.sampled; ++k) {
        Shown& s = shown[size_t(a.request[k])];
        if (s.tokens++ == 0) s.ttft = te - t0;
        const std::string piece = s.dec->push(a.token[k]);
        s.text += piece;
        s.stop = a.stop[k];
        if (s.stop != kRunning) {
          const std::string rest = s.dec->finish();
          s.text += rest;
          if (N == 1) {
            std::printf("%s%s\n=== request 0: %lld new tokens, stop: %s ===\n", piece.c_str(), rest.c_str(),
                        (long long)s.tokens, stop_name(s.stop));
          } else {
            std::printf("=== request %d (rank %lld, %lld prompt tokens): %s ===\n%s\n=== request %d: %lld new tokens, stop: %s ===\n",
                        a.request[k], (long long)(a.request[k] % P), (long long)s.prompt_tokens,
                        preview(s.prompt, 60).c_str(), s.text.c_str(), a.request[k], (long long)s.tokens,
                        stop_name(s.stop));
          }
        } else if (N == 1) {
          std::fputs(piece.c_str(), stdout);
        }
        std::fflush(stdout);
      }
  }
  const double loop_s = comm.wtime() - t0;

  // Per-rank figures for the report: peak RSS, plan collectives, scheduler exchange.
  struct RankStats {
    double rss, comm, exchange;
  } mine{double(peak_rss_bytes()), comm_s, exchange_s};
  std::vector<RankStats> ranks(static_cast<size_t>(P));
  comm.allgather(&mine, sizeof mine, ranks.data());
  if (!root) return 0;

  double rss_max = 0, comm_mean = 0, exchange_mean = 0, ttft_sum = 0, ttft_max = 0;
  for (const auto& r : ranks) rss_max = std::max(rss_max, r.rss), comm_mean += r.comm / P, exchange_mean += r.exchange / P;
  int64_t generated = 0;
  for (const auto& s : shown) ttft_sum += s.ttft, ttft_max = std::max(ttft_max, s.ttft), generated += s.tokens;
  const double rate_prefill = prefill_s > 0 ? double(prompt_tokens) / prefill_s : 0.0;
  const double rate_decode = decode_s > 0 ? double(decode_only_tokens) / decode_s : 0.0;
  std::fprintf(stderr,
               "run: %lld request(s), %lld steps in %.3f s on %d rank(s)\n"
               "  TTFT         mean %.3f s, max %.3f s\n"
               "  prefill      %lld prompt tokens, %.1f tokens/s (%.3f s of steps with prefill chunks)\n"
               "  decode       %lld tokens, %.1f tokens/s (%.3f s of decode-only steps)\n"
               "  generated    %lld tokens, %.1f tokens/s overall\n"
               "  collectives  %.1f%% of the loop (plan collectives, mean over ranks) + %.1f%% token exchange\n"
               "  memory       peak RSS %.1f MiB (max over ranks), arena %.1f MiB per rank\n",
               (long long)N, (long long)steps, loop_s, P, ttft_sum / double(N), ttft_max, (long long)prompt_tokens,
               rate_prefill, prefill_s, (long long)decode_only_tokens, rate_decode, decode_s, (long long)generated,
               double(generated) / std::max(loop_s, 1e-9), 100 * comm_mean / std::max(loop_s, 1e-9),
               100 * exchange_mean / std::max(loop_s, 1e-9), rss_max / 1048576.0, gen::kArenaBytes / 1048576.0);

  if (!opt.json_report.empty()) {
    nlohmann::ordered_json r;
    r["config"] = gen::kConfigName;
    r["ranks"] = P;
    r["requests"] = N;
    r["temperature"] = opt.temperature;
    r["seed"] = opt.seed;
    r["steps"] = steps;
    r["loop_s"] = loop_s;
    r["tokenizer_load_s"] = tok_load_s;
    r["ttft_mean_s"] = ttft_sum / double(N);
    r["ttft_max_s"] = ttft_max;
    r["prompt_tokens"] = prompt_tokens;
    r["prefill_steps_s"] = prefill_s;
    r["prefill_tokens_per_s"] = rate_prefill;
    r["decode_tokens"] = decode_tokens;
    r["decode_only_tokens"] = decode_only_tokens;
    r["decode_steps_s"] = decode_s;
    r["decode_tokens_per_s"] = rate_decode;
    r["generated_tokens"] = generated;
    r["collective_s_mean"] = comm_mean;
    r["collective_share"] = comm_mean / std::max(loop_s, 1e-9);
    r["exchange_s_mean"] = exchange_mean;
    r["peak_rss_bytes_max"] = int64_t(rss_max);
    r["arena_bytes"] = gen::kArenaBytes;
    auto& reqs = r["per_request"] = nlohmann::ordered_json::array();
    for (int64_t i = 0; i < N; ++i) {
      const Shown& s = shown[size_t(i)];
      reqs.push_back({{"index", i},
                      {"rank", i % P},
                      {"prompt_tokens", s.prompt_tokens},
                      {"new_tokens", s.tokens},
                      {"stop", stop_name(s.stop)},
                      {"ttft_s", s.ttft},
                      {"text", s.text}});
    }
    std::ofstream f(opt.json_report);
    if (!f) throw Error(opt.json_report + ": cannot write the JSON report");
    f << r.dump(2) << "\n";
  }
  return 0;
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
  c->add_option("--prompts-file", g.prompts_file, "more user messages, one per line");
  c->add_option("--max-new-tokens", g.max_new_tokens, "tokens to generate per request (default 64)");
  c->add_option("--temperature", g.temperature, "sampling temperature, 0 = argmax (default 0.6)");
  c->add_option("--seed", g.seed, "sampling seed (default 33377335)");
  c->add_flag("--thinking", g.thinking, "thinking mode: the prompt ends with <think> instead of </think>");
  c->add_option("--json-report", g.json_report, "timing report and per-request outputs as JSON");
  c->add_option("--tokenizer", g.tokenizer, "tokenizer.json or its folder (default: <weights>/tokenizer.json, else data/tokenizer)");
  c->add_flag("--checksums", g.verify_checksums, "verify weight checksums at start-up");
  c->add_option("--threads", o->threads, "kernel threads per rank (default: cores / ranks on the node)");
  return {c, [o](ProcessArgs args) {
            return on_ranks(args, o->threads, [&](const Comm& comm) { return run_generate(comm, o->gen); });
          }};
}

}  // namespace dsv4::cli
