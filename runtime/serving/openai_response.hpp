// OpenAI-format response bodies: chat.completion / text_completion objects, their streaming chunks
// (server-sent events), usage, logprobs in both endpoints' shapes, error bodies and the model list.
// Pure formatting: no HTTP, no backend.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/serving/openai_output.hpp"
#include "runtime/serving/openai_request.hpp"

namespace dsv4 {

// Fields every object and chunk of one response repeats.
struct ResponseMeta {
  Endpoint endpoint = Endpoint::Chat;
  std::string id;           // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;      // unix seconds
  std::string model;
  std::string fingerprint;  // system_fingerprint
  bool thinking = false;    // chat: the message carries reasoning_content
  bool logprobs = false;
};

ResponseMeta make_meta(const ApiRequest& r, const std::string& model, const std::string& fingerprint);

// "stop" / "length"; a request the server cancelled or rejected has no OpenAI reason: "abort".
const char* openai_finish_reason(FinishReason r);

nlohmann::json error_json(const ApiError& e);
nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);
nlohmann::json logprobs_json(const ResponseMeta& m, const Tokenizer& tok, const std::vector<SentToken>& tokens);

// Streaming. The first chat chunk carries the role; each delta chunk the new text (and its tokens'
// logprobs); the last the finish reason; with include_usage every chunk has "usage": null and a
// final chunk with empty choices carries the usage.
nlohmann::json role_chunk(const ResponseMeta& m, bool include_usage);
nlohmann::json delta_chunk(const ResponseMeta& m, const Tokenizer& tok, const OutputDelta& d, bool include_usage);
nlohmann::json finish_chunk(const ResponseMeta& m, FinishReason r, bool include_usage);
nlohmann::json usage_chunk(const ResponseMeta& m, int64_t prompt_tokens, int64_t completion_tokens);
std::string sse_event(const nlohmann::json& j);  // "data: {...}\n\n"
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

// Non-streaming: the whole answer.
struct FullOutput {
  std::string reasoning, content;
  std::vector<SentToken> tokens;
  FinishReason finish = FinishReason::None;
  int64_t prompt_tokens = 0, completion_tokens = 0;
};
nlohmann::json full_response(const ResponseMeta& m, const Tokenizer& tok, const FullOutput& out);

nlohmann::json models_json(const std::string& model, int64_t created, int64_t max_context);

// Serialization that never throws on bad UTF-8 (replaced with U+FFFD).
std::string dump_json(const nlohmann::json& j);

}  // namespace dsv4
