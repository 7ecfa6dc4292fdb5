// The BPE model of a byte-level tokenizer: merge ranks in a flat open-addressing table (one probe
// in the common case, no node per merge), and the merge loop of one pre-token, which starts from its
// single bytes and repeatedly applies the lowest-rank merge, leftmost on ties, as Hugging Face's BPE.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace dsv4 {

class BpeMerges {
 public:
  void reserve(size_t merges);  // before add(): the table does not grow
  // (left, right) -> result at rank; a pair already present keeps its first (lowest) rank.
  void add(int32_t left, int32_t right, int32_t rank, int32_t result);
  size_t size() const { return count_; }

  // Reusable buffers of encode(), one per caller (encode() itself is const and thread-safe).
  struct Scratch {
    std::vector<int32_t> ids, ranks, results;
    struct Sym {
      int32_t id, prev, next;
      bool alive;
    };
    std::vector<Sym> syms;
    std::vector<uint64_t> heap;  // rank << 32 | position, min-heap
  };
  // Appends the ids of `word` (raw bytes; byte_id: id of each single byte) after merging.
  void encode(std::string_view word, const int32_t* byte_id, std::vector<int32_t>& out, Scratch& s) const;

 private:
  struct Slot {
    uint64_t key;  // left << 32 | right; kEmpty when free
    int32_t rank, result;
  };
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  const Slot* find(int32_t left, int32_t right) const;
  void encode_short(std::string_view word, const int32_t* byte_id, std::vector<int32_t>& out, Scratch& s) const;
  void encode_long(std::string_view word, const int32_t* byte_id, std::vector<int32_t>& out, Scratch& s) const;

  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  size_t count_ = 0;
};

}  // namespace dsv4
