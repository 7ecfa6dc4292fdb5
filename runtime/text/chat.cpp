#include "runtime/text/chat.hpp"

#include "plan/error.hpp"

namespace dsv4 {

std::string encode_messages(std::span<const ChatMessage> messages, ThinkingMode mode) {
  const bool thinking = mode == ThinkingMode::Thinking;
  std::string s = chat::kBos;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") {
      s += m.content;
    } else if (m.role == "user") {
      s += chat::kUser;
      s += m.content;
      s += chat::kAssistant;
      s += thinking ? chat::kThinkBegin : chat::kThinkEnd;
    } else if (m.role == "assistant") {
      if (thinking) {
        s += m.reasoning;
        s += chat::kThinkEnd;
      }
      s += m.content;
      s += chat::kEos;
    } else {
      throw Error("chat message " + std::to_string(i) + ": role '" + m.role +
                  "' is not one of system, user, assistant");
    }
  }
  return s;
}

std::string encode_user_prompt(const std::string& user, ThinkingMode mode) {
  const ChatMessage m{"user", user, ""};
  return encode_messages(std::span(&m, 1), mode);
}

}  // namespace dsv4
