// Chat messages as JSON in OpenAI's format (the shape an API request carries) through the V4 chat encoder
// and the tokenizer with the content encoded literally; and arbitrary text through the completion parser.
// Rejections (dsv4::Error) are fine; a crash, a sanitizer report or another exception type is a finding.
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz/fuzz_util.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv4::Tokenizer tok = dsv4::Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (auto mode : {dsv4::ThinkingMode::Chat, dsv4::ThinkingMode::Thinking})
    dsv4::fuzz::expect_clean([&] { (void)dsv4::parse_completion(text, mode); });

  const auto j = nlohmann::ordered_json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  for (auto mode : {dsv4::ThinkingMode::Chat, dsv4::ThinkingMode::Thinking}) {
    dsv4::fuzz::expect_clean([&] {
      const auto msgs = dsv4::chat_messages_from_json(j);
      const dsv4::ChatPrompt p = dsv4::render_messages(msgs, dsv4::ChatOptions{.mode = mode});
      dsv4::fuzz::check(p.text.rfind(dsv4::chat::kBos, 0) == 0, "prompt does not start with BOS");
      const auto ids = tok.encode(p.text, p.literal);
      dsv4::fuzz::check(tok.decode(ids) == p.text, "decode(encode(prompt)) != prompt");
    });
  }
  return 0;
}
