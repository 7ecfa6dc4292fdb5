// The V4 chat encoding (official encoding_dsv4.py, restated in the reference spec §6): messages to the
// prompt text the tokenizer encodes. The BOS comes from here, not from the tokenizer.
#pragma once
#include <span>
#include <string>

namespace dsv4 {

namespace chat {
inline constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
inline constexpr const char* kEos = "<｜end▁of▁sentence｜>";
inline constexpr const char* kUser = "<｜User｜>";
inline constexpr const char* kAssistant = "<｜Assistant｜>";
inline constexpr const char* kThinkBegin = "<think>";
inline constexpr const char* kThinkEnd = "</think>";
}  // namespace chat

enum class ThinkingMode {
  Chat,      // each user turn ends with "</think>": the answer follows directly
  Thinking,  // each user turn ends with "<think>": the model reasons first, closes with "</think>"
};

struct ChatMessage {
  std::string role;       // "system", "user" or "assistant"
  std::string content;
  std::string reasoning;  // assistant turns in thinking mode: the text between <think> and </think>
};

// BOS + [system text] + per user turn "<｜User｜>" + content + "<｜Assistant｜>" + ("</think>" | "<think>"),
// an assistant turn as [reasoning + "</think>" in thinking mode] + content + "<｜end▁of▁sentence｜>".
// Messages render in order. Throws dsv4::Error on an unknown role.
std::string encode_messages(std::span<const ChatMessage> messages, ThinkingMode mode);

// One user message, ready for generation.
std::string encode_user_prompt(const std::string& user, ThinkingMode mode);

}  // namespace dsv4
