// OpenAI-format JSON messages -> ChatMessage, with every field checked; and Python's json.dumps, which
// the official encoder uses to render tool schemas, response formats and non-string tool arguments.
#include <charconv>
#include <cmath>
#include <cstdio>

#include "plan/error.hpp"
#include "runtime/text/chat.hpp"

namespace dsv4 {
namespace {

using ojson = nlohmann::ordered_json;

void dump_string(std::string_view s, std::string& out) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;  // ensure_ascii=False: UTF-8 passes through
        }
    }
  }
  out += '"';
}

// Python's float repr: the shortest digits that round-trip; positional when the decimal exponent is in
// [-4, 16), else d.ddde±XX; a positional integral value keeps ".0".
void dump_float(double v, std::string& out) {
  if (std::isnan(v)) { out += "NaN"; return; }
  if (std::isinf(v)) { out += v < 0 ? "-Infinity" : "Infinity"; return; }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  const std::string_view sci(buf, size_t(r.ptr - buf));  // [-]d[.ddd]e±XX
  const size_t e_pos = sci.find('e');
  const bool neg = sci[0] == '-';
  std::string digits;
  for (char c : sci.substr(neg ? 1 : 0, e_pos - (neg ? 1 : 0)))
    if (c != '.') digits += c;
  int exp = 0;
  std::from_chars(sci.data() + e_pos + (sci[e_pos + 1] == '+' ? 2 : 1), sci.data() + sci.size(), exp);
  if (neg) out += '-';
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out += "0." + std::string(size_t(-exp - 1), '0') + digits;
    } else if (size_t(exp) + 1 >= digits.size()) {
      out += digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += e;
  }
}

void dump(const ojson& v, std::string& out) {
  switch (v.type()) {
    case ojson::value_t::null: out += "null"; break;
    case ojson::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case ojson::value_t::number_integer: out += std::to_string(v.get<int64_t>()); break;
    case ojson::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); break;
    case ojson::value_t::number_float: dump_float(v.get<double>(), out); break;
    case ojson::value_t::string: dump_string(v.get_ref<const std::string&>(), out); break;
    case ojson::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        dump(e, out);
      }
      out += ']';
      break;
    }
    case ojson::value_t::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        dump_string(k, out);
        out += ": ";
        dump(e, out);
      }
      out += '}';
      break;
    }
    default: throw Error("python_json_dumps: binary or discarded JSON value");
  }
}

// Field access with located errors: "chat message 2: field 'tool_calls[0].function.name': expected a
// string, got number".
struct Where {
  std::string who;  // "chat message 3", "request"
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw Error(who + ": field '" + field + "': " + what);
  }
  [[noreturn]] void wrong_type(const std::string& field, const char* expected, const ojson& got) const {
    fail(field, std::string("expected ") + expected + ", got " + got.type_name());
  }
  std::string string(const ojson& m, const std::string& field, const std::string& key) const {
    if (!m.contains(key) || m[key].is_null()) return "";
    if (!m[key].is_string()) wrong_type(field, "a string", m[key]);
    return m[key].get<std::string>();
  }
};

// content: a string, null, or an array of text parts ({"type":"text","text":...}; a bare string counts
// as a text part). Tool results render other part types as "[Unsupported <type>]" as the official
// encoder does; other roles reject them.
std::string content_text(const ojson& m, const Where& w, bool tool_result) {
  if (!m.contains("content") || m["content"].is_null()) return "";
  const ojson& c = m["content"];
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) w.wrong_type("content", "a string, null or an array of text parts", c);
  std::string out;
  for (size_t j = 0; j < c.size(); ++j) {
    const std::string f = "content[" + std::to_string(j) + "]";
    const ojson& p = c[j];
    std::string text;
    if (p.is_string()) {
      text = p.get<std::string>();
    } else if (p.is_object()) {
      const std::string type = w.string(p, f + ".type", "type");
      if (type == "text") {
        text = w.string(p, f + ".text", "text");
      } else if (tool_result) {
        text = "[Unsupported " + type + "]";
      } else {
        w.fail(f + ".type", "'" + type + "' parts are not supported (text only)");
      }
    } else {
      w.wrong_type(f, "a text part object", p);
    }
    if (j) out += "\n\n";
    out += text;
  }
  return out;
}

std::vector<std::string> tool_definitions(const ojson& tools, const std::string& field, const Where& w) {
  if (!tools.is_array()) w.wrong_type(field, "an array of {\"type\":\"function\",\"function\":{...}}", tools);
  std::vector<std::string> out;
  for (size_t j = 0; j < tools.size(); ++j) {
    const std::string f = field + "[" + std::to_string(j) + "]";
    if (!tools[j].is_object()) w.wrong_type(f, "an object", tools[j]);
    if (!tools[j].contains("function") || !tools[j]["function"].is_object())
      w.fail(f + ".function", "expected an object (the function definition)");
    const ojson& fn = tools[j]["function"];
    if (!fn.contains("name") || !fn["name"].is_string()) w.fail(f + ".function.name", "expected a string");
    out.push_back(python_json_dumps(fn));
  }
  return out;
}

ChatToolCall tool_call(const ojson& tc, const std::string& f, const Where& w) {
  if (!tc.is_object()) w.wrong_type(f, "an object", tc);
  if (!tc.contains("function") || !tc["function"].is_object()) w.fail(f + ".function", "expected an object");
  const ojson& fn = tc["function"];
  ChatToolCall c;
  // The official encoder takes the id from the call, else from its function object.
  c.id = w.string(tc, f + ".id", "id");
  if (c.id.empty()) c.id = w.string(fn, f + ".function.id", "id");
  if (!fn.contains("name") || !fn["name"].is_string()) w.fail(f + ".function.name", "expected a string");
  c.name = fn["name"].get<std::string>();
  if (!fn.contains("arguments") || fn["arguments"].is_null()) {
    c.arguments = "{}";
  } else if (fn["arguments"].is_string()) {
    c.arguments = fn["arguments"].get<std::string>();
  } else if (fn["arguments"].is_object()) {  // some clients send the object itself
    c.arguments = python_json_dumps(fn["arguments"]);
  } else {
    w.wrong_type(f + ".function.arguments", "a JSON object as a string", fn["arguments"]);
  }
  return c;
}

bool flag(const ojson& m, const std::string& key, const Where& w) {
  if (!m.contains(key) || m[key].is_null()) return false;
  if (!m[key].is_boolean()) w.wrong_type(key, "true or false", m[key]);
  return m[key].get<bool>();
}

ChatRole parse_role(const ojson& m, const Where& w) {
  if (!m.contains("role")) w.fail("role", "missing");
  if (!m["role"].is_string()) w.wrong_type("role", "a string", m["role"]);
  const std::string r = m["role"].get<std::string>();
  if (r == "system") return ChatRole::System;
  if (r == "developer") return ChatRole::Developer;
  if (r == "user") return ChatRole::User;
  if (r == "assistant") return ChatRole::Assistant;
  if (r == "tool") return ChatRole::Tool;
  if (r == "latest_reminder") return ChatRole::LatestReminder;
  w.fail("role", "'" + r + "' is not one of system, developer, user, assistant, tool, latest_reminder");
}

const char* role_name(ChatRole r) {
  switch (r) {
    case ChatRole::System: return "system";
    case ChatRole::Developer: return "developer";
    case ChatRole::User: return "user";
    case ChatRole::Assistant: return "assistant";
    case ChatRole::Tool: return "tool";
    case ChatRole::LatestReminder: return "latest_reminder";
  }
  return "?";
}

}  // namespace

std::string python_json_dumps(const nlohmann::ordered_json& value) {
  std::string out;
  dump(value, out);
  return out;
}

std::vector<ChatMessage> chat_messages_from_json(const nlohmann::ordered_json& messages) {
  if (!messages.is_array()) throw Error(std::string("chat messages: expected an array, got ") + messages.type_name());
  std::vector<ChatMessage> out;
  out.reserve(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) {
    const Where w{"chat message " + std::to_string(i)};
    const ojson& m = messages[i];
    if (!m.is_object()) throw Error("chat message " + std::to_string(i) + ": expected an object, got " + m.type_name());
    ChatMessage c;
    c.role = parse_role(m, w);
    // Fields that only one role renders are rejected elsewhere rather than silently ignored.
    const auto only_for = [&](const char* key, bool allowed, const char* roles) {
      if (m.contains(key) && !m[key].is_null() && !allowed)
        w.fail(key, std::string("not allowed on a ") + role_name(c.role) + " message (only " + roles + ")");
    };
    const bool sys_dev = c.role == ChatRole::System || c.role == ChatRole::Developer;
    const bool asst = c.role == ChatRole::Assistant;
    only_for("tools", sys_dev, "system or developer; request-level tools go onto the system message");
    only_for("response_format", sys_dev, "system or developer");
    only_for("reasoning_content", asst, "assistant");
    only_for("tool_calls", asst, "assistant");
    only_for("prefix", asst, "assistant");
    only_for("wo_eos", asst, "assistant");
    only_for("task", c.role == ChatRole::User, "user");
    only_for("tool_call_id", c.role == ChatRole::Tool, "tool");
    if (m.contains("name") && !m["name"].is_null() && !m["name"].is_string()) w.wrong_type("name", "a string", m["name"]);

    c.content = content_text(m, w, c.role == ChatRole::Tool);
    c.reasoning_content = w.string(m, "reasoning_content", "reasoning_content");
    c.tool_call_id = w.string(m, "tool_call_id", "tool_call_id");
    c.task = w.string(m, "task", "task");
    if (!c.task.empty() && c.task != "action" && c.task != "query" && c.task != "authority" && c.task != "domain" &&
        c.task != "title" && c.task != "read_url")
      w.fail("task", "'" + c.task + "' is not one of action, query, authority, domain, title, read_url");
    c.prefix = flag(m, "prefix", w) || flag(m, "wo_eos", w);
    if (m.contains("tools") && !m["tools"].is_null()) c.tools = tool_definitions(m["tools"], "tools", w);
    if (m.contains("response_format") && !m["response_format"].is_null()) {
      const ojson& rf = m["response_format"];
      // Python's truthiness: an empty object or string adds nothing.
      if (!rf.empty() && !(rf.is_string() && rf.get_ref<const std::string&>().empty()))
        c.response_format = python_json_dumps(rf);
    }
    if (m.contains("tool_calls") && !m["tool_calls"].is_null()) {
      const ojson& tcs = m["tool_calls"];
      if (!tcs.is_array()) w.wrong_type("tool_calls", "an array", tcs);
      for (size_t j = 0; j < tcs.size(); ++j)
        c.tool_calls.push_back(tool_call(tcs[j], "tool_calls[" + std::to_string(j) + "]", w));
    }
    if (c.role == ChatRole::Developer && c.content.empty())
      w.fail("content", "a developer message needs a non-empty content");
    out.push_back(std::move(c));
  }
  return out;
}

void attach_tools(std::vector<ChatMessage>& messages, const nlohmann::ordered_json& tools) {
  if (tools.is_null() || tools.empty()) return;
  const std::vector<std::string> defs = tool_definitions(tools, "tools", Where{"request"});
  if (messages.empty() || (messages[0].role != ChatRole::System && messages[0].role != ChatRole::Developer)) {
    ChatMessage sys;
    sys.role = ChatRole::System;
    messages.insert(messages.begin(), std::move(sys));
  }
  messages[0].tools.insert(messages[0].tools.end(), defs.begin(), defs.end());
}

nlohmann::ordered_json to_json(const ParsedCompletion& c) {
  ojson calls = ojson::array();
  for (const ChatToolCall& t : c.tool_calls)
    calls.push_back({{"type", "function"}, {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
  return {{"role", "assistant"}, {"content", c.content}, {"reasoning_content", c.reasoning_content}, {"tool_calls", calls}};
}

}  // namespace dsv4
