// Metadata builder and KV cache manager, tested on their own with tiny hand-computed shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "plan/error.hpp"
#include "runtime/engine/kv_cache.hpp"
#include "runtime/engine/metadata.hpp"

namespace {

using namespace dsv4;

struct Meta {
  MetaShape shape{8, 3, 4, 64, 100, 2, 1};  // T=8 rows, R=3 slots, window 4, context 64, vocab 100
  std::vector<int32_t> ids = std::vector<int32_t>(8), pos = std::vector<int32_t>(8), req = std::vector<int32_t>(8),
                       win = std::vector<int32_t>(8 * 4), logits = std::vector<int32_t>(3);
  MetaViews views() { return {ids, pos, req, win, logits}; }
  std::vector<int32_t> window(int row) { return {win.begin() + row * 4, win.begin() + row * 4 + 4}; }
};

std::string error_of(Meta& m, std::vector<StepWork> w) {
  try {
    build_step_metadata(m.shape, w, m.views());
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Metadata, MixedPrefillAndDecode) {
  Meta m;
  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9}, dec = {42};
  // slot 1: a 5-token prompt from position 0; slot 0: a decode token at position 10.
  const std::vector<StepWork> work = {{1, 0, prompt, true}, {0, 10, dec, true}};
  const StepMeta s = build_step_metadata(m.shape, work, m.views());
  EXPECT_EQ(s.n_tokens, 6);
  EXPECT_EQ(s.cu_q_lens, (std::vector<int64_t>{0, 5, 6}));
  EXPECT_EQ(s.logits_slot, (std::vector<int32_t>{1, 0}));
  EXPECT_EQ(m.ids, (std::vector<int32_t>{5, 6, 7, 8, 9, 42, 0, 0}));
  EXPECT_EQ(m.pos, (std::vector<int32_t>{0, 1, 2, 3, 4, 10, -1, -1}));
  EXPECT_EQ(m.req, (std::vector<int32_t>{1, 1, 1, 1, 1, 0, -1, -1}));
  EXPECT_EQ(m.logits, (std::vector<int32_t>{4, 5, -1}));
  // Prefill rows see this chunk's staging rows, ascending, padded with -1.
  EXPECT_EQ(m.window(0), (std::vector<int32_t>{0, -1, -1, -1}));
  EXPECT_EQ(m.window(2), (std::vector<int32_t>{0, 1, 2, -1}));
  EXPECT_EQ(m.window(4), (std::vector<int32_t>{1, 2, 3, 4}));  // position 4 sees 1..4 (window 4)
  // Decode at position 10, slot 0: positions 7, 8, 9 from the ring (T + 0*4 + q%4), 10 from staging.
  EXPECT_EQ(m.window(5), (std::vector<int32_t>{8 + 3, 8 + 0, 8 + 1, 5}));
  EXPECT_EQ(m.window(6), (std::vector<int32_t>{-1, -1, -1, -1}));
}

TEST(Metadata, SecondChunkReadsEarlierTokensFromTheRing) {
  Meta m;
  const std::vector<int32_t> chunk = {1, 2, 3};
  build_step_metadata(m.shape, std::vector<StepWork>{{2, 6, chunk, false}}, m.views());
  // slot 2 ring base = 8 + 2*4 = 16. Position 6 sees 3,4,5 (ring) and 6 (staging row 0).
  EXPECT_EQ(m.window(0), (std::vector<int32_t>{16 + 3, 16 + 0, 16 + 1, 0}));
  EXPECT_EQ(m.window(2), (std::vector<int32_t>{16 + 1, 0, 1, 2}));  // position 8: 5 (ring), 6, 7, 8
  EXPECT_EQ(m.logits, (std::vector<int32_t>{-1, -1, -1}));
}

TEST(Metadata, InvalidInputIsAClearError) {
  Meta m;
  const std::vector<int32_t> one = {1}, nine(9, 1), none, bad = {1, 100};
  EXPECT_EQ(error_of(m, {{0, 0, one, true}, {1, 0, one, true}, {2, 0, one, true}, {0, 0, one, true}}),
            "step has 4 requests, this rank holds at most 3 (deploy.max_requests_per_rank)");
  EXPECT_EQ(error_of(m, {{0, 0, one, true}, {0, 5, one, true}}), "request slot 0: appears twice in one step");
  EXPECT_EQ(error_of(m, {{3, 0, one, true}}), "request slot 3: slot outside [0, 3)");
  EXPECT_EQ(error_of(m, {{0, 0, none, true}}), "request slot 0: empty chunk (a prompt needs at least one token)");
  EXPECT_EQ(error_of(m, {{0, 0, nine, true}}), "step has 9 tokens, the slab holds 8 (deploy.max_tokens_per_step)");
  EXPECT_EQ(error_of(m, {{1, 0, bad, true}}),
            "request slot 1: token id 100 at chunk index 1 is outside the vocabulary [0, 100)");
  EXPECT_EQ(error_of(m, {{1, 64, one, true}}),
            "request slot 1: positions up to 64 exceed max_context 64 (deploy.max_context)");
}

TEST(KvCache, BlocksAreAllocatedAsEntriesAppearAndFreedOnFinish) {
  // R=2, context 64, kv_block 4: ratio 4 -> 16 entries -> 4 blocks per request; ratio 128 -> 0 entries -> width 1.
  std::vector<int32_t> bt4(2 * 4), bt128(2 * 1);
  std::vector<float> kv(2 * 6, 7.0f), sc(2 * 6, 7.0f);
  KvCacheManager kvm(2, 64, 4, bt4, 4, bt128, 1, {{kv, sc}});
  const int32_t a = kvm.start();
  EXPECT_EQ(a, 0);
  EXPECT_EQ(kv[0], 0.0f);
  EXPECT_TRUE(std::isinf(sc[5]) && sc[5] < 0);
  EXPECT_EQ(kv[6], 7.0f);  // the other slot is untouched
  kvm.reserve(a, 3);       // 0 entries
  EXPECT_EQ(bt4[0], -1);
  kvm.reserve(a, 20);  // 5 entries -> 2 blocks
  EXPECT_EQ(std::vector<int32_t>(bt4.begin(), bt4.begin() + 4), (std::vector<int32_t>{0, 1, -1, -1}));
  const int32_t b = kvm.start();
  kvm.reserve(b, 4);
  EXPECT_EQ(bt4[4], 2);
  kvm.finish(a);
  EXPECT_EQ(bt4[0], -1);
  EXPECT_EQ(kvm.free_blocks(4), 7);
  EXPECT_EQ(kvm.start(), 0);
  kvm.reserve(0, 64);
  EXPECT_EQ(std::vector<int32_t>(bt4.begin(), bt4.begin() + 4), (std::vector<int32_t>{0, 1, 3, 4}));
  EXPECT_THROW(kvm.start(), Error);  // both slots busy
  EXPECT_THROW(kvm.reserve(0, 65), Error);
}

}  // namespace
