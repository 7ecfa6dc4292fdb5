// DeepSeek's pre-tokenizer without a regex engine: the three `Split` patterns of its tokenizer.json
// (../shared/tokenizer/README.md), behaviour Isolated, applied in order, each to every piece the
// previous one left, matched by hand as a backtracking engine (Hugging Face's Oniguruma) matches them,
// with character classes from the project's own Unicode tables (unicode_tables.hpp). So the result is
// Hugging Face `tokenizers`' on that Unicode version, whatever regex library the system has.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv4 {

// The Split patterns this pre-tokenizer implements, in order, as tokenizer.json holds them (decoded).
extern const std::string_view kDeepSeekSplitPatterns[3];

class PreTokenizer {
 public:
  // Byte ranges [begin, end) of the pre-tokens of `text` (valid UTF-8), in order, covering it.
  void split(std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& pieces);

 private:
  std::vector<uint32_t> off_;  // byte offset of each character, plus the end
  std::vector<uint8_t> cls_;   // class bits of each character (pretokenizer.cpp)
};

}  // namespace dsv4
