// `dsv4 loop-check` (hidden; tests/serving/engine_loop.sh): drives the engine loop through the
// GenerationBackend interface the HTTP front end uses, from a client thread on rank 0.
// - determinism: N requests with their own seeds and sampling settings, each alone, then all at once;
//   tokens and logprobs must be byte-identical (batch invariance + per-request noise streams);
// - --chat TEXT: one chat prompt through the backend, decoded text to stdout (compared with `dsv4 run`);
// - --idle-seconds S: the loop idles that long first (for measuring idle CPU from outside), and at the
//   end the client sets the stop flag with a request running: it drains (0.3 s), new submissions are
//   refused, and every rank returns.
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <thread>

#include "model.hpp"
#include "plan/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/cli/run.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/serving/engine_loop.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4 {
namespace {

struct CheckOptions {
  std::string weights;
  int requests = 16;
  int64_t max_new_tokens = 8;
  int64_t max_prompt = 40;   // prompt lengths 1..this (capped at 2 slabs + 5)
  uint64_t seed = 1;
  double idle_seconds = 0;
  std::string chat;        // one chat prompt instead of the determinism check
  double temperature = 0.8;
  std::string tokenizer;
};

struct Result {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<TokenLogprob> top;
  FinishReason finish = FinishReason::None;
  bool operator==(const Result& o) const {
    return tokens == o.tokens && finish == o.finish && logprobs.size() == o.logprobs.size() &&
           std::memcmp(logprobs.data(), o.logprobs.data(), logprobs.size() * sizeof(float)) == 0 &&
           top.size() == o.top.size() && std::memcmp(top.data(), o.top.data(), top.size() * sizeof(TokenLogprob)) == 0;
  }
};

Result drain(RequestStream& s) {
  Result r;
  for (TokenEvent ev;;) {
    if (!s.next(ev, std::chrono::milliseconds(60000))) throw Error("loop-check: no event for 60 s");
    if (ev.token >= 0) r.tokens.push_back(ev.token), r.logprobs.push_back(ev.logprob);
    r.top.insert(r.top.end(), ev.top.begin(), ev.top.end());
    if (ev.finish != FinishReason::None) return r.finish = ev.finish, r;
  }
}

std::shared_ptr<RequestStream> submit(GenerationBackend& b, const GenerationRequest& q) {
  SubmitStatus st;
  std::string why;
  auto s = b.submit(q, st, why);
  if (!s) throw Error("loop-check: submit refused: " + why);
  return s;
}

int client(GenerationBackend& b, const CheckOptions& opt, const Tokenizer* tok, std::atomic<bool>& stop) {
  if (!opt.chat.empty()) {
    GenerationRequest q;
    q.prompt = tok->encode(encode_user_prompt(opt.chat, ThinkingMode::Chat));
    q.max_new_tokens = opt.max_new_tokens;
    q.sampling.temperature = opt.temperature;
    q.sampling.seed = opt.seed;
    q.stop_tokens = {int32_t(gen::kEosTokenId)};
    const Result r = drain(*submit(b, q));
    StreamDecoder dec(*tok);
    std::string text;
    for (int32_t t : r.tokens) text += dec.push(t);
    text += dec.finish();
    std::printf("%s\n", text.c_str());
    return 0;
  }
  if (opt.requests < 3) throw Error("loop-check: --requests must be at least 3");
  // Requests of varied shape: prompt lengths across chunk boundaries, sampling settings, logprobs.
  std::mt19937_64 rng(opt.seed);
  std::vector<GenerationRequest> reqs(size_t(opt.requests));
  for (int i = 0; i < opt.requests; ++i) {
    GenerationRequest& q = reqs[size_t(i)];
    const int64_t longest = std::min({opt.max_prompt, 2 * gen::kMaxTokensPerStep + 5, gen::kMaxContext - opt.max_new_tokens});
    const int64_t len = 1 + int64_t(rng() % uint64_t(longest));
    for (int64_t t = 0; t < len; ++t) q.prompt.push_back(int32_t(rng() % uint64_t(gen::kVocabSize)));
    q.max_new_tokens = opt.max_new_tokens;
    q.sampling.seed = rng();
    q.sampling.temperature = i % 4 == 0 ? 0.0 : 0.5 + 0.25 * (i % 3);
    q.sampling.top_p = i % 3 == 1 ? 0.9 : 1.0;
    q.sampling.top_k = i % 5 == 2 ? 20 : 0;
    q.sampling.top_logprobs = i % 2 ? 3 : -1;
    q.stop_tokens = {};
  }
  std::vector<Result> alone, together;
  for (const auto& q : reqs) alone.push_back(drain(*submit(b, q)));
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& q : reqs) streams.push_back(submit(b, q));
  for (auto& s : streams) together.push_back(drain(*s));
  int bad = 0;
  for (int i = 0; i < opt.requests; ++i) {
    const bool same = alone[size_t(i)] == together[size_t(i)];
    bad += !same;
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the tokens: compared across rank counts by the test
    for (int32_t t : together[size_t(i)].tokens) h = (h ^ uint32_t(t)) * 1099511628211ull;
    std::printf("request %2d: %3zu prompt tokens, %zu new (%s), T=%.2f, tokens %016llx: %s\n", i,
                reqs[size_t(i)].prompt.size(), together[size_t(i)].tokens.size(),
                finish_reason_name(together[size_t(i)].finish), reqs[size_t(i)].sampling.temperature,
                (unsigned long long)h, same ? "alone == among the others" : "DIFFERS");
  }
  // Two requests with the same seed and settings give the same tokens; a different seed differs.
  GenerationRequest a = reqs[1];
  const Result r1 = drain(*submit(b, a));
  a.sampling.seed ^= 0x9e3779b97f4a7c15ull;
  const Result r2 = drain(*submit(b, a));
  if (!(r1 == alone[1])) ++bad, std::printf("same seed: DIFFERS\n");
  if (r2.tokens == r1.tokens) std::printf("note: another seed gave the same tokens\n");
  // A cancelled request ends with Cancelled and frees its slot.
  GenerationRequest c = reqs[2];
  c.max_new_tokens = std::min<int64_t>(gen::kMaxContext - int64_t(c.prompt.size()), 200);
  auto cs = submit(b, c);
  TokenEvent ev;
  if (!cs->next(ev, std::chrono::milliseconds(60000))) throw Error("loop-check: no first token");
  cs->cancel();
  const Result rc = drain(*cs);
  if (rc.finish != FinishReason::Cancelled) ++bad, std::printf("cancel: ended %s\n", finish_reason_name(rc.finish));
  const BackendStats st = b.stats();
  std::printf("after: queued %lld, running %lld, kv blocks %lld of %lld\n", (long long)st.queued, (long long)st.running,
              (long long)st.kv_blocks_used, (long long)st.kv_blocks_total);
  if (st.kv_blocks_used != 0 || st.running != 0) ++bad, std::printf("leak: blocks or requests still held\n");
  // Drain: after stop a running request still ends (finished, or cancelled at the drain timeout) and
  // new submissions are refused with Draining.
  GenerationRequest d = reqs[3];
  d.max_new_tokens = std::min<int64_t>(gen::kMaxContext - int64_t(d.prompt.size()), 300);
  d.stop_tokens = {-1};  // never matches: only the length or the drain ends it
  auto ds = submit(b, d);
  if (!ds->next(ev, std::chrono::milliseconds(60000))) throw Error("loop-check: no first token");
  stop.store(true);
  SubmitStatus st2 = SubmitStatus::Accepted;
  std::string why;
  for (int i = 0; i < 100 && st2 == SubmitStatus::Accepted; ++i) {  // the loop sees the flag within ~100 ms
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto late = b.submit(reqs[0], st2, why);
    if (late) drain(*late);
  }
  const Result rd = drain(*ds);
  std::printf("drain: the running request ended %s after %zu tokens; a new one was refused: %s\n",
              finish_reason_name(rd.finish), rd.tokens.size() + 1, st2 == SubmitStatus::Draining ? why.c_str() : "NO");
  if (st2 != SubmitStatus::Draining || (rd.finish != FinishReason::Cancelled && rd.finish != FinishReason::Length)) ++bad;
  std::printf("%s: %d of %d requests identical alone and together\n", bad ? "FAIL" : "ok", opt.requests - bad, opt.requests);
  return bad ? 1 : 0;
}

int run_check(const Comm& comm, const CheckOptions& opt) {
  std::unique_ptr<Tokenizer> tok;
  if (comm.rank() == 0 && !opt.chat.empty())
    tok = std::make_unique<Tokenizer>(Tokenizer::load(resolve_tokenizer_path(opt.tokenizer, opt.weights)));
  Engine engine(comm, opt.weights);
  LoopOptions lo;
  lo.drain_timeout_s = 0.3;
  EngineLoop loop(comm, engine, plan_limits(comm.size()), lo);
  std::atomic<bool> stop{false};
  int rc = 0;
  std::thread t;
  if (comm.rank() == 0)
    t = std::thread([&] {
      try {
        if (opt.idle_seconds > 0) {
          std::fprintf(stderr, "loop-check: idle for %.1f s\n", opt.idle_seconds);
          std::this_thread::sleep_for(std::chrono::duration<double>(opt.idle_seconds));
          std::fprintf(stderr, "loop-check: idle phase over\n");
        }
        rc = client(loop, opt, tok.get(), stop);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "loop-check: %s\n", e.what());
        rc = 1;
      }
      stop.store(true);
    });
  loop.run(&stop);
  if (t.joinable()) t.join();
  return rc;
}

}  // namespace
}  // namespace dsv4

namespace dsv4::cli {

Subcommand add_loop_check(CLI::App& app) {
  struct Opt {
    CheckOptions c;
    int threads = 0;
  };
  auto o = std::make_shared<Opt>();
  CheckOptions& c = o->c;
  auto* s = app.add_subcommand("loop-check", "");  // hidden: a test driver of the engine loop
  s->group("");
  s->add_option("-w,--weights", c.weights, "converted weights folder")->required();
  s->add_option("--requests", c.requests, "requests of the determinism check");
  s->add_option("--max-new-tokens", c.max_new_tokens, "tokens per request");
  s->add_option("--max-prompt", c.max_prompt, "longest prompt of the determinism check (tokens)");
  s->add_option("--seed", c.seed, "seed of the request shapes (--chat: the sampling seed)");
  s->add_option("--idle-seconds", c.idle_seconds, "idle this long first");
  s->add_option("--chat", c.chat, "one chat prompt: print its text");
  s->add_option("--temperature", c.temperature, "--chat: sampling temperature");
  s->add_option("--tokenizer", c.tokenizer, "--chat: tokenizer.json or its folder");
  s->add_option("--threads", o->threads, "kernel threads per rank");
  return {s, [o](ProcessArgs args) {
            return on_ranks(args, o->threads, [&](const Comm& comm) { return run_check(comm, o->c); });
          }};
}

}  // namespace dsv4::cli
