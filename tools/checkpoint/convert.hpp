// HF checkpoint -> converted weights dir for one plan (spec §3, convert.py), streamed tensor by tensor.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

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
  bool warnings = true;  // print "dsv4: warning: ..." lines (unknown tensors) on stderr
};

struct ConvertSummary {
  int64_t tensors = 0;                // tensor entries written over all files
  int64_t files = 0;                  // .dsv4w files written
  uint64_t bytes = 0;                 // bytes of the files written (headers, tables, data sections)
  int64_t mtp_skipped = 0;            // mtp.* checkpoint tensors (not part of the main model), skipped
  std::vector<std::string> unknown;   // other checkpoint tensors the plan does not read: warned, skipped
  double seconds = 0;                 // wall time of the whole conversion (checks, writing, verification)
  double mb_per_s = 0;                // bytes / seconds, in 1e6 bytes per second
  uint64_t peak_rss_bytes = 0;        // the process's peak resident set size at the end (getrusage)
};

// Converts `hf_dir` into `out_dir` (which must not exist): checks every source tensor and the free
// space first; takes an advisory lock on `out_dir.lock` (a second convert to the same folder fails at
// once, naming the holder); writes into a new `out_dir.partial-<pid>-<random>/`, verifies every file's
// checksums by re-reading, then renames the folder (never over an existing one). Streams tensor by
// tensor (source pages are released after use), never writes into hf_dir. Throws dsv4::Error naming the
// tensor / file / field; on any failure the partial folder this run created is removed. Nothing this run
// did not create is deleted: partial folders of a killed run are named in a warning and left alone.
ConvertSummary convert_checkpoint(const std::string& hf_dir, const std::string& out_dir, const WeightsTarget& target,
                                  const ConvertOptions& opt = {});

}  // namespace dsv4
