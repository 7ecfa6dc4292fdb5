// An HTTP request body as `dsv4 serve` gets it: JSON text through parse_json_body, then every endpoint's
// parser (chat, completions, tokenize, detokenize) and the backend request. The only clean rejection is
// an ApiError with a 4xx status and a message (what the client sees); anything else escaping (it would be
// a 500), a crash or a sanitizer report is a finding, and so is an accepted request the engine would
// refuse: an empty prompt, an id outside the vocabulary, no room in the context, bad sampling values.
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz/fuzz_util.hpp"
#include "runtime/serving/openai_request.hpp"
#include "runtime/serving/sampler.hpp"

namespace {

const dsv4::Tokenizer& tokenizer() {
  static const dsv4::Tokenizer tok = dsv4::Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  return tok;
}

// Runs one parser: a 4xx ApiError is the expected rejection; anything else escaping is a finding.
template <class F>
void api_call(F&& f) {
  try {
    f();
  } catch (const dsv4::ApiError& e) {
    dsv4::fuzz::check(e.status >= 400 && e.status < 500, "ApiError with a status outside 4xx");
    dsv4::fuzz::check(!e.message.empty(), "ApiError without a message");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "FINDING: a request parser let a non-ApiError escape (HTTP 500): %s\n", e.what());
    std::abort();
  }
}

void check_accepted(const dsv4::ApiRequest& r, const dsv4::PromptLimits& lim) {
  using dsv4::fuzz::check;
  check(!r.prompt.empty(), "accepted an empty prompt");
  for (int32_t id : r.prompt) check(id >= 0 && id < lim.vocab_size, "accepted a prompt id outside the vocabulary");
  for (int32_t id : r.stop_token_ids) check(id >= 0 && id < lim.vocab_size, "accepted a stop id outside the vocabulary");
  check(r.max_tokens >= 1, "accepted max_tokens < 1");
  check(int64_t(r.prompt.size()) + r.max_tokens <= lim.max_context, "accepted a request that does not fit the context");
  check(r.stop.size() <= 4, "accepted more than 4 stop strings");
  check(r.logprobs == (r.sampling.top_logprobs >= 0), "logprobs flag and top_logprobs disagree");
  try {  // the backend would reject what the parser accepted
    dsv4::check_sampling(r.sampling);
  } catch (const std::exception&) {
    check(false, "accepted sampling parameters the sampler rejects");
  }
  const dsv4::GenerationRequest g = dsv4::to_generation_request(r, 1);
  check(g.prompt == r.prompt && !g.stop_tokens.empty() && g.stop_tokens[0] == 1, "generation request differs");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const dsv4::Tokenizer& tok = tokenizer();
  const dsv4::PromptLimits lim{.vocab_size = int64_t(tok.size()), .max_context = 4096};
  const std::string body(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  bool parsed = false;
  api_call([&] { j = dsv4::parse_json_body(body), parsed = true; });
  if (!parsed) return 0;
  api_call([&] { check_accepted(dsv4::parse_chat_request(j, tok, lim), lim); });
  api_call([&] { check_accepted(dsv4::parse_completion_request(j, tok, lim), lim); });
  api_call([&] {
    const auto ids = dsv4::parse_tokenize_request(j, tok);
    for (int32_t id : ids) dsv4::fuzz::check(id >= 0 && id < lim.vocab_size, "tokenize gave an id outside the vocabulary");
  });
  api_call([&] {
    const auto ids = dsv4::parse_detokenize_request(j, lim);
    for (int32_t id : ids) dsv4::fuzz::check(id >= 0 && id < lim.vocab_size, "detokenize accepted an id outside the vocabulary");
    (void)tok.decode(ids);
  });
  return 0;
}
