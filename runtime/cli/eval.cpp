#include "runtime/cli/eval.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "layout.hpp"
#include "model.hpp"
#include "plan.hpp"
#include "plan/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/io/npy.hpp"
#include "runtime/io/output_file.hpp"
#include "runtime/serving/engine_loop.hpp"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

// Token ids of a 1-D int32 or int64 .npy; every id is checked against the vocabulary in its own width,
// before any narrowing (an int64 2^32 + 6 must not run as 6).
std::vector<int32_t> read_ids(const std::string& path, const char* what) {
  const npy::Array a = npy::read(path);
  if (a.shape.size() != 1) throw Error(path + ": " + what + " must be 1-D, got shape " + a.shape_str());
  if (a.descr != "<i8" && a.descr != "<i4") throw Error(path + ": " + what + " must be int32 or int64, got " + a.descr);
  std::vector<int64_t> wide;
  if (a.descr == "<i8") {
    wide = a.as<int64_t>(path);
  } else {
    const auto v = a.as<int32_t>(path);
    wide.assign(v.begin(), v.end());
  }
  std::vector<int32_t> ids(wide.size());
  for (size_t i = 0; i < wide.size(); ++i) {
    if (wide[i] < 0 || wide[i] >= gen::kVocabSize)
      throw Error(path + ": " + what + "[" + std::to_string(i) + "] = " + std::to_string(wide[i]) +
                  " is outside the vocabulary [0, " + std::to_string(gen::kVocabSize) + ")");
    ids[i] = int32_t(wide[i]);
  }
  return ids;
}

// "L03.attn.kv" -> "L3.attn.kv" (the golden dumps' layer names); other names are unchanged.
std::string golden_name(const std::string& name) {
  if (name.size() > 4 && name[0] == 'L' && name[3] == '.' && std::isdigit(static_cast<unsigned char>(name[1]))) {
    std::string g = "L";  // appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "L" + string
    g += std::to_string(std::stoi(name.substr(1, 2)));
    g.append(name, 3);
    return g;
  }
  return name;
}


// Index lists use our KV-row space, not the reference's; they are traced but never injected.
bool injectable(const std::string& g, bool ops) {
  if (g.ends_with("topk_idxs") || g.ends_with("indexer.scores")) return false;
  return ops || g.ends_with(".block_out");
}

// Per-op trace and golden injection for one step of one request (slab rows [0, n)).
class StepHook {
 public:
  StepHook(Arena& arena, const EvalOptions& opt, const std::string& step, int64_t n, int64_t last_pos)
      : arena_(arena), n_(n), last_pos_(last_pos) {
    if (!opt.trace_out.empty()) {
      trace_dir_ = opt.trace_out + "/" + opt.prefix + step;
      fs::create_directories(trace_dir_);
    }
    if (!opt.inject_from.empty()) {
      const std::string d = opt.inject_from + "/" + opt.prefix + step;
      if (fs::is_directory(d)) inject_dir_ = d;
    }
    inject_ops_ = opt.inject_ops;
  }
  bool active() const { return !trace_dir_.empty() || !inject_dir_.empty(); }

  void operator()(uint32_t op_index) {
    for (uint32_t b : gen::kOps[op_index].out) {
      if (b == plan::kNone) break;
      const plan::Buffer& buf = gen::kBuffers[b];
      const std::string g = golden_name(buf.name);
      if (buf.lifetime != plan::Lifetime::Step) {
        // Caches are traced whole after the op that fills them (no golden counterpart; for debugging).
        if (!trace_dir_.empty() && buf.dtype == plan::DType::BF16 && gen::kOps[op_index].kind == plan::OpKind::Compressor)
          write(trace_dir_ + "/" + g + ".npy", buf.dtype, arena_.data(b), {buf.shape[0], buf.shape[1]});
        continue;
      }
      std::vector<int64_t> shape = {1, n_};
      for (int d = 1; d < buf.ndim; ++d) shape.push_back(buf.shape[d]);
      if (g.find(".gate.") != std::string::npos)
        shape.erase(shape.begin());  // gate tensors are dumped without the batch dim
      if (g.ends_with("indexer.scores")) shape = {1, n_, (last_pos_ + 1) / 4};
      int64_t count = 1;
      for (int64_t s : shape) count *= s;
      uint8_t* data = arena_.data(b);
      if (!trace_dir_.empty()) write(trace_dir_ + "/" + g + ".npy", buf.dtype, data, shape);
      if (!inject_dir_.empty() && injectable(g, inject_ops_) && fs::exists(inject_dir_ + "/" + g + ".npy"))
        inject(inject_dir_ + "/" + g + ".npy", buf, data, count);
    }
  }

 private:
  static void write(const std::string& path, plan::DType t, const uint8_t* data, const std::vector<int64_t>& shape) {
    switch (t) {
      case plan::DType::BF16: npy::write(path, reinterpret_cast<const uint16_t*>(data), shape); break;
      case plan::DType::F32: npy::write(path, reinterpret_cast<const float*>(data), shape); break;
      case plan::DType::I32: npy::write(path, reinterpret_cast<const int32_t*>(data), shape); break;
      default: break;  // FP8 codes and packed rows have no golden counterpart
    }
  }
  static void inject(const std::string& path, const plan::Buffer& buf, uint8_t* data, int64_t count) {
    const npy::Array a = npy::read(path);
    const char* want = buf.dtype == plan::DType::BF16 ? "<u2" : buf.dtype == plan::DType::F32 ? "<f4" : "<i4";
    if (a.descr != want || a.numel() != count)
      throw Error(path + ": cannot inject into " + buf.name + ": expected " + want + " with " + std::to_string(count) +
                  " elements, got " + a.descr + " " + a.shape_str());
    std::memcpy(data, a.bytes.data(), a.bytes.size());
  }

  Arena& arena_;
  int64_t n_, last_pos_;
  std::string trace_dir_, inject_dir_;
  bool inject_ops_ = false;
};

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;
}


struct Request {
  std::vector<int32_t> prompt, forced;
  int64_t steps = 0;  // decode steps
  int owner = 0;
};

// Eval's side of the engine loop on every rank: feeds forced (or greedy) tokens instead of samples,
// keeps each owned request's logits rows, writes per-step logits and per-op traces, and writes a
// request's files when its owner frees it.
class EvalObserver final : public StepObserver {
 public:
  EvalObserver(const Comm& comm, Engine& engine, const EvalOptions& opt, const std::vector<Request>& reqs, bool tracing)
      : comm_(comm), engine_(engine), opt_(opt), reqs_(reqs), tracing_(tracing), logits_(reqs.size()), tokens_(reqs.size()) {}

  Executor::OpHook before_step(int64_t, const RankPlan& mine) override {
    hook_.reset();
    if (!tracing_ || mine.work.empty()) return {};
    const PlanItem& it = mine.work[0];  // one request: its rows are the slab rows [0, n)
    const int64_t L = int64_t(reqs_[0].prompt.size());
    const std::string name = it.start < L ? "prefill" : "decode" + std::to_string(it.start - L);
    hook_ = std::make_unique<StepHook>(engine_.arena(), opt_, name, it.count, it.start + it.count - 1);
    if (!hook_->active()) return {};
    return std::ref(*hook_);
  }

  bool choose(int64_t id, int64_t k, std::span<const float> row, int32_t greedy, int32_t& token) override {
    const Request& r = reqs_[size_t(id)];
    auto& l = logits_[size_t(id)];
    l.insert(l.end(), row.begin(), row.end());
    tokens_[size_t(id)].push_back(greedy);
    if (!opt_.step_logits_out.empty()) rows_.insert(rows_.end(), row.begin(), row.end()), row_req_.push_back(int32_t(id));
    // Decode step k + 1 feeds forced[k] (teacher forcing) or the greedy token.
    token = !r.forced.empty() && k < r.steps ? r.forced[size_t(k)] : greedy;
    return true;
  }

  void after_step(int64_t step, const StepPlan& plan) override {
    hook_.reset();
    const double cs = engine_.executor().last_comm_seconds();
    comm_s += cs;
    if (plan.prefill_tokens == 0) dec_step_s += engine_.executor().last_step_seconds(), dec_comm_s += cs, n_dec += 1;
    if (!row_req_.empty()) {
      const int me = comm_.rank();
      npy::write(step_file(opt_.step_logits_out, step, me, ".npy"), rows_.data(), {int64_t(row_req_.size()), gen::kVocabSize});
      npy::write(step_file(opt_.step_logits_out, step, me, ".requests.npy"), row_req_.data(), {int64_t(row_req_.size())});
      rows_.clear(), row_req_.clear();
    }
  }

  void on_release(int64_t id) override {
    const Request& r = reqs_[size_t(id)];
    const EvalRequest& q = opt_.requests[size_t(id)];
    if (tokens_[size_t(id)].size() != size_t(1 + r.steps)) {  // cancelled (SIGTERM): no partial output
      logits_[size_t(id)] = {};
      return;
    }
    npy::write(q.logits_out, logits_[size_t(id)].data(), {1 + r.steps, gen::kVocabSize});
    std::string tok_path = q.tokens_out;
    if (tok_path.empty() && r.forced.empty()) {
      tok_path = q.logits_out;
      if (tok_path.ends_with(".npy")) tok_path.resize(tok_path.size() - 4);
      tok_path += ".tokens.npy";
    }
    const auto& t = tokens_[size_t(id)];
    if (!tok_path.empty()) npy::write(tok_path, t.data(), {int64_t(t.size())});
    logits_[size_t(id)] = {};
  }

  double comm_s = 0, dec_step_s = 0, dec_comm_s = 0, n_dec = 0;

 private:
  static std::string step_file(const std::string& dir, int64_t step, int rank, const char* suffix) {
    char b[64];
    std::snprintf(b, sizeof b, "/step-%05lld-rank-%05d%s", (long long)step, rank, suffix);
    return dir + b;
  }

  const Comm& comm_;
  Engine& engine_;
  const EvalOptions& opt_;
  const std::vector<Request>& reqs_;
  bool tracing_;
  std::unique_ptr<StepHook> hook_;
  std::vector<std::vector<float>> logits_;  // [1 + steps, vocab] on the owner
  std::vector<std::vector<int32_t>> tokens_;
  std::vector<float> rows_;
  std::vector<int32_t> row_req_;
};

}  // namespace

std::vector<int> assign_requests(const std::vector<int64_t>& costs, int ranks, const std::string& mode) {
  std::vector<int> owner(costs.size(), 0);
  if (mode == "rr") {
    for (size_t i = 0; i < costs.size(); ++i) owner[i] = int(i % size_t(ranks));
  } else if (mode == "tokens") {  // largest first onto the least loaded rank (ties: lowest rank, earliest request)
    std::vector<size_t> order(costs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return costs[a] > costs[b]; });
    std::vector<int64_t> load(size_t(ranks), 0);
    for (size_t i : order) {
      const int r = int(std::min_element(load.begin(), load.end()) - load.begin());
      owner[i] = r;
      load[size_t(r)] += costs[i];
    }
  } else {
    throw Error("--assign: expected rr or tokens, got " + mode);
  }
  return owner;
}

int run_eval(const Comm& comm, const EvalOptions& opt) {
  const int me = comm.rank();
  if (opt.requests.empty()) throw Error("eval needs at least one request (--input-ids)");
  const bool single = opt.requests.size() == 1;
  const bool tracing = !opt.trace_out.empty() || !opt.inject_from.empty();
  if (tracing && !single) throw Error("--trace-out / --inject-from work with one request only");
  const std::atomic<bool>& stop = cli::install_stop_handlers();
  const int64_t chunk = opt.chunk > 0 ? std::min(opt.chunk, gen::kMaxTokensPerStep) : gen::kMaxTokensPerStep;

  // Every rank reads every request (they are small): the schedule of every rank follows from the lengths.
  std::vector<Request> reqs(opt.requests.size());
  std::vector<int64_t> costs;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const EvalRequest& q = opt.requests[i];
    Request& r = reqs[i];
    const std::string who = "request " + std::to_string(i) + " (" + q.input_ids + ")";
    r.prompt = read_ids(q.input_ids, "input ids");
    if (r.prompt.empty()) throw Error(q.input_ids + ": empty prompt");
    if (!q.forced_tokens.empty()) {
      r.forced = read_ids(q.forced_tokens, "forced tokens");
      if (r.forced.empty()) throw Error(q.forced_tokens + ": needs at least one token");
    }
    r.steps = q.forced_tokens.empty() ? opt.decode_steps : int64_t(r.forced.size()) - 1;
    if (r.steps < 0) throw Error("--decode-steps must be >= 0");
    if (int64_t(r.prompt.size()) + r.steps > gen::kMaxContext)
      throw Error(who + ": " + std::to_string(r.prompt.size()) + " prompt + " + std::to_string(r.steps) +
                  " decode tokens exceed max_context " + std::to_string(gen::kMaxContext) + " (deploy.max_context)");
    costs.push_back(int64_t(r.prompt.size()) + r.steps);
  }
  if (tracing && int64_t(reqs[0].prompt.size()) > chunk)
    throw Error("--trace-out / --inject-from need the prompt (" + std::to_string(reqs[0].prompt.size()) +
                " tokens) in one prefill step; the slab holds " + std::to_string(chunk));
  // Attention DP over all ranks, or the one-logical-shard debug mode (attn_dp = 1: every request on rank 0).
  const int dp = gen::kAttnDp > 1 ? comm.size() : 1;
  const std::vector<int> owner = assign_requests(costs, dp, opt.assign);
  for (size_t i = 0; i < reqs.size(); ++i) reqs[i].owner = owner[i];

  if (!opt.step_logits_out.empty()) {
    std::error_code ec;
    fs::create_directories(opt.step_logits_out, ec);
  }
  OutputFile report;
  if (me == 0 && !opt.json_report.empty()) report = OutputFile(opt.json_report, "JSON report");

  Engine engine(comm, opt.weights, opt.verify_checksums);
  EvalObserver obs(comm, engine, opt, reqs, tracing);
  LoopOptions lo;
  lo.exit_when_idle = true;
  lo.max_queue = 0;
  lo.drain_timeout_s = 0;  // SIGTERM: cancel every request at the next step boundary
  EngineLoop loop(comm, engine, plan_limits(comm.size(), chunk), lo, &obs);
  std::vector<double> t_prefilled(reqs.size(), 0), t_done(reqs.size(), 0);
  double t0 = 0;
  if (me == 0)
    for (size_t i = 0; i < reqs.size(); ++i) {
      GenerationRequest g;
      g.prompt = reqs[i].prompt;
      g.max_new_tokens = reqs[i].steps + 1;  // logits rows: after the prompt, then one per decode step
      g.sampling.temperature = 0;
      std::string why;
      const int64_t id = loop.submit_local(std::move(g), int64_t(i), reqs[i].owner, [&, i](const TokenEvent& ev) {
        if (ev.token >= 0 && t_prefilled[i] == 0) t_prefilled[i] = comm.wtime() - t0;
        if (ev.finish != FinishReason::None) t_done[i] = comm.wtime() - t0;
        // Cancelled: the loop stopped (SIGTERM to any rank); eval cancels nothing itself.
        if (ev.finish != FinishReason::None && ev.finish != FinishReason::Length && ev.finish != FinishReason::Cancelled)
          throw Error("request " + std::to_string(i) + " ended early: " + finish_reason_name(ev.finish));
      }, why);
      if (id < 0) throw Error("request " + std::to_string(i) + " (" + opt.requests[i].input_ids + "): " + why);
      DSV4_ASSERT(id == int64_t(i), "eval: request ids follow submission order");
    }
  t0 = comm.wtime();
  loop.run(&stop);
  const double wall = comm.wtime() - t0;
  const int64_t n_steps = loop.loop_stats().steps;
  const double comm_s = obs.comm_s, dec_step_s = obs.dec_step_s, dec_comm_s = obs.dec_comm_s, n_dec = obs.n_dec;

  // Decode-step collective share of every rank, gathered to rank 0.
  const double mine_stats[3] = {dec_step_s, dec_comm_s, n_dec};
  std::vector<double> all(size_t(3 * comm.size()));
  comm.allgather(mine_stats, sizeof mine_stats, all.data());
  if (loop.stopped()) {  // the requests that finished have their files; no report for a partial run
    if (me == 0) std::fprintf(stderr, "eval: interrupted by a signal after %lld steps; no outputs for unfinished requests, no report\n", (long long)n_steps);
    return cli::kStoppedExit;
  }
  if (me != 0) return 0;

  nlohmann::ordered_json r;
  r["config"] = gen::kConfigName;
  r["ranks"] = comm.size();
  r["requests"] = reqs.size();
  r["steps"] = n_steps;
  r["wall_s"] = wall;
  if (single) {
    const Request& q = reqs[0];
    const double ttft = t_prefilled[0], decode_s = t_done[0] - t_prefilled[0];
    r["prompt_tokens"] = q.prompt.size();
    r["decode_steps"] = q.steps;
    r["ttft_s"] = ttft;
    r["prefill_tokens_per_s"] = double(q.prompt.size()) / std::max(ttft, 1e-9);
    r["decode_tokens_per_s"] = q.steps ? double(q.steps) / std::max(decode_s, 1e-9) : 0.0;
  } else {
    auto& list = r["per_request"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < reqs.size(); ++i)
      list.push_back({{"owner", reqs[i].owner}, {"prompt_tokens", reqs[i].prompt.size()}, {"decode_steps", reqs[i].steps},
                      {"ttft_s", t_prefilled[i]}, {"done_s", t_done[i]}});
  }
  r["collective_s"] = comm_s;
  // Per rank: seconds in decode steps (no rank prefilling) and in their collectives.
  double share_min = 1, share_max = 0, step_sum = 0, comm_sum = 0, n_sum = 0;
  for (int p = 0; p < comm.size(); ++p) {
    const double s = all[size_t(3 * p)], c = all[size_t(3 * p + 1)];
    step_sum += s, comm_sum += c, n_sum += all[size_t(3 * p + 2)];
    if (s > 0) share_min = std::min(share_min, c / s), share_max = std::max(share_max, c / s);
  }
  if (n_dec > 0) {
    r["decode_step_count"] = n_dec;
    r["decode_step_ms_mean"] = 1e3 * step_sum / n_sum;
    r["decode_collective_ms_mean"] = 1e3 * comm_sum / n_sum;
    r["decode_collective_share_mean"] = comm_sum / std::max(step_sum, 1e-12);
    r["decode_collective_share_min_rank"] = share_min;
    r["decode_collective_share_max_rank"] = share_max;
  }
  r["arena_bytes"] = gen::kArenaBytes;
  r["peak_rss_bytes"] = peak_rss_bytes();
  if (single)
    std::fprintf(stderr, "eval: %zu prompt tokens, %lld decode steps on %d rank(s): TTFT %.3f s, decode %.2f tok/s, "
                 "collectives %.3f s, arena %.1f MiB, peak RSS %.1f MiB\n",
                 reqs[0].prompt.size(), (long long)reqs[0].steps, comm.size(), r["ttft_s"].get<double>(),
                 r["decode_tokens_per_s"].get<double>(), comm_s, gen::kArenaBytes / 1048576.0, peak_rss_bytes() / 1048576.0);
  else
    std::fprintf(stderr, "eval: %zu requests in %lld steps on %d rank(s): %.3f s, collectives %.3f s (rank 0), arena %.1f MiB, "
                 "peak RSS %.1f MiB\n",
                 reqs.size(), (long long)n_steps, comm.size(), wall, comm_s, gen::kArenaBytes / 1048576.0,
                 peak_rss_bytes() / 1048576.0);
  if (n_dec > 0)
    std::fprintf(stderr, "eval: %lld decode steps: %.2f ms/step, collectives %.2f ms/step = %.1f%% (ranks %.1f%%..%.1f%%)\n",
                 (long long)n_dec, r["decode_step_ms_mean"].get<double>(), r["decode_collective_ms_mean"].get<double>(),
                 100 * r["decode_collective_share_mean"].get<double>(), 100 * share_min, 100 * share_max);
  if (report.is_open()) report.commit(r.dump(2) + "\n");
  return 0;
}

}  // namespace dsv4

namespace dsv4::cli {

Subcommand add_eval(CLI::App& app) {
  struct Opt {
    EvalOptions ev;
    std::vector<std::string> ids, forced, logits, tokens;
    int threads = 0;
  };
  auto o = std::make_shared<Opt>();
  EvalOptions& ev = o->ev;
  auto* c = app.add_subcommand("eval", "teacher-forced prefill + decode of one or more prompts, logits to .npy (run under mpirun for several ranks)");
  c->add_option("-w,--weights", ev.weights, "converted weights folder")->required();
  c->add_option("--input-ids", o->ids, "prompt token ids (.npy int32/int64 [L]); repeat for several requests")->required();
  c->add_option("--forced-tokens", o->forced, "tokens fed at decode steps (.npy [N]: N-1 steps, step i feeds tokens[i-1]); none or one per request (- for greedy)");
  c->add_option("--decode-steps", ev.decode_steps, "greedy decode steps without --forced-tokens (default 16)");
  c->add_option("--logits-out", o->logits, "float32 logits [1 + steps, vocab] (.npy); one per request")->required();
  c->add_option("--tokens-out", o->tokens, "greedy tokens (.npy int32); none or one per request");
  c->add_option("--chunk", ev.chunk, "prefill chunk length (default: max_tokens_per_step)");
  c->add_option("--assign", ev.assign, "requests to DP ranks: rr (request i -> rank i % ranks, default) or tokens (balance tokens)");
  c->add_option("--step-logits-out", ev.step_logits_out, "folder: full logits rows of every step, per rank (step-S-rank-R.npy)");
  c->add_option("--trace-out", ev.trace_out, "write every op output per step, named as the golden dumps (one request)");
  c->add_option("--inject-from", ev.inject_from, "golden dump folder: replace each layer's input with its value (one request)");
  c->add_option("--prefix", ev.prefix, "step folder prefix for --trace-out / --inject-from (e.g. len7_)");
  c->add_flag("--inject-ops", ev.inject_ops, "inject every dumped op output (op-level checks), not only layer inputs");
  c->add_flag("--checksums", ev.verify_checksums, "verify weight checksums at start-up");
  c->add_option("--json-report", ev.json_report, "timing report (TTFT, tokens/s, collective share, memory) as JSON");
  c->add_option("--report-json", ev.json_report, "old name of --json-report")->group("");  // hidden alias
  c->add_option("--threads", o->threads, kThreadsHelp);
  return {c, [o](ProcessArgs args) {
            return on_ranks(args, o->threads, [&](const Comm& comm) {
              EvalOptions ev = o->ev;
              const size_t n = o->ids.size();
              auto one_per_request = [&](const std::vector<std::string>& v, const char* opt, bool optional) {
                if (v.size() != n && !(optional && v.empty()))
                  throw Error(std::string(opt) + ": " + std::to_string(v.size()) + " given for " + std::to_string(n) +
                              " --input-ids (expected " + (optional ? "none or " : "") + "one per request)");
              };
              one_per_request(o->forced, "--forced-tokens", true);
              one_per_request(o->logits, "--logits-out", false);
              one_per_request(o->tokens, "--tokens-out", true);
              for (size_t i = 0; i < n; ++i)
                ev.requests.push_back({o->ids[i], o->forced.empty() || o->forced[i] == "-" ? "" : o->forced[i],
                                       o->logits[i], o->tokens.empty() ? "" : o->tokens[i]});
              return run_eval(comm, ev);
            });
          }};
}

}  // namespace dsv4::cli
