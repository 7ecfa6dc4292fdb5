#include "runtime/engine/engine.hpp"

#include <string_view>

#include "layout.hpp"
#include "model.hpp"
#include "plan/error.hpp"

namespace dsv4 {
namespace {


}  // namespace

Engine::Engine(const Comm& comm, const std::string& weights_dir, bool verify)
    : comm_(comm), weights_(WeightStore::open(weights_dir, comm.rank(), verify)) {
  shape_ = {gen::kMaxTokensPerStep, gen::kMaxRequestsPerRank, gen::kWindow,           gen::kMaxContext,
            gen::kVocabSize,        gen::kBlockTableWidthR4,  gen::kBlockTableWidthR128};
  views_ = {arena_.span<int32_t>(gen::kBuf_meta_token_ids), arena_.span<int32_t>(gen::kBuf_meta_positions),
            arena_.span<int32_t>(gen::kBuf_meta_token_request), arena_.span<int32_t>(gen::kBuf_meta_window_rows),
            arena_.span<int32_t>(gen::kBuf_meta_logits_rows)};
  // Every compressor's carried state (main and indexer), reset per request slot on start.
  std::vector<KvCacheManager::CompressorState> states;
  for (uint32_t b = 0; b < gen::kNumBuffers; ++b)
    if (std::string_view(gen::kBuffers[b].name).ends_with("compressor.kv_state")) {
      DSV4_ASSERT(std::string_view(gen::kBuffers[b + 1].name).ends_with("compressor.score_state"), "state buffers are declared in pairs");
      states.push_back({arena_.span<float>(b), arena_.span<float>(b + 1)});
    }
  kv_ = std::make_unique<KvCacheManager>(gen::kMaxRequestsPerRank, gen::kMaxContext, gen::kKvBlock,
                                         arena_.span<int32_t>(gen::kBuf_meta_block_table_r4), gen::kBlockTableWidthR4,
                                         arena_.span<int32_t>(gen::kBuf_meta_block_table_r128),
                                         gen::kBlockTableWidthR128, std::move(states));
  exec_ = std::make_unique<Executor>(comm, arena_, weights_);
  last_.cu_q_lens.reserve(size_t(gen::kMaxRequestsPerRank + 1));
  last_.logits_slot.reserve(size_t(gen::kMaxRequestsPerRank));
}

const StepMeta& Engine::step(std::span<const StepWork> work, const Executor::OpHook& after_op) {
  for (const auto& w : work) {
    if (w.start_pos != kv_->length(w.slot))
      throw Error("request slot " + std::to_string(w.slot) + ": chunk starts at position " + std::to_string(w.start_pos) +
                  " but the cache holds " + std::to_string(kv_->length(w.slot)) + " tokens");
    kv_->reserve(w.slot, w.start_pos + int64_t(w.tokens.size()));
  }
  build_step_metadata(shape_, work, views_, last_);
  exec_->run_step(last_, after_op);
  for (const auto& w : work) kv_->advance(w.slot, int64_t(w.tokens.size()));
  return last_;
}

std::span<const float> Engine::logits(int64_t j) const {
  return arena_.span<const float>(gen::kBuf_logits).subspan(size_t(j * gen::kVocabSize), size_t(gen::kVocabSize));
}

int32_t Engine::greedy_token(int64_t j) const { return arena_.span<const int32_t>(gen::kBuf_next_tokens)[size_t(j)]; }

}  // namespace dsv4
