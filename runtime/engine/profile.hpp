// What a step costs, from the plan and from the clock: the weight bytes and FLOPs a token reads and does
// (derived from the generated op and weight tables), and the executor's per-op seconds summed by op kind,
// by layer kind and by op. Used by `dsv4 bench`; `run` / `serve` can print the same tables.
#pragma once
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "plan/ir.hpp"
#include "runtime/engine/comm.hpp"

namespace dsv4 {

// Per-token cost of the whole model (every rank's share together), from the plan.
//
// Weight bytes: what one token streams when it is alone in a step: every tensor an op reads (FP8 / FP4
// scales included), but one row of embed.weight and of a hash layer's tid2eid, the top-k routed
// experts of each layer (not all of them), and the whole vocabulary of the lm_head (all shards).
// FLOPs: 2 x MACs of the linear layers only (attention q, kv, wo_a/wo_b, compressor and indexer
// projections, gate, shared and top-k routed experts, hyper-connection mixes, lm_head); attention
// scores and values, norms, RoPE, quantisation and top-k are not counted (SparseAttention's share of
// the time shows in the profile). A prefill runs the lm_head only on each request's last token.
// Arithmetic: FP8 GEMMs and the bf16 linears (weights_proj, wo_a) sum exactly in fp64
// (kernels/linear.hpp), so their FLOPs are held against the fp64 FMA peak; the FP4 experts (int32 dot
// products then fp32), the fp32 linears (compressor, gate, head) and the hyper-connection mixes against
// the fp32 peak.
struct PlanCost {
  int64_t bytes_token = 0;         // weight bytes per token alone (batch 1)
  int64_t bytes_experts = 0;       // of which: the routed experts (top-k per layer)
  int64_t bytes_lm_head = 0;       // of which: the lm_head
  int64_t bytes_rows = 0;          // of which: rows picked by token id (embed.weight, tid2eid)
  int64_t bytes_replicated = 0;    // of which: the rest, tensors every data-parallel rank reads itself
  int64_t bytes_per_expert_sum = 0;  // one expert of every MoE layer (sum over layers)
  double flop_f64 = 0;             // FLOPs per token held against the fp64 peak
  double flop_f32 = 0;             // FLOPs per token held against the fp32 peak
  double flop_lm_head = 0;         // of which: the lm_head (fp32), run only for rows that want logits
  double flop_token() const { return flop_f64 + flop_f32; }
  // FLOPs of prefilling `tokens` prompt tokens of `requests` requests: every token goes through the
  // layers, only each request's last token through the lm_head. {fp64 part, fp32 part}.
  std::pair<double, double> prefill_flop(int64_t tokens, int64_t requests) const {
    return {double(tokens) * flop_f64, double(tokens) * (flop_f32 - flop_lm_head) + double(requests) * flop_lm_head};
  }
  // Weight bytes one step streams on the whole job when `tokens_per_rank` tokens sit on each of `ranks`
  // data-parallel ranks: each rank reads the replicated tensors, the experts are read once per distinct
  // expert (expected count under uniform routing: E * (1 - (1 - k/E)^tokens)), the head once.
  double step_bytes(int64_t tokens_per_rank, int64_t ranks) const;
};
PlanCost plan_cost();

// "window", "csa", "hca" by compress ratio 0 / 4 / 128; "embed+head" for ops outside the layers.
std::string layer_kind_name(int32_t layer);

struct ProfileRow {
  std::string name;    // op kind, layer kind, or op label
  double seconds = 0;  // summed over the profiled steps
  double share = 0;    // of the profiled time
  int64_t ops = 0;     // plan ops in the row
};
// op_seconds: [kNumOps] from Executor::op_seconds(). Rows sorted by seconds, largest first.
std::vector<ProfileRow> profile_by_kind(std::span<const double> op_seconds);
std::vector<ProfileRow> profile_by_layer_kind(std::span<const double> op_seconds);
std::vector<ProfileRow> profile_by_op(std::span<const double> op_seconds);

// What `--profile` reports (bench, run, serve). Every rank calls profile_mean_over_ranks (an allgather).
std::vector<double> profile_mean_over_ranks(const Comm& comm, std::span<const double> op_seconds);
// The table for people: shares by layer kind, then op kinds and ops, largest first.
void print_profile(std::FILE* out, const char* title, std::span<const double> op_seconds, int64_t steps);
// {"by_kind": [...], "by_layer_kind": [...], "top_ops": [... 20]}, each row {name, seconds, share, ops}.
nlohmann::ordered_json profile_json(std::span<const double> op_seconds);

}  // namespace dsv4
