// The V4 chat encoding (reference spec §6) and its token ids.
#include <gtest/gtest.h>

#include <vector>

#include "plan/error.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

namespace {

using namespace dsv4;

TEST(Chat, OneUserMessageChatMode) {
  EXPECT_EQ(encode_user_prompt("Hi", ThinkingMode::Chat), "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>");
}

TEST(Chat, OneUserMessageThinkingMode) {
  EXPECT_EQ(encode_user_prompt("Hi", ThinkingMode::Thinking), "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>");
}

TEST(Chat, ConversationWithSystemAndHistory) {
  const std::vector<ChatMessage> m = {{"system", "You are helpful.", ""},
                                      {"user", "Q1", ""},
                                      {"assistant", "A1", "R1"},
                                      {"user", "Q2", ""}};
  EXPECT_EQ(encode_messages(m, ThinkingMode::Chat),
            "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Q1<｜Assistant｜></think>A1<｜end▁of▁sentence｜>"
            "<｜User｜>Q2<｜Assistant｜></think>");
  EXPECT_EQ(encode_messages(m, ThinkingMode::Thinking),
            "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Q1<｜Assistant｜><think>R1</think>A1<｜end▁of▁sentence｜>"
            "<｜User｜>Q2<｜Assistant｜><think>");
}

TEST(Chat, UnknownRole) {
  const std::vector<ChatMessage> m = {{"tool", "x", ""}};
  EXPECT_THROW(encode_messages(m, ThinkingMode::Chat), Error);
}

TEST(Chat, TokenIds) {
  const Tokenizer t = Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  EXPECT_EQ(t.encode(encode_user_prompt("介绍下北京故宫", ThinkingMode::Chat)),
            (std::vector<int32_t>{0, 128803, 6657, 713, 6127, 74437, 128804, 128822}));
  EXPECT_EQ(t.encode(encode_user_prompt("你好", ThinkingMode::Thinking)),
            (std::vector<int32_t>{0, 128803, 30594, 128804, 128821}));
}

}  // namespace
