// Chat messages as JSON ([{"role": ..., "content": ..., "reasoning": ...}, ...], the shape an API
// request carries) through encode_messages and the tokenizer. Deliberately tiny: the chat API is being
// rewritten; only the JSON -> ChatMessage mapping below needs adapting.
#include <nlohmann/json.hpp>
#include <vector>

#include "fuzz/fuzz_util.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv4::Tokenizer tok = dsv4::Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return 0;
  std::vector<dsv4::ChatMessage> msgs;
  for (const auto& m : j) {
    if (!m.is_object()) return 0;
    auto str = [&](const char* k) { return m.contains(k) && m[k].is_string() ? m[k].get<std::string>() : std::string(); };
    msgs.push_back({str("role"), str("content"), str("reasoning")});
  }
  for (auto mode : {dsv4::ThinkingMode::Chat, dsv4::ThinkingMode::Thinking}) {
    dsv4::fuzz::expect_clean([&] {
      const std::string prompt = dsv4::encode_messages(msgs, mode);
      dsv4::fuzz::check(prompt.rfind(dsv4::chat::kBos, 0) == 0, "prompt does not start with BOS");
      const auto ids = tok.encode(prompt);
      dsv4::fuzz::check(tok.decode(ids) == prompt, "decode(encode(prompt)) != prompt");
    });
  }
  return 0;
}
