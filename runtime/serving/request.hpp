// What a front end hands the scheduler, and what comes back per generated token. Shared by the
// scheduler / engine loop (serving/scheduler, serving/engine_loop) and the front ends (cli run, eval,
// the OpenAI HTTP layer). Text-free: prompts are token ids, stop strings are the front end's business
// (it detokenizes, matches, and cancels the request).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dsv4 {

struct SamplingParams {
  double temperature = 0.6;    // 0 = argmax; generate.py's Gumbel-max sampling otherwise
  double top_p = 1.0;          // nucleus sampling over the probability-sorted vocabulary (1 = off)
  int32_t top_k = 0;           // keep the k most likely tokens (0 = off)
  uint64_t seed = 33377335;    // the request's own noise stream: results do not depend on what shares a step
  int32_t top_logprobs = -1;   // -1: no logprobs; 0..20: the sampled token's logprob plus this many alternatives
};

struct GenerationRequest {
  std::vector<int32_t> prompt;      // chat-encoded (or raw) prompt ids, 1 <= size, size + max_new_tokens <= max_context
  int64_t max_new_tokens = 64;
  SamplingParams sampling;
  std::vector<int32_t> stop_tokens;  // generation ends after emitting one of these (default: EOS)
};

enum class FinishReason : int32_t {
  None = 0,     // still running
  Stop = 1,     // a stop token (EOS) was generated, or the front end matched a stop string
  Length = 2,   // max_new_tokens reached
  Context = 3,  // max_context reached
  Cancelled = 4,  // the client went away, or the server drained
  Rejected = 5,   // never admitted (see the reason text)
};

const char* finish_reason_name(FinishReason r);  // "stop", "length", "length", "cancelled", "rejected"

struct TokenLogprob {
  int32_t id;
  float logprob;  // natural log of the probability after temperature (the distribution sampled from)
};

// One generated token, as the owner rank sampled it.
struct TokenEvent {
  int32_t token = -1;
  float logprob = 0;               // valid when the request asked for logprobs
  std::vector<TokenLogprob> top;   // top_logprobs alternatives, most likely first
  FinishReason finish = FinishReason::None;  // set on the request's last event
};

}  // namespace dsv4
