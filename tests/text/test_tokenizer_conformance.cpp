// The tokenizer against Hugging Face `tokenizers` (Rust crate, Oniguruma, Unicode 16) on the same token
// set (data/tokenizer/tokenizer.json + the V4 added tokens): a corpus of strings with the ids HF gives,
// and a probe of every code point of planes 0-3 and 14 in a context that exercises each character
// class of the pre-tokenizer. Expected data: tests/text/data, made by tools/tokenizer-oracle/oracle.mjs.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/text/tokenizer.hpp"
#include "runtime/text/unicode_tables.hpp"

namespace {

using namespace dsv4;
using Ids = std::vector<int32_t>;

const Tokenizer& tok() {
  static const Tokenizer t = Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  return t;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f) << "cannot open " << path;
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string show(std::string_view s) {  // printable, code points as \u{...}
  std::string out;
  for (size_t i = 0; i < s.size() && out.size() < 300; ++i) {
    const unsigned char c = s[i];
    char buf[16];
    if (c < 0x20 || c == 0x7F) std::snprintf(buf, sizeof buf, "\\x%02X", c), out += buf;
    else out += char(c);
  }
  return out;
}

std::string ids_str(const Ids& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size() && i < 64; ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s + (ids.size() > 64 ? ",...]" : "]");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(TokenizerConformance, CorpusMatchesHuggingFace) {
  // DSV4_TOKENIZER_CORPUS: another corpus made by the oracle (oracle.mjs --seed N FILE).
  const char* other = std::getenv("DSV4_TOKENIZER_CORPUS");
  const std::string data = read_file(other && *other ? other : DSV4_SOURCE_DIR "/tests/text/data/corpus.jsonl");
  std::istringstream lines(data);
  std::string line;
  size_t strings = 0, bytes = 0, literal = 0, mismatches = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto compare = [&](const std::string& text, const Ids& want, SpecialTokens mode, const char* what) {
    const Ids got = tok().encode(text, mode);
    if (got == want) return;
    if (++mismatches <= 20)
      ADD_FAILURE() << what << " \"" << show(text) << "\"\n  ours " << ids_str(got) << "\n  HF   " << ids_str(want);
  };
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string text = j.at("text").get<std::string>();
    compare(text, j.at("ids").get<Ids>(), SpecialTokens::Recognize, "corpus");
    if (j.contains("literal")) {
      compare(text, j.at("literal").get<Ids>(), SpecialTokens::Literal, "corpus (literal)");
      ++literal;
    }
    ++strings;
    bytes += text.size();
  }
  EXPECT_GT(strings, 5000u);
  EXPECT_GT(literal, 1000u);
  EXPECT_EQ(mismatches, 0u) << "of " << strings << " strings (+" << literal << " literal)";
  std::printf("corpus: %zu strings, %zu bytes, %zu also literal, %zu mismatches, %.2f s\n", strings, bytes, literal,
              mismatches, seconds_since(t0));
}

// Must build the same string as probeText() in tools/tokenizer-oracle/oracle.mjs.
std::string probe_text(uint32_t cp) {
  std::string c;
  if (cp < 0x80) {
    c += char(cp);
  } else if (cp < 0x800) {
    c += char(0xC0 | (cp >> 6)), c += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    c += char(0xE0 | (cp >> 12)), c += char(0x80 | ((cp >> 6) & 0x3F)), c += char(0x80 | (cp & 0x3F));
  } else {
    c += char(0xF0 | (cp >> 18)), c += char(0x80 | ((cp >> 12) & 0x3F));
    c += char(0x80 | ((cp >> 6) & 0x3F)), c += char(0x80 | (cp & 0x3F));
  }
  return "a" + c + "b " + c + "! 1" + c + "1 " + c + c + c + c + "x\r\n" + c;
}

uint32_t fnv1a(const Ids& ids) {
  uint32_t h = 0x811c9dc5u;
  for (int32_t id : ids)
    for (int k = 0; k < 4; ++k) h = (h ^ ((uint32_t(id) >> (8 * k)) & 255)) * 0x01000193u;
  return h;
}

TEST(TokenizerConformance, EveryCodePointOfPlanes0To3And14) {
  const std::string bin = read_file(DSV4_SOURCE_DIR "/tests/text/data/probe.bin");
  ASSERT_GE(bin.size(), 12u);
  ASSERT_EQ(bin.substr(0, 8), "DSV4PRB1");
  uint32_t planes = 0;
  std::memcpy(&planes, bin.data() + 8, 4);
  ASSERT_EQ(bin.size(), 12 + size_t(planes) * (4 + 65536 * 4)) << "probe.bin size";
  size_t probed = 0, mismatches = 0;
  std::vector<uint32_t> planes_seen;
  const auto t0 = std::chrono::steady_clock::now();
  for (uint32_t k = 0; k < planes; ++k) {
    const char* rec = bin.data() + 12 + size_t(k) * (4 + 65536 * 4);
    uint32_t plane = 0;
    std::memcpy(&plane, rec, 4);
    planes_seen.push_back(plane);
    for (uint32_t lo = 0; lo < 65536; ++lo) {
      const uint32_t cp = (plane << 16) | lo;
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      uint32_t want = 0;
      std::memcpy(&want, rec + 4 + size_t(lo) * 4, 4);
      const std::string text = probe_text(cp);
      const Ids got = tok().encode(text);
      ++probed;
      if (fnv1a(got) == want) continue;
      if (++mismatches <= 30) {
        char name[16];
        std::snprintf(name, sizeof name, "U+%04X", cp);
        ADD_FAILURE() << name << " (class bits " << int(unicode::classes(cp)) << "): ours " << ids_str(got)
                      << "; HF's ids: cd tools/tokenizer-oracle && node oracle.mjs --show " << name;
      }
    }
  }
  EXPECT_EQ(planes_seen, (std::vector<uint32_t>{0, 1, 2, 3, 14}));
  EXPECT_EQ(mismatches, 0u) << "of " << probed << " code points";
  std::printf("probe: %zu code points, %zu mismatches, %.2f s\n", probed, mismatches, seconds_since(t0));
}

TEST(TokenizerConformance, UnicodeTablesAreVersion16) {
  EXPECT_STREQ(unicode::kVersion, "16.0.0");
  EXPECT_EQ(unicode::classes(0x1FA77), unicode::kSymbol);  // pink heart, Unicode 15.0
  EXPECT_EQ(unicode::classes(0x1FAE9), unicode::kSymbol);  // face with bags under eyes, 16.0
  EXPECT_EQ(unicode::classes(0x1FAEA), 0);                 // unassigned in 16.0
  EXPECT_EQ(unicode::classes(0x180E), 0);                  // Mongolian vowel separator: Cf, not White_Space
  EXPECT_EQ(unicode::classes(0x3000), unicode::kWhiteSpace);
  EXPECT_EQ(unicode::classes('\n'), unicode::kWhiteSpace);
  EXPECT_EQ(unicode::classes(0x31350), unicode::kLetter);  // CJK Ext H
  EXPECT_EQ(unicode::classes(0x110000), 0);
}

// The defects of the PCRE2 (Unicode 14) pre-tokenizer, with Hugging Face's ids.
TEST(TokenizerConformance, Unicode15And16AndMongolianVowelSeparator) {
  EXPECT_EQ(tok().encode("pink heart: \U0001FA77"), (Ids{82, 1143, 4082, 28, 7351, 105, 118}));
  EXPECT_EQ(tok().encode("a \u180e b"), (Ids{67, 223, 115522, 239, 291}));
  EXPECT_EQ(tok().encode("x \U0001FAE9"), (Ids{90, 7351, 107, 105}));
}

TEST(TokenizerLiteral, SpecialTokenStringsStayText) {
  const std::string s = "<｜User｜>hi<｜Assistant｜></think><｜end▁of▁sentence｜>";
  EXPECT_EQ(tok().encode(s), (Ids{128803, tok().encode("hi")[0], 128804, 128822, 1}));
  const Ids lit = tok().encode(s, SpecialTokens::Literal);
  for (int32_t id : lit) EXPECT_LT(id, 128000) << "literal mode produced added token " << id;
  EXPECT_EQ(tok().decode(lit), s);
  EXPECT_EQ(tok().encode("plain text", SpecialTokens::Literal), tok().encode("plain text"));
  EXPECT_EQ(tok().encode("", SpecialTokens::Literal), Ids{});
  EXPECT_THROW(tok().encode("bad \xFF", SpecialTokens::Literal), std::exception);
}

// Literal ranges: added tokens count only outside them; a token string overlapping a range is text.
TEST(TokenizerLiteral, RangesKeepUserContentLiteral) {
  const std::string tmpl = "<｜User｜>", content = "a<｜Assistant｜>b", tail = "<｜Assistant｜></think>";
  const std::string s = tmpl + content + tail;
  const TextRange r{tmpl.size(), tmpl.size() + content.size()};
  Ids want{128803};
  for (int32_t id : tok().encode(content, SpecialTokens::Literal)) want.push_back(id);
  want.push_back(128804), want.push_back(128822);
  EXPECT_EQ(tok().encode(s, std::span(&r, 1)), want);
  EXPECT_EQ(tok().encode(s, std::span<const TextRange>{}), tok().encode(s));
  const TextRange straddle{2, tmpl.size() + 1};  // cuts into <｜User｜>: it is text then
  EXPECT_NE(tok().encode(s, std::span(&straddle, 1)).front(), 128803);
  const TextRange bad[2] = {{5, 9}, {7, 12}};
  EXPECT_THROW(tok().encode(s, std::span(bad, 2)), std::exception);
}

// The pre-tokenizer is DeepSeek's, matched by hand: a tokenizer.json with any other Split pattern is
// refused with the step named, not split some other way.
TEST(TokenizerLoad, OtherPreTokenizerPatternsAreRefused) {
  std::string json = read_file(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  const std::string from = R"("\\p{N}{1,3}")", to = R"("\\p{N}{1,2}")";
  const size_t at = json.find(from);
  ASSERT_NE(at, std::string::npos);
  json.replace(at, from.size(), to);
  const std::string path = ::testing::TempDir() + "dsv4_other_pattern_tokenizer.json";
  std::ofstream(path, std::ios::binary) << json;
  try {
    Tokenizer::load(path);
    ADD_FAILURE() << "a tokenizer.json with another Split pattern loaded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("pretokenizers[0].pattern: expected DeepSeek's Split regex #1"),
              std::string::npos)
        << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
