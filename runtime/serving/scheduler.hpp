// The step scheduler shared by every front end (run, eval, serve): rank 0 feeds it requests, sampled
// tokens and cancellations, and it decides what every rank runs in the next step (a StepPlan that the
// engine loop broadcasts). No MPI and no plan constants: limits come in a struct, so it is unit-tested
// on its own (tests/serving).
//
// Policy:
// - admission in arrival order, each request onto the least-loaded DP rank with a free slot and enough
//   KV blocks for its whole run (prompt + max_new_tokens - 1 positions, capped at max_context), so a
//   running request never waits for memory; a request pinned to a rank (eval's --assign) waits for
//   that rank; the first request that fits nowhere stops admission (no overtaking, no starvation);
// - every step fills a rank's slab with one decode token per decoding request first (rotating which
//   ones when they exceed the slab), then prefill chunks in admission order (at most max_chunk each);
// - a finished or cancelled request frees its slot and KV blocks at once; the owner rank frees its
//   engine slot at the start of the next plan (StepPlan::release).
// Slots mirror Engine::start_request (lowest free slot, releases before starts), so the owner can
// check that both agree.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/serving/request.hpp"

namespace dsv4 {

struct SchedulerLimits {
  int ranks = 1;                   // ranks in the job: StepPlan::ranks has one entry each
  int dp_ranks = 1;                // ranks that take requests: 0..dp_ranks-1 (1 in the attn_dp = 1 debug mode)
  int64_t max_tokens_per_step = 1;    // slab rows per rank per step
  int64_t max_requests_per_rank = 1;  // KV slots per rank
  int64_t max_context = 1;            // positions per request
  int64_t kv_blocks_per_rank = 1;     // blocks of the (ratio-4) compressed pool per rank
  int64_t kv_block_tokens = 1;        // positions one block covers
  int64_t max_chunk = 0;              // longest prefill chunk (0 = the slab)
};

// One request's share of a step on its owner rank.
struct PlanItem {
  int64_t id;         // request id (the front end's)
  int32_t slot;       // KV slot on the owner
  int64_t start;      // position of the first token
  int64_t offset;     // first token in StepPlan::tokens
  int64_t count;      // tokens (1 for a decode token)
  bool logits;        // the row of the last token yields logits (end of prompt, or decode)
};

struct SlotChange {
  int64_t id;
  int32_t slot;
};

struct RankPlan {
  std::vector<SlotChange> release;  // free these engine slots first (requests finished or cancelled)
  std::vector<SlotChange> start;    // then take these (Engine::start_request returns exactly this slot)
  std::vector<PlanItem> work;       // then run these rows, in this order
};

struct StepPlan {
  std::vector<RankPlan> ranks;   // one per rank of the job
  std::vector<int32_t> tokens;   // every item's token ids, concatenated
  int64_t prefill_tokens = 0;    // prompt tokens in the step, all ranks
  int64_t decode_tokens = 0;     // decode tokens in the step, all ranks
  bool has_work() const { return prefill_tokens + decode_tokens > 0; }
  bool empty() const;            // no work, no slot changes
};

struct Finished {
  int64_t id;
  FinishReason reason;
};

class Scheduler {
 public:
  explicit Scheduler(const SchedulerLimits& limits);

  // Queues a request (ids must be unique). Returns false and says why when it can never run: empty
  // prompt, prompt longer than max_context, max_new_tokens < 1, more KV blocks than a rank holds, or
  // a pinned rank outside 0..dp_ranks-1. `pinned_rank` -1: least-loaded placement.
  bool submit(int64_t id, std::vector<int32_t> prompt, int64_t max_new_tokens, std::vector<int32_t> stop_tokens,
              int pinned_rank, std::string& why);
  // A queued request ends at once; a running one frees its slot at once (its owner at the next plan).
  // Unknown or finished ids are ignored.
  void cancel(int64_t id);
  // The next step. Requests whose logits row it holds wait for on_token() before they decode again.
  StepPlan plan();
  // The token chosen from request `id`'s logits row of the last plan. Returns why the request ended
  // (a stop token, max_new_tokens, max_context) or None; an ended request's resources are freed at once.
  FinishReason on_token(int64_t id, int32_t token);
  // Requests ended by cancel() since the last call (on_token reports its own endings).
  std::vector<Finished> take_cancelled();

  int64_t queued() const { return int64_t(queue_.size()); }
  int64_t running() const { return int64_t(running_.size()); }
  int64_t kv_blocks_used() const;
  int64_t kv_blocks_total() const { return int64_t(lim_.dp_ranks) * lim_.kv_blocks_per_rank; }
  bool idle() const { return queue_.empty() && running_.empty(); }
  const SchedulerLimits& limits() const { return lim_; }
  // The positions a request may hold in the cache (KV blocks are reserved for this many at admission).
  int64_t cache_positions(int64_t prompt, int64_t max_new_tokens) const;

 private:
  struct Req {
    int64_t id = 0;
    std::vector<int32_t> prompt;
    int64_t max_new = 0;
    std::vector<int32_t> stop;
    int pinned = -1;
    int rank = -1;
    int32_t slot = -1;
    int64_t blocks = 0;
    int64_t prefilled = 0;
    std::vector<int32_t> out;   // generated tokens; out.back() is fed at the next decode
    bool awaiting = false;      // its logits row is out; no decode until on_token
    uint64_t order = 0;         // admission order
  };
  struct Rank {
    std::vector<bool> slot_used;
    int64_t blocks_used = 0;
    int64_t running = 0;
    std::vector<SlotChange> release;  // freed since the last plan
  };
  bool admit(Req& r, int rank);
  void free_request(Req& r);
  int pick_rank(const Req& r) const;

  SchedulerLimits lim_;
  std::vector<Rank> ranks_;
  std::deque<Req> queue_;
  std::unordered_map<int64_t, Req> running_;
  std::vector<int64_t> running_order_;  // ids in admission order (erased on finish)
  std::vector<Finished> cancelled_;
  uint64_t next_order_ = 0;
  uint64_t rotate_ = 0;  // decode rotation when decode tokens exceed a slab
};

}  // namespace dsv4
