#include "runtime/text/bpe.hpp"

#include <algorithm>
#include <climits>
#include <functional>

#include "plan/error.hpp"

namespace dsv4 {
namespace {

uint64_t pair_key(int32_t left, int32_t right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
uint64_t slot_of(uint64_t key) { return (key * 0x9E3779B97F4A7C15ull) >> 20; }

// Pre-tokens up to this many bytes merge by scanning for the best pair (no heap, no links): nearly all
// of them in real text. Longer ones (long CJK or symbol runs) use the O(n log n) heap.
constexpr size_t kShortWord = 48;

}  // namespace

void BpeMerges::reserve(size_t merges) {
  size_t cap = 16;
  while (cap < merges * 2) cap *= 2;
  slots_.assign(cap, Slot{kEmpty, 0, 0});
  mask_ = cap - 1;
  count_ = 0;
}

void BpeMerges::add(int32_t left, int32_t right, int32_t rank, int32_t result) {
  DSV4_ASSERT(count_ * 2 < slots_.size(), "BpeMerges::reserve() too small");
  const uint64_t key = pair_key(left, right);
  for (uint64_t i = slot_of(key) & mask_;; i = (i + 1) & mask_) {
    if (slots_[i].key == key) return;
    if (slots_[i].key == kEmpty) {
      slots_[i] = {key, rank, result};
      ++count_;
      return;
    }
  }
}

const BpeMerges::Slot* BpeMerges::find(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  for (uint64_t i = slot_of(key) & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.key == key) return &s;
    if (s.key == kEmpty) return nullptr;
  }
}

void BpeMerges::encode(std::string_view word, const int32_t* byte_id, std::vector<int32_t>& out, Scratch& s) const {
  if (word.size() == 1) out.push_back(byte_id[static_cast<unsigned char>(word[0])]);
  else if (word.size() <= kShortWord) encode_short(word, byte_id, out, s);
  else encode_long(word, byte_id, out, s);
}

void BpeMerges::encode_short(std::string_view word, const int32_t* byte_id, std::vector<int32_t>& out,
                             Scratch& s) const {
  size_t n = word.size();
  s.ids.resize(n);
  s.ranks.resize(n);
  s.results.resize(n);
  int32_t* ids = s.ids.data();
  int32_t* ranks = s.ranks.data();  // ranks[k]: rank of merging ids[k] and ids[k + 1], INT_MAX if none
  int32_t* results = s.results.data();
  for (size_t i = 0; i < n; ++i) ids[i] = byte_id[static_cast<unsigned char>(word[i])];
  auto rate = [&](size_t k) {
    const Slot* m = find(ids[k], ids[k + 1]);
    ranks[k] = m ? m->rank : INT_MAX;
    results[k] = m ? m->result : -1;
  };
  for (size_t k = 0; k + 1 < n; ++k) rate(k);
  while (n > 1) {
    size_t best = 0;
    for (size_t k = 1; k + 1 < n; ++k)
      if (ranks[k] < ranks[best]) best = k;  // strict: the leftmost of equal ranks
    if (ranks[best] == INT_MAX) break;
    ids[best] = results[best];
    std::copy(ids + best + 2, ids + n, ids + best + 1);
    std::copy(ranks + best + 2, ranks + n, ranks + best + 1);
    std::copy(results + best + 2, results + n, results + best + 1);
    --n;
    if (best > 0) rate(best - 1);
    if (best + 1 < n) rate(best);
  }
  out.insert(out.end(), ids, ids + n);
}

// A priority queue of (rank, position) keeps long runs O(n log n); entries made stale by a neighbour's
// merge are skipped when popped.
void BpeMerges::encode_long(std::string_view word, const int32_t* byte_id, std::vector<int32_t>& out,
                            Scratch& s) const {
  const size_t n = word.size();
  auto& sym = s.syms;
  sym.resize(n);
  for (size_t i = 0; i < n; ++i)
    sym[i] = {byte_id[static_cast<unsigned char>(word[i])], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1, true};
  auto& heap = s.heap;
  heap.clear();
  auto push = [&](int32_t i) {
    if (i < 0 || sym[size_t(i)].next < 0) return;
    if (const Slot* m = find(sym[size_t(i)].id, sym[size_t(sym[size_t(i)].next)].id)) {
      heap.push_back((uint64_t(uint32_t(m->rank)) << 32) | uint32_t(i));
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < int32_t(n); ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const int32_t pos = int32_t(uint32_t(top)), rank = int32_t(top >> 32);
    auto& l = sym[size_t(pos)];
    if (!l.alive || l.next < 0) continue;
    const Slot* m = find(l.id, sym[size_t(l.next)].id);
    if (!m || m->rank != rank) continue;  // stale: a neighbour changed since this pair was queued
    auto& r = sym[size_t(l.next)];
    l.id = m->result;
    r.alive = false;
    l.next = r.next;
    if (l.next >= 0) sym[size_t(l.next)].prev = pos;
    push(l.prev);
    push(pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) out.push_back(sym[size_t(i)].id);
}

}  // namespace dsv4
