// DeepSeek's byte-level BPE tokenizer, read from a Hugging Face tokenizer.json: added tokens are split
// out first (leftmost-longest), the rest goes through the pre-tokenizer (DeepSeek's three regex `Split`s,
// behaviour Isolated, then ByteLevel without its own regex; matched by pretokenizer.hpp on the project's
// Unicode 16 tables, as Hugging Face `tokenizers` matches them, tests/text), then BPE merges by rank
// (bpe.hpp). Decoding maps ids back to bytes; StreamDecoder holds back an incomplete UTF-8 sequence.
//
// The shipped data/tokenizer/tokenizer.json is DeepSeek-V3's; V4 uses the same vocabulary, merges and
// pre-tokenizer and only grows the added-token table, so the V4 additions (../shared/tokenizer/README.md)
// are added when the file lacks them. A file that has them (a real V4 checkpoint's) wins.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/text/bpe.hpp"
#include "runtime/text/text_range.hpp"

namespace dsv4 {

// Whether encode() turns added-token strings (<｜User｜>, <think>, BOS...) into their ids, or encodes
// them as the plain text they are (user content that must not forge role or control tokens).
enum class SpecialTokens { Recognize, Literal };

class Tokenizer {
 public:
  // Reads tokenizer.json; throws dsv4::Error naming the file and field on anything unexpected.
  static Tokenizer load(const std::string& path);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text (valid UTF-8, else dsv4::Error) -> token ids. No BOS is added (add_bos_token=false in V4):
  // the chat template writes it.
  std::vector<int32_t> encode(std::string_view text, SpecialTokens special = SpecialTokens::Recognize) const;
  // Added tokens are recognised only outside `literal` (sorted, non-overlapping ranges of text): a token
  // string that overlaps a range is encoded as plain text. Where no range holds an added-token string the
  // ids equal encode(text).
  std::vector<int32_t> encode(std::string_view text, std::span<const TextRange> literal) const;
  // Ids -> text; invalid or truncated UTF-8 becomes U+FFFD (as HF's lossy decode). With skip_special,
  // tokens flagged `special` (BOS, EOS, pad, ...) produce nothing.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  // Raw bytes of one token (added tokens: their content). Ids without a token (gaps in the table
  // up to the model's vocabulary) give "".
  const std::string& token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;
  std::optional<int32_t> token_id(std::string_view token) const;  // vocab entry or added token
  int64_t size() const { return int64_t(bytes_.size()); }         // highest id + 1
  int64_t added_tokens() const { return int64_t(added_.size()); }

 private:
  struct Added {
    std::string content;
    int32_t id;
    bool special;
  };
  Tokenizer();
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;   // byte-level string -> id (model vocab + added tokens)
  std::vector<std::string> bytes_;                   // id -> raw bytes
  std::vector<uint8_t> special_;                     // id -> flagged special
  BpeMerges merges_;                                 // (left id, right id) -> rank, merged id
  int32_t byte_id_[256] = {};                        // id of the single-byte symbol of each byte
  std::vector<Added> added_;                         // sorted by content length, longest first
  struct TrieNode {
    int32_t added = -1;                                  // index into added_ of the token ending here
    std::vector<std::pair<unsigned char, int32_t>> next;  // byte -> child node
  };
  std::vector<TrieNode> trie_;                       // added-token contents; node 0 is the root
  int32_t trie_root_[256] = {};                      // first byte -> child of the root, -1 if none
};

// Incremental detokenizer for streaming: push() returns the text that is complete so far; bytes of
// a UTF-8 sequence split across tokens are held until the sequence completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true) : tok_(tok), skip_special_(skip_special) {}
  std::string push(int32_t id);
  std::string finish();  // flushes what is held (an incomplete sequence becomes U+FFFD)

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string held_;
};

// Valid UTF-8 with invalid sequences replaced by U+FFFD (one per maximal invalid subpart).
std::string utf8_lossy(std::string_view bytes);

}  // namespace dsv4
