// The rank's weights: the replicated file and its own rank file, mapped read-only and checked against
// the generated manifest (magic, version, plan hash, rank count, every tensor) before any compute.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "plan/ir.hpp"
#include "tools/checkpoint/convert.hpp"

namespace dsv4 {

// How much of the payload is hashed against the stored XXH3 at load. The headers and tensor table are
// always checked in full.
//   Small (the default): every tensor that is not a big matrix — F32, I32/I64, U8 and E8M0 tensors (norm
//     weights' fp32 twins, biases, gate and hyper-connection parameters, attention sinks, every block
//     scale, hash-routing tables) and 1-D BF16 tensors (norm weights). A flipped bit there changes every
//     token; on flash they are 0.70 GB of a rank's 17.05 GB (about 0.7 s per rank from the page cache).
//   Full: every tensor (`dsv4 check --checksums`).
//   None: headers and table only.
// Not verified by Small: FP8 and FP4 weight codes and 2-D BF16 matrices (embed, head, compressor and
// gate projections): the bulk of the bytes, which a full verify reads from disk at start-up.
enum class WeightVerify { None, Small, Full };
bool cheap_to_verify(const plan::Weight& w);

// What this binary's plan requires of a weights dir (the converter's target).
WeightsTarget plan_weights_target();

class WeightStore {
 public:
  // Maps `dir`/replicated.dsv4w and `dir`/rank-R-of-N.dsv4w; throws dsv4::Error naming the file and field.
  // verify_checksums: Full when true, Small (the default verification) when false.
  static WeightStore open(const std::string& dir, int64_t rank, bool verify_checksums = false);
  static WeightStore open(const std::string& dir, int64_t rank, WeightVerify verify);
  WeightStore(WeightStore&&) noexcept;
  WeightStore& operator=(WeightStore&&) noexcept;
  WeightStore(const WeightStore&) = delete;
  ~WeightStore();

  // Payload of manifest weight `id` (generated kWeights index).
  const uint8_t* data(uint32_t id) const;
  template <class T>
  const T* as(uint32_t id) const {
    return reinterpret_cast<const T*>(data(id));
  }

  struct FileSummary {
    std::string path;
    uint64_t tensors = 0, bytes = 0;
    bool checksums_verified = false;  // every tensor's XXH3 matched
    uint64_t tensors_verified = 0, bytes_verified = 0;  // hashed and matched at load
    double verify_seconds = 0;        // time spent checking the table and hashing
  };
  const std::vector<FileSummary>& files() const { return summaries_; }
  int64_t rank() const { return rank_; }

 private:
  WeightStore() = default;
  struct Map {
    const uint8_t* base = nullptr;  // mapping start
    size_t size = 0;
    const uint8_t* data = nullptr;  // data section
  };
  Map rep_, rank_file_;
  int64_t rank_ = 0;
  std::vector<FileSummary> summaries_;
};

}  // namespace dsv4
