#include "runtime/serving/openai_response.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

namespace dsv4 {

using nlohmann::json;

namespace {

std::string random_hex(int n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string s(size_t(n), '0');
  for (char& c : s) c = digits[rng() & 15];
  return s;
}

// OpenAI writes -9999.0 for a token of probability zero; JSON has no -inf.
double finite_logprob(float lp) { return std::isfinite(lp) ? double(lp) : -9999.0; }

json token_bytes_json(const std::string& b) {
  json arr = json::array();
  for (unsigned char c : b) arr.push_back(int(c));
  return arr;
}

json chunk_base(const ResponseMeta& m) {
  return json{{"id", m.id},
              {"object", m.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion"},
              {"created", m.created},
              {"model", m.model},
              {"system_fingerprint", m.fingerprint}};
}

}  // namespace

ResponseMeta make_meta(const ApiRequest& r, const std::string& model, const std::string& fingerprint) {
  ResponseMeta m;
  m.endpoint = r.endpoint;
  m.id = (r.endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-") + random_hex(24);
  m.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  m.model = model;
  m.fingerprint = fingerprint;
  m.thinking = r.thinking;
  m.logprobs = r.logprobs;
  return m;
}

const char* openai_finish_reason(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length:
    case FinishReason::Context: return "length";
    default: return "abort";
  }
}

json error_json(const ApiError& e) {
  return json{{"error",
               {{"message", e.message},
                {"type", e.type},
                {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                {"code", e.code.empty() ? json(nullptr) : json(e.code)}}}};
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return json{{"prompt_tokens", prompt_tokens},
              {"completion_tokens", completion_tokens},
              {"total_tokens", prompt_tokens + completion_tokens}};
}

json logprobs_json(const ResponseMeta& m, const Tokenizer& tok, const std::vector<SentToken>& tokens) {
  if (m.endpoint == Endpoint::Chat) {
    json content = json::array();
    for (const SentToken& t : tokens) {
      const std::string& b = tok.token_bytes(t.id);
      json top = json::array();
      for (const TokenLogprob& a : t.top) {
        const std::string& ab = tok.token_bytes(a.id);
        top.push_back({{"token", utf8_lossy(ab)}, {"logprob", finite_logprob(a.logprob)}, {"bytes", token_bytes_json(ab)}});
      }
      content.push_back({{"token", utf8_lossy(b)},
                         {"logprob", finite_logprob(t.logprob)},
                         {"bytes", token_bytes_json(b)},
                         {"top_logprobs", std::move(top)}});
    }
    return json{{"content", std::move(content)}, {"refusal", nullptr}};
  }
  json toks = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const SentToken& t : tokens) {
    toks.push_back(utf8_lossy(tok.token_bytes(t.id)));
    lps.push_back(finite_logprob(t.logprob));
    json top = json::object();
    for (const TokenLogprob& a : t.top) top[utf8_lossy(tok.token_bytes(a.id))] = finite_logprob(a.logprob);
    tops.push_back(std::move(top));
    offs.push_back(t.offset);
  }
  return json{{"tokens", std::move(toks)}, {"token_logprobs", std::move(lps)}, {"top_logprobs", std::move(tops)},
              {"text_offset", std::move(offs)}};
}

json role_chunk(const ResponseMeta& m, bool include_usage) {
  json c = chunk_base(m);
  json delta = {{"role", "assistant"}, {"content", ""}};
  c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  if (include_usage) c["usage"] = nullptr;
  return c;
}

json delta_chunk(const ResponseMeta& m, const Tokenizer& tok, const OutputDelta& d, bool include_usage) {
  json c = chunk_base(m);
  const json lp = m.logprobs && !d.tokens.empty() ? logprobs_json(m, tok, d.tokens) : json(nullptr);
  if (m.endpoint == Endpoint::Chat) {
    json delta = json::object();
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty()) delta["content"] = d.content;
    c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"logprobs", lp}, {"finish_reason", nullptr}}});
  } else {
    c["choices"] = json::array({{{"index", 0}, {"text", d.content}, {"logprobs", lp}, {"finish_reason", nullptr}}});
  }
  if (include_usage) c["usage"] = nullptr;
  return c;
}

json finish_chunk(const ResponseMeta& m, FinishReason r, bool include_usage) {
  json c = chunk_base(m);
  if (m.endpoint == Endpoint::Chat)
    c["choices"] = json::array(
        {{{"index", 0}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", openai_finish_reason(r)}}});
  else
    c["choices"] =
        json::array({{{"index", 0}, {"text", ""}, {"logprobs", nullptr}, {"finish_reason", openai_finish_reason(r)}}});
  if (include_usage) c["usage"] = nullptr;
  return c;
}

json usage_chunk(const ResponseMeta& m, int64_t prompt_tokens, int64_t completion_tokens) {
  json c = chunk_base(m);
  c["choices"] = json::array();
  c["usage"] = usage_json(prompt_tokens, completion_tokens);
  return c;
}

std::string sse_event(const json& j) { return "data: " + dump_json(j) + "\n\n"; }

json full_response(const ResponseMeta& m, const Tokenizer& tok, const FullOutput& out) {
  json r = {{"id", m.id},
            {"object", m.endpoint == Endpoint::Chat ? "chat.completion" : "text_completion"},
            {"created", m.created},
            {"model", m.model},
            {"system_fingerprint", m.fingerprint}};
  const json lp = m.logprobs ? logprobs_json(m, tok, out.tokens) : json(nullptr);
  if (m.endpoint == Endpoint::Chat) {
    json msg = {{"role", "assistant"}, {"content", out.content}};
    if (m.thinking) msg["reasoning_content"] = out.reasoning;
    r["choices"] = json::array(
        {{{"index", 0}, {"message", msg}, {"logprobs", lp}, {"finish_reason", openai_finish_reason(out.finish)}}});
  } else {
    r["choices"] = json::array(
        {{{"index", 0}, {"text", out.content}, {"logprobs", lp}, {"finish_reason", openai_finish_reason(out.finish)}}});
  }
  r["usage"] = usage_json(out.prompt_tokens, out.completion_tokens);
  return r;
}

json models_json(const std::string& model, int64_t created, int64_t max_context) {
  json entry = {{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "dsv4"}};
  if (max_context > 0) entry["max_model_len"] = max_context;
  return json{{"object", "list"}, {"data", json::array({entry})}};
}

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace dsv4
