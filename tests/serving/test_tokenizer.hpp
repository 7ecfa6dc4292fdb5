// The shipped tokenizer, loaded once per test binary.
#pragma once
#include "runtime/text/tokenizer.hpp"

namespace dsv4::test {

inline const Tokenizer& shared_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json");
  return tok;
}

}  // namespace dsv4::test
