#include "runtime/engine/metadata.hpp"

#include <algorithm>
#include <string>

#include "plan/error.hpp"

namespace dsv4 {

void build_step_metadata(const MetaShape& sh, std::span<const StepWork> work, const MetaViews& v, StepMeta& m) {
  const int64_t T = sh.max_tokens, W = sh.window;
  DSV4_ASSERT(int64_t(v.token_ids.size()) == T && int64_t(v.positions.size()) == T &&
                  int64_t(v.token_request.size()) == T && int64_t(v.window_rows.size()) == T * W &&
                  int64_t(v.logits_rows.size()) == sh.max_requests,
              "metadata views do not match the plan's shape");
  if (int64_t(work.size()) > sh.max_requests)
    throw Error("step has " + std::to_string(work.size()) + " requests, this rank holds at most " +
                std::to_string(sh.max_requests) + " (deploy.max_requests_per_rank)");
  int64_t total = 0;
  for (const auto& w : work) {
    const std::string who = "request slot " + std::to_string(w.slot);
    if (w.slot < 0 || w.slot >= sh.max_requests)
      throw Error(who + ": slot outside [0, " + std::to_string(sh.max_requests) + ")");
    for (const auto& o : work)  // (few requests per rank: a quadratic check allocates nothing)
      if (&o < &w && o.slot == w.slot) throw Error(who + ": appears twice in one step");
    if (w.tokens.empty()) throw Error(who + ": empty chunk (a prompt needs at least one token)");
    if (w.start_pos < 0) throw Error(who + ": negative start position " + std::to_string(w.start_pos));
    if (w.start_pos + int64_t(w.tokens.size()) > sh.max_context)
      throw Error(who + ": positions up to " + std::to_string(w.start_pos + int64_t(w.tokens.size()) - 1) +
                  " exceed max_context " + std::to_string(sh.max_context) + " (deploy.max_context)");
    for (size_t i = 0; i < w.tokens.size(); ++i)
      if (w.tokens[i] < 0 || w.tokens[i] >= sh.vocab_size)
        throw Error(who + ": token id " + std::to_string(w.tokens[i]) + " at chunk index " + std::to_string(i) +
                    " is outside the vocabulary [0, " + std::to_string(sh.vocab_size) + ")");
    total += int64_t(w.tokens.size());
  }
  if (total > T)
    throw Error("step has " + std::to_string(total) + " tokens, the slab holds " + std::to_string(T) +
                " (deploy.max_tokens_per_step)");

  std::fill(v.token_ids.begin(), v.token_ids.end(), 0);
  std::fill(v.positions.begin(), v.positions.end(), -1);
  std::fill(v.token_request.begin(), v.token_request.end(), -1);
  std::fill(v.window_rows.begin(), v.window_rows.end(), -1);
  std::fill(v.logits_rows.begin(), v.logits_rows.end(), -1);

  m.cu_q_lens.clear();  // capacity is kept: no allocation per step once warmed up
  m.logits_slot.clear();
  m.cu_q_lens.push_back(0);
  int64_t row = 0;
  for (const auto& w : work) {
    const int64_t chunk0 = row, n = int64_t(w.tokens.size());
    for (int64_t i = 0; i < n; ++i, ++row) {
      const int64_t p = w.start_pos + i;
      v.token_ids[row] = w.tokens[i];
      v.positions[row] = int32_t(p);
      v.token_request[row] = w.slot;
      // Window: positions max(0, p-W+1)..p ascending; this chunk's rows from staging, older ones from the ring.
      int32_t* out = &v.window_rows[row * W];
      int64_t k = 0;
      for (int64_t q = std::max<int64_t>(0, p - W + 1); q <= p; ++q)
        out[k++] = int32_t(q >= w.start_pos ? chunk0 + (q - w.start_pos) : T + w.slot * W + q % W);
    }
    if (w.want_logits) {
      v.logits_rows[m.logits_slot.size()] = int32_t(row - 1);
      m.logits_slot.push_back(w.slot);
    }
    m.cu_q_lens.push_back(row);
  }
  m.n_tokens = row;
}

StepMeta build_step_metadata(const MetaShape& sh, std::span<const StepWork> work, const MetaViews& v) {
  StepMeta m;
  build_step_metadata(sh, work, v, m);
  return m;
}

}  // namespace dsv4
