// The scheduler against a simulated engine: random arrivals, lengths, stop tokens and cancellations.
// Every plan is checked against the limits and against a mirror of each rank's engine slots (lowest
// free slot first, releases before starts, contiguous positions), and every request must end.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "runtime/serving/scheduler.hpp"

namespace dsv4 {
namespace {

struct Sim {
  struct Info {
    int64_t prompt = 0, max_new = 0;
    int pinned = -1;
    int rank = -1;
    int32_t slot = -1;
    int64_t len = 0;       // positions in the mirrored cache
    int64_t generated = 0;
    bool waiting = false;  // its logits row is out
    FinishReason end = FinishReason::None;
    int64_t submitted_at = 0, admitted_at = -1;  // plan counts
  };

  explicit Sim(SchedulerLimits l) : lim(l), s(l), slots(size_t(l.ranks), std::vector<int64_t>(size_t(l.max_requests_per_rank), -1)) {}

  // Checks one plan; returns the requests whose logits rows it holds.
  std::vector<int64_t> check(const StepPlan& p) {
    ++plans;
    EXPECT_EQ(int(p.ranks.size()), lim.ranks);
    std::vector<int64_t> rows;
    int64_t prefill = 0, decode = 0;
    for (int k = 0; k < lim.ranks; ++k) {
      const RankPlan& rp = p.ranks[size_t(k)];
      auto& sl = slots[size_t(k)];
      for (const SlotChange& c : rp.release) {
        EXPECT_EQ(sl.at(size_t(c.slot)), c.id) << "release of a slot the request does not hold";
        sl[size_t(c.slot)] = -1;
        EXPECT_NE(info[c.id].end, FinishReason::None) << "released request " << c.id << " has not ended";
      }
      for (const SlotChange& c : rp.start) {
        const auto free = std::find(sl.begin(), sl.end(), -1);
        EXPECT_NE(free, sl.end()) << "rank " << k << ": start with every slot busy";
        if (free == sl.end()) return rows;
        EXPECT_EQ(int32_t(free - sl.begin()), c.slot) << "the engine would take another slot";
        *free = c.id;
        Info& i = info[c.id];
        EXPECT_EQ(i.rank, -1) << "request " << c.id << " started twice";
        EXPECT_LT(k, lim.dp_ranks) << "a request on a rank outside DP";
        if (i.pinned >= 0) {
          EXPECT_EQ(k, i.pinned);
        }
        i.rank = k, i.slot = c.slot, i.admitted_at = plans;
        max_wait = std::max(max_wait, plans - i.submitted_at);
      }
      int64_t tokens = 0;
      std::set<int64_t> seen;
      for (const PlanItem& w : rp.work) {
        Info& i = info.at(w.id);
        EXPECT_TRUE(seen.insert(w.id).second) << "request " << w.id << " twice in one step";
        EXPECT_EQ(i.rank, k);
        EXPECT_EQ(i.slot, w.slot);
        EXPECT_EQ(sl[size_t(w.slot)], w.id);
        EXPECT_EQ(w.start, i.len) << "request " << w.id << ": chunk not contiguous";
        EXPECT_FALSE(i.waiting) << "request " << w.id << " scheduled before its token came back";
        EXPECT_GE(w.count, 1);
        EXPECT_LE(w.offset + w.count, int64_t(p.tokens.size()));
        const bool is_decode = i.len >= i.prompt;
        if (is_decode) {
          EXPECT_EQ(w.count, 1);
          EXPECT_TRUE(w.logits);
          EXPECT_EQ(p.tokens[size_t(w.offset)], last_token[w.id]);
          ++decode;
        } else {
          EXPECT_LE(w.count, lim.max_chunk ? lim.max_chunk : lim.max_tokens_per_step);
          EXPECT_LE(i.len + w.count, i.prompt);
          EXPECT_EQ(w.logits, i.len + w.count == i.prompt);
          for (int64_t t = 0; t < w.count; ++t) EXPECT_EQ(p.tokens[size_t(w.offset + t)], prompt_token(w.id, i.len + t));
          prefill += w.count;
        }
        i.len += w.count;
        EXPECT_LE(i.len, lim.max_context);
        tokens += w.count;
        if (w.logits) i.waiting = true, rows.push_back(w.id);
      }
      EXPECT_LE(tokens, lim.max_tokens_per_step) << "slab overflow on rank " << k;
      EXPECT_LE(int64_t(rp.work.size()), lim.max_requests_per_rank);
      int64_t busy = std::count_if(sl.begin(), sl.end(), [](int64_t v) { return v >= 0; });
      EXPECT_LE(busy, lim.max_requests_per_rank);
    }
    EXPECT_EQ(prefill, p.prefill_tokens);
    EXPECT_EQ(decode, p.decode_tokens);
    EXPECT_LE(s.kv_blocks_used(), s.kv_blocks_total());
    return rows;
  }

  static int32_t prompt_token(int64_t id, int64_t pos) { return int32_t((id * 7919 + pos * 31) % 1000 + 2); }

  SchedulerLimits lim;
  Scheduler s;
  std::vector<std::vector<int64_t>> slots;  // mirrored engine slots: request id or -1
  std::map<int64_t, Info> info;
  std::map<int64_t, int32_t> last_token;
  std::vector<int64_t> submitted;
  int64_t plans = 0, max_wait = 0;
};

void run_random(SchedulerLimits lim, int n_requests, uint64_t seed, bool pin, double cancel_rate) {
  Sim sim(lim);
  std::mt19937_64 rng(seed);
  auto uni = [&](int64_t a, int64_t b) { return std::uniform_int_distribution<int64_t>(a, b)(rng); };
  int64_t next_id = 1000, rejected = 0, ended = 0, steps = 0;
  // Arrivals in bursts (a burst every fourth step on average, up to 12 requests), at about 1.3x what
  // the ranks can serve, so queues build up and drain.
  const double burst_p = std::min(1.0, 0.33 * lim.dp_ranks * double(lim.max_requests_per_rank) / 4 / 6);
  std::map<int64_t, int64_t> submitted_at;
  while (ended + rejected < n_requests) {
    // Arrivals: bursts, with idle gaps.
    const bool burst = std::uniform_real_distribution<double>(0, 1)(rng) < burst_p;
    const int64_t arrivals = sim.submitted.size() < size_t(n_requests) ? std::min<int64_t>(burst ? uni(0, 12) : 0,
                                                                                          n_requests - int64_t(sim.submitted.size()))
                                                                       : 0;
    for (int64_t a = 0; a < arrivals; ++a) {
      const int64_t id = next_id++;
      const int64_t L = uni(0, 20) == 0 ? uni(lim.max_context - 4, lim.max_context + 2) : uni(0, 3 * lim.max_tokens_per_step);
      const int64_t max_new = uni(0, 30) == 0 ? 0 : uni(1, 40);
      std::vector<int32_t> prompt(size_t(std::max<int64_t>(L, 0)));
      for (int64_t t = 0; t < L; ++t) prompt[size_t(t)] = Sim::prompt_token(id, t);
      const int pinned = pin ? int(uni(0, lim.dp_ranks - 1)) : -1;
      std::string why;
      sim.submitted.push_back(id);
      Sim::Info& i = sim.info[id];
      i.prompt = L, i.max_new = max_new, i.pinned = pinned, i.submitted_at = sim.plans;
      if (!sim.s.submit(id, prompt, max_new, {1}, pinned, why)) {
        EXPECT_FALSE(why.empty());
        EXPECT_TRUE(L < 1 || L > lim.max_context || max_new < 1) << "rejected without cause: " << why;
        i.end = FinishReason::Rejected;
        ++rejected;
        continue;
      }
      submitted_at[id] = steps;  // live requests, for random cancellations
    }
    // Cancellations of random live requests.
    if (cancel_rate > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < cancel_rate && !submitted_at.empty()) {
      auto it = submitted_at.begin();
      std::advance(it, uni(0, int64_t(submitted_at.size()) - 1));
      sim.s.cancel(it->first);
    }
    for (const Finished& f : sim.s.take_cancelled()) {
      Sim::Info& i = sim.info.at(f.id);
      EXPECT_EQ(i.end, FinishReason::None);
      i.end = f.reason;
      i.waiting = false;
      submitted_at.erase(f.id);
      ++ended;
    }
    const StepPlan p = sim.s.plan();
    ++steps;
    if (::testing::Test::HasFailure()) return;
    const auto rows = sim.check(p);
    if (::testing::Test::HasFailure()) return;
    if (!p.has_work() && sim.s.queued() > 0) {
      EXPECT_GT(sim.s.running(), 0) << "requests wait while nothing runs";  // the queue head must fit an empty job
    }
    for (int64_t id : rows) {
      Sim::Info& i = sim.info.at(id);
      i.waiting = false;
      const int32_t tok = uni(0, 25) == 0 ? 1 : int32_t(uni(2, 999));
      sim.last_token[id] = tok;
      ++i.generated;
      const FinishReason why = sim.s.on_token(id, tok);
      FinishReason want = FinishReason::None;
      if (tok == 1) want = FinishReason::Stop;
      else if (i.generated >= i.max_new) want = FinishReason::Length;
      else if (i.prompt + i.generated > lim.max_context) want = FinishReason::Context;
      EXPECT_EQ(why, want) << "request " << id;
      if (why != FinishReason::None) {
        i.end = why;
        submitted_at.erase(id);
        ++ended;
      }
    }
    ASSERT_LT(steps, 100 * int64_t(n_requests) + 1000) << "no progress";
  }
  // Nothing leaked: the scheduler is idle and holds nothing; after one more plan the mirrors are empty.
  EXPECT_TRUE(sim.s.idle());
  EXPECT_EQ(sim.s.kv_blocks_used(), 0);
  sim.check(sim.s.plan());
  for (const auto& sl : sim.slots)
    for (int64_t v : sl) EXPECT_EQ(v, -1) << "slot still held by " << v;
  for (int64_t id : sim.submitted) EXPECT_NE(sim.info[id].end, FinishReason::None) << "request " << id << " never ended";
  // FIFO: without pinning, no request starts in an earlier plan than one submitted before it (ignoring
  // the rejected and those cancelled in the queue); with pinning, the same among requests of one rank.
  std::map<int, int64_t> last;  // rank (or -1: all) -> plan of the latest admission seen in submission order
  int64_t admitted = 0;
  for (int64_t id : sim.submitted) {
    const Sim::Info& i = sim.info[id];
    if (i.rank < 0) continue;
    ++admitted;
    const int key = pin ? i.pinned : -1;
    EXPECT_GE(i.admitted_at, last[key]) << "request " << id << " overtaken";
    last[key] = i.admitted_at;
  }
  std::printf("%d requests: %lld rejected, %lld admitted, %lld steps, longest queue wait %lld steps\n", n_requests,
              (long long)rejected, (long long)admitted, (long long)steps, (long long)sim.max_wait);
}

SchedulerLimits small(int ranks, int dp) {
  SchedulerLimits l;
  l.ranks = ranks, l.dp_ranks = dp;
  l.max_tokens_per_step = 16, l.max_requests_per_rank = 4, l.max_context = 128;
  l.kv_block_tokens = 16;
  l.kv_blocks_per_rank = 4 * 128 / 16;
  return l;
}

TEST(Scheduler, RandomArrivalsOneRank) { run_random(small(1, 1), 10000, 1, false, 0); }
TEST(Scheduler, RandomArrivalsSixteenRanks) { run_random(small(16, 16), 10000, 2, false, 0); }
TEST(Scheduler, RandomArrivalsWithCancellations) { run_random(small(4, 4), 10000, 3, false, 0.2); }
TEST(Scheduler, RandomArrivalsPinnedAndChunked) {
  SchedulerLimits l = small(4, 4);
  l.max_chunk = 5;
  run_random(l, 10000, 4, true, 0.05);
}
TEST(Scheduler, RandomArrivalsAttnDpOne) { run_random(small(4, 1), 3000, 5, false, 0.05); }
TEST(Scheduler, KvBlocksBindBeforeSlots) {
  SchedulerLimits l = small(2, 2);
  l.kv_blocks_per_rank = 10;  // fewer blocks than 4 slots of full context need
  run_random(l, 5000, 6, false, 0.05);
}

TEST(Scheduler, DecodeFirstThenPrefillChunks) {
  SchedulerLimits l = small(1, 1);
  l.max_tokens_per_step = 8;
  Scheduler s(l);
  std::string why;
  ASSERT_TRUE(s.submit(1, std::vector<int32_t>(3, 5), 4, {}, -1, why));
  ASSERT_TRUE(s.submit(2, std::vector<int32_t>(20, 6), 4, {}, -1, why));
  StepPlan p = s.plan();
  ASSERT_EQ(p.ranks[0].start.size(), 2u);
  ASSERT_EQ(p.ranks[0].work.size(), 2u);
  EXPECT_EQ(p.ranks[0].work[0].count, 3);  // request 1's prompt whole
  EXPECT_TRUE(p.ranks[0].work[0].logits);
  EXPECT_EQ(p.ranks[0].work[1].count, 5);  // request 2's first chunk fills the slab
  EXPECT_FALSE(p.ranks[0].work[1].logits);
  EXPECT_EQ(s.on_token(1, 9), FinishReason::None);
  p = s.plan();
  ASSERT_EQ(p.ranks[0].work.size(), 2u);
  EXPECT_EQ(p.ranks[0].work[0].id, 1);  // the decode token comes first
  EXPECT_EQ(p.ranks[0].work[0].start, 3);
  EXPECT_EQ(p.tokens[size_t(p.ranks[0].work[0].offset)], 9);
  EXPECT_EQ(p.ranks[0].work[1].id, 2);
  EXPECT_EQ(p.ranks[0].work[1].start, 5);
  EXPECT_EQ(p.ranks[0].work[1].count, 7);
}

TEST(Scheduler, LeastLoadedPlacementAndImmediateFree) {
  Scheduler s(small(3, 3));
  std::string why;
  for (int64_t id = 0; id < 4; ++id) ASSERT_TRUE(s.submit(id, {7, 8}, 1, {}, -1, why));
  StepPlan p = s.plan();
  EXPECT_EQ(p.ranks[0].start.size(), 2u);  // 0 -> r0, 1 -> r1, 2 -> r2, 3 -> r0
  EXPECT_EQ(p.ranks[1].start.size(), 1u);
  EXPECT_EQ(p.ranks[2].start.size(), 1u);
  EXPECT_EQ(s.on_token(1, 3), FinishReason::Length);
  EXPECT_EQ(s.running(), 3);
  ASSERT_TRUE(s.submit(9, {7}, 2, {}, -1, why));
  p = s.plan();
  ASSERT_EQ(p.ranks[1].release.size(), 1u);  // freed at once, taken again in the same plan
  ASSERT_EQ(p.ranks[1].start.size(), 1u);
  EXPECT_EQ(p.ranks[1].start[0].id, 9);
  EXPECT_EQ(p.ranks[1].start[0].slot, 0);
}

TEST(Scheduler, RejectsWhatCanNeverRun) {
  Scheduler s(small(2, 1));
  std::string why;
  EXPECT_FALSE(s.submit(1, {}, 4, {}, -1, why));
  EXPECT_NE(why.find("empty"), std::string::npos);
  EXPECT_FALSE(s.submit(2, std::vector<int32_t>(129, 1), 4, {}, -1, why));
  EXPECT_NE(why.find("max_context"), std::string::npos);
  EXPECT_FALSE(s.submit(3, {1}, 0, {}, -1, why));
  EXPECT_FALSE(s.submit(4, {1}, 4, {}, 1, why));  // rank 1 is not a DP rank here
  EXPECT_TRUE(s.submit(5, std::vector<int32_t>(128, 1), 100, {}, -1, why));  // capped at max_context
}

}  // namespace
}  // namespace dsv4
