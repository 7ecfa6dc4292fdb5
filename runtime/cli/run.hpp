// `dsv4 run`: the main job. Prompts -> chat template -> tokens, submitted up front to the engine loop
// (serving/engine_loop: rank 0 schedules every step with continuous batching onto the least-loaded
// attention-DP rank, owners sample as generate.py does, see serving/sampler); rank 0 streams the
// generated text to stdout and prints headers and the timing report to stderr.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/engine/comm.hpp"

namespace dsv4 {

struct GenerateOptions {
  std::string weights;               // converted weights folder
  std::vector<std::string> prompts;  // user messages, one request each
  std::string prompts_file;          // more user messages, one per line ("-": stdin); a blank line is an error
  std::string system;                // system prompt before each user message (empty: none)
  int64_t max_new_tokens = 64;       // per request (generate.py: 300)
  double temperature = 0.6;          // 0 = argmax (generate.py default 0.6)
  double top_p = 1.0;                // nucleus sampling (1 = off)
  int32_t top_k = 0;                 // keep the k most likely tokens (0 = off)
  std::vector<std::string> stop;     // stop strings: generation ends where the decoded text contains one
  uint64_t seed = 33377335;          // generate.py's torch.manual_seed value (the generator differs, see Sampler)
  bool thinking = false;             // thinking mode: each user turn ends with "<think>" instead of "</think>"
  std::string tokenizer;             // tokenizer.json or a folder holding it (default: see resolve_tokenizer_path)
  std::string json_report;           // timing report as JSON
  bool verify_checksums = false;
  bool profile = false;              // per-op timing of every step: a table on stderr and "profile" in the report
};

// --tokenizer if given (a file, or a folder with tokenizer.json); else <weights>/tokenizer.json when the
// weights folder carries one (a real checkpoint's own file wins); else the repo's data/tokenizer copy.
std::string resolve_tokenizer_path(const std::string& tokenizer, const std::string& weights);

// Runs on every rank in lockstep. Returns the exit code; throws dsv4::Error on bad input.
int run_generate(const Comm& comm, const GenerateOptions& opt);

}  // namespace dsv4
