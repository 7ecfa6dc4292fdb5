// Synthetic checkpoint in the official HF format (spec §2; golden/tiny README "Checkpoint format"):
// config.json, model.safetensors (one shard) or model-0000N-of-0000M.safetensors + index, and for the real
// 129,280 vocabulary the tokenizer files. Values are seeded and deterministic (own PRNG, independent of
// thread count, chunking and sharding), streamed to disk: memory stays at a few chunk buffers.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <vector>

#include "plan/config.hpp"
#include "plan/hf_manifest.hpp"

namespace dsv4 {

struct SynthOptions {
  uint64_t max_shard_bytes = 4ull << 30;  // a new shard starts before one would exceed this (official ~3.5 GB)
  // 1 = the official byte layout (safetensors crate compatible). 64 aligns every tensor to 64 bytes by
  // zero gaps between tensors, which this project's reader accepts but the official crate rejects
  // (see SafetensorsWriter).
  uint64_t data_align = 1;
  bool include_mtp = false;    // write the mtp.{i}.* tensors too
  bool overwrite = false;      // allow a non-empty out_dir: removes its model*.safetensors / index / config first
  std::string tokenizer_dir;   // holds tokenizer.json + tokenizer_config.json; required when vocab_size == 129280
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> progress;  // called after each chunk
};

struct SynthSummary {
  int64_t tensors = 0;       // tensors written
  int64_t shards = 0;        // safetensors files
  uint64_t tensor_bytes = 0; // sum of tensor payloads (= index metadata.total_size)
};

// Value recipe (per tensor, seeded by (seed, tensor name), one PRNG stream per row):
//   FP8 / FP4 linears: N(0, 1/sqrt(in)), quantized per block with scale 2^ceil(log2(amax/448)) (128x128) or
//     2^ceil(log2(amax/6)) (1x32), codes rounded to nearest even;
//   embed N(0,1); head N(0, 4/sqrt(in)); other bf16 linears N(0, 1/sqrt(in)); norms 1 + N(0, 0.1);
//   hc_*_fn N(0, 1/sqrt(in)), hc_*_base N(0, 0.5), hc_*_scale U[0.25, 1); attn_sink N(0, 0.5);
//   ape N(0, 0.5); gate.bias N(0, 0.1); tid2eid: per token, num_experts_per_tok distinct expert ids.
// Throws dsv4::Error (bad config, out_dir not empty, missing tokenizer, I/O).
SynthSummary write_synthetic_checkpoint(const ModelConfig& cfg, uint64_t seed, const std::string& out_dir,
                                        const SynthOptions& opt = {});

// The fp32 values row `row` of tensor `t` (a manifest entry) was generated from, before bf16 rounding or
// FP8/FP4 quantization: logical width t.in for fp8/fp4 weights (their scales give the weight's values),
// the last dim otherwise. For tests and converters. tid2eid rows are returned as floats.
std::vector<float> synth_row_values(const HfTensor& t, const ModelConfig& cfg, uint64_t seed, int64_t row);

}  // namespace dsv4
