// Metadata builder: turns one step's work on this rank (prefill chunks and decode tokens of several
// requests) into the fixed-shape metadata buffers the plan reads. Built and validated every step.
//
// KV row space of every layer's KV table (plan: Lxx.attn.kv_cache):
//   [0, T)                      staging rows: this step's kv rows, slab order
//   [T, T + R*window)           window rings: request slot s, position q -> T + s*window + q % window
//   [T + R*window, ...)         compressed pool: entry t of slot s -> pool_base + block(s, t/kv_block)*kv_block + t%kv_block
//
// Attention index lists always have the decode layout of the reference: `window` window entries (ascending
// positions, -1 padded), then the compressed entries. The reference's prefill uses min(s, window) window
// columns instead; both give the same online-softmax blocks of 64 whenever a row has at most 64 entries or
// s >= window, and the fixed layout keeps a request's result independent of how its prompt is chunked.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace dsv4 {

// Fixed shape of the metadata (from the generated plan; tests build their own).
struct MetaShape {
  int64_t max_tokens;    // T: slab rows per step
  int64_t max_requests;  // R: request slots per rank
  int64_t window;        // sliding window
  int64_t max_context;   // longest request
  int64_t vocab_size;    // token ids must be < vocab_size
  int64_t bt_width_r4, bt_width_r128;  // block table widths (blocks per request)
};

// Spans over the arena's persistent metadata buffers (meta.*), written by build_step_metadata.
struct MetaViews {
  std::span<int32_t> token_ids;      // [T]      token id per slab row (0 on padding rows)
  std::span<int32_t> positions;      // [T]      absolute position per slab row (-1 on padding rows)
  std::span<int32_t> token_request;  // [T]      request slot per slab row (-1 on padding rows)
  std::span<int32_t> window_rows;    // [T, W]   KV rows of the window, ascending positions, then -1
  std::span<int32_t> logits_rows;    // [R]      slab row of the j-th row that needs logits, -1 unused
};

// One request's share of a step: a prefill chunk (any length) or a decode token.
struct StepWork {
  int32_t slot;                      // request slot on this rank, [0, R)
  int64_t start_pos;                 // absolute position of tokens[0] (= tokens already in the caches)
  std::span<const int32_t> tokens;   // token ids of this chunk
  bool want_logits;                  // logits of the chunk's last token are needed (end of prompt, decode)
};

// What the host keeps about the step (the device-side copy lives in MetaViews).
struct StepMeta {
  int64_t n_tokens = 0;                         // valid slab rows (rows >= n_tokens are padding)
  std::vector<int64_t> cu_q_lens;               // [n_work + 1] slab offsets of each work item
  std::vector<int32_t> logits_slot;             // request slot of each logits row
};

// Validates `work` (clear dsv4::Error on: too many requests, duplicated or out-of-range slot, empty
// chunk, token id outside the vocabulary, slab overflow, position past max_context) and fills `v`.
StepMeta build_step_metadata(const MetaShape& shape, std::span<const StepWork> work, const MetaViews& v);
// The same into an existing StepMeta, reusing its storage (the engine's per-step path).
void build_step_metadata(const MetaShape& shape, std::span<const StepWork> work, const MetaViews& v, StepMeta& out);

}  // namespace dsv4
