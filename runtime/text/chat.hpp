// The V4 chat encoding, restated branch by branch from DeepSeek's official encoding/encoding_dsv4.py
// (encode_messages, render_message, merge_tool_messages, sort_tool_results_by_call_order,
// _drop_thinking_messages, parse_message_from_completion_text): OpenAI-format messages to the prompt
// text the tokenizer encodes, and a completion back to reasoning, content and tool calls.
// The BOS comes from here, not from the tokenizer.
//
// Where the official encoder crashes or prints Python's "None" (a null content, a content array on a
// user message, tools on a user message that merging would silently drop), this one either renders
// the evident meaning ("" for null; text parts joined by "\n\n", the official joiner for multi-part
// tool results) or throws dsv4::Error naming the message index and field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/text/text_range.hpp"

namespace dsv4 {

namespace chat {
inline constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
inline constexpr const char* kEos = "<｜end▁of▁sentence｜>";
inline constexpr const char* kUser = "<｜User｜>";
inline constexpr const char* kAssistant = "<｜Assistant｜>";
inline constexpr const char* kLatestReminder = "<｜latest_reminder｜>";
inline constexpr const char* kThinkBegin = "<think>";
inline constexpr const char* kThinkEnd = "</think>";
inline constexpr const char* kDsml = "｜DSML｜";
}  // namespace chat

enum class ThinkingMode {
  Chat,      // the turn to generate starts after "</think>": the answer follows directly
  Thinking,  // the turn to generate starts after "<think>": the model reasons first, closes with "</think>"
};

// reasoning_effort: "high" changes nothing in the prompt; "max" puts the official REASONING_EFFORT_MAX
// paragraph before the first message (thinking mode only).
enum class ReasoningEffort { None, High, Max };

enum class ChatRole { System, Developer, User, Assistant, Tool, LatestReminder };

struct ChatToolCall {
  std::string id;         // OpenAI tool call id; orders the tool results that answer it ("" = none)
  std::string name;       // function.name
  std::string arguments;  // function.arguments: a JSON object as text (not a JSON object: passed as one string parameter)
};

struct ChatMessage {
  ChatRole role = ChatRole::User;
  std::string content;                    // text parts already joined; null became ""
  std::string reasoning_content;          // assistant: the text between <think> and </think>
  std::vector<ChatToolCall> tool_calls;   // assistant
  std::string tool_call_id;               // tool: the call this result answers
  std::vector<std::string> tools;         // system/developer: each function definition, as Python's json.dumps writes it
  std::string response_format;            // system/developer: JSON text as json.dumps writes it, "" = none
  std::string task;                       // user: quick-instruction task (action, query, authority, domain, title, read_url), "" = none
  bool prefix = false;                    // assistant: no EOS, generation continues this text (official `wo_eos`)
};

struct ChatOptions {
  ThinkingMode mode = ThinkingMode::Chat;
  bool drop_thinking = true;  // official default: earlier turns lose their reasoning (off when any message has tools)
  ReasoningEffort reasoning_effort = ReasoningEffort::None;
  bool add_bos = true;
};

// Messages in OpenAI's format (role, content as a string, null or an array of {"type":"text","text":..}
// parts, reasoning_content, tool_calls, tool_call_id, name; plus the official extras tools,
// response_format, task, and prefix / wo_eos on an assistant message). Keys keep their order
// (ordered_json) because tool schemas are rendered as written. Throws dsv4::Error naming the message
// index and field on an unknown role or a field of the wrong type.
std::vector<ChatMessage> chat_messages_from_json(const nlohmann::ordered_json& messages);

// Request-level OpenAI `tools` ([{"type":"function","function":{...}}]) go onto the first message when it
// is a system or developer message, else onto a new empty system message in front (the official
// encoder only renders tools carried by a system or developer message).
void attach_tools(std::vector<ChatMessage>& messages, const nlohmann::ordered_json& tools);

// The prompt text, as the official encode_messages(messages, thinking_mode, drop_thinking=...,
// reasoning_effort=...) returns it.
std::string encode_messages(std::span<const ChatMessage> messages, const ChatOptions& options);

// The same prompt text with the ranges of user-controlled text (system, developer, user and tool-result
// content, reasoning and answers of assistant turns; not tool schemas or tool-call DSML) marked, for
// Tokenizer::encode(text, literal): content that spells <｜User｜> stays text. Every front end of dsv4
// tokenizes chat prompts this way; where content holds no added-token string the ids are those of the
// official encoder + tokenizer.
struct ChatPrompt {
  std::string text;
  std::vector<TextRange> literal;  // sorted, disjoint
};
ChatPrompt render_messages(std::span<const ChatMessage> messages, const ChatOptions& options);

class Tokenizer;
// render_messages, then Tokenizer::encode with that content literal: the ids every front end feeds the model.
std::vector<int32_t> tokenize_chat(const Tokenizer& tok, std::span<const ChatMessage> messages, const ChatOptions& options);
std::vector<int32_t> tokenize_user_prompt(const Tokenizer& tok, const std::string& user, ThinkingMode mode);

// One user message, ready for generation.
std::string encode_user_prompt(const std::string& user, ThinkingMode mode);

// A completion (the text generated after the prompt, up to and including the EOS) split as the official
// parse_message_from_completion_text does. Throws dsv4::Error on a malformed completion (no </think> in
// thinking mode, no EOS, a bad DSML block, special tokens left in the content).
struct ParsedCompletion {
  std::string reasoning_content;
  std::string content;
  std::vector<ChatToolCall> tool_calls;  // arguments: a JSON object text built from the DSML parameters
};
ParsedCompletion parse_completion(std::string_view text, ThinkingMode mode);
// {"role":"assistant","content":..,"reasoning_content":..,"tool_calls":[{"type":"function","function":{..}}]}
nlohmann::ordered_json to_json(const ParsedCompletion& c);

// Python's json.dumps(value, ensure_ascii=False): ", " and ": " separators, keys in their order,
// floats as Python's repr. The official encoder renders tool schemas and non-string arguments this way.
std::string python_json_dumps(const nlohmann::ordered_json& value);

}  // namespace dsv4
