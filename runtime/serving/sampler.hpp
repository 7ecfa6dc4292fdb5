// Token sampling of one request from its full-vocabulary logits, and the log-probabilities a front end
// may ask for. No MPI, no plan: unit-tested with hand-made logits (tests/serving).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "runtime/serving/request.hpp"

namespace dsv4 {

struct SampledToken {
  int32_t token = -1;
  float logprob = 0;               // filled when SamplingParams::top_logprobs >= 0
  std::vector<TokenLogprob> top;   // top_logprobs alternatives, most likely first
};

// generate.py's sample(): p = softmax(logits / max(T, 1e-5)) in fp32, token = argmax(p / E) with
// E ~ Exp(1) per vocabulary entry (the Gumbel-max trick); T <= 0 is argmax. The noise comes from a
// std::mt19937_64 per request seeded from (seed, stream), so results do not depend on the rank count or
// on what shares a step; it is NOT torch's generator, so samples differ from generate.py's.
// top_k / top_p zero the probabilities outside the k most likely / the smallest set whose mass reaches
// p before the Gumbel draw (one noise value per vocabulary entry is drawn either way, so the stream
// advances by the vocabulary size per token). Logprobs are log softmax(logits / T) (T = 1 for argmax),
// before top_k / top_p.
class Sampler {
 public:
  Sampler(uint64_t seed, int64_t stream);
  int32_t sample(std::span<const float> logits, double temperature);  // temperature only (dsv4 run's default)
  SampledToken sample(std::span<const float> logits, const SamplingParams& p);

 private:
  std::mt19937_64 rng_;
  std::vector<float> p_;
  std::vector<int32_t> order_;
};

// Throws dsv4::Error naming the field when a parameter is out of range (NaN or negative temperature,
// top_p outside (0, 1], negative top_k, top_logprobs outside -1..20).
void check_sampling(const SamplingParams& p);
inline constexpr int32_t kMaxTopLogprobs = 20;

}  // namespace dsv4
