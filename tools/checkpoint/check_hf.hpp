// Checks an HF checkpoint directory against hf_tensor_manifest(config): index and shard headers only,
// no tensor data is read.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "plan/config.hpp"
#include "plan/hf_manifest.hpp"

namespace dsv4 {

struct HfCheckReport {
  std::string dir;
  int64_t shards = 0;
  int64_t expected_main = 0;     // main-model tensors the manifest lists
  int64_t found_main = 0;        // of those, present with the right dtype and shape
  int64_t mtp_skipped = 0;       // mtp.* tensors of the manifest found in the checkpoint (not checked further)
  uint64_t main_bytes = 0;       // payload bytes of the matching main-model tensors
  uint64_t total_bytes = 0;      // payload bytes of every tensor in the checkpoint
  std::vector<std::string> missing;     // main-model tensors absent (names, manifest order)
  std::vector<std::string> mismatched;  // "name: dtype expected X, got Y" / "name: shape expected [..], got [..]"
  std::vector<std::string> unknown;     // tensors the manifest (with MTP) does not list (sorted)
  std::vector<std::string> nonfinite;   // "name: element I is nan" (value checks, see check_hf_checkpoint)
  int64_t values_checked = 0;           // tensors whose values were read and checked

  bool ok() const { return missing.empty() && mismatched.empty() && unknown.empty() && nonfinite.empty(); }
  // Multi-line summary: counts, and the first few names of each problem list with its total.
  std::string summary(size_t max_names = 5) const;
};

// Tensors whose values scale every activation that passes them: norm weights, every F32 parameter
// (gate bias, hyper-connection parameters, attention sinks, compressor positions) and E8M0 block scales.
// A NaN or Inf there poisons every token, so convert and check-hf refuse it.
bool must_be_finite(const std::string& name, HfDtype dtype);
// "" when every value is finite, else "element I is nan|inf|-inf (bits 0x..)" for the first one that is not
// (E8M0: the byte 0xFF, which encodes NaN).
std::string first_nonfinite(HfDtype dtype, std::span<const uint8_t> bytes);

// Opens `dir` header-only (see st::Checkpoint: index / shard header errors throw dsv4::Error) and
// compares every tensor with the manifest for `cfg`. Then reads the values of the main model's
// must_be_finite tensors, except the routed experts' scales (most of those bytes; convert checks them).
HfCheckReport check_hf_checkpoint(const std::string& dir, const ModelConfig& cfg);

// Same, but throws dsv4::Error carrying summary() when the report is not ok().
HfCheckReport require_hf_checkpoint(const std::string& dir, const ModelConfig& cfg);

}  // namespace dsv4
