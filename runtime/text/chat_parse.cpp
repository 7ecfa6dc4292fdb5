// A completion back into an assistant message, as the official parse_message_from_completion_text:
// [reasoning "</think>"] content ["\n\n<｜DSML｜tool_calls>" ... "</｜DSML｜tool_calls>"] EOS, nothing after.
// The text is scanned left to right for the earliest of a few stop strings; each piece between stops
// must have exactly the official shape.
#include <optional>

#include "plan/error.hpp"
#include "runtime/text/chat.hpp"

namespace dsv4 {
namespace {

using namespace chat;

[[noreturn]] void bad(const std::string& what) { throw Error("completion: " + what); }

// The earliest of `stops` from `pos`: the text before it, and the index just after it (no stop: the
// rest of the text, pos = end, stop = nullopt).
struct Piece {
  std::string_view text;
  std::optional<std::string_view> stop;
};
Piece read_until(std::string_view s, size_t& pos, std::initializer_list<std::string_view> stops) {
  size_t best = std::string_view::npos;
  std::optional<std::string_view> which;
  for (std::string_view st : stops) {
    const size_t p = s.find(st, pos);
    if (p != std::string_view::npos && p < best) best = p, which = st;
  }
  Piece r;
  if (!which) {
    r.text = s.substr(pos);
    pos = s.size();
    return r;
  }
  r.text = s.substr(pos, best - pos);
  r.stop = which;
  pos = best + which->size();
  return r;
}

// Python's `$` (no MULTILINE) matches at the end or just before a final "\n": the official patterns
// end with it, so a piece may carry one extra trailing newline.
bool ends_with_at_dollar(std::string_view s, std::string_view tail, size_t& body_len) {
  for (std::string_view t : {s, s.ends_with('\n') ? s.substr(0, s.size() - 1) : std::string_view{}}) {
    if (t.data() && t.ends_with(tail)) {
      body_len = t.size() - tail.size();
      return true;
    }
  }
  return false;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string json_string(std::string_view s) { return python_json_dumps(nlohmann::ordered_json(std::string(s))); }

// parse_tool_calls: from just after "<｜DSML｜tool_calls" to just after "</｜DSML｜tool_calls>" (or the end).
std::vector<ChatToolCall> parse_tool_calls(std::string_view s, size_t& pos, std::optional<std::string_view>& stop) {
  const std::string d = kDsml;
  const std::string invoke = "<" + d + "invoke", invoke_end = "</" + d + "invoke", param = "<" + d + "parameter",
                    param_end = "/" + d + "parameter", block_end = "</" + d + "tool_calls>";
  std::vector<ChatToolCall> calls;
  while (pos < s.size()) {
    Piece p = read_until(s, pos, {invoke, block_end});
    if (p.text != ">\n") bad("tool call format: expected '>\\n' but got '" + std::string(p.text) + "'");
    stop = p.stop;
    if (stop == block_end) break;
    if (!stop) bad("tool calls block ends without " + block_end);

    // ` name="NAME">\n` up to the first parameter or the end of the invoke.
    p = read_until(s, pos, {param, invoke_end});
    stop = p.stop;
    size_t i = 0, body = 0;
    while (i < p.text.size() && is_space(p.text[i])) ++i;
    const std::string_view head = p.text.substr(i);
    if (!head.starts_with("name=\"") || !ends_with_at_dollar(head, "\">\n", body) || body < 6)
      bad("tool name format: '" + std::string(p.text) + "'");
    ChatToolCall call;
    call.name = std::string(head.substr(6, body - 6));

    // Each ` name="K" string="true|false">VALUE<` up to "/｜DSML｜parameter"; the name ends at the first
    // `" string="true">` or `" string="false">` (the official pattern's lazy match).
    std::vector<std::string> keys;
    std::string args = "{";
    while (stop == param) {
      p = read_until(s, pos, {param_end});
      const std::string_view c = p.text;
      size_t vlen = 0;
      if (!c.starts_with(" name=\"") || !ends_with_at_dollar(c, "<", vlen))
        bad("parameter format: '" + std::string(c) + "'");
      const size_t t = c.find("\" string=\"true\">", 7), f = c.find("\" string=\"false\">", 7);
      const size_t k_end = std::min(t, f);
      const bool is_str = k_end == t;
      const size_t v_begin = k_end == std::string_view::npos ? 0 : k_end + (is_str ? 16 : 17);
      if (k_end == std::string_view::npos || v_begin > vlen) bad("parameter format: '" + std::string(c) + "'");
      const std::string key(c.substr(7, k_end - 7));
      const std::string_view value = c.substr(v_begin, vlen - v_begin);
      for (const std::string& k : keys)
        if (k == key) bad("duplicate parameter name: '" + key + "'");
      keys.push_back(key);
      // decode_dsml_to_arguments: string values are JSON-quoted, the others are taken as JSON text as is.
      if (keys.size() > 1) args += ", ";
      args += json_string(key) + ": " + (is_str ? json_string(value) : std::string(value));

      p = read_until(s, pos, {param, invoke_end});
      stop = p.stop;
      if (p.text != ">\n") bad("parameter format: expected '>\\n' but got '" + std::string(p.text) + "'");
    }
    call.arguments = args + "}";
    calls.push_back(std::move(call));
  }
  return calls;
}

}  // namespace

ParsedCompletion parse_completion(std::string_view text, ThinkingMode mode) {
  const std::string calls_start = std::string("\n\n<") + kDsml + "tool_calls";
  ParsedCompletion out;
  size_t pos = 0;
  if (mode == ThinkingMode::Thinking) {
    const Piece p = read_until(text, pos, {kThinkEnd, calls_start});
    if (p.stop != kThinkEnd) bad("thinking mode, but no </think> ends the reasoning");
    out.reasoning_content = p.text;
  }
  Piece p = read_until(text, pos, {kEos, calls_start});
  out.content = p.text;
  std::optional<std::string_view> stop = p.stop;
  if (stop == calls_start) {
    out.tool_calls = parse_tool_calls(text, pos, stop);
    p = read_until(text, pos, {kEos});
    if (!p.text.empty()) bad("unexpected text after the tool calls: '" + std::string(p.text) + "'");
    stop = p.stop;
  } else if (stop != kEos) {
    bad("no end-of-sentence token");
  }
  if (pos != text.size() || (stop && stop != kEos)) bad("unexpected text after the end-of-sentence token");
  for (const char* tok : {kBos, kEos, kThinkBegin, kThinkEnd, kDsml}) {
    if (out.content.find(tok) != std::string::npos) bad(std::string("special token '") + tok + "' in the content");
    if (out.reasoning_content.find(tok) != std::string::npos)
      bad(std::string("special token '") + tok + "' in the reasoning");
  }
  return out;
}

}  // namespace dsv4
