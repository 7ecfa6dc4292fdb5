#include "runtime/serving/engine_loop.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "model.hpp"
#include "plan/error.hpp"

namespace dsv4 {
namespace {

enum : int64_t { kCmdStep = 1, kCmdExit = 2, kCmdExitStopped = 3 };  // ExitStopped: `stop` ended the loop
// Each rank's token records after a step: {rows, stop flag}, then the records.
constexpr size_t kRecordsHeader = 2 * sizeof(int64_t);

// The plan on the wire: a header, then the arrays, in one fixed-size broadcast.
// Waiting ranks poll the next plan at most this far apart: idle, 100 cheap wake-ups a second per rank;
// the first step after idle starts up to this late.
constexpr int64_t kIdlePollMaxUs = 10000;

struct WireHeader {
  int64_t cmd, n_tokens, prefill_tokens, decode_tokens;
};
struct WireCounts {  // per rank, before its arrays
  int32_t release, start, work;
};
struct WireSlot {
  int64_t id;
  int32_t rank, slot;
};
struct WireStart {
  int64_t id, stream;
  uint64_t seed;
  double temperature, top_p;
  int32_t rank, slot, top_k, top_logprobs;
};
struct WireItem {
  int64_t id, start, offset, count;
  int32_t rank, slot, logits, pad;
};
// One chosen token on the way back to rank 0.
struct WireRecord {
  int64_t id;
  int32_t token;
  float logprob;
  int32_t n_top, pad;
  TokenLogprob top[kMaxTopLogprobs];
};

template <class T>
void put(std::vector<uint8_t>& buf, size_t& at, const T& v) {
  DSV4_ASSERT(at + sizeof(T) <= buf.size(), "engine loop: plan message overflow");
  std::memcpy(buf.data() + at, &v, sizeof(T));
  at += sizeof(T);
}
template <class T>
T get(const std::vector<uint8_t>& buf, size_t& at) {
  DSV4_ASSERT(at + sizeof(T) <= buf.size(), "engine loop: plan message truncated");
  T v;
  std::memcpy(&v, buf.data() + at, sizeof(T));
  at += sizeof(T);
  return v;
}

}  // namespace

SchedulerLimits plan_limits(int ranks, int64_t max_chunk) {
  SchedulerLimits l;
  l.ranks = ranks;
  l.dp_ranks = gen::kAttnDp > 1 ? ranks : 1;  // attn_dp = 1: one logical attention shard, every request on rank 0
  l.max_tokens_per_step = gen::kMaxTokensPerStep;
  l.max_requests_per_rank = gen::kMaxRequestsPerRank;
  l.max_context = gen::kMaxContext;
  // The ratio-4 compressed pool is the one that fills first: a block holds kv_block entries of 4 positions.
  l.kv_block_tokens = 4 * gen::kKvBlock;
  l.kv_blocks_per_rank = gen::kMaxRequestsPerRank * gen::kBlockTableWidthR4;
  l.max_chunk = max_chunk;
  return l;
}

struct EngineLoop::Shared {
  std::mutex m;
  std::condition_variable cv;
  std::deque<Pending> pending;
  std::vector<int64_t> cancels;
  bool draining = false;
  int64_t next_id = 0;
  BackendStats snapshot;
};

namespace {

class Stream final : public RequestStream {
 public:
  Stream(std::function<void(int64_t)> cancel, int64_t id) : cancel_(std::move(cancel)), id_(id) {}
  bool next(TokenEvent& ev, std::chrono::milliseconds timeout) override {
    std::unique_lock lk(m_);
    if (!cv_.wait_for(lk, timeout, [&] { return !q_.empty(); })) return false;
    ev = std::move(q_.front());
    q_.pop_front();
    return true;
  }
  void cancel() override { cancel_(id_); }
  void push(const TokenEvent& ev) {
    {
      std::lock_guard lk(m_);
      q_.push_back(ev);
    }
    cv_.notify_all();
  }

 private:
  std::function<void(int64_t)> cancel_;
  int64_t id_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<TokenEvent> q_;
};

}  // namespace

EngineLoop::EngineLoop(const Comm& comm, Engine& engine, const SchedulerLimits& limits, const LoopOptions& opt,
                       StepObserver* observer)
    : comm_(comm), engine_(engine), limits_(limits), opt_(opt), observer_(observer), shared_(std::make_shared<Shared>()) {
  if (limits_.ranks != comm.size()) throw Error("engine loop: limits for " + std::to_string(limits_.ranks) + " ranks, the job has " + std::to_string(comm.size()));
  if (comm.rank() == 0) sched_ = std::make_unique<Scheduler>(limits_);
  const int64_t P = limits_.ranks, R = limits_.max_requests_per_rank, T = limits_.max_tokens_per_step;
  wire_.resize(sizeof(WireHeader) + size_t(P) * sizeof(WireCounts) +
               size_t(P * R) * (sizeof(WireSlot) + sizeof(WireStart) + sizeof(WireItem)) +
               size_t(P * T) * sizeof(int32_t));
  records_.resize(kRecordsHeader + size_t(R) * sizeof(WireRecord));
  all_records_.resize(records_.size() * size_t(P));
  {
    std::lock_guard lk(shared_->m);
    shared_->snapshot.kv_blocks_total = limits_.dp_ranks * limits_.kv_blocks_per_rank;
    shared_->snapshot.max_context = limits_.max_context;
    shared_->snapshot.queue_capacity = opt_.max_queue;
  }
}

EngineLoop::~EngineLoop() = default;

bool EngineLoop::check(const GenerationRequest& req, bool strict_context, std::string& why) const {
  const int64_t L = int64_t(req.prompt.size());
  if (L < 1) return why = "the prompt is empty", false;
  for (size_t i = 0; i < req.prompt.size(); ++i)
    if (req.prompt[i] < 0 || req.prompt[i] >= gen::kVocabSize)
      return why = "prompt token " + std::to_string(i) + ": id " + std::to_string(req.prompt[i]) +
                   " is outside the vocabulary [0, " + std::to_string(gen::kVocabSize) + ")",
             false;
  if (req.max_new_tokens < 1) return why = "max_new_tokens must be at least 1, got " + std::to_string(req.max_new_tokens), false;
  if (L > limits_.max_context || (strict_context && L + req.max_new_tokens > limits_.max_context))
    return why = "prompt (" + std::to_string(L) + " tokens)" + (strict_context ? " + max_new_tokens (" + std::to_string(req.max_new_tokens) + ")" : "") +
                 " exceeds max_context " + std::to_string(limits_.max_context),
           false;
  try {
    check_sampling(req.sampling);
  } catch (const Error& e) {
    return why = e.what(), false;
  }
  return true;
}

int64_t EngineLoop::enqueue(GenerationRequest req, int64_t stream, int pinned, EventSink sink, SubmitStatus& status,
                            std::string& why) {
  std::lock_guard lk(shared_->m);
  Shared& sh = *shared_;
  if (sh.draining) {
    status = SubmitStatus::Draining, why = "the server is shutting down";
    return -1;
  }
  if (opt_.max_queue > 0 && sh.snapshot.queued + int64_t(sh.pending.size()) >= opt_.max_queue) {
    status = SubmitStatus::QueueFull, why = "the queue holds " + std::to_string(opt_.max_queue) + " requests";
    return -1;
  }
  const int64_t id = sh.next_id++;
  sh.pending.push_back({id, std::move(req), stream < 0 ? 0 : stream, pinned, std::move(sink)});
  sh.cv.notify_all();
  status = SubmitStatus::Accepted;
  return id;
}

std::shared_ptr<RequestStream> EngineLoop::submit(GenerationRequest req, SubmitStatus& status, std::string& why) {
  if (!check(req, true, why)) {
    status = SubmitStatus::Invalid;
    return nullptr;
  }
  if (req.stop_tokens.empty()) req.stop_tokens = {int32_t(gen::kEosTokenId)};  // the contract's default
  std::weak_ptr<Shared> weak = shared_;
  auto cancel = [weak](int64_t id) {
    if (auto sh = weak.lock()) {
      std::lock_guard lk(sh->m);
      sh->cancels.push_back(id);
      sh->cv.notify_all();
    }
  };
  // The id is known only once queued: the stream is made first and learns it through the cancel hook.
  auto id_box = std::make_shared<std::atomic<int64_t>>(-1);
  auto stream = std::make_shared<Stream>([cancel, id_box](int64_t) { cancel(id_box->load()); }, 0);
  std::weak_ptr<Stream> ws = stream;
  const int64_t id = enqueue(std::move(req), 0, -1, [ws](const TokenEvent& ev) {
    if (auto s = ws.lock()) s->push(ev);
  }, status, why);
  if (id < 0) return nullptr;
  id_box->store(id);
  return stream;
}

int64_t EngineLoop::submit_local(GenerationRequest req, int64_t stream, int pinned_rank, EventSink sink, std::string& why) {
  if (!check(req, false, why)) return -1;
  SubmitStatus st;
  return enqueue(std::move(req), stream, pinned_rank, std::move(sink), st, why);
}

void EngineLoop::cancel(int64_t id) {
  std::lock_guard lk(shared_->m);
  shared_->cancels.push_back(id);
  shared_->cv.notify_all();
}

BackendStats EngineLoop::stats() const {
  std::lock_guard lk(shared_->m);
  BackendStats s = shared_->snapshot;
  s.queued += int64_t(shared_->pending.size());
  return s;
}

int EngineLoop::owner(int64_t id) const {
  const auto it = owner_.find(id);
  return it == owner_.end() ? -1 : it->second;
}

void EngineLoop::pack(const StepPlan& plan, int64_t cmd) {
  size_t at = 0;
  put(wire_, at, WireHeader{cmd, int64_t(plan.tokens.size()), plan.prefill_tokens, plan.decode_tokens});
  for (int32_t k = 0; k < int32_t(plan.ranks.size()); ++k) {
    const RankPlan& r = plan.ranks[size_t(k)];
    put(wire_, at, WireCounts{int32_t(r.release.size()), int32_t(r.start.size()), int32_t(r.work.size())});
    for (const SlotChange& c : r.release) put(wire_, at, WireSlot{c.id, k, c.slot});
    for (const SlotChange& c : r.start) {
      const Pending& p = starting_.at(c.id);
      const SamplingParams& s = p.req.sampling;
      put(wire_, at, WireStart{c.id, p.stream, s.seed, s.temperature, s.top_p, k, c.slot, s.top_k, s.top_logprobs});
    }
    for (const PlanItem& w : r.work) put(wire_, at, WireItem{w.id, w.start, w.offset, w.count, k, w.slot, w.logits ? 1 : 0, 0});
  }
  DSV4_ASSERT(at + plan.tokens.size() * sizeof(int32_t) <= wire_.size(), "engine loop: plan message overflow");
  if (!plan.tokens.empty())  // an empty vector's data() may be null, which memcpy must not get
    std::memcpy(wire_.data() + at, plan.tokens.data(), plan.tokens.size() * sizeof(int32_t));
}

int64_t EngineLoop::unpack(StepPlan& plan) {
  size_t at = 0;
  const auto h = get<WireHeader>(wire_, at);
  if (h.cmd == kCmdExit || h.cmd == kCmdExitStopped) return h.cmd;
  DSV4_ASSERT(h.cmd == kCmdStep, "engine loop: unknown command on the wire");
  plan.ranks.assign(size_t(limits_.ranks), {});
  plan.prefill_tokens = h.prefill_tokens, plan.decode_tokens = h.decode_tokens;
  starts_.clear();
  for (int32_t k = 0; k < limits_.ranks; ++k) {
    RankPlan& r = plan.ranks[size_t(k)];
    const auto n = get<WireCounts>(wire_, at);
    for (int32_t i = 0; i < n.release; ++i) {
      const auto w = get<WireSlot>(wire_, at);
      r.release.push_back({w.id, w.slot});
    }
    for (int32_t i = 0; i < n.start; ++i) {
      const auto w = get<WireStart>(wire_, at);
      r.start.push_back({w.id, w.slot});
      if (k == comm_.rank()) {
        SamplingParams s;
        s.seed = w.seed, s.temperature = w.temperature, s.top_p = w.top_p, s.top_k = w.top_k, s.top_logprobs = w.top_logprobs;
        starts_.push_back({w.id, w.stream, s});
      }
    }
    for (int32_t i = 0; i < n.work; ++i) {
      const auto w = get<WireItem>(wire_, at);
      r.work.push_back({w.id, w.slot, w.start, w.offset, w.count, w.logits != 0});
    }
  }
  DSV4_ASSERT(h.n_tokens >= 0 && at + size_t(h.n_tokens) * sizeof(int32_t) <= wire_.size(), "engine loop: plan message truncated");
  plan.tokens.resize(size_t(h.n_tokens));
  if (!plan.tokens.empty()) std::memcpy(plan.tokens.data(), wire_.data() + at, plan.tokens.size() * sizeof(int32_t));
  return kCmdStep;
}

void EngineLoop::execute(StepPlan& plan) {
  const int me = comm_.rank();
  const RankPlan& mine = plan.ranks[size_t(me)];
  for (const SlotChange& c : mine.release) {
    engine_.finish_request(c.slot);
    owned_.erase(c.id);
    if (observer_) observer_->on_release(c.id);
  }
  for (const SlotChange& c : mine.start) {
    const int32_t slot = engine_.start_request();
    DSV4_ASSERT(slot == c.slot, "engine loop: the engine took slot " + std::to_string(slot) + ", the scheduler planned " + std::to_string(c.slot));
    const auto it = std::find_if(starts_.begin(), starts_.end(), [&](const Start& s) { return s.id == c.id; });
    DSV4_ASSERT(it != starts_.end(), "engine loop: a start without its parameters");
    owned_.emplace(c.id, Owned{slot, it->params, Sampler(it->params.seed, it->stream)});
  }
  if (!plan.has_work()) return;  // every rank knows: no step, no exchange

  const double t0 = comm_.wtime();
  work_.clear();
  rows_.clear();
  for (const PlanItem& w : mine.work) {
    work_.push_back({w.slot, w.start, std::span<const int32_t>(plan.tokens).subspan(size_t(w.offset), size_t(w.count)), w.logits});
    if (w.logits) rows_.push_back(w.id);
  }
  Executor::OpHook hook;
  if (observer_) hook = observer_->before_step(step_, mine);
  engine_.step(work_, hook);
  stats_.comm_s += engine_.executor().last_comm_seconds();

  std::memset(records_.data(), 0, records_.size());
  const int64_t header[2] = {int64_t(rows_.size()), stop_ && stop_->load() ? 1 : 0};  // rows, this rank was signalled
  const int64_t n = header[0];
  std::memcpy(records_.data(), header, sizeof header);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t id = rows_[size_t(j)];
    Owned& o = owned_.at(id);
    const int64_t k = o.rows++;
    const int32_t greedy = engine_.greedy_token(j);
    WireRecord rec{};
    rec.id = id;
    int32_t forced = -1;
    if (observer_ && observer_->choose(id, k, engine_.logits(j), greedy, forced)) {
      rec.token = forced;
    } else if (o.params.temperature <= 0 && o.params.top_logprobs < 0) {
      rec.token = greedy;  // the plan's own argmax
    } else {
      const SampledToken s = o.sampler.sample(engine_.logits(j), o.params);
      rec.token = o.params.temperature <= 0 ? greedy : s.token;
      rec.logprob = s.logprob;
      rec.n_top = int32_t(s.top.size());
      std::copy(s.top.begin(), s.top.end(), rec.top);
    }
    std::memcpy(records_.data() + kRecordsHeader + size_t(j) * sizeof(WireRecord), &rec, sizeof rec);
  }
  const double tx = comm_.wtime();
  comm_.allgather(records_.data(), int64_t(records_.size()), all_records_.data());
  stats_.exchange_s += comm_.wtime() - tx;
  if (observer_) observer_->after_step(step_, plan);
  ++step_, ++stats_.steps;
  stats_.prefill_tokens += plan.prefill_tokens, stats_.decode_tokens += plan.decode_tokens;
  const double dt = comm_.wtime() - t0;
  if (plan.prefill_tokens > 0) {
    stats_.prefill_s += dt;
  } else {
    stats_.decode_s += dt;
    stats_.decode_only_tokens += plan.decode_tokens;
  }
}

void EngineLoop::run(const std::atomic<bool>* stop) {
  stop_ = stop;
  if (comm_.rank() == 0) root_loop(stop);
  else follower_loop();
}

void EngineLoop::follower_loop() {
  StepPlan plan;
  for (;;) {
    const double t0 = comm_.wtime();
    comm_.broadcast_idle(wire_.data(), int64_t(wire_.size()), 0, kIdlePollMaxUs);
    const double dt = comm_.wtime() - t0;
    if (const int64_t cmd = unpack(plan); cmd != kCmdStep) {
      stopped_ = cmd == kCmdExitStopped;
      return;
    }
    (plan.has_work() ? stats_.exchange_s : stats_.idle_s) += dt;
    execute(plan);
  }
}

void EngineLoop::root_loop(const std::atomic<bool>* stop) {
  Shared& sh = *shared_;
  bool draining = false;
  double deadline = 0;
  // Events go out after the stats snapshot is updated, so a client that sees its request end also
  // sees its slot and blocks freed in stats().
  std::vector<std::pair<int64_t, TokenEvent>> events;
  auto deliver = [&] {
    {
      std::lock_guard lk(sh.m);
      sh.snapshot.queued = sched_->queued();
      sh.snapshot.running = sched_->running();
      sh.snapshot.kv_blocks_used = sched_->kv_blocks_used();
    }
    for (auto& [id, ev] : events) {
      const auto it = sinks_.find(id);
      if (it == sinks_.end()) continue;
      it->second(ev);
      if (ev.finish != FinishReason::None) {
        sinks_.erase(it), queued_.erase(id);
        if (!opt_.exit_when_idle) owner_.erase(id);  // a server keeps no record per past request
      }
    }
    events.clear();
  };
  auto emit_end = [&](int64_t id, FinishReason why) {
    TokenEvent ev;
    ev.finish = why;
    events.emplace_back(id, std::move(ev));
  };
  for (;;) {
    std::deque<Pending> in;
    std::vector<int64_t> cancels;
    {
      std::lock_guard lk(sh.m);
      in.swap(sh.pending);
      cancels.swap(sh.cancels);
    }
    for (Pending& p : in) {
      std::string why;
      if (!sched_->submit(p.id, p.req.prompt, p.req.max_new_tokens, p.req.stop_tokens, p.pinned, why)) {
        TokenEvent ev;  // checked at submission already: cannot happen unless the limits disagree
        ev.finish = FinishReason::Rejected;
        p.sink(ev);
        continue;
      }
      sinks_.emplace(p.id, std::move(p.sink));
      const int64_t id = p.id;
      queued_.emplace(id, std::move(p));
    }
    for (int64_t id : cancels) sched_->cancel(id);
    if (((stop && stop->load()) || peer_stop_) && !draining) {
      draining = true;
      deadline = comm_.wtime() + opt_.drain_timeout_s;
      std::lock_guard lk(sh.m);
      sh.draining = true;
    }
    if (draining && comm_.wtime() >= deadline)
      for (const auto& [id, sink] : std::vector<std::pair<int64_t, EventSink>>(sinks_.begin(), sinks_.end())) sched_->cancel(id);
    for (const Finished& f : sched_->take_cancelled()) emit_end(f.id, f.reason);
    deliver();

    StepPlan plan = sched_->plan();
    starting_.clear();
    for (int32_t k = 0; k < limits_.ranks; ++k)
      for (const SlotChange& c : plan.ranks[size_t(k)].start) {
        auto it = queued_.find(c.id);
        DSV4_ASSERT(it != queued_.end(), "engine loop: a start of an unknown request");
        owner_[c.id] = k;
        starting_.emplace(c.id, std::move(it->second));
        queued_.erase(it);
      }
    if (plan.empty()) {
      std::unique_lock lk(sh.m);
      const bool nothing_new = sh.pending.empty() && sh.cancels.empty();
      if (nothing_new && sched_->idle() && (opt_.exit_when_idle || draining)) break;
      if (!nothing_new) continue;
      // Idle: sleep until a submission, a cancel or the stop flag (a signal handler cannot notify).
      const double t0 = comm_.wtime();
      sh.cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return !sh.pending.empty() || !sh.cancels.empty(); });
      stats_.idle_s += comm_.wtime() - t0;
      continue;
    }
    pack(plan, kCmdStep);
    const double tb = comm_.wtime();
    comm_.broadcast_idle(wire_.data(), int64_t(wire_.size()), 0, kIdlePollMaxUs);
    stats_.exchange_s += comm_.wtime() - tb;
    starts_.clear();
    for (const SlotChange& c : plan.ranks[0].start) starts_.push_back({c.id, starting_.at(c.id).stream, starting_.at(c.id).req.sampling});
    execute(plan);
    if (!plan.has_work()) continue;
    for (int k = 0; k < limits_.ranks; ++k) {
      const uint8_t* base = all_records_.data() + size_t(k) * records_.size();
      int64_t header[2] = {};
      std::memcpy(header, base, sizeof header);
      const int64_t n = header[0];
      if (header[1] != 0) peer_stop_ = true;  // SIGTERM reached that rank: the job stops as if rank 0 got it
      for (int64_t j = 0; j < n; ++j) {
        WireRecord rec;
        std::memcpy(&rec, base + kRecordsHeader + size_t(j) * sizeof(WireRecord), sizeof rec);
        const FinishReason why = sched_->on_token(rec.id, rec.token);
        TokenEvent ev;
        ev.token = rec.token;
        ev.logprob = rec.logprob;
        ev.top.assign(rec.top, rec.top + std::clamp(rec.n_top, 0, int32_t(kMaxTopLogprobs)));
        ev.finish = why;
        events.emplace_back(rec.id, std::move(ev));
      }
    }
    deliver();
  }
  stopped_ = draining;
  pack(StepPlan{}, draining ? kCmdExitStopped : kCmdExit);
  comm_.broadcast_idle(wire_.data(), int64_t(wire_.size()), 0, kIdlePollMaxUs);
}

}  // namespace dsv4
