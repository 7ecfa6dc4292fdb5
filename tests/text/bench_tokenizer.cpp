// Tokenizer throughput: encode() over texts repeated to at least N MB (default 4), one call per text
// as a server would make. Texts: the conformance corpus (a .jsonl file: one per line) and any other
// files given (cut into pieces of about 4 KB at line ends). Prints MB/s of input, wall and CPU time
// (CPU time is the steadier number on a shared machine).
//   tokenizer_bench [MB] [tokenizer.json] [corpus.jsonl | text file]...
#include <chrono>
#include <ctime>
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
  std::vector<std::string> files;
  for (int i = 3; i < argc; ++i) files.push_back(argv[i]);
  if (files.empty()) files.push_back(DSV4_SOURCE_DIR "/tests/text/data/corpus.jsonl");
  const dsv4::Tokenizer tok = dsv4::Tokenizer::load(tok_path);
  std::vector<std::string> texts;
  size_t once = 0;
  for (const auto& path : files) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "tokenizer_bench: cannot open %s\n", path.c_str());
      return 1;
    }
    const bool jsonl = path.size() > 6 && path.substr(path.size() - 6) == ".jsonl";
    std::string piece;
    for (std::string line; std::getline(f, line);) {
      if (jsonl) {
        texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
        continue;
      }
      piece += line + "\n";
      if (piece.size() >= 4096) texts.push_back(std::move(piece)), piece.clear();
    }
    if (!piece.empty()) texts.push_back(std::move(piece));
  }
  for (const auto& t : texts) once += t.size();
  if (once == 0) {
    std::fprintf(stderr, "tokenizer_bench: no text\n");
    return 1;
  }
  size_t bytes = 0, tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  while (bytes < mb * 1e6)
    for (const auto& t : texts) {
      tokens += tok.encode(t).size();
      bytes += t.size();
    }
  const double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu texts (%zu bytes) x %.1f: %.2f MB, %zu tokens; wall %.3f s = %.2f MB/s, cpu %.3f s = %.2f MB/s\n",
              texts.size(), once, double(bytes) / double(once), bytes / 1e6, tokens, s, bytes / 1e6 / s, cpu,
              bytes / 1e6 / cpu);
  return 0;
}
