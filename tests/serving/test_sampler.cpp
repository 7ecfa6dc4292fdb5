// The sampler: temperature-only draws are the ones `dsv4 run` made before top_p / top_k existed (the
// old code restated below), filters keep only what they should, logprobs are a log-softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "plan/error.hpp"
#include "runtime/serving/sampler.hpp"

namespace dsv4 {
namespace {

// dsv4 run's sampler before this change, verbatim in substance: the reference for identical draws.
int32_t old_sample(std::mt19937_64& rng, std::span<const float> logits, double temperature) {
  const size_t n = logits.size();
  if (temperature <= 0) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const float t = float(std::max(temperature, 1e-5));
  std::vector<float> p(n);
  float m = -INFINITY;
  for (size_t i = 0; i < n; ++i) m = std::max(m, p[i] = logits[i] / t);
  float sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i] = std::exp(p[i] - m);
  int32_t best = 0;
  float best_v = -1;
  for (size_t i = 0; i < n; ++i) {
    const double u = double(rng() >> 11) * 0x1.0p-53;
    const float e = float(std::max(-std::log1p(-u), 1e-30));
    const float v = (p[i] / sum) / e;
    if (v > best_v) best_v = v, best = int32_t(i);
  }
  return best;
}

std::vector<float> random_logits(uint64_t seed, size_t n) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0, 3);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

TEST(Sampler, TemperatureOnlyMatchesTheOldSampler) {
  for (int64_t stream : {0, 1, 7}) {
    Sampler s(33377335, stream);
    std::seed_seq seq{uint32_t(33377335), 0u, uint32_t(stream), 0u};
    std::mt19937_64 rng(seq);
    for (int step = 0; step < 50; ++step) {
      const auto l = random_logits(uint64_t(step), 1000);
      const double t = step % 3 == 0 ? 0.6 : step % 3 == 1 ? 1.3 : 0.0;
      SamplingParams p;
      p.temperature = t;
      p.top_logprobs = step % 2 ? 5 : -1;  // logprobs must not move the noise stream
      ASSERT_EQ(s.sample(l, p).token, old_sample(rng, l, t)) << "step " << step;
    }
  }
}

TEST(Sampler, TopKAndTopPKeepOnlyTheMostLikely) {
  auto l = random_logits(5, 500);
  std::vector<int32_t> order(l.size());
  for (size_t i = 0; i < l.size(); ++i) order[i] = int32_t(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[size_t(a)] > l[size_t(b)]; });
  Sampler s(1, 0);
  SamplingParams k3;
  k3.temperature = 5;  // flat enough that unfiltered draws would spread over many ids
  k3.top_k = 3;
  std::set<int32_t> seen;
  for (int i = 0; i < 300; ++i) seen.insert(s.sample(l, k3).token);
  EXPECT_EQ(seen, (std::set<int32_t>{order[0], order[1], order[2]}));
  SamplingParams p_small;
  p_small.temperature = 1;
  p_small.top_p = 1e-6;  // the smallest set reaching it is the top token alone
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(l, p_small).token, order[0]);
  SamplingParams flat;
  flat.temperature = 5;
  seen.clear();
  for (int i = 0; i < 300; ++i) seen.insert(s.sample(l, flat).token);
  EXPECT_GT(seen.size(), 3u);  // without the filters the draw does spread
}

TEST(Sampler, LogprobsAreALogSoftmax) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, -1.0f};
  Sampler s(1, 0);
  SamplingParams p;
  p.temperature = 0;
  p.top_logprobs = 3;
  const SampledToken t = s.sample(l, p);
  EXPECT_EQ(t.token, 1);
  const double lse = std::log(std::exp(1.0) + std::exp(3.0) + std::exp(2.0) + std::exp(-1.0));
  EXPECT_NEAR(t.logprob, 3.0 - lse, 1e-6);
  ASSERT_EQ(t.top.size(), 3u);
  EXPECT_EQ(t.top[0].id, 1);
  EXPECT_EQ(t.top[1].id, 2);
  EXPECT_EQ(t.top[2].id, 0);
  EXPECT_NEAR(t.top[2].logprob, 1.0 - lse, 1e-6);
  p.temperature = 2;
  p.top_logprobs = 0;
  const SampledToken u = s.sample(l, p);
  EXPECT_TRUE(u.top.empty());
  EXPECT_NEAR(u.logprob, l[size_t(u.token)] / 2 - std::log(std::exp(0.5) + std::exp(1.5) + std::exp(1.0) + std::exp(-0.5)), 1e-6);
}

TEST(Sampler, BadParametersAreNamed) {
  SamplingParams p;
  p.temperature = std::nan("");
  EXPECT_THROW(check_sampling(p), Error);
  p.temperature = -1;
  EXPECT_THROW(check_sampling(p), Error);
  p = {};
  p.top_p = 0;
  EXPECT_THROW(check_sampling(p), Error);
  p = {};
  p.top_k = -2;
  EXPECT_THROW(check_sampling(p), Error);
  p = {};
  p.top_logprobs = 21;
  EXPECT_THROW(check_sampling(p), Error);
  EXPECT_NO_THROW(check_sampling(SamplingParams{}));
}

}  // namespace
}  // namespace dsv4
