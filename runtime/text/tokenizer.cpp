#include "runtime/text/tokenizer.hpp"

#include <algorithm>
#include <climits>
#include <array>
#include <fstream>
#include <nlohmann/json.hpp>

#include "plan/error.hpp"
#include "runtime/text/pretokenizer.hpp"

namespace dsv4 {
namespace {

using json = nlohmann::json;

struct AddedSpec {
  int32_t id;
  const char* content;
  bool special;
};

// The V4 added tokens the model uses (../shared/tokenizer/README.md, "V4 special tokens"): added when
// the tokenizer.json lacks them (the V3 file has 0-2 and 128800-128814 only, besides placeholders).
constexpr AddedSpec kV4Added[] = {
    {0, "<｜begin▁of▁sentence｜>", true},
    {1, "<｜end▁of▁sentence｜>", true},
    {2, "<｜▁pad▁｜>", true},
    {128800, "<｜fim▁hole｜>", false},
    {128801, "<｜fim▁begin｜>", false},
    {128802, "<｜fim▁end｜>", false},
    {128803, "<｜User｜>", false},
    {128804, "<｜Assistant｜>", false},
    {128815, "<｜begin▁of▁repo▁name｜>", false},
    {128816, "<｜end▁of▁repo▁name｜>", false},
    {128817, "<｜begin▁of▁file▁name｜>", false},
    {128818, "<｜end▁of▁file▁name｜>", false},
    {128819, "<｜begin▁of▁file｜>", false},
    {128820, "<｜end▁of▁file｜>", false},
    {128821, "<think>", false},
    {128822, "</think>", false},
    {128823, "<｜place▁holder▁for▁copy｜>", false},
    {128824, "<｜place▁holder▁for▁pointer▁replace｜>", false},
    {128825, "｜DSML｜", false},
    {128826, "<｜begin▁sys｜>", false},
    {128827, "<｜end▁sys｜>", false},
    {128828, "<｜latest_reminder｜>", false},
    {128829, "<｜action｜>", false},
    {128830, "<｜query｜>", false},
    {128831, "<｜authority｜>", false},
    {128832, "<｜domain｜>", false},
    {128833, "<｜task｜>", false},
    {128834, "<｜political｜>", false},
    {128835, "<｜entity｜>", false},
    {128836, "<｜title｜>", false},
    {128837, "<｜safety｜>", false},
    {128838, "<｜answer｜>", false},
    {128839, "<｜search｜>", false},
    {128840, "<dsml:", false},
    {128841, "</dsml:", false},
    {128842, "<｜search▁begin｜>", false},
    {128843, "<｜search▁end｜>", false},
    {128844, "<｜extracted_url｜>", false},
    {128845, "<｜read_url｜>", false},
    {128846, "<｜end_of_query｜>", false},
    {129279, "<｜image｜>", true},
};

// Returns the length of the UTF-8 sequence at p[0, n): > 0 complete and valid; 0 a valid prefix cut
// off by n; < 0 invalid, minus the bytes one U+FFFD replaces (the maximal valid subpart, at least 1).
int utf8_step(const unsigned char* p, size_t n) {
  const unsigned c = p[0];
  if (c < 0x80) return 1;
  int len = 0;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // > U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (size_t(k) >= n) return 0;
    if (p[k] < lo || p[k] > hi) return -k;
    lo = 0x80, hi = 0xBF;
  }
  return len;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
}

// GPT-2's ByteLevel alphabet: printable bytes map to themselves, the other 68 to U+0100.. in order.
std::array<uint32_t, 256> byte_to_codepoint() {
  std::array<uint32_t, 256> t{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    t[b] = printable ? b : next++;
  }
  return t;
}

// A ByteLevel vocabulary string back to the raw bytes it stands for. Entries outside the alphabet
// (the V3 vocab lists BOS/EOS/pad verbatim; they are added tokens too) stand for themselves.
std::string bytelevel_decode(const std::string& s, const std::vector<int16_t>& cp_to_byte, const std::string& where) {
  std::string out;
  bool outside = false;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const int r = utf8_step(p + i, s.size() - i);
    if (r <= 0) throw Error(where + ": token '" + s + "' is not valid UTF-8");
    uint32_t cp = r == 1 ? p[i] : r == 2 ? (p[i] & 0x1F) : r == 3 ? (p[i] & 0x0F) : (p[i] & 0x07);
    for (int k = 1; k < r; ++k) cp = (cp << 6) | (p[i + k] & 0x3F);
    if (cp >= cp_to_byte.size() || cp_to_byte[cp] < 0) outside = true;
    else out += char(cp_to_byte[cp]);
    i += size_t(r);
  }
  return outside ? s : out;
}

// SAX reader of tokenizer.json: the model's vocab (~128k entries) and merges (~128k pairs) go straight
// into flat vectors, everything else into a small DOM; about 5x faster than parsing it all as a DOM.
class TokenizerJsonReader : public nlohmann::json_sax<json> {
 public:
  json root;                                               // everything but model.vocab / model.merges
  std::vector<std::pair<std::string, int64_t>> vocab;      // model.vocab, file order
  std::vector<std::pair<std::string, std::string>> merges; // model.merges, rank order

  bool null() override { return add(nullptr); }
  bool boolean(bool v) override { return add(v); }
  bool number_integer(number_integer_t v) override { return number(v); }
  bool number_unsigned(number_unsigned_t v) override { return number(int64_t(v)); }
  bool number_float(number_float_t v, const string_t&) override { return add(v); }
  bool binary(binary_t&) override { return false; }
  bool string(string_t& v) override {
    if (mode_ == Mode::Merges) {  // "left right"
      const size_t sp = v.find(' ');
      if (sp == std::string::npos || v.find(' ', sp + 1) != std::string::npos)
        return fail("model.merges[" + std::to_string(merges.size()) + "]: expected 'left right', got '" + v + "'");
      merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
      return true;
    }
    if (mode_ == Mode::MergePair) {
      pair_.push_back(std::move(v));
      return true;
    }
    if (mode_ == Mode::Vocab) return fail("model.vocab['" + key_ + "']: expected an integer id");
    return add(std::move(v));
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) override {
    if (mode_ != Mode::Dom) return fail("model.vocab / model.merges: unexpected object");
    if (in_model() && key_ == "vocab") {
      mode_ = Mode::Vocab;
      return true;
    }
    return open(json::object());
  }
  bool end_object() override {
    if (mode_ == Mode::Vocab) mode_ = Mode::Dom;
    else close();
    return true;
  }
  bool start_array(std::size_t) override {
    if (mode_ == Mode::Merges) {
      mode_ = Mode::MergePair;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::Dom) return fail("model.vocab / model.merges: unexpected array");
    if (in_model() && key_ == "merges") {
      mode_ = Mode::Merges;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == Mode::MergePair) {
      if (pair_.size() != 2)
        return fail("model.merges[" + std::to_string(merges.size()) + "]: expected [left, right]");
      merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = Mode::Merges;
    } else if (mode_ == Mode::Merges) {
      mode_ = Mode::Dom;
    } else {
      close();
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(e.what());
  }
  const std::string& error() const { return error_; }

 private:
  enum class Mode { Dom, Vocab, Merges, MergePair };
  bool fail(std::string msg) {
    error_ = std::move(msg);
    return false;
  }
  bool number(int64_t v) {
    if (mode_ == Mode::Vocab) {
      vocab.emplace_back(std::move(key_), v);
      return true;
    }
    if (mode_ != Mode::Dom) return fail("model.merges: expected strings");
    return add(v);
  }
  // Directly inside the top-level "model" object.
  bool in_model() const { return stack_.size() == 2 && keys_[1] == "model"; }
  json* insert(json v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    json& slot = parent[key_];
    slot = std::move(v);
    return &slot;
  }
  bool add(json v) {
    if (mode_ != Mode::Dom) return fail("model.vocab / model.merges: unexpected value");
    insert(std::move(v));
    return true;
  }
  bool open(json v) {
    keys_.push_back(stack_.empty() || stack_.back()->is_array() ? std::string() : key_);
    stack_.push_back(insert(std::move(v)));
    return true;
  }
  void close() {
    stack_.pop_back();
    keys_.pop_back();
  }

  Mode mode_ = Mode::Dom;
  std::vector<json*> stack_;       // open DOM containers (an array's last element stays put while open)
  std::vector<std::string> keys_;  // key each open container was stored under
  std::string key_;
  std::vector<std::string> pair_;
  std::string error_;
};

}  // namespace

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t i = 0; i < bytes.size();) {
    const int r = utf8_step(p + i, bytes.size() - i);
    if (r > 0) {
      out.append(bytes.substr(i, size_t(r)));
      i += size_t(r);
    } else {
      out += kReplacement;
      i = r == 0 ? bytes.size() : i + size_t(-r);
    }
  }
  return out;
}

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  std::string text;
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot open tokenizer file");
    f.seekg(0, std::ios::end);
    text.resize(size_t(f.tellg()));
    f.seekg(0);
    if (!f.read(text.data(), std::streamsize(text.size()))) throw Error(path + ": cannot read tokenizer file");
  }
  TokenizerJsonReader reader;
  if (!json::sax_parse(text, &reader)) throw Error(path + ": " + reader.error());
  const json& j = reader.root;
  auto field = [&](const json& o, const char* key, const std::string& where) -> const json& {
    if (!o.is_object() || !o.contains(key)) throw Error(path + ": missing field " + where + "." + key);
    return o.at(key);
  };
  Tokenizer t;

  // normalizer: none (null or an empty Sequence)
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    const json& n = j["normalizer"];
    if (!(n.value("type", "") == "Sequence" && n.value("normalizers", json::array()).empty()))
      throw Error(path + ": normalizer: expected none or an empty Sequence, got " + n.dump());
  }

  // pre_tokenizer: Sequence of Split(Isolated) then ByteLevel(use_regex=false, add_prefix_space=false)
  const json& pre = field(j, "pre_tokenizer", "tokenizer");
  if (pre.value("type", "") != "Sequence") throw Error(path + ": pre_tokenizer.type: expected Sequence, got " + pre.dump());
  const json& steps = field(pre, "pretokenizers", "pre_tokenizer");
  bool byte_level = false;
  size_t splits = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& s = steps[i];
    const std::string where = path + ": pre_tokenizer.pretokenizers[" + std::to_string(i) + "]";
    const std::string type = s.value("type", "");
    if (type == "ByteLevel") {
      if (i + 1 != steps.size()) throw Error(where + ": ByteLevel must be the last step");
      if (s.value("use_regex", true) || s.value("add_prefix_space", true))
        throw Error(where + ": expected ByteLevel with use_regex=false, add_prefix_space=false");
      byte_level = true;
      continue;
    }
    if (type != "Split") throw Error(where + ".type: expected Split or ByteLevel, got " + type);
    if (s.value("behavior", "") != "Isolated" || s.value("invert", false))
      throw Error(where + ": expected behavior Isolated, invert false");
    const json& pat = field(s, "pattern", where);
    const bool literal = pat.contains("String");
    const std::string p = literal ? pat.at("String").get<std::string>() : field(pat, "Regex", where).get<std::string>();
    // The pre-tokenizer is DeepSeek's, matched by hand (pretokenizer.hpp): other patterns are refused
    // rather than split differently from Hugging Face.
    if (literal || splits >= std::size(kDeepSeekSplitPatterns) || p != kDeepSeekSplitPatterns[splits])
      throw Error(where + ".pattern: expected DeepSeek's Split regex #" + std::to_string(splits + 1) +
                  " (../shared/tokenizer/README.md), got " + pat.dump());
    ++splits;
  }
  if (splits != std::size(kDeepSeekSplitPatterns))
    throw Error(path + ": pre_tokenizer: expected DeepSeek's " + std::to_string(std::size(kDeepSeekSplitPatterns)) +
                " Split steps, got " + std::to_string(splits));
  if (!byte_level) throw Error(path + ": pre_tokenizer: expected a final ByteLevel step");

  // model: BPE over the ByteLevel alphabet
  const json& m = field(j, "model", "tokenizer");
  if (m.value("type", "BPE") != "BPE") throw Error(path + ": model.type: expected BPE, got " + m.value("type", ""));
  if (m.contains("ignore_merges") && m["ignore_merges"].is_boolean() && m["ignore_merges"].get<bool>())
    throw Error(path + ": model.ignore_merges=true is not supported");
  const auto b2c = byte_to_codepoint();
  std::vector<int16_t> c2b(324, -1);
  for (int b = 0; b < 256; ++b) c2b[b2c[size_t(b)]] = int16_t(b);

  if (reader.vocab.empty()) throw Error(path + ": model.vocab is missing or empty");
  int64_t max_id = -1;
  for (const auto& [k, id] : reader.vocab) max_id = std::max(max_id, id);
  const json& added = j.contains("added_tokens") ? j["added_tokens"] : json::array();
  for (const auto& a : added) max_id = std::max<int64_t>(max_id, field(a, "id", "added_tokens[]").get<int64_t>());
  for (const auto& a : kV4Added) max_id = std::max<int64_t>(max_id, a.id);
  t.bytes_.assign(size_t(max_id + 1), std::string());
  t.special_.assign(size_t(max_id + 1), 0);

  t.vocab_.reserve(reader.vocab.size() * 2);
  for (auto& [k, id] : reader.vocab) {
    if (id < 0 || id > INT32_MAX) throw Error(path + ": model.vocab['" + k + "']: id " + std::to_string(id) + " out of range");
    t.bytes_[size_t(id)] = bytelevel_decode(k, c2b, path + ": model.vocab");
    t.vocab_.emplace(std::move(k), int32_t(id));
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    append_utf8(s, b2c[size_t(b)]);
    const auto it = t.vocab_.find(s);
    if (it == t.vocab_.end()) throw Error(path + ": model.vocab lacks the ByteLevel symbol of byte " + std::to_string(b));
    t.byte_id_[b] = it->second;
  }

  t.merges_.reserve(reader.merges.size());
  std::string ab;
  for (size_t r = 0; r < reader.merges.size(); ++r) {
    const auto& [a, b] = reader.merges[r];
    ab.assign(a).append(b);
    const auto ia = t.vocab_.find(a), ib = t.vocab_.find(b), ic = t.vocab_.find(ab);
    if (ia == t.vocab_.end() || ib == t.vocab_.end() || ic == t.vocab_.end())
      throw Error(path + ": model.merges[" + std::to_string(r) + "]: '" + a + "', '" + b + "' or their merge is not in the vocab");
    t.merges_.add(ia->second, ib->second, int32_t(r), ic->second);  // a repeated pair keeps its first rank
  }

  // added tokens: the file's, then the V4 additions it lacks (same id or same content: the file wins)
  std::unordered_map<std::string, int32_t> added_ids;
  auto add = [&](int32_t id, const std::string& content, bool special) {
    if (content.empty()) throw Error(path + ": added token " + std::to_string(id) + " is empty");
    t.bytes_[size_t(id)] = content;
    t.special_[size_t(id)] = special;
    added_ids.emplace(content, id);
    t.added_.push_back({content, id, special});
  };
  std::vector<uint8_t> has(t.bytes_.size(), 0);
  for (const auto& a : added) {
    const int32_t id = field(a, "id", "added_tokens[]").get<int32_t>();
    add(id, field(a, "content", "added_tokens[]").get<std::string>(), a.value("special", false));
    has[size_t(id)] = 1;
  }
  for (const auto& a : kV4Added)
    if (!has[size_t(a.id)] && !added_ids.count(a.content)) add(a.id, a.content, a.special);
  // Leftmost-longest: candidates at a position are tried longest first.
  std::stable_sort(t.added_.begin(), t.added_.end(),
                   [](const Added& x, const Added& y) { return x.content.size() > y.content.size(); });
  // A byte trie of the contents: one walk per text position finds the longest added token there.
  t.trie_.assign(1, TrieNode{});
  for (size_t i = 0; i < t.added_.size(); ++i) {
    int32_t node = 0;
    for (const char ch : t.added_[i].content) {
      const auto b = static_cast<unsigned char>(ch);
      auto& next = t.trie_[size_t(node)].next;
      auto it = std::find_if(next.begin(), next.end(), [&](const auto& kv) { return kv.first == b; });
      if (it != next.end()) {
        node = it->second;
        continue;
      }
      next.emplace_back(b, int32_t(t.trie_.size()));
      node = int32_t(t.trie_.size());
      t.trie_.emplace_back();
    }
    if (t.trie_[size_t(node)].added < 0) t.trie_[size_t(node)].added = int32_t(i);  // a repeat: the first wins
  }
  std::fill(std::begin(t.trie_root_), std::end(t.trie_root_), -1);
  for (const auto& [b, child] : t.trie_[0].next) t.trie_root_[b] = child;
  return t;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string none;
  return id >= 0 && size_t(id) < bytes_.size() ? bytes_[size_t(id)] : none;
}

bool Tokenizer::is_special(int32_t id) const { return id >= 0 && size_t(id) < special_.size() && special_[size_t(id)]; }

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  for (const auto& a : added_)
    if (a.content == token) return a.id;
  const auto b2c = byte_to_codepoint();
  std::string s;
  for (unsigned char c : token) append_utf8(s, b2c[c]);
  const auto it = vocab_.find(s);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

// ---- encode ----

std::vector<int32_t> Tokenizer::encode(std::string_view text, SpecialTokens special) const {
  if (special == SpecialTokens::Literal) {
    const TextRange all{0, text.size()};
    return encode(text, std::span(&all, 1));
  }
  return encode(text, std::span<const TextRange>{});
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, std::span<const TextRange> literal) const {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < text.size();) {
    const int r = utf8_step(p + i, text.size() - i);
    if (r <= 0) throw Error("tokenizer: input text is not valid UTF-8 at byte " + std::to_string(i));
    i += size_t(r);
  }
  for (size_t k = 0; k < literal.size(); ++k)
    if (literal[k].begin > literal[k].end || literal[k].end > text.size() || (k && literal[k].begin < literal[k - 1].end))
      throw Error("tokenizer: literal ranges must be sorted, disjoint and inside the text");
  std::vector<int32_t> out;
  size_t plain = 0;  // start of the text since the last added token
  size_t lit = 0;    // first literal range that ends after i
  for (size_t i = 0; i < text.size();) {
    while (lit < literal.size() && literal[lit].end <= i) ++lit;
    if (lit < literal.size() && literal[lit].begin <= i) {  // inside user content: no added tokens here
      i = literal[lit].end;
      continue;
    }
    const Added* hit = nullptr;
    for (int32_t node = trie_root_[p[i]], k = int32_t(i) + 1; node >= 0; ++k) {
      const TrieNode& t = trie_[size_t(node)];
      if (t.added >= 0) hit = &added_[size_t(t.added)];  // longer matches come later in the walk
      if (size_t(k) == text.size()) break;
      node = -1;
      for (const auto& [b, child] : t.next)
        if (b == p[k]) node = child;
    }
    if (!hit || (lit < literal.size() && literal[lit].begin < i + hit->content.size())) {
      ++i;
      continue;
    }
    encode_plain(text.substr(plain, i - plain), out);
    out.push_back(hit->id);
    i += hit->content.size();
    plain = i;
  }
  encode_plain(text.substr(plain), out);
  return out;
}

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  PreTokenizer pre;
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
  pre.split(text, pieces);
  BpeMerges::Scratch scratch;
  for (const auto& [b, e] : pieces) merges_.encode(text.substr(b, e - b), byte_id_, out, scratch);
}

// ---- decode ----

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids)
    if (!(skip_special && is_special(id))) bytes += token_bytes(id);
  return utf8_lossy(bytes);
}

std::string StreamDecoder::push(int32_t id) {
  if (!(skip_special_ && tok_.is_special(id))) held_ += tok_.token_bytes(id);
  // Emit up to the start of a trailing sequence that is valid so far but incomplete.
  const auto* p = reinterpret_cast<const unsigned char*>(held_.data());
  size_t i = 0;
  while (i < held_.size()) {
    const int r = utf8_step(p + i, held_.size() - i);
    if (r == 0) break;
    i += size_t(r > 0 ? r : -r);
  }
  std::string out = utf8_lossy(std::string_view(held_).substr(0, i));
  held_.erase(0, i);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8_lossy(held_);
  held_.clear();
  return out;
}

}  // namespace dsv4
