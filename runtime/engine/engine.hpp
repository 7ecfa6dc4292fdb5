// One rank's engine: arena, mapped weights, KV cache bookkeeping and the plan executor, built once at
// start-up. A step takes this rank's work (prefill chunks and decode tokens), builds the metadata,
// reserves cache blocks, runs the plan, and leaves the logits of the rows that asked for them.
#pragma once
#include <memory>
#include <span>
#include <string>

#include "runtime/engine/arena.hpp"
#include "runtime/engine/comm.hpp"
#include "runtime/engine/executor.hpp"
#include "runtime/engine/kv_cache.hpp"
#include "runtime/engine/metadata.hpp"
#include "runtime/engine/weight_store.hpp"

namespace dsv4 {

class Engine {
 public:
  Engine(const Comm& comm, const std::string& weights_dir, bool verify_checksums = false);
  // (The constructor reserves every per-step container, so step() allocates nothing.)

  int32_t start_request() { return kv_->start(); }
  void finish_request(int32_t slot) { kv_->finish(slot); }
  int64_t request_length(int32_t slot) const { return kv_->length(slot); }

  // Every rank calls step() in lockstep (an idle rank passes no work) because the plan has collectives.
  const StepMeta& step(std::span<const StepWork> work, const Executor::OpHook& after_op = {});

  // Full-vocabulary logits of the j-th logits row of the last step (on this rank: its own requests).
  std::span<const float> logits(int64_t j) const;
  int32_t greedy_token(int64_t j) const;

  Arena& arena() { return arena_; }
  const Executor& executor() const { return *exec_; }
  Executor& executor() { return *exec_; }  // profiling switch
  const WeightStore& weights() const { return weights_; }

 private:
  const Comm& comm_;
  WeightStore weights_;
  Arena arena_;
  MetaShape shape_;
  MetaViews views_;
  std::unique_ptr<KvCacheManager> kv_;
  std::unique_ptr<Executor> exec_;
  StepMeta last_;  // reused every step
};

}  // namespace dsv4
