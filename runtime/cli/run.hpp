// `dsv4 run`: the main job. Prompts -> chat template -> tokens; requests are owned round-robin by the
// attention data-parallel ranks (rank r owns requests r, r+P, ...); each rank schedules its own with
// continuous batching (prefill chunks and decode tokens share the fixed slab), samples as generate.py
// does, and rank 0 streams the decoded text and prints the timing report.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine/comm.hpp"

namespace dsv4 {

struct GenerateOptions {
  std::string weights;               // converted weights folder
  std::vector<std::string> prompts;  // user messages, one request each
  std::string prompts_file;          // more user messages, one per line (blank lines skipped)
  int64_t max_new_tokens = 64;       // per request (generate.py: 300)
  double temperature = 0.6;          // 0 = argmax (generate.py default 0.6)
  uint64_t seed = 33377335;          // generate.py's torch.manual_seed value (the generator differs, see Sampler)
  bool thinking = false;             // thinking mode: each user turn ends with "<think>" instead of "</think>"
  std::string tokenizer;             // tokenizer.json or a folder holding it (default: see resolve_tokenizer_path)
  std::string json_report;           // timing report as JSON
  bool verify_checksums = false;
};

// --tokenizer if given (a file, or a folder with tokenizer.json); else <weights>/tokenizer.json when the
// weights folder carries one (a real checkpoint's own file wins); else the repo's data/tokenizer copy.
std::string resolve_tokenizer_path(const std::string& tokenizer, const std::string& weights);

// generate.py's sample(): p = softmax(logits / max(T, 1e-5)) in fp32, token = argmax(p / E) with
// E ~ Exp(1) per vocabulary entry (the Gumbel-max trick); T <= 0 is argmax. The noise comes from a
// std::mt19937_64 per request seeded from (seed, request index), so results do not depend on the
// rank count or on batching; it is NOT torch's generator, so samples differ from generate.py's.
class Sampler {
 public:
  Sampler(uint64_t seed, int64_t request);
  int32_t sample(std::span<const float> logits, double temperature);

 private:
  std::mt19937_64 rng_;
  std::vector<float> p_;
};

// Runs on every rank in lockstep. Returns the exit code; throws dsv4::Error on bad input.
int run_generate(const Comm& comm, const GenerateOptions& opt);

}  // namespace dsv4
