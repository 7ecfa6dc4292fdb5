#include "runtime/engine/kv_cache.hpp"

#include <algorithm>
#include <limits>
#include <string>

#include "plan/error.hpp"

namespace dsv4 {

KvCacheManager::KvCacheManager(int64_t R, int64_t C, int64_t kv_block, std::span<int32_t> bt4, int64_t w4,
                               std::span<int32_t> bt128, int64_t w128, std::vector<CompressorState> states)
    : R_(R), C_(C), kv_block_(kv_block), w4_(w4), w128_(w128), bt4_(bt4), bt128_(bt128), states_(std::move(states)),
      len_(size_t(R), 0), active_(size_t(R), false), owned4_(size_t(R)), owned128_(size_t(R)) {
  DSV4_ASSERT(int64_t(bt4.size()) == R * w4 && int64_t(bt128.size()) == R * w128, "block table shape");
  // Free lists hand out the lowest block first, so the layout is deterministic.
  for (int64_t b = R * w4 - 1; b >= 0; --b) free4_.push_back(int32_t(b));
  for (int64_t b = R * w128 - 1; b >= 0; --b) free128_.push_back(int32_t(b));
  for (auto& v : owned4_) v.reserve(size_t(w4));  // no allocation when requests grow
  for (auto& v : owned128_) v.reserve(size_t(w128));
  std::fill(bt4.begin(), bt4.end(), -1);
  std::fill(bt128.begin(), bt128.end(), -1);
}

int32_t KvCacheManager::start() {
  for (int32_t s = 0; s < R_; ++s) {
    if (active_[size_t(s)]) continue;
    active_[size_t(s)] = true;
    len_[size_t(s)] = 0;
    for (auto& st : states_) {
      const size_t per = st.kv.size() / size_t(R_);
      std::fill_n(st.kv.begin() + s * per, per, 0.0f);
      std::fill_n(st.score.begin() + s * per, per, -std::numeric_limits<float>::infinity());
    }
    return s;
  }
  throw Error("all " + std::to_string(R_) + " request slots of this rank are busy (deploy.max_requests_per_rank)");
}

void KvCacheManager::grow(Pool p, int32_t slot, int64_t new_len) {
  const int64_t entries = new_len / p.ratio;
  const int64_t need = (entries + kv_block_ - 1) / kv_block_;
  auto& mine = (*p.owned)[size_t(slot)];
  while (int64_t(mine.size()) < need) {
    DSV4_ASSERT(!p.free->empty() && int64_t(mine.size()) < p.width, "compressed pool exhausted");
    mine.push_back(p.free->back());
    p.free->pop_back();
    p.table[slot * p.width + int64_t(mine.size()) - 1] = mine.back();
  }
}

void KvCacheManager::reserve(int32_t slot, int64_t new_len) {
  if (slot < 0 || slot >= R_ || !active_[size_t(slot)])
    throw Error("request slot " + std::to_string(slot) + " is not active");
  if (new_len > C_)
    throw Error("request slot " + std::to_string(slot) + ": length " + std::to_string(new_len) +
                " exceeds max_context " + std::to_string(C_));
  grow({4, bt4_, w4_, &free4_, &owned4_}, slot, new_len);
  grow({128, bt128_, w128_, &free128_, &owned128_}, slot, new_len);
}

void KvCacheManager::finish(int32_t slot) {
  if (slot < 0 || slot >= R_ || !active_[size_t(slot)]) return;
  auto release = [&](std::vector<std::vector<int32_t>>& owned, std::vector<int32_t>& free, std::span<int32_t> table,
                     int64_t w) {
    for (int32_t b : owned[size_t(slot)]) free.push_back(b);
    owned[size_t(slot)].clear();
    std::fill_n(table.begin() + slot * w, w, -1);
  };
  release(owned4_, free4_, bt4_, w4_);
  release(owned128_, free128_, bt128_, w128_);
  // Keep the free lists sorted descending so the lowest block is handed out next.
  std::sort(free4_.rbegin(), free4_.rend());
  std::sort(free128_.rbegin(), free128_.rend());
  active_[size_t(slot)] = false;
  len_[size_t(slot)] = 0;
}

}  // namespace dsv4
