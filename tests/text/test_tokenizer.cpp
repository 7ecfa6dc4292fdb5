// The byte-level BPE tokenizer on the repo's tokenizer.json (DeepSeek-V3's file + the V4 added tokens):
// the ids DeepSeek's own tokenizer gives (../shared/tokenizer/README.md), round trips, streaming decode.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "plan/error.hpp"
#include "runtime/text/chat.hpp"
#include "runtime/text/tokenizer.hpp"

namespace {

using namespace dsv4;
using Ids = std::vector<int32_t>;

const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  return t;
}

// Load speed belongs in a benchmark (tests/text/bench_tokenizer.cpp), not in a timed test.
TEST(Tokenizer, LoadsWithTheModelVocabulary) {
  EXPECT_EQ(tok().size(), 129280);  // ids 0..129279: the V4 table ends at <｜image｜> = 129279
}

TEST(Tokenizer, ReferenceIds) {
  EXPECT_EQ(tok().encode("介绍下北京故宫"), (Ids{6657, 713, 6127, 74437}));
  EXPECT_EQ(tok().encode("你好"), (Ids{30594}));
  EXPECT_EQ(tok().encode("推理"), (Ids{36101}));
  EXPECT_EQ(tok().encode("答案"), (Ids{7624}));
}

TEST(Tokenizer, SpecialTokensAreSplitOutFirst) {
  EXPECT_EQ(tok().encode("<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>"),
            (Ids{128803, 30594, 128804, 128821, 36101, 128822, 7624, 1}));
  EXPECT_EQ(tok().encode("<｜begin▁of▁sentence｜><｜User｜>介绍下北京故宫<｜Assistant｜></think>"),
            (Ids{0, 128803, 6657, 713, 6127, 74437, 128804, 128822}));
}

TEST(Tokenizer, V4AddedTokenTable) {
  const std::pair<const char*, int32_t> want[] = {
      {"<｜begin▁of▁sentence｜>", 0}, {"<｜end▁of▁sentence｜>", 1}, {"<｜▁pad▁｜>", 2},
      {"<｜fim▁hole｜>", 128800},      {"<｜User｜>", 128803},         {"<｜Assistant｜>", 128804},
      {"<｜begin▁of▁repo▁name｜>", 128815}, {"<think>", 128821},      {"</think>", 128822},
      {"｜DSML｜", 128825},            {"<｜latest_reminder｜>", 128828}, {"<｜action｜>", 128829},
      {"<｜query｜>", 128830},         {"<｜authority｜>", 128831},   {"<｜domain｜>", 128832},
      {"<｜title｜>", 128836},         {"<｜search｜>", 128839},      {"<dsml:", 128840},
      {"<｜read_url｜>", 128845},      {"<｜end_of_query｜>", 128846}, {"<｜image｜>", 129279}};
  for (const auto& [s, id] : want) {
    EXPECT_EQ(tok().encode(s), (Ids{id})) << s;
    EXPECT_EQ(tok().decode(Ids{id}), s) << id;
  }
  // Only BOS, EOS, pad (and the V3 placeholders) are `special`: skipped when decoding with skip_special.
  EXPECT_TRUE(tok().is_special(0) && tok().is_special(1) && tok().is_special(2) && tok().is_special(129279));
  EXPECT_FALSE(tok().is_special(128803) || tok().is_special(128821));
  EXPECT_EQ(tok().decode(Ids{0, 30594, 128822, 1}, /*skip_special=*/true), "你好</think>");
}

TEST(Tokenizer, AsciiPreTokenization) {
  // Pieces split by the three patterns; digits go in groups of at most three.
  EXPECT_EQ(tok().encode("Hello, world! 123456"), (Ids{19923, 14, 2058, 3, 223, 6895, 18009}));
  EXPECT_EQ(tok().encode(""), Ids{});
}

TEST(Tokenizer, RoundTrips) {
  const char* texts[] = {
      "Hello, world!",
      "  leading and trailing spaces   ",
      "tabs\tand\nnewlines\r\n\r\nend\n\n\n",
      "x = 3.14159265; y = 1234567890",
      "😀🎉👨‍👩‍👧 emoji and ZWJ",
      "café naïve résumé a\u0301",
      "日本語のテキストとカタカナ、中文，标点。“引号”！",
      "한국어 Привет مرحبا 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
      "def f(x):\n    return x**2  # comment\n",
      "\u00a0non-breaking\u2003em space\u200bzero width",
      "<｜User｜>mixed<think>special</think> and plain <｜ not special",
  };
  for (const char* s : texts) EXPECT_EQ(tok().decode(tok().encode(s)), s) << s;
}

TEST(Tokenizer, StreamingHoldsBackPartialUtf8) {
  // "😀" is 4 bytes: its byte-level tokens may end mid-sequence; nothing is emitted until it completes.
  const std::string text = "a😀b你好🎉";
  const Ids ids = tok().encode(text);
  StreamDecoder dec(tok());
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = dec.push(id);
    EXPECT_EQ(utf8_lossy(piece), piece) << "emitted an incomplete UTF-8 sequence";
    out += piece;
  }
  out += dec.finish();
  EXPECT_EQ(out, text);

  // A token holding only a lead byte: held, then flushed as U+FFFD by finish().
  const auto lead = tok().token_id("\xF0\x9F");
  ASSERT_TRUE(lead.has_value());
  StreamDecoder d2(tok());
  EXPECT_EQ(d2.push(*lead), "");
  EXPECT_EQ(d2.finish(), "\xEF\xBF\xBD");
}

TEST(Tokenizer, Utf8Lossy) {
  EXPECT_EQ(utf8_lossy("ok"), "ok");
  EXPECT_EQ(utf8_lossy("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(utf8_lossy("\xE4\xBD"), "\xEF\xBF\xBD");  // truncated 3-byte sequence
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: 3 invalid bytes
}

TEST(Tokenizer, RejectsInvalidInput) {
  EXPECT_THROW(tok().encode("bad \xFF utf8"), Error);
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), Error);
}

}  // namespace
