// Test-only minimal safetensors reader (single file): header JSON + raw payloads by tensor name.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4::test {

class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(const std::string& path) : path_(path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("safetensors " + path + ": cannot open");
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string h(n, '\0');
    f.read(h.data(), std::streamsize(n));
    header_ = nlohmann::json::parse(h);
    data_.assign(std::istreambuf_iterator<char>(f), {});
  }
  bool has(const std::string& name) const { return header_.contains(name); }
  std::string dtype(const std::string& name) const { return entry(name)["dtype"]; }
  std::vector<int64_t> shape(const std::string& name) const { return entry(name)["shape"]; }

  // Payload as T; `dtype` must match the tensor's safetensors dtype.
  template <class T> std::vector<T> get(const std::string& name, const std::string& want_dtype) const {
    const auto& e = entry(name);
    if (e["dtype"] != want_dtype)
      throw std::runtime_error("safetensors " + path_ + ": tensor " + name + ": expected dtype " + want_dtype +
                               ", got " + std::string(e["dtype"]));
    const uint64_t b = e["data_offsets"][0], en = e["data_offsets"][1];
    std::vector<T> v((en - b) / sizeof(T));
    std::memcpy(v.data(), data_.data() + b, en - b);
    return v;
  }

 private:
  const nlohmann::json& entry(const std::string& name) const {
    if (!header_.contains(name)) throw std::runtime_error("safetensors " + path_ + ": no tensor " + name);
    return header_[name];
  }
  std::string path_;
  nlohmann::json header_;
  std::vector<char> data_;
};

}  // namespace dsv4::test
