#pragma once
#include <cstddef>

namespace dsv4 {

// A byte range [begin, end) of a text; the chat encoder marks user-controlled content with these so the
// tokenizer can encode it literally (a message cannot forge the template's role or control tokens).
struct TextRange {
  size_t begin, end;
};

}  // namespace dsv4
