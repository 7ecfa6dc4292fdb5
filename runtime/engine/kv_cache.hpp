// KV cache bookkeeping of one rank: request slots, their lengths, paged block tables of the
// compressed pools (ratio 4 and 128), and the reset of carried compressor state on request start.
// The pools themselves are arena buffers (Lxx.attn.kv_cache, Lxx.indexer.kv_cache); every layer of a
// ratio shares the block table of that ratio.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace dsv4 {

class KvCacheManager {
 public:
  struct CompressorState {
    std::span<float> kv, score;  // [R, rows, width] each; a slot's slice is contiguous
  };
  // bt_r4 / bt_r128: arena block tables [R, width]; pools hold R * width blocks per ratio.
  KvCacheManager(int64_t max_requests, int64_t max_context, int64_t kv_block, std::span<int32_t> bt_r4,
                 int64_t width_r4, std::span<int32_t> bt_r128, int64_t width_r128,
                 std::vector<CompressorState> states);

  // Takes a free slot for a new request and resets its state (compressor kv 0, score -inf, as a
  // freshly built reference model). Throws dsv4::Error when every slot is busy.
  int32_t start();
  // Makes room for the request to reach `new_len` tokens (allocates compressed-pool blocks).
  void reserve(int32_t slot, int64_t new_len);
  void advance(int32_t slot, int64_t n) { len_[size_t(slot)] += n; }
  void finish(int32_t slot);  // frees the slot and its blocks

  int64_t length(int32_t slot) const { return len_[size_t(slot)]; }
  bool active(int32_t slot) const { return active_[size_t(slot)]; }
  int64_t free_blocks(int ratio) const { return int64_t((ratio == 4 ? free4_ : free128_).size()); }

 private:
  struct Pool {
    int ratio;
    std::span<int32_t> table;
    int64_t width;
    std::vector<int32_t>* free;
    std::vector<std::vector<int32_t>>* owned;
  };
  void grow(Pool p, int32_t slot, int64_t new_len);

  int64_t R_, C_, kv_block_, w4_, w128_;
  std::span<int32_t> bt4_, bt128_;
  std::vector<CompressorState> states_;
  std::vector<int64_t> len_;
  std::vector<bool> active_;
  std::vector<int32_t> free4_, free128_;
  std::vector<std::vector<int32_t>> owned4_, owned128_;
};

}  // namespace dsv4
