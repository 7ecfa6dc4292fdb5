// Tokenizer throughput: encode() over the conformance corpus's texts, repeated to at least N MB
// (default 4), one call per text as a server would make. Prints MB/s of input.
//   tokenizer_bench [MB] [tokenizer.json] [corpus.jsonl]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/text/tokenizer.hpp"

int main(int argc, char** argv) {
  const double mb = argc > 1 ? std::atof(argv[1]) : 4.0;
  const std::string tok_path = argc > 2 ? argv[2] : DSV4_SOURCE_DIR "/data/tokenizer/tokenizer.json";
  const std::string corpus = argc > 3 ? argv[3] : DSV4_SOURCE_DIR "/tests/text/data/corpus.jsonl";
  const dsv4::Tokenizer tok = dsv4::Tokenizer::load(tok_path);
  std::ifstream f(corpus);
  if (!f) {
    std::fprintf(stderr, "tokenizer_bench: cannot open %s\n", corpus.c_str());
    return 1;
  }
  std::vector<std::string> texts;
  size_t once = 0;
  for (std::string line; std::getline(f, line);) {
    texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    once += texts.back().size();
  }
  size_t bytes = 0, tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (bytes < mb * 1e6)
    for (const auto& t : texts) {
      tokens += tok.encode(t).size();
      bytes += t.size();
    }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu texts (%zu bytes) x %.1f: %.2f MB, %zu tokens in %.3f s = %.2f MB/s\n", texts.size(), once,
              double(bytes) / double(once), bytes / 1e6, tokens, s, bytes / 1e6 / s);
  return 0;
}
