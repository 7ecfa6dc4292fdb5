// `dsv4 eval`: teacher-forced (or greedy) prefill + decode of one or several requests, writing each
// request's float32 logits [1 + decode steps, vocab] as .npy; with per-op traces in the golden dump
// format and golden injection (one request only).
//
// Several requests run together on the serving engine loop (serving/engine_loop, serving/scheduler):
// request i is pinned to one attention-DP rank (round-robin, or balanced by token count), rank 0
// schedules every step (decode tokens first, then prefill chunks, within max_tokens_per_step tokens and
// max_requests_per_rank requests per rank; a rank's further requests wait for a free slot), a rank with
// no work still runs every step with zero valid rows, and forced (or greedy) tokens replace samples.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine/comm.hpp"

namespace dsv4 {

struct EvalRequest {
  std::string input_ids;      // .npy int32/int64 [L]: the prompt
  std::string forced_tokens;  // .npy int32 [N]: feed tokens[i-1] at decode step i (N-1 steps); empty = greedy
  std::string logits_out;     // .npy float32 [1 + steps, vocab]
  std::string tokens_out;     // .npy int32 [1 + steps] greedy tokens (default with greedy decode: <logits_out>.tokens.npy)
};

struct EvalOptions {
  std::string weights;                // converted weights folder
  std::vector<EvalRequest> requests;  // one or more
  int64_t decode_steps = 16;  // decode steps of requests without forced tokens
  int64_t chunk = 0;          // prefill chunk length (0 = the plan's max_tokens_per_step)
  std::string assign = "rr";  // request -> DP rank: "rr" (request i -> rank i % P) or "tokens" (balance tokens)
  std::string step_logits_out;  // folder: every step's full logits rows, per rank (step-S-rank-R.npy + .requests.npy)
  std::string trace_out;      // folder: per-step subfolders of per-op outputs named as the golden dumps
  std::string inject_from;    // folder of golden dumps whose values replace our op outputs
  std::string prefix;         // step folder prefix, e.g. "len7_" -> len7_prefill, len7_decode0, ...
  bool inject_ops = false;    // inject every dumped op output (op-level), not only each layer's input
  bool verify_checksums = false;
  std::string json_report;    // timing report as JSON (rank 0; --json-report, old name --report-json)
};

// Request owner ranks for `costs` (tokens per request) over `ranks` DP ranks; `mode` as EvalOptions::assign.
std::vector<int> assign_requests(const std::vector<int64_t>& costs, int ranks, const std::string& mode);

// Runs on every rank (lockstep); each request's owner writes its outputs. Returns the exit code.
int run_eval(const Comm& comm, const EvalOptions& opt);

}  // namespace dsv4
