// OpenAI-format request bodies (POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize)
// to validated, tokenized requests. Pure: no HTTP, no backend; every rejection is an ApiError whose
// message names the field, what was expected and what came. Unknown fields are ignored (as OpenAI
// does); known fields of the wrong type, out of range, or asking for something not supported are 400.
#pragma once
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/serving/request.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

namespace dsv4 {

// An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::exception {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending field ("" -> null)
  std::string code;   // machine-readable code ("" -> null)
  ApiError(int status, std::string message, std::string param = "", std::string code = "",
           std::string type = "");
  const char* what() const noexcept override { return message.c_str(); }
};

enum class Endpoint { Chat, Completion };

// What the tokenizer and the deployment allow; checked while parsing.
struct PromptLimits {
  int64_t vocab_size = 0;   // token ids must lie in [0, vocab_size)
  int64_t max_context = 0;  // prompt + max_tokens must fit (0: not known, not checked here)
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;                     // as the client named it ("" if absent)
  std::vector<int32_t> prompt;           // encoded prompt, 1 <= size
  int64_t max_tokens = 0;                // resolved: the client's, else up to max_context
  SamplingParams sampling;               // temperature, top_p, top_k, seed, top_logprobs
  std::vector<std::string> stop;         // stop strings, matched on the decoded answer text
  std::vector<int32_t> stop_token_ids;   // extra stop tokens (vLLM extension), besides EOS
  bool stream = false;
  bool include_usage = false;            // stream_options.include_usage
  bool logprobs = false;                 // sampling.top_logprobs >= 0
  bool thinking = false;                 // chat only: reason first, answer after </think>
};

// Chat messages to prompt ids. The one place that calls the chat encoder (its API is changing to take
// OpenAI-format messages; swap it here).
std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const std::vector<ChatMessage>& messages, bool thinking,
                                        ReasoningEffort effort = ReasoningEffort::None);

// The parsers below throw ApiError on anything malformed; `body` is the parsed JSON document.
ApiRequest parse_chat_request(const nlohmann::json& body, const Tokenizer& tok, const PromptLimits& lim);
ApiRequest parse_completion_request(const nlohmann::json& body, const Tokenizer& tok, const PromptLimits& lim);
// POST /tokenize: {"prompt": text} or {"messages": [...], "chat_template_kwargs"?} -> ids.
std::vector<int32_t> parse_tokenize_request(const nlohmann::json& body, const Tokenizer& tok);
// POST /detokenize: {"tokens": [ids]} -> ids, each checked against the vocabulary.
std::vector<int32_t> parse_detokenize_request(const nlohmann::json& body, const PromptLimits& lim);

// Body text to JSON; a syntax error or a non-object is a 400 naming the position.
nlohmann::json parse_json_body(const std::string& body);

// The generation request for the backend: EOS (and the client's stop_token_ids) end it.
GenerationRequest to_generation_request(const ApiRequest& r, int32_t eos_id);

}  // namespace dsv4
