// The plan while plangen builds it: the same records as plan/ir.hpp, with owned strings and shapes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "plan/config.hpp"
#include "plan/ir.hpp"

namespace dsv4::plangen {

struct BufferSpec {
  std::string name;
  plan::DType dtype;
  std::vector<int64_t> shape;
  plan::Lifetime lifetime;
  int64_t align = 64;
  int64_t bytes = 0;      // filled by finish()
  int64_t offset = -1;    // filled by the arena planner
  int32_t first_op = -1;  // filled by liveness
  int32_t last_op = -1;
};

struct WeightSpec {
  std::string name;
  plan::DType dtype;
  std::vector<int64_t> shape;
  plan::WeightFile file;
  plan::Shard shard;
  int32_t layer = -1;
  int32_t expert_local = -1;
  int64_t bytes = 0;    // filled by finish()
  int64_t offset = -1;  // filled by assign_weight_offsets()
};

struct OpSpec {
  plan::OpKind kind;
  int32_t layer;
  std::string label;
  std::vector<uint32_t> in, out, w;
  plan::OpParams p{};
};

// Derived per-rank step dimensions every part of plangen uses.
struct StepDims {
  int64_t T, R, C;     // tokens per step, requests per rank, max context
  int64_t experts_per_rank, vocab_shard, logits_rows_all, moe_send_rows, moe_recv_rows, moe_row_bytes;
  int64_t staging_rows, ring_rows;  // KV table regions: [staging T | ring R*window | compressed pool]
  int64_t pool_blocks(int64_t ratio) const;  // compressed pool blocks of a layer with this ratio
  int64_t block_table_width(int64_t ratio) const;
  int64_t kv_block;
};

struct Program {
  ShapeConfig cfg;
  StepDims dims;
  std::vector<BufferSpec> buffers;
  std::vector<WeightSpec> weights;
  std::vector<OpSpec> ops;
  int64_t arena_bytes = 0;
  int64_t persistent_bytes = 0;
  int64_t replicated_weight_bytes = 0;
  int64_t rank_weight_bytes = 0;
  uint64_t hash = 0;
};

StepDims step_dims(const ShapeConfig& c);
Program build_program(const ShapeConfig& c);  // model.py order; then liveness, arena, offsets, hash

// Arena (arena.cpp): liveness of Step buffers, greedy offset assignment, independent verifier.
void compute_liveness(Program& p);
void plan_arena(Program& p);
void verify_arena(const Program& p);  // throws if two live buffers overlap or one leaves the arena
void assign_weight_offsets(Program& p);

// Canonical serialization (config + layout + weights + plan) and its XXH3-64.
std::string canonical_text(const Program& p);
uint64_t plan_hash(const Program& p);

}  // namespace dsv4::plangen
