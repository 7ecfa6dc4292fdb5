#include "runtime/serving/scheduler.hpp"

#include <algorithm>
#include <utility>

#include "plan/error.hpp"

namespace dsv4 {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Context: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Rejected: return "rejected";
  }
  return "unknown";
}

bool StepPlan::empty() const {
  if (has_work()) return false;
  for (const RankPlan& r : ranks)
    if (!r.release.empty() || !r.start.empty() || !r.work.empty()) return false;
  return true;
}

Scheduler::Scheduler(const SchedulerLimits& limits) : lim_(limits) {
  if (lim_.ranks < 1 || lim_.dp_ranks < 1 || lim_.dp_ranks > lim_.ranks || lim_.max_tokens_per_step < 1 ||
      lim_.max_requests_per_rank < 1 || lim_.max_context < 1 || lim_.kv_blocks_per_rank < 1 || lim_.kv_block_tokens < 1 ||
      lim_.max_chunk < 0)
    throw Error("scheduler: invalid limits");
  if (lim_.max_chunk == 0 || lim_.max_chunk > lim_.max_tokens_per_step) lim_.max_chunk = lim_.max_tokens_per_step;
  ranks_.resize(size_t(lim_.ranks));
  for (Rank& r : ranks_) r.slot_used.assign(size_t(lim_.max_requests_per_rank), false);
}

int64_t Scheduler::cache_positions(int64_t prompt, int64_t max_new_tokens) const {
  // The last generated token is never fed back, so it takes no cache position.
  return std::min(prompt + max_new_tokens - 1, lim_.max_context);
}

int64_t Scheduler::kv_blocks_used() const {
  int64_t n = 0;
  for (const Rank& r : ranks_) n += r.blocks_used;
  return n;
}

bool Scheduler::submit(int64_t id, std::vector<int32_t> prompt, int64_t max_new_tokens, std::vector<int32_t> stop_tokens,
                       int pinned_rank, std::string& why) {
  const int64_t L = int64_t(prompt.size());
  if (L < 1) {
    why = "the prompt is empty";
    return false;
  }
  if (L > lim_.max_context) {
    why = "the prompt has " + std::to_string(L) + " tokens, max_context is " + std::to_string(lim_.max_context);
    return false;
  }
  if (max_new_tokens < 1) {
    why = "max_new_tokens must be at least 1, got " + std::to_string(max_new_tokens);
    return false;
  }
  if (pinned_rank < -1 || pinned_rank >= lim_.dp_ranks) {
    why = "rank " + std::to_string(pinned_rank) + " takes no requests (" + std::to_string(lim_.dp_ranks) + " DP ranks)";
    return false;
  }
  const int64_t blocks = (cache_positions(L, max_new_tokens) + lim_.kv_block_tokens - 1) / lim_.kv_block_tokens;
  if (blocks > lim_.kv_blocks_per_rank) {
    why = "needs " + std::to_string(blocks) + " KV blocks, a rank holds " + std::to_string(lim_.kv_blocks_per_rank);
    return false;
  }
  Req r;
  r.id = id, r.prompt = std::move(prompt), r.max_new = max_new_tokens, r.stop = std::move(stop_tokens);
  r.pinned = pinned_rank, r.blocks = blocks;
  queue_.push_back(std::move(r));
  return true;
}

void Scheduler::cancel(int64_t id) {
  for (auto it = queue_.begin(); it != queue_.end(); ++it)
    if (it->id == id) {
      queue_.erase(it);
      cancelled_.push_back({id, FinishReason::Cancelled});
      return;
    }
  auto it = running_.find(id);
  if (it == running_.end()) return;
  free_request(it->second);
  running_.erase(it);
  cancelled_.push_back({id, FinishReason::Cancelled});
}

std::vector<Finished> Scheduler::take_cancelled() { return std::exchange(cancelled_, {}); }

void Scheduler::free_request(Req& r) {
  Rank& k = ranks_[size_t(r.rank)];
  k.slot_used[size_t(r.slot)] = false;
  k.blocks_used -= r.blocks;
  --k.running;
  k.release.push_back({r.id, r.slot});
  std::erase(running_order_, r.id);
}

int Scheduler::pick_rank(const Req& r) const {
  auto fits = [&](int k) {
    const Rank& x = ranks_[size_t(k)];
    return x.running < lim_.max_requests_per_rank && x.blocks_used + r.blocks <= lim_.kv_blocks_per_rank;
  };
  if (r.pinned >= 0) return fits(r.pinned) ? r.pinned : -1;
  int best = -1;
  for (int k = 0; k < lim_.dp_ranks; ++k) {  // fewest requests, then fewest blocks, then lowest rank
    if (!fits(k)) continue;
    const Rank& x = ranks_[size_t(k)];
    if (best < 0 || x.running < ranks_[size_t(best)].running ||
        (x.running == ranks_[size_t(best)].running && x.blocks_used < ranks_[size_t(best)].blocks_used))
      best = k;
  }
  return best;
}

bool Scheduler::admit(Req& r, int rank) {
  Rank& k = ranks_[size_t(rank)];
  const auto free = std::find(k.slot_used.begin(), k.slot_used.end(), false);
  DSV4_ASSERT(free != k.slot_used.end(), "scheduler: a rank under its request limit has no free slot");
  *free = true;
  r.rank = rank;
  r.slot = int32_t(free - k.slot_used.begin());
  r.order = next_order_++;
  k.blocks_used += r.blocks;
  ++k.running;
  return true;
}

StepPlan Scheduler::plan() {
  StepPlan p;
  p.ranks.resize(ranks_.size());
  for (size_t k = 0; k < ranks_.size(); ++k) p.ranks[k].release = std::exchange(ranks_[k].release, {});

  // Admission in arrival order.
  std::vector<bool> blocked(ranks_.size(), false);  // a pinned request waits for this rank
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->pinned >= 0 && blocked[size_t(it->pinned)]) {
      ++it;
      continue;
    }
    const int rank = pick_rank(*it);
    if (rank < 0) {
      if (it->pinned < 0) break;  // fits nowhere now: later requests wait behind it
      blocked[size_t(it->pinned)] = true;
      ++it;
      continue;
    }
    admit(*it, rank);
    p.ranks[size_t(rank)].start.push_back({it->id, it->slot});
    running_order_.push_back(it->id);
    const int64_t id = it->id;
    running_.emplace(id, std::move(*it));
    it = queue_.erase(it);
  }

  // Per rank: decode tokens first, then prefill chunks, in admission order.
  std::vector<std::vector<Req*>> by_rank(ranks_.size());
  for (int64_t id : running_order_) {
    Req& r = running_.at(id);
    by_rank[size_t(r.rank)].push_back(&r);
  }
  ++rotate_;
  for (size_t k = 0; k < ranks_.size(); ++k) {
    auto& mine = by_rank[k];
    RankPlan& rp = p.ranks[k];
    int64_t budget = lim_.max_tokens_per_step;
    std::vector<Req*> decoding;
    for (Req* r : mine)
      if (r->prefilled == int64_t(r->prompt.size()) && !r->awaiting && !r->out.empty()) decoding.push_back(r);
    if (int64_t(decoding.size()) > budget)  // more decoders than slab rows: take turns
      std::rotate(decoding.begin(), decoding.begin() + int64_t(rotate_ % decoding.size()), decoding.end());
    for (Req* r : decoding) {
      if (budget == 0) break;
      rp.work.push_back({r->id, r->slot, int64_t(r->prompt.size() + r->out.size()) - 1, int64_t(p.tokens.size()), 1, true});
      p.tokens.push_back(r->out.back());
      r->awaiting = true;
      --budget, ++p.decode_tokens;
    }
    for (Req* r : mine) {
      const int64_t left = int64_t(r->prompt.size()) - r->prefilled;
      if (left == 0 || budget == 0) continue;
      const int64_t len = std::min({left, budget, lim_.max_chunk});
      const bool last = len == left;
      rp.work.push_back({r->id, r->slot, r->prefilled, int64_t(p.tokens.size()), len, last});
      p.tokens.insert(p.tokens.end(), r->prompt.begin() + r->prefilled, r->prompt.begin() + r->prefilled + len);
      r->prefilled += len;
      r->awaiting = last;
      budget -= len, p.prefill_tokens += len;
    }
  }
  return p;
}

FinishReason Scheduler::on_token(int64_t id, int32_t token) {
  auto it = running_.find(id);
  DSV4_ASSERT(it != running_.end() && it->second.awaiting, "scheduler: a token for a request that asked for none");
  Req& r = it->second;
  r.awaiting = false;
  r.out.push_back(token);
  const int64_t n = int64_t(r.out.size());
  FinishReason why = FinishReason::None;
  if (std::find(r.stop.begin(), r.stop.end(), token) != r.stop.end()) why = FinishReason::Stop;
  else if (n >= r.max_new) why = FinishReason::Length;
  else if (int64_t(r.prompt.size()) + n > lim_.max_context) why = FinishReason::Context;  // no position left to feed it
  if (why != FinishReason::None) {
    free_request(r);
    running_.erase(it);
  }
  return why;
}

}  // namespace dsv4
