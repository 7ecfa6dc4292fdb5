// HF checkpoint -> converted weights dir for one plan (spec §3, convert.py), streamed tensor by tensor.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "plan/ir.hpp"

namespace dsv4 {

// What the binary's generated plan says the weights dir must hold.
struct WeightsTarget {
  std::span<const plan::Weight> manifest;  // generated kWeights (offsets per file)
  uint64_t plan_hash;                      // generated kPlanHash
  std::string config_name;
  int64_t ranks, n_experts, experts_per_rank, vocab_size, vocab_shard;
  int64_t replicated_bytes, rank_bytes;    // data section sizes of the two file kinds
};

// Name of a converted file inside a weights dir.
std::string replicated_file_name();
std::string rank_file_name(int64_t rank, int64_t ranks);

// The checkpoint tensor name a manifest entry reads on `rank` (experts: "{e}" -> global expert id).
std::string source_name(const plan::Weight& w, int64_t rank, int64_t experts_per_rank);

struct ConvertOptions {
  bool progress = true;  // progress bar with bytes and ETA on stderr
};

// Converts `hf_dir` into `out_dir` (which must not exist): writes into `out_dir.partial/`, verifies
// every file's checksums by re-reading, then renames the folder. Never writes into hf_dir. Throws
// dsv4::Error naming the tensor / file / field on any mismatch before writing anything.
void convert_checkpoint(const std::string& hf_dir, const std::string& out_dir, const WeightsTarget& target,
                        const ConvertOptions& opt = {});

}  // namespace dsv4
