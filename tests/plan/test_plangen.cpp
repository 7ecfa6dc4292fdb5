// plangen: determinism, hash sensitivity, layer kinds, arena planning and its verifier.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "plan/error.hpp"
#include "tools/config/config_json.hpp"
#include "tools/plangen/emit.hpp"
#include "tools/plangen/program.hpp"

namespace {

using namespace dsv4;
using namespace dsv4::plangen;

ShapeConfig load(const char* name) { return load_shape_config(std::string(DSV4_SOURCE_DIR "/config/") + name + ".json"); }

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Plangen, DeterministicOutput) {
  const auto c = load("tiny");
  const auto a = build_program(c), b = build_program(c);
  EXPECT_EQ(canonical_text(a), canonical_text(b));
  EXPECT_EQ(a.hash, b.hash);
  const auto tmp = std::filesystem::temp_directory_path() / "dsv4_plangen_det";
  std::filesystem::remove_all(tmp);
  emit_all(a, "config/tiny.json", (tmp / "1").string());
  emit_all(b, "config/tiny.json", (tmp / "2").string());
  for (const char* f : {"model.hpp", "layout.hpp", "weights.hpp", "plan.hpp", "plan.txt", "plan.hash"}) {
    EXPECT_EQ(slurp(tmp / "1" / f), slurp(tmp / "2" / f)) << f;
    EXPECT_EQ(slurp(tmp / "1" / f), slurp(std::filesystem::path(DSV4_SOURCE_DIR "/generated/tiny") / f)) << f;
  }
  std::filesystem::remove_all(tmp);
}

TEST(Plangen, EveryConfigValueChangesTheHash) {
  const auto base = load("tiny");
  const uint64_t h0 = build_program(base).hash;
  std::vector<std::pair<std::string, ShapeConfig>> edits;
  auto edit = [&](const std::string& what, auto fn) {
    ShapeConfig c = base;
    fn(c);
    edits.push_back({what, c});
  };
  edit("rms_norm_eps", [](ShapeConfig& c) { c.model.rms_norm_eps = 1e-5; });
  edit("rope_theta", [](ShapeConfig& c) { c.model.rope_theta = 20000; });
  edit("swiglu_limit", [](ShapeConfig& c) { c.model.swiglu_limit = 7; });
  edit("routed_scaling_factor", [](ShapeConfig& c) { c.model.routed_scaling_factor = 2.5; });
  edit("index_topk", [](ShapeConfig& c) { c.model.index_topk = 16; });
  edit("num_hash_layers", [](ShapeConfig& c) { c.model.num_hash_layers = 2; });
  edit("compress_ratios", [](ShapeConfig& c) { c.model.compress_ratios[5] = 4; });
  edit("sliding_window", [](ShapeConfig& c) { c.model.sliding_window = 32; });
  edit("bos_token_id", [](ShapeConfig& c) { c.model.bos_token_id = 5; });
  edit("transformers_version", [](ShapeConfig& c) { c.model.transformers_version = "5.0"; });
  edit("max_tokens_per_step", [](ShapeConfig& c) { c.deploy.max_tokens_per_step = 128; });
  edit("max_requests_per_rank", [](ShapeConfig& c) { c.deploy.max_requests_per_rank = 2; });
  edit("max_context", [](ShapeConfig& c) { c.deploy.max_context = 1024; });
  edit("kv_block", [](ShapeConfig& c) { c.deploy.kv_block = 32; });
  for (const auto& [what, c] : edits) EXPECT_NE(build_program(c).hash, h0) << what;
}

TEST(Plangen, FlashLayerKindsAndRouting) {
  const auto p = build_program(load("flash"));
  std::map<int, std::map<plan::OpKind, int>> ops;
  for (const auto& op : p.ops) ops[op.layer][op.kind]++;
  for (int L = 0; L < 43; ++L) {
    const int ratio = L < 2 ? 0 : L % 2 == 0 ? 4 : 128;
    EXPECT_EQ(p.cfg.model.compress_ratios[L], ratio);
    EXPECT_EQ(ops[L][plan::OpKind::Compressor], ratio == 0 ? 0 : ratio == 4 ? 2 : 1) << L;
    EXPECT_EQ(ops[L][plan::OpKind::IndexerTopK], ratio == 4 ? 1 : 0) << L;
    EXPECT_EQ(ops[L][plan::OpKind::SparseAttention], 1) << L;
    EXPECT_EQ(ops[L][plan::OpKind::MoeDispatch], 1) << L;
  }
  // Hash routing (tid2eid) on layers 0-2, bias routing on the others.
  for (const auto& op : p.ops)
    if (op.kind == plan::OpKind::GateScores) {
      EXPECT_EQ((op.p.flags & plan::kFlagHash) != 0, op.layer < 3) << op.layer;
      const auto& w = p.weights[op.w[0]];
      EXPECT_EQ(w.name, "layers." + std::to_string(op.layer) + (op.layer < 3 ? ".ffn.gate.tid2eid" : ".ffn.gate.bias"));
    }
  // Each rank holds 256 / 16 experts x 3 matrices x (weight + scale) per layer, and its head shard.
  int64_t expert_tensors = 0, wo_a = 0;
  for (const auto& w : p.weights) {
    if (w.shard == plan::Shard::ExpertParallel) ++expert_tensors;
    if (w.name == "head.weight") {
      EXPECT_EQ(w.shard, plan::Shard::VocabParallel);
      EXPECT_EQ(w.shape[0], 129280 / 16);
    }
    if (w.name.find("wo_a.weight") != std::string::npos) {  // kept in FP8, with its block scale next
      EXPECT_EQ(w.dtype, plan::DType::F8_E4M3) << w.name;
      EXPECT_EQ(w.shape[0], 8 * 1024);
      EXPECT_EQ(w.shape[1], 64 * 512 / 8);
      EXPECT_EQ((&w + 1)->name, std::string(w.name).substr(0, std::string(w.name).size() - 6) + "scale");
      ++wo_a;
    }
  }
  EXPECT_EQ(wo_a, 43);
  EXPECT_EQ(expert_tensors, 43 * 16 * 6);
}

TEST(Arena, PlannerOutputPassesTheVerifierAndReusesMemory) {
  for (const char* n : {"tiny", "tiny16", "demo", "flash"}) {
    const auto p = build_program(load(n));
    EXPECT_NO_THROW(verify_arena(p)) << n;
    int64_t sum = 0;
    for (const auto& b : p.buffers) sum += b.bytes;
    EXPECT_LT(p.arena_bytes, sum) << n << ": step buffers should share memory across layers";
  }
}

TEST(Arena, VerifierCatchesOverlappingLiveBuffers) {
  Program p;
  p.arena_bytes = 4096;
  p.buffers = {{"a", plan::DType::U8, {100}, plan::Lifetime::Step, 64, 100, 0, 0, 2},
               {"b", plan::DType::U8, {100}, plan::Lifetime::Step, 64, 100, 64, 1, 3}};
  try {
    verify_arena(p);
    FAIL() << "overlap not caught";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("live buffers overlap: a [0, +100) and b [64, +100)"), std::string::npos) << e.what();
  }
  p.buffers[1].first_op = 3;  // disjoint live ranges may share bytes
  EXPECT_NO_THROW(verify_arena(p));
  p.buffers[1].offset = 4032;  // but nothing may leave the arena
  EXPECT_THROW(verify_arena(p), Error);
}

TEST(Arena, HandComputedGreedyPlacement) {
  // Three step buffers: x (op 0-1), y (op 1-2), z (op 2-3); x and z may share memory, y may not.
  Program p;
  p.buffers = {{"x", plan::DType::U8, {1000}, plan::Lifetime::Step, 64, 1000},
               {"y", plan::DType::U8, {500}, plan::Lifetime::Step, 64, 500},
               {"z", plan::DType::U8, {800}, plan::Lifetime::Step, 64, 800}};
  p.ops = {{plan::OpKind::RmsNorm, 0, "o0", {}, {0}, {}},
           {plan::OpKind::RmsNorm, 0, "o1", {0}, {1}, {}},
           {plan::OpKind::RmsNorm, 0, "o2", {1}, {2}, {}},
           {plan::OpKind::RmsNorm, 0, "o3", {2}, {}, {}}};
  compute_liveness(p);
  plan_arena(p);
  EXPECT_EQ(p.buffers[0].offset, 0);
  EXPECT_EQ(p.buffers[2].offset, 0);     // reuses x's bytes
  EXPECT_EQ(p.buffers[1].offset, 1024);  // after x, 64-aligned
  EXPECT_EQ(p.arena_bytes, 4096);
  verify_arena(p);
}

}  // namespace
