// Generated tokens to the text a client sees: incremental detokenization, the reasoning / answer split of
// thinking mode (text before the </think> token is reasoning), stop strings matched on the answer text
// with holdback (a partial match is never sent), and the per-token logprobs that go with the text sent.
// Pure: no HTTP, no backend; one OutputAssembler per request, used from one thread.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/serving/request.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4 {

// Holds back the longest tail of the text that could still start a stop string. After a match the text
// before it has been returned and nothing more is.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  std::string push(std::string_view text);  // the text now safe to send
  std::string flush();                      // end of generation: the held tail (nothing after a match)
  bool matched() const { return matched_; }
  size_t sent() const { return sent_; }  // bytes returned so far

 private:
  std::vector<std::string> stops_;
  std::string held_;
  size_t sent_ = 0;
  bool matched_ = false;
};

// One answer token that has been sent, with its logprobs.
struct SentToken {
  int32_t id = -1;
  float logprob = 0;
  std::vector<TokenLogprob> top;
  size_t offset = 0;  // byte offset of the token's text in the answer (completions' text_offset)
};

// What one event (or the end) adds to the response.
struct OutputDelta {
  std::string reasoning;          // thinking mode: more reasoning text
  std::string content;            // more answer text
  std::vector<SentToken> tokens;  // answer tokens whose text is now sent (with logprobs when asked)
  bool empty() const { return reasoning.empty() && content.empty() && tokens.empty(); }
};

class OutputAssembler {
 public:
  // think_end_id: the </think> token (thinking mode starts in the reasoning phase).
  OutputAssembler(const Tokenizer& tok, bool thinking, int32_t think_end_id, std::vector<std::string> stops);
  // One generated token (ev.token >= 0). After a stop string matched, stop_matched() is true: cancel the
  // request; later pushes add nothing.
  OutputDelta push(const TokenEvent& ev);
  // The request ended (not by a stop string): flush held text and tokens.
  OutputDelta finish();
  bool stop_matched() const { return stop_.matched(); }
  int64_t completion_tokens() const { return generated_; }

 private:
  void release(OutputDelta& d, size_t upto, bool all);
  const Tokenizer& tok_;
  bool reasoning_phase_;
  int32_t think_end_id_;
  StreamDecoder reasoning_dec_, content_dec_;
  StopMatcher stop_;
  size_t decoded_ = 0;              // answer bytes decoded so far (before stop matching)
  std::vector<SentToken> pending_;  // answer tokens not yet released; offset = their start
  std::vector<size_t> pending_end_;
  int64_t generated_ = 0;
};

}  // namespace dsv4
