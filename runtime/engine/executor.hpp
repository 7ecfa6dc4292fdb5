// Plan executor: walks the generated op list for one step over the arena, the mapped weights and the
// MPI collectives. A flat switch over op kinds; every decision that could be made at build time was.
// No allocation per step: scratch is sized once at construction from the plan's dimensions.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/numerics.hpp"
#include "runtime/engine/arena.hpp"
#include "runtime/engine/comm.hpp"
#include "runtime/engine/metadata.hpp"
#include "runtime/engine/weight_store.hpp"

namespace dsv4 {

class Executor {
 public:
  Executor(const Comm& comm, Arena& arena, const WeightStore& weights);

  // Runs every op of the plan for the step whose metadata is in the arena. `after_op`, when set, is
  // called after each op (traces, golden injection); it may overwrite the op's outputs.
  using OpHook = std::function<void(uint32_t op_index)>;
  void run_step(const StepMeta& meta, const OpHook& after_op = {});

  // Seconds spent in collectives / in all ops during the last step.
  double last_comm_seconds() const { return comm_s_; }
  double last_step_seconds() const { return step_s_; }

  // Per-op timing, off by default: when on, run_step adds each op's wall seconds (one steady_clock read
  // per op, ~20 ns; an op's wait in a collective included) into op_seconds()[op index] and counts the
  // steps, until reset_profile(). The after_op hook's time is not charged to any op.
  void set_profiling(bool on) { profiling_ = on; }
  bool profiling() const { return profiling_; }
  const std::vector<double>& op_seconds() const { return op_s_; }
  int64_t profiled_steps() const { return profiled_steps_; }
  void reset_profile();

 private:
  void run_op(uint32_t i, const StepMeta& meta);
  void build_rope_tables(int64_t n);
  void set_a2a(const int32_t* counts, int64_t row_bytes, bool back);

  const Comm& comm_;
  Arena& arena_;
  const WeightStore& w_;
  std::vector<float> freqs_[2];  // inverse frequencies: [0] base rope_theta, [1] compress_rope_theta + YaRN
  std::vector<float> rope_[2];   // per-step cos/sin tables [T, rope_dim/2, 2] for each frequency set
  std::vector<int64_t> pos64_;   // [T] positions widened for kernels
  std::vector<float> xf32_;      // fp32 copy of a bf16 GEMM input [max rows, max cols]
  std::vector<bf16> entries_;    // compressor output entries of one request chunk
  std::vector<int64_t> entry_ids_;
  std::vector<bf16> keys_, scores_;  // indexer: one request's visible keys and its score rows
  std::vector<uint8_t> grp_q_;       // experts: one expert's gathered FP8 rows
  std::vector<float> grp_s_, grp_w_;
  std::vector<bf16> grp_out_;         // one expert's w2 output; also the MoE return receive buffer
  std::vector<int32_t> grp_rows_;     // received row index of each gathered row
  std::vector<int64_t> a2a_[4];      // all-to-all bytes: send counts, send displs, recv counts, recv displs
  std::vector<int64_t> dest_count_, recv_count_, pack_off_;  // MoE rows per peer; packing cursors
  std::vector<int32_t> topk_tmp_;    // indexer top-k of one chunk [rows, k]
  std::vector<float> logits_all_;    // LogitsGather receive buffer [ranks, R, vocab_shard]
  std::vector<bf16> rows_local_;     // LogitsRowsGather send rows [R, D]
  std::vector<int64_t> head_rows_;   // LmHeadShard: the gathered rows that are live
  double comm_s_ = 0, step_s_ = 0;
  bool profiling_ = false;
  std::vector<double> op_s_;  // [kNumOps] seconds per op while profiling (sized at construction)
  int64_t profiled_steps_ = 0;
};

}  // namespace dsv4
