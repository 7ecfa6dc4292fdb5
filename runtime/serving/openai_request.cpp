#include "runtime/serving/openai_request.hpp"

#include <cmath>
#include <cstdio>
#include <random>

#include "plan/error.hpp"

namespace dsv4 {

using nlohmann::json;

ApiError::ApiError(int status_, std::string message_, std::string param_, std::string code_, std::string type_)
    : status(status_), message(std::move(message_)), param(std::move(param_)), code(std::move(code_)) {
  if (!type_.empty()) type = std::move(type_);
}

namespace {

// A present, non-null field (OpenAI treats an explicit null as "not given").
const json* field(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 40) + "..." : s;
}

[[noreturn]] void wrong_type(const std::string& name, const char* expected, const json& v) {
  throw ApiError(400, "'" + name + "' must be " + expected + ", got " + v.type_name() + " " + shown(v), name);
}

std::optional<bool> get_bool(const json& obj, const char* name) {
  const json* v = field(obj, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(name, "a boolean", *v);
  return v->get<bool>();
}

std::optional<double> get_number(const json& obj, const char* name) {
  const json* v = field(obj, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(name, "a number", *v);
  return v->get<double>();
}

// An integer; an integral float (5.0) counts, as pydantic's lax mode takes it.
int64_t as_int(const json& v, const std::string& name) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) throw ApiError(400, "'" + name + "' is out of range: " + shown(v), name);
    return int64_t(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
  }
  wrong_type(name, "an integer", v);
}

std::optional<int64_t> get_int(const json& obj, const char* name) {
  const json* v = field(obj, name);
  if (!v) return std::nullopt;
  return as_int(*v, name);
}

std::optional<std::string> get_string(const json& obj, const char* name) {
  const json* v = field(obj, name);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(name, "a string", *v);
  return v->get<std::string>();
}

[[noreturn]] void unsupported(const std::string& name, const std::string& what) {
  throw ApiError(400, "'" + name + "': " + what + " is not supported by this server", name, "unsupported_parameter");
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void check_range(double v, double lo, double hi, const char* name) {
  if (!(v >= lo && v <= hi))
    throw ApiError(400, std::string("'") + name + "' must be between " + num(lo) + " and " + num(hi) + ", got " + num(v), name);
}

int32_t checked_token(const json& v, const std::string& name, const PromptLimits& lim) {
  const int64_t id = as_int(v, name);
  if (id < 0 || id >= lim.vocab_size)
    throw ApiError(400, "'" + name + "': token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                            std::to_string(lim.vocab_size) + ")", name);
  return int32_t(id);
}

std::vector<int32_t> token_array(const json& arr, const std::string& name, const PromptLimits& lim) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) ids.push_back(checked_token(arr[i], name + "[" + std::to_string(i) + "]", lim));
  return ids;
}

// Messages in OpenAI's format, validated by the chat encoder (its errors name the message and field).
std::vector<ChatMessage> parse_messages(const json& body) {
  const json* msgs = field(body, "messages");
  if (!msgs) throw ApiError(400, "'messages' is required", "messages");
  if (!msgs->is_array()) wrong_type("messages", "an array", *msgs);
  if (msgs->empty()) throw ApiError(400, "'messages' must not be empty", "messages");
  std::vector<ChatMessage> out;
  try {
    out = chat_messages_from_json(nlohmann::ordered_json(*msgs));
  } catch (const Error& e) {
    // "chat message N: field 'F': ..." names the parameter messages[N].F.
    const std::string what = e.what();
    std::string param = "messages";
    if (size_t n = 0, f = 0; std::sscanf(what.c_str(), "chat message %zu: field '%zn", &n, &f) == 1 && f > 0) {
      const size_t end = what.find('\'', f);
      if (end != std::string::npos) param = "messages[" + std::to_string(n) + "]." + what.substr(f, end - f);
    }
    throw ApiError(400, what, param);
  }
  if (out.back().role == ChatRole::Assistant && !out.back().prefix)
    throw ApiError(400, "the last message is a finished assistant turn: end with a user or tool message, or mark the "
                        "assistant message \"prefix\": true to continue it",
                   "messages[" + std::to_string(out.size() - 1) + "]");
  return out;
}

// The official encoder's effort levels: "max" adds its paragraph in thinking mode; the others render alike.
ReasoningEffort parse_effort(const json& body) {
  const auto e = get_string(body, "reasoning_effort");
  return e && *e == "max" ? ReasoningEffort::Max : e && *e == "high" ? ReasoningEffort::High : ReasoningEffort::None;
}

// Thinking mode: chat_template_kwargs {"thinking"|"enable_thinking": bool} (vLLM / SGLang), DeepSeek's
// {"thinking": {"type": "enabled"|"disabled"}}, or reasoning_effort ("none" off, a level on).
bool parse_thinking(const json& body) {
  std::optional<bool> on;
  if (auto effort = get_string(body, "reasoning_effort")) {
    static const char* levels[] = {"minimal", "low", "medium", "high", "max"};
    if (*effort == "none") {
      on = false;
    } else {
      bool known = false;
      for (const char* l : levels) known = known || *effort == l;
      if (!known)
        throw ApiError(400, "'reasoning_effort' must be one of none, minimal, low, medium, high, max; got '" + *effort + "'",
                       "reasoning_effort");
      on = true;
    }
  }
  if (const json* t = field(body, "thinking")) {
    if (!t->is_object()) wrong_type("thinking", "an object {\"type\": \"enabled\"|\"disabled\"}", *t);
    const auto type = get_string(*t, "type");
    if (!type || (*type != "enabled" && *type != "disabled"))
      throw ApiError(400, "'thinking.type' must be 'enabled' or 'disabled'", "thinking.type");
    on = *type == "enabled";
  }
  if (const json* kw = field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) wrong_type("chat_template_kwargs", "an object", *kw);
    if (auto t = get_bool(*kw, "thinking")) on = *t;
    if (auto t = get_bool(*kw, "enable_thinking")) on = *t;
  }
  return on.value_or(false);
}

std::vector<std::string> parse_stop(const json& body) {
  std::vector<std::string> stops;
  const json* s = field(body, "stop");
  if (!s) return stops;
  if (s->is_string()) {
    stops.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    if (s->size() > 4) throw ApiError(400, "'stop' takes at most 4 strings, got " + std::to_string(s->size()), "stop");
    for (size_t i = 0; i < s->size(); ++i) {
      if (!(*s)[i].is_string()) wrong_type("stop[" + std::to_string(i) + "]", "a string", (*s)[i]);
      stops.push_back((*s)[i].get<std::string>());
    }
  } else {
    wrong_type("stop", "a string or an array of strings", *s);
  }
  std::erase_if(stops, [](const std::string& x) { return x.empty(); });  // an empty stop string matches nothing
  return stops;
}

// Fields shared by both endpoints: sampling, stop, stream, n, and the unsupported ones.
void parse_common(const json& body, const PromptLimits& lim, ApiRequest& r) {
  if (auto m = get_string(body, "model")) r.model = *m;
  if (auto n = get_int(body, "n"); n && *n != 1)
    throw ApiError(400, "'n' must be 1 (one choice per request), got " + std::to_string(*n), "n");
  if (auto t = get_number(body, "temperature")) {
    check_range(*t, 0, 2, "temperature");
    r.sampling.temperature = *t;
  }
  if (auto p = get_number(body, "top_p")) {
    if (!(*p > 0 && *p <= 1)) throw ApiError(400, "'top_p' must be in (0, 1], got " + num(*p), "top_p");
    r.sampling.top_p = *p;
  }
  if (auto k = get_int(body, "top_k")) {
    if (*k < -1 || *k > INT32_MAX) throw ApiError(400, "'top_k' must be -1, 0 (off) or a positive count, got " + std::to_string(*k), "top_k");
    r.sampling.top_k = int32_t(std::max<int64_t>(*k, 0));
  }
  if (const json* s = field(body, "seed")) {
    if (s->is_number_unsigned()) r.sampling.seed = s->get<uint64_t>();
    else r.sampling.seed = uint64_t(as_int(*s, "seed"));
  } else {
    // No seed: a fresh noise stream per request, as OpenAI samples without one.
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    r.sampling.seed = rng();
  }
  for (const char* pen : {"presence_penalty", "frequency_penalty"})
    if (auto v = get_number(body, pen)) {
      check_range(*v, -2, 2, pen);
      if (*v != 0) unsupported(pen, "a non-zero penalty");
    }
  if (auto v = get_number(body, "repetition_penalty"); v && *v != 1) unsupported("repetition_penalty", "a penalty other than 1");
  if (const json* lb = field(body, "logit_bias")) {
    if (!lb->is_object()) wrong_type("logit_bias", "an object", *lb);
    if (!lb->empty()) unsupported("logit_bias", "logit bias");
  }
  if (const json* tools = field(body, "tools")) {
    if (!tools->is_array()) wrong_type("tools", "an array", *tools);
    if (!tools->empty()) unsupported("tools", "tool calling");
  }
  if (const json* fns = field(body, "functions")) {
    if (!fns->is_array()) wrong_type("functions", "an array", *fns);
    if (!fns->empty()) unsupported("functions", "function calling");
  }
  if (const json* rf = field(body, "response_format")) {
    if (!rf->is_object()) wrong_type("response_format", "an object", *rf);
    const auto type = get_string(*rf, "type");
    if (type && *type != "text") unsupported("response_format.type", "response format '" + *type + "'");
  }
  r.stop = parse_stop(body);
  if (const json* ids = field(body, "stop_token_ids")) {
    if (!ids->is_array()) wrong_type("stop_token_ids", "an array of token ids", *ids);
    r.stop_token_ids = token_array(*ids, "stop_token_ids", lim);
  }
  r.stream = get_bool(body, "stream").value_or(false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", "an object", *so);
    if (!r.stream) throw ApiError(400, "'stream_options' is only allowed with \"stream\": true", "stream_options");
    r.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
}

// max_tokens against the context: the client's value must fit; absent, the default fills the context
// (chat) or is OpenAI's 16 (completions), cut to what fits.
void resolve_max_tokens(std::optional<int64_t> asked, const char* name, const PromptLimits& lim, ApiRequest& r) {
  const int64_t p = int64_t(r.prompt.size());
  if (asked && *asked < 1) throw ApiError(400, std::string("'") + name + "' must be at least 1, got " + std::to_string(*asked), name);
  if (lim.max_context > 0) {
    if (p >= lim.max_context)
      throw ApiError(400, "This model's maximum context length is " + std::to_string(lim.max_context) +
                              " tokens. However, your prompt has " + std::to_string(p) +
                              " tokens, which leaves no room for a completion.",
                     r.endpoint == Endpoint::Chat ? "messages" : "prompt", "context_length_exceeded");
    if (asked && *asked > lim.max_context - p)  // not p + asked: a client may send 2^63 - 1
      throw ApiError(400, "This model's maximum context length is " + std::to_string(lim.max_context) +
                              " tokens. However, you requested " + std::to_string(*asked > INT64_MAX - p ? INT64_MAX : p + *asked) + " tokens (" +
                              std::to_string(p) + " in the prompt, " + std::to_string(*asked) +
                              " in the completion). Please reduce the prompt or the completion length.",
                     name, "context_length_exceeded");
  }
  if (asked) {
    r.max_tokens = *asked;
  } else {
    const int64_t room = lim.max_context > 0 ? lim.max_context - p : INT32_MAX;
    r.max_tokens = r.endpoint == Endpoint::Chat ? room : std::min<int64_t>(16, room);
  }
}

}  // namespace

// Message content is encoded literally (render_messages' ranges): text that spells <｜User｜> stays text.
std::vector<int32_t> encode_chat_prompt(const Tokenizer& tok, const std::vector<ChatMessage>& messages, bool thinking,
                                        ReasoningEffort effort) {
  ChatOptions o;
  o.mode = thinking ? ThinkingMode::Thinking : ThinkingMode::Chat;
  o.reasoning_effort = effort;
  try {
    return tokenize_chat(tok, messages, o);
  } catch (const Error& e) {
    throw ApiError(400, std::string("'messages': ") + e.what(), "messages");
  }
}

json parse_json_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number beyond double (1e400)
    throw ApiError(400, std::string("malformed JSON body: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, std::string("the request body must be a JSON object, got ") + j.type_name());
  return j;
}

ApiRequest parse_chat_request(const json& body, const Tokenizer& tok, const PromptLimits& lim) {
  ApiRequest r;
  r.endpoint = Endpoint::Chat;
  parse_common(body, lim, r);
  r.thinking = parse_thinking(body);
  const std::vector<ChatMessage> messages = parse_messages(body);
  if (auto lp = get_bool(body, "logprobs")) r.logprobs = *lp;
  if (auto k = get_int(body, "top_logprobs")) {
    if (*k < 0 || *k > 20) throw ApiError(400, "'top_logprobs' must be between 0 and 20, got " + std::to_string(*k), "top_logprobs");
    if (!r.logprobs) throw ApiError(400, "'top_logprobs' needs \"logprobs\": true", "top_logprobs");
    r.sampling.top_logprobs = int32_t(*k);
  } else if (r.logprobs) {
    r.sampling.top_logprobs = 0;
  }
  r.prompt = encode_chat_prompt(tok, messages, r.thinking, parse_effort(body));
  auto mt = get_int(body, "max_completion_tokens");
  const char* mt_name = "max_completion_tokens";
  if (!mt) {
    mt = get_int(body, "max_tokens");
    mt_name = "max_tokens";
  }
  resolve_max_tokens(mt, mt_name, lim, r);
  return r;
}

ApiRequest parse_completion_request(const json& body, const Tokenizer& tok, const PromptLimits& lim) {
  ApiRequest r;
  r.endpoint = Endpoint::Completion;
  parse_common(body, lim, r);
  if (auto e = get_bool(body, "echo"); e && *e) unsupported("echo", "echoing the prompt");
  if (auto b = get_int(body, "best_of"); b && *b != 1) unsupported("best_of", "best_of other than 1");
  if (auto s = get_string(body, "suffix"); s && !s->empty()) unsupported("suffix", "a suffix (fill-in-the-middle)");
  if (auto k = get_int(body, "logprobs")) {
    if (*k < 0 || *k > 20) throw ApiError(400, "'logprobs' must be between 0 and 20, got " + std::to_string(*k), "logprobs");
    r.logprobs = true;
    r.sampling.top_logprobs = int32_t(*k);
  }
  const json* p = field(body, "prompt");
  if (!p) throw ApiError(400, "'prompt' is required", "prompt");
  // A string, an array of token ids, or a batch of one of either (batches of more are not supported).
  const json* one = p;
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    if (p->size() != 1) unsupported("prompt", "a batch of " + std::to_string(p->size()) + " prompts (send one per request)");
    one = &p->front();
  }
  if (one->is_string()) {
    r.prompt = tok.encode(one->get<std::string>());
  } else if (one->is_array()) {
    r.prompt = token_array(*one, "prompt", lim);
  } else {
    wrong_type("prompt", "a string or an array of token ids", *p);
  }
  if (r.prompt.empty()) throw ApiError(400, "'prompt' is empty", "prompt");
  resolve_max_tokens(get_int(body, "max_tokens"), "max_tokens", lim, r);
  return r;
}

std::vector<int32_t> parse_tokenize_request(const json& body, const Tokenizer& tok) {
  if (field(body, "messages"))
    return encode_chat_prompt(tok, parse_messages(body), parse_thinking(body), parse_effort(body));
  const auto prompt = get_string(body, "prompt");
  if (!prompt) throw ApiError(400, "'prompt' (a string) or 'messages' is required", "prompt");
  return tok.encode(*prompt);
}

std::vector<int32_t> parse_detokenize_request(const json& body, const PromptLimits& lim) {
  const json* t = field(body, "tokens");
  if (!t) throw ApiError(400, "'tokens' is required", "tokens");
  if (!t->is_array()) wrong_type("tokens", "an array of token ids", *t);
  return token_array(*t, "tokens", lim);
}

GenerationRequest to_generation_request(const ApiRequest& r, int32_t eos_id) {
  GenerationRequest g;
  g.prompt = r.prompt;
  g.max_new_tokens = r.max_tokens;
  g.sampling = r.sampling;
  g.stop_tokens.push_back(eos_id);
  for (int32_t id : r.stop_token_ids)
    if (id != eos_id) g.stop_tokens.push_back(id);
  return g;
}

}  // namespace dsv4
