// The rank's weights: the replicated file and its own rank file, mapped read-only and checked against
// the generated manifest (magic, version, plan hash, rank count, every tensor) before any compute.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "plan/ir.hpp"
#include "tools/checkpoint/convert.hpp"

namespace dsv4 {

// What this binary's plan requires of a weights dir (the converter's target).
WeightsTarget plan_weights_target();

class WeightStore {
 public:
  // Maps `dir`/replicated.dsv4w and `dir`/rank-R-of-N.dsv4w; throws dsv4::Error naming the file and field.
  static WeightStore open(const std::string& dir, int64_t rank, bool verify_checksums = false);
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
    bool checksums_verified = false;
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
