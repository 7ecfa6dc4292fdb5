// `dsv4 eval`: teacher-forced (or greedy) prefill + decode of one request, writing float32 logits
// [1 + decode steps, vocab] as .npy; with per-op traces in the golden dump format and golden injection.
#pragma once
#include <cstdint>
#include <string>

#include "runtime/comm.hpp"

namespace dsv4 {

struct EvalOptions {
  std::string weights;        // converted weights folder
  std::string input_ids;      // .npy int32/int64 [L]: the prompt
  std::string forced_tokens;  // .npy int32 [N]: feed tokens[i-1] at decode step i (N-1 steps); empty = greedy
  int64_t decode_steps = 16;  // decode steps when no forced tokens are given
  std::string logits_out;     // .npy float32 [1 + steps, vocab]
  std::string tokens_out;     // .npy int32 [1 + steps] greedy tokens (default: <logits_out>.tokens.npy)
  int64_t chunk = 0;          // prefill chunk length (0 = the plan's max_tokens_per_step)
  std::string trace_out;      // folder: per-step subfolders of per-op outputs named as the golden dumps
  std::string inject_from;    // folder of golden dumps whose values replace our op outputs
  std::string prefix;         // step folder prefix, e.g. "len7_" -> len7_prefill, len7_decode0, ...
  bool inject_ops = false;    // inject every dumped op output (op-level), not only each layer's input
  bool verify_checksums = false;
  std::string report_json;    // timing report as JSON
};

// Runs on every rank (lockstep); rank 0 owns the request and writes the outputs. Returns the exit code.
int run_eval(const Comm& comm, const EvalOptions& opt);

}  // namespace dsv4
