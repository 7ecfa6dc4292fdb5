// The V4 prompt encoder: messages -> merged turns (tool results folded into user turns, consecutive user
// messages merged) -> tool results ordered as their calls -> earlier reasoning dropped -> each turn
// rendered, with the "<｜Assistant｜>" + think token transition after the turn the model answers.
// Each step is one function named after its counterpart in the official encoding_dsv4.py.
#include <algorithm>
#include <unordered_map>

#include "plan/error.hpp"
#include "runtime/text/chat.hpp"

#include "runtime/text/tokenizer.hpp"

namespace dsv4 {
namespace {

using namespace chat;

// The prompt texts of the official encoder, verbatim: the model was trained on them.
constexpr const char* kReasoningEffortMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the root "
    "cause, rigorously stress-testing your logic against all potential paths, edge cases, and adversarial "
    "scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
    "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";

constexpr const char* kResponseFormatHead =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

std::string tools_section(const std::vector<std::string>& schemas) {
  const std::string d = kDsml;
  std::string s =
      "## Tools\n\n"
      "You have access to a set of tools to help answer the user's question. You can invoke tools by writing a \"<" +
      d + "tool_calls>\" block like the following:\n\n<" + d + "tool_calls>\n<" + d + "invoke name=\"$TOOL_NAME\">\n<" + d +
      "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</" + d + "parameter>\n...\n</" + d +
      "invoke>\n<" + d + "invoke name=\"$TOOL_NAME2\">\n...\n</" + d + "invoke>\n</" + d + "tool_calls>\n\n" +
      "String parameters should be specified as is and set `string=\"true\"`. For all other types (numbers, "
      "booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
      "If thinking_mode is enabled (triggered by " + kThinkBegin + "), you MUST output your complete reasoning "
      "inside " + kThinkBegin + "..." + kThinkEnd + " BEFORE any tool calls or final response.\n\n"
      "Otherwise, output directly after " + kThinkEnd + " with tool calls or final response.\n\n"
      "### Available Tool Schemas\n\n";
  for (size_t i = 0; i < schemas.size(); ++i) s += (i ? "\n" : "") + schemas[i];
  s += "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls.\n";
  return s;
}

// One piece of a user turn after merging: its own text, or a tool result.
struct Block {
  bool tool_result = false;
  std::string text;         // text, or the tool result's content
  std::string tool_use_id;  // tool result: the call it answers
};

// A message after merge_tool_messages: user turns carry blocks, every other message is as given.
struct Turn {
  const ChatMessage* msg = nullptr;  // the original message (user turns: the first merged one; null if made from tool results)
  ChatRole role = ChatRole::User;
  std::vector<Block> blocks;         // user turns
  std::string task;                  // user turns: the task of the message that started the turn
};

bool is_user_like(const Turn& t) { return t.role == ChatRole::User || t.role == ChatRole::Developer; }

// merge_tool_messages: V4 has no tool role. A tool result joins the user turn just before it (or starts
// one); a user message joins the user turn just before it unless that turn carries a task.
std::vector<Turn> merge_tool_messages(std::span<const ChatMessage> messages) {
  std::vector<Turn> turns;
  for (const ChatMessage& m : messages) {
    const bool after_user = !turns.empty() && turns.back().role == ChatRole::User;
    if (m.role == ChatRole::Tool) {
      Block b{true, m.content, m.tool_call_id};
      if (after_user) {
        turns.back().blocks.push_back(std::move(b));
      } else {
        turns.push_back(Turn{nullptr, ChatRole::User, {std::move(b)}, ""});
      }
    } else if (m.role == ChatRole::User) {
      Block b{false, m.content, ""};
      if (after_user && turns.back().task.empty()) {
        turns.back().blocks.push_back(std::move(b));  // the later message's task is dropped, as officially
      } else {
        turns.push_back(Turn{&m, ChatRole::User, {std::move(b)}, m.task});
      }
    } else {
      turns.push_back(Turn{&m, m.role, {}, ""});
    }
  }
  return turns;
}

// sort_tool_results_by_call_order: within a user turn, tool results follow the order of the calls of the
// latest assistant message that made calls (stable; an unknown id sorts as the first call).
void sort_tool_results_by_call_order(std::vector<Turn>& turns) {
  std::unordered_map<std::string, size_t> order;
  for (Turn& t : turns) {
    if (t.role == ChatRole::Assistant && !t.msg->tool_calls.empty()) {
      order.clear();
      for (size_t i = 0; i < t.msg->tool_calls.size(); ++i)
        if (!t.msg->tool_calls[i].id.empty()) order[t.msg->tool_calls[i].id] = i;
    } else if (t.role == ChatRole::User && !order.empty()) {
      std::vector<Block> results;
      for (const Block& b : t.blocks)
        if (b.tool_result) results.push_back(b);
      if (results.size() < 2) continue;
      const auto rank = [&](const Block& b) {
        const auto it = order.find(b.tool_use_id);
        return it == order.end() ? size_t(0) : it->second;
      };
      std::stable_sort(results.begin(), results.end(), [&](const Block& a, const Block& b) { return rank(a) < rank(b); });
      size_t k = 0;
      for (Block& b : t.blocks)
        if (b.tool_result) b = results[k++];
    }
  }
}

ptrdiff_t find_last_user_index(const std::vector<Turn>& turns) {
  for (ptrdiff_t i = ptrdiff_t(turns.size()) - 1; i >= 0; --i)
    if (is_user_like(turns[size_t(i)])) return i;
  return -1;
}

// _drop_thinking_messages: developer messages before the last user turn are dropped. (Assistant messages
// before it also lose their reasoning there; render() leaves it out by the same index test.)
std::vector<Turn> drop_thinking_messages(std::vector<Turn> turns) {
  const ptrdiff_t last_user = find_last_user_index(turns);
  std::vector<Turn> kept;
  for (size_t i = 0; i < turns.size(); ++i)
    if (!(ptrdiff_t(i) < last_user && turns[i].role == ChatRole::Developer)) kept.push_back(std::move(turns[i]));
  return kept;
}

// "<｜DSML｜parameter name=..." lines of one call. Arguments that are not a JSON object text become one
// string parameter named "arguments"; a JSON value that is not an object cannot be rendered.
std::string encode_arguments_to_dsml(const ChatToolCall& call) {
  const std::string d = kDsml;
  nlohmann::ordered_json args = nlohmann::ordered_json::parse(call.arguments, nullptr, false);
  if (args.is_discarded()) args = nlohmann::ordered_json{{"arguments", call.arguments}};
  if (!args.is_object())
    throw Error("tool call '" + call.name + "': arguments are JSON but not an object: " + call.arguments);
  std::string s;
  bool first = true;
  for (const auto& [key, value] : args.items()) {
    if (!first) s += "\n";
    first = false;
    const bool is_str = value.is_string();
    s += "<" + d + "parameter name=\"" + key + "\" string=\"" + (is_str ? "true" : "false") + "\">";
    s += is_str ? value.get<std::string>() : python_json_dumps(value);
    s += "</" + d + "parameter>";
  }
  return s;
}

std::string render_tool_calls(const std::vector<ChatToolCall>& calls) {
  const std::string d = kDsml;
  std::string s = "\n\n<" + d + "tool_calls>\n";
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i) s += "\n";
    s += "<" + d + "invoke name=\"" + calls[i].name + "\">\n" + encode_arguments_to_dsml(calls[i]) + "\n</" + d + "invoke>";
  }
  s += "\n</" + d + "tool_calls>";
  return s;
}

std::string system_extras(const ChatMessage& m) {
  std::string s;
  if (!m.tools.empty()) s += "\n\n" + tools_section(m.tools);
  if (!m.response_format.empty()) s += "\n\n" + std::string(kResponseFormatHead) + m.response_format;
  return s;
}

struct Renderer {
  const std::vector<Turn>& turns;
  const ChatOptions& opt;
  bool drop;                // effective drop_thinking
  ptrdiff_t last_user;      // over `turns`
  bool thinking() const { return opt.mode == ThinkingMode::Thinking; }

  // render_message; the ranges of user-controlled text go to `lit`, offset by `base` (where s lands in
  // the prompt).
  std::string render(size_t i, size_t base, std::vector<TextRange>& lit) const {
    const Turn& t = turns[i];
    std::string s;
    const auto content = [&](const std::string& x) {
      if (!x.empty()) lit.push_back({base + s.size(), base + s.size() + x.size()});
      s += x;
    };
    if (i == 0 && thinking() && opt.reasoning_effort == ReasoningEffort::Max) s += kReasoningEffortMax;
    switch (t.role) {
      case ChatRole::System:
        content(t.msg->content);
        s += system_extras(*t.msg);
        break;
      case ChatRole::Developer:
        s += kUser;
        content(t.msg->content);
        s += system_extras(*t.msg);
        break;
      case ChatRole::User:
        s += kUser;
        for (size_t k = 0; k < t.blocks.size(); ++k) {
          if (k) s += "\n\n";
          const Block& b = t.blocks[k];
          if (b.tool_result) s += "<tool_result>";
          content(b.text);
          if (b.tool_result) s += "</tool_result>";
        }
        break;
      case ChatRole::LatestReminder:
        s += kLatestReminder;
        content(t.msg->content);
        break;
      case ChatRole::Assistant: {
        const ChatMessage& m = *t.msg;
        // An answer to a task turn has no think block.
        const bool after_task = i > 0 && !turns[i - 1].task.empty();
        if (thinking() && !after_task && !(drop && ptrdiff_t(i) <= last_user)) {
          content(m.reasoning_content);
          s += kThinkEnd;
        }
        content(m.content);
        if (!m.tool_calls.empty()) s += render_tool_calls(m.tool_calls);
        if (!m.prefix) s += kEos;
        break;
      }
      case ChatRole::Tool: DSV4_ASSERT(false, "tool messages are merged into user turns"); break;
    }

    // The transition to the assistant turn comes only where an assistant (or latest_reminder) follows,
    // or at the end.
    if (i + 1 < turns.size() && turns[i + 1].role != ChatRole::Assistant && turns[i + 1].role != ChatRole::LatestReminder)
      return s;
    if (!t.task.empty()) {
      if (t.task == "action") {
        s += std::string(kAssistant) + (thinking() ? kThinkBegin : kThinkEnd) + "<｜action｜>";
      } else {
        s += "<｜" + t.task + "｜>";
      }
    } else if (is_user_like(t)) {
      s += kAssistant;
      s += thinking() && (!drop || ptrdiff_t(i) >= last_user) ? kThinkBegin : kThinkEnd;
    }
    return s;
  }
};

}  // namespace

ChatPrompt render_messages(std::span<const ChatMessage> messages, const ChatOptions& options) {
  std::vector<Turn> turns = merge_tool_messages(messages);
  sort_tool_results_by_call_order(turns);
  // Tool definitions anywhere keep every turn's reasoning (the official encoder turns drop_thinking off).
  const bool any_tools = std::any_of(turns.begin(), turns.end(), [](const Turn& t) { return t.msg && !t.msg->tools.empty(); });
  const bool drop = options.drop_thinking && !any_tools;
  if (options.mode == ThinkingMode::Thinking && drop) turns = drop_thinking_messages(std::move(turns));
  const Renderer r{turns, options, drop, find_last_user_index(turns)};
  ChatPrompt p;
  p.text = options.add_bos ? kBos : "";
  for (size_t i = 0; i < turns.size(); ++i) p.text += r.render(i, p.text.size(), p.literal);
  return p;
}

std::string encode_messages(std::span<const ChatMessage> messages, const ChatOptions& options) {
  return render_messages(messages, options).text;
}

namespace {
ChatMessage user_message(const std::string& user) {
  ChatMessage m;
  m.role = ChatRole::User;
  m.content = user;
  return m;
}
}  // namespace

std::string encode_user_prompt(const std::string& user, ThinkingMode mode) {
  const ChatMessage m = user_message(user);
  return encode_messages(std::span(&m, 1), ChatOptions{.mode = mode});
}

std::vector<int32_t> tokenize_chat(const Tokenizer& tok, std::span<const ChatMessage> messages, const ChatOptions& options) {
  const ChatPrompt p = render_messages(messages, options);
  return tok.encode(p.text, p.literal);
}

std::vector<int32_t> tokenize_user_prompt(const Tokenizer& tok, const std::string& user, ThinkingMode mode) {
  const ChatMessage m = user_message(user);
  return tokenize_chat(tok, std::span(&m, 1), ChatOptions{.mode = mode});
}

}  // namespace dsv4
