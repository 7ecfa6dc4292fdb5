#include "runtime/serving/openai_output.hpp"

#include <algorithm>

namespace dsv4 {

std::string StopMatcher::push(std::string_view text) {
  if (matched_) return {};
  held_.append(text);
  // The earliest complete match wins (any stop string).
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    matched_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    sent_ += out.size();
    return out;
  }
  // Hold the longest tail that is a proper prefix of some stop string: a match starting earlier would
  // already have been found above. The tail starts at a stop string's first byte, so the text sent
  // always ends on a UTF-8 boundary.
  size_t hold = 0;
  for (const std::string& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > hold; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  sent_ += out.size();
  return out;
}

std::string StopMatcher::flush() {
  if (matched_) return {};
  std::string out = std::move(held_);
  held_.clear();
  sent_ += out.size();
  return out;
}

OutputAssembler::OutputAssembler(const Tokenizer& tok, bool thinking, int32_t think_end_id, std::vector<std::string> stops)
    : tok_(tok),
      reasoning_phase_(thinking),
      think_end_id_(think_end_id),
      reasoning_dec_(tok),
      content_dec_(tok),
      stop_(std::move(stops)) {}

// Releases the pending tokens whose text is sent: all with `all`, else those ending at or before `upto`.
void OutputAssembler::release(OutputDelta& d, size_t upto, bool all) {
  size_t n = 0;
  while (n < pending_.size() && (all || pending_end_[n] <= upto)) ++n;
  for (size_t i = 0; i < n; ++i) d.tokens.push_back(std::move(pending_[i]));
  pending_.erase(pending_.begin(), pending_.begin() + std::ptrdiff_t(n));
  pending_end_.erase(pending_end_.begin(), pending_end_.begin() + std::ptrdiff_t(n));
}

OutputDelta OutputAssembler::push(const TokenEvent& ev) {
  OutputDelta d;
  if (ev.token < 0 || stop_.matched()) return d;
  ++generated_;
  if (reasoning_phase_) {
    if (ev.token == think_end_id_) {
      d.reasoning = reasoning_dec_.finish();
      reasoning_phase_ = false;
    } else {
      d.reasoning = reasoning_dec_.push(ev.token);
    }
    return d;
  }
  const std::string text = content_dec_.push(ev.token);
  // Special tokens (EOS) have no text and are not shown among the logprobs, as OpenAI does.
  if (!tok_.is_special(ev.token)) {
    pending_.push_back(SentToken{ev.token, ev.logprob, ev.top, decoded_});
    pending_end_.push_back(decoded_ + text.size());
  }
  decoded_ += text.size();
  d.content = stop_.push(text);
  if (stop_.matched()) {
    // Keep the tokens whose text begins before the cut: they produced the answer's last bytes.
    const size_t cut = stop_.sent();
    size_t n = 0;
    while (n < pending_.size() && pending_[n].offset < cut) ++n;
    pending_.resize(n);
    pending_end_.resize(n);
    release(d, 0, true);
  } else {
    release(d, stop_.sent(), false);
  }
  return d;
}

OutputDelta OutputAssembler::finish() {
  OutputDelta d;
  if (stop_.matched()) return d;
  if (reasoning_phase_) d.reasoning = reasoning_dec_.finish();
  const std::string tail = content_dec_.finish();
  decoded_ += tail.size();
  d.content = stop_.push(tail);
  if (!stop_.matched()) d.content += stop_.flush();
  if (stop_.matched()) {
    const size_t cut = stop_.sent();
    size_t n = 0;
    while (n < pending_.size() && pending_[n].offset < cut) ++n;
    pending_.resize(n);
    pending_end_.resize(n);
  }
  release(d, 0, true);
  return d;
}

}  // namespace dsv4
