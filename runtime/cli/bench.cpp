// `dsv4 bench`: end-to-end speed of this build's plan on converted weights, held against the machine's
// roofs. Measures the copy bandwidth and the fp32 / fp64 FMA peaks (kernels/roofline.hpp, as the kernel
// benchmarks do), then prefill of P tokens and decode of D tokens at given contexts and batches, with
// synthetic token ids, and reports medians of repeats after a warm-up:
//   decode:  tokens/s, weight GB/s (the plan's bytes per step x steps/s) and that / the copy bandwidth;
//   prefill: tokens/s, GFLOP/s (the plan's linear FLOPs) and that / the FMA peak of the arithmetic used;
//   both:    the plan collectives' share of the steps (multi-rank plans).
// Every rank runs the same work in lockstep (attention is data-parallel: one request per rank at batch 1,
// max_requests_per_rank per rank at full batch); rates are for the whole job; rank 0 prints.
// --profile adds the executor's per-op timing (by op kind, layer kind and op) and its measured overhead.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/roofline.hpp"
#include "model.hpp"
#include "plan.hpp"
#include "plan/error.hpp"
#include "runtime/cli/commands.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/profile.hpp"

namespace dsv4 {
namespace {

using json = nlohmann::ordered_json;

struct BenchOptions {
  std::string weights;
  std::string json;                         // file, or "-" for stdout
  std::vector<int64_t> prefill{32, 512};    // prompt lengths (clipped to max_context)
  int64_t decode_tokens = 8;                // decode steps timed per repeat
  std::vector<int64_t> contexts{256, 4096}; // decode contexts (clipped to fit max_context)
  std::vector<std::string> batch{"1", "full"};
  int repeats = 3;
  int warmup = 1;
  int threads = 0;
  bool profile = false;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return f ? a + " " + b + " " + c : "?";
}

// ---- the machine ------------------------------------------------------------------------------------

struct Machine {
  double copy_bps = 0, fma32 = 0, fma64 = 0;  // whole job, every rank at once
};

// Every rank runs the same pass at once, between barriers; the job's rate is the total work over the
// barrier-to-barrier time (median of 3 after a warm pass). Each rank copies its share of 128 MiB (at
// least 16 MiB): 4x the 32 MiB L3 of this machine, and quick enough to repeat around every case. The roofs are measured again around every case and
// each case is held against the mean of the two measurements beside it (this shared machine's copy
// bandwidth and compute drift by a fifth or more within a minute, see the kernel notes).
class RoofMeter {
 public:
  explicit RoofMeter(const Comm& comm)
      : comm_(comm),
        bytes_(std::max((size_t(128) << 20) / size_t(std::max(1, comm.local_size())), size_t(16) << 20)),
        a_(bytes_, 1),
        b_(bytes_, 2) {}

  Machine measure() {
    Machine m;
    m.copy_bps = rate([&] {
      roofline::parallel_copy(b_.data(), a_.data(), bytes_);
      return 2.0 * double(bytes_);
    });
    m.fma64 = rate([] { return roofline::fma_region<true>(int64_t(1) << 19); });
    m.fma32 = rate([] { return roofline::fma_region<false>(int64_t(1) << 19); });
    all_.push_back(m);
    return m;
  }
  size_t count() const { return all_.size(); }
  // Medians over every measurement of the run.
  Machine overall() const {
    std::vector<double> c, f32, f64;
    for (const Machine& m : all_) c.push_back(m.copy_bps), f32.push_back(m.fma32), f64.push_back(m.fma64);
    return {median(c), median(f32), median(f64)};
  }

 private:
  template <class Pass>
  double rate(Pass pass) {
    pass();  // warm: page faults, frequency
    std::vector<double> r;
    std::vector<double> each(size_t(comm_.size()));
    for (int i = 0; i < 3; ++i) {
      comm_.barrier();
      const double t0 = comm_.wtime();
      double work = pass();
      comm_.barrier();
      const double dt = comm_.wtime() - t0;
      comm_.allgather(&work, sizeof work, each.data());
      double total = 0;
      for (double w : each) total += w;
      r.push_back(total / dt);
    }
    return median(r);
  }

  const Comm& comm_;
  size_t bytes_;
  std::vector<uint8_t> a_, b_;
  std::vector<Machine> all_;
};

Machine mean(const Machine& a, const Machine& b) {
  return {(a.copy_bps + b.copy_bps) / 2, (a.fma32 + b.fma32) / 2, (a.fma64 + b.fma64) / 2};
}

// ---- driving the engine ----------------------------------------------------------------------------

// Synthetic prompt: the same deterministic ids for every request (content does not change the work,
// except hash routing, which spreads over the experts like real text).
std::vector<int32_t> synthetic_ids(int64_t n, int seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t s = 0x9E3779B97F4A7C15ull * uint64_t(seed + 1);
  for (auto& id : ids) {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    id = int32_t((s * 2685821657736338717ull >> 33) % uint64_t(gen::kVocabSize));
  }
  return ids;
}

struct Timing {
  double seconds = 0, comm = 0;  // barrier to barrier on this rank; plan collectives within
  int64_t steps = 0;
};

class Driver {
 public:
  Driver(const Comm& comm, Engine& e) : comm_(comm), e_(e), ids_(synthetic_ids(gen::kMaxContext, comm.rank())) {}

  // Prefills every slot from its current length to `target`, packing chunks into slabs as `run` does.
  Timing prefill_to(const std::vector<int32_t>& slots, int64_t target) {
    return timed([&](Timing& t) {
      for (;;) {
        work_.clear();
        int64_t budget = gen::kMaxTokensPerStep;
        for (int32_t s : slots) {
          const int64_t at = e_.request_length(s), len = std::min(target - at, budget);
          if (len <= 0) continue;
          work_.push_back({s, at, std::span(ids_).subspan(size_t(at), size_t(len)), at + len == target});
          budget -= len;
        }
        if (work_.empty()) break;
        step(t);
      }
    });
  }

  // `n` decode steps, one token per slot each.
  Timing decode(const std::vector<int32_t>& slots, int64_t n) {
    return timed([&](Timing& t) {
      for (int64_t k = 0; k < n; ++k) {
        work_.clear();
        for (int32_t s : slots) {
          const int64_t at = e_.request_length(s);
          work_.push_back({s, at, std::span(ids_).subspan(size_t(at % gen::kMaxContext), 1), true});
        }
        step(t);
      }
    });
  }

 private:
  template <class Body>
  Timing timed(Body body) {
    Timing t;
    comm_.barrier();
    const double t0 = comm_.wtime();
    body(t);
    comm_.barrier();
    t.seconds = comm_.wtime() - t0;
    return t;
  }
  void step(Timing& t) {
    e_.step(work_);
    t.comm += e_.executor().last_comm_seconds();
    ++t.steps;
  }

  const Comm& comm_;
  Engine& e_;
  std::vector<int32_t> ids_;
  std::vector<StepWork> work_;
};

// ---- cases ------------------------------------------------------------------------------------------

// The job-wide means of per-rank values.
double mean_over_ranks(const Comm& comm, double v) {
  std::vector<double> all(size_t(comm.size()));
  comm.allgather(&v, sizeof v, all.data());
  double s = 0;
  for (double x : all) s += x;
  return s / double(all.size());
}

struct Repeats {
  std::vector<double> seconds, seconds_profiled;  // timed repeats without / with per-op timing
  double comm_share = 0;                           // median over repeats, mean over ranks
  int64_t steps = 0;
  double median_s() const {
    std::vector<double> all = seconds;
    all.insert(all.end(), seconds_profiled.begin(), seconds_profiled.end());
    return median(all);
  }
  // Measured cost of the per-op timing: profiled over unprofiled median, minus one.
  double overhead() const {
    return seconds.empty() || seconds_profiled.empty() ? 0 : median(seconds_profiled) / median(seconds) - 1;
  }
};

class Bench {
 public:
  Bench(const Comm& comm, Engine& e, const BenchOptions& o) : comm_(comm), e_(e), o_(o), d_(comm, e) {
    prof_prefill_.seconds.assign(gen::kNumOps, 0.0);
    prof_decode_.seconds.assign(gen::kNumOps, 0.0);
  }

  // Runs warm-up + repeats of `one` (which returns a Timing). With --profile, timed repeats alternate
  // without / with per-op timing (so the overhead is measured under the same load drift), and the
  // profiled repeats' op seconds are added to `acc`.
  struct Acc {
    std::vector<double> seconds;  // [kNumOps]
    int64_t steps = 0;
  };
  template <class One>
  Repeats run(One one, Acc& acc) {
    Repeats r;
    std::vector<double> shares;
    for (int i = 0; i < o_.warmup + o_.repeats; ++i) {
      const bool timed = i >= o_.warmup;
      const bool prof = o_.profile && timed && (o_.repeats == 1 || (i - o_.warmup) % 2 == 1);
      e_.executor().set_profiling(prof);
      e_.executor().reset_profile();
      const Timing t = one();
      e_.executor().set_profiling(false);
      if (!timed) continue;
      (prof ? r.seconds_profiled : r.seconds).push_back(t.seconds);
      shares.push_back(t.comm / std::max(t.seconds, 1e-12));
      r.steps = t.steps;
      if (!prof) continue;
      for (uint32_t k = 0; k < gen::kNumOps; ++k) acc.seconds[k] += e_.executor().op_seconds()[k];
      acc.steps += e_.executor().profiled_steps();
    }
    r.comm_share = mean_over_ranks(comm_, median(shares));
    return r;
  }

  Acc prof_prefill_, prof_decode_;

  Repeats prefill(int64_t p) {
    return run(
        [&] {
          const int32_t s = e_.start_request();
          const Timing t = d_.prefill_to({s}, p);
          e_.finish_request(s);
          return t;
        },
        prof_prefill_);
  }

  // Opens `n` requests and prefills them to `context` (untimed set-up of the decode cases).
  std::vector<int32_t> open(int64_t n, int64_t context) {
    std::vector<int32_t> slots;
    for (int64_t i = 0; i < n; ++i) slots.push_back(e_.start_request());
    d_.prefill_to(slots, context);
    return slots;
  }
  void close(const std::vector<int32_t>& slots) {
    for (int32_t s : slots) e_.finish_request(s);
  }

  Repeats decode(const std::vector<int32_t>& slots) {
    return run([&] { return d_.decode(slots, o_.decode_tokens); }, prof_decode_);
  }

 private:
  const Comm& comm_;
  Engine& e_;
  const BenchOptions& o_;
  Driver d_;
};

// ---- report -----------------------------------------------------------------------------------------

int run_bench(const Comm& comm, const BenchOptions& o) {
  const bool root = comm.rank() == 0;
  const int P = comm.size(), threads = omp_get_max_threads();
  std::FILE* out = o.json == "-" ? stderr : stdout;  // the table for people
  auto progress = [&](const std::string& s) {
    if (root) std::fprintf(stderr, "bench: %s\n", s.c_str()), std::fflush(stderr);
  };
  if (o.repeats < 1) throw Error("--repeats must be at least 1, got " + std::to_string(o.repeats));
  if (o.warmup < 0) throw Error("--warmup must be at least 0, got " + std::to_string(o.warmup));
  if (o.decode_tokens < 1) throw Error("--decode-tokens must be at least 1, got " + std::to_string(o.decode_tokens));
  for (const auto& [name, n] : {std::pair{"--prefill", o.prefill.size()}, {"--contexts", o.contexts.size()},
                                {"--batch", o.batch.size()}})
    if (n == 0) throw Error(std::string(name) + ": give at least one value");
  std::vector<int64_t> batches;
  for (const std::string& b : o.batch) {
    int64_t v = 0;
    if (b == "full") v = gen::kMaxRequestsPerRank;
    else {
      size_t used = 0;
      try {
        v = std::stoll(b, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != b.size() || v < 1 || v > gen::kMaxRequestsPerRank)
        throw Error("--batch: expected 'full' or a count in [1, max_requests_per_rank=" +
                    std::to_string(gen::kMaxRequestsPerRank) + "], got '" + b + "'");
    }
    if (std::find(batches.begin(), batches.end(), v) == batches.end()) batches.push_back(v);
  }
  std::sort(batches.rbegin(), batches.rend());  // largest first: see the decode loop
  std::vector<int64_t> prefills;
  for (int64_t p : o.prefill) {
    if (p < 1) throw Error("--prefill: lengths must be at least 1, got " + std::to_string(p));
    p = std::min(p, gen::kMaxContext);
    if (std::find(prefills.begin(), prefills.end(), p) == prefills.end()) prefills.push_back(p);
  }
  // Each decode case advances the requests by (warm-up + repeats) x D tokens; the context is clipped so
  // that every case fits max_context.
  const int64_t advance = int64_t(batches.size()) * (o.warmup + o.repeats) * o.decode_tokens;
  if (advance + 1 > gen::kMaxContext)
    throw Error("--decode-tokens x (--warmup + --repeats) x batches = " + std::to_string(advance) +
                " tokens do not fit max_context " + std::to_string(gen::kMaxContext));
  std::vector<int64_t> contexts;
  for (int64_t c : o.contexts) {
    if (c < 1) throw Error("--contexts: contexts must be at least 1, got " + std::to_string(c));
    c = std::min(c, gen::kMaxContext - advance);
    if (std::find(contexts.begin(), contexts.end(), c) == contexts.end()) contexts.push_back(c);
  }

  const std::string load0 = load_average();
  progress("config " + std::string(gen::kConfigName) + ", " + std::to_string(P) + " rank(s) x " +
           std::to_string(threads) + " thread(s), load average " + load0 + "; loading weights");
  Engine engine(comm, o.weights);  // first: a bad weights folder fails before the measurements
  progress("measuring the machine");
  RoofMeter meter(comm);
  Machine before = meter.measure();
  const PlanCost cost = plan_cost();
  // The FMA peak of the arithmetic the linears use: each class's FLOPs at its own peak (a time blend).
  // (A portable build has no FMA loops: no peak, and the FMA efficiencies are reported as 0.)
  auto blend_of = [](const Machine& m, double f64, double f32) {
    return m.fma64 > 0 && m.fma32 > 0 ? (f64 + f32) / (f64 / m.fma64 + f32 / m.fma32) : 0;
  };
  // (The headline blend is that of a long prefill: the lm_head's share vanishes.)
  auto blend = [&](const Machine& m) {
    return blend_of(m, cost.flop_f64, cost.flop_f32 - cost.flop_lm_head);
  };
  {
    char line[160];
    std::snprintf(line, sizeof line, "copy %.2f GB/s, FMA fp32 %.1f / fp64 %.1f GFLOP/s",
                  before.copy_bps * 1e-9, before.fma32 * 1e-9, before.fma64 * 1e-9);
    progress(line);
  }
  // The roofs beside a case: the mean of the measurements just before and just after it.
  auto paired = [&] {
    const Machine after = meter.measure();
    const Machine m = mean(before, after);
    before = after;
    return m;
  };

  Bench b(comm, engine, o);

  json pre = json::array(), dec = json::array();
  std::vector<std::string> lines;
  char buf[512];
  for (int64_t p : prefills) {
    progress("prefill " + std::to_string(p) + " tokens x " + std::to_string(o.warmup + o.repeats));
    before = meter.measure();
    const Repeats r = b.prefill(p);
    const Machine m = paired();
    const auto [f64, f32] = cost.prefill_flop(p * P, P);
    const double s = r.median_s(), tok_s = double(p * P) / s, flops = (f64 + f32) / s;
    const double peak = blend_of(m, f64, f32), eff = peak > 0 ? flops / peak : 0.0;
    pre.push_back({{"tokens", p},
                   {"steps", r.steps},
                   {"seconds", s},
                   {"seconds_all", r.seconds},
                   {"seconds_profiled", r.seconds_profiled},
                   {"tok_s", tok_s},
                   {"gflops", flops * 1e-9},
                   {"fma_efficiency", eff},
                   {"fma_gflops", peak * 1e-9},
                   {"collective_share", r.comm_share},
                   {"profile_overhead", r.overhead()}});
    std::snprintf(buf, sizeof buf, "prefill %6lld tok  %3lld steps  %9.3f s  %9.1f tok/s  %8.1f GFLOP/s  fma %5.1f%%  coll %5.1f%%",
                  (long long)p, (long long)r.steps, s, tok_s, flops * 1e-9, 100 * eff, 100 * r.comm_share);
    lines.push_back(buf);
  }
  for (int64_t c : contexts) {
    progress("decode: prefilling " + std::to_string(batches.front()) + " request(s) per rank to context " +
             std::to_string(c));
    const std::vector<int32_t> slots = b.open(batches.front(), c);
    // Largest batch first: the batch-1 case then reuses the first request, a few tokens further on.
    for (int64_t bs : batches) {
      const std::vector<int32_t> use(slots.begin(), slots.begin() + bs);
      const int64_t at = engine.request_length(use[0]);
      progress("decode " + std::to_string(o.decode_tokens) + " tokens at context " + std::to_string(at) + ", batch " +
               std::to_string(bs) + " per rank");
      before = meter.measure();
      const Repeats r = b.decode(use);
      const Machine m = paired();
      const double s = r.median_s(), steps_s = double(o.decode_tokens) / s, tok_s = steps_s * double(bs * P);
      const double bytes = cost.step_bytes(bs, P), gbps = bytes * steps_s;
      dec.push_back({{"context", at},
                     {"context_requested", c},
                     {"batch_per_rank", bs},
                     {"tokens_per_step", bs * P},
                     {"steps", r.steps},
                     {"seconds", s},
                     {"seconds_all", r.seconds},
                     {"seconds_profiled", r.seconds_profiled},
                     {"ms_per_step", 1e3 / steps_s},
                     {"tok_s", tok_s},
                     {"bytes_per_step", bytes},
                     {"weight_gbps", gbps * 1e-9},
                     {"bandwidth_efficiency", gbps / m.copy_bps},
                     {"copy_gbps", m.copy_bps * 1e-9},
                     {"collective_share", r.comm_share},
                     {"profile_overhead", r.overhead()}});
      std::snprintf(buf, sizeof buf, "decode  ctx %5lld  batch %2lldx%-2d %8.1f ms/step  %9.2f tok/s  %7.2f GB/s  bw %5.1f%%  coll %5.1f%%",
                    (long long)at, (long long)bs, P, 1e3 / steps_s, tok_s, gbps * 1e-9, 100 * gbps / m.copy_bps,
                    100 * r.comm_share);
      lines.push_back(buf);
    }
    b.close(slots);
  }
  // Profiles: mean over ranks.
  for (auto* v : {&b.prof_prefill_.seconds, &b.prof_decode_.seconds}) *v = profile_mean_over_ranks(comm, *v);
  const std::string load1 = load_average();
  if (!root) return 0;

  // What one per-op timing costs: a clock read per op, against the headline decode step.
  // (The fastest of 50 batches of 1000 reads: on a loaded machine most batches include a preemption.)
  double clock_ns = 1e9;
  for (int b = 0; b < 50; ++b) {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    auto t = t0;
    for (int i = 0; i < 1000; ++i) t = Clock::now();
    clock_ns = std::min(clock_ns, std::chrono::duration<double, std::nano>(t - t0).count() / 1000);
  }

  // Headline: the longest prefill; decode at batch 1 (else the smallest batch) at the shortest context.
  const json* longest = &pre.front();
  for (const json& p : pre)
    if (p["tokens"] > (*longest)["tokens"]) longest = &p;
  const json& hp = *longest;
  const json* hd = &dec.front();
  for (const json& d : dec)
    if (d["context_requested"] == dec.front()["context_requested"] && d["batch_per_rank"] < (*hd)["batch_per_rank"]) hd = &d;
  const double head_step_s = (*hd)["ms_per_step"].get<double>() * 1e-3;

  json r;
  r["config"] = gen::kConfigName;
  r["ranks"] = P;
  r["threads_per_rank"] = threads;
  r["load_average_start"] = load0;
  r["load_average_end"] = load1;
  r["repeats"] = o.repeats;
  r["warmup"] = o.warmup;
  r["decode_tokens"] = o.decode_tokens;
  const Machine m = meter.overall();
  r["copy_gbps"] = m.copy_bps * 1e-9;
  r["fma_gflops"] = blend(m) * 1e-9;
  r["fma32_gflops"] = m.fma32 * 1e-9;
  r["fma64_gflops"] = m.fma64 * 1e-9;
  r["prefill_tokens"] = hp["tokens"];
  r["prefill_tok_s"] = hp["tok_s"];
  r["prefill_gflops"] = hp["gflops"];
  r["fma_efficiency"] = hp["fma_efficiency"];
  r["decode_context"] = (*hd)["context"];
  r["decode_tok_s"] = (*hd)["tok_s"];
  r["bytes_per_decode_token"] = cost.bytes_token;
  r["bandwidth_efficiency"] = (*hd)["bandwidth_efficiency"];
  r["collective_share"] = (*hd)["collective_share"];
  r["plan"] = {{"bytes_per_token", cost.bytes_token},
               {"bytes_replicated", cost.bytes_replicated},
               {"bytes_rows", cost.bytes_rows},
               {"bytes_experts_topk", cost.bytes_experts},
               {"bytes_lm_head", cost.bytes_lm_head},
               {"flop_per_token", cost.flop_token()},
               {"flop_per_token_fp64", cost.flop_f64},
               {"flop_per_token_fp32", cost.flop_f32},
               {"flop_per_token_lm_head", cost.flop_lm_head}};
  r["prefill"] = pre;
  r["decode"] = dec;
  if (o.profile) {
    json p;
    p["clock_read_ns"] = clock_ns;
    p["estimated_overhead"] = double(gen::kNumOps) * clock_ns * 1e-9 / head_step_s;
    p["measured_overhead_decode"] = (*hd)["profile_overhead"];
    p["measured_overhead_prefill"] = hp["profile_overhead"];
    p["decode"] = profile_json(b.prof_decode_.seconds);
    p["prefill"] = profile_json(b.prof_prefill_.seconds);
    r["profile"] = p;
  }

  std::fprintf(out, "bench: config %s, %d rank(s) x %d thread(s); load average %s (start), %s (end)\n", gen::kConfigName, P,
               threads, load0.c_str(), load1.c_str());
  std::fprintf(out, "machine (medians of %zu measurements around the cases): copy %.2f GB/s, FMA fp32 %.1f / fp64 %.1f GFLOP/s (blend for this plan's linears %.1f)\n",
               meter.count(), m.copy_bps * 1e-9, m.fma32 * 1e-9, m.fma64 * 1e-9, blend(m) * 1e-9);
  std::fprintf(out, "plan: %.3f GB of weights per decode token (lm_head %.3f, top-%lld experts %.3f, rest %.3f); %.3f GFLOP per decode token (lm_head %.3f, %.0f%% fp64)\n",
               double(cost.bytes_token) * 1e-9, double(cost.bytes_lm_head) * 1e-9, (long long)gen::kNumActivated,
               double(cost.bytes_experts) * 1e-9, double(cost.bytes_replicated + cost.bytes_rows) * 1e-9,
               cost.flop_token() * 1e-9, cost.flop_lm_head * 1e-9, 100 * cost.flop_f64 / cost.flop_token());
  std::fprintf(out, "medians of %d repeat(s) after %d warm-up; rates for the whole job\n", o.repeats, o.warmup);
  for (const auto& l : lines) std::fprintf(out, "  %s\n", l.c_str());
  if (o.profile) {
    std::fprintf(out, "\nprofile overhead: measured %+.1f%% (decode headline), %+.1f%% (prefill headline); estimated %.3f%% (%.0f ns per clock read x %u ops)\n",
                 100 * (*hd)["profile_overhead"].get<double>(), 100 * hp["profile_overhead"].get<double>(),
                 100 * r["profile"]["estimated_overhead"].get<double>(), clock_ns, unsigned(gen::kNumOps));
    print_profile(out, "decode (every context and batch)", b.prof_decode_.seconds, b.prof_decode_.steps);
    print_profile(out, "prefill (every length)", b.prof_prefill_.seconds, b.prof_prefill_.steps);
  }
  std::fflush(out);

  if (!o.json.empty()) {
    const std::string text = r.dump(2) + "\n";
    if (o.json == "-") {
      std::fputs(text.c_str(), stdout);
    } else {
      const std::string tmp = o.json + ".partial";
      {
        std::ofstream f(tmp);
        f << text;
        if (!f.flush()) throw Error(tmp + ": cannot write the JSON report");
      }
      std::filesystem::rename(tmp, o.json);
    }
  }
  return 0;
}

}  // namespace
}  // namespace dsv4

namespace dsv4::cli {

Subcommand add_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* c = app.add_subcommand("bench", "end-to-end prefill / decode speed against the machine's copy bandwidth and FMA peaks");
  c->add_option("-w,--weights", o->weights, "converted weights folder")->required();
  c->add_option("--json", o->json, "also write the results as JSON to FILE ('-': stdout, the table then goes to stderr)");
  c->add_option("--prefill", o->prefill, "prompt lengths to prefill (default 32,512; clipped to max_context)")->delimiter(',');
  c->add_option("--decode-tokens", o->decode_tokens, "decode steps timed per repeat (default 8)");
  c->add_option("--contexts", o->contexts, "decode contexts, reached by prefilling (default 256,4096; clipped to max_context)")
      ->delimiter(',');
  c->add_option("--batch", o->batch, "decode requests per rank: counts or 'full' = max_requests_per_rank (default 1,full)")
      ->delimiter(',');
  c->add_option("--repeats", o->repeats, "timed repeats per case; medians are reported (default 3)");
  c->add_option("--warmup", o->warmup, "untimed repeats before each case (default 1)");
  c->add_option("--threads", o->threads, kThreadsHelp);
  c->add_flag("--profile", o->profile, "time every op (alternate repeats) and print where the time goes, with the overhead");
  return {c, [o](ProcessArgs args) {
            return on_ranks(args, o->threads, [&](const Comm& comm) { return run_bench(comm, *o); });
          }};
}

}  // namespace dsv4::cli
