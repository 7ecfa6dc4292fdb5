// The loop every rank runs (the MPI main thread; MPI_THREAD_FUNNELED). Rank 0 owns the scheduler and a
// bounded submission queue that front ends fill from any thread (GenerationBackend). Each step rank 0
// builds the plan and broadcasts it (one fixed-size message: slot releases and starts, each new
// request's sampling parameters, every chunk's token ids); every rank runs Engine::step on its part;
// owner ranks sample their logits rows; one allgather of fixed-size records brings the tokens (and
// logprobs) back to rank 0, which checks stop tokens / max_new_tokens / max_context and hands the
// TokenEvents to each request's sink. Idle costs no CPU: rank 0 waits on a condition variable, the
// others in a broadcast whose polls back off to milliseconds.
//
// Shutdown: when `stop` turns true rank 0 refuses new requests (Draining), lets the running ones end
// up to the drain timeout, cancels the rest, then broadcasts "exit" and run() returns on every rank.
// Another rank's `stop` reaches rank 0 with that rank's token records of the next step with work.
// run()/eval set exit_when_idle: the loop ends once every submitted request has ended.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/engine/comm.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/serving/backend.hpp"
#include "runtime/serving/sampler.hpp"
#include "runtime/serving/scheduler.hpp"

namespace dsv4 {

struct LoopOptions {
  int64_t max_queue = 256;         // submitted, not yet admitted; more is QueueFull (0: unbounded)
  double drain_timeout_s = 30;     // after stop: running requests may finish for this long
  int64_t max_chunk = 0;           // longest prefill chunk (0 = the slab)
  bool exit_when_idle = false;     // end once every submitted request ended (run, eval)
};

// Per-rank hooks for front ends that need more than sampled tokens (eval: forced tokens, logits
// capture, per-op traces). Called on the loop's thread of every rank, for that rank's own requests.
class StepObserver {
 public:
  virtual ~StepObserver() = default;
  // Before Engine::step: an op hook for this step (traces), or none.
  virtual Executor::OpHook before_step(int64_t step, const RankPlan& mine) { (void)step, (void)mine; return {}; }
  // The owner's k-th logits row of request `id` (k = 0 after the prompt). Return true with `token` set
  // to feed that token instead of the sampled one (the event carries it too).
  virtual bool choose(int64_t id, int64_t k, std::span<const float> logits, int32_t greedy, int32_t& token) {
    (void)id, (void)k, (void)logits, (void)greedy, (void)token;
    return false;
  }
  // After the step's tokens are chosen on every rank (plan: the whole step, all ranks).
  virtual void after_step(int64_t step, const StepPlan& plan) { (void)step, (void)plan; }
  // The owner freed the request's slot (it ended or was cancelled).
  virtual void on_release(int64_t id) { (void)id; }
};

// Rank 0, loop thread: the request's events, in order; the last one has finish != None.
using EventSink = std::function<void(const TokenEvent&)>;

// Figures of one rank's loop (rank 0's also count requests).
struct LoopStats {
  int64_t steps = 0;                // steps with work
  int64_t prefill_tokens = 0, decode_tokens = 0, decode_only_tokens = 0;
  double prefill_s = 0;             // steps with prefill chunks (plan broadcast to token exchange)
  double decode_s = 0;              // decode-only steps
  double comm_s = 0;                // the plan's collectives (Engine)
  double exchange_s = 0;            // plan broadcast + token allgather
  double idle_s = 0;                // waiting for work
};

// The scheduler limits of this binary's plan on a job of `ranks` ranks.
SchedulerLimits plan_limits(int ranks, int64_t max_chunk = 0);

class EngineLoop final : public GenerationBackend {
 public:
  EngineLoop(const Comm& comm, Engine& engine, const SchedulerLimits& limits, const LoopOptions& opt,
             StepObserver* observer = nullptr);
  ~EngineLoop() override;

  // GenerationBackend (rank 0, any thread). Checks the request against the model (token ids, context,
  // sampling parameters) so bad input is refused here, never thrown on an owner rank.
  std::shared_ptr<RequestStream> submit(GenerationRequest req, SubmitStatus& status, std::string& why) override;
  BackendStats stats() const override;

  // Rank 0, before or during run(): a local front end's request (run, eval). `stream` selects the
  // sampler's noise stream (dsv4 run: the request index); `pinned_rank` -1 = least-loaded placement.
  // Unlike submit(), prompt + max_new_tokens may exceed max_context (generation stops there, Context).
  // Returns the request id, or -1 with `why`.
  int64_t submit_local(GenerationRequest req, int64_t stream, int pinned_rank, EventSink sink, std::string& why);
  void cancel(int64_t id);  // rank 0, any thread

  // Every rank, main thread, in lockstep: runs until exit. `stop` is read on rank 0 only.
  void run(const std::atomic<bool>* stop = nullptr);

  const LoopStats& loop_stats() const { return stats_; }
  // run() ended because `stop` turned true (on every rank: the exit message says so).
  bool stopped() const { return stopped_; }
  // Rank 0: the rank that ran request id (-1 if it never started; forgotten when it ends unless
  // exit_when_idle, i.e. run and eval keep it for their reports).
  int owner(int64_t id) const;

 private:
  struct Shared;
  struct Pending {
    int64_t id;
    GenerationRequest req;
    int64_t stream;
    int pinned;
    EventSink sink;
  };
  struct Start {  // parameters of a request this rank starts in the current plan
    int64_t id, stream;
    SamplingParams params;
  };
  struct Owned {  // a request on its owner rank
    int32_t slot;
    SamplingParams params;
    Sampler sampler;
    int64_t rows = 0;
  };
  bool check(const GenerationRequest& req, bool strict_context, std::string& why) const;
  int64_t enqueue(GenerationRequest req, int64_t stream, int pinned, EventSink sink, SubmitStatus& status, std::string& why);
  void root_loop(const std::atomic<bool>* stop);
  void follower_loop();
  // Every rank: apply the plan in `wire_` (already broadcast), step, exchange tokens.
  void execute(StepPlan& plan);
  void pack(const StepPlan& plan, int64_t cmd);
  int64_t unpack(StepPlan& plan);

  const Comm& comm_;
  Engine& engine_;
  SchedulerLimits limits_;
  LoopOptions opt_;
  StepObserver* observer_;
  std::shared_ptr<Shared> shared_;
  // rank 0
  std::unique_ptr<Scheduler> sched_;
  std::unordered_map<int64_t, EventSink> sinks_;
  std::unordered_map<int64_t, Pending> starting_;  // admitted this plan: parameters travel with it
  std::unordered_map<int64_t, Pending> queued_;    // in the scheduler, not started
  std::map<int64_t, int> owner_;
  // every rank
  bool stopped_ = false;
  const std::atomic<bool>* stop_ = nullptr;  // run()'s flag: a signalled follower tells rank 0 in its records
  bool peer_stop_ = false;                   // rank 0: some rank's records carried its stop flag
  std::unordered_map<int64_t, Owned> owned_;
  std::vector<uint8_t> wire_;
  std::vector<Start> starts_;
  std::vector<StepWork> work_;
  std::vector<int64_t> rows_;
  std::vector<uint8_t> records_, all_records_;
  int64_t step_ = 0;
  LoopStats stats_;
};

}  // namespace dsv4
