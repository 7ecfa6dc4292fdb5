// Helpers shared by the checkpoint tests: temp dirs, raw file crafting, configs, the flash tsv.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "plan/config.hpp"
#include "plan/hf_manifest.hpp"
#include "tools/config/hf_config.hpp"
#include "tools/checkpoint/safetensors.hpp"

namespace dsv4::test {
namespace fs = std::filesystem;

inline const std::string kSrc = DSV4_SOURCE_DIR;
inline const std::string kTinyCkpt = kSrc + "/tests/golden/tiny/tiny_ckpt";
inline const std::string kFlashTsv = kSrc + "/tests/checkpoint/data/flash_tensors.tsv";
inline const std::string kTokenizerDir = kSrc + "/data/tokenizer";

// A fresh directory under the build's temp area, removed on destruction.
struct TempDir {
  fs::path path;
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base ? base : "/tmp") + "/dsv4_ckpt_test_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& n) const { return (path / n).string(); }
};

inline std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f << bytes;
}

// A raw safetensors file: length field (default: header size), header text, then `data_bytes` zero bytes.
inline void write_raw_st(const std::string& p, const std::string& header, uint64_t data_bytes,
                         int64_t len_override = -1) {
  std::string s(8, '\0');
  const uint64_t n = len_override >= 0 ? uint64_t(len_override) : header.size();
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((n >> (8 * i)) & 0xff);
  s += header;
  s.append(data_bytes, '\0');
  write_file(p, s);
}

inline ModelConfig tiny_config() { return load_hf_config(kTinyCkpt + "/config.json"); }

// The official V4-Flash config (spec §1): ModelConfig defaults plus the 44 compress ratios.
inline ModelConfig flash_config() {
  ModelConfig c;
  c.compress_ratios = {0, 0};
  for (int L = 2; L < 43; ++L) c.compress_ratios.push_back(L % 2 == 0 ? 4 : 128);
  c.compress_ratios.push_back(0);
  return c;
}

struct TsvRow {
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t bytes;
};

// flash_tensors.tsv: name, dtype, shape "AxB", bytes; first line is a comment.
inline std::vector<std::pair<std::string, TsvRow>> load_flash_tsv() {
  std::ifstream f(kFlashTsv);
  std::vector<std::pair<std::string, TsvRow>> rows;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string name, dtype, shape, bytes;
    std::getline(ss, name, '\t');
    std::getline(ss, dtype, '\t');
    std::getline(ss, shape, '\t');
    std::getline(ss, bytes, '\t');
    TsvRow r{dtype, {}, std::stoull(bytes)};
    std::stringstream sh(shape);
    std::string d;
    while (std::getline(sh, d, 'x')) r.shape.push_back(std::stoll(d));
    rows.emplace_back(name, std::move(r));
  }
  return rows;
}

// A header-only checkpoint: shards hold real headers and are ftruncate'd to their declared size (sparse,
// no disk cost). Tensors are dealt into `n_shards` shards in the given order.
inline void write_fake_checkpoint(const std::string& dir, const std::vector<st::TensorSpec>& specs, int n_shards) {
  fs::create_directories(dir);
  uint64_t total_bytes = 0;
  for (auto& s : specs) total_bytes += s.bytes();
  const uint64_t per = total_bytes / uint64_t(n_shards) + 1;
  std::vector<std::vector<st::TensorSpec>> shards(static_cast<size_t>(n_shards));
  uint64_t acc = 0;
  for (auto& s : specs) {
    shards[std::min<size_t>(size_t(acc / per), size_t(n_shards - 1))].push_back(s);
    acc += s.bytes();
  }
  std::ostringstream idx;
  idx << "{\"metadata\":{\"total_size\":" << total_bytes << "},\"weight_map\":{";
  std::map<std::string, std::string> wm;
  for (int i = 0; i < n_shards; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", i + 1, n_shards);
    const st::SafetensorsLayout l = st::plan_safetensors(shards[size_t(i)]);
    const std::string p = (fs::path(dir) / name).string();
    write_raw_st(p, l.header, 0);
    if (::truncate(p.c_str(), off_t(l.file_size)) != 0) throw std::runtime_error("truncate failed");
    for (auto& t : l.tensors) wm[t.name] = name;
  }
  bool first = true;
  for (auto& [n, f] : wm) {
    idx << (first ? "" : ",") << "\"" << n << "\":\"" << f << "\"";
    first = false;
  }
  idx << "}}";
  write_file((fs::path(dir) / "model.safetensors.index.json").string(), idx.str());
}

inline std::vector<st::TensorSpec> specs_of(const std::vector<HfTensor>& m) {
  std::vector<st::TensorSpec> s;
  for (auto& t : m) s.push_back({t.name, t.dtype, t.shape});
  return s;
}

// EXPECT that `f` throws dsv4::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "expected dsv4::Error containing '" << *parts.begin() << "'";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "message: " << m << "\nmissing: " << p;
  }
}

}  // namespace dsv4::test
