// The shipped tokenizer (data/tokenizer/tokenizer.json, loaded once) on arbitrary bytes. The first
// byte picks the mode: text -> encode (valid UTF-8 must round-trip through decode exactly; invalid
// UTF-8 must be refused with dsv4::Error), or bytes as little-endian int32 ids -> decode and the
// streaming decoder, whose pieces must add up to the one-shot decode.
#include <cstring>
#include <vector>

#include "fuzz/fuzz_util.hpp"
#include "runtime/text/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv4::Tokenizer tok = dsv4::Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  ++data, --size;
  if (mode & 1) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    dsv4::fuzz::expect_clean([&] {
      const auto ids = tok.encode(text);
      for (int32_t id : ids) dsv4::fuzz::check(id >= 0 && id < tok.size(), "encode produced an id outside the table");
      dsv4::fuzz::check(tok.decode(ids) == text, "decode(encode(text)) != text");
    });
  } else {
    std::vector<int32_t> ids(size / 4);
    if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
    if (mode & 2)  // ids near the table, so most are real tokens
      for (auto& id : ids) id = int32_t(uint32_t(id) % uint32_t(tok.size() + 16)) - 8;
    dsv4::fuzz::expect_clean([&] {
      const bool skip = mode & 4;
      const std::string whole = tok.decode(ids, skip);
      dsv4::StreamDecoder sd(tok, skip);
      std::string pieces;
      for (int32_t id : ids) pieces += sd.push(id);
      pieces += sd.finish();
      dsv4::fuzz::check(dsv4::utf8_lossy(whole) == whole, "decode output is not valid UTF-8");
      dsv4::fuzz::check(pieces == whole, "streamed decode differs from one-shot decode");
    });
  }
  return 0;
}
