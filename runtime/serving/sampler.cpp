#include "runtime/serving/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "plan/error.hpp"

namespace dsv4 {

Sampler::Sampler(uint64_t seed, int64_t stream) {
  std::seed_seq s{uint32_t(seed), uint32_t(seed >> 32), uint32_t(stream), uint32_t(uint64_t(stream) >> 32)};
  rng_.seed(s);
}

void check_sampling(const SamplingParams& p) {
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature))
    throw Error("temperature must be a finite number >= 0, got " + std::to_string(p.temperature));
  if (!(p.top_p > 0 && p.top_p <= 1)) throw Error("top_p must be in (0, 1], got " + std::to_string(p.top_p));
  if (p.top_k < 0) throw Error("top_k must be >= 0 (0 = off), got " + std::to_string(p.top_k));
  if (p.top_logprobs < -1 || p.top_logprobs > kMaxTopLogprobs)
    throw Error("top_logprobs must be in 0.." + std::to_string(kMaxTopLogprobs) + " (or -1 for none), got " +
                std::to_string(p.top_logprobs));
}

int32_t Sampler::sample(std::span<const float> logits, double temperature) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_p = 1, p.top_k = 0, p.top_logprobs = -1;
  return sample(logits, p).token;
}

SampledToken Sampler::sample(std::span<const float> logits, const SamplingParams& sp) {
  const size_t n = logits.size();
  SampledToken out;
  if (sp.temperature <= 0) {
    out.token = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    const float t = float(std::max(sp.temperature, 1e-5));
    p_.resize(n);
    float m = -INFINITY;
    for (size_t i = 0; i < n; ++i) m = std::max(m, p_[i] = logits[i] / t);
    float sum = 0;
    for (size_t i = 0; i < n; ++i) sum += p_[i] = std::exp(p_[i] - m);
    const bool by_k = sp.top_k > 0 && size_t(sp.top_k) < n, by_p = sp.top_p < 1;
    if (by_k || by_p) {
      // Most likely first (ties: lower id first, so the kept set is deterministic).
      order_.resize(n);
      std::iota(order_.begin(), order_.end(), 0);
      const size_t k = by_k ? size_t(sp.top_k) : n;
      auto more = [&](int32_t a, int32_t b) { return p_[size_t(a)] > p_[size_t(b)] || (p_[size_t(a)] == p_[size_t(b)] && a < b); };
      std::partial_sort(order_.begin(), order_.begin() + ptrdiff_t(k), order_.end(), more);
      size_t keep = k;
      if (by_p) {
        double mass = 0;
        for (size_t j = 0; j < k; ++j)
          if ((mass += double(p_[size_t(order_[j])]) / double(sum)) >= sp.top_p) {
            keep = j + 1;
            break;
          }
      }
      for (size_t j = keep; j < n; ++j) p_[size_t(order_[j])] = 0;
    }
    int32_t best = 0;
    float best_v = -1;
    for (size_t i = 0; i < n; ++i) {
      // E ~ Exp(1) from a uniform in [0, 1) built from the top 53 bits (distributions in <random> are
      // implementation-defined; this is not).
      const double u = double(rng_() >> 11) * 0x1.0p-53;
      const float e = float(std::max(-std::log1p(-u), 1e-30));
      const float v = (p_[i] / sum) / e;
      if (v > best_v) best_v = v, best = int32_t(i);
    }
    out.token = best;
  }
  if (sp.top_logprobs >= 0) {
    // log softmax(logits / T) in double: exact enough to rank and report, independent of the draw.
    const double t = sp.temperature <= 0 ? 1.0 : std::max(sp.temperature, 1e-5);
    double m = -INFINITY;
    for (size_t i = 0; i < n; ++i) m = std::max(m, double(logits[i]) / t);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) / t - m);
    const double lse = m + std::log(sum);
    out.logprob = float(double(logits[size_t(out.token)]) / t - lse);
    const size_t k = std::min(size_t(sp.top_logprobs), n);
    if (k > 0) {
      order_.resize(n);
      std::iota(order_.begin(), order_.end(), 0);
      std::partial_sort(order_.begin(), order_.begin() + ptrdiff_t(k), order_.end(), [&](int32_t a, int32_t b) {
        return logits[size_t(a)] > logits[size_t(b)] || (logits[size_t(a)] == logits[size_t(b)] && a < b);
      });
      for (size_t j = 0; j < k; ++j)
        out.top.push_back({order_[j], float(double(logits[size_t(order_[j])]) / t - lse)});
    }
  }
  return out;
}

}  // namespace dsv4
