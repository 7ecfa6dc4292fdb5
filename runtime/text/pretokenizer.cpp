#include "runtime/text/pretokenizer.hpp"

#include <array>

#include "plan/error.hpp"
#include "runtime/text/unicode_tables.hpp"

namespace dsv4 {

// As JSON-decoded from tokenizer.json: CR and LF stand in the patterns as the characters themselves.
const std::string_view kDeepSeekSplitPatterns[3] = {
    R"(\p{N}{1,3})",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^)"
    "\r\n"
    R"(\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[)"
    "\r\n"
    R"(]*|\s*[)"
    "\r\n"
    R"(]+|\s+(?!\S)|\s+)",
};

namespace {

using namespace unicode;
constexpr uint8_t kLM = kLetter | kMark;
constexpr uint8_t kPS = kPunctuation | kSymbol;
constexpr uint8_t kCjk = 64;   // in [一-龥぀-ゟ゠-ヿ] (U+4E00-9FA5, U+3040-30FF)
constexpr uint8_t kCrLf = 128;  // \r or \n
static_assert(((kLetter | kMark | kNumber | kPunctuation | kSymbol | kWhiteSpace) & (kCjk | kCrLf)) == 0);

uint8_t class_of(uint32_t cp) {
  uint8_t c = classes(cp);
  if ((cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x30FF)) c |= kCjk;
  if (cp == '\r' || cp == '\n') c |= kCrLf;
  return c;
}

const std::array<uint8_t, 128> kAscii = [] {
  std::array<uint8_t, 128> t{};
  for (uint32_t b = 0; b < 128; ++b) t[b] = class_of(b);
  return t;
}();

bool ascii_alpha(unsigned char b) { return (b | 0x20) >= 'a' && (b | 0x20) <= 'z'; }
// The 32 ASCII characters of the third pattern's first class: every printable non-alphanumeric one.
bool ascii_punct(unsigned char b) {
  return (b >= '!' && b <= '/') || (b >= ':' && b <= '@') || (b >= '[' && b <= '`') || (b >= '{' && b <= '~');
}

// Isolated split of the characters [b, e): match(i) returns the end of the match starting at i, or i
// when there is none; matched spans and the unmatched spans between them are emitted in order.
template <class Match, class Emit>
void isolate(uint32_t b, uint32_t e, Match&& match, Emit&& emit) {
  uint32_t gap = b;
  for (uint32_t i = b; i < e;) {
    const uint32_t j = match(i);
    if (j == i) {
      ++i;
      continue;
    }
    if (gap < i) emit(gap, i);
    emit(i, j);
    i = gap = j;
  }
  if (gap < e) emit(gap, e);
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& pieces) {
  pieces.clear();
  if (text.empty()) return;
  if (text.size() >= UINT32_MAX) throw Error("tokenizer: text of " + std::to_string(text.size()) + " bytes is too long");
  off_.clear();
  cls_.clear();
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    off_.push_back(uint32_t(i));
    const unsigned c = p[i];
    if (c < 0x80) {
      cls_.push_back(kAscii[c]);
      ++i;
      continue;
    }
    // Valid UTF-8 is the caller's promise (Tokenizer::encode checks it); stay in bounds regardless.
    uint32_t cp;
    size_t len;
    if (c < 0xE0) cp = c & 0x1F, len = 2;
    else if (c < 0xF0) cp = c & 0x0F, len = 3;
    else cp = c & 0x07, len = 4;
    if (i + len > n) len = n - i;
    for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
    cls_.push_back(class_of(cp));
    i += len;
  }
  off_.push_back(uint32_t(n));
  const uint8_t* cls = cls_.data();
  const uint32_t* off = off_.data();
  auto byte = [&](uint32_t i) { return p[off[i]]; };  // first byte; the character itself when < 0x80

  // 3. [ASCII punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ' '?[\p{P}\p{S}]+[\r\n]* |
  //    \s*[\r\n]+ | \s+(?!\S) | \s+ — the first alternative that matches at i wins, as in a backtracking
  //    engine; each piece is its own subject, so the lookahead sees the piece's end as the end.
  auto third = [&](uint32_t b, uint32_t e) {
    auto match = [&](uint32_t i) -> uint32_t {
      const uint8_t c = cls[i];
      uint32_t j = i + 1;
      if (byte(i) < 0x80 && ascii_punct(byte(i)) && j < e && byte(j) < 0x80 && ascii_alpha(byte(j))) {
        while (j < e && byte(j) < 0x80 && ascii_alpha(byte(j))) ++j;
        return j;
      }
      // The optional first character may be anything but CR, LF, L, P, S (a space, a mark, a digit...);
      // when it cannot be taken, the run must start at i.
      const bool optional = !(c & (kCrLf | kLetter | kPS));
      if ((optional && j < e && (cls[j] & kLM)) || (c & kLM)) {
        while (j < e && (cls[j] & kLM)) ++j;
        return j;
      }
      if ((c & kPS) || (byte(i) == ' ' && j < e && (cls[j] & kPS))) {
        while (j < e && (cls[j] & kPS)) ++j;
        while (j < e && (cls[j] & kCrLf)) ++j;
        return j;
      }
      if (c & kWhiteSpace) {
        while (j < e && (cls[j] & kWhiteSpace)) ++j;
        // \s*[\r\n]+: \s* gives back characters until [\r\n]+ fits, so it ends after the run's last CR/LF.
        for (uint32_t k = j; k > i; --k)
          if (cls[k - 1] & kCrLf) return k;
        // \s+(?!\S): all of the run at the end, else all but its last character (which then starts the
        // next pre-token, e.g. " word"); a single space before non-space falls to \s+.
        return j == e || j - i == 1 ? j : j - 1;
      }
      return i;
    };
    isolate(b, e, match, [&](uint32_t s, uint32_t t) { pieces.emplace_back(off[s], off[t]); });
  };
  // 2. [一-龥぀-ゟ゠-ヿ]+
  auto second = [&](uint32_t b, uint32_t e) {
    auto match = [&](uint32_t i) {
      uint32_t j = i;
      while (j < e && (cls[j] & kCjk)) ++j;
      return j;
    };
    isolate(b, e, match, third);
  };
  // 1. \p{N}{1,3}
  auto first = [&](uint32_t b, uint32_t e) {
    auto match = [&](uint32_t i) {
      uint32_t j = i;
      while (j < e && j - i < 3 && (cls[j] & kNumber)) ++j;
      return j;
    };
    isolate(b, e, match, second);
  };
  first(0, uint32_t(cls_.size()));
}

}  // namespace dsv4
