// The rank's arena: one allocation at start-up of the plan's kArenaBytes; every buffer is an offset.
#pragma once
#include <cstdint>
#include <span>

#include "layout.hpp"

namespace dsv4 {

class Arena {
 public:
  Arena();  // maps kArenaBytes of zeroed, 64-byte-aligned memory (anonymous mmap); throws on failure
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  uint8_t* data(uint32_t buffer) const { return base_ + gen::kBuffers[buffer].offset; }
  template <class T>
  std::span<T> span(uint32_t buffer) const {
    return {reinterpret_cast<T*>(data(buffer)), size_t(gen::kBuffers[buffer].bytes) / sizeof(T)};
  }
  int64_t bytes() const { return gen::kArenaBytes; }

 private:
  uint8_t* base_ = nullptr;
};

}  // namespace dsv4
